package onnxrt_test

import (
	"fmt"
	"image"
	"math"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"gocv.io/x/gocv"

	"github.com/facever/facever/infer"
	"github.com/facever/facever/internal/gemm"
	"github.com/facever/facever/internal/onnxrt"
	"github.com/facever/facever/internal/testmodels"
)

// modelsDir is the models directory, after checking the three models
// (skipped without them, see internal/testmodels).
func modelsDir(tb testing.TB) string {
	tb.Helper()
	return testmodels.Dir(tb)
}

type realModel struct {
	file        string
	h, w, ch    int
	mean, scale float32
	embedding   bool
	// cvBatch: OpenCV DNN 4.6 runs the model at N > 1 (for fr_detect it
	// aborts: its import fixes the batch-1 shapes of the Reshape chain)
	cvBatch bool
}

var realModels = []realModel{
	{"fr_feature", 112, 112, 3, 127, 1.0 / 128, true, true},
	{"fr_detect", 240, 320, 3, 127, 1.0 / 128, false, false},
	{"fr_landmark", 64, 64, 1, 0, 1.0 / 256, false, true},
}

// faceImages lists the real face photos used as inputs.
func faceImages(tb testing.TB) []string {
	files, _ := filepath.Glob("../../testdata/johns/*/*.jpg")
	if len(files) == 0 {
		tb.Fatal("no face images found in testdata/johns")
	}
	sort.Strings(files)
	return files
}

// blob reads images, resizes them to the model input and normalises them
// into one N×C×H×W tensor.
func blob(tb testing.TB, rm realModel, files []string) infer.Tensor {
	t := infer.NewTensor(len(files), rm.ch, rm.h, rm.w)
	plane := rm.h * rm.w
	for n, f := range files {
		img := gocv.IMRead(f, gocv.IMReadColor)
		if img.Empty() {
			tb.Fatalf("cannot read %s", f)
		}
		r := gocv.NewMat()
		gocv.Resize(img, &r, imagePoint(rm.w, rm.h), 0, 0, gocv.InterpolationLinear)
		cv := gocv.NewMat()
		if rm.ch == 3 {
			gocv.CvtColor(r, &cv, gocv.ColorBGRToRGB)
		} else {
			gocv.CvtColor(r, &cv, gocv.ColorBGRToGray)
		}
		b, _ := cv.DataPtrUint8()
		for y := 0; y < rm.h; y++ {
			for x := 0; x < rm.w; x++ {
				for c := 0; c < rm.ch; c++ {
					v := float32(b[(y*rm.w+x)*rm.ch+c])
					t.Data[(n*rm.ch+c)*plane+y*rm.w+x] = (v - rm.mean) * rm.scale
				}
			}
		}
		img.Close()
		r.Close()
		cv.Close()
	}
	return t
}

// cvRun runs a model in OpenCV DNN.
type cvNet struct{ net gocv.Net }

func newCV(tb testing.TB, data []byte) *cvNet {
	net, err := gocv.ReadNetFromONNXBytes(data)
	if err != nil || net.Empty() {
		tb.Fatalf("opencv cannot load the model: %v", err)
	}
	return &cvNet{net: net}
}

func (c *cvNet) run(tb testing.TB, x infer.Tensor, names []string) []infer.Tensor {
	in := gocv.NewMatWithSizes(x.Shape, gocv.MatTypeCV32F)
	defer in.Close()
	d, _ := in.DataPtrFloat32()
	copy(d, x.Data)
	c.net.SetInput(in, "")
	outs := c.net.ForwardLayers(names)
	res := make([]infer.Tensor, len(outs))
	for i, o := range outs {
		v, err := o.DataPtrFloat32()
		if err != nil {
			tb.Fatal(err)
		}
		res[i] = infer.Tensor{Shape: o.Size(), Data: append([]float32{}, v...)}
		o.Close()
	}
	return res
}

func loadReal(tb testing.TB, rm realModel) ([]byte, *onnxrt.Model) {
	data, err := os.ReadFile(filepath.Join(modelsDir(tb), rm.file+".onnx"))
	if err != nil {
		tb.Fatal(err)
	}
	m, err := onnxrt.Load(data)
	if err != nil {
		tb.Fatalf("%s: %v", rm.file, err)
	}
	return data, m
}

func outNames(m *onnxrt.Model) []string {
	var s []string
	for _, o := range m.Outputs() {
		s = append(s, o.Name)
	}
	return s
}

