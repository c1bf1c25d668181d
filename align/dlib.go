package align

import (
	"errors"
	"fmt"
	"image"
	"math"

	"gocv.io/x/gocv"
)

// DlibChipSize is the side of the chip dlib's face-recognition ResNet takes.
const DlibChipSize = 150

// DlibPadding is the padding of dlib's face chips (get_face_chip_details).
const DlibPadding = 0.25

// DlibTemplate is dlib's five-point template in 150×150 chip coordinates
// (padding 0.25): outer and inner corner of the eye on the image's right,
// outer and inner corner of the eye on the image's left, bottom of the nose
// (docs/alignment.md gives it to four decimals: (110.9567, 46.3498),
// (89.6060, 47.8967), (37.0575, 46.3727), (58.4085, 47.9064),
// (74.0112, 87.7798)). It is computed as dlib's get_face_chip_details does,
// (padding + p)/(2·padding + 1)·size from its mean-face points p.
var DlibTemplate = dlibTemplate(DlibChipSize, DlibPadding)

func dlibTemplate(size int, padding float64) [5]Point {
	mean := [5]Point{
		{0.8595674595992, 0.2134981538014},
		{0.6460604764104, 0.2289674387677},
		{0.1205750620789, 0.2137274526848},
		{0.3340850613712, 0.2290642403242},
		{0.4901123135679, 0.6277975316475},
	}
	var t [5]Point
	for i, p := range mean {
		t[i] = Point{(padding + p.X) / (2*padding + 1) * float64(size), (padding + p.Y) / (2*padding + 1) * float64(size)}
	}
	return t
}

// DlibIndices are the 68-point indices (iBUG 300-W, 0-based) of dlib's
// five points, in DlibTemplate's order.
var DlibIndices = [5]int{45, 42, 36, 39, 33}

// DlibFivePoints picks dlib's five points from 68 landmarks.
func DlibFivePoints(p *[68]Point) [5]Point {
	var q [5]Point
	for i, k := range DlibIndices {
		q[i] = p[k]
	}
	return q
}

// DlibChipTransform returns where dlib's chip samples the photo: chip pixel
// (x, y) is read at Center + M·(x − 74.5, y − 74.5) in the photo (M a
// scaled rotation). It follows dlib's get_face_chip_details and
// extract_image_chip: fit the similarity T = s·R·p + t from DlibTemplate to
// the landmarks, Center = T(75, 75), M = k·R with k = (150·s − 1)/149.
func DlibChipTransform(f Face) (center Point, m [2][2]float64, scale float64, err error) {
	pts := DlibFivePoints(&f.Points68)
	t, err := Similarity(DlibTemplate[:], pts[:])
	if err != nil {
		return Point{}, m, 0, err
	}
	s := math.Hypot(t[0][0], t[1][0])
	if !(s > 0) || math.IsInf(s, 0) {
		return Point{}, m, 0, ErrDegenerate
	}
	half := float64(DlibChipSize) / 2
	center = t.Apply(Point{half, half})
	k := (float64(DlibChipSize)*s - 1) / float64(DlibChipSize-1)
	for r := 0; r < 2; r++ {
		for c := 0; c < 2; c++ {
			m[r][c] = k * t[r][c] / s
		}
	}
	return center, m, s, nil
}

// ErrBadImage is returned by AlignDlib for an image that is not 8-bit BGR.
var ErrBadImage = errors.New("not an 8-bit, 3-channel image")

// AlignDlib makes the 150×150 RGB chip dlib's face-recognition ResNet
// expects, from f's 68 landmarks (dlib's five points are 45, 42, 36, 39, 33).
// It reproduces dlib's extract_image_chip: bilinear sampling in float64 at
// DlibChipTransform's positions, black where the 2×2 neighbourhood leaves
// the photo, values truncated to uint8.
//
// For faces more than twice the chip's scale, dlib first halves the photo
// with its own pyramid filter; here such photos are halved with OpenCV's
// PyrDown instead (same 5-tap kernel, not bit-identical to dlib).
func AlignDlib(im *Image, f Face) (Chip, error) {
	f = im.fromSource(f)
	if im == nil || im.Mat.Empty() {
		return Chip{}, fmt.Errorf("align dlib: %w", ErrNotImage)
	}
	if im.Mat.Type() != gocv.MatTypeCV8UC3 {
		return Chip{}, fmt.Errorf("align dlib: %w", ErrBadImage)
	}
	center, m, s, err := DlibChipTransform(f)
	if err != nil {
		return Chip{}, fmt.Errorf("align dlib: %w", err)
	}
	src, owned := im.Mat, false
	// dlib descends its pyramid while the halved chip rectangle still has
	// more pixels than the chip, i.e. while the scale exceeds 2.
	for s > 2 && src.Rows() >= 4 && src.Cols() >= 4 {
		down := gocv.NewMat()
		gocv.PyrDown(src, &down, image.Pt(0, 0), gocv.BorderReflect101)
		if owned {
			src.Close()
		}
		src, owned = down, true
		s /= 2
		center = Point{center.X / 2, center.Y / 2}
		for r := range m {
			for c := range m[r] {
				m[r][c] /= 2
			}
		}
	}
	if owned {
		defer src.Close()
	}
	pix := src.ToBytes()
	return Chip{Size: DlibChipSize, Pix: sampleDlib(pix, src.Cols(), src.Rows(), center, m)}, nil
}

// sampleDlib is dlib's bilinear chip sampling over a BGR buffer; it returns
// RGB bytes.
func sampleDlib(bgr []byte, w, h int, center Point, m [2][2]float64) []uint8 {
	const n = DlibChipSize
	out := make([]uint8, 3*n*n)
	for y := 0; y < n; y++ {
		dy := float64(y) - (n-1)/2.0
		for x := 0; x < n; x++ {
			dx := float64(x) - (n-1)/2.0
			px := center.X + m[0][0]*dx + m[0][1]*dy
			py := center.Y + m[1][0]*dx + m[1][1]*dy
			fl, ft := math.Floor(px), math.Floor(py)
			if !(fl >= 0 && ft >= 0 && fl+1 < float64(w) && ft+1 < float64(h)) {
				continue // black, as dlib leaves pixels it cannot interpolate
			}
			left, top := int(fl), int(ft)
			lr, tb := px-fl, py-ft
			i00 := 3 * (top*w + left)
			i01 := i00 + 3
			i10 := i00 + 3*w
			i11 := i10 + 3
			o := 3 * (y*n + x)
			for c := 0; c < 3; c++ { // BGR in, RGB out
				v := (1-tb)*((1-lr)*float64(bgr[i00+c])+lr*float64(bgr[i01+c])) +
					tb*((1-lr)*float64(bgr[i10+c])+lr*float64(bgr[i11+c]))
				out[o+2-c] = uint8(v) // truncation, as dlib's vector_to_pixel
			}
		}
	}
	return out
}
