package pgstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/facever/facever/enroll"
	"github.com/jackc/pgx/v5"
)

// The follower keeps a Store's index up to date with every change made
// through any node: a dedicated connection LISTENs on NotifyChannel and
// wakes it, a timer wakes it every PollInterval anyway (a notification
// alone is never trusted: one sent while the connection was down is lost),
// and each wake catches up by reading the change log after the last
// sequence applied, in one snapshot with the rows the changes name. The
// index is changed by enroll.Index.Apply, so searches of the previous one
// go on while the next is made.
func init() { newIndexer = newFollower }

// Follower timing (variables for the tests).
var (
	// PollInterval is how often a follower reads the change log even
	// without a notification.
	PollInterval = time.Second
	// staleAfter: a follower whose last successful catch-up is older than
	// this, or whose LISTEN connection is down, is stale.
	staleAfter = 3 * time.Second
	// pollTimeout bounds one catch-up of the follower's own loop.
	pollTimeout = 5 * time.Second
	// reconnectMax is the longest wait between two attempts to reconnect
	// the LISTEN connection.
	reconnectMax = time.Second
)

// catchUpBatch is the most changes one catch-up transaction applies (a
// node far behind loops).
const catchUpBatch = 20_000

// ErrStale is returned (wrapped) by Store.Health while the store has lost
// touch with the database: its index may miss changes made since.
var ErrStale = errors.New("the gallery's database cannot be reached: this node's index may be out of date")

// follower is the indexer that follows the change log.
type follower struct {
	s   *Store
	cur atomic.Pointer[enroll.Index]

	catching sync.Mutex // one catch-up at a time
	wake     chan struct{}
	cancel   context.CancelFunc
	done     sync.WaitGroup

	mu        sync.Mutex
	listening bool      // the LISTEN connection is up
	lastOK    time.Time // end of the last successful catch-up
	lastErr   error     // the last failure (nil after a success)
}

func newFollower(s *Store) (indexer, error) {
	ctx, cancel := s.ctxScaled(10)
	ix, err := s.loadCopy(ctx)
	cancel()
	if err != nil {
		return nil, err
	}
	f := &follower{s: s, wake: make(chan struct{}, 1), lastOK: time.Now()}
	f.cur.Store(ix)
	lctx, lcancel := context.WithCancel(context.Background())
	// Listening before Open returns: a node is never stale at birth, and
	// what was written since the load is caught up on at once.
	conn, err := f.connect(lctx)
	if err != nil {
		lcancel()
		return nil, err
	}
	f.cancel = lcancel
	f.done.Add(2)
	go f.listen(lctx, conn)
	go f.loop(lctx)
	return f, nil
}

// poke wakes the loop (without blocking: one pending wake is enough).
func (f *follower) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// listen keeps a connection LISTENing on NotifyChannel (conn, then new
// ones) and pokes the loop for every notification, and after every
// (re)connection, since the notifications sent while it was down are lost.
func (f *follower) listen(ctx context.Context, conn *pgx.Conn) {
	defer f.done.Done()
	wait := 50 * time.Millisecond
	for ctx.Err() == nil {
		var err error
		if conn == nil {
			conn, err = f.connect(ctx)
		}
		if err == nil {
			err = f.wait(ctx, conn)
			conn.Close(context.Background())
			conn = nil
			wait = 50 * time.Millisecond
		}
		f.setListening(false, err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, reconnectMax)
	}
}

// connect opens a connection of its own and LISTENs on it.
func (f *follower) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg := f.s.pool.Config().ConnConfig.Copy()
	cctx, cancel := context.WithTimeout(ctx, pollTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("listen for changes: %w", err)
	}
	if _, err := conn.Exec(cctx, "LISTEN "+NotifyChannel); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("listen for changes: %w", err)
	}
	f.setListening(true, nil)
	f.poke() // catch up on what was missed while not listening
	return conn, nil
}

