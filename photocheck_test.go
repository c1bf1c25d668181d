package facever

import (
	"errors"
	"testing"

	"github.com/facever/facever/align"
)

// box is a detected face of the given size at the origin.
func box(w, h float64) align.Face {
	return align.Face{Box: [4]float64{10, 20, 10 + w, 20 + h}, Score: 0.9}
}

func TestCheckEnrollFaces(t *testing.T) {
	big, small := box(120, 150), box(30, 60)
	cases := []struct {
		name  string
		faces []align.Face
		p     EnrollPolicy
		want  error // nil: accepted
		face  align.Face
		msg   string
	}{
		{"no face", nil, EnrollPolicy{}, align.ErrNoFace, align.Face{}, "no face found"},
		{"one face", []align.Face{big}, EnrollPolicy{}, nil, big, ""},
		{"several faces", []align.Face{big, small}, EnrollPolicy{}, align.ErrMultipleFaces, align.Face{},
			"2 faces found: crop the photo to one person, or enroll the largest face"},
		{"several faces, largest", []align.Face{big, small}, EnrollPolicy{Largest: true}, nil, big, ""},
		{"small face, default minimum 40", []align.Face{small}, EnrollPolicy{}, ErrFaceTooSmall, small,
			"face is 30 pixels across, below the minimum of 40: use a sharper, closer photo"},
		{"at the minimum", []align.Face{box(40, 41)}, EnrollPolicy{}, nil, box(40, 41), ""},
		{"just below the minimum", []align.Face{box(39.4, 80)}, EnrollPolicy{}, ErrFaceTooSmall, box(39.4, 80),
			"face is 39 pixels across, below the minimum of 40: use a sharper, closer photo"},
		{"small face, lower minimum", []align.Face{small}, EnrollPolicy{MinFace: 25}, nil, small, ""},
		{"no minimum", []align.Face{box(3, 3)}, EnrollPolicy{MinFace: -1}, nil, box(3, 3), ""},
		{"higher minimum", []align.Face{big}, EnrollPolicy{MinFace: 121}, ErrFaceTooSmall, big,
			"face is 120 pixels across, below the minimum of 121: use a sharper, closer photo"},
		{"largest, but it is small", []align.Face{small, box(20, 20)}, EnrollPolicy{Largest: true}, ErrFaceTooSmall, small,
			"face is 30 pixels across, below the minimum of 40: use a sharper, closer photo"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := CheckEnrollFaces(c.faces, c.p)
			if c.want == nil {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
			} else {
				var pe *PhotoError
				if !errors.Is(err, c.want) || !errors.As(err, &pe) {
					t.Fatalf("got %v, want a *PhotoError wrapping %v", err, c.want)
				}
				if err.Error() != c.msg {
					t.Errorf("message %q, want %q", err.Error(), c.msg)
				}
				if pe.Faces != len(c.faces) {
					t.Errorf("Faces %d, want %d", pe.Faces, len(c.faces))
				}
			}
			if f != c.face {
				t.Errorf("face %v, want %v", f.Box, c.face.Box)
			}
		})
	}
}
