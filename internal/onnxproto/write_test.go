package onnxproto_test

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/facever/facever/infer"
	"github.com/facever/facever/internal/cvdnn"
	"github.com/facever/facever/internal/onnxproto"
	"github.com/facever/facever/internal/onnxrt"
)

// tiny is y = Relu(Conv(Pad(x)) + 1) on a 1×1×3×3 input with a 2×2 kernel
// of ones: an initializer of each type, attributes of each kind used, a
// dynamic batch dimension.
func tiny() *onnxproto.Model {
	return &onnxproto.Model{
		IRVersion: 6, Opset: 11, ProducerName: "test",
		Graph: onnxproto.Graph{
			Name: "tiny",
			Nodes: []onnxproto.Node{
				{Name: "pad", OpType: "Pad", Inputs: []string{"x", "pads"}, Outputs: []string{"p"}, Attrs: []onnxproto.Attr{onnxproto.String("mode", "constant")}},
				{Name: "conv", OpType: "Conv", Inputs: []string{"p", "w", "b"}, Outputs: []string{"c"},
					Attrs: []onnxproto.Attr{onnxproto.Ints("kernel_shape", 2, 2), onnxproto.Ints("strides", 1, 1), onnxproto.Ints("pads", 0, 0, 0, 0)}},
				{Name: "relu", OpType: "Relu", Inputs: []string{"c"}, Outputs: []string{"y"}},
			},
			Initializers: []onnxproto.Tensor{
				onnxproto.Int64Tensor("pads", []int64{0, 0, 0, 0, 0, 0, 1, 1}, 8),
				onnxproto.FloatTensor("w", []float32{1, 1, 1, 1}, 1, 1, 2, 2),
				onnxproto.FloatTensor("b", []float32{-10}, 1),
			},
			Inputs:  []onnxproto.ValueInfo{{Name: "x", ElemType: onnxproto.Float, Dims: []onnxproto.Dim{{Param: "N"}, {Value: 1}, {Value: 3}, {Value: 3}}}},
			Outputs: []onnxproto.ValueInfo{{Name: "y", ElemType: onnxproto.Float, Dims: []onnxproto.Dim{{Param: "N"}, {Value: 1}, {Value: 3}, {Value: 3}}}},
		},
		Metadata: []onnxproto.KV{{Key: "a", Value: "1"}, {Key: "b", Value: "2"}},
	}
}

// want is tiny's output for x = 1..9: the 2×2 sums of the input padded
// with zeros at the end of rows and columns, minus 10, clipped at 0.
var want = []float32{2, 6, 0, 14, 18, 5, 5, 7, 0}

func input() infer.Tensor {
	x := infer.NewTensor(1, 1, 3, 3)
	for i := range x.Data {
		x.Data[i] = float32(i + 1)
	}
	return x
}

func check(t *testing.T, who string, out []infer.Tensor, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", who, err)
	}
	for i, v := range want {
		if math.Abs(float64(out[0].Data[i]-v)) > 1e-6 {
			t.Fatalf("%s: output %v, want %v", who, out[0].Data, want)
		}
	}
}

// TestRunsInOpenCVAndEngine: the written model loads and gives the right
// numbers in OpenCV DNN and in the project's engine (onnx-go's decoder).
func TestRunsInOpenCVAndEngine(t *testing.T) {
	b, err := tiny().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := cvdnn.Validate(b); err != nil {
		t.Fatal(err)
	}
	cv, err := cvdnn.OpenBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	defer cv.Close()
	out, err := cv.Run(map[string]infer.Tensor{"x": input()}, []string{"y"})
	check(t, "opencv", out, err)

	m, err := onnxrt.Load(b)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Opset() != 11 {
		t.Errorf("engine reads opset %d", m.Opset())
	}
	out, err = m.Run(map[string]infer.Tensor{"x": input()}, []string{"y"})
	check(t, "engine", out, err)
}

// TestDeterministic: the same model gives the same bytes.
func TestDeterministic(t *testing.T) {
	a, err := tiny().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := tiny().Marshal()
	if !bytes.Equal(a, b) {
		t.Fatal("two encodings differ")
	}
	for _, s := range []string{"pads", "kernel_shape", "tiny", "Relu"} {
		if !bytes.Contains(a, []byte(s)) {
			t.Errorf("%q not in the encoding", s)
		}
	}
}

// TestChecks: inconsistent models are refused.
func TestChecks(t *testing.T) {
	m := tiny()
	m.Graph.Initializers[1].Floats = m.Graph.Initializers[1].Floats[:3]
	if _, err := m.Marshal(); err == nil || !strings.Contains(err.Error(), "need 4 values, have 3") {
		t.Errorf("short initializer: %v", err)
	}
	m = tiny()
	m.Opset = 0
	if _, err := m.Marshal(); err == nil {
		t.Error("no opset: no error")
	}
	m = tiny()
	m.Graph.Nodes[0].OpType = ""
	if _, err := m.Marshal(); err == nil {
		t.Error("node without op: no error")
	}
}