// wait pokes the loop for every notification until the connection fails
// or ctx ends.
func (f *follower) wait(ctx context.Context, conn *pgx.Conn) error {
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("listen for changes: %w", err)
		}
		f.poke()
	}
}

func (f *follower) setListening(up bool, err error) {
	f.mu.Lock()
	f.listening = up
	if err != nil {
		f.lastErr = err
	}
	f.mu.Unlock()
}

// loop catches up on every wake and every PollInterval.
func (f *follower) loop(ctx context.Context) {
	defer f.done.Done()
	t := time.NewTicker(PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, pollTimeout)
		f.catchUp(cctx)
		cancel()
	}
}

// Index returns the followed index once it reflects seq (catching up at
// once when it does not yet: read-your-writes). When the database cannot
// be reached it returns the last index (see Health: the node is stale).
func (f *follower) Index(seq uint64) (*enroll.Index, error) {
	if ix := f.cur.Load(); ix.Version() >= seq {
		return ix, nil
	}
	ctx, cancel := f.s.ctx()
	defer cancel()
	f.catchUp(ctx)
	return f.cur.Load(), nil
}

// Committed wakes the loop; Index catches up itself when asked for a
// sequence it has not applied.
func (f *follower) Committed(uint64, []change) { f.poke() }

// Close stops the loop and the LISTEN connection.
func (f *follower) Close() error {
	f.cancel()
	f.done.Wait()
	return nil
}

// health reports the applied sequence and whether the node is stale.
func (f *follower) health() (uint64, bool, error) {
	applied := f.cur.Load().Version()
	f.mu.Lock()
	defer f.mu.Unlock()
	age := time.Since(f.lastOK)
	switch {
	case f.lastErr != nil:
		return applied, true, fmt.Errorf("%w (applied change %d; %v)", ErrStale, applied, f.lastErr)
	case !f.listening:
		return applied, true, fmt.Errorf("%w (applied change %d; not listening for changes)", ErrStale, applied)
	case age > staleAfter:
		return applied, true, fmt.Errorf("%w (applied change %d; last read of the change log %v ago)", ErrStale, applied, age.Round(time.Millisecond))
	}
	return applied, false, nil
}

// catchUp applies every change after the applied sequence, in batches,
// and records the outcome for health.
func (f *follower) catchUp(ctx context.Context) {
	f.catching.Lock()
	defer f.catching.Unlock()
	var err error
	for {
		var more bool
		if more, err = f.catchUpOnce(ctx); err != nil || !more {
			break
		}
	}
	f.mu.Lock()
	if err != nil {
		f.lastErr = fmt.Errorf("catch up on the change log: %w", err)
	} else {
		f.lastOK = time.Now()
		f.lastErr = nil
	}
	f.mu.Unlock()
}

// logRow is one row of the change log.
type logRow struct {
	seq      uint64
	kind     string
	identity uint64
	template uint64
}

