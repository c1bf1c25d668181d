package dlib

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"math"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/facever/facever/align"
	"github.com/facever/facever/infer"
	"github.com/facever/facever/internal/cvdnn"
	"github.com/facever/facever/internal/onnxrt"
	"github.com/facever/facever/internal/session"
	"github.com/facever/facever/internal/testmodels"
	"github.com/facever/facever/models"
)

var (
	onnxOnce  sync.Once
	onnxBytes []byte
	onnxErr   error
)

// converted returns the ONNX conversion of the real file (once per run).
func converted(t testing.TB) []byte {
	t.Helper()
	data := datFile(t)
	onnxOnce.Do(func() {
		var net *Net
		if net, onnxErr = Parse(data); onnxErr == nil {
			sum := sha256.Sum256(data)
			onnxBytes, onnxErr = net.ONNX(hex.EncodeToString(sum[:]))
		}
	})
	if onnxErr != nil {
		t.Fatal(onnxErr)
	}
	return onnxBytes
}

// TestONNXDeterministic: two conversions of the same file, each from a
// fresh parse, give identical bytes, carrying the source's sha256 and the
// converter in their metadata.
func TestONNXDeterministic(t *testing.T) {
	a := converted(t)
	net, err := Parse(datFile(t))
	if err != nil {
		t.Fatal(err)
	}
	b, err := net.ONNX(FileSHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatalf("two conversions differ (%d and %d bytes)", len(a), len(b))
	}
	for _, s := range []string{FileSHA256, Converter, MetaSourceSHA256, InputName, OutputName} {
		if !bytes.Contains(a, []byte(s)) {
			t.Errorf("%q not in the model", s)
		}
	}
	sum := sha256.Sum256(a)
	t.Logf("%d bytes, sha256 %s", len(a), hex.EncodeToString(sum[:]))
}

// chipTensor converts RGB chips into the network's N×3×150×150 input.
func chipTensor(chips ...align.Chip) infer.Tensor {
	const n = InputSize * InputSize
	x := infer.NewTensor(len(chips), 3, InputSize, InputSize)
	for k, c := range chips {
		d := x.Data[3*n*k:]
		for i := 0; i < n; i++ {
			d[i], d[n+i], d[2*n+i] = float32(c.Pix[3*i]), float32(c.Pix[3*i+1]), float32(c.Pix[3*i+2])
		}
	}
	return x
}

type johnsFace struct {
	person string
	chip   align.Chip
}

// johnsChips detects and aligns the 55 johns photos with dlib's chip.
func johnsChips(t testing.TB) []johnsFace {
	t.Helper()
	dir := testmodels.Dir(t, "fr_detect", "fr_landmark")
	det, err := session.Open("opencv", dir, models.Detect)
	if err != nil {
		t.Fatalf("detector (run `make setup`): %v", err)
	}
	defer det.Close()
	lmk, err := session.Open("opencv", dir, models.Landmark)
	if err != nil {
		t.Fatalf("landmarks (run `make setup`): %v", err)
	}
	defer lmk.Close()
	a := align.New(det, lmk, align.DefaultOptions)
	paths, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "johns", "*", "*.jpg"))
	if len(paths) != 55 {
		t.Fatalf("found %d johns photos, want 55", len(paths))
	}
	var out []johnsFace
	for _, p := range paths {
		im, err := align.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		faces, err := a.Detect(im)
		if err != nil || len(faces) == 0 {
			im.Close()
			t.Fatalf("%s: %d faces, %v", p, len(faces), err)
		}
		chip, err := align.AlignDlib(im, faces[0])
		im.Close()
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out = append(out, johnsFace{filepath.Base(filepath.Dir(p)), chip})
	}
	return out
}

