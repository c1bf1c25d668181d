package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/facever/facever/enroll"
	"github.com/jackc/pgx/v5"
)

// migration upgrades the schema to version to, in one transaction.
type migration struct {
	to   int
	name string
	sql  string
}

// migrations, in order. A new layout appends an entry (never edit a
// published one).
var migrations = []migration{
	{1, "initial layout", `
CREATE TABLE facever.meta (
	one     boolean PRIMARY KEY DEFAULT true CHECK (one),
	app     text NOT NULL,
	schema  int NOT NULL,
	model   text NOT NULL DEFAULT '',
	head    text NOT NULL DEFAULT '',
	dim     int NOT NULL DEFAULT 0,
	created timestamptz NOT NULL DEFAULT now()
);
INSERT INTO facever.meta (app, schema) VALUES ('facever-gallery', 1);

CREATE TABLE facever.identities (
	id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name      text COLLATE "C" NOT NULL UNIQUE,
	metadata  json,
	created   timestamptz NOT NULL,
	templates int NOT NULL DEFAULT 0
);

CREATE TABLE facever.templates (
	id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	identity_id  bigint NOT NULL REFERENCES facever.identities ON DELETE CASCADE,
	embedding    bytea NOT NULL,
	source       text NOT NULL DEFAULT '',
	photo_sha256 text,
	created      timestamptz NOT NULL
);
CREATE INDEX templates_identity ON facever.templates (identity_id, id);
CREATE INDEX templates_photo ON facever.templates (photo_sha256, identity_id, id) WHERE photo_sha256 IS NOT NULL;

CREATE TABLE facever.api_keys (
	hash    text PRIMARY KEY,
	name    text NOT NULL,
	prefix  text NOT NULL,
	created timestamptz NOT NULL,
	scopes  text[] NOT NULL
);

CREATE TABLE facever.once (
	key     text PRIMARY KEY,
	digest  text NOT NULL,
	status  int NOT NULL,
	body    bytea,
	created timestamptz NOT NULL
);
CREATE INDEX once_created ON facever.once (created);

CREATE TABLE facever.changes (
	seq         bigint PRIMARY KEY,
	at          timestamptz NOT NULL DEFAULT now(),
	kind        text NOT NULL,
	identity_id bigint NOT NULL,
	template_id bigint NOT NULL DEFAULT 0
);
`},
	// A 512-value embedding (2,048 bytes) makes a row just over the
	// default TOAST threshold (about 2 kB): every row was moved out of line
	// into the TOAST table and, on load, fetched back through its index,
	// after a futile attempt to compress random floats. Keep rows up to a
	// page inline, and never compress embeddings. (Rows written before
	// stay as they are until rewritten.)
	{2, "embeddings inline and uncompressed", `
ALTER TABLE facever.templates SET (toast_tuple_target = 8160);
ALTER TABLE facever.templates ALTER COLUMN embedding SET STORAGE EXTERNAL;
`},
	// Each template's crop (a JPEG of the aligned chip, 3–8 KiB, at most
	// enroll.MaxCropBytes) in a table of its own, keyed by the template,
	// not in a column of templates: the templates rows are kept inline up
	// to a page (migration 2), so a crop column would be stored in the row
	// and make the heap that the index load scans in full (by COPY or by
	// query) several times larger, and the load that much slower, although
	// the index never uses the image. Apart, the load reads the same pages
	// as before; a list says has_crop by a probe of this table's primary
	// key; only TemplateCrop reads an image. Deleting a template (or its
	// identity) deletes its crop (cascade). JPEG does not compress: store
	// it out of line without trying.
	{3, "template crops in a table of their own", `
CREATE TABLE facever.template_crops (
	template_id bigint PRIMARY KEY REFERENCES facever.templates ON DELETE CASCADE,
	jpeg        bytea NOT NULL CHECK (octet_length(jpeg) > 0)
);
ALTER TABLE facever.template_crops ALTER COLUMN jpeg SET STORAGE EXTERNAL;
`},
}

// SchemaVersion is the newest schema this package writes.
func SchemaVersion() int { return migrations[len(migrations)-1].to }

