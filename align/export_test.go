package align

import "image"

// Hooks for the external tests.

// MeanFaceSide is meanFaceSide.
const MeanFaceSide = meanFaceSide

// MeanFaceTable is the committed mean face.
var MeanFaceTable = meanFace[:]

// SmallGreyChip is f's 28×28 grey chip (the input of the upright check).
func SmallGreyChip(im *Image, f Face) []uint8 {
	t, err := Similarity(f.Landmarks[:], Template[:])
	if err != nil {
		return nil
	}
	g := greyChip(im.Mat, t)
	defer g.Close()
	return smallChip(g)
}

// Pyramid lists the levels' scales and tile counts searched on a w×h photo.
func Pyramid(w, h, smallest int) (scales []float64, tileCounts []int) {
	all := image.Rect(0, 0, w, h)
	for _, lv := range pyramid(w, h, all, float64(smallest)) {
		scales = append(scales, lv.scale)
		tileCounts = append(tileCounts, len(tiles(w, h, all, lv, false)))
	}
	return scales, tileCounts
}

// LegacyOptions are opt with the single-pass recipe of before the image
// pyramid (Options.legacy), for the side-by-side benchmark.
func LegacyOptions(opt Options) Options {
	opt.legacy = true
	return opt
}
