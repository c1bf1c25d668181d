package pgstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/facever/facever/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

// benchGallery fills a new database with n templates of dim values, spread
// over n/10 identities, by COPY, and opens it.
func benchGallery(b *testing.B, n, dim int) *Store {
	b.Helper()
	url := pgtest.URL(b)
	s := open(b, url)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	people := max(n/10, 1)
	at := now()
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{Schema, "identities"}, []string{"name", "created", "templates"},
		pgx.CopyFromSlice(people, func(i int) ([]any, error) {
			return []any{"person " + strconv.Itoa(i), at, n / people}, nil
		})); err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	emb := make([]float32, dim)
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{Schema, "templates"}, []string{"identity_id", "embedding", "source", "created"},
		pgx.CopyFromSlice(n, func(i int) ([]any, error) {
			for j := range emb {
				emb[j] = float32(r.NormFloat64())
			}
			return []any{int64(i%people + 1), encodeEmbedding(nil, emb), "", at}, nil
		})); err != nil {
		b.Fatal(err)
	}
	for _, q := range []string{fmt.Sprintf("UPDATE facever.meta SET dim = %d", dim), "ANALYZE"} {
		if _, err := conn.Exec(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

// cpuTime is the user and system CPU time of this process.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkLoadIndex loads a gallery of 100,000 templates of 512 values
// from PostgreSQL (FACEVER_BENCH_TEMPLATES changes the size); ms/100k is
// the time per 100,000 templates.
func BenchmarkLoadIndex(b *testing.B) {
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("FACEVER_BENCH_TEMPLATES")); err == nil && v > 0 {
		n = v
	}
	const dim = 512
	t0 := time.Now()
	s := benchGallery(b, n, dim)
	b.Logf("COPY of %d templates: %v", n, time.Since(t0))
	cpu0 := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		ix, err := s.LoadIndex()
		if err != nil {
			b.Fatal(err)
		}
		if ix.Len() != n || ix.Dim() != dim {
			b.Fatal(fmt.Sprintf("loaded %d×%d, want %d×%d", ix.Len(), ix.Dim(), n, dim))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N)*100_000/float64(n), "ms/100k")
	// This process's CPU time (decoding, normalising, the driver), apart
	// from the server's and from waiting on a busy machine.
	b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N)*100_000/float64(n), "client-cpu-ms/100k")
	b.SetBytes(int64(n) * 4 * dim)
}
