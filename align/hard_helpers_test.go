package align_test

import (
	"image"
	"image/color"
	"math"
	"math/rand"

	"gocv.io/x/gocv"

	"github.com/facever/facever/align"
)

// Builders of hard photos from real ones (johns, LFW), for the tests: a
// face pasted small into a large frame, darkened, blurred, rolled, turned,
// compressed, cropped. Nothing here is committed as a photo.

// backdrop returns a w×h frame of smooth coloured noise (a stand-in for a
// scene without faces), seeded.
func backdrop(w, h int, seed int64) gocv.Mat {
	rng := rand.New(rand.NewSource(seed))
	pix := make([]byte, 12*16*3)
	for i := range pix {
		pix[i] = uint8(40 + rng.Intn(170))
	}
	small, err := gocv.NewMatFromBytes(12, 16, gocv.MatTypeCV8UC3, pix)
	if err != nil {
		panic(err)
	}
	defer small.Close()
	out := gocv.NewMat()
	gocv.Resize(small, &out, image.Pt(w, h), 0, 0, gocv.InterpolationCubic)
	return out
}

// paste resizes src to side×side pixels (area averaging) and copies it into
// dst with its top-left corner at p.
func paste(dst *gocv.Mat, src gocv.Mat, side int, p image.Point) {
	s := gocv.NewMat()
	defer s.Close()
	interp := gocv.InterpolationArea
	if side > src.Cols() {
		interp = gocv.InterpolationLinear
	}
	gocv.Resize(src, &s, image.Pt(side, side*src.Rows()/src.Cols()), 0, 0, interp)
	roi := dst.Region(image.Rect(p.X, p.Y, p.X+s.Cols(), p.Y+s.Rows()))
	defer roi.Close()
	s.CopyTo(&roi)
}

// rollImage rotates m by deg degrees (clockwise) about its centre, growing
// the frame so that nothing is cut; the corners are filled with the mean
// colour of the border.
func rollImage(m gocv.Mat, deg float64) gocv.Mat {
	w, h := float64(m.Cols()), float64(m.Rows())
	rad := deg * math.Pi / 180
	nw := math.Abs(w*math.Cos(rad)) + math.Abs(h*math.Sin(rad))
	nh := math.Abs(w*math.Sin(rad)) + math.Abs(h*math.Cos(rad))
	rot := gocv.GetRotationMatrix2D(image.Pt(int(w/2), int(h/2)), -deg, 1)
	defer rot.Close()
	rot.SetDoubleAt(0, 2, rot.GetDoubleAt(0, 2)+(nw-w)/2)
	rot.SetDoubleAt(1, 2, rot.GetDoubleAt(1, 2)+(nh-h)/2)
	out := gocv.NewMat()
	gocv.WarpAffineWithParams(m, &out, rot, image.Pt(int(nw+0.5), int(nh+0.5)), gocv.InterpolationLinear, gocv.BorderReplicate, color.RGBA{})
	return out
}

// turnImage turns m clockwise by 90, 180 or 270 degrees.
func turnImage(m gocv.Mat, deg int) gocv.Mat {
	out := gocv.NewMat()
	switch deg {
	case 90:
		gocv.Rotate(m, &out, gocv.Rotate90Clockwise)
	case 180:
		gocv.Rotate(m, &out, gocv.Rotate180Clockwise)
	case 270:
		gocv.Rotate(m, &out, gocv.Rotate90CounterClockwise)
	default:
		m.CopyTo(&out)
	}
	return out
}

// darken scales every pixel by f (0.25: a badly under-exposed photo).
func darken(m gocv.Mat, f float64) gocv.Mat {
	out := gocv.NewMat()
	m.ConvertToWithParams(&out, gocv.MatTypeCV8UC3, float32(f), 0)
	return out
}

// blur applies a Gaussian blur of the given sigma in pixels.
func blur(m gocv.Mat, sigma float64) gocv.Mat {
	out := gocv.NewMat()
	gocv.GaussianBlur(m, &out, image.Pt(0, 0), sigma, sigma, gocv.BorderReflect101)
	return out
}

// recompress encodes m as JPEG at the given quality and decodes it.
func recompress(m gocv.Mat, q int) gocv.Mat {
	buf, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, m, []int{gocv.IMWriteJpegQuality, q})
	if err != nil {
		panic(err)
	}
	defer buf.Close()
	out, err := gocv.IMDecode(buf.GetBytes(), gocv.IMReadColor)
	if err != nil {
		panic(err)
	}
	return out
}

// image wraps a Mat the caller owns as an *align.Image.
func asImage(m gocv.Mat) *align.Image { return &align.Image{Mat: m} }