// TestParityOpenCV compares the engine with OpenCV DNN on the three real
// models and real face photos, one image at a time and as one batch.
func TestParityOpenCV(t *testing.T) {
	files := faceImages(t)
	batchFiles := files
	if len(batchFiles) > 16 {
		batchFiles = batchFiles[:16]
	}
	for _, rm := range realModels {
		t.Run(rm.file, func(t *testing.T) {
			data, m := loadReal(t, rm)
			cv := newCV(t, data)
			names := outNames(m)
			in := m.Inputs()[0].Name
			minCos, maxDiff, embDiff := 1.0, 0.0, 0.0
			for _, f := range files {
				x := blob(t, rm, []string{f})
				want := cv.run(t, x, names)
				got, err := m.Run(map[string]infer.Tensor{in: x}, names)
				if err != nil {
					t.Fatal(err)
				}
				for i := range names {
					if len(got[i].Data) != len(want[i].Data) {
						t.Fatalf("%s: %d values, OpenCV %d", names[i], len(got[i].Data), len(want[i].Data))
					}
					if rm.embedding {
						minCos = math.Min(minCos, cosine(got[i].Data, want[i].Data))
						embDiff = math.Max(embDiff, maxAbsDiff(got[i].Data, want[i].Data))
					} else {
						maxDiff = math.Max(maxDiff, maxAbsDiff(got[i].Data, want[i].Data))
					}
				}
			}
			// batch: N images in one run equal the single-image runs
			xb := blob(t, rm, batchFiles)
			gotB, err := m.Run(map[string]infer.Tensor{in: xb}, names)
			if err != nil {
				t.Fatal(err)
			}
			for n, f := range batchFiles {
				x := blob(t, rm, []string{f})
				want := cv.run(t, x, names)
				for i := range names {
					per := len(want[i].Data)
					g := gotB[i].Data[n*per : (n+1)*per]
					if rm.embedding {
						minCos = math.Min(minCos, cosine(g, want[i].Data))
					} else {
						maxDiff = math.Max(maxDiff, maxAbsDiff(g, want[i].Data))
					}
				}
			}
			if rm.embedding {
				t.Logf("%s: %d faces one by one, %d as one batch: min cosine vs OpenCV %.8f (1−cos %.2g), max abs diff %.2g",
					rm.file, len(files), len(batchFiles), minCos, 1-minCos, embDiff)
				if minCos < 0.99999 {
					t.Errorf("cosine %.8f < 0.99999", minCos)
				}
			} else {
				t.Logf("%s: %d faces one by one, %d as one batch: max abs diff vs OpenCV %.3g", rm.file, len(files), len(batchFiles), maxDiff)
				if maxDiff > 1e-4 {
					t.Errorf("max abs diff %.3g > 1e-4", maxDiff)
				}
			}
		})
	}
}

func cosine(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	return ab / math.Sqrt(aa*bb)
}

func maxAbsDiff(a, b []float32) float64 {
	m := 0.0
	for i := range a {
		m = math.Max(m, math.Abs(float64(a[i])-float64(b[i])))
	}
	return m
}

var _ = fmt.Sprint

func imagePoint(w, h int) image.Point { return image.Pt(w, h) }

// TestVariantsAgree runs each real model with the graph rewrites off and
// with every other micro-kernel the CPU can run (pure Go, AVX2, AVX-512),
// and compares with the default engine.
func TestVariantsAgree(t *testing.T) {
	files := faceImages(t)[:2]
	for _, rm := range realModels {
		data, m := loadReal(t, rm)
		names := outNames(m)
		in := m.Inputs()[0].Name
		x := blob(t, rm, files)
		want, err := m.Run(map[string]infer.Tensor{in: x}, names)
		if err != nil {
			t.Fatal(err)
		}
		variants := []struct {
			name   string
			noFuse bool
			kernel gemm.Kernel
		}{{"no rewrites", true, gemm.Best()}}
		for _, k := range gemm.Kernels() {
			if k != gemm.Best() {
				variants = append(variants, struct {
					name   string
					noFuse bool
					kernel gemm.Kernel
				}{k.String() + " kernel", false, k})
			}
		}
		for _, v := range variants {
			onnxrt.SetNoFuse(v.noFuse)
			restore, err := onnxrt.SetKernel(v.kernel)
			if err != nil {
				t.Fatal(err)
			}
			mv, err := onnxrt.Load(data)
			if err != nil {
				t.Fatal(err)
			}
			got, err := mv.Run(map[string]infer.Tensor{in: x}, names)
			onnxrt.SetNoFuse(false)
			restore()
			if err != nil {
				t.Fatalf("%s %s: %v", rm.file, v.name, err)
			}
			for i := range names {
				if d := maxAbsDiff(got[i].Data, want[i].Data); d > 1e-4 {
					t.Errorf("%s %s: output %s differs by %g", rm.file, v.name, names[i], d)
				}
			}
		}
	}
}
