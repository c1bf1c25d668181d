package main

import (
	"runtime"
	"strings"
	"testing"

	"github.com/facever/facever/internal/npy"
	"github.com/facever/facever/internal/onnxproto"
)

// reluONNX writes y = Relu(x) with x declared 1×3×h×w.
func reluONNX(t *testing.T, h, w int64) string {
	t.Helper()
	dims := []onnxproto.Dim{{Value: 1}, {Value: 3}, {Value: h}, {Value: w}}
	m := &onnxproto.Model{IRVersion: 7, Opset: 13, Graph: onnxproto.Graph{
		Name:    "relu",
		Nodes:   []onnxproto.Node{{Name: "relu", OpType: "Relu", Inputs: []string{"x"}, Outputs: []string{"y"}}},
		Inputs:  []onnxproto.ValueInfo{{Name: "x", ElemType: onnxproto.Float, Dims: dims}},
		Outputs: []onnxproto.ValueInfo{{Name: "y", ElemType: onnxproto.Float, Dims: dims}},
	}}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "relu.onnx", b)
}

// TestModelMemoryCap: `model check` and `model run` compute a run's memory
// from the shapes and refuse it above --max-memory (default 4 GiB) with a
// clear error, before allocating it.
func TestModelMemoryCap(t *testing.T) {
	allocated := func(f func()) uint64 {
		var a, b runtime.MemStats
		runtime.ReadMemStats(&a)
		f()
		runtime.ReadMemStats(&b)
		return b.TotalAlloc - a.TotalAlloc
	}
	// a tiny file declaring 1×3×16384×16384 (3 GiB a tensor, ~12 GiB a run)
	huge := reluONNX(t, 16384, 16384)
	var code int
	var stderr string
	if n := allocated(func() { code, _, stderr = facever(t, "model", "check", huge) }); n > 64<<20 {
		t.Errorf("model check allocated %d MiB", n>>20)
	}
	if code != exitError || !strings.Contains(stderr, "x [1×3×16384×16384]") || !strings.Contains(stderr, "memory limit of 4.0 GiB") ||
		!strings.Contains(stderr, "--max-memory") {
		t.Errorf("huge model check: exit %d, stderr %q", code, stderr)
	}
	// dimensions whose product overflows
	code, _, stderr = facever(t, "model", "check", reluONNX(t, 1<<31, 1<<31))
	if code != exitError || !strings.Contains(stderr, "over the memory limit") {
		t.Errorf("overflowing model check: exit %d, stderr %q", code, stderr)
	}

	// 1×3×256×256 (768 KiB a tensor): runs by default, refused under 2 MiB
	small := reluONNX(t, 256, 256)
	code, stdout, stderr := facever(t, "model", "check", small)
	if code != 0 || !strings.Contains(stdout, "memory  3.0 MiB") {
		t.Errorf("small model check: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	code, _, stderr = facever(t, "model", "check", small, "--max-memory", "2MiB")
	if code != exitError || !strings.Contains(stderr, "needs more than the memory limit of 2.0 MiB") {
		t.Errorf("small model check under 2 MiB: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = facever(t, "model", "check", small, "--max-memory", "lots")
	if code != exitError || !strings.Contains(stderr, `"lots" is not a size`) {
		t.Errorf("bad --max-memory: exit %d, stderr %q", code, stderr)
	}

	x := writeFile(t, "x.npy", nil)
	if err := npy.WriteFile(x, []int{1, 3, 256, 256}, make([]float32, 3*256*256)); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	code, _, stderr = facever(t, "model", "run", small, "--in", x, "--out", out, "--max-memory", "1MiB")
	if code != exitError || !strings.Contains(stderr, "needs more than the memory limit of 1.0 MiB") {
		t.Errorf("model run under 1 MiB: exit %d, stderr %q", code, stderr)
	}
	code, stdout, stderr = facever(t, "model", "run", small, "--in", x, "--out", out)
	if code != 0 || !strings.Contains(stdout, "y.npy [1×3×256×256]") {
		t.Errorf("model run: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"4GiB": 4 << 30, "512MB": 512e6, "1000000": 1e6, "1.5 KiB": 1536, "2g": 2e9} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "0", "GB", "4XB", "1e30GB"} {
		if _, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q): no error", in)
		}
	}
}
