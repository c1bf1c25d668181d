package pgstore

import (
	"context"
	"strings"
	"testing"

	"github.com/facever/facever/enroll"
	"github.com/facever/facever/enroll/storetest"
	"github.com/facever/facever/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

// TestStore runs the behaviour suite of every enroll.Store on PostgreSQL:
// the same cases the bbolt file passes.
func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		url := pgtest.URL(t)
		return storetest.Backend{
			Open:  func(o enroll.Options) (enroll.Store, error) { return Open(url, o) },
			Raw:   func() ([]byte, error) { return dump(url) },
			Short: raceEnabled || testing.Short(),
		}
	})
}

// dump returns every row of every table of the gallery, as text.
func dump(url string) ([]byte, error) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	var tables []string
	rows, err := conn.Query(ctx, "SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename", Schema)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		tables = append(tables, n)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var b strings.Builder
	for _, n := range tables {
		var s *string
		if err := conn.QueryRow(ctx, "SELECT string_agg(t::text, E'\\n') FROM "+pgx.Identifier{Schema, n}.Sanitize()+" t").Scan(&s); err != nil {
			return nil, err
		}
		if s != nil {
			b.WriteString(*s + "\n")
		}
	}
	return []byte(b.String()), nil
}
