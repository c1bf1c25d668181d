package train

import (
	"slices"
	"testing"
)

// TestSplitAsTrainCommand pins the split `facever train --val` has always
// made (people with two or more photos, PCG seeded by --seed): the indices
// below come from the CLI's own implementation before it moved here.
func TestSplitAsTrainCommand(t *testing.T) {
	photos := []int{3, 1, 2, 5, 1, 2, 2, 4, 1, 6, 2, 3}
	held := Split(photos, SplitOptions{HeldOut: 0.3, Seed: 7, MinPhotos: 2})
	var got []int
	for i, h := range held {
		if h {
			got = append(got, i)
		}
	}
	if want := []int{0, 3, 7}; !slices.Equal(got, want) {
		t.Fatalf("held out %v, want %v", got, want)
	}
	for i, h := range held {
		if h && photos[i] < 2 {
			t.Errorf("identity %d with %d photo held out", i, photos[i])
		}
	}
	if held := Split(photos, SplitOptions{HeldOut: 0, Seed: 7, MinPhotos: 2}); slices.Contains(held, true) {
		t.Errorf("HeldOut 0 held out %v", held)
	}
	if held := Split([]int{1, 1}, SplitOptions{HeldOut: 0.5, Seed: 1, MinPhotos: 2}); slices.Contains(held, true) {
		t.Errorf("no eligible identity, held out %v", held)
	}
}
