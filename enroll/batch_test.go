package enroll

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

func TestEnrollBatch(t *testing.T) {
	g := openTest(t, filepath.Join(t.TempDir(), "g.db"), Options{Model: "m"})
	rng := rand.New(rand.NewPCG(1, 2))
	sha := func(i int) string { return fmt.Sprintf("%064x", i+1) }
	var items []BatchItem
	for i := 0; i < 10; i++ {
		items = append(items, BatchItem{Name: fmt.Sprintf("p%d", i/4), Template: Template{Embedding: randEmb(rng, 8), Source: fmt.Sprint(i), PhotoSHA256: sha(i)}})
	}
	// Within the batch: photo 0 again for p0 (skipped), for p1 (refused).
	items = append(items,
		BatchItem{Name: "p0", Template: Template{Embedding: randEmb(rng, 8), PhotoSHA256: sha(0)}},
		BatchItem{Name: "p1", Template: Template{Embedding: randEmb(rng, 8), PhotoSHA256: sha(0)}})
	res, err := g.EnrollBatch(items, false)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if res[i].Err != nil || res[i].Template.ID == 0 || res[i].Identity.Name != fmt.Sprintf("p%d", i/4) {
			t.Fatalf("item %d: %+v", i, res[i])
		}
	}
	if !errors.Is(res[10].Err, ErrAlreadyEnrolled) || res[10].Template.ID != res[0].Template.ID {
		t.Fatalf("same photo, same person: %+v", res[10])
	}
	if !errors.Is(res[11].Err, ErrDuplicatePhoto) || res[11].Template.ID != res[0].Template.ID {
		t.Fatalf("same photo, other person: %+v", res[11])
	}
	// A rerun of the whole batch adds nothing; with duplicates allowed,
	// only the cross-person item is added.
	res, err = g.EnrollBatch(items, true)
	if err != nil {
		t.Fatal(err)
	}
	added := 0
	for i, r := range res {
		if r.Err == nil {
			added++
			if i != 11 {
				t.Fatalf("item %d added again", i)
			}
		} else if !errors.Is(r.Err, ErrAlreadyEnrolled) {
			t.Fatalf("item %d: %v", i, r.Err)
		}
	}
	if added != 1 {
		t.Fatalf("added %d, want 1", added)
	}
	ids, err := g.List()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"p0": 4, "p1": 5, "p2": 2}
	for _, it := range ids {
		if it.Templates != want[it.Name] {
			t.Errorf("%s: %d templates, want %d", it.Name, it.Templates, want[it.Name])
		}
		ts, err := g.Templates(it.ID)
		if err != nil || len(ts) != it.Templates {
			t.Errorf("%s: %d stored templates (%v), identity says %d", it.Name, len(ts), err, it.Templates)
		}
	}
	if r, err := g.Check(); err != nil || !r.OK() {
		t.Fatalf("check: %v %+v", err, r)
	}
}
