package cvdnn

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/facever/facever/infer"
	"github.com/facever/facever/internal/testmodels"
)

func featureModel(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testmodels.Dir(t, "fr_feature"), "fr_feature.onnx"))
	if err != nil {
		t.Fatalf("run `make setup`: %v", err)
	}
	return data
}

// TestMalformedModels: files that would make OpenCV abort the process are
// refused with ErrMalformed before OpenCV sees them.
func TestMalformedModels(t *testing.T) {
	good := featureModel(t)
	tests := map[string][]byte{
		"empty":          nil,
		"text":           []byte("this is not an ONNX model"),
		"truncated half": good[:len(good)/2],
		"truncated tail": good[:len(good)-3],
		"zeros":          make([]byte, 4096),
		"no graph":       {0x08, 0x07}, // ir_version = 7 only
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := OpenBytes(data); !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestRunFeature(t *testing.T) {
	s, err := OpenBytes(featureModel(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	x := infer.NewTensor(2, 3, 112, 112)
	for i := range x.Data {
		x.Data[i] = float32(i%255)/128 - 1
	}
	out, err := s.Run(map[string]infer.Tensor{"input": x}, []string{"output"})
	if err != nil {
		t.Fatal(err)
	}
	// The model's final Reshape is to (1, −1): a batch of two comes back as
	// 1×1024, the two features one after the other. Each must equal the
	// feature of its face run alone.
	if len(out) != 1 || len(out[0].Data) != 2*512 {
		t.Fatalf("output shape %v", out[0].Shape)
	}
	for i := 0; i < 2; i++ {
		one := infer.Tensor{Shape: []int{1, 3, 112, 112}, Data: x.Data[i*3*112*112 : (i+1)*3*112*112]}
		single, err := s.Run(map[string]infer.Tensor{"input": one}, []string{"output"})
		if err != nil {
			t.Fatal(err)
		}
		for j, v := range single[0].Data {
			if d := v - out[0].Data[i*512+j]; d > 1e-4 || d < -1e-4 {
				t.Fatalf("face %d value %d: batched %g, alone %g", i, j, out[0].Data[i*512+j], v)
			}
		}
	}
	if _, err := s.Run(map[string]infer.Tensor{"input": {Shape: []int{1, 3, 112, 112}, Data: make([]float32, 5)}}, []string{"output"}); err == nil {
		t.Fatal("a tensor with too little data: want an error")
	}
}

// FuzzValidate: the protobuf walk never panics.
func FuzzValidate(f *testing.F) {
	good := featureModel(f)
	f.Add(good[:512])
	f.Add([]byte{0x3a, 0x02, 0x0a, 0x00})
	f.Add([]byte{0x08, 0x07})
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = Validate(data)
	})
}
