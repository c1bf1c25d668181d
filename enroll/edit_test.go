package enroll

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestUpdate(t *testing.T) {
	g := openTest(t, filepath.Join(t.TempDir(), "g.db"), Options{Model: testModel, MaxMetadataKeys: 3})
	a, _ := g.AddIdentity("Ann", map[string]string{"team": "x", "desk": "4"})
	if _, err := g.AddIdentity("Bob", nil); err != nil {
		t.Fatal(err)
	}
	s := func(v string) *string { return &v }
	// Rename to a name typed decomposed: stored in NFC.
	it, err := g.Update(a.ID, Edit{Name: "Jose\u0301", Metadata: map[string]*string{"team": s("y"), "desk": nil, "new": s("1")}})
	if err != nil {
		t.Fatal(err)
	}
	if it.Name != "Jos\u00e9" || len(it.Metadata) != 2 || it.Metadata["team"] != "y" || it.Metadata["new"] != "1" {
		t.Fatalf("updated: %+v", it)
	}
	if got, err := g.GetByName("Jos\u00e9"); err != nil || got.ID != a.ID || got.Metadata["team"] != "y" {
		t.Fatalf("by new name: %+v %v", got, err)
	}
	if _, err := g.GetByName("Ann"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old name still found: %v", err)
	}
	if _, err := g.Update(a.ID, Edit{Name: "Bob"}); !errors.Is(err, ErrExists) {
		t.Fatalf("clash: %v", err)
	}
	if _, err := g.Update(a.ID, Edit{Name: "bad\u200bname"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("invalid name: %v", err)
	}
	if _, err := g.Update(a.ID, Edit{Metadata: map[string]*string{"a": s("1"), "b": s("2")}}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("metadata over the limit: %v", err)
	}
	if _, err := g.Update(999, Edit{Name: "Z"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing identity: %v", err)
	}
	// A failed update changed nothing.
	if got, _ := g.Get(a.ID); got.Name != "Jos\u00e9" || len(got.Metadata) != 2 {
		t.Fatalf("after failed updates: %+v", got)
	}
	if r, err := g.Check(); err != nil || !r.OK() {
		t.Fatalf("check: %v %+v", err, r)
	}
}

func TestRemoveTemplateAndPage(t *testing.T) {
	g := openTest(t, filepath.Join(t.TempDir(), "g.db"), Options{Model: testModel})
	rng := rand.New(rand.NewPCG(1, 1))
	var ts []Template
	for i := range 7 {
		ts = append(ts, Template{Embedding: randEmb(rng, 8), Source: fmt.Sprint(i), PhotoSHA256: fmt.Sprintf("%064x", i+1)})
	}
	it, saved, err := g.Enroll("Ann", nil, ts)
	if err != nil {
		t.Fatal(err)
	}
	var seen []uint64
	after := uint64(0)
	for {
		page, next, err := g.TemplatesPage(it.ID, after, 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range page {
			seen = append(seen, p.ID)
		}
		if next == 0 {
			break
		}
		after = next
	}
	if len(seen) != 7 || seen[0] != saved[0].ID || seen[6] != saved[6].ID {
		t.Fatalf("pages: %v", seen)
	}
	got, err := g.RemoveTemplate(it.ID, saved[2].ID)
	if err != nil || got.Templates != 6 {
		t.Fatalf("remove: %+v %v", got, err)
	}
	if _, err := g.RemoveTemplate(it.ID, saved[2].ID); !errors.Is(err, ErrTemplateNotFound) {
		t.Fatalf("twice: %v", err)
	}
	if _, err := g.RemoveTemplate(999, saved[3].ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no identity: %v", err)
	}
	if f, _ := g.FindPhoto(fmt.Sprintf("%064x", 3)); len(f) != 0 {
		t.Fatalf("photo index keeps the removed template: %v", f)
	}
	all, _ := g.Templates(it.ID)
	if len(all) != 6 {
		t.Fatalf("%d templates", len(all))
	}
	// Search no longer finds the removed template.
	ms, err := g.Search(saved[2].Embedding, 1)
	if err != nil || len(ms) != 1 || ms[0].Score > 0.999 && ms[0].TemplateID == saved[2].ID {
		t.Fatalf("search: %+v %v", ms, err)
	}
	if r, err := g.Check(); err != nil || !r.OK() {
		t.Fatalf("check: %v %+v", err, r)
	}
}

func TestListPrefix(t *testing.T) {
	g := openTest(t, filepath.Join(t.TempDir(), "g.db"), Options{Model: testModel})
	for _, n := range []string{"Ann", "Anna", "Annabel", "Bob", "An", "Jos\u00e9", "José Luis", "Annz"} {
		if _, err := g.AddIdentity(n, nil); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	after := ""
	for {
		page, next, err := g.ListPrefix("Ann", after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range page {
			names = append(names, p.Name)
		}
		if next == "" {
			break
		}
		after = next
	}
	if fmt.Sprint(names) != "[Ann Anna Annabel Annz]" {
		t.Fatalf("prefix Ann: %v", names)
	}
	page, _, _ := g.ListPrefix("Jose\u0301", "", 10) // decomposed prefix
	if len(page) != 2 {
		t.Fatalf("NFC prefix: %v", page)
	}
	if page, _, _ := g.ListPrefix("x", "", 10); len(page) != 0 {
		t.Fatalf("no match: %v", page)
	}
	if page, _, _ := g.ListPrefix("", "", 100); len(page) != 8 {
		t.Fatalf("empty prefix: %d", len(page))
	}
}

func TestAddTemplatesOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	g, err := Open(path, Options{Model: testModel})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(2, 2))
	it, _ := g.AddIdentity("Ann", nil)
	ts := []Template{{Embedding: randEmb(rng, 8)}}
	calls := 0
	answer := func(it Identity, saved []Template) (int, []byte, error) {
		calls++
		return 200, []byte(fmt.Sprintf(`{"templates":%d,"id":%d}`, it.Templates, saved[0].ID)), nil
	}
	rec, replay, err := g.AddTemplatesOnce(it.ID, ts, "k1", "d1", answer)
	if err != nil || replay || rec.Status != 200 {
		t.Fatalf("first: %+v %v %v", rec, replay, err)
	}
	first := string(rec.Body)
	rec, replay, err = g.AddTemplatesOnce(it.ID, ts, "k1", "d1", answer)
	if err != nil || !replay || string(rec.Body) != first || calls != 1 {
		t.Fatalf("retry: %+v %v %v (calls %d)", rec, replay, err, calls)
	}
	if _, _, err := g.AddTemplatesOnce(it.ID, ts, "k1", "other", answer); !errors.Is(err, ErrOnceMismatch) {
		t.Fatalf("another request with the key: %v", err)
	}
	if _, _, err := g.AddTemplatesOnce(it.ID, ts, "", "d", answer); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty key: %v", err)
	}
	// A failed write stores no key.
	if _, _, err := g.AddTemplatesOnce(it.ID, []Template{{Embedding: make([]float32, 8)}}, "k2", "d2", answer); !errors.Is(err, ErrInvalid) {
		t.Fatalf("zero embedding: %v", err)
	}
	if _, ok, _ := g.LookupOnce("k2"); ok {
		t.Fatal("a failed write remembered its key")
	}
	// The key survives a restart.
	g.Close()
	g = openTest(t, path, Options{Model: testModel})
	rec, ok, err := g.LookupOnce("k1")
	if err != nil || !ok || string(rec.Body) != first {
		t.Fatalf("after reopen: %+v %v %v", rec, ok, err)
	}
	if got, _ := g.Get(it.ID); got.Templates != 1 {
		t.Fatalf("%d templates after the retries", got.Templates)
	}
	// Expired keys are forgotten by a later write.
	err = g.update(func(tx *bolt.Tx) error {
		return putOnce(tx, "old", OnceRecord{Digest: "d", Status: 200, Created: time.Now().Add(-2 * OnceTTL)})
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := g.LookupOnce("old"); ok {
		t.Fatal("an expired key is live")
	}
	if _, _, err := g.AddTemplatesOnce(it.ID, ts, "k3", "d3", answer); err != nil {
		t.Fatal(err)
	}
	_ = g.view(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketOnce).Get([]byte("old")) != nil {
			t.Error("the expired key was not removed")
		}
		if tx.Bucket(bucketOnce).Get([]byte("k1")) == nil {
			t.Error("a live key was removed")
		}
		return nil
	})
}