// catchUpOnce applies up to catchUpBatch changes and reports whether more
// may follow.
func (f *follower) catchUpOnce(ctx context.Context) (more bool, err error) {
	cur := f.cur.Load()
	from := cur.Version()
	var log []logRow
	adds := map[uint64][]float32{} // template id → embedding (nil: gone)
	names := map[uint64]string{}   // identity id → name (absent: gone)
	err = pgx.BeginTxFunc(ctx, f.s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "SELECT seq, kind, identity_id, template_id FROM facever.changes WHERE seq > $1 ORDER BY seq LIMIT $2", int64(from), catchUpBatch)
		if err != nil {
			return err
		}
		var tids, iids []int64
		for rows.Next() {
			var r logRow
			var seq, iid, tid int64
			if err := rows.Scan(&seq, &r.kind, &iid, &tid); err != nil {
				rows.Close()
				return err
			}
			r.seq, r.identity, r.template = uint64(seq), uint64(iid), uint64(tid)
			log = append(log, r)
			switch r.kind {
			case KindAddTemplate:
				tids = append(tids, tid)
				iids = append(iids, iid)
			case KindRename:
				iids = append(iids, iid)
			}
		}
		if rows.Close(); rows.Err() != nil {
			return rows.Err()
		}
		if len(tids) > 0 {
			rows, err := tx.Query(ctx, "SELECT id, embedding FROM facever.templates WHERE id = ANY($1)", tids)
			if err != nil {
				return err
			}
			for rows.Next() {
				v := rows.RawValues()
				if len(v) != 2 || len(v[0]) != 8 || len(v[1])%4 != 0 {
					rows.Close()
					return fmt.Errorf("%w: a template row of unexpected shape", enroll.ErrCorrupt)
				}
				emb := make([]float32, len(v[1])/4)
				for i := range emb {
					emb[i] = math.Float32frombits(binary.LittleEndian.Uint32(v[1][4*i:]))
				}
				adds[binary.BigEndian.Uint64(v[0])] = emb
			}
			if rows.Close(); rows.Err() != nil {
				return rows.Err()
			}
		}
		if len(iids) > 0 {
			rows, err := tx.Query(ctx, "SELECT id, name FROM facever.identities WHERE id = ANY($1)", iids)
			if err != nil {
				return err
			}
			for rows.Next() {
				var id int64
				var name string
				if err := rows.Scan(&id, &name); err != nil {
					rows.Close()
					return err
				}
				names[uint64(id)] = name
			}
			if rows.Close(); rows.Err() != nil {
				return rows.Err()
			}
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	if len(log) == 0 {
		return false, nil
	}
	// The snapshot holds the state after the last change read: a row gone
	// from it was removed by a later change of this batch, so skipping
	// its add (or rename) gives the same end.
	changes := make([]enroll.Change, 0, len(log))
	for _, r := range log {
		if !f.s.opts.Shard.Owns(r.identity) {
			continue // another shard's identity (the sequence advances all the same)
		}
		switch r.kind {
		case KindAddTemplate:
			emb, ok := adds[r.template]
			name, named := names[r.identity]
			if ok && named {
				changes = append(changes, enroll.Change{Kind: enroll.AddTemplate, IdentityID: r.identity, TemplateID: r.template, Name: name, Embedding: emb})
			}
		case KindRemoveTemplate:
			changes = append(changes, enroll.Change{Kind: enroll.RemoveTemplate, IdentityID: r.identity, TemplateID: r.template})
		case KindRemoveIdentity:
			changes = append(changes, enroll.Change{Kind: enroll.RemoveIdentity, IdentityID: r.identity})
		case KindRename:
			if name, ok := names[r.identity]; ok {
				changes = append(changes, enroll.Change{Kind: enroll.RenameIdentity, IdentityID: r.identity, Name: name})
			}
		}
	}
	last := log[len(log)-1].seq
	if cur.Dim() == 0 && cur.Len() == 0 { // the first template fixes the dimension
		for _, c := range changes {
			if c.Kind == enroll.AddTemplate {
				cur = enroll.NewIndex(len(c.Embedding), 0)
				break
			}
		}
	}
	nx, err := cur.Apply(last, changes)
	if err != nil {
		return false, fmt.Errorf("apply changes %d..%d: %w", from+1, last, err)
	}
	f.cur.Store(nx)
	return len(log) == catchUpBatch, nil
}

// Health reports the change sequence the store's index has applied and
// whether the store is stale: it has lost the database (its LISTEN
// connection is down, or it could not read the change log for a while), so
// its index may miss changes made through other nodes; err then says why
// (it wraps ErrStale). Reads go on from the last index; writes fail.
func (s *Store) Health() (applied uint64, stale bool, err error) {
	if f, ok := s.ix.(*follower); ok {
		return f.health()
	}
	return s.Version(), false, nil
}
