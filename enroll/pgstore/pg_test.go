package pgstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/facever/facever/enroll"
	"github.com/facever/facever/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

// rounds scales the concurrency tests down under -race or -short.
func rounds(n int) int {
	if raceEnabled || testing.Short() {
		return max(n/4, 3)
	}
	return n
}

func connect(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func count(t testing.TB, c *pgx.Conn, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := c.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// Two nodes (Store handles with pools of their own) enrolling the same new
// name at once, from several goroutines each, end with one identity that
// holds every template; AddIdentity of one new name from both ends in one
// success and ErrExists.
func TestEnrollSameNameTwoHandles(t *testing.T) {
	url := pgtest.URL(t)
	nodes := []*Store{open(t, url), open(t, url)}
	const perNode = 3
	n := rounds(25)
	r := rand.New(rand.NewPCG(3, 4))
	for round := range n {
		name := fmt.Sprintf("person %d", round)
		var start, done sync.WaitGroup
		start.Add(1)
		ids := make(chan uint64, 2*perNode+2)
		errs := make(chan error, 2*perNode+2)
		for _, s := range nodes {
			for range perNode {
				done.Add(1)
				emb := vec(r, 16)
				go func() {
					defer done.Done()
					start.Wait()
					it, ts, err := s.Enroll(name, map[string]string{"round": strconv.Itoa(round)}, []enroll.Template{{Embedding: emb}})
					if err != nil {
						errs <- err
						return
					}
					if len(ts) != 1 || ts[0].IdentityID != it.ID {
						errs <- fmt.Errorf("enroll returned %+v %+v", it, ts)
					}
					ids <- it.ID
				}()
			}
			// And one AddIdentity per node of another new name.
			done.Add(1)
			go func() {
				defer done.Done()
				start.Wait()
				_, err := s.AddIdentity("solo "+name, nil)
				if err != nil && !errors.Is(err, enroll.ErrExists) {
					errs <- err
				}
				if err != nil {
					ids <- 0
				}
			}()
		}
		start.Done()
		done.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		close(ids)
		var first uint64
		refused := 0
		for id := range ids {
			if id == 0 {
				refused++
				continue
			}
			if first == 0 {
				first = id
			}
			if id != first {
				t.Fatalf("round %d: enrolls of one name made identities %d and %d", round, first, id)
			}
		}
		if refused != 1 {
			t.Fatalf("round %d: %d of 2 racing AddIdentity refused, want 1", round, refused)
		}
		it, err := nodes[1].GetByName(name)
		if err != nil || it.ID != first || it.Templates != 2*perNode {
			t.Fatalf("round %d: %+v %v, want identity %d with %d templates", round, it, err, first, 2*perNode)
		}
	}
	list, err := nodes[0].List()
	if err != nil || len(list) != 2*n {
		t.Fatalf("list: %d identities (%v), want %d", len(list), err, 2*n)
	}
	// Every write was logged: per round one add_identity per new name and
	// one add_template per enroll.
	c := connect(t, url)
	if got := count(t, c, "SELECT count(*) FROM facever.changes WHERE kind = 'add_identity'"); got != 2*n {
		t.Fatalf("%d add_identity changes, want %d", got, 2*n)
	}
	if got := count(t, c, "SELECT count(*) FROM facever.changes WHERE kind = 'add_template'"); got != 2*perNode*n {
		t.Fatalf("%d add_template changes, want %d", got, 2*perNode*n)
	}
}

// A new database is migrated by the first Open and not again by the next;
// read-only opens refuse an empty database, a newer schema and a foreign
// schema are refused, and the model recorded first is enforced.
func TestMigrations(t *testing.T) {
	url := pgtest.URL(t)
	if _, err := Open(url, enroll.Options{ReadOnly: true}); !errors.Is(err, enroll.ErrSchema) {
		t.Fatalf("read-only open of an empty database: %v, want ErrSchema", err)
	}
	c := connect(t, url)
	if n := count(t, c, "SELECT count(*) FROM pg_namespace WHERE nspname = 'facever'"); n != 0 {
		t.Fatal("a read-only open created the schema")
	}
	s := open(t, url)
	if m := s.Meta(); m.Schema != SchemaVersion() || m.Model != testModel || m.Created.IsZero() {
		t.Fatalf("meta %+v", m)
	}
	if _, _, err := s.Enroll("a", nil, []enroll.Template{{Embedding: []float32{1, 2, 3}}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for range 2 {
		s := open(t, url)
		if it, err := s.GetByName("a"); err != nil || it.Templates != 1 {
			t.Fatalf("after reopen: %+v %v", it, err)
		}
		s.Close()
	}
	if n := count(t, c, "SELECT count(*) FROM facever.migrations"); n != len(migrations) {
		t.Fatalf("%d migration rows, want %d", n, len(migrations))
	}
	ro, err := Open(url, enroll.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ro.AddIdentity("b", nil); !errors.Is(err, enroll.ErrReadOnly) {
		t.Fatalf("read-only write: %v", err)
	}
	ro.Close()
	// A gallery of schema 1 (as the first release made it): a read-only
	// open refuses it, the next read-write open migrates it, data intact.
	if _, err := c.Exec(context.Background(), `DELETE FROM facever.migrations WHERE version > 1;
		UPDATE facever.meta SET schema = 1;
		DROP TABLE facever.template_crops;
		ALTER TABLE facever.templates RESET (toast_tuple_target);
		ALTER TABLE facever.templates ALTER COLUMN embedding SET STORAGE EXTENDED`); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(url, enroll.Options{ReadOnly: true}); !errors.Is(err, enroll.ErrSchema) {
		t.Fatalf("read-only open of schema 1: %v, want ErrSchema", err)
	}
	s = open(t, url)
	if it, err := s.GetByName("a"); err != nil || it.Templates != 1 || s.Meta().Schema != SchemaVersion() {
		t.Fatalf("after migrating from schema 1: %+v %v %+v", it, err, s.Meta())
	}
	s.Close()
	if n := count(t, c, `SELECT count(*) FROM pg_class WHERE oid = 'facever.templates'::regclass
		AND 'toast_tuple_target=8160' = ANY (reloptions)`); n != 1 {
		t.Fatal("migration 2 did not set toast_tuple_target")
	}
	if n := count(t, c, "SELECT count(*) FROM facever.migrations"); n != len(migrations) {
		t.Fatalf("%d migration rows after migrating from 1, want %d", n, len(migrations))
	}
	if _, err := Open(url, enroll.Options{Model: testModel, Head: "other"}); !errors.Is(err, enroll.ErrModelMismatch) {
		t.Fatalf("other head: %v, want ErrModelMismatch", err)
	}
	if _, err := c.Exec(context.Background(), "INSERT INTO facever.migrations (version, name) VALUES (99, 'from the future')"); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(url, enroll.Options{Model: testModel}); !errors.Is(err, enroll.ErrSchema) {
		t.Fatalf("newer schema: %v, want ErrSchema", err)
	}
	foreign := pgtest.URL(t)
	fc := connect(t, foreign)
	if _, err := fc.Exec(context.Background(), "CREATE SCHEMA facever; CREATE TABLE facever.meta (x int)"); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(foreign, enroll.Options{Model: testModel}); !errors.Is(err, enroll.ErrSchema) {
		t.Fatalf("foreign schema: %v, want ErrSchema", err)
	}
	if _, err := Open("postgres://nobody@127.0.0.1:1/x?connect_timeout=2", enroll.Options{Timeout: 3 * time.Second}); err == nil {
		t.Fatal("open of a closed port succeeded")
	}
	if _, err := Open("mysql://what", enroll.Options{}); !errors.Is(err, enroll.ErrInvalid) {
		t.Fatalf("bad URL: %v, want ErrInvalid", err)
	}
}

// Nodes starting at once on a new database migrate it once (the migration
// lock); when they bring different models, exactly one model wins and the
// other nodes are refused.
func TestOpenRace(t *testing.T) {
	for round := range rounds(4) {
		url := pgtest.URL(t)
		const nodes = 6
		var wg sync.WaitGroup
		errs := make([]error, nodes)
		start := make(chan struct{})
		for i := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				model := testModel
				if i%2 == 1 {
					model = "another model"
				}
				s, err := Open(url, enroll.Options{Model: model})
				if err == nil {
					s.Close()
				}
				errs[i] = err
			}()
		}
		close(start)
		wg.Wait()
		ok := map[int]bool{}
		for i, err := range errs {
			switch {
			case err == nil:
				ok[i%2] = true
			case !errors.Is(err, enroll.ErrModelMismatch):
				t.Fatalf("round %d: node %d: %v", round, i, err)
			}
		}
		if len(ok) != 1 {
			t.Fatalf("round %d: both models opened: %v", round, errs)
		}
		c := connect(t, url)
		if n := count(t, c, "SELECT count(*) FROM facever.migrations"); n != len(migrations) {
			t.Fatalf("round %d: %d migration rows, want %d", round, n, len(migrations))
		}
	}
}

// Under concurrent writers on two nodes, the change log grows without gaps
// in commit order: a reader that polls "seq > last" never sees a sequence
// number skipped (a gap filled later would break a follower), and in the
// end every write's changes are there, 1..N, with the kinds the writes
// made; a write's Version is its last change.
func TestChangeOrder(t *testing.T) {
	url := pgtest.URL(t)
	nodes := []*Store{open(t, url), open(t, url)}
	writers, ops := 4, rounds(40)
	stop := make(chan struct{})
	readerErr := make(chan error, 1)
	var seen int64
	go func() {
		c, err := pgx.Connect(context.Background(), url)
		if err != nil {
			readerErr <- err
			return
		}
		defer c.Close(context.Background())
		last := int64(0)
		for {
			select {
			case <-stop:
				seen = last
				readerErr <- nil
				return
			default:
			}
			rows, err := c.Query(context.Background(), "SELECT seq FROM facever.changes WHERE seq > $1 ORDER BY seq", last)
			if err != nil {
				readerErr <- err
				return
			}
			seqs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			if err != nil {
				readerErr <- err
				return
			}
			for _, s := range seqs {
				if s != last+1 {
					readerErr <- fmt.Errorf("after change %d the reader saw %d: a gap", last, s)
					return
				}
				last = s
			}
		}
	}()
	var wg sync.WaitGroup
	var mu sync.Mutex
	want := map[string]int{}
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := nodes[w%2]
			r := rand.New(rand.NewPCG(uint64(w), 9))
			prev := uint64(0)
			note := func(kinds ...string) {
				mu.Lock()
				for _, k := range kinds {
					want[k]++
				}
				mu.Unlock()
				if v := s.Version(); v <= prev {
					t.Errorf("writer %d: version %d after %d", w, v, prev)
				} else {
					prev = v
				}
			}
			for i := range ops {
				name := fmt.Sprintf("w%d-%d", w, i)
				it, ts, err := s.Enroll(name, nil, []enroll.Template{{Embedding: vec(r, 8)}, {Embedding: vec(r, 8)}})
				if err != nil {
					t.Error(err)
					return
				}
				note(KindAddIdentity, KindAddTemplate, KindAddTemplate)
				switch i % 4 {
				case 1:
					if err := s.Rename(it.ID, name+" renamed"); err != nil {
						t.Error(err)
						return
					}
					note(KindRename)
				case 2:
					if _, err := s.RemoveTemplate(it.ID, ts[0].ID); err != nil {
						t.Error(err)
						return
					}
					note(KindRemoveTemplate)
				case 3:
					if err := s.Remove(it.ID); err != nil {
						t.Error(err)
						return
					}
					note(KindRemoveIdentity)
				}
			}
		}()
	}
	wg.Wait()
	// Let the reader catch up with the last commit, then stop it.
	time.Sleep(200 * time.Millisecond)
	close(stop)
	if err := <-readerErr; err != nil {
		t.Fatal(err)
	}
	c := connect(t, url)
	total := count(t, c, "SELECT count(*) FROM facever.changes")
	if int64(total) != seen || count(t, c, "SELECT max(seq) FROM facever.changes") != total {
		t.Fatalf("%d changes, max seq %d, the reader saw %d", total, count(t, c, "SELECT max(seq) FROM facever.changes"), seen)
	}
	for kind, n := range want {
		if got := count(t, c, "SELECT count(*) FROM facever.changes WHERE kind = $1", kind); got != n {
			t.Errorf("%d %s changes, want %d", got, kind, n)
		}
	}
	// The template of every add_template that was not removed exists.
	if n := count(t, c, `SELECT count(*) FROM facever.changes c WHERE kind = 'add_template'
		AND NOT EXISTS (SELECT 1 FROM facever.templates t WHERE t.id = c.template_id)
		AND NOT EXISTS (SELECT 1 FROM facever.changes r WHERE r.seq > c.seq AND (r.kind = 'remove_template' AND r.template_id = c.template_id
			OR r.kind = 'remove_identity' AND r.identity_id = c.identity_id))`); n != 0 {
		t.Fatalf("%d add_template changes name a template that is gone without a removal", n)
	}
	if v := max(nodes[0].Version(), nodes[1].Version()); int(v) != total {
		t.Fatalf("newest version %d, want %d", v, total)
	}
}

// The gap check of TestChangeOrder catches what it is for: with a plain
// sequence and no lock, transactions that commit out of order leave gaps
// a polling reader sees.
func TestChangeOrderCheckCanFail(t *testing.T) {
	url := pgtest.URL(t)
	c := connect(t, url)
	ctx := context.Background()
	if _, err := c.Exec(ctx, "CREATE TABLE log (seq bigserial PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wc, err := pgx.Connect(ctx, url)
			if err != nil {
				t.Error(err)
				return
			}
			defer wc.Close(ctx)
			for i := range 40 {
				tx, err := wc.Begin(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				tx.Exec(ctx, "INSERT INTO log DEFAULT VALUES")
				time.Sleep(time.Duration((w*7+i)%5) * time.Millisecond)
				tx.Commit(ctx)
			}
		}()
	}
	gap := false
	last := int64(0)
	deadline := time.Now().Add(20 * time.Second)
	for !gap && last < 160 && time.Now().Before(deadline) {
		rows, _ := c.Query(ctx, "SELECT seq FROM log WHERE seq > $1 ORDER BY seq", last)
		seqs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range seqs {
			if s != last+1 {
				gap = true
			}
			last = s
		}
	}
	wg.Wait()
	if !gap {
		t.Fatal("no gap seen without the lock: the check in TestChangeOrder proves nothing")
	}
}

// Every write notifies facever_changes with its last change, after it has
// committed; another node's Index sees the write at once.
func TestNotify(t *testing.T) {
	url := pgtest.URL(t)
	a, b := open(t, url), open(t, url)
	l := connect(t, url)
	ctx := context.Background()
	if _, err := l.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 5 {
		emb := vec(r, 8)
		it, _, err := a.Enroll(fmt.Sprintf("p%d", i), nil, []enroll.Template{{Embedding: emb}})
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := l.WaitForNotification(wctx)
		cancel()
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		if n.Channel != NotifyChannel || n.Payload != strconv.FormatUint(a.Version(), 10) {
			t.Fatalf("notification %s %q, want %s %d", n.Channel, n.Payload, NotifyChannel, a.Version())
		}
		var seq int64
		if err := l.QueryRow(ctx, "SELECT max(seq) FROM facever.changes").Scan(&seq); err != nil || strconv.FormatInt(seq, 10) != n.Payload {
			t.Fatalf("notified %s before change %d was visible (%v)", n.Payload, seq, err)
		}
		// b follows the log (follow.go): the write is in its index within
		// 1 s (the bound; TestFollowLag measures it).
		var m []enroll.Match
		waitFor(time.Second, func() bool {
			m, err = b.Search(emb, 1)
			return err == nil && len(m) == 1 && m[0].IdentityID == it.ID
		})
		if err != nil || len(m) != 1 || m[0].IdentityID != it.ID {
			t.Fatalf("node b: %+v %v, want identity %d within 1 s", m, err, it.ID)
		}
		if b.Version() < a.Version() {
			t.Fatalf("node b at version %d after a search, a wrote %d", b.Version(), a.Version())
		}
	}
	// A write that changes nothing notifies nothing.
	if err := a.Rename(1, "p0"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if n, err := l.WaitForNotification(wctx); err == nil {
		t.Fatalf("a rename to the same name notified %q", n.Payload)
	}
}

// A store outlives a restart of the server: its pooled connections die,
// the next calls reconnect (retrying what had not started), and nothing
// acknowledged before the restart or a crash of the server is lost.
func TestServerRestart(t *testing.T) {
	cl := pgtest.Start(t)
	url := cl.URL(t)
	s := open(t, url)
	r := rand.New(rand.NewPCG(7, 8))
	enrolled := 0
	enroll1 := func() {
		t.Helper()
		if _, _, err := s.Enroll(fmt.Sprintf("p%d", enrolled), nil, []enroll.Template{{Embedding: vec(r, 8)}}); err != nil {
			t.Fatal(err)
		}
		enrolled++
	}
	for _, fault := range []func() error{cl.Restart, func() error {
		if err := cl.Crash(); err != nil {
			return err
		}
		return cl.Start()
	}} {
		enroll1()
		if _, err := s.Index(); err != nil {
			t.Fatal(err)
		}
		if err := fault(); err != nil {
			t.Fatal(err)
		}
		enroll1()
		ix, err := s.Index()
		if err != nil {
			t.Fatal(err)
		}
		if ix.Len() != enrolled {
			t.Fatalf("index holds %d templates after the fault, %d were enrolled", ix.Len(), enrolled)
		}
		list, err := s.List()
		if err != nil || len(list) != enrolled {
			t.Fatalf("list: %d (%v), want %d", len(list), err, enrolled)
		}
	}
	// A paused server makes calls fail after the timeout, not hang.
	short, err := Open(url, enroll.Options{Model: testModel, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer short.Close()
	if err := cl.Pause(); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	_, err = short.Get(1)
	if err := cl.Resume(); err != nil {
		t.Fatal(err)
	}
	if err == nil || time.Since(t0) > 5*time.Second {
		t.Fatalf("get from a paused server: %v after %v", err, time.Since(t0))
	}
	if _, err := short.Get(1); err != nil {
		t.Fatalf("after resume: %v", err)
	}
}
