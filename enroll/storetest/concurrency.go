package storetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/facever/facever/enroll"
)

// testEnrollSameName: goroutines enrolling one new name at once end in one
// identity holding every template; AddIdentity of one new name at once
// succeeds once, the others get ErrExists.
func testEnrollSameName(t *testing.T, b Backend) {
	s := open(t, b, opts())
	workers, per := 8, 10
	if b.Short {
		per = 4
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers*per*2)
	start := make(chan struct{})
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			<-start
			for i := range per {
				if _, _, err := s.Enroll("shared", map[string]string{fmt.Sprint("w", w): "1"}, []enroll.Template{{Embedding: randEmb(rng, 8), Source: fmt.Sprint(w, "-", i)}}); err != nil {
					errs <- err
				}
				_, err := s.AddIdentity(fmt.Sprint("once-", i), nil)
				if err != nil && !errors.Is(err, enroll.ErrExists) {
					errs <- err
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	list := must(s.List())
	if len(list) != 1+per {
		t.Fatalf("%d identities, want %d", len(list), 1+per)
	}
	it := must(s.GetByName("shared"))
	if it.Templates != workers*per || len(it.Metadata) != workers {
		t.Errorf("shared: %d templates, %d metadata keys; want %d and %d", it.Templates, len(it.Metadata), workers*per, workers)
	}
	if n := len(must(s.Templates(it.ID))); n != workers*per {
		t.Errorf("shared holds %d templates, want %d", n, workers*per)
	}
	if ix := must(s.Index()); ix.Len() != workers*per || ix.Identities() != 1 {
		t.Errorf("index: %d templates of %d identities", ix.Len(), ix.Identities())
	}
}

// testPagingUnderInserts pages through more than 1,000 identities (by id
// and by name) while other goroutines insert, rename and remove people:
// every person present from start to end is listed exactly once per pass,
// in order.
func testPagingUnderInserts(t *testing.T, b Backend) {
	s := open(t, b, opts())
	people, passes := 1200, 4
	if b.Short {
		people, passes = 1050, 2
	}
	rng := rand.New(rand.NewPCG(8, 8))
	items := make([]enroll.BatchItem, people)
	for i := range items {
		items[i] = enroll.BatchItem{Name: fmt.Sprintf("person-%05d", 2*i), Template: enroll.Template{Embedding: randEmb(rng, 8)}}
	}
	res, err := s.EnrollBatch(items, false)
	if err != nil {
		t.Fatal(err)
	}
	stable := map[uint64]string{}
	for _, r := range res {
		stable[r.Identity.ID] = r.Identity.Name
	}
	if len(stable) != people {
		t.Fatalf("%d identities enrolled, want %d", len(stable), people)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var inserted atomic.Int64
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 3))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				// Names that sort between the stable ones, and after.
				name := fmt.Sprintf("person-%05d-%d-%d", 2*r.IntN(people)+1, w, i)
				it, err := s.AddIdentity(name, nil)
				if err != nil {
					t.Error(err)
					return
				}
				inserted.Add(1)
				switch i % 3 {
				case 1:
					err = s.Rename(it.ID, name+"-renamed")
				case 2:
					err = s.Remove(it.ID)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	// Each page waits for the next insert, so that writes land between
	// the pages of every pass.
	between := func() {
		target := inserted.Load() + 1
		for deadline := time.Now().Add(2 * time.Second); inserted.Load() < target && time.Now().Before(deadline); {
			time.Sleep(200 * time.Microsecond)
		}
	}
	for pass := range passes {
		limit := []int{37, 100, 1, 250}[pass%4]
		if limit == 1 && people > 1100 {
			limit = 7
		}
		seen := map[uint64]int{}
		var last uint64
		after := uint64(0)
		for {
			between()
			page, next, err := s.ListPage(after, limit)
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range page {
				if it.ID <= last {
					t.Fatalf("pass %d: id %d after %d", pass, it.ID, last)
				}
				last = it.ID
				seen[it.ID]++
			}
			if next == 0 {
				break
			}
			after = next
		}
		for id, name := range stable {
			if seen[id] != 1 {
				t.Fatalf("pass %d (limit %d): %s (id %d) listed %d times", pass, limit, name, id, seen[id])
			}
		}
		// By name: the stable names, each once, in byte order.
		names := map[string]int{}
		lastName, afterName := "", ""
		for {
			between()
			page, next, err := s.ListPrefix("person-", afterName, limit)
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range page {
				if it.Name <= lastName {
					t.Fatalf("pass %d: name %q after %q", pass, it.Name, lastName)
				}
				lastName = it.Name
				names[it.Name]++
			}
			if next == "" {
				break
			}
			afterName = next
		}
		for _, name := range stable {
			if names[name] != 1 {
				t.Fatalf("pass %d (limit %d): %s listed %d times by name", pass, limit, name, names[name])
			}
		}
	}
	if inserted.Load() == 0 {
		t.Error("no insert ran during the paging")
	}
	t.Logf("%d people, %d passes, %d identities inserted meanwhile", people, passes, inserted.Load())
}

// testReadYourWrites: after every acknowledged write, the next Search (and
// Index) from the writer sees it, while other goroutines search (loading
// indexes) and write all along: a removed identity is never returned, a
// new one is found, a renamed one has its new name, a removed template is
// gone.
func testReadYourWrites(t *testing.T, b Backend) {
	people, dim, rounds := 400, 64, 30
	if b.Short {
		people, rounds = 150, 12
	}
	s := open(t, b, opts())
	rng := rand.New(rand.NewPCG(11, 12))
	embs := map[uint64][]float32{}
	items := make([]enroll.BatchItem, 0, 2*people)
	for i := range people {
		for range 2 {
			items = append(items, enroll.BatchItem{Name: fmt.Sprintf("p%04d", i), Template: enroll.Template{Embedding: randEmb(rng, dim)}})
		}
	}
	res, err := s.EnrollBatch(items, false)
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, r := range res {
		if _, ok := embs[r.Identity.ID]; !ok {
			ids = append(ids, r.Identity.ID)
			embs[r.Identity.ID] = r.Template.Embedding
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var searches, noise atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(7, 7))
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			it, _, err := s.Enroll(fmt.Sprintf("noise-%d", i), nil, []enroll.Template{{Embedding: randEmb(r, dim)}})
			if err == nil {
				err = s.Remove(it.ID)
			}
			if err != nil {
				t.Error(err)
				return
			}
			noise.Add(1)
			time.Sleep(10 * time.Millisecond)
		}
	}()
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 99))
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.Search(randEmb(r, dim), 1); err != nil {
					t.Error(err)
					return
				}
				searches.Add(1)
			}
		}()
	}
	var failures []string
	fail := func(format string, args ...any) { failures = append(failures, fmt.Sprintf(format, args...)) }
	top := func(q []float32) (enroll.Match, bool) {
		ms, err := s.Search(q, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 0 {
			return enroll.Match{}, false
		}
		return ms[0], true
	}
	versionCheck := func(what string) {
		v := s.Version()
		ix, err := s.Index()
		if err != nil {
			t.Fatal(err)
		}
		if ix.Version() < v {
			fail("after %s: Index version %d < store version %d", what, ix.Version(), v)
		}
	}
	for round := range rounds {
		// Remove someone, then look for them with their own template,
		// several times over the next few milliseconds.
		k := rng.IntN(len(ids))
		victim := ids[k]
		ids[k] = ids[len(ids)-1]
		ids = ids[:len(ids)-1]
		if err := s.Remove(victim); err != nil {
			t.Fatal(err)
		}
		versionCheck("Remove")
		for _, wait := range []time.Duration{0, 2, 10} {
			time.Sleep(wait * time.Millisecond)
			if m, ok := top(embs[victim]); ok && m.IdentityID == victim {
				fail("round %d: removed identity %d found %v after the Remove returned", round, victim, wait*time.Millisecond)
			}
		}
		// Enroll someone new, then look for them.
		e := randEmb(rng, dim)
		it, ts, err := s.Enroll(fmt.Sprintf("new-%d", round), nil, []enroll.Template{{Embedding: e}, {Embedding: randEmb(rng, dim)}})
		if err != nil {
			t.Fatal(err)
		}
		versionCheck("Enroll")
		embs[it.ID] = e
		ids = append(ids, it.ID)
		for _, wait := range []time.Duration{0, 2, 10} {
			time.Sleep(wait * time.Millisecond)
			if m, ok := top(e); !ok || m.IdentityID != it.ID {
				fail("round %d: enrolled identity %d not found %v after the Enroll returned (top %+v)", round, it.ID, wait*time.Millisecond, m)
			}
		}
		// Rename someone: the next search has the new name.
		who := ids[rng.IntN(len(ids))]
		name := fmt.Sprintf("renamed-%d", round)
		if err := s.Rename(who, name); err != nil {
			t.Fatal(err)
		}
		versionCheck("Rename")
		if m, ok := top(embs[who]); !ok || m.IdentityID != who || m.Name != name {
			fail("round %d: after renaming %d to %q, Search says %+v", round, who, name, m)
		}
		// Remove the new person's first template: the next search finds
		// them (if at all) by the other one.
		if _, err := s.RemoveTemplate(it.ID, ts[0].ID); err != nil {
			t.Fatal(err)
		}
		versionCheck("RemoveTemplate")
		if m, ok := top(e); ok && m.TemplateID == ts[0].ID {
			fail("round %d: removed template %d still found", round, ts[0].ID)
		}
		embs[it.ID] = ts[1].Embedding
	}
	close(stop)
	wg.Wait()
	t.Logf("%d templates, %d rounds, %d background searches, %d background writes: %d failures", 2*people, rounds, searches.Load(), noise.Load(), len(failures))
	for i, f := range failures {
		if i == 10 {
			t.Errorf("... and %d more", len(failures)-10)
			break
		}
		t.Error(f)
	}
}
