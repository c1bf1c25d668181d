package enroll

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestNamesNFC: a name typed precomposed (NFC) and decomposed (NFD) is one
// person; lookups and renames normalise too.
func TestNamesNFC(t *testing.T) {
	g := openTest(t, filepath.Join(t.TempDir(), "g.db"), Options{Model: testModel})
	nfc, nfd := "Jos\u00e9", "Jose\u0301"
	if nfc == nfd {
		t.Fatal("test strings are equal")
	}
	a, _, err := g.Enroll(nfc, nil, []Template{{Embedding: []float32{1, 0}}})
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := g.Enroll(nfd, nil, []Template{{Embedding: []float32{0, 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != b.ID || b.Templates != 2 || b.Name != nfc {
		t.Errorf("NFC and NFD enrolled as %+v and %+v, want one person named in NFC", a, b)
	}
	if _, err := g.AddIdentity(nfd, nil); !errors.Is(err, ErrExists) {
		t.Errorf("AddIdentity(NFD) after NFC: %v, want ErrExists", err)
	}
	if it, err := g.GetByName(nfd); err != nil || it.ID != a.ID {
		t.Errorf("GetByName(NFD) = %+v, %v", it, err)
	}
	if it, err := g.Resolve(nfd); err != nil || it.ID != a.ID {
		t.Errorf("Resolve(NFD) = %+v, %v", it, err)
	}
	other, err := g.AddIdentity("Zoe", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Rename(other.ID, nfd); !errors.Is(err, ErrExists) {
		t.Errorf("Rename onto NFD of an existing name: %v", err)
	}
	if err := g.Rename(other.ID, "Zo\u0308e"); err != nil {
		t.Fatal(err)
	}
	if it, _ := g.Get(other.ID); it.Name != "Z\u00f6e" {
		t.Errorf("renamed to %q, want NFC %q", it.Name, "Z\u00f6e")
	}
	list, _ := g.List()
	if len(list) != 2 {
		t.Errorf("%d identities, want 2", len(list))
	}
}

// TestNamesRefused: control, invisible and formatting characters are
// refused with a message naming the character.
func TestNamesRefused(t *testing.T) {
	g := openTest(t, filepath.Join(t.TempDir(), "g.db"), Options{})
	bad := map[string]string{
		"zero-width space":    "Ann\u200bLee",
		"RLO":                 "Ann\u202eeeL",
		"LRI":                 "Ann\u2066Lee",
		"BOM":                 "\ufeffAnn",
		"soft hyphen":         "An\u00adn",
		"word joiner":         "An\u2060n",
		"NUL":                 "Ann\x00",
		"tab":                 "Ann\tLee",
		"DEL":                 "Ann\x7f",
		"C1 control":          "Ann\u0085",
		"line separator":      "Ann\u2028Lee",
		"hangul filler":       "\u3164",
		"variation selector":  "Ann\ufe0f",
		"private use":         "Ann\ue000",
		"ZWJ at the end":      "Ann\u200d",
		"invalid UTF-8":       "Ann\xff",
		"empty":               "",
		"leading space":       " Ann",
		"too long":            strings.Repeat("a", MaxName+1),
		"unassigned":          "Ann\U000e0fff",
		"combining joiner":    "A\u034fnn",
		"interlinear anchor":  "Ann\ufff9",
		"ideographic trailer": "Ann\u3000",
	}
	for what, name := range bad {
		_, err := g.AddIdentity(name, nil)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: AddIdentity(%q) = %v, want ErrInvalid", what, name, err)
			continue
		}
		if r := []rune(name); len(r) > 0 && strings.Contains(what, " ") && !strings.Contains(err.Error(), "U+") && !strings.Contains(err.Error(), "want") && !strings.Contains(err.Error(), "UTF-8") {
			t.Errorf("%s: message does not say why: %v", what, err)
		}
	}
	if _, err := g.AddIdentity("Ann\u200bLee", nil); err == nil || !strings.Contains(err.Error(), "U+200B") {
		t.Errorf("zero-width space: message %v does not name U+200B", err)
	}
	good := []string{"Ann Lee", "Zoë", "李小龍", "O'Brien-Smith", "Ana María", "\u0645\u06cc\u200c\u0631\u0627", "Ann\u00a0Lee", "Jean-Luc Picard 2"}
	for _, name := range good {
		if _, err := g.AddIdentity(name, nil); err != nil {
			t.Errorf("AddIdentity(%q): %v", name, err)
		}
	}
	if _, _, err := g.CreateAPIKey("key\u200b"); !errors.Is(err, ErrInvalid) {
		t.Errorf("API key name with U+200B: %v", err)
	}
}

// TestMetadataLimits: metadata over the limits is refused with ErrTooLarge
// (the merged metadata of Enroll too), bad keys with ErrInvalid; the limits
// are configurable.
func TestMetadataLimits(t *testing.T) {
	g := openTest(t, filepath.Join(t.TempDir(), "g.db"), Options{Model: testModel})
	many := map[string]string{}
	for i := range DefaultMaxMetadataKeys + 1 {
		many[fmt.Sprint("k", i)] = "v"
	}
	if _, err := g.AddIdentity("A", many); !errors.Is(err, ErrTooLarge) {
		t.Errorf("%d keys: %v", len(many), err)
	}
	if _, err := g.AddIdentity("A", map[string]string{"k": strings.Repeat("x", DefaultMaxMetadataBytes)}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("%d bytes: %v", DefaultMaxMetadataBytes+1, err)
	}
	for _, md := range []map[string]string{{"": "v"}, {"a\nb": "v"}, {"k": "\xff"}, {strings.Repeat("k", MaxMetadataKey+1): "v"}} {
		if _, err := g.AddIdentity("A", md); !errors.Is(err, ErrInvalid) {
			t.Errorf("metadata %q: %v, want ErrInvalid", md, err)
		}
	}
	half := map[string]string{}
	for i := range DefaultMaxMetadataKeys / 2 {
		half[fmt.Sprint("a", i)] = "v"
	}
	if _, _, err := g.Enroll("B", half, []Template{{Embedding: []float32{1}}}); err != nil {
		t.Fatal(err)
	}
	more := map[string]string{}
	for i := range DefaultMaxMetadataKeys/2 + 1 {
		more[fmt.Sprint("b", i)] = "v"
	}
	if _, _, err := g.Enroll("B", more, []Template{{Embedding: []float32{1}}}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("merged metadata over the limit: %v", err)
	}
	if it, _ := g.GetByName("B"); it.Templates != 1 || len(it.Metadata) != len(half) {
		t.Errorf("a refused enroll changed B: %+v", it)
	}
	g.Close()
	g = openTest(t, filepath.Join(t.TempDir(), "g2.db"), Options{MaxMetadataKeys: 2, MaxMetadataBytes: -1})
	if _, err := g.AddIdentity("C", map[string]string{"a": strings.Repeat("x", 1<<20), "b": ""}); err != nil {
		t.Errorf("configured limits: %v", err)
	}
	if _, err := g.AddIdentity("D", map[string]string{"a": "", "b": "", "c": ""}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("3 keys over a limit of 2: %v", err)
	}
}

// TestListPage pages through every identity, across deletes, and agrees with
// List.
func TestListPage(t *testing.T) {
	g := openTest(t, filepath.Join(t.TempDir(), "g.db"), Options{})
	for i := range 25 {
		if _, err := g.AddIdentity(fmt.Sprint("p", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Remove(7); err != nil {
		t.Fatal(err)
	}
	all, _ := g.List()
	for _, limit := range []int{1, 4, 24, 25, 0} {
		var got []Identity
		after, pages := uint64(0), 0
		for {
			page, next, err := g.ListPage(after, limit)
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
	if page, next, err := g.ListPage(1<<62, 10); err != nil || len(page) != 0 || next != 0 {
		t.Errorf("past the end: %v %d %v", page, next, err)
	}
	if page, next, err := g.ListPage(^uint64(0), 10); err != nil || len(page) != 0 || next != 0 {
		t.Errorf("after the largest id: %v %d %v", page, next, err)
	}
}
