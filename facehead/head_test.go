package facehead

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testSHA = "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581"

// randomHead returns an in→out head of Gaussian weights and biases with meta,
// and n unit-length random features for it.
func randomHead(tb testing.TB, in, out, n int, meta HeadMeta) (*Head, [][]float32) {
	r := rand.New(rand.NewPCG(uint64(in*out), 7))
	w, b := make([]float32, in*out), make([]float32, out)
	for i := range w {
		w[i] = float32(r.NormFloat64() / math.Sqrt(float64(in)))
	}
	for i := range b {
		b[i] = float32(0.1 * r.NormFloat64())
	}
	h, err := NewHead(in, out, w, b, meta)
	if err != nil {
		tb.Fatal(err)
	}
	feats := make([][]float32, n)
	for i := range feats {
		f := make([]float32, in)
		for j := range f {
			f[j] = float32(r.NormFloat64())
		}
		if err := Normalize(f); err != nil {
			tb.Fatal(err)
		}
		feats[i] = f
	}
	return h, feats
}

// TestNewHead checks that NewHead copies its inputs and refuses sizes that
// do not match and values that are not finite.
func TestNewHead(t *testing.T) {
	w, b := []float32{1, 0, 0, 1, 1, 1}, []float32{0, 0.5}
	h, err := NewHead(3, 2, w, b, HeadMeta{BackboneSHA256: strings.ToUpper(testSHA)})
	if err != nil {
		t.Fatal(err)
	}
	w[0] = 7
	dst := make([]float32, 2)
	h.Project(dst, []float32{1, 0, 0}) // (1, 1 + 0.5) normalised: w was copied, so w[0] = 7 does not count
	if n := math.Hypot(1, 1.5); math.Abs(float64(dst[0])-1/n) > 1e-6 || math.Abs(float64(dst[1])-1.5/n) > 1e-6 || h.Meta().BackboneSHA256 != testSHA {
		t.Errorf("Project = %v, meta %+v", dst, h.Meta())
	}
	for name, f := range map[string]func() error{
		"short w":  func() error { _, err := NewHead(3, 2, w[:5], b, HeadMeta{}); return err },
		"short b":  func() error { _, err := NewHead(3, 2, w, b[:1], HeadMeta{}); return err },
		"zero in":  func() error { _, err := NewHead(0, 2, nil, b, HeadMeta{}); return err },
		"NaN":      func() error { _, err := NewHead(3, 2, w, []float32{0, float32(math.NaN())}, HeadMeta{}); return err },
		"huge dim": func() error { _, err := NewHead(1<<20, 1<<20, nil, nil, HeadMeta{}); return err },
	} {
		if f() == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestProjectNoAllocAndUnit(t *testing.T) {
	h, feats := randomHead(t, 512, 512, 1, HeadMeta{})
	dst := make([]float32, h.OutDim())
	if a := testing.AllocsPerRun(100, func() { h.Project(dst, feats[0]) }); a != 0 {
		t.Errorf("Project allocates %v times", a)
	}
	var n float64
	for _, v := range dst {
		n += float64(v) * float64(v)
	}
	if math.Abs(n-1) > 1e-5 {
		t.Errorf("|embedding|² = %v", n)
	}
}

// BenchmarkProject measures the head's cost per face at inference
// (512 → 512).
func BenchmarkProject(b *testing.B) {
	h, feats := randomHead(b, 512, 512, 32, HeadMeta{})
	dst := make([]float32, h.OutDim())
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.Project(dst, feats[i%len(feats)])
	}
}

func TestSaveLoad(t *testing.T) {
	h, feats := randomHead(t, 16, 16, 24, HeadMeta{Loss: "center", BatchNorm: true, Identities: 4, Samples: 24,
		Params: map[string]float64{"lambda": 0.003, "alpha": 0.5}})
	dir := t.TempDir()
	path := filepath.Join(dir, "head.fvh")
	if err := h.Save(path); err == nil {
		t.Fatal("saved without a backbone sha256")
	}
	h.SetBackbone(strings.ToUpper(testSHA))
	h.SetNote("synthetic")
	if err := h.Save(path); err != nil {
		t.Fatal(err)
	}
	if err := h.Save(path); err != nil { // overwrite in place
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("files left behind: %v", ents)
	}
	g, err := LoadHead(path, testSHA)
	if err != nil {
		t.Fatal(err)
	}
	m := g.Meta()
	if m.Loss != "center" || !m.BatchNorm || m.Identities != 4 || m.Samples != 24 || m.Note != "synthetic" ||
		m.Params["lambda"] != 0.003 || m.Params["alpha"] != 0.5 || m.BackboneSHA256 != testSHA {
		t.Errorf("meta %+v", m)
	}
	a, b := make([]float32, h.OutDim()), make([]float32, g.OutDim())
	h.Project(a, feats[3])
	g.Project(b, feats[3])
	if !equal32(a, b) {
		t.Errorf("loaded head projects %v, saved %v", b, a)
	}
	other := strings.Repeat("ab", 32)
	if _, err := LoadHead(path, other); !errors.Is(err, ErrBackboneMismatch) || !strings.Contains(err.Error(), other) {
		t.Errorf("other backbone: %v", err)
	}
	data, _ := os.ReadFile(path)
	bad := func(name string, mut func([]byte) []byte) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, mut(append([]byte(nil), data...)), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadHead(p, testSHA); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
	bad("magic", func(b []byte) []byte { b[0] = 'X'; return b })
	bad("version", func(b []byte) []byte { b[8] = 2; return b })
	bad("truncated", func(b []byte) []byte { return b[:len(b)-3] })
	bad("trailing", func(b []byte) []byte { return append(b, 0) })
	bad("payload", func(b []byte) []byte { b[len(b)-1] ^= 1; return b })
	bad("empty", func(b []byte) []byte { return nil })
	if _, err := LoadHead(filepath.Join(dir, "missing"), testSHA); err == nil {
		t.Error("missing file loaded")
	}
}

func equal32(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzDecodeHead feeds arbitrary bytes to the head decoder: it must return
// an error or a consistent head, never panic or allocate beyond its limits.
func FuzzDecodeHead(f *testing.F) {
	h := &Head{in: 3, out: 2, w: []float32{1, 0, 0, 0, 1, 0}, b: []float32{0, 0.5},
		meta: HeadMeta{BackboneSHA256: testSHA, Loss: "arcface", Params: map[string]float64{"s": 64}}}
	var buf bytes.Buffer
	if err := h.encode(&buf); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add(buf.Bytes()[:20])
	f.Add([]byte(headMagic))
	for _, name := range []string{"head_v1.fvh", "head_v2.fvh"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := DecodeHead(bytes.NewReader(data))
		if err != nil {
			return
		}
		if len(h.w) != h.in*h.out || len(h.b) != h.out {
			t.Fatalf("inconsistent head %d×%d with %d, %d values", h.out, h.in, len(h.w), len(h.b))
		}
		dst, feat := make([]float32, h.out), make([]float32, h.in)
		h.Project(dst, feat)
	})
}
