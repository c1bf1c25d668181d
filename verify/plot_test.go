package verify

import (
	"bytes"
	"flag"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

var rocOut = flag.String("roc.out", "", "also write the test ROC plots into this folder (to look at them)")

// gaussROC draws scores: genuine N(d, 1), impostor N(0, 1).
func gaussROC(t *testing.T, seed uint64, n int, d float64) *ROC {
	rng := rand.New(rand.NewPCG(seed, 1))
	scores := make([]float64, 2*n)
	same := make([]bool, 2*n)
	for i := range n {
		scores[2*i], same[2*i] = rng.NormFloat64()+d, true
		scores[2*i+1] = rng.NormFloat64()
	}
	r, err := ComputeROC(scores, same)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRenderROC(t *testing.T) {
	raw := gaussROC(t, 1, 3000, 3)
	head := gaussROC(t, 2, 3000, 4)
	tests := []struct {
		name   string
		curves []Curve
		opts   PlotOptions
	}{
		{"two", []Curve{{"raw backbone", raw}, {"ArcFace head", head}}, PlotOptions{Title: "LFW View 2, 6000 pairs"}},
		{"one-full", []Curve{{"raw", raw}}, PlotOptions{FullTAR: true, Width: 640, Height: 480}},
		{"small", []Curve{{"raw", raw}}, PlotOptions{Width: 400, Height: 300, MinFAR: 1e-3}},
		{"big-sample", []Curve{{"1e5 impostors", gaussROC(t, 3, 100_000, 4)}}, PlotOptions{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := PlotROC(&buf, tc.curves, tc.opts); err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(bytes.NewReader(buf.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			w, h := tc.opts.Width, tc.opts.Height
			if w == 0 {
				w, h = 960, 720
			}
			if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
				t.Errorf("size %v, want %d×%d", b, w, h)
			}
			// Every curve's colour is drawn, in a good number of pixels.
			for i := range tc.curves {
				want := Palette[i]
				n := 0
				for y := range h {
					for x := range w {
						if color.RGBAModel.Convert(img.At(x, y)).(color.RGBA) == want {
							n++
						}
					}
				}
				if n < w/2 {
					t.Errorf("curve %d: %d pixels of its colour", i, n)
				}
			}
			if *rocOut != "" {
				os.WriteFile(filepath.Join(*rocOut, "roc-"+tc.name+".png"), buf.Bytes(), 0o644)
			}
		})
	}
	if _, err := RenderROC(nil, PlotOptions{}); err == nil {
		t.Error("no curve accepted")
	}
	if _, err := RenderROC([]Curve{{"x", raw}}, PlotOptions{Width: 10, Height: 10}); err == nil {
		t.Error("tiny size accepted")
	}
	if _, err := RenderROC([]Curve{{"x", raw}}, PlotOptions{MinFAR: 2}); err == nil {
		t.Error("MinFAR 2 accepted")
	}
}

func TestTarAtAndLabels(t *testing.T) {
	r, _ := ComputeROC(tinyScores, tinySame)
	for _, tc := range []struct{ f, want float64 }{{0, 2.0 / 3}, {0.2, 2.0 / 3}, {1.0 / 3, 1}, {0.9, 1}, {1, 1}} {
		if got := tarAt(r, tc.f); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("tarAt(%v) = %v, want %v", tc.f, got, tc.want)
		}
	}
	for d, want := range map[float64]string{0: "1", -1: "0.1", -2: "0.01", -3: "1e-3", -4: "1e-4"} {
		if got := farLabel(d); got != want {
			t.Errorf("farLabel(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestWriteROCPNG(t *testing.T) {
	path := filepath.Join(t.TempDir(), "roc.png")
	if err := WriteROCPNG(path, []Curve{{"x", gaussROC(t, 4, 500, 2)}}, PlotOptions{}); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Size() < 1000 {
		t.Errorf("roc.png: %v %v", st, err)
	}
}
