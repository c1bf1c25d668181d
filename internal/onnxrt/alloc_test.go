package onnxrt_test

import (
	"testing"

	"github.com/facever/facever/infer"
)

// TestRunIntoNoAlloc checks that a warmed-up plan runs without allocating,
// on all three real models at batch 1 and 4.
func TestRunIntoNoAlloc(t *testing.T) {
	files := faceImages(t)
	for _, rm := range realModels {
		_, m := loadReal(t, rm)
		names := outNames(m)
		in := m.Inputs()[0].Name
		for _, batch := range []int{1, 4} {
			x := blob(t, rm, files[:batch])
			inputs := map[string]infer.Tensor{in: x}
			outs := make([]infer.Tensor, len(names))
			if err := m.RunInto(inputs, names, outs); err != nil {
				t.Fatal(err)
			}
			allocs := testing.AllocsPerRun(5, func() {
				if err := m.RunInto(inputs, names, outs); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("%s batch %d: %.1f allocations per run", rm.file, batch, allocs)
			}
		}
	}
}
