package onnxrt

import (
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/facever/facever/infer"
	"github.com/facever/facever/internal/onnxproto"
)

// reluModel is y = Relu(x) for x declared N×3×h×w (N symbolic).
func reluModel(t testing.TB, h, w int64) *Model {
	t.Helper()
	dims := []onnxproto.Dim{{Param: "N"}, {Value: 3}, {Value: h}, {Value: w}}
	pm := &onnxproto.Model{IRVersion: 7, Opset: 13, Graph: onnxproto.Graph{
		Name:    "relu",
		Nodes:   []onnxproto.Node{{Name: "relu", OpType: "Relu", Inputs: []string{"x"}, Outputs: []string{"y"}}},
		Inputs:  []onnxproto.ValueInfo{{Name: "x", ElemType: onnxproto.Float, Dims: dims}},
		Outputs: []onnxproto.ValueInfo{{Name: "y", ElemType: onnxproto.Float, Dims: dims}},
	}}
	b, err := pm.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	m, err := Load(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMemoryLimit: the plan's memory is computed from the shapes before
// anything is allocated, and a Run over the limit is refused.
func TestMemoryLimit(t *testing.T) {
	m := reluModel(t, 256, 256)
	shape := []int{1, 3, 256, 256}
	const tensorBytes = 3 * 256 * 256 * 4
	got, err := m.PlanMemory(map[string][]int{"x": shape})
	if err != nil {
		t.Fatal(err)
	}
	// the input's buffer, the output's, and the output Run returns
	if got < 3*tensorBytes || got > 3*tensorBytes+1<<20 {
		t.Errorf("PlanMemory = %d, want about %d", got, 3*tensorBytes)
	}
	x := infer.NewTensor(shape...)
	m.SetMemoryLimit(2 * tensorBytes)
	if _, err := m.Run(map[string]infer.Tensor{"x": x}, nil); !errors.Is(err, ErrMemoryLimit) ||
		!strings.Contains(err.Error(), "x [1×3×256×256]") || !strings.Contains(err.Error(), "1.5 MiB") {
		t.Errorf("Run over the limit: %v", err)
	}
	m.SetMemoryLimit(got)
	if _, err := m.Run(map[string]infer.Tensor{"x": x}, nil); err != nil {
		t.Errorf("Run at the limit: %v", err)
	}

	// declared 1×3×16384×16384 (3 GiB a tensor): loaded and planned, not
	// allocated (onnx-go would allocate every declared shape)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	big := reluModel(t, 16384, 16384)
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > 16<<20 {
		t.Errorf("Load allocated %d bytes", d)
	}
	runtime.ReadMemStats(&before)
	got, err = big.PlanMemory(map[string][]int{"x": {1, 3, 16384, 16384}})
	runtime.ReadMemStats(&after)
	if err != nil || got < 9<<30 {
		t.Errorf("PlanMemory of the big model = %d, %v; want ≥ 9 GiB", got, err)
	}
	if d := after.TotalAlloc - before.TotalAlloc; d > 16<<20 {
		t.Errorf("PlanMemory allocated %d bytes", d)
	}
	big.SetMemoryLimit(4 << 30)
	if _, err := big.PlanMemory(map[string][]int{"x": {1, 3, 16384, 16384}}); !errors.Is(err, ErrMemoryLimit) {
		t.Errorf("PlanMemory over the limit: %v", err)
	}
	// a shape whose element count overflows is refused, not wrapped around
	if _, err := big.PlanMemory(map[string][]int{"x": {1 << 40, 3, 16384, 16384}}); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("overflowing shape: %v", err)
	}
}

// TestMemoryLimitKernelTables: what a kernel allocates while compiling
// (Pow's broadcast copies) counts against the limit too, and is refused
// before it is allocated.
func TestMemoryLimitKernelTables(t *testing.T) {
	dims := []onnxproto.Dim{{Value: 1}, {Value: 3}, {Value: 256}, {Value: 256}}
	pm := &onnxproto.Model{IRVersion: 7, Opset: 13, Graph: onnxproto.Graph{
		Name:    "pow",
		Nodes:   []onnxproto.Node{{Name: "pow", OpType: "Pow", Inputs: []string{"x", "x"}, Outputs: []string{"y"}}},
		Inputs:  []onnxproto.ValueInfo{{Name: "x", ElemType: onnxproto.Float, Dims: dims}},
		Outputs: []onnxproto.ValueInfo{{Name: "y", ElemType: onnxproto.Float, Dims: dims}},
	}}
	b, err := pm.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	m, err := Load(b)
	if err != nil {
		t.Fatal(err)
	}
	shapes := map[string][]int{"x": {1, 3, 256, 256}}
	const n = 3 * 256 * 256
	got, err := m.PlanMemory(shapes)
	if err != nil {
		t.Fatal(err)
	}
	// input and output buffers, the returned output, two float copies
	if want := int64(n * (4 + 4 + 4 + 8)); got < want || got > want+1<<20 {
		t.Errorf("PlanMemory = %d, want about %d", got, want)
	}
	m.SetMemoryLimit(n * 4) // less than Pow's own copies
	if _, err := m.PlanMemory(shapes); !errors.Is(err, ErrMemoryLimit) || !strings.Contains(err.Error(), "kernel memory") {
		t.Errorf("over the limit: %v", err)
	}
}
