package onnxrt_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/facever/facever/infer"
	"github.com/facever/facever/internal/gemm"
	"github.com/facever/facever/internal/onnxrt"
)

// TestLegacyConvModels: on the three real models and real faces, at
// batch 1 and 3, one thread and the pool, with every micro-kernel, the
// depthwise row kernels give the outputs of the old flat kernel bit for
// bit.
func TestLegacyConvModels(t *testing.T) {
	files := faceImages(t)
	for _, rm := range realModels {
		_, m := loadReal(t, rm)
		names := outNames(m)
		in := m.Inputs()[0].Name
		for _, batch := range []int{1, 3} {
			inputs := map[string]infer.Tensor{in: blob(t, rm, files[:batch])}
			for _, k := range gemm.Kernels() {
				for _, threads := range []int{0, 1} {
					restore, err := onnxrt.SetKernel(k)
					if err != nil {
						t.Fatal(err)
					}
					m.SetThreads(threads)
					var outs [2][]infer.Tensor
					for i, legacy := range []bool{true, false} {
						back := onnxrt.SetLegacyConv(legacy)
						outs[i], err = m.Run(inputs, names)
						back()
						if err != nil {
							t.Fatal(err)
						}
					}
					restore()
					desc := fmt.Sprintf("%s batch %d %v threads %d", rm.file, batch, k, threads)
					for o := range names {
						for j, v := range outs[1][o].Data {
							if w := outs[0][o].Data[j]; math.Float32bits(v) != math.Float32bits(w) {
								t.Fatalf("%s: %s[%d] = %g, legacy %g", desc, names[o], j, v, w)
							}
						}
					}
				}
			}
		}
		m.Close()
	}
}
