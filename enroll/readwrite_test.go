package enroll

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// fillGallery enrolls people identities of per templates each (dim values),
// in transactions of 500 identities, and returns every identity's templates.
func fillGallery(t testing.TB, g *Gallery, rng *rand.Rand, people, per, dim int) map[uint64][][]float32 {
	t.Helper()
	embs := map[uint64][][]float32{}
	for start := 0; start < people; start += 500 {
		err := g.update(func(tx *bolt.Tx) error {
			for i := start; i < min(people, start+500); i++ {
				it, err := createIdentity(tx, fmt.Sprintf("person-%05d", i), nil, g.limits())
				if err != nil {
					return err
				}
				ts := make([]Template, per)
				for j := range ts {
					ts[j].Embedding = randEmb(rng, dim)
					embs[it.ID] = append(embs[it.ID], ts[j].Embedding)
				}
				if _, err := g.addTemplates(tx, &it, ts); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return embs
}

// TestReadYourWrites races index loads (Search from background goroutines,
// each reloading the index after every write) against deletes and enrolls
// on a gallery of 10,000 templates (2,000 under -race), and checks after
// every acknowledged write that the next Search from the writer sees it, while
// another goroutine enrolls and removes other people all along: a
// removed identity is never returned, a new one is found. Before the index
// was tied to its transaction, a load that began before a write could be
// installed after it and served until the next write.
func TestReadYourWrites(t *testing.T) {
	people, per, dim, rounds := 2500, 4, 512, 40
	if raceEnabled {
		people, per, dim, rounds = 500, 4, 128, 30
	}
	if testing.Short() {
		rounds /= 3
	}
	g := openTest(t, filepath.Join(t.TempDir(), "g.db"), Options{Model: testModel})
	rng := rand.New(rand.NewPCG(11, 12))
	embs := fillGallery(t, g, rng, people, per, dim)
	var ids []uint64
	for id := range embs {
		ids = append(ids, id)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var searches atomic.Int64
	// Another client enrolls and removes people all the time, so that index
	// loads are nearly always in flight when the checked writes commit.
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
			it, _, err := g.Enroll(fmt.Sprintf("noise-%d", i), nil, []Template{{Embedding: randEmb(r, dim)}})
			if err == nil {
				err = g.Remove(it.ID)
			}
			time.Sleep(30 * time.Millisecond)
			if err != nil {
				t.Error(err)
				return
			}
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
				if _, err := g.Search(randEmb(r, dim), 1); err != nil {
					t.Error(err)
					return
				}
				searches.Add(1)
			}
		}()
	}

	staleDeletes, missedEnrolls := 0, 0
	for round := range rounds {
		// Delete someone, then look for them with their own template.
		k := rng.IntN(len(ids))
		victim := ids[k]
		ids[k] = ids[len(ids)-1]
		ids = ids[:len(ids)-1]
		if err := g.Remove(victim); err != nil {
			t.Fatal(err)
		}
		// Several searches over the next 25 ms: a stale index, once
		// installed, would serve them all until the next write.
		stale := false
		for _, wait := range []time.Duration{0, 5, 20} {
			time.Sleep(wait * time.Millisecond)
			ms, err := g.Search(embs[victim][0], 1)
			if err != nil {
				t.Fatal(err)
			}
			stale = stale || len(ms) > 0 && ms[0].IdentityID == victim
		}
		if stale {
			staleDeletes++
		}
		// Enroll someone new, then look for them.
		e := randEmb(rng, dim)
		it, _, err := g.Enroll(fmt.Sprintf("new-%d", round), nil, []Template{{Embedding: e}})
		if err != nil {
			t.Fatal(err)
		}
		embs[it.ID] = [][]float32{e}
		ids = append(ids, it.ID)
		missed := false
		for _, wait := range []time.Duration{0, 5, 20} {
			time.Sleep(wait * time.Millisecond)
			ms, err := g.Search(e, 1)
			if err != nil {
				t.Fatal(err)
			}
			missed = missed || len(ms) == 0 || ms[0].IdentityID != it.ID
		}
		if missed {
			missedEnrolls++
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%d templates, %d rounds, %d background searches: %d stale deletes, %d missed enrolls",
		people*per, rounds, searches.Load(), staleDeletes, missedEnrolls)
	if staleDeletes > 0 || missedEnrolls > 0 {
		t.Errorf("%d of %d acknowledged deletes were still identified, %d of %d acknowledged enrolls were missed", staleDeletes, rounds, missedEnrolls, rounds)
	}
}
