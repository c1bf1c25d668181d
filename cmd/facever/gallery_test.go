package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/facever/facever/enroll"
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
			Error struct{ Code, Message string } `json:"error"`
		} `json:"photos"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Photos) != 2 {
		t.Fatalf("%v %s", err, out)
	}
	if p := doc.Photos; !strings.Contains(p[0].Error.Message, "3 faces") || p[0].Error.Code != "multiple_faces" ||
		!strings.Contains(p[1].Error.Message, "no face") || p[1].Error.Code != "no_face" {
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

// TestGalleryCheckBackupRestore: check passes a sound gallery (exit 0) and
// names the damage of a flipped record or a truncated file (exit 1); backup
// writes a copy that restore brings back; a damaged backup is refused.
func TestGalleryCheckBackupRestore(t *testing.T) {
	dir := t.TempDir()
	gal := filepath.Join(dir, "g.db")
	g, err := enroll.Open(gal, enroll.Options{Model: strings.Repeat("ab", 32)})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	emb := func() []float32 {
		e := make([]float32, 64)
		for i := range e {
			e[i] = float32(rng.NormFloat64())
		}
		return e
	}
	var last []float32
	for i := range 20 {
		last = emb()
		if _, _, err := g.Enroll(fmt.Sprintf("person %d", i), nil, []enroll.Template{{Embedding: emb()}, {Embedding: last}}); err != nil {
			t.Fatal(err)
		}
	}
	g.Close()
	code, out, errs := facever(t, "gallery", "check", "--gallery", gal)
	if code != exitOK || !strings.Contains(out, "sound") || !strings.Contains(out, "20 identities, 40 templates") {
		t.Fatalf("check of a sound gallery: exit %d\n%s%s", code, out, errs)
	}
	backup := filepath.Join(dir, "backup.db")
	code, out, errs = facever(t, "gallery", "backup", "--gallery", gal, "--to", backup)
	if code != exitOK || !strings.Contains(out, "backed up") {
		t.Fatalf("backup: exit %d %s %s", code, out, errs)
	}
	if st, err := os.Stat(backup); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", st, err)
	}
	// Damage the gallery: flip a byte in every copy of the last template.
	data, _ := os.ReadFile(gal)
	var needle []byte
	for _, x := range last {
		needle = binary.LittleEndian.AppendUint32(needle, math.Float32bits(x))
	}
	n := 0
	for i := bytes.Index(data, needle); i >= 0; i = bytes.Index(data, needle) {
		data[i+5] ^= 0xff
		n++
	}
	if n == 0 {
		t.Fatal("template not found in the file")
	}
	os.WriteFile(gal, data, 0o600)
	code, out, _ = facever(t, "gallery", "check", "--gallery", gal, "--json")
	var rep struct {
		Problems []string `json:"problems"`
	}
	if code != exitNegative || json.Unmarshal([]byte(out), &rep) != nil || len(rep.Problems) == 0 || !strings.Contains(rep.Problems[0], "checksum mismatch") || !strings.Contains(rep.Problems[0], "of identity 20") {
		t.Fatalf("check of a flipped record: exit %d\n%s", code, out)
	}
	// identify would refuse it too, with the record named.
	if code, _, errs := facever(t, "gallery", "list", "--gallery", gal); code != exitOK {
		t.Errorf("list (identity records are intact): exit %d %s", code, errs)
	}
	// Restore brings the backup back.
	code, out, errs = facever(t, "gallery", "restore", "--gallery", gal, "--from", backup)
	if code != exitOK || !strings.Contains(out, "restored") {
		t.Fatalf("restore: exit %d %s %s", code, out, errs)
	}
	if code, out, _ := facever(t, "gallery", "check", "--gallery", gal); code != exitOK {
		t.Fatalf("check after restore: exit %d\n%s", code, out)
	}
	// A truncated file is damage (exit 1); an empty one is not a gallery (2).
	data, _ = os.ReadFile(gal)
	os.WriteFile(gal, data[:len(data)/2], 0o600)
	if code, out, _ := facever(t, "gallery", "check", "--gallery", gal); code != exitNegative || !strings.Contains(out, "truncated") {
		t.Errorf("check of a truncated gallery: exit %d\n%s", code, out)
	}
	if code, _, errs := facever(t, "gallery", "restore", "--gallery", filepath.Join(dir, "new.db"), "--from", gal); code != exitError || !strings.Contains(errs, "truncated") {
		t.Errorf("restore from a truncated backup: exit %d %s", code, errs)
	}
	empty := filepath.Join(dir, "empty.db")
	os.WriteFile(empty, nil, 0o600)
	if code, _, errs := facever(t, "gallery", "check", "--gallery", empty); code != exitError || !strings.Contains(errs, "empty") {
		t.Errorf("check of an empty file: exit %d %s", code, errs)
	}
}
