package facehead

import (
	"bytes"
	"flag"
	"math"
	"os"
	"path/filepath"
	"testing"
)

var updateHead = flag.Bool("update-head", false, "rewrite facehead/testdata/head_v1.fvh")

// TestGoldenHeadFile pins format version 1: the encoder must reproduce the
// committed file byte for byte, and the decoder must read it back.
func TestGoldenHeadFile(t *testing.T) {
	h := &Head{in: 4, out: 3,
		w: []float32{1, 0, 0, 0.5, 0, 1, 0, -0.25, 0, 0, 1, 2},
		b: []float32{0.125, -1, 0},
		meta: HeadMeta{BackboneSHA256: testSHA, Loss: "arcface",
			Params:     map[string]float64{"s": 64, "m": 0.5, "easy_margin": 0, "epochs": 20},
			Identities: 3, Samples: 30, FinalLoss: 1.5, FinalAccuracy: 0.75, Note: "golden"}}
	var buf bytes.Buffer
	if err := h.encode(&buf); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "head_v1.fvh")
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
