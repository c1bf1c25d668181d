package pgstore

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/facever/facever/enroll"
	"github.com/facever/facever/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const testModel = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func open(t testing.TB, url string) *Store {
	t.Helper()
	s, err := Open(url, enroll.Options{Model: testModel})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func vec(r *rand.Rand, dim int) []float32 {
	v := make([]float32, dim)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// The basic round trip: enroll, read back, search, rename, remove.
func TestRoundTrip(t *testing.T) {
	s := open(t, pgtest.URL(t))
	r := rand.New(rand.NewPCG(1, 2))
	a, ts, err := s.Enroll("José", map[string]string{"team": "x"}, []enroll.Template{{Embedding: vec(r, 8), Source: "a.jpg"}})
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != 1 || a.Templates != 1 || ts[0].ID != 1 || ts[0].IdentityID != 1 {
		t.Fatalf("enroll: %+v %+v", a, ts)
	}
	if m := s.Meta(); m.Dim != 8 || m.Model != testModel || m.Schema != SchemaVersion() {
		t.Fatalf("meta %+v", m)
	}
	got, err := s.GetByName("Jose\u0301")
	if err != nil || got.ID != a.ID || got.Metadata["team"] != "x" || !got.Created.Equal(a.Created) {
		t.Fatalf("get by name: %+v %v (want %+v)", got, err, a)
	}
	if _, err := s.AddIdentity("José", nil); !errors.Is(err, enroll.ErrExists) {
		t.Fatalf("add existing: %v", err)
	}
	q := ts[0].Embedding
	m, err := s.Search(q, 1)
	if err != nil || len(m) != 1 || m[0].IdentityID != a.ID || m[0].Score < 0.999 {
		t.Fatalf("search: %+v %v", m, err)
	}
	if err := s.Rename(a.ID, "Zoé"); err != nil {
		t.Fatal(err)
	}
	if m, _ := s.Search(q, 1); len(m) != 1 || m[0].Name != "Zoé" {
		t.Fatalf("search after rename: %+v", m)
	}
	// Bytes that text cannot hold find nothing, and say so as the file does.
	if n, err := s.RevokeAPIKey("fvk_\xff\x00"); n != 0 || err != nil {
		t.Fatalf("revoke of an invalid prefix: %d %v", n, err)
	}
	if _, err := s.GetByName("a\x00b"); !errors.Is(err, enroll.ErrNotFound) {
		t.Fatalf("get of a name with NUL: %v, want ErrNotFound", err)
	}
	if page, _, err := s.ListPrefix("\xff", "", 10); err != nil || len(page) != 0 {
		t.Fatalf("list of an invalid prefix: %v %v", page, err)
	}
	// Several templates in one call: each id names its own embedding.
	var many []enroll.Template
	for range 7 {
		many = append(many, enroll.Template{Embedding: vec(r, 8), Source: "m"})
	}
	added, err := s.AddTemplates(a.ID, many)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := s.Templates(a.ID)
	if err != nil || len(stored) != 8 {
		t.Fatalf("templates: %d %v", len(stored), err)
	}
	byID := map[uint64][]float32{}
	for _, st := range stored {
		byID[st.ID] = st.Embedding
	}
	for i, ad := range added {
		if got := byID[ad.ID]; !slices.Equal(got, many[i].Embedding) || !slices.Equal(ad.Embedding, many[i].Embedding) {
			t.Fatalf("template %d (#%d): stored %v, want %v", i, ad.ID, got, many[i].Embedding)
		}
		if i > 0 && ad.ID <= added[i-1].ID {
			t.Fatalf("ids not ascending: %d after %d", ad.ID, added[i-1].ID)
		}
	}
	// An import with a template id given twice is refused whole.
	err = s.ImportIdentity(enroll.Identity{ID: 100, Name: "imported", Created: a.Created},
		[]enroll.Template{{ID: 500, IdentityID: 100, Embedding: vec(r, 8), Created: a.Created}, {ID: 500, IdentityID: 100, Embedding: vec(r, 8), Created: a.Created}})
	if !errors.Is(err, enroll.ErrExists) {
		t.Fatalf("import with a repeated template id: %v, want ErrExists", err)
	}
	if _, err := s.Get(100); !errors.Is(err, enroll.ErrNotFound) {
		t.Fatalf("refused import left identity 100: %v", err)
	}
	if err := s.Remove(a.ID); err != nil {
		t.Fatal(err)
	}
	if m, _ := s.Search(q, 1); len(m) != 0 {
		t.Fatalf("search after remove: %+v", m)
	}
	if _, err := s.Get(a.ID); !errors.Is(err, enroll.ErrNotFound) {
		t.Fatalf("get removed: %v", err)
	}
}
