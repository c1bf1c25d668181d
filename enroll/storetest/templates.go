package storetest

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/facever/facever/enroll"
)

// testTemplates: list, page, remove one; the identity stays without its
// last template; search forgets a removed template.
func testTemplates(t *testing.T, b Backend) {
	s := open(t, b, opts())
	rng := rand.New(rand.NewPCG(1, 1))
	var ts []enroll.Template
	for i := range 7 {
		ts = append(ts, enroll.Template{Embedding: randEmb(rng, 8), Source: fmt.Sprint(i), PhotoSHA256: sha(i)})
	}
	it, saved, err := s.Enroll("Ann", nil, ts)
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := s.Enroll("Bob", nil, []enroll.Template{{Embedding: randEmb(rng, 8)}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(saved); i++ {
		if saved[i].ID <= saved[i-1].ID {
			t.Fatalf("template ids %d then %d: want increasing", saved[i-1].ID, saved[i].ID)
		}
	}
	all := must(s.Templates(it.ID))
	if len(all) != 7 {
		t.Fatalf("Templates: %d, want 7", len(all))
	}
	for i, tm := range all {
		if tm.ID != saved[i].ID || tm.Source != fmt.Sprint(i) || tm.PhotoSHA256 != sha(i) || !sameBits(tm.Embedding, ts[i].Embedding) {
			t.Errorf("template %d: %+v, saved %+v", i, tm, saved[i])
		}
	}
	for _, limit := range []int{1, 3, 7, 0} {
		var seen []uint64
		after, pages := uint64(0), 0
		for {
			page, next, err := s.TemplatesPage(it.ID, after, limit)
			if err != nil {
				t.Fatal(err)
			}
			if limit > 0 && len(page) > limit {
				t.Fatalf("limit %d: page of %d", limit, len(page))
			}
			for _, p := range page {
				seen = append(seen, p.ID)
				if p.IdentityID != it.ID || len(p.Embedding) != 8 {
					t.Errorf("paged template %+v", p)
				}
			}
			pages++
			if next == 0 {
				break
			}
			after = next
		}
		want := make([]uint64, len(saved))
		for i := range saved {
			want[i] = saved[i].ID
		}
		if !slices.Equal(seen, want) {
			t.Fatalf("limit %d: pages %v, want %v", limit, seen, want)
		}
		if limit == 3 && pages != 3 {
			t.Errorf("limit 3: %d pages for 7 templates", pages)
		}
	}
	if page, next, err := s.TemplatesPage(it.ID, saved[6].ID, 10); err != nil || len(page) != 0 || next != 0 {
		t.Errorf("past the last template: %v %d %v", page, next, err)
	}
	_, _, err = s.TemplatesPage(other.ID+1000, 0, 10)
	is(t, "TemplatesPage of a missing identity", err, enroll.ErrNotFound)

	got, err := s.RemoveTemplate(it.ID, saved[2].ID)
	if err != nil || got.Templates != 6 || got.ID != it.ID {
		t.Fatalf("RemoveTemplate: %+v %v", got, err)
	}
	_, err = s.RemoveTemplate(it.ID, saved[2].ID)
	is(t, "RemoveTemplate twice", err, enroll.ErrTemplateNotFound)
	_, err = s.RemoveTemplate(other.ID, saved[3].ID)
	is(t, "RemoveTemplate of another identity's template", err, enroll.ErrTemplateNotFound)
	_, err = s.RemoveTemplate(other.ID+1000, saved[3].ID)
	is(t, "RemoveTemplate of a missing identity", err, enroll.ErrNotFound)
	if f := must(s.FindPhoto(sha(2))); len(f) != 0 {
		t.Errorf("the photo index keeps the removed template: %+v", f)
	}
	if n := len(must(s.Templates(it.ID))); n != 6 {
		t.Errorf("%d templates after RemoveTemplate, want 6", n)
	}
	if n := must(s.Get(it.ID)).Templates; n != 6 {
		t.Errorf("identity says %d templates after RemoveTemplate, want 6", n)
	}
	ms := must(s.Search(saved[2].Embedding, 1))
	if len(ms) != 1 || ms[0].TemplateID == saved[2].ID {
		t.Errorf("Search still finds the removed template: %+v", ms)
	}
	if ix := must(s.Index()); ix.Len() != 7 {
		t.Errorf("index of %d templates, want 7", ix.Len())
	}
	// Removing every template keeps the identity.
	for _, tm := range must(s.Templates(it.ID)) {
		if _, err := s.RemoveTemplate(it.ID, tm.ID); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := s.Get(it.ID); err != nil || got.Templates != 0 {
		t.Errorf("identity without templates: %+v %v", got, err)
	}
	if ts := must(s.Templates(it.ID)); len(ts) != 0 {
		t.Errorf("Templates of an emptied identity: %d", len(ts))
	}
	if ms := must(s.Search(saved[0].Embedding, 5)); len(ms) != 1 || ms[0].IdentityID != other.ID {
		t.Errorf("Search after emptying Ann: %+v", ms)
	}
	// New templates get new ids.
	more := must(s.AddTemplates(it.ID, []enroll.Template{{Embedding: randEmb(rng, 8)}}))
	if more[0].ID <= saved[6].ID {
		t.Errorf("new template id %d, not above %d: ids are never reused", more[0].ID, saved[6].ID)
	}
}

// testFindPhoto: the photo index across people: the same photo under two
// identities, removal of one of them.
func testFindPhoto(t *testing.T, b Backend) {
	s := open(t, b, opts())
	rng := rand.New(rand.NewPCG(3, 3))
	p := sha(42)
	ann, ta := must2(s.Enroll("Ann", nil, []enroll.Template{{Embedding: randEmb(rng, 8), Source: "a.jpg", PhotoSHA256: p}, {Embedding: randEmb(rng, 8), PhotoSHA256: sha(1)}}))
	bob, tb := must2(s.Enroll("Bob", nil, []enroll.Template{{Embedding: randEmb(rng, 8), Source: "b.jpg", PhotoSHA256: p}}))
	found := must(s.FindPhoto(p))
	if len(found) != 2 {
		t.Fatalf("FindPhoto of a photo of two people: %+v", found)
	}
	byOwner := map[uint64]enroll.Template{}
	for _, f := range found {
		byOwner[f.IdentityID] = f
		if f.PhotoSHA256 != p {
			t.Errorf("FindPhoto returned %+v", f)
		}
	}
	if byOwner[ann.ID].ID != ta[0].ID || byOwner[ann.ID].Source != "a.jpg" || !sameBits(byOwner[ann.ID].Embedding, ta[0].Embedding) || byOwner[bob.ID].ID != tb[0].ID {
		t.Errorf("FindPhoto: %+v", found)
	}
	if f := must(s.FindPhoto(sha(2))); len(f) != 0 {
		t.Errorf("FindPhoto of an unknown photo: %+v", f)
	}
	if err := s.Remove(bob.ID); err != nil {
		t.Fatal(err)
	}
	if f := must(s.FindPhoto(p)); len(f) != 1 || f[0].IdentityID != ann.ID {
		t.Errorf("FindPhoto after removing Bob: %+v", f)
	}
}

// testListPage pages through every identity, across deletes, and agrees
// with List.
func testListPage(t *testing.T, b Backend) {
	s := open(t, b, opts())
	var ids []uint64
	for i := range 25 {
		ids = append(ids, must(s.AddIdentity(fmt.Sprint("p", i), nil)).ID)
	}
	if err := s.Remove(ids[7]); err != nil {
		t.Fatal(err)
	}
	all := must(s.List())
	if len(all) != 24 {
		t.Fatalf("List: %d identities, want 24", len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i].ID <= all[i-1].ID {
			t.Fatalf("List not by id: %d then %d", all[i-1].ID, all[i].ID)
		}
	}
	for _, limit := range []int{1, 4, 24, 25, 0, -1, enroll.MaxPage + 5} {
		var got []enroll.Identity
		after, pages := uint64(0), 0
		for {
			page, next, err := s.ListPage(after, limit)
			if err != nil {
				t.Fatal(err)
			}
			if limit > 0 && len(page) > limit {
				t.Fatalf("limit %d: page of %d", limit, len(page))
			}
			got = append(got, page...)
			pages++
			if next == 0 {
				break
			}
			if pages > 100 {
				t.Fatalf("limit %d: no end", limit)
			}
			after = next
		}
		if len(got) != len(all) {
			t.Fatalf("limit %d: %d identities in %d pages, List has %d", limit, len(got), pages, len(all))
		}
		for i := range got {
			if got[i].ID != all[i].ID || got[i].Name != all[i].Name {
				t.Fatalf("limit %d: item %d is %+v, List says %+v", limit, i, got[i], all[i])
			}
		}
		if limit == 4 && pages != 6 {
			t.Errorf("limit 4: %d pages for 24 identities", pages)
		}
	}
	if page, next, err := s.ListPage(1<<62, 10); err != nil || len(page) != 0 || next != 0 {
		t.Errorf("past the end: %v %d %v", page, next, err)
	}
	if page, next, err := s.ListPage(math.MaxUint64, 10); err != nil || len(page) != 0 || next != 0 {
		t.Errorf("after the largest id: %v %d %v", page, next, err)
	}
	if page, _, err := s.ListPage(ids[5], 2); err != nil || len(page) != 2 || page[0].ID != ids[6] || page[1].ID != ids[8] {
		t.Errorf("page after id %d: %+v %v", ids[5], page, err)
	}
}

// testListPrefix: identities by name prefix, by name, paged; NFC prefixes.
func testListPrefix(t *testing.T, b Backend) {
	s := open(t, b, opts())
	for _, n := range []string{"Ann", "Anna", "Annabel", "Bob", "An", "Jos\u00e9", "José Luis", "Annz", "ann", "Ann_x", "Ann%"} {
		if _, err := s.AddIdentity(n, nil); err != nil {
			t.Fatal(err)
		}
	}
	list := func(prefix string, limit int) []string {
		var names []string
		after := ""
		for range 100 {
			page, next, err := s.ListPrefix(prefix, after, limit)
			if err != nil {
				t.Fatal(err)
			}
			if limit > 0 && len(page) > limit {
				t.Fatalf("prefix %q limit %d: page of %d", prefix, limit, len(page))
			}
			for _, p := range page {
				names = append(names, p.Name)
			}
			if next == "" {
				return names
			}
			after = next
		}
		t.Fatalf("prefix %q: no end", prefix)
		return nil
	}
	// Byte order of the names; case matters; LIKE's wildcards are letters.
	if got := fmt.Sprint(list("Ann", 2)); got != "[Ann Ann% Ann_x Anna Annabel Annz]" {
		t.Errorf("prefix Ann: %v", got)
	}
	if got := fmt.Sprint(list("Ann_", 10)); got != "[Ann_x]" {
		t.Errorf("prefix Ann_: %v", got)
	}
	if got := fmt.Sprint(list("Ann%", 10)); got != "[Ann%]" {
		t.Errorf("prefix Ann%%: %v", got)
	}
	if got := list("Jose\u0301", 10); len(got) != 2 {
		t.Errorf("NFD prefix: %v", got)
	}
	if got := list("x", 10); len(got) != 0 {
		t.Errorf("no match: %v", got)
	}
	if got := list("", 3); len(got) != 11 || !slices.IsSorted(got) {
		t.Errorf("empty prefix: %v", got)
	}
	if page, next, err := s.ListPrefix("Ann", "Annabel", 10); err != nil || len(page) != 1 || page[0].Name != "Annz" || next != "" {
		t.Errorf("after Annabel: %+v %q %v", page, next, err)
	}
}

// testEnrollBatch: one transaction of many items; photos already enrolled
// for the person are skipped, those of another person refused unless
// allowed; a rerun adds nothing.
func testEnrollBatch(t *testing.T, b Backend) {
	s := open(t, b, opts())
	rng := rand.New(rand.NewPCG(1, 2))
	var items []enroll.BatchItem
	for i := range 10 {
		items = append(items, enroll.BatchItem{Name: fmt.Sprintf("p%d", i/4), Template: enroll.Template{Embedding: randEmb(rng, 8), Source: fmt.Sprint(i), PhotoSHA256: sha(i)}})
	}
	// Within the batch: photo 0 again for p0 (skipped), for p1 (refused);
	// a template without a photo hash is always added.
	items = append(items,
		enroll.BatchItem{Name: "p0", Template: enroll.Template{Embedding: randEmb(rng, 8), PhotoSHA256: sha(0)}},
		enroll.BatchItem{Name: "p1", Template: enroll.Template{Embedding: randEmb(rng, 8), PhotoSHA256: sha(0)}},
		enroll.BatchItem{Name: "Jose\u0301", Template: enroll.Template{Embedding: randEmb(rng, 8)}})
	res, err := s.EnrollBatch(items, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(items) {
		t.Fatalf("%d results for %d items", len(res), len(items))
	}
	for i := range 10 {
		if res[i].Err != nil || res[i].Template.ID == 0 || res[i].Identity.Name != fmt.Sprintf("p%d", i/4) || res[i].Template.IdentityID != res[i].Identity.ID {
			t.Fatalf("item %d: %+v", i, res[i])
		}
	}
	if !errors.Is(res[10].Err, enroll.ErrAlreadyEnrolled) || res[10].Template.ID != res[0].Template.ID {
		t.Errorf("same photo, same person: %+v", res[10])
	}
	if !errors.Is(res[11].Err, enroll.ErrDuplicatePhoto) || res[11].Template.ID != res[0].Template.ID {
		t.Errorf("same photo, other person: %+v", res[11])
	}
	if res[12].Err != nil || res[12].Identity.Name != "Jos\u00e9" {
		t.Errorf("NFD name in a batch: %+v", res[12])
	}
	// The results' identities are as the batch left them.
	if res[0].Identity.Templates != 4 || res[4].Identity.Templates != 4 || res[8].Identity.Templates != 2 {
		t.Errorf("result identities: %+v %+v %+v", res[0].Identity, res[4].Identity, res[8].Identity)
	}
	// A rerun adds nothing but what has no photo hash; with duplicates
	// allowed, the cross-person item is added too.
	res, err = s.EnrollBatch(items, true)
	if err != nil {
		t.Fatal(err)
	}
	added := 0
	for i, r := range res {
		switch {
		case r.Err == nil:
			added++
			if i != 11 && i != 12 {
				t.Errorf("item %d added again", i)
			}
		case !errors.Is(r.Err, enroll.ErrAlreadyEnrolled):
			t.Errorf("item %d: %v", i, r.Err)
		}
	}
	if added != 2 {
		t.Errorf("added %d, want 2", added)
	}
	want := map[string]int{"p0": 4, "p1": 5, "p2": 2, "Jos\u00e9": 2}
	ids := must(s.List())
	if len(ids) != len(want) {
		t.Errorf("%d identities, want %d", len(ids), len(want))
	}
	for _, it := range ids {
		if it.Templates != want[it.Name] {
			t.Errorf("%s: %d templates, want %d", it.Name, it.Templates, want[it.Name])
		}
		if ts := must(s.Templates(it.ID)); len(ts) != it.Templates {
			t.Errorf("%s: %d stored templates, identity says %d", it.Name, len(ts), it.Templates)
		}
	}
	if f := must(s.FindPhoto(sha(0))); len(f) != 2 {
		t.Errorf("photo 0 is held by %d templates, want 2", len(f))
	}
	// A bad item fails the whole batch: nothing of it is written.
	bad := []enroll.BatchItem{
		{Name: "q1", Template: enroll.Template{Embedding: randEmb(rng, 8)}},
		{Name: "q2", Template: enroll.Template{Embedding: randEmb(rng, 5)}},
	}
	_, err = s.EnrollBatch(bad, false)
	is(t, "batch with a wrong dimension", err, enroll.ErrDimension)
	if _, err := s.GetByName("q1"); !errors.Is(err, enroll.ErrNotFound) {
		t.Errorf("a failed batch created q1: %v", err)
	}
	if ix := must(s.Index()); ix.Len() != 13 {
		t.Errorf("index of %d templates, want 13", ix.Len())
	}
	if res, err := s.EnrollBatch(nil, false); err != nil || len(res) != 0 {
		t.Errorf("empty batch: %v %v", res, err)
	}
}

// testSearch: exact cosine ranking by each identity's best template.
func testSearch(t *testing.T, b Backend) {
	s := open(t, b, opts())
	if m, err := s.Search([]float32{1, 0, 0}, 3); err != nil || len(m) != 0 {
		t.Fatalf("empty store: %v %v", m, err)
	}
	x, tx := must2(s.Enroll("x", nil, []enroll.Template{{Embedding: []float32{1, 0, 0}}, {Embedding: []float32{0, 1, 0}}}))
	y, _ := must2(s.Enroll("y", nil, []enroll.Template{{Embedding: []float32{0, 0, 2}}}))
	m, err := s.Search([]float32{0, 3, 1}, 5)
	if err != nil || len(m) != 2 || m[0].IdentityID != x.ID || m[0].Name != "x" || m[0].TemplateID != tx[1].ID || m[1].IdentityID != y.ID ||
		math.Abs(float64(m[0].Score)-3/math.Sqrt(10)) > 1e-6 || math.Abs(float64(m[1].Score)-1/math.Sqrt(10)) > 1e-6 {
		t.Fatalf("Search: %+v %v", m, err)
	}
	if m := must(s.Search([]float32{0, 3, 1}, 1)); len(m) != 1 || m[0].Name != "x" {
		t.Fatalf("Search k=1: %+v", m)
	}
	_, err = s.Search([]float32{1, 0}, 1)
	if err == nil {
		t.Error("Search with a query of the wrong length: no error")
	}
	if _, _, err := s.Enroll("z", nil, []enroll.Template{{Embedding: []float32{0, 3, 1}}}); err != nil {
		t.Fatal(err)
	}
	if m := must(s.Search([]float32{0, 3, 1}, 1)); len(m) != 1 || m[0].Name != "z" || math.Abs(float64(m[0].Score)-1) > 1e-6 {
		t.Fatalf("after enroll: %+v", m)
	}
	if err := s.Rename(y.ID, "why"); err != nil {
		t.Fatal(err)
	}
	if m := must(s.Search([]float32{0, 0, 1}, 1)); len(m) != 1 || m[0].Name != "why" {
		t.Fatalf("after rename: %+v", m)
	}
	ix := must(s.Index())
	if ix.Version() < s.Version() && s.Version() != 0 {
		t.Errorf("Index version %d, store version %d", ix.Version(), s.Version())
	}
	if ix.Len() != 4 || ix.Identities() != 3 || ix.Dim() != 3 {
		t.Errorf("index: %d templates, %d identities, dim %d", ix.Len(), ix.Identities(), ix.Dim())
	}
}
