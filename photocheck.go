package facever

import (
	"errors"
	"fmt"
	"math"

	"github.com/facever/facever/align"
)

// DefaultMinFace is the smallest face enrolled by default: the shorter side
// of its detector box, in pixels (the CLI's --min-face default). A smaller
// face is upsampled more than 2.8× into the 112×112 chip: a template made
// of interpolated pixels.
const DefaultMinFace = 40

// ErrFaceTooSmall: the face's box is smaller than EnrollPolicy.MinFace.
var ErrFaceTooSmall = errors.New("face too small")

// EnrollPolicy is what a photo must satisfy to be enrolled as a template.
// The zero value is the policy of `facever enroll` without flags: exactly one
// face, at least DefaultMinFace pixels across.
type EnrollPolicy struct {
	// Largest accepts a photo with several faces and takes its largest;
	// false rejects such a photo (whose face is meant is ambiguous). The
	// largest is taken even when its quality is low, and enroll's
	// --min-quality then refuses the photo rather than enrolling a
	// smaller face that passes: which face is meant is not known (in some
	// LFW photos the largest face is someone's in the background).
	Largest bool
	// MinFace is the shorter side of the face box, in pixels, below which a
	// face is rejected: 0 means DefaultMinFace, a negative value no minimum.
	MinFace int
}

// minFace is the policy's minimum in pixels (0: none).
func (p EnrollPolicy) minFace() int {
	switch {
	case p.MinFace == 0:
		return DefaultMinFace
	case p.MinFace < 0:
		return 0
	}
	return p.MinFace
}

// PhotoError is why a photo was rejected for enrollment. Err is one of
// align.ErrNoFace, align.ErrMultipleFaces and ErrFaceTooSmall, so that
// callers can test it with errors.Is (the HTTP server maps each to its
// status) and word their own advice from the fields (the CLI names its
// flags).
type PhotoError struct {
	// Err is the kind of rejection.
	Err error
	// Faces is the number of faces found.
	Faces int
	// Side is the shorter side of the chosen face's box, in pixels
	// (ErrFaceTooSmall only).
	Side float64
	// MinFace is the minimum the face missed (ErrFaceTooSmall only).
	MinFace int
}

// Error says what was wrong and what to do, without naming any flag.
func (e *PhotoError) Error() string {
	switch {
	case errors.Is(e.Err, align.ErrMultipleFaces):
		return fmt.Sprintf("%d faces found: crop the photo to one person, or enroll the largest face", e.Faces)
	case errors.Is(e.Err, ErrFaceTooSmall):
		return fmt.Sprintf("face is %.0f pixels across, below the minimum of %d: use a sharper, closer photo", e.Side, e.MinFace)
	}
	return e.Err.Error()
}

// Unwrap returns Err.
func (e *PhotoError) Unwrap() error { return e.Err }

// CheckEnrollFaces applies the enrollment policy to the faces a detector
// found in one photo (largest first, as Detect returns them) and returns
// the face to enroll, or a *PhotoError saying why the photo is rejected:
// no face; several faces unless p.Largest; a face whose box is less than
// p.MinFace pixels on its shorter side. It is the one check of the CLI's
// `facever enroll` and of the HTTP server's enroll endpoint.
//
// Photos that are aligned chips already (Options.Aligned) skip the check:
// there is no detection to check.
func CheckEnrollFaces(faces []align.Face, p EnrollPolicy) (align.Face, error) {
	switch {
	case len(faces) == 0:
		return align.Face{}, &PhotoError{Err: align.ErrNoFace}
	case len(faces) > 1 && !p.Largest:
		return align.Face{}, &PhotoError{Err: align.ErrMultipleFaces, Faces: len(faces)}
	}
	f := faces[0]
	if side, min := math.Min(f.Width(), f.Height()), p.minFace(); side < float64(min) {
		return f, &PhotoError{Err: ErrFaceTooSmall, Faces: len(faces), Side: side, MinFace: min}
	}
	return f, nil
}
