package onnxrt

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/facever/facever/infer"
)

func TestLoadErrors(t *testing.T) {
	// an operator the engine lacks: the error names node and operator
	data, err := os.ReadFile(filepath.Join(onnxTestData, "node", "test_top_k", "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Load(data)
	if !errors.Is(err, ErrUnsupportedOp) || !strings.Contains(err.Error(), `"values"`) || !strings.Contains(err.Error(), "TopK") {
		t.Errorf("err = %v, want ErrUnsupportedOp naming node \"values\" and TopK", err)
	}
	if m == nil || len(m.Unsupported()) != 1 || m.Unsupported()[0] != "TopK" || m.Opset() != 11 || len(m.Inputs()) != 2 {
		t.Fatalf("model description missing: %+v", m)
	}
	if _, err := m.Run(map[string]infer.Tensor{}, nil); !errors.Is(err, ErrUnsupportedOp) {
		t.Errorf("Run of an unsupported model: %v", err)
	}
	// malformed files
	good, err := os.ReadFile(filepath.Join(onnxTestData, "node", "test_relu", "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"empty":     nil,
		"garbage":   []byte("this is not an ONNX file at all"),
		"truncated": good[:len(good)/2],
	} {
		if _, err := Load(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
	// wrong input shape
	m, err = Load(good)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Run(map[string]infer.Tensor{"x": infer.NewTensor(3, 4, 6)}, nil); err == nil || !strings.Contains(err.Error(), "shape") {
		t.Errorf("wrong shape: err = %v", err)
	}
	if _, err := m.Run(map[string]infer.Tensor{"nope": infer.NewTensor(3, 4, 5)}, nil); err == nil {
		t.Error("unknown input accepted")
	}
	out, err := m.Run(map[string]infer.Tensor{"x": {Shape: []int{3, 4, 5}, Data: make([]float32, 60)}}, []string{"y"})
	if err != nil || len(out) != 1 || len(out[0].Data) != 60 {
		t.Errorf("relu: %v %v", out, err)
	}
}
