package onnxrt

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/facever/facever/infer"
)

// FuzzLoad feeds arbitrary bytes to Load (and runs what loads on zero
// inputs of small declared shapes): it must return errors, never panic.
// Seeds are small models of ONNX's own test suite.
func FuzzLoad(f *testing.F) {
	for _, c := range []string{"test_relu", "test_conv_with_strides_padding", "test_gemm_default_no_bias",
		"test_reshape_negative_dim", "test_softmax_axis_1", "test_prelu_broadcast", "test_maxpool_2d_pads",
		"test_batchnorm_example", "test_slice", "test_transpose_default", "test_concat_2d_axis_0", "test_gather_0"} {
		if b, err := os.ReadFile(filepath.Join(onnxTestData, "node", c, "model.onnx")); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte{})
	f.Add([]byte{0x3a, 0x02, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Load(data)
		if err != nil {
			if m != nil && len(m.Unsupported()) == 0 {
				t.Fatalf("error with a model and no unsupported ops: %v", err)
			}
			return
		}
		inputs := map[string]infer.Tensor{}
		for _, in := range m.Inputs() {
			shape := append([]int{}, in.Shape...)
			n := 1
			for i, d := range shape {
				if d < 0 {
					shape[i] = 1
				}
				n *= shape[i]
				if shape[i] > 64 || n > 1<<16 {
					return
				}
			}
			inputs[in.Name] = infer.NewTensor(shape...)
		}
		_, _ = m.Run(inputs, nil)
	})
}
