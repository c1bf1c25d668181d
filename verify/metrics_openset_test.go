package verify

import (
	"math"
	"os"
	"path/filepath"
	"testing"
)

func TestOpenSet(t *testing.T) {
	probes := []Probe{
		{"ann", "ann", 0.9},   // right, accepted
		{"ann", "ann", 0.3},   // right, below threshold: unknown (miss)
		{"bob", "ann", 0.6},   // wrong, accepted: misidentified
		{"bob", "cy", 0.2},    // wrong, rejected
		{"", "ann", 0.7},      // unknown person accepted: false positive
		{"", "bob", 0.1},      // unknown person rejected
		{"", "", math.Inf(1)}, // empty gallery: never accepted
	}
	r, err := OpenSet(probes, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	want := OpenSetResult{Threshold: 0.5, Known: 4, Unknown: 3, Rank1: 0.5, DIR: 0.25, Misidentified: 0.25, FPIR: 1.0 / 3}
	if r != want {
		t.Errorf("OpenSet = %+v, want %+v", r, want)
	}
	if _, err := OpenSet(nil, 0.5); err == nil {
		t.Error("no probes accepted")
	}
	if _, err := OpenSet([]Probe{{"a", "a", math.NaN()}}, 0.5); err == nil {
		t.Error("NaN accepted")
	}
}

func TestSplitOpenSet(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"ann/1.jpg", "ann/2.jpg", "ann/3.jpg", "bob/1.jpg", "cy/1.jpg", "cy/2.jpg", "cy/x.txt"} {
		p := filepath.Join(dir, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, fixture(f), 0o644)
	}
	s, err := SplitOpenSet(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Gallery) != 2 || len(s.Known) != 3 || len(s.Unknown) != 1 || s.Gallery[0].Identity != "ann" || s.Known[0].Path != filepath.Join(dir, "ann", "2.jpg") || s.Unknown[0].Identity != "" {
		t.Errorf("split: %+v", s)
	}
	// enroll 5: each person keeps one probe.
	s, _ = SplitOpenSet(dir, 5)
	if len(s.Gallery) != 3 || len(s.Known) != 2 {
		t.Errorf("enroll 5: %+v", s)
	}
	if _, err := SplitOpenSet(dir, 0); err == nil {
		t.Error("enroll 0 accepted")
	}
	lfw := filepath.Join("..", "..", "shared", "faces", "lfw", "images")
	if _, err := os.Stat(lfw); err != nil {
		return
	}
	s, err = SplitOpenSet(lfw, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("LFW: %d enrolled, %d known probes, %d unknown probes", len(s.Gallery), len(s.Known), len(s.Unknown))
	if len(s.Gallery) != 1680 || len(s.Unknown) != 4069 || len(s.Gallery)+len(s.Known)+len(s.Unknown) != 13233 {
		t.Errorf("LFW split: %d / %d / %d", len(s.Gallery), len(s.Known), len(s.Unknown))
	}
}
