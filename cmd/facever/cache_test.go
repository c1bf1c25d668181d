package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/facever/facever/internal/featcache"
)

// TestCachePurge: `cache info` counts the features, `cache purge` removes
// the file, a second purge says there is nothing, and a file that is not a
// feature cache is refused (exit 2) and kept.
func TestCachePurge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "features.db")
	c, err := featcache.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.PutMany([][]byte{featcache.Key([]byte("p"), "s", "m")}, []featcache.Entry{{Faces: 1, Feature: []float32{0.5, 0.5}}}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	code, out, errs := facever(t, "cache", "info", "--json", "--cache", path)
	var st featcache.Stats
	if code != exitOK || json.Unmarshal([]byte(out), &st) != nil || st.Entries != 1 || st.Mode != "-rw-------" {
		t.Fatalf("info: exit %d %q %q", code, out, errs)
	}
	code, out, errs = facever(t, "cache", "purge", "--cache", path)
	if code != exitOK || !strings.Contains(out, "removed "+path+": 1 photos") {
		t.Fatalf("purge: exit %d %q %q", code, out, errs)
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("cache file still there")
	}
	if code, out, _ = facever(t, "cache", "purge", "--cache", path); code != exitOK || !strings.Contains(out, "nothing to purge") {
		t.Fatalf("second purge: exit %d %q", code, out)
	}
	notes := filepath.Join(t.TempDir(), "notes.db")
	os.WriteFile(notes, []byte("not a cache"), 0o600)
	if code, _, errs = facever(t, "cache", "purge", "--cache", notes); code != exitError || !strings.Contains(errs, "not a feature cache") {
		t.Fatalf("purge of a foreign file: exit %d %q", code, errs)
	}
	if _, err := os.Stat(notes); err != nil {
		t.Fatal("foreign file removed")
	}
}