// TestJohnsSeparation runs the imported model in OpenCV DNN on the 55 johns
// photos (UltraFace detection, 68 landmarks, dlib's exact chip): every
// same-person pair is closer than every different-person pair, in
// Euclidean distance and in cosine. The project's engine gives the same
// descriptors as OpenCV on a few faces.
func TestJohnsSeparation(t *testing.T) {
	model := converted(t)
	cv, err := cvdnn.OpenBytes(model)
	if err != nil {
		t.Fatal(err)
	}
	defer cv.Close()
	faces := johnsChips(t)
	desc := make([][]float32, len(faces))
	for i, f := range faces {
		out, err := cv.Run(map[string]infer.Tensor{InputName: chipTensor(f.chip)}, []string{OutputName})
		if err != nil {
			t.Fatal(err)
		}
		if len(out[0].Data) != DescriptorSize {
			t.Fatalf("descriptor of %d values", len(out[0].Data))
		}
		desc[i] = out[0].Data
	}
	var sameE, diffE, sameC, diffC []float64
	for i := range desc {
		for j := i + 1; j < len(desc); j++ {
			var d2, dot, na, nb float64
			for k := range desc[i] {
				a, b := float64(desc[i][k]), float64(desc[j][k])
				d2 += (a - b) * (a - b)
				dot += a * b
				na += a * a
				nb += b * b
			}
			e, c := math.Sqrt(d2), dot/math.Sqrt(na*nb)
			if faces[i].person == faces[j].person {
				sameE, sameC = append(sameE, e), append(sameC, c)
			} else {
				diffE, diffC = append(diffE, e), append(diffC, c)
			}
		}
	}
	sort.Float64s(sameE)
	sort.Float64s(diffE)
	sort.Float64s(sameC)
	sort.Float64s(diffC)
	t.Logf("%d same-person pairs: Euclidean max %.4f mean %.4f, cosine min %.4f", len(sameE), sameE[len(sameE)-1], mean(sameE), sameC[0])
	t.Logf("%d different-person pairs: Euclidean min %.4f mean %.4f, cosine max %.4f", len(diffE), diffE[0], mean(diffE), diffC[len(diffC)-1])
	if len(sameE)+len(diffE) != 1485 {
		t.Errorf("%d pairs, want 1485", len(sameE)+len(diffE))
	}
	if sameE[len(sameE)-1] >= diffE[0] {
		t.Errorf("Euclidean: a same-person pair at %.4f is not closer than a different-person pair at %.4f", sameE[len(sameE)-1], diffE[0])
	}
	if sameC[0] <= diffC[len(diffC)-1] {
		t.Errorf("cosine: a same-person pair at %.4f is not closer than a different-person pair at %.4f", sameC[0], diffC[len(diffC)-1])
	}

	// The project's engine on the same ONNX, batch of 3.
	m, err := onnxrt.Load(model)
	if err != nil {
		t.Fatalf("engine: %v", err)
	}
	defer m.Close()
	out, err := m.Run(map[string]infer.Tensor{InputName: chipTensor(faces[0].chip, faces[20].chip, faces[40].chip)}, []string{OutputName})
	if err != nil {
		t.Fatalf("engine: %v", err)
	}
	var worst float64
	for k, i := range []int{0, 20, 40} {
		for j, v := range desc[i] {
			worst = math.Max(worst, math.Abs(float64(out[0].Data[k*DescriptorSize+j]-v)))
		}
	}
	t.Logf("engine vs OpenCV DNN: max |difference| %.2g", worst)
	if worst > 1e-5 {
		t.Errorf("engine and OpenCV descriptors differ by %.2g", worst)
	}
}

func mean(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// TestONNXErrors: a network that does not end with its fc layer or whose
// weights do not fit is refused, not converted.
func TestONNXErrors(t *testing.T) {
	net := &Net{Rows: 150, Cols: 150, Layers: Topology()}
	if _, err := net.ONNX(""); err == nil || !strings.Contains(err.Error(), "weights do not match") {
		t.Errorf("no weights: %v", err)
	}
	if _, err := (&Net{}).ONNX(""); err == nil {
		t.Error("empty network: no error")
	}
}

// BenchmarkOpenCVBatch1 is the imported model in OpenCV DNN, one 150×150
// chip per run (ms per face = ns/op / 1e6).
func BenchmarkOpenCVBatch1(b *testing.B) {
	cv, err := cvdnn.OpenBytes(converted(b))
	if err != nil {
		b.Fatal(err)
	}
	defer cv.Close()
	x := infer.NewTensor(1, 3, InputSize, InputSize)
	for i := range x.Data {
		x.Data[i] = float32(i % 256)
	}
	in := map[string]infer.Tensor{InputName: x}
	if _, err := cv.Run(in, []string{OutputName}); err != nil { // warm-up
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := cv.Run(in, []string{OutputName}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/face")
}

// BenchmarkEngineBatch1 is the same model on the project's engine.
func BenchmarkEngineBatch1(b *testing.B) {
	m, err := onnxrt.Load(converted(b))
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	x := infer.NewTensor(1, 3, InputSize, InputSize)
	for i := range x.Data {
		x.Data[i] = float32(i % 256)
	}
	in := map[string]infer.Tensor{InputName: x}
	if _, err := m.Run(in, []string{OutputName}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := m.Run(in, []string{OutputName}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/face")
}
