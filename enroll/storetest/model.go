package storetest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/facever/facever/enroll"
)

// testModelTags: the backbone and head are recorded; a reopen with another
// one (or none when the store has a head) fails with ErrModelMismatch and
// says what the store holds; opening without a model is allowed.
func testModelTags(t *testing.T, b Backend) {
	s := open(t, b, opts())
	if m := s.Meta(); m.Model != Model || m.Head != Head {
		t.Errorf("Meta of a new store opened with a model: %+v", m)
	}
	if _, _, err := s.Enroll("Ann", nil, []enroll.Template{{Embedding: []float32{1, 0, 0}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	other := strings.Repeat("0", 64)
	tests := []struct {
		opts enroll.Options
		want error
	}{
		{enroll.Options{Model: Model, Head: Head}, nil},
		{enroll.Options{Model: Model}, enroll.ErrModelMismatch},
		{enroll.Options{Model: Model, Head: "cosface"}, enroll.ErrModelMismatch},
		{enroll.Options{Model: other, Head: Head}, enroll.ErrModelMismatch},
		{enroll.Options{Model: other}, enroll.ErrModelMismatch},
		{enroll.Options{Model: other, Head: Head, ReadOnly: true}, enroll.ErrModelMismatch},
		{enroll.Options{}, nil}, // no model: listing, renaming, removing are fine
		{enroll.Options{ReadOnly: true}, nil},
	}
	for _, tc := range tests {
		s, err := b.Open(tc.opts)
		if !errors.Is(err, tc.want) {
			t.Errorf("Open(%+v) = %v, want %v", tc.opts, err, tc.want)
		}
		if err != nil {
			if tc.want != nil && (!strings.Contains(err.Error(), Head) || !strings.Contains(err.Error(), Model[:12])) {
				t.Errorf("mismatch error does not say what the store holds (%s, %s): %v", Model[:12], Head, err)
			}
			continue
		}
		if m := s.Meta(); m.Model != Model || m.Head != Head || m.Dim != 3 {
			t.Errorf("Open(%+v): Meta %+v, want the recorded tags", tc.opts, m)
		}
		if it, err := s.GetByName("Ann"); err != nil || it.Templates != 1 {
			t.Errorf("Open(%+v): Ann: %+v %v", tc.opts, it, err)
		}
		if ms, err := s.Search([]float32{1, 0, 0}, 1); err != nil || len(ms) != 1 {
			t.Errorf("Open(%+v): Search: %+v %v", tc.opts, ms, err)
		}
		s.Close()
	}
	// A model-less open does not erase the tags.
	s = open(t, b, enroll.Options{Model: Model, Head: Head})
	if m := s.Meta(); m.Model != Model || m.Head != Head {
		t.Errorf("tags after a model-less open: %+v", m)
	}
}

// testDimension: the first template fixes the dimension, for good.
func testDimension(t *testing.T, b Backend) {
	s := open(t, b, opts())
	if m := s.Meta(); m.Dim != 0 {
		t.Errorf("Dim of an empty store: %d", m.Dim)
	}
	ix := must(s.Index())
	if ix.Len() != 0 {
		t.Errorf("index of an empty store: %d", ix.Len())
	}
	a, _, err := s.Enroll("A", nil, []enroll.Template{{Embedding: []float32{1, 2, 3, 4, 5}}})
	if err != nil {
		t.Fatal(err)
	}
	if m := s.Meta(); m.Dim != 5 {
		t.Errorf("Dim after the first template: %d", m.Dim)
	}
	_, _, err = s.Enroll("B", nil, []enroll.Template{{Embedding: []float32{1, 2, 3, 4}}})
	is(t, "Enroll of another dimension", err, enroll.ErrDimension)
	_, err = s.AddTemplates(a.ID, []enroll.Template{{Embedding: make([]float32, 512)}})
	if !errors.Is(err, enroll.ErrDimension) && !errors.Is(err, enroll.ErrInvalid) {
		t.Errorf("AddTemplates of another dimension: %v", err)
	}
	_, err = s.AddTemplates(a.ID, []enroll.Template{{Embedding: []float32{1, 2, 3, 4, 5, 6}}})
	is(t, "AddTemplates of another dimension", err, enroll.ErrDimension)
	_, err = s.EnrollBatch([]enroll.BatchItem{{Name: "C", Template: enroll.Template{Embedding: []float32{1}}}}, false)
	is(t, "EnrollBatch of another dimension", err, enroll.ErrDimension)
	// Removing every template does not free the dimension: the tags say
	// what the store is for.
	if err := s.Remove(a.ID); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, b, s, opts())
	if m := s.Meta(); m.Dim != 5 {
		t.Errorf("Dim after reopen: %d", m.Dim)
	}
	_, _, err = s.Enroll("B", nil, []enroll.Template{{Embedding: []float32{1, 2, 3, 4}}})
	is(t, "Enroll of another dimension after reopen", err, enroll.ErrDimension)
	if _, _, err := s.Enroll("B", nil, []enroll.Template{{Embedding: []float32{1, 2, 3, 4, 6}}}); err != nil {
		t.Errorf("Enroll of the store's dimension: %v", err)
	}
}

// testNoModel: a store opened without a model can be read and edited, not
// given templates.
func testNoModel(t *testing.T, b Backend) {
	s := open(t, b, enroll.Options{})
	_, _, err := s.Enroll("x", nil, []enroll.Template{{Embedding: []float32{1}}})
	is(t, "Enroll without a model", err, enroll.ErrNoModel)
	it, err := s.AddIdentity("x", nil)
	if err != nil {
		t.Fatalf("AddIdentity without a model: %v", err)
	}
	_, err = s.AddTemplates(it.ID, []enroll.Template{{Embedding: []float32{1}}})
	is(t, "AddTemplates without a model", err, enroll.ErrNoModel)
	_, err = s.EnrollBatch([]enroll.BatchItem{{Name: "y", Template: enroll.Template{Embedding: []float32{1}}}}, false)
	is(t, "EnrollBatch without a model", err, enroll.ErrNoModel)
	if err := s.Rename(it.ID, "z"); err != nil {
		t.Errorf("Rename without a model: %v", err)
	}
	if m := s.Meta(); m.Model != "" || m.Dim != 0 {
		t.Errorf("Meta of a store opened without a model: %+v", m)
	}
	// The first open with a model tags it.
	s = reopen(t, b, s, opts())
	if m := s.Meta(); m.Model != Model || m.Head != Head {
		t.Errorf("Meta after the first open with a model: %+v", m)
	}
}

// testReadOnly: every write through a read-only store fails with
// ErrReadOnly and changes nothing; reads work.
func testReadOnly(t *testing.T, b Backend) {
	s := open(t, b, opts())
	ann, ts, err := s.Enroll("Ann", map[string]string{"k": "v"}, []enroll.Template{{Embedding: []float32{1, 0, 0}, PhotoSHA256: sha(1)}})
	if err != nil {
		t.Fatal(err)
	}
	key, krec, err := s.CreateAPIKey("ops")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AddTemplatesOnce(ann.ID, []enroll.Template{{Embedding: []float32{0, 1, 0}}}, "k", "d", func(enroll.Identity, []enroll.Template) (int, []byte, error) { return 200, []byte("{}"), nil }); err != nil {
		t.Fatal(err)
	}
	o := opts()
	o.ReadOnly = true
	o.Timeout = 5 * time.Second
	ro := reopen(t, b, s, o)
	emb := []enroll.Template{{Embedding: []float32{0, 0, 1}}}
	answer := func(enroll.Identity, []enroll.Template) (int, []byte, error) { return 200, nil, nil }
	writes := map[string]func() error{
		"AddIdentity": func() error { _, err := ro.AddIdentity("Bob", nil); return err },
		"AddTemplates": func() error {
			_, err := ro.AddTemplates(ann.ID, emb)
			return err
		},
		"AddTemplatesOnce": func() error { _, _, err := ro.AddTemplatesOnce(ann.ID, emb, "k2", "d", answer); return err },
		"Enroll":           func() error { _, _, err := ro.Enroll("Bob", nil, emb); return err },
		"EnrollBatch": func() error {
			_, err := ro.EnrollBatch([]enroll.BatchItem{{Name: "Bob", Template: emb[0]}}, false)
			return err
		},
		"Update":             func() error { _, err := ro.Update(ann.ID, enroll.Edit{Name: "Anne"}); return err },
		"Rename":             func() error { return ro.Rename(ann.ID, "Anne") },
		"Remove":             func() error { return ro.Remove(ann.ID) },
		"RemoveTemplate":     func() error { _, err := ro.RemoveTemplate(ann.ID, ts[0].ID); return err },
		"CreateAPIKey":       func() error { _, _, err := ro.CreateAPIKey("x"); return err },
		"CreateScopedAPIKey": func() error { _, _, err := ro.CreateScopedAPIKey("x", []string{enroll.ScopeEnroll}); return err },
		"RevokeAPIKey":       func() error { _, err := ro.RevokeAPIKey(krec.Prefix); return err },
	}
	if im, ok := unwrap(ro).(enroll.Importer); ok {
		writes["ImportIdentity"] = func() error {
			return im.ImportIdentity(enroll.Identity{ID: 1000, Name: "Imp", Created: time.Now()}, nil)
		}
		writes["ImportAPIKey"] = func() error {
			return im.ImportAPIKey(enroll.APIKeyRecord{Hash: enroll.HashAPIKey("fvk_x"), APIKey: enroll.APIKey{Name: "x", Prefix: "fvk_x", Created: time.Now(), Scopes: []string{enroll.ScopeAdmin}}})
		}
	}
	for what, fn := range writes {
		is(t, what+" through a read-only store", fn(), enroll.ErrReadOnly)
	}
	// Reads work.
	if it, err := ro.GetByName("Ann"); err != nil || it.Templates != 2 || it.Metadata["k"] != "v" {
		t.Errorf("read-only GetByName: %+v %v", it, err)
	}
	if ms, err := ro.Search([]float32{1, 0, 0}, 1); err != nil || len(ms) != 1 || ms[0].IdentityID != ann.ID {
		t.Errorf("read-only Search: %+v %v", ms, err)
	}
	if _, err := ro.CheckAPIKey(key); err != nil {
		t.Errorf("read-only CheckAPIKey: %v", err)
	}
	if _, ok, err := ro.LookupOnce("k"); !ok || err != nil {
		t.Errorf("read-only LookupOnce: %v %v", ok, err)
	}
	if f, err := ro.FindPhoto(sha(1)); err != nil || len(f) != 1 {
		t.Errorf("read-only FindPhoto: %+v %v", f, err)
	}
	// Nothing changed.
	s = reopen(t, b, ro, opts())
	if list := must(s.List()); len(list) != 1 || list[0].Name != "Ann" || list[0].Templates != 2 {
		t.Errorf("after refused writes: %+v", list)
	}
	if keys := must(s.APIKeys()); len(keys) != 1 {
		t.Errorf("after refused writes: %d keys", len(keys))
	}
	if _, ok, _ := s.LookupOnce("k2"); ok {
		t.Error("a refused write remembered its idempotency key")
	}
}
