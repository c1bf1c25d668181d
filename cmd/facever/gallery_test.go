package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/facever/facever/internal/testmodels"
)

func johnsByPerson(t *testing.T) map[string][]string {
	people := map[string][]string{}
	for _, name := range []string{"John_Salley", "John_Savage", "John_Schneider", "John_Shimkus", "John_Simm"} {
		files, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "johns", name, "*.jpg"))
		sort.Strings(files)
		if len(files) != 11 {
			t.Fatalf("%s: %d photos", name, len(files))
		}
		people[name] = files
	}
	return people
}

// TestEnrollIdentifyJohns: enroll four people from three photos each;
// every other photo of theirs is identified as them, and the fifth person,
// never enrolled, comes back unknown.
func TestEnrollIdentifyJohns(t *testing.T) {
	testmodels.Dir(t)
	people := johnsByPerson(t)
	gal := filepath.Join(t.TempDir(), "johns.db")
	enrolled := []string{"John_Salley", "John_Savage", "John_Schneider", "John_Shimkus"}
	for _, name := range enrolled {
		args := append([]string{"enroll", "--gallery", gal, "--name", name, "--json"}, people[name][:3]...)
		code, out, errs := facever(t, args...)
		if code != exitOK {
			t.Fatalf("enroll %s: exit %d %s", name, code, errs)
		}
		var doc struct {
			Enrolled int `json:"enrolled"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil || doc.Enrolled != 3 {
			t.Fatalf("enroll %s: %v %s", name, err, out)
		}
	}
	if st, err := os.Stat(gal); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("gallery mode: %v %v", st.Mode(), err)
	}
	for _, name := range enrolled {
		args := append([]string{"identify", "--gallery", gal, "--json"}, people[name][3:]...)
		code, out, errs := facever(t, args...)
		if code != exitOK {
			t.Fatalf("identify %s: exit %d %s\n%s", name, code, errs, out)
		}
		var doc struct {
			Photos []struct {
				Path  string `json:"path"`
				Match *struct {
					Name string `json:"name"`
				} `json:"match"`
			} `json:"photos"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatal(err)
		}
		for _, ph := range doc.Photos {
			if ph.Match == nil || ph.Match.Name != name {
				t.Errorf("%s: identified as %+v, want %s", ph.Path, ph.Match, name)
			}
		}
	}
	// The compact int8 index finds the same people.
	code, out, _ := facever(t, append([]string{"identify", "--gallery", gal, "--int8"}, people["John_Shimkus"][3:]...)...)
	if code != exitOK || strings.Count(out, ": John_Shimkus (similarity") != 8 {
		t.Fatalf("--int8: exit %d\n%s", code, out)
	}
	args := append([]string{"identify", "--gallery", gal}, people["John_Simm"]...)
	code, out, _ = facever(t, args...)
	if code != exitNegative || strings.Count(out, "unknown") != 11 {
		t.Fatalf("the unenrolled person: exit %d, want 1 and 11 unknowns\n%s", code, out)
	}
}

func TestEnrollRejections(t *testing.T) {
	testmodels.Dir(t)
	gal := filepath.Join(t.TempDir(), "g.db")
	group := filepath.Join("..", "..", "testdata", "external", "groups", "sample1.jpg")
	grey := writeFile(t, "grey.png", pngOf(t, 300, 200))
	code, out, _ := facever(t, "enroll", "--gallery", gal, "--name", "x", "--json", group, grey)
	if code != exitError {
		t.Fatalf("exit %d, want 2 when nothing is enrolled", code)
	}
	var doc struct {
		Photos []struct {
			Reason string `json:"reason"`
		} `json:"photos"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Photos) != 2 {
		t.Fatalf("%v %s", err, out)
	}
	if !strings.Contains(doc.Photos[0].Reason, "3 faces") || !strings.Contains(doc.Photos[1].Reason, "no face") {
		t.Fatalf("reasons: %+v", doc.Photos)
	}
	// --largest takes the group photo; --min-face rejects small faces.
	if code, _, errs := facever(t, "enroll", "--gallery", gal, "--name", "x", "--largest", group); code != exitOK {
		t.Fatalf("--largest: exit %d %s", code, errs)
	}
	code, out, _ = facever(t, "enroll", "--gallery", gal, "--name", "y", "--min-face", "1000", simmA)
	if code != exitError || !strings.Contains(out, "below --min-face") {
		t.Fatalf("--min-face: exit %d %s", code, out)
	}
}

func TestGallerySubcommands(t *testing.T) {
	testmodels.Dir(t)
	gal := filepath.Join(t.TempDir(), "g.db")
	if code, _, errs := facever(t, "enroll", "--gallery", gal, "--name", "simm", "--meta", "team=blue", simmA, simmB); code != exitOK {
		t.Fatal(errs)
	}
	code, out, _ := facever(t, "gallery", "list", "--gallery", gal)
	if code != exitOK || !strings.Contains(out, "simm") || !strings.Contains(out, "2 template(s)") {
		t.Fatalf("list: %d %s", code, out)
	}
	if code, out, _ = facever(t, "gallery", "show", "--gallery", gal, "simm"); code != exitOK || !strings.Contains(out, "team = blue") {
		t.Fatalf("show: %d %s", code, out)
	}
	if code, _, errs := facever(t, "gallery", "rename", "--gallery", gal, "simm", "John Simm"); code != exitOK {
		t.Fatalf("rename: %s", errs)
	}
	if code, _, errs := facever(t, "gallery", "show", "--gallery", gal, "nobody"); code != exitError || !strings.Contains(errs, "no person") {
		t.Fatalf("show nobody: %d %s", code, errs)
	}
	if code, _, errs := facever(t, "gallery", "remove", "--gallery", gal, "John Simm"); code != exitOK {
		t.Fatalf("remove: %s", errs)
	}
	if code, out, _ = facever(t, "gallery", "list", "--gallery", gal); !strings.Contains(out, "0 people") {
		t.Fatalf("after remove: %d %s", code, out)
	}
	if code, _, errs := facever(t, "gallery", "list", "--gallery", filepath.Join(t.TempDir(), "none.db")); code != exitError || !strings.Contains(errs, "does not exist") {
		t.Fatalf("missing gallery: %d %s", code, errs)
	}
}
