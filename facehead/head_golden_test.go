package facehead

import (
	"bytes"
	"encoding/binary"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var updateHead = flag.Bool("update-head", false, "rewrite facehead/testdata/head_v1.fvh and head_v2.fvh")

// matchGolden encodes h, rewrites testdata/name under -update-head, and
// reports an encoding that differs from the committed file; it returns the
// file's path and bytes.
func matchGolden(t *testing.T, h *Head, name string) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := h.encode(&buf); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", name)
	if *updateHead {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update-head to create it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("encoding differs from %s", path)
	}
	return path, want
}

// TestGoldenHeadFile pins format version 1: the encoder must reproduce the
// committed file byte for byte, and the decoder must read it back.
func TestGoldenHeadFile(t *testing.T) {
	h := &Head{in: 4, out: 3,
		w: []float32{1, 0, 0, 0.5, 0, 1, 0, -0.25, 0, 0, 1, 2},
		b: []float32{0.125, -1, 0},
		meta: HeadMeta{BackboneSHA256: testSHA, Loss: "arcface",
			Params:     map[string]float64{"s": 64, "m": 0.5, "easy_margin": 0, "epochs": 20},
			Identities: 3, Samples: 30, FinalLoss: 1.5, FinalAccuracy: 0.75, Note: "golden"}}
	path, _ := matchGolden(t, h, "head_v1.fvh")
	g, err := LoadHead(path, testSHA)
	if err != nil {
		t.Fatal(err)
	}
	if !equal32(g.w, h.w) || !equal32(g.b, h.b) || g.meta.Note != "golden" || g.meta.Params["s"] != 64 {
		t.Errorf("decoded %+v", g)
	}
	// W·x + b for x = (1, 1, 1, 1) is (1.625, −0.25, 3), then normalised.
	dst := make([]float32, 3)
	g.Project(dst, []float32{1, 1, 1, 1})
	n := float32(math.Sqrt(1.625*1.625 + 0.25*0.25 + 9))
	for i, v := range []float32{1.625, -0.25, 3} {
		if d := dst[i] - v/n; d > 1e-6 || d < -1e-6 {
			t.Errorf("Project = %v", dst)
		}
	}
}

// TestGoldenHeadFileV2 pins format version 2, a head carrying its own
// thresholds: the encoder reproduces the committed file, the decoder reads
// the thresholds back, and version 1 stays what it was (TestGoldenHeadFile).
func TestGoldenHeadFileV2(t *testing.T) {
	h := &Head{in: 2, out: 2, w: []float32{1, 0, 0, 1}, b: []float32{0, 0.5},
		meta: HeadMeta{BackboneSHA256: testSHA, Loss: "cosface", Params: map[string]float64{"s": 64, "m": 0.35},
			Identities: 4, Samples: 40, Note: "golden v2"}}
	if err := h.SetThresholds(HeadThresholds{Verify: 0.41, VerifyFAR: 1e-3, Identify: 0.52, IdentifyFalseAlarm: 0.01, Identities: 12}); err != nil {
		t.Fatal(err)
	}
	path, want := matchGolden(t, h, "head_v2.fvh")
	if v := binary.LittleEndian.Uint32(want[8:]); v != 2 {
		t.Errorf("version %d, want 2", v)
	}
	g, err := LoadHead(path, testSHA)
	if err != nil {
		t.Fatal(err)
	}
	th, ok := g.Thresholds()
	if !ok || th.Verify != 0.41 || th.Identify != 0.52 || th.VerifyFAR != 1e-3 || th.Identities != 12 {
		t.Errorf("thresholds %+v, %v", th, ok)
	}
	v1, err := LoadHead(filepath.Join("testdata", "head_v1.fvh"), testSHA)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := v1.Thresholds(); ok {
		t.Error("a version 1 head has thresholds")
	}
}

// TestHeadVersionAndThresholdsAgree refuses a version-1 file that carries
// thresholds, a version-2 file without them, and thresholds out of range.
func TestHeadVersionAndThresholdsAgree(t *testing.T) {
	v2, err := os.ReadFile(filepath.Join("testdata", "head_v2.fvh"))
	if err != nil {
		t.Fatal(err)
	}
	v1, err := os.ReadFile(filepath.Join("testdata", "head_v1.fvh"))
	if err != nil {
		t.Fatal(err)
	}
	relabel := func(data []byte, v uint32) []byte {
		d := bytes.Clone(data)
		binary.LittleEndian.PutUint32(d[8:], v)
		return d
	}
	for name, data := range map[string][]byte{
		"v1 with thresholds": relabel(v2, 1),
		"v2 without":         relabel(v1, 2),
		"v3":                 relabel(v2, 3),
	} {
		if _, err := DecodeHead(bytes.NewReader(data)); err == nil {
			t.Errorf("%s: decoded", name)
		} else if !strings.Contains(err.Error(), "version") {
			t.Errorf("%s: %v", name, err)
		}
	}
	h := &Head{}
	for _, bad := range []HeadThresholds{{Verify: 1.5}, {Verify: math.NaN()}, {VerifyFAR: -0.1}, {Identify: -2}, {Identities: -1}} {
		if err := h.SetThresholds(bad); err == nil {
			t.Errorf("SetThresholds(%+v) accepted", bad)
		}
	}
}
