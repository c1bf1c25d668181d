package storetest

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/facever/facever/enroll"
)

// testImport: a store that is an enroll.Importer (both back ends are)
// takes identities, templates and key records as given: ids, created times,
// embeddings bit for bit, hashes; later ids stay above the imported ones.
func testImport(t *testing.T, b Backend) {
	s := open(t, b, opts())
	im, ok := unwrap(s).(enroll.Importer)
	if !ok {
		t.Fatalf("%T does not implement enroll.Importer (gallery migrate needs it)", unwrap(s))
	}
	created := time.Date(2024, 3, 1, 12, 30, 45, 123456000, time.UTC)
	emb := []float32{float32(math.Copysign(0, -1)), math.SmallestNonzeroFloat32, 0.1, -2.5}
	ann := enroll.Identity{ID: 500, Name: "Jose\u0301", Metadata: map[string]string{"team": "a"}, Created: created}
	ts := []enroll.Template{
		{ID: 900, IdentityID: 500, Embedding: emb, Source: "a.jpg", PhotoSHA256: sha(7), Created: created.Add(time.Second)},
		{ID: 901, IdentityID: 500, Embedding: []float32{1, 2, 3, 4}, Created: created.Add(2 * time.Second)},
	}
	if err := im.ImportIdentity(ann, ts); err != nil {
		t.Fatal(err)
	}
	if err := im.ImportIdentity(enroll.Identity{ID: 7, Name: "Early", Created: created}, nil); err != nil {
		t.Fatal(err)
	}
	got := must(s.Get(500))
	if got.Name != "Jos\u00e9" || got.Templates != 2 || got.Metadata["team"] != "a" || !sameTime(got.Created, created) {
		t.Errorf("imported identity: %+v", got)
	}
	saved := must(s.Templates(500))
	if len(saved) != 2 {
		t.Fatalf("%d imported templates", len(saved))
	}
	for i, tm := range saved {
		w := ts[i]
		if tm.ID != w.ID || tm.IdentityID != 500 || tm.Source != w.Source || tm.PhotoSHA256 != w.PhotoSHA256 || !sameTime(tm.Created, w.Created) || !sameBits(tm.Embedding, w.Embedding) {
			t.Errorf("imported template %d: %+v, want %+v", i, tm, w)
		}
	}
	if f := must(s.FindPhoto(sha(7))); len(f) != 1 || f[0].ID != 900 {
		t.Errorf("FindPhoto of an imported template: %+v", f)
	}
	if ms := must(s.Search(emb, 1)); len(ms) != 1 || ms[0].IdentityID != 500 || ms[0].TemplateID != 900 || ms[0].Name != "Jos\u00e9" {
		t.Errorf("Search after import: %+v", ms)
	}
	if m := s.Meta(); m.Dim != 4 {
		t.Errorf("Dim after import: %d", m.Dim)
	}
	// Taken ids and names, bad input.
	err := im.ImportIdentity(enroll.Identity{ID: 500, Name: "Other", Created: created}, nil)
	is(t, "import of a taken id", err, enroll.ErrExists)
	err = im.ImportIdentity(enroll.Identity{ID: 501, Name: "José", Created: created}, nil)
	is(t, "import of a taken name", err, enroll.ErrExists)
	err = im.ImportIdentity(enroll.Identity{ID: 502, Name: "Dim", Created: created}, []enroll.Template{{ID: 950, IdentityID: 502, Embedding: []float32{1, 2}, Created: created}})
	is(t, "import of another dimension", err, enroll.ErrDimension)
	err = im.ImportIdentity(enroll.Identity{ID: 503, Name: "Bad\u200b", Created: created}, nil)
	is(t, "import of an invalid name", err, enroll.ErrInvalid)
	err = im.ImportIdentity(enroll.Identity{ID: 504, Name: "Zero", Created: created}, []enroll.Template{{ID: 951, IdentityID: 504, Embedding: make([]float32, 4), Created: created}})
	is(t, "import of a zero embedding", err, enroll.ErrInvalid)
	err = im.ImportIdentity(enroll.Identity{ID: 505, Name: "Owner", Created: created}, []enroll.Template{{ID: 952, IdentityID: 1, Embedding: []float32{1, 2, 3, 4}, Created: created}})
	is(t, "import of a template of another identity", err, enroll.ErrInvalid)
	for _, id := range []uint64{502, 503, 504, 505} {
		if _, err := s.Get(id); !errors.Is(err, enroll.ErrNotFound) {
			t.Errorf("a refused import left identity %d: %v", id, err)
		}
	}
	// New ids stay above the imported ones.
	it, nts, err := s.Enroll("New", nil, []enroll.Template{{Embedding: []float32{4, 3, 2, 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if it.ID <= 500 || nts[0].ID <= 901 {
		t.Errorf("after import of ids 500/901, Enroll gave identity %d template %d", it.ID, nts[0].ID)
	}
	// Key records, by hash.
	key := "fvk_" + "imported-key-for-the-suite-0123456789abcdef"
	rec := enroll.APIKeyRecord{Hash: enroll.HashAPIKey(key), APIKey: enroll.APIKey{Name: "ops", Prefix: key[:10], Created: created, Scopes: []string{enroll.ScopeEnroll}}}
	if err := im.ImportAPIKey(rec); err != nil {
		t.Fatal(err)
	}
	is(t, "import of a taken key hash", im.ImportAPIKey(rec), enroll.ErrExists)
	bad := rec
	bad.Hash = "not-a-hash"
	is(t, "import of a bad hash", im.ImportAPIKey(bad), enroll.ErrInvalid)
	k, err := s.CheckAPIKey(key)
	if err != nil || k.Name != "ops" || k.Prefix != key[:10] || !k.Allows(enroll.ScopeEnroll) || k.Allows(enroll.ScopeAdmin) || !sameTime(k.Created, created) {
		t.Errorf("imported key: %+v %v", k, err)
	}
	recs := must(im.APIKeyRecords())
	if len(recs) != 1 || recs[0].Hash != rec.Hash || recs[0].Name != "ops" {
		t.Errorf("APIKeyRecords: %+v", recs)
	}
	// Everything survives a reopen.
	s = reopen(t, b, s, opts())
	if got := must(s.Templates(500)); len(got) != 2 || !sameBits(got[0].Embedding, emb) || got[0].ID != 900 {
		t.Errorf("imported templates after reopen: %+v", got)
	}
	if _, err := s.CheckAPIKey(key); err != nil {
		t.Errorf("imported key after reopen: %v", err)
	}
	if it, err := s.Get(7); err != nil || it.Name != "Early" {
		t.Errorf("imported identity 7 after reopen: %+v %v", it, err)
	}
}
