package onnxrt_test

import (
	"strings"
	"testing"

	"github.com/facever/facever/infer"
)

// TestSubAnySize cuts fr_detect before its box decoding (which holds priors
// for 320×240) and runs the cut graph at pyramid-level sizes: at 320×240
// it gives the full model's scores exactly, at 640×480 and 1280×960 the
// anchor counts of those sizes, without allocating once warm.
func TestSubAnySize(t *testing.T) {
	rm := realModels[1]
	_, m := loadReal(t, rm)
	in := m.Inputs()[0].Name
	x := blob(t, rm, faceImages(t)[:1])
	full, err := m.Run(map[string]infer.Tensor{in: x}, []string{"scores"})
	if err != nil {
		t.Fatal(err)
	}
	// "462" is the Concat of the regression heads, before Slice_152
	sub, err := m.Sub("scores", "462")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Sub("no such value"); err == nil || !strings.Contains(err.Error(), "no value") {
		t.Errorf("unknown value: %v", err)
	}
	got, err := sub.Run(map[string]infer.Tensor{in: x}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(got[0].Data, full[0].Data); d != 0 {
		t.Errorf("scores of the cut graph differ by %g", d)
	}
	if got[1].Shape[1] != 4420 || got[1].Shape[2] != 4 {
		t.Errorf("raw boxes %v, want [1 4420 4]", got[1].Shape)
	}
	big := infer.NewTensor(1, 3, 480, 640)
	if _, err := sub.Run(map[string]infer.Tensor{in: big}, nil); err == nil {
		t.Error("480×640 accepted without AnyInputSize")
	}
	sub.AnyInputSize()
	for _, sz := range []struct{ h, w, anchors int }{{480, 640, 17640}, {960, 1280, 70500}, {250, 250, -1}} {
		x := infer.NewTensor(1, 3, sz.h, sz.w)
		for i := range x.Data {
			x.Data[i] = float32(i%251)/128 - 1
		}
		inputs := map[string]infer.Tensor{in: x}
		outs := make([]infer.Tensor, 2)
		if err := sub.RunInto(inputs, []string{"scores", "462"}, outs); err != nil {
			t.Fatalf("%d×%d: %v", sz.w, sz.h, err)
		}
		if sz.anchors > 0 && (outs[0].Shape[1] != sz.anchors || outs[1].Shape[1] != sz.anchors) {
			t.Errorf("%d×%d: outputs %v %v, want %d anchors", sz.w, sz.h, outs[0].Shape, outs[1].Shape, sz.anchors)
		}
		for i := 0; i < len(outs[0].Data); i += 2 {
			if s := outs[0].Data[i] + outs[0].Data[i+1]; s < 0.999 || s > 1.001 {
				t.Fatalf("%d×%d: anchor %d scores sum to %g", sz.w, sz.h, i/2, s)
			}
		}
		if allocs := testing.AllocsPerRun(2, func() { sub.RunInto(inputs, []string{"scores", "462"}, outs) }); allocs != 0 {
			t.Errorf("%d×%d: %.0f allocations per run", sz.w, sz.h, allocs)
		}
	}
}
