package featcache

import (
	"path/filepath"
	"testing"
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
