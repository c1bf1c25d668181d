package align_test

import (
	"testing"

	"github.com/facever/facever/align"
)

// TestPyramidLevels: a small photo is one whole-photo pass; large ones get
// tiled levels down to the scale where 40-px faces reach the detector, with
// a tile count that grows with the area, never with more than one tile in
// memory.
func TestPyramidLevels(t *testing.T) {
	for _, tc := range []struct {
		w, h, levels int
	}{
		{375, 375, 1}, {640, 480, 1}, {1920, 1280, 2}, {4000, 3000, 3}, {16000, 12500, 4}, {2336, 500, 3},
	} {
		scales, counts := align.Pyramid(tc.w, tc.h, align.DefaultSmallestFace)
		if len(scales) != tc.levels {
			t.Errorf("%d×%d: %d levels %v, want %d", tc.w, tc.h, len(scales), scales, tc.levels)
		}
		last := scales[len(scales)-1]
		if len(scales) > 1 && last*align.DefaultSmallestFace < 22 {
			t.Errorf("%d×%d: finest scale %.3f makes a 40-px face %.1f input pixels", tc.w, tc.h, last, last*align.DefaultSmallestFace)
		}
		total := 0
		for _, c := range counts {
			total += c
		}
		t.Logf("%d×%d: scales %.3f, tiles %v (%d detector runs)", tc.w, tc.h, scales, counts, total)
	}
}
