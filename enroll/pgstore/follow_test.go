package pgstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/facever/facever/enroll"
	"github.com/facever/facever/internal/pgtest"
)

// sameAnswers checks that index got answers like index want (a fresh load
// of the database): same counts, and the same matches, in the same order,
// for every query at every k.
func sameAnswers(t *testing.T, what string, got, want *enroll.Index, queries [][]float32) {
	t.Helper()
	if got.Len() != want.Len() || got.Identities() != want.Identities() {
		t.Fatalf("%s: %d templates of %d identities, the database %d of %d", what, got.Len(), got.Identities(), want.Len(), want.Identities())
	}
	if want.Len() == 0 {
		return
	}
	gs, ws := got.NewSearcher(), want.NewSearcher()
	defer gs.Close()
	defer ws.Close()
	for _, k := range []int{1, want.Identities() + 1} {
		for i, q := range queries {
			g, err := gs.Search(q, k)
			if err != nil {
				t.Fatal(err)
			}
			w, err := ws.Search(q, k)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(g, w) {
				t.Fatalf("%s: query %d k=%d: followed %+v\n  fresh %+v", what, i, k, g, w)
			}
		}
	}
}

// waitFor polls cond every millisecond until it holds or d has passed.
func waitFor(d time.Duration, cond func() bool) bool {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if cond() {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return cond()
}

// headSeq is the newest change in the log.
func headSeq(t *testing.T, s *Store) uint64 {
	t.Helper()
	h, err := s.head()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestFollowTwoNodes: two Stores on one database, writing in turn
// (enrolls, added templates, removed templates and identities, renames):
// after each write, each node's followed index answers every query as a
// fresh load of the database does, once it has applied the log's head;
// each node reads its own writes at once.
func TestFollowTwoNodes(t *testing.T) {
	url := pgtest.URL(t)
	a, b := open(t, url), open(t, url)
	nodes := []*Store{a, b}
	// Two nodes each keeping half the index (enroll.Options.Shard).
	var halves []*Store
	for i := range 2 {
		h, err := Open(url, enroll.Options{Model: testModel, Shard: enroll.Shard{Index: i, Count: 2}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		halves = append(halves, h)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	const dim = 16
	var queries [][]float32
	for range 6 {
		queries = append(queries, vec(rng, dim))
	}
	rounds := 120
	if raceEnabled {
		rounds = 40
	}
	for round := range rounds {
		w := nodes[round%2]
		ids, err := w.List()
		if err != nil {
			t.Fatal(err)
		}
		var probe []float32 // a template the write adds, to read back
		switch p := rng.IntN(10); {
		case p < 4 || len(ids) < 3:
			emb := vec(rng, dim)
			_, _, err = w.Enroll(fmt.Sprintf("p%d", rng.IntN(40)), nil, []enroll.Template{{Embedding: emb}, {Embedding: vec(rng, dim)}})
			probe = emb
		case p < 6:
			emb := vec(rng, dim)
			_, err = w.AddTemplates(ids[rng.IntN(len(ids))].ID, []enroll.Template{{Embedding: emb}})
			probe = emb
		case p < 7:
			it := ids[rng.IntN(len(ids))]
			var ts []enroll.Template
			if ts, err = w.Templates(it.ID); err == nil && len(ts) > 0 {
				_, err = w.RemoveTemplate(it.ID, ts[rng.IntN(len(ts))].ID)
			}
		case p < 8:
			err = w.Remove(ids[rng.IntN(len(ids))].ID)
		default:
			err = w.Rename(ids[rng.IntN(len(ids))].ID, fmt.Sprintf("r%d-%d", round, rng.IntN(1000)))
		}
		if err != nil && !errors.Is(err, enroll.ErrExists) {
			t.Fatalf("round %d: %v", round, err)
		}
		if probe != nil { // read-your-writes on the writing node
			m, err := w.Search(probe, 1)
			if err != nil || len(m) != 1 || m[0].Score < 0.9999 {
				t.Fatalf("round %d: the writer does not find its own template: %+v %v", round, m, err)
			}
		}
		head := headSeq(t, a)
		fresh, err := a.LoadIndex()
		if err != nil {
			t.Fatal(err)
		}
		for i, n := range nodes {
			f := n.ix.(*follower)
			if !waitFor(2*time.Second, func() bool { return f.cur.Load().Version() >= head }) {
				t.Fatalf("round %d: node %d applied %d, the log is at %d", round, i, f.cur.Load().Version(), head)
			}
			ix, err := n.Index()
			if err != nil {
				t.Fatal(err)
			}
			sameAnswers(t, fmt.Sprintf("round %d node %d", round, i), ix, fresh, queries)
			if applied, stale, err := n.Health(); stale || err != nil || applied < head {
				t.Fatalf("round %d node %d: health %d %v %v", round, i, applied, stale, err)
			}
		}
		// The halves hold exactly their identities' templates, and between
		// them everything.
		total := 0
		for i, h := range halves {
			f := h.ix.(*follower)
			if !waitFor(2*time.Second, func() bool { return f.cur.Load().Version() >= head }) {
				t.Fatalf("round %d: half %d applied %d, the log is at %d", round, i, f.cur.Load().Version(), head)
			}
			ix := f.cur.Load()
			total += ix.Len()
			sr := ix.NewSearcher()
			for _, q := range queries {
				ms, _ := sr.Search(q, 1000)
				for _, m := range ms {
					if enroll.ShardOf(m.IdentityID, 2) != i {
						t.Fatalf("round %d: half %d holds identity %d", round, i, m.IdentityID)
					}
				}
			}
			sr.Close()
		}
		if total != fresh.Len() {
			t.Fatalf("round %d: the halves hold %d templates, the gallery %d", round, total, fresh.Len())
		}
	}
	// A node opened now (a restart) loads the same.
	c := open(t, url)
	ix, err := c.Index()
	if err != nil {
		t.Fatal(err)
	}
	fresh, _ := a.LoadIndex()
	sameAnswers(t, "restarted node", ix, fresh, queries)
	t.Logf("%d rounds, %d templates of %d identities at the end, log at %d", rounds, ix.Len(), ix.Identities(), headSeq(t, a))
}

// TestFollowWithoutNotify: a change logged without a notification (as if it
// were lost) is applied by the poll within PollInterval; a LISTEN
// connection killed by the server is re-established and what was written
// meanwhile is applied.
func TestFollowWithoutNotify(t *testing.T) {
	url := pgtest.URL(t)
	a, b := open(t, url), open(t, url)
	rng := rand.New(rand.NewPCG(7, 8))
	it, _, err := a.Enroll("x", nil, []enroll.Template{{Embedding: vec(rng, 8)}})
	if err != nil {
		t.Fatal(err)
	}
	// A template and its change row, written behind the stores' back with
	// no pg_notify.
	emb := vec(rng, 8)
	ctx := context.Background()
	var tid int64
	if err := a.Pool().QueryRow(ctx, `INSERT INTO facever.templates (identity_id, embedding, created) VALUES ($1, $2, now()) RETURNING id`,
		int64(it.ID), encodeLE(emb)).Scan(&tid); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Pool().Exec(ctx, `INSERT INTO facever.changes (seq, kind, identity_id, template_id)
		SELECT coalesce(max(seq), 0) + 1, 'add_template', $1, $2 FROM facever.changes`, int64(it.ID), tid); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	found := func(s *Store) bool {
		ix := s.ix.(*follower).cur.Load()
		sr := ix.NewSearcher()
		defer sr.Close()
		m, err := sr.Search(emb, 1)
		return err == nil && len(m) == 1 && m[0].TemplateID == uint64(tid)
	}
	if !waitFor(PollInterval+time.Second, func() bool { return found(b) }) {
		t.Fatal("a change without a notification was not applied by the poll")
	}
	t.Logf("change without notification applied after %v (poll every %v)", time.Since(start).Round(time.Millisecond), PollInterval)

	// Kill b's LISTEN connection from the server side.
	var killed int
	if err := a.Pool().QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE query = 'LISTEN facever_changes' AND datname = current_database()`).Scan(&killed); err != nil || killed < 2 {
		t.Fatalf("terminated %d LISTEN connections: %v", killed, err)
	}
	emb2 := vec(rng, 8)
	if _, err := a.AddTemplates(it.ID, []enroll.Template{{Embedding: emb2}}); err != nil {
		t.Fatal(err)
	}
	emb = emb2
	if !waitFor(3*time.Second, func() bool { return found(b) || searchTop(b, emb2) > 0.9999 }) {
		t.Fatal("a write after the LISTEN connection was killed was not applied")
	}
	if !waitFor(3*time.Second, func() bool { _, stale, _ := b.Health(); return !stale }) {
		_, _, err := b.Health()
		t.Fatalf("still stale after reconnecting: %v", err)
	}
}

// searchTop is the best score of query in s's followed index.
func searchTop(s *Store, query []float32) float32 {
	sr := s.ix.(*follower).cur.Load().NewSearcher()
	defer sr.Close()
	m, err := sr.Search(query, 1)
	if err != nil || len(m) == 0 {
		return -1
	}
	return m[0].Score
}

// encodeLE is the gallery's embedding encoding (little-endian float32s).
func encodeLE(e []float32) []byte {
	var buf bytes.Buffer
	for _, x := range e {
		u := math.Float32bits(x)
		buf.Write([]byte{byte(u), byte(u >> 8), byte(u >> 16), byte(u >> 24)})
	}
	return buf.Bytes()
}

// TestFollowLostDatabase: with the database stopped, a node keeps
// answering from its last index, reports itself stale (Health), and its
// writes fail; once the database is back it catches up with what another
// node wrote and is no longer stale. The same after a pause (SIGSTOP).
func TestFollowLostDatabase(t *testing.T) {
	saved := staleAfter
	staleAfter = 1500 * time.Millisecond
	defer func() { staleAfter = saved }()
	c := pgtest.Start(t)
	url := c.URL(t)
	opts := enroll.Options{Model: testModel, Timeout: 2 * time.Second}
	a, err := Open(url, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(url, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rng := rand.New(rand.NewPCG(9, 10))
	emb := vec(rng, 8)
	if _, _, err := a.Enroll("before", nil, []enroll.Template{{Embedding: emb}}); err != nil {
		t.Fatal(err)
	}
	if !waitFor(2*time.Second, func() bool { m, _ := b.Search(emb, 1); return len(m) == 1 && m[0].Name == "before" }) {
		t.Fatal("b did not follow")
	}
	for _, fault := range []string{"stop", "pause"} {
		var err error
		if fault == "stop" {
			err = c.Stop()
		} else {
			err = c.Pause()
		}
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if !waitFor(staleAfter+pollTimeout+2*time.Second, func() bool { _, stale, _ := b.Health(); return stale }) {
			t.Fatalf("%s: b does not know it is stale", fault)
		}
		applied, _, herr := b.Health()
		t.Logf("%s: stale after %v: %v", fault, time.Since(start).Round(time.Millisecond), herr)
		if !errors.Is(herr, ErrStale) {
			t.Fatalf("%s: health error %v", fault, herr)
		}
		// Reads go on from the last index.
		t0 := time.Now()
		if m, err := b.Search(emb, 1); err != nil || len(m) != 1 || m[0].Name != "before" {
			t.Fatalf("%s: read while the database is down: %+v %v", fault, m, err)
		}
		if d := time.Since(t0); d > 100*time.Millisecond {
			t.Errorf("%s: a read took %v with the database down", fault, d)
		}
		if _, _, err := b.Enroll("during", nil, []enroll.Template{{Embedding: vec(rng, 8)}}); err == nil {
			t.Fatalf("%s: a write succeeded with the database down", fault)
		} else {
			t.Logf("%s: write refused: %v", fault, err)
		}
		if fault == "stop" {
			err = c.Start()
		} else {
			err = c.Resume()
		}
		if err != nil {
			t.Fatal(err)
		}
		// Another node writes; b catches up and is fresh again.
		emb2 := vec(rng, 8)
		var werr error
		if !waitFor(10*time.Second, func() bool {
			_, _, werr = a.Enroll("after-"+fault, nil, []enroll.Template{{Embedding: emb2}})
			return werr == nil
		}) {
			t.Fatalf("%s: a write after the restart: %v", fault, werr)
		}
		if !waitFor(5*time.Second, func() bool {
			m, _ := b.Search(emb2, 1)
			_, stale, _ := b.Health()
			return len(m) == 1 && m[0].Name == "after-"+fault && !stale
		}) {
			_, stale, herr := b.Health()
			t.Fatalf("%s: b did not catch up after the database came back (stale %v: %v)", fault, stale, herr)
		}
		if now, _, _ := b.Health(); now <= applied {
			t.Fatalf("%s: applied %d after, %d before", fault, now, applied)
		}
	}
}

// TestFollowLag: an enroll acknowledged by node A is found by an identify on
// node B (another Store, its own connections and LISTEN) within 1 s; the
// lag distribution is logged.
func TestFollowLag(t *testing.T) {
	url := pgtest.URL(t)
	a, b := open(t, url), open(t, url)
	rng := rand.New(rand.NewPCG(11, 12))
	rounds := 300
	if raceEnabled {
		rounds = 60
	}
	// A gallery of some size, so that applying is not free.
	var items []enroll.BatchItem
	for i := range 2000 {
		items = append(items, enroll.BatchItem{Name: fmt.Sprint("base", i), Template: enroll.Template{Embedding: vec(rng, 128)}})
	}
	if _, err := a.EnrollBatch(items, false); err != nil {
		t.Fatal(err)
	}
	lags := make([]time.Duration, 0, rounds)
	for i := range rounds {
		emb := vec(rng, 128)
		name := fmt.Sprint("new", i)
		if _, _, err := a.Enroll(name, nil, []enroll.Template{{Embedding: emb}}); err != nil {
			t.Fatal(err)
		}
		acked := time.Now()
		for {
			m, err := b.Search(emb, 1)
			if err != nil {
				t.Fatal(err)
			}
			if len(m) == 1 && m[0].Name == name {
				break
			}
			if time.Since(acked) > 5*time.Second {
				t.Fatalf("round %d: B has not found A's enroll after 5 s", i)
			}
			time.Sleep(200 * time.Microsecond)
		}
		lags = append(lags, time.Since(acked))
	}
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	q := func(p float64) time.Duration { return lags[min(len(lags)-1, int(p*float64(len(lags))))] }
	t.Logf("enroll on A → found by identify on B, %d rounds over 2,000+ identities (128-d): p50 %v, p90 %v, p99 %v, max %v",
		rounds, q(0.5), q(0.9), q(0.99), lags[len(lags)-1])
	if q(0.99) > time.Second {
		t.Errorf("p99 lag %v > 1 s", q(0.99))
	}
}
