package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/facever/facever/internal/testmodels"
)

// johnsTree builds a folder per person from the johns photos the way users'
// folders look: person folders that are symbolic links, one person whose
// photos are links, an extension-less photo, and junk beside the photos.
func johnsTree(t *testing.T) string {
	t.Helper()
	johns, err := filepath.Abs("../../testdata/johns")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, p := range []string{"John_Salley", "John_Savage", "John_Schneider"} {
		if err := os.Symlink(filepath.Join(johns, p), filepath.Join(dir, p)); err != nil {
			t.Fatal(err)
		}
	}
	simm := filepath.Join(dir, "John_Simm")
	os.Mkdir(simm, 0o755)
	files, _ := filepath.Glob(filepath.Join(johns, "John_Simm", "*.jpg"))
	for i, f := range files {
		name := filepath.Base(f)
		if i == 0 {
			name = "no-extension" // a photo by its content
		}
		if err := os.Symlink(f, filepath.Join(simm, name)); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range map[string]string{
		"John_Simm/.DS_Store": "\x00\x00\x00\x01Bud1", "John_Simm/Thumbs.db": "\xd0\xcf\x11\xe0",
		"John_Simm/notes.txt": "who is who\n", "README.txt": "photos of the johns\n",
	} {
		os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644)
	}
	os.Symlink(dir, filepath.Join(dir, "loop"))
	return dir
}

// TestEvalIdentifyWalker: eval-identify reads the folder through the one
// walker: linked folders and photos are seen, junk is skipped and reported.
func TestEvalIdentifyWalker(t *testing.T) {
	testmodels.Dir(t)
	dir := johnsTree(t)
	code, out, errs := facever(t, "eval-identify", "--data", dir, "--cache", filepath.Join(t.TempDir(), "c.db"), "--json")
	if code != exitOK {
		t.Fatalf("exit %d %s", code, errs)
	}
	var ev identifyEval
	if err := json.Unmarshal([]byte(out), &ev); err != nil {
		t.Fatal(err)
	}
	// Four people (John_Shimkus left out), 44 photos: 4 enrolled, 40 probes.
	if ev.Enrolled != 4 || ev.MatedProbes != 40 || ev.Rank1 != 1 {
		t.Fatalf("%+v", ev)
	}
	if !strings.Contains(errs, "5 files skipped: 2 not a photo, 1 hidden, 1 link loop, 1 not in a person folder") ||
		!strings.Contains(errs, filepath.Join(dir, "John_Simm", "Thumbs.db")+": not a photo") {
		t.Errorf("stderr does not report the skipped files:\n%s", errs)
	}
	// A folder without person folders: the message says what it found.
	flat := t.TempDir()
	os.WriteFile(filepath.Join(flat, "a.txt"), []byte("x"), 0o644)
	code, _, errs = facever(t, "eval-identify", "--data", flat)
	if code != exitError || !strings.Contains(errs, "holds no folder of photos") || !strings.Contains(errs, "1 file skipped: 1 not in a person folder") {
		t.Errorf("flat folder: exit %d %q", code, errs)
	}
}
