package pgstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/facever/facever/enroll"
	"github.com/jackc/pgx/v5"
)

// indexer keeps a Store's in-memory index: the seam between the store and
// the index's upkeep (see NOTES-pg.md). The default, reloader, loads the
// whole gallery again whenever the change log has moved; the follower
// (follow*.go) replaces it by setting newIndexer in an init function.
type indexer interface {
	// Index returns an index that reflects every change up to at least
	// seq (read-your-writes: seq is the Store's Version).
	Index(seq uint64) (*enroll.Index, error)
	// Committed is told, after the commit, of each write of this Store:
	// seq is its last change, changes are its rows in order (seq-len+1 ..
	// seq).
	Committed(seq uint64, changes []change)
	// Close stops the upkeep (Store.Close).
	Close() error
}

// newIndexer makes the indexer of a Store at the end of Open.
var newIndexer = func(s *Store) (indexer, error) { return &reloader{s: s}, nil }

// reloader is the plain indexer: an index cached until the change log
// moves past it, then loaded again whole (one load at a time).
type reloader struct {
	s       *Store
	mu      sync.Mutex
	index   *enroll.Index
	loading sync.Mutex
}

func (r *reloader) cached(seq uint64) *enroll.Index {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.index != nil && r.index.Version() >= seq {
		return r.index
	}
	return nil
}

func (r *reloader) Index(seq uint64) (*enroll.Index, error) {
	head, err := r.s.head()
	if err != nil {
		return nil, err
	}
	seq = max(seq, head)
	if ix := r.cached(seq); ix != nil {
		return ix, nil
	}
	r.loading.Lock()
	defer r.loading.Unlock()
	if ix := r.cached(seq); ix != nil {
		return ix, nil
	}
	ix, err := r.s.LoadIndex()
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	if r.index == nil || ix.Version() > r.index.Version() {
		r.index = ix
	}
	r.mu.Unlock()
	return ix, nil
}

func (r *reloader) Committed(uint64, []change) {}

func (r *reloader) Close() error { return nil }

// head is the newest change in the log.
func (s *Store) head() (uint64, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	for try := 1; ; try++ {
		var seq int64
		err := s.pool.QueryRow(ctx, "SELECT coalesce(max(seq), 0) FROM facever.changes").Scan(&seq)
		if err == nil {
			return uint64(seq), nil
		}
		if try == attempts || ctx.Err() != nil || !lostConnection(err) {
			return 0, s.wrap("read the change log", err)
		}
	}
}

// Index returns an index of the gallery as of Version or later: after a
// write through this Store has returned, the index holds it. The caller
// must not Add to it.
func (s *Store) Index() (*enroll.Index, error) {
	ix, err := s.ix.Index(s.Version())
	if err != nil {
		return nil, err
	}
	raise(&s.seen, ix.Version())
	return ix, nil
}

// Search returns the best k identities for query, using the index of
// Index.
func (s *Store) Search(query []float32, k int) ([]enroll.Match, error) {
	ix, err := s.Index()
	if err != nil {
		return nil, err
	}
	sr := ix.NewSearcher()
	defer sr.Close()
	m, err := sr.Search(query, k)
	return append([]enroll.Match(nil), m...), err
}

// LoadIndex reads every template into a new in-memory index, in one
// snapshot of the database: its Version is the last change that snapshot
// holds. One query streams the rows (embeddings as bytea, in binary, by
// template id) into an index sized beforehand.
func (s *Store) LoadIndex() (*enroll.Index, error) {
	ctx, cancel := s.ctxScaled(10)
	defer cancel()
	for try := 1; ; try++ {
		ix, err := s.loadIndex(ctx)
		if err == nil {
			return ix, nil
		}
		if try == attempts || ctx.Err() != nil || !lostConnection(err) || isSentinel(err) {
			return nil, s.wrap("load index", err)
		}
	}
}

// loadIndex is one try of LoadIndex.
func (s *Store) loadIndex(ctx context.Context) (*enroll.Index, error) {
	var ix *enroll.Index
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var seq, n int64
		var dim int
		if err := tx.QueryRow(ctx, `SELECT coalesce((SELECT max(seq) FROM facever.changes), 0),
			(SELECT count(*) FROM facever.templates), (SELECT dim FROM facever.meta)`).Scan(&seq, &n, &dim); err != nil {
			return err
		}
		if n > 0 && dim <= 0 {
			return fmt.Errorf("%w: %d templates but no dimension recorded", enroll.ErrCorrupt, n)
		}
		if sh := s.opts.Shard; sh.Sharded() {
			n = n/int64(sh.Count) + n/int64(8*sh.Count) + 16 // this node's share, with room
		}
		ix = enroll.NewIndex(dim, int(n))
		ix.SetVersion(uint64(seq))
		// By template id: an identity's rows in enrolment order (the first
		// of equal scores is its oldest template), as the follower loads
		// them. The primary key's order is about the heap's (ids grow as
		// rows are appended): a nearly sequential read, no sort.
		rows, err := tx.Query(ctx, `SELECT t.identity_id, i.name, t.id, t.embedding
			FROM facever.templates t JOIN facever.identities i ON i.id = t.identity_id
			ORDER BY t.id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		// The ids and the embedding in binary (text comes as its bytes
		// either way).
		for i, f := range rows.FieldDescriptions() {
			if i != 1 && f.Format != pgx.BinaryFormatCode {
				return fmt.Errorf("load index: column %s came in text format", f.Name)
			}
		}
		emb := make([]float32, dim)
		var name string
		prev := uint64(0)
		for rows.Next() {
			v := rows.RawValues()
			if len(v) != 4 || len(v[0]) != 8 || len(v[2]) != 8 {
				return fmt.Errorf("load index: unexpected row shape")
			}
			iid, tid := binary.BigEndian.Uint64(v[0]), binary.BigEndian.Uint64(v[2])
			if !s.opts.Shard.Owns(iid) {
				continue // another shard's (enroll.Options.Shard)
			}
			if len(v[3]) != 4*dim {
				return fmt.Errorf("%w: template %d of identity %d has %d bytes, the gallery's dimension %d needs %d", enroll.ErrCorrupt, tid, iid, len(v[3]), dim, 4*dim)
			}
			if iid != prev || name == "" {
				name, prev = string(v[1]), iid
			}
			decodeEmbedding(v[3], emb)
			if err := ix.Add(iid, name, tid, emb); err != nil {
				return fmt.Errorf("%w: %v", enroll.ErrCorrupt, err)
			}
		}
		return rows.Err()
	})
	return ix, err
}
