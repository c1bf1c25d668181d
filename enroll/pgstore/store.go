// Package pgstore keeps a facever gallery in PostgreSQL, shared by several
// serve nodes: *Store implements enroll.Store with the semantics of the
// bbolt file (enroll.Gallery): the same names (NFC), limits, sentinel
// errors, model and head tagging, API keys, paging and idempotency records.
//
// # Layout (schema facever, version 1)
//
//	migrations  version, name, applied_at: one row per migration run
//	meta        one row: app, schema, model, head, dim, created
//	identities  id (identity), name (unique, NFC, collation "C"), metadata
//	            (json), created, templates (their count)
//	templates   id (identity), identity_id (→ identities, cascade),
//	            embedding (bytea: little-endian float32s), source,
//	            photo_sha256 (lower-case hex or NULL), created
//	api_keys    hash (hex sha256 of the key), name, prefix, created, scopes
//	once        key, digest, status, body, created (idempotency records)
//	changes     seq, at, kind, identity_id, template_id: the change log
//
// # Writes and the change log
//
// Every write to identities or templates is one transaction that first
// takes the transaction-level advisory lock WriteLock, then does its work,
// then appends one changes row per effect with seq = max(seq)+1, then
// notifies channel NotifyChannel with the last seq, and commits. Holding the
// lock to the commit makes sequence order commit order: a reader that has
// seen every change up to N may trust "seq > N" to bring the rest, no gap
// is ever filled later. (The lock serialises the writes of every node: a
// write waits for the one before it.)
//
// Open runs pending migrations under the session advisory lock MigrateLock,
// so nodes starting at once migrate once.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/facever/facever/enroll"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Advisory lock keys ("facever" as a number, and the one after).
const (
	// WriteLock is taken (pg_advisory_xact_lock) by every write
	// transaction before it changes identities or templates.
	WriteLock int64 = 0x0066616365766572
	// MigrateLock is held (pg_advisory_lock) while Open migrates.
	MigrateLock int64 = WriteLock + 1
)

// NotifyChannel is the channel every write notifies, with its last change
// sequence as the payload.
const NotifyChannel = "facever_changes"

// Schema is the PostgreSQL schema holding the tables.
const Schema = "facever"

// appID marks the meta row of a facever gallery.
const appID = "facever-gallery"

// The kinds of change rows.
const (
	KindAddTemplate    = "add_template"
	KindRemoveTemplate = "remove_template"
	KindAddIdentity    = "add_identity"
	KindRemoveIdentity = "remove_identity"
	KindRename         = "rename"
	KindUpdate         = "update"
)

// change is one row of the change log, before its sequence is known.
type change struct {
	kind     string
	identity uint64
	template uint64
}

// Store is a gallery in a PostgreSQL database. Its methods are safe for
// concurrent use; several Stores (processes, nodes) may share a database.
type Store struct {
	pool *pgxpool.Pool
	url  string
	opts enroll.Options

	mu   sync.Mutex
	meta enroll.Meta

	committed atomic.Uint64 // the last change this Store committed
	seen      atomic.Uint64 // the newest change an index of this Store reflects

	ix indexer // keeps the in-memory index (see index.go)
}

var _ enroll.Store = (*Store)(nil)

// Open connects to the database at url (postgres://user@host:port/db?...,
// see pgxpool.ParseConfig), runs pending migrations (not with
// opts.ReadOnly: then an older or empty database fails with
// enroll.ErrSchema), records opts.Model and opts.Head in a gallery that has
// none, and checks them (enroll.ErrModelMismatch). opts.Timeout bounds the
// connection and each operation (0: enroll.DefaultTimeout; negative: no
// bound).
func Open(url string, opts enroll.Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("open gallery: %w: PostgreSQL URL: %v", enroll.ErrInvalid, err)
	}
	s := &Store{url: redact(cfg), opts: opts}
	ctx, cancel := s.ctx()
	defer cancel()
	if s.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, fmt.Errorf("open gallery %s: %w", s.url, err)
	}
	if err := s.init(ctx); err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("open gallery %s: %w", s.url, err)
	}
	if s.ix, err = newIndexer(s); err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("open gallery %s: %w", s.url, err)
	}
	return s, nil
}

// redact names the database without its password.
func redact(cfg *pgxpool.Config) string {
	c := cfg.ConnConfig
	return fmt.Sprintf("postgres://%s@%s:%d/%s", c.User, c.Host, c.Port, c.Database)
}

// timeout is the bound of one operation (0: none).
func (s *Store) timeout() time.Duration {
	switch {
	case s.opts.Timeout == 0:
		return enroll.DefaultTimeout
	case s.opts.Timeout < 0:
		return 0
	}
	return s.opts.Timeout
}

// ctx returns the context of one operation.
func (s *Store) ctx() (context.Context, context.CancelFunc) {
	return s.ctxScaled(1)
}

// ctxScaled returns a context with n times the operation bound (for loads
// of the whole gallery).
func (s *Store) ctxScaled(n int) (context.Context, context.CancelFunc) {
	if d := s.timeout(); d > 0 {
		return context.WithTimeout(context.Background(), time.Duration(n)*d)
	}
	return context.WithCancel(context.Background())
}

// Close stops the index's upkeep and closes the connections.
func (s *Store) Close() error {
	var err error
	if s.ix != nil {
		err = s.ix.Close()
	}
	s.pool.Close()
	return err
}

// URL is the database's URL without the password.
func (s *Store) URL() string { return s.url }

