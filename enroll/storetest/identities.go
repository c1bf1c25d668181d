package storetest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/facever/facever/enroll"
)

// testIdentities: add, get, by name, resolve, rename, remove; ids are
// never reused.
func testIdentities(t *testing.T, b Backend) {
	s := open(t, b, opts())
	since := time.Now()
	rng := rand.New(rand.NewPCG(1, 1))
	ann, ts, err := s.Enroll("Ann", map[string]string{"team": "a"}, []enroll.Template{
		{Embedding: randEmb(rng, 8), Source: "ann1.jpg", PhotoSHA256: sha(1)},
		{Embedding: randEmb(rng, 8), Source: "ann2.jpg"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if ann.ID == 0 || ann.Name != "Ann" || ann.Templates != 2 || len(ts) != 2 || ts[0].IdentityID != ann.ID || ts[1].IdentityID != ann.ID ||
		ts[0].ID == 0 || ts[0].ID == ts[1].ID || !recent(ann.Created, since) || !recent(ts[0].Created, since) || ann.Metadata["team"] != "a" {
		t.Fatalf("Enroll: %+v %+v", ann, ts)
	}
	// The same name again adds to the identity and merges metadata.
	ann2, ts2, err := s.Enroll("Ann", map[string]string{"badge": "7"}, []enroll.Template{{Embedding: randEmb(rng, 8), Source: "ann3.jpg"}})
	if err != nil || ann2.ID != ann.ID || ann2.Templates != 3 || ann2.Metadata["team"] != "a" || ann2.Metadata["badge"] != "7" || len(ts2) != 1 || ts2[0].ID == ts[0].ID || ts2[0].ID == ts[1].ID {
		t.Fatalf("second Enroll: %+v %+v %v", ann2, ts2, err)
	}
	bob, err := s.AddIdentity("Bob", map[string]string{"k": "v"})
	if err != nil || bob.ID == ann.ID || bob.Templates != 0 || bob.Metadata["k"] != "v" || !recent(bob.Created, since) {
		t.Fatalf("AddIdentity: %+v %v", bob, err)
	}
	_, err = s.AddIdentity("Bob", nil)
	is(t, "AddIdentity of a taken name", err, enroll.ErrExists)
	if _, err := s.AddTemplates(bob.ID, []enroll.Template{{Embedding: randEmb(rng, 8)}}); err != nil {
		t.Fatal(err)
	}
	_, err = s.AddTemplates(bob.ID+1000, []enroll.Template{{Embedding: randEmb(rng, 8)}})
	is(t, "AddTemplates to a missing identity", err, enroll.ErrNotFound)
	list := must(s.List())
	if len(list) != 2 || list[0].ID != ann.ID || list[0].Name != "Ann" || list[0].Templates != 3 || list[1].Name != "Bob" || list[1].Templates != 1 {
		t.Fatalf("List: %+v", list)
	}
	if it, err := s.Get(ann.ID); err != nil || it.Name != "Ann" || it.Templates != 3 || len(it.Metadata) != 2 || !sameTime(it.Created, ann.Created) {
		t.Errorf("Get: %+v %v (enrolled %+v)", it, err, ann)
	}
	_, err = s.Get(bob.ID + 1000)
	is(t, "Get of a missing id", err, enroll.ErrNotFound)
	if it, err := s.GetByName("Bob"); err != nil || it.ID != bob.ID {
		t.Errorf("GetByName(Bob): %+v %v", it, err)
	}
	_, err = s.GetByName("bob")
	is(t, "GetByName is case-sensitive", err, enroll.ErrNotFound)
	for _, ref := range []string{"Ann", strconv.FormatUint(ann.ID, 10), "#" + strconv.FormatUint(ann.ID, 10)} {
		if it, err := s.Resolve(ref); err != nil || it.ID != ann.ID {
			t.Errorf("Resolve(%q) = %+v, %v", ref, it, err)
		}
	}
	_, err = s.Resolve("Nobody")
	is(t, "Resolve(Nobody)", err, enroll.ErrNotFound)
	_, err = s.Resolve(strconv.FormatUint(bob.ID+1000, 10))
	is(t, "Resolve of a missing id", err, enroll.ErrNotFound)
	// A name that looks like an id is a name first.
	num, err := s.AddIdentity(strconv.FormatUint(ann.ID, 10), nil)
	if err != nil {
		t.Fatal(err)
	}
	if it, err := s.Resolve(strconv.FormatUint(ann.ID, 10)); err != nil || it.ID != num.ID {
		t.Errorf("Resolve of a numeric name: %+v %v, want identity %d", it, err, num.ID)
	}
	if err := s.Remove(num.ID); err != nil {
		t.Fatal(err)
	}

	// Rename.
	is(t, "Rename onto a taken name", s.Rename(bob.ID, "Ann"), enroll.ErrExists)
	is(t, "Rename to an invalid name", s.Rename(bob.ID, "Bo\x00b"), enroll.ErrInvalid)
	is(t, "Rename of a missing id", s.Rename(bob.ID+1000, "Zed"), enroll.ErrNotFound)
	if err := s.Rename(bob.ID, "Bob"); err != nil {
		t.Errorf("Rename to its own name: %v", err)
	}
	if err := s.Rename(bob.ID, "Robert"); err != nil {
		t.Fatal(err)
	}
	_, err = s.GetByName("Bob")
	is(t, "old name after Rename", err, enroll.ErrNotFound)
	if it, err := s.GetByName("Robert"); err != nil || it.ID != bob.ID || it.Templates != 1 || it.Metadata["k"] != "v" {
		t.Errorf("GetByName(Robert): %+v %v", it, err)
	}
	// The old name is free again.
	freed, err := s.AddIdentity("Bob", nil)
	if err != nil {
		t.Fatalf("AddIdentity of a name freed by a rename: %v", err)
	}

	// Remove drops the identity and its templates; ids are not reused.
	if err := s.Remove(ann.ID); err != nil {
		t.Fatal(err)
	}
	_, err = s.Get(ann.ID)
	is(t, "Get of a removed identity", err, enroll.ErrNotFound)
	_, err = s.GetByName("Ann")
	is(t, "GetByName of a removed identity", err, enroll.ErrNotFound)
	is(t, "second Remove", s.Remove(ann.ID), enroll.ErrNotFound)
	_, err = s.Templates(ann.ID)
	is(t, "Templates of a removed identity", err, enroll.ErrNotFound)
	ix := must(s.Index())
	if ix.Len() != 1 || ix.Identities() != 1 {
		t.Errorf("index after remove: %d templates of %d identities, want 1 of 1", ix.Len(), ix.Identities())
	}
	if ix := must(s.LoadIndex()); ix.Len() != 1 || ix.Identities() != 1 {
		t.Errorf("LoadIndex after remove: %d templates of %d identities, want 1 of 1", ix.Len(), ix.Identities())
	}
	again, err := s.AddIdentity("Ann", nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID <= freed.ID || again.ID == ann.ID || again.ID == num.ID {
		t.Errorf("new identity got id %d after %d (removed: %d, %d): ids must grow and never be reused", again.ID, freed.ID, ann.ID, num.ID)
	}
	if m := s.Meta(); m.Dim != 8 || m.Model != Model || m.Head != Head || m.Schema < 1 || m.Created.IsZero() {
		t.Errorf("Meta = %+v", m)
	}
}

// testPersistence: everything written is there, the same, after a reopen.
func testPersistence(t *testing.T, b Backend) {
	s := open(t, b, opts())
	rng := rand.New(rand.NewPCG(2, 3))
	// Values whose bits a careless encoding would change.
	odd := []float32{float32(math.Copysign(0, -1)), math.SmallestNonzeroFloat32, -math.MaxFloat32, 1e-30, 0.1, -3.25, 7, 1.0000001}
	want := map[string][]enroll.Template{}
	for i := range 20 {
		name := fmt.Sprintf("person %02d", i)
		ts := []enroll.Template{{Embedding: randEmb(rng, 8), Source: fmt.Sprintf("p%d-a.jpg", i), PhotoSHA256: sha(100 + i)}, {Embedding: randEmb(rng, 8), Source: "ünïcode ✓.png"}}
		if i == 0 {
			ts[0].Embedding = odd
		}
		_, saved, err := s.Enroll(name, map[string]string{"i": strconv.Itoa(i), "note": "ñ \"quoted\" {json}"}, ts)
		if err != nil {
			t.Fatal(err)
		}
		want[name] = saved
	}
	if _, err := s.AddIdentity("no templates", nil); err != nil {
		t.Fatal(err)
	}
	before := must(s.List())
	v := s.Version()
	s = reopen(t, b, s, opts())
	if s.Version() < v && v != 0 {
		// A store's version never goes back (bbolt: the txid; PostgreSQL: the sequence).
		t.Errorf("Version %d after reopen, %d before", s.Version(), v)
	}
	after := must(s.List())
	if len(after) != len(before) {
		t.Fatalf("%d identities after reopen, %d before", len(after), len(before))
	}
	for i, it := range after {
		w := before[i]
		if it.ID != w.ID || it.Name != w.Name || it.Templates != w.Templates || !sameTime(it.Created, w.Created) || fmt.Sprint(it.Metadata) != fmt.Sprint(w.Metadata) {
			t.Errorf("identity %d after reopen %+v, before %+v", i, it, w)
		}
		ts := must(s.Templates(it.ID))
		if len(ts) != len(want[it.Name]) {
			t.Fatalf("%s: %d templates after reopen, want %d", it.Name, len(ts), len(want[it.Name]))
		}
		for j, tm := range ts {
			w := want[it.Name][j]
			if tm.ID != w.ID || tm.IdentityID != it.ID || tm.Source != w.Source || tm.PhotoSHA256 != w.PhotoSHA256 || !sameTime(tm.Created, w.Created) || !sameBits(tm.Embedding, w.Embedding) {
				t.Errorf("%s template %d after reopen %+v, enrolled %+v", it.Name, j, tm, w)
			}
		}
	}
	if !sameBits(want["person 00"][0].Embedding, odd) {
		t.Errorf("Enroll returned %v for %v", want["person 00"][0].Embedding, odd)
	}
	ix := must(s.Index())
	if ix.Len() != 40 || ix.Identities() != 20 || ix.Dim() != 8 {
		t.Errorf("index after reopen: %d templates, %d identities, dim %d", ix.Len(), ix.Identities(), ix.Dim())
	}
	if m := s.Meta(); m.Dim != 8 || m.Model != Model || m.Head != Head {
		t.Errorf("Meta after reopen: %+v", m)
	}
}

// testInvalid: bad names, embeddings and photo hashes are refused, and a
// refused enroll leaves nothing behind.
func testInvalid(t *testing.T, b Backend) {
	s := open(t, b, opts())
	if _, _, err := s.Enroll("A", nil, []enroll.Template{{Embedding: []float32{1, 2, 3, 4}}}); err != nil {
		t.Fatal(err)
	}
	inf := float32(math.Inf(1))
	tests := []struct {
		name string
		emb  []float32
		sha  string
		want error
	}{
		{"", []float32{1, 2, 3, 4}, "", enroll.ErrInvalid},
		{" padded", []float32{1, 2, 3, 4}, "", enroll.ErrInvalid},
		{"tab\tname", []float32{1, 2, 3, 4}, "", enroll.ErrInvalid},
		{"B", []float32{1, 2, 3}, "", enroll.ErrDimension},
		{"B", []float32{0, 0, 0, 0}, "", enroll.ErrInvalid},
		{"B", []float32{1, float32(math.NaN()), 0, 0}, "", enroll.ErrInvalid},
		{"B", []float32{1, inf, 0, 0}, "", enroll.ErrInvalid},
		{"B", nil, "", enroll.ErrInvalid},
		{"B", []float32{1, 2, 3, 4}, "xyz", enroll.ErrInvalid},
		{"B", []float32{1, 2, 3, 4}, strings.Repeat("g", 64), enroll.ErrInvalid},
	}
	for _, tc := range tests {
		_, _, err := s.Enroll(tc.name, nil, []enroll.Template{{Embedding: tc.emb, PhotoSHA256: tc.sha}})
		is(t, fmt.Sprintf("Enroll(%q, %v, %q)", tc.name, tc.emb, tc.sha), err, tc.want)
	}
	// One bad template of several: nothing of the enroll stays.
	_, _, err := s.Enroll("B", nil, []enroll.Template{{Embedding: []float32{1, 2, 3, 4}}, {Embedding: []float32{0, 0, 0, 0}}})
	is(t, "Enroll with a bad second template", err, enroll.ErrInvalid)
	_, err = s.GetByName("B")
	is(t, "identity of a refused enroll", err, enroll.ErrNotFound)
	a := must(s.GetByName("A"))
	_, err = s.AddTemplates(a.ID, []enroll.Template{{Embedding: []float32{1, 1, 1, 1}}, {Embedding: []float32{1, 1}}})
	is(t, "AddTemplates with a bad second template", err, enroll.ErrDimension)
	if it := must(s.Get(a.ID)); it.Templates != 1 {
		t.Errorf("a refused AddTemplates left %d templates, want 1", it.Templates)
	}
	if ix := must(s.Index()); ix.Len() != 1 {
		t.Errorf("index holds %d templates after refused writes, want 1", ix.Len())
	}
	_, err = s.FindPhoto("zz")
	is(t, "FindPhoto(zz)", err, enroll.ErrInvalid)
}

// testNames: a name typed precomposed (NFC) and decomposed (NFD) is one
// person; lookups and renames normalise too.
func testNames(t *testing.T, b Backend) {
	s := open(t, b, opts())
	nfc, nfd := "Jos\u00e9", "Jose\u0301"
	a, _, err := s.Enroll(nfc, nil, []enroll.Template{{Embedding: []float32{1, 0}}})
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := s.Enroll(nfd, nil, []enroll.Template{{Embedding: []float32{0, 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != c.ID || c.Templates != 2 || c.Name != nfc {
		t.Errorf("NFC and NFD enrolled as %+v and %+v, want one person named in NFC", a, c)
	}
	_, err = s.AddIdentity(nfd, nil)
	is(t, "AddIdentity(NFD) after NFC", err, enroll.ErrExists)
	if it, err := s.GetByName(nfd); err != nil || it.ID != a.ID {
		t.Errorf("GetByName(NFD) = %+v, %v", it, err)
	}
	if it, err := s.Resolve(nfd); err != nil || it.ID != a.ID {
		t.Errorf("Resolve(NFD) = %+v, %v", it, err)
	}
	other := must(s.AddIdentity("Zoe", nil))
	is(t, "Rename onto the NFD of a taken name", s.Rename(other.ID, nfd), enroll.ErrExists)
	if err := s.Rename(other.ID, "Zo\u0308e"); err != nil {
		t.Fatal(err)
	}
	if it := must(s.Get(other.ID)); it.Name != "Z\u00f6e" {
		t.Errorf("renamed to %q, want NFC %q", it.Name, "Z\u00f6e")
	}
	if it, err := s.GetByName("Z\u00f6e"); err != nil || it.ID != other.ID {
		t.Errorf("GetByName after an NFD rename: %+v %v", it, err)
	}
	if n := len(must(s.List())); n != 2 {
		t.Errorf("%d identities, want 2", n)
	}
	// The index carries the stored (NFC) name.
	ms := must(s.Search([]float32{1, 0}, 1))
	if len(ms) != 1 || ms[0].Name != nfc || ms[0].IdentityID != a.ID {
		t.Errorf("Search: %+v, want %q", ms, nfc)
	}
}

// testNamesRefused: control, invisible and formatting characters are
// refused with a message naming the character; real names pass.
func testNamesRefused(t *testing.T, b Backend) {
	s := open(t, b, opts())
	bad := map[string]string{
		"zero-width space":   "Ann\u200bLee",
		"RLO":                "Ann\u202eeeL",
		"BOM":                "\ufeffAnn",
		"soft hyphen":        "An\u00adn",
		"NUL":                "Ann\x00",
		"tab":                "Ann\tLee",
		"newline":            "Ann\nLee",
		"DEL":                "Ann\x7f",
		"C1 control":         "Ann\u0085",
		"line separator":     "Ann\u2028Lee",
		"variation selector": "Ann\ufe0f",
		"private use":        "Ann\ue000",
		"ZWJ at the end":     "Ann\u200d",
		"invalid UTF-8":      "Ann\xff",
		"empty":              "",
		"leading space":      " Ann",
		"trailing space":     "Ann ",
		"too long":           strings.Repeat("a", enroll.MaxName+1),
	}
	for what, name := range bad {
		_, err := s.AddIdentity(name, nil)
		is(t, what+": AddIdentity", err, enroll.ErrInvalid)
		_, _, err = s.Enroll(name, nil, []enroll.Template{{Embedding: []float32{1, 0}}})
		is(t, what+": Enroll", err, enroll.ErrInvalid)
		_, err = s.EnrollBatch([]enroll.BatchItem{{Name: name, Template: enroll.Template{Embedding: []float32{1, 0}}}}, false)
		is(t, what+": EnrollBatch", err, enroll.ErrInvalid)
	}
	if _, err := s.AddIdentity("Ann\u200bLee", nil); err == nil || !strings.Contains(err.Error(), "U+200B") {
		t.Errorf("zero-width space: message %v does not name U+200B", err)
	}
	if n := len(must(s.List())); n != 0 {
		t.Fatalf("refused names created %d identities", n)
	}
	good := []string{"Ann Lee", "Zoë", "李小龍", "O'Brien-Smith", "Ana María", "\u0645\u06cc\u200c\u0631\u0627", "Ann\u00a0Lee", "Jean-Luc Picard 2", strings.Repeat("é", enroll.MaxName/2)}
	for _, name := range good {
		it, err := s.AddIdentity(name, nil)
		if err != nil {
			t.Errorf("AddIdentity(%q): %v", name, err)
			continue
		}
		if got, err := s.GetByName(name); err != nil || got.ID != it.ID || got.Name != name {
			t.Errorf("GetByName(%q): %+v %v", name, got, err)
		}
	}
	_, _, err := s.CreateAPIKey("key\u200b")
	is(t, "API key name with U+200B", err, enroll.ErrInvalid)
}

// testMetadataLimits: metadata over the default limits is refused with
// ErrTooLarge (the merged metadata of Enroll too), bad keys with
// ErrInvalid, and a refused write changes nothing.
func testMetadataLimits(t *testing.T, b Backend) {
	s := open(t, b, opts())
	many := map[string]string{}
	for i := range enroll.DefaultMaxMetadataKeys + 1 {
		many[fmt.Sprint("k", i)] = "v"
	}
	_, err := s.AddIdentity("A", many)
	is(t, fmt.Sprintf("%d keys", len(many)), err, enroll.ErrTooLarge)
	_, err = s.AddIdentity("A", map[string]string{"k": strings.Repeat("x", enroll.DefaultMaxMetadataBytes)})
	is(t, "metadata over the byte limit", err, enroll.ErrTooLarge)
	for _, md := range []map[string]string{{"": "v"}, {"a\nb": "v"}, {"a\x00b": "v"}, {"k": "\xff"}, {"\xff": "v"}, {strings.Repeat("k", enroll.MaxMetadataKey+1): "v"}} {
		_, err := s.AddIdentity("A", md)
		is(t, fmt.Sprintf("metadata %q", md), err, enroll.ErrInvalid)
	}
	// Exactly at the limits is fine; values may hold anything valid.
	at := map[string]string{}
	for i := range enroll.DefaultMaxMetadataKeys {
		at[fmt.Sprintf("k%02d", i)] = "v\n\t\x00\"\\"
	}
	if it, err := s.AddIdentity("At", at); err != nil {
		t.Errorf("metadata at the key limit: %v", err)
	} else if got := must(s.Get(it.ID)); fmt.Sprint(got.Metadata) != fmt.Sprint(at) {
		t.Errorf("metadata read back as %q", got.Metadata)
	}
	half := map[string]string{}
	for i := range enroll.DefaultMaxMetadataKeys / 2 {
		half[fmt.Sprint("a", i)] = "v"
	}
	if _, _, err := s.Enroll("B", half, []enroll.Template{{Embedding: []float32{1}}}); err != nil {
		t.Fatal(err)
	}
	more := map[string]string{}
	for i := range enroll.DefaultMaxMetadataKeys/2 + 1 {
		more[fmt.Sprint("b", i)] = "v"
	}
	_, _, err = s.Enroll("B", more, []enroll.Template{{Embedding: []float32{1}}})
	is(t, "merged metadata over the limit", err, enroll.ErrTooLarge)
	if it := must(s.GetByName("B")); it.Templates != 1 || len(it.Metadata) != len(half) {
		t.Errorf("a refused enroll changed B: %d templates, %d metadata keys", it.Templates, len(it.Metadata))
	}
	if _, err := s.GetByName("A"); err == nil {
		t.Error("a refused AddIdentity created A")
	}
}

// testMetadataLimitsConfigured: Options set the limits (negative: none).
func testMetadataLimitsConfigured(t *testing.T, b Backend) {
	o := opts()
	o.MaxMetadataKeys, o.MaxMetadataBytes = 2, -1
	s := open(t, b, o)
	if _, err := s.AddIdentity("C", map[string]string{"a": strings.Repeat("x", 1<<20), "b": ""}); err != nil {
		t.Errorf("configured limits: %v", err)
	}
	_, err := s.AddIdentity("D", map[string]string{"a": "", "b": "", "c": ""})
	is(t, "3 keys over a limit of 2", err, enroll.ErrTooLarge)
	o.MaxMetadataKeys, o.MaxMetadataBytes = -1, 10
	s = reopen(t, b, s, o)
	_, err = s.AddIdentity("E", map[string]string{"key": "12345678"})
	is(t, "11 bytes over a limit of 10", err, enroll.ErrTooLarge)
	if _, err := s.AddIdentity("F", map[string]string{"key": "1234567"}); err != nil {
		t.Errorf("10 bytes at a limit of 10: %v", err)
	}
}

// testUpdate: rename and edit metadata in one write; a refused update
// changes nothing.
func testUpdate(t *testing.T, b Backend) {
	o := opts()
	o.MaxMetadataKeys = 3
	s := open(t, b, o)
	a := must(s.AddIdentity("Ann", map[string]string{"team": "x", "desk": "4"}))
	if _, err := s.AddIdentity("Bob", nil); err != nil {
		t.Fatal(err)
	}
	it, err := s.Update(a.ID, enroll.Edit{Name: "Jose\u0301", Metadata: map[string]*string{"team": strp("y"), "desk": nil, "new": strp("1")}})
	if err != nil {
		t.Fatal(err)
	}
	if it.ID != a.ID || it.Name != "Jos\u00e9" || len(it.Metadata) != 2 || it.Metadata["team"] != "y" || it.Metadata["new"] != "1" || !sameTime(it.Created, a.Created) {
		t.Fatalf("updated: %+v", it)
	}
	if got, err := s.GetByName("Jos\u00e9"); err != nil || got.ID != a.ID || got.Metadata["team"] != "y" || len(got.Metadata) != 2 {
		t.Fatalf("by new name: %+v %v", got, err)
	}
	_, err = s.GetByName("Ann")
	is(t, "old name after Update", err, enroll.ErrNotFound)
	_, err = s.Update(a.ID, enroll.Edit{Name: "Bob"})
	is(t, "Update onto a taken name", err, enroll.ErrExists)
	_, err = s.Update(a.ID, enroll.Edit{Name: "bad\u200bname"})
	is(t, "Update to an invalid name", err, enroll.ErrInvalid)
	_, err = s.Update(a.ID, enroll.Edit{Name: "Ann", Metadata: map[string]*string{"a": strp("1"), "b": strp("2")}})
	is(t, "Update over the metadata limit", err, enroll.ErrTooLarge)
	_, err = s.Update(a.ID, enroll.Edit{Metadata: map[string]*string{"bad\nkey": strp("1")}})
	is(t, "Update with a bad metadata key", err, enroll.ErrInvalid)
	_, err = s.Update(a.ID+1000, enroll.Edit{Name: "Z"})
	is(t, "Update of a missing identity", err, enroll.ErrNotFound)
	refuse := fmt.Errorf("the caller's own check")
	_, err = s.Update(a.ID, enroll.Edit{Name: "Ann", Metadata: map[string]*string{"team": strp("z")}, Check: func(md map[string]string) error {
		if md["team"] != "z" || md["new"] != "1" {
			return fmt.Errorf("Check saw %v", md)
		}
		return refuse
	}})
	if err != refuse && !strings.Contains(fmt.Sprint(err), refuse.Error()) {
		t.Errorf("Update with a refusing Check: %v", err)
	}
	if got := must(s.Get(a.ID)); got.Name != "Jos\u00e9" || len(got.Metadata) != 2 || got.Metadata["team"] != "y" {
		t.Fatalf("after refused updates: %+v", got)
	}
	if _, err := s.GetByName("Ann"); err == nil {
		t.Error("a refused Update renamed the identity")
	}
	// Removing every key leaves no metadata.
	it, err = s.Update(a.ID, enroll.Edit{Metadata: map[string]*string{"team": nil, "new": nil}})
	if err != nil || len(it.Metadata) != 0 || len(must(s.Get(a.ID)).Metadata) != 0 {
		t.Errorf("removing every key: %+v %v", it, err)
	}
}
