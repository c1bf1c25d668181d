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

// FaceChipPix is f's 56×56 grey chip, the input of the face-likeness
// classifier (upright.go).
func FaceChipPix(im *Image, f Face) []uint8 {
	t, err := Similarity(f.Landmarks[:], Template[:])
	if err != nil {
		return nil
	}
	g := greyChip(im.Mat, t)
	defer g.Close()
	return faceChipPix(g)
}

// FaceChipZ is faceChipZ.
var FaceChipZ = faceChipZ

// FaceChipSide is faceChipSide.
const FaceChipSide = faceChipSide

// Rescored is q with its FaceLike measured anew on chip (FaceChipPix) and
// its score recomputed, for the quality experiment's fits.
func Rescored(q Quality, chip []uint8) Quality {
	return RescoredGate(q, chip, faceLikeLo, faceLikeHi)
}

// RescoredGate is Rescored with the FaceLike gate ramping from lo to hi.
func RescoredGate(q Quality, chip []uint8, lo, hi float64) Quality {
	return ScoredWith(q, faceLogit(faceChipZ(chip)), lo, hi)
}

// FaceLogit is faceLogit.
var FaceLogit = faceLogit

// ScoredWith is q scored with the given FaceLike and the FaceLike gate
// ramping from lo to hi.
func ScoredWith(q Quality, faceLike, lo, hi float64) Quality {
	q.FaceLike = faceLike
	q.scoreGated(lo, hi)
	return q
}

// FaceLikeSure and UprightSure are faceLikeSure and uprightSure.
const (
	FaceLikeSure = faceLikeSure
	UprightSure  = uprightSure
)