// init migrates under MigrateLock, records the model and reads the meta row.
func (s *Store) init(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", MigrateLock); err != nil {
		return fmt.Errorf("wait for the migration lock: %w", err)
	}
	defer func() {
		// A broken connection has lost the lock with it.
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, "SELECT pg_advisory_unlock($1)", MigrateLock); err != nil {
			conn.Conn().Close(uctx)
		}
	}()
	c := conn.Conn()
	version, err := schemaVersion(ctx, c)
	if err != nil {
		return err
	}
	latest := SchemaVersion()
	switch {
	case version > latest:
		return fmt.Errorf("%w: schema %d is newer than this program's %d", enroll.ErrSchema, version, latest)
	case version < latest && s.opts.ReadOnly:
		if version == 0 {
			return fmt.Errorf("%w: the database holds no gallery (open it read-write once to create it)", enroll.ErrSchema)
		}
		return fmt.Errorf("%w: schema %d needs migrating to %d: open it read-write once", enroll.ErrSchema, version, latest)
	case version < latest:
		if err := migrate(ctx, c, version); err != nil {
			return err
		}
	}
	if s.opts.Model != "" && !s.opts.ReadOnly {
		if _, err := c.Exec(ctx, "UPDATE facever.meta SET model = $1, head = $2 WHERE model = ''", s.opts.Model, s.opts.Head); err != nil {
			return fmt.Errorf("record the model: %w", err)
		}
	}
	m, err := readMeta(ctx, c)
	if err != nil {
		return err
	}
	if m.Schema != latest {
		return fmt.Errorf("%w: meta says schema %d, the migrations %d", enroll.ErrCorrupt, m.Schema, latest)
	}
	s.meta = m
	if err := enroll.CheckModel(m, s.opts); err != nil {
		return err
	}
	var head int64
	if err := c.QueryRow(ctx, "SELECT coalesce(max(seq), 0) FROM facever.changes").Scan(&head); err != nil {
		return err
	}
	s.committed.Store(uint64(head))
	return nil
}

// schemaVersion is the newest migration run (0: no gallery yet).
func schemaVersion(ctx context.Context, c *pgx.Conn) (int, error) {
	var exists bool
	if err := c.QueryRow(ctx, "SELECT to_regclass('facever.migrations') IS NOT NULL").Scan(&exists); err != nil {
		return 0, err
	}
	if !exists {
		var other bool
		if err := c.QueryRow(ctx, "SELECT to_regclass('facever.meta') IS NOT NULL").Scan(&other); err != nil {
			return 0, err
		}
		if other {
			return 0, fmt.Errorf("%w: schema %s holds tables that are not a facever gallery's", enroll.ErrSchema, Schema)
		}
		return 0, nil
	}
	var v int
	if err := c.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM facever.migrations").Scan(&v); err != nil {
		return 0, err
	}
	return v, nil
}

// migrate runs the migrations after version, each in a transaction of its
// own that records it.
func migrate(ctx context.Context, c *pgx.Conn, version int) error {
	if version == 0 {
		if _, err := c.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS facever;
CREATE TABLE IF NOT EXISTS facever.migrations (
	version    int PRIMARY KEY,
	name       text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
)`); err != nil {
			return fmt.Errorf("create schema %s: %w", Schema, err)
		}
	}
	for _, m := range migrations {
		if m.to <= version {
			continue
		}
		err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "INSERT INTO facever.migrations (version, name) VALUES ($1, $2)", m.to, m.name); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "UPDATE facever.meta SET schema = $1", m.to)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate gallery to schema %d (%s): %w", m.to, m.name, err)
		}
	}
	return nil
}

// querier is a connection or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// readMeta reads the meta row.
func readMeta(ctx context.Context, q querier) (enroll.Meta, error) {
	var m enroll.Meta
	var app string
	err := q.QueryRow(ctx, "SELECT app, schema, model, head, dim, created FROM facever.meta").Scan(&app, &m.Schema, &m.Model, &m.Head, &m.Dim, &m.Created)
	if errors.Is(err, pgx.ErrNoRows) {
		return m, fmt.Errorf("%w: the meta row is missing", enroll.ErrCorrupt)
	}
	if err != nil {
		return m, fmt.Errorf("read meta: %w", err)
	}
	if app != appID {
		return m, fmt.Errorf("%w: not a facever gallery (app %q)", enroll.ErrSchema, app)
	}
	m.Created = m.Created.UTC()
	return m, nil
}
