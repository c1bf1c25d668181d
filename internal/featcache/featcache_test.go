package featcache

import (
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func TestRoundTripAndKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.db")
	c, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	k1 := Key([]byte("photo"), "sha-a", "align=false")
	k2 := Key([]byte("photo"), "sha-b", "align=false")
	k3 := Key([]byte("photo"), "sha-a", "align=true")
	if string(k1) == string(k2) || string(k1) == string(k3) {
		t.Fatal("keys must differ by backbone and mode")
	}
	if err := c.PutMany([][]byte{k1, k2}, []Entry{{Faces: 2, Feature: []float32{1, -2.5, 3}}, {Faces: 0}}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	// Reopened: entries survive; a photo without a face is remembered too.
	c, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	e, ok, err := c.Get(k1)
	if err != nil || !ok || e.Faces != 2 || len(e.Feature) != 3 || e.Feature[1] != -2.5 {
		t.Fatalf("k1: %+v %v %v", e, ok, err)
	}
	e, ok, _ = c.Get(k2)
	if !ok || e.Faces != 0 || e.Feature != nil {
		t.Fatalf("k2: %+v %v", e, ok)
	}
	if _, ok, _ := c.Get(k3); ok {
		t.Fatal("k3 was never stored")
	}
	if err := c.PutMany([][]byte{k1}, nil); err == nil {
		t.Fatal("mismatched lengths: want an error")
	}
}

func TestDamagedEntryIsAMiss(t *testing.T) {
	for _, v := range [][]byte{{1}, {0, 0, 0, 0, 5, 0, 0, 0, 1, 2}} {
		if _, err := decode(v); err == nil {
			t.Fatalf("decode(%v): want an error", v)
		}
	}
}

// TestOpenTightensPermissions: a cache file left readable by others (0644,
// as an older version or a loose umask made it) is 0600 after Open, and a
// new one is created 0600.
func TestOpenTightensPermissions(t *testing.T) {
	dir := t.TempDir()
	fresh := filepath.Join(dir, "new.db")
	c, err := Open(fresh)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	old := filepath.Join(dir, "old.db")
	if err := os.Rename(fresh, old); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(old, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err = Open(old)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fi, err := os.Stat(old)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("cache file is %v after Open, want -rw-------", fi.Mode().Perm())
	}
	c2, err := Open(filepath.Join(dir, "sub", "fresh.db"))
	if err != nil {
		t.Fatal(err)
	}
	c2.Close()
	if fi, _ := os.Stat(filepath.Join(dir, "sub", "fresh.db")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("new cache file is %v", fi.Mode().Perm())
	}
}

// TestPurge: a cache is counted and removed; a file that is not a feature
// cache (text, empty, another bbolt file) is refused and left in place; a
// cache held open by someone else is refused.
func TestPurge(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.db")
	c, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	keys := [][]byte{Key([]byte("a"), "s", "m"), Key([]byte("b"), "s", "m")}
	if err := c.PutMany(keys, []Entry{{Faces: 1, Feature: []float32{1}}, {Faces: 0}}); err != nil {
		t.Fatal(err)
	}
	// Held open (the lock is taken per process by flock; bbolt in the same
	// process sees it too).
	if _, err := Purge(path); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("purge of an open cache: %v", err)
	}
	c.Close()
	st, err := Stat(path)
	if err != nil || st.Entries != 2 || st.Bytes == 0 {
		t.Fatalf("stat: %+v %v", st, err)
	}
	st, err = Purge(path)
	if err != nil || st.Entries != 2 {
		t.Fatalf("purge: %+v %v", st, err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("cache file still there after purge: %v", err)
	}
	if _, err := Purge(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("purge of a missing cache: %v, want fs.ErrNotExist", err)
	}
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte("my notes, not a cache"), 0o600)
	empty := filepath.Join(dir, "empty.db")
	os.WriteFile(empty, nil, 0o600)
	other := filepath.Join(dir, "other.db")
	db, err := bolt.Open(other, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("identities")); return err })
	db.Close()
	for _, p := range []string{text, empty, other} {
		if _, err := Purge(p); err == nil || !strings.Contains(err.Error(), "not a feature cache") {
			t.Errorf("purge %s: %v, want a refusal", filepath.Base(p), err)
		}
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was removed: %v", filepath.Base(p), err)
		}
	}
}

// TestQualityKept: an entry's quality score round-trips; an entry in the
// layout before quality was kept (faces, n, features) reads with quality
// NaN; lengths that fit neither layout are refused.
func TestQualityKept(t *testing.T) {
	e, err := decode(encode(Entry{Faces: 1, Feature: []float32{0.5, -0.25}, Quality: 0.8125}))
	if err != nil || e.Quality != 0.8125 || len(e.Feature) != 2 || e.Feature[1] != -0.25 {
		t.Fatalf("round trip: %+v %v", e, err)
	}
	old := encode(Entry{Faces: 1, Feature: []float32{0.5, -0.25}})
	old = old[:len(old)-8]
	e, err = decode(old)
	if err != nil || !math.IsNaN(e.Quality) || len(e.Feature) != 2 {
		t.Fatalf("old layout: %+v %v", e, err)
	}
	for _, cut := range []int{1, 4, 7, 9} {
		v := encode(Entry{Faces: 1, Feature: []float32{1, 2, 3}, Quality: 1})
		if _, err := decode(v[:len(v)-cut]); err == nil {
			t.Errorf("entry cut by %d bytes: want an error", cut)
		}
	}
}
