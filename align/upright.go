package align

import (
	"image"

	"gocv.io/x/gocv"
)

// The face-likeness check: a linear classifier on the aligned chip, in
// grey, reduced to faceChipSide×faceChipSide (area averaging) and
// normalised to mean 0 and unit variance over the whole chip. Its weights
// (upright_weights.go) were fitted by logistic regression to tell the
// chips of real upright faces (johns, LFW) from the chips of constructed
// bad faces: photos turned upside down and aligned upside down, crops of
// the forehead and eyes, of the eyes, of the mouth, of half a face, and of
// background. Quality.FaceLike is its output, the log-odds of a good
// face; Quality.Chip its ramp in the score.

// faceChipSide is the side of the classifier's input chip (the 112 chip / 2).
const faceChipSide = 56

// faceChipPix returns the 112×112 grey chip reduced to faceChipSide² grey
// levels (area averaging).
func faceChipPix(grey gocv.Mat) []uint8 {
	small := gocv.NewMat()
	defer small.Close()
	gocv.Resize(grey, &small, image.Pt(faceChipSide, faceChipSide), 0, 0, gocv.InterpolationArea)
	return small.ToBytes()
}

// faceChipZ returns pix (faceChipPix) normalised to mean 0 and unit
// variance.
func faceChipZ(pix []uint8) []float64 {
	v := make([]float64, len(pix))
	for i, p := range pix {
		v[i] = float64(p)
	}
	return standardise(v)
}

// faceLikeOf is the classifier's log-odds (faceLogit) for the 112×112
// grey chip grey.
func faceLikeOf(grey gocv.Mat) float64 { return faceLogit(faceChipZ(faceChipPix(grey))) }

// faceLogit is the classifier's log-odds that z (faceChipValues) is the
// chip of a real upright face.
func faceLogit(z []float64) float64 {
	s := float64(faceBias)
	for i, w := range faceWeights {
		s += float64(w) * z[i]
	}
	return s
}