// Pool is the connection pool (for the index's follower and tests).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Meta returns the gallery's description, as of Open or this Store's
// latest write.
func (s *Store) Meta() enroll.Meta {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.meta
}

// Version is the newest change this Store has committed or that an index
// it returned reflects.
func (s *Store) Version() uint64 {
	return max(s.committed.Load(), s.seen.Load())
}

// raise sets v to at least n.
func raise(v *atomic.Uint64, n uint64) {
	for {
		old := v.Load()
		if old >= n || v.CompareAndSwap(old, n) {
			return
		}
	}
}

// wtx is a write transaction: the changes it made are logged at the end.
type wtx struct {
	pgx.Tx
	ctx     context.Context
	changes []change
	dimSet  bool // the transaction recorded the gallery's dimension
}

func (w *wtx) log(kind string, identity, template uint64) {
	w.changes = append(w.changes, change{kind, identity, template})
}

// attempts is how many times an operation is tried when the database
// connection it got turns out to be dead (after a restart of the server,
// pooled connections are): only before anything was written.
const attempts = 3

// write runs fn in a write transaction (see the package comment) and, once
// it has committed, tells the index of its changes. A failure to begin the
// transaction or to take the lock (a dead pooled connection) is retried:
// nothing was written yet.
func (s *Store) write(what string, fn func(w *wtx) error) error {
	if s.opts.ReadOnly {
		return enroll.ErrReadOnly
	}
	ctx, cancel := s.ctx()
	defer cancel()
	for try := 1; ; try++ {
		last, logged, meta, started, err := s.writeOnce(ctx, fn)
		if err != nil {
			if !started && try < attempts && ctx.Err() == nil && lostConnection(err) {
				continue
			}
			return s.wrap(what, err)
		}
		if meta != nil {
			s.mu.Lock()
			s.meta = *meta
			s.mu.Unlock()
		}
		if last > 0 {
			raise(&s.committed, last)
			s.ix.Committed(last, logged)
		}
		return nil
	}
}

// lostConnection reports whether err is a lost connection (no answer, or
// the server's "terminating connection": classes 08 and 57) rather than an
// answer to the statement.
func lostConnection(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "57")
	}
	return !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled)
}

// writeOnce is one try of write; started reports whether the transaction
// got as far as holding the lock.
func (s *Store) writeOnce(ctx context.Context, fn func(w *wtx) error) (last uint64, logged []change, meta *enroll.Meta, started bool, err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, nil, nil, false, err
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", WriteLock); err != nil {
		return 0, nil, nil, false, err
	}
	w := &wtx{Tx: tx, ctx: ctx}
	if err := fn(w); err != nil {
		return 0, nil, nil, true, err
	}
	if w.dimSet {
		m, err := readMeta(ctx, tx)
		if err != nil {
			return 0, nil, nil, true, err
		}
		meta = &m
	}
	if len(w.changes) > 0 {
		kinds := make([]string, len(w.changes))
		ids := make([]int64, len(w.changes))
		tids := make([]int64, len(w.changes))
		for i, c := range w.changes {
			kinds[i], ids[i], tids[i] = c.kind, int64(c.identity), int64(c.template)
		}
		var seq int64
		err := tx.QueryRow(ctx, `WITH base AS (SELECT coalesce(max(seq), 0) AS b FROM facever.changes),
			ins AS (INSERT INTO facever.changes (seq, kind, identity_id, template_id)
				SELECT base.b + u.ord, u.kind, u.identity_id, u.template_id
				FROM base, unnest($1::text[], $2::int8[], $3::int8[]) WITH ORDINALITY AS u(kind, identity_id, template_id, ord)
				RETURNING seq)
			SELECT max(seq) FROM ins`, kinds, ids, tids).Scan(&seq)
		if err != nil {
			return 0, nil, nil, true, fmt.Errorf("change log: %w", err)
		}
		if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", NotifyChannel, fmt.Sprint(seq)); err != nil {
			return 0, nil, nil, true, err
		}
		last, logged = uint64(seq), w.changes
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, nil, nil, true, err
	}
	return last, logged, meta, true, nil
}

// read runs fn in a read-only transaction, again on a lost connection.
func (s *Store) read(what string, fn func(ctx context.Context, tx pgx.Tx) error) error {
	ctx, cancel := s.ctx()
	defer cancel()
	for try := 1; ; try++ {
		err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
			return fn(ctx, tx)
		})
		if err == nil {
			return nil
		}
		if try < attempts && ctx.Err() == nil && lostConnection(err) && !isSentinel(err) {
			continue
		}
		return s.wrap(what, err)
	}
}

// sentinels are the package enroll errors, passed on as they are.
var sentinels = []error{enroll.ErrNotFound, enroll.ErrExists, enroll.ErrInvalid, enroll.ErrTooLarge,
	enroll.ErrModelMismatch, enroll.ErrNoModel, enroll.ErrDimension, enroll.ErrReadOnly, enroll.ErrSchema,
	enroll.ErrTemplateNotFound, enroll.ErrOnceMismatch, enroll.ErrBadKey, enroll.ErrCorrupt, enroll.ErrNoCrop}

func isSentinel(err error) bool {
	for _, e := range sentinels {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// wrap gives a database error context; the package's sentinels pass as
// they are.
func (s *Store) wrap(what string, err error) error {
	if isSentinel(err) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "identities_name_key" {
		return fmt.Errorf("%s: %w", what, enroll.ErrExists)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: the database %s did not answer within %v: %w", what, s.url, s.timeout(), err)
	}
	return fmt.Errorf("%s: database %s: %w", what, s.url, err)
}

// now is the time of a write, at the database's precision.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }
