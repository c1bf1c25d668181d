package align_test

import (
	"sort"
	"sync"
	"testing"

	"github.com/facever/facever/align"
)

// faceLikeSureMargin is how far below faceLikeSure the highest
// face-likeness of a face aligned upside down must stay.
const faceLikeSureMargin = 1.0

var (
	qsOnce   sync.Once
	qsShared []qSample
)

// sharedQSamples is loadQSamples(t, lfwEvery()), built once per test
// binary (the quality experiment's tests share it).
func sharedQSamples(t *testing.T) []qSample {
	qsOnce.Do(func() { qsShared = loadQSamples(t, lfwEvery()) })
	if qsShared == nil {
		t.Fatal("the quality experiment's samples could not be built")
	}
	return qsShared
}

// TestFaceLikeSure checks the face-likeness log-odds from which a reading
// is taken as upright without a tracking error, half-turn check or turn
// search (align.FaceLikeSure) against the quality experiment's faces
// aligned upside down (johns and LFW photos turned by 180°, read without
// the rotation search): none may come within faceLikeSureMargin of it, in
// either half. It logs how many real faces are sure by it, and by the
// chip's correlation with the mean face (align.UprightSure).
func TestFaceLikeSure(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and reads about 500 photos")
	}
	samples := sharedQSamples(t)
	var down, good []float64
	byLike, byCorr, either := 0, 0, 0
	for _, s := range samples {
		for _, f := range s.Faces {
			like := align.Rescored(f.Q, f.Chip).FaceLike
			switch s.Kind {
			case kindUpsideDown:
				down = append(down, like)
				if like >= align.FaceLikeSure-faceLikeSureMargin {
					t.Errorf("%s, aligned upside down: face-likeness %.2f, within %.1f of the sure threshold %.1f", s.Path, like, faceLikeSureMargin, align.FaceLikeSure)
				}
			case kindGood:
				good = append(good, like)
				l, c := like >= align.FaceLikeSure, f.Q.Upright >= align.UprightSure
				if l {
					byLike++
				}
				if c {
					byCorr++
				}
				if l || c {
					either++
				}
			}
		}
	}
	if len(down) == 0 || len(good) == 0 {
		t.Fatalf("%d upside-down and %d real faces: the experiment built no samples", len(down), len(good))
	}
	sort.Float64s(down)
	sort.Float64s(good)
	t.Logf("faces aligned upside down: %d, face-likeness at most %.2f (sure from %.1f)", len(down), down[len(down)-1], align.FaceLikeSure)
	t.Logf("real faces: %d, face-likeness median %.2f; sure by face-likeness %d, by correlation %d, by either %d", len(good), good[len(good)/2], byLike, byCorr, either)
}
