package align_test

import (
	"fmt"
	"image"
	"testing"

	"gocv.io/x/gocv"

	"github.com/facever/facever/align"
)

// benchSizes are the photo sizes whose detection time the README states:
// an LFW-sized photo, VGA, a 2.5-megapixel and a 12-megapixel photo.
var benchSizes = []image.Point{{250, 250}, {640, 480}, {1920, 1280}, {4000, 3000}}

// sizedPhoto resizes group photo 1 (1920×1280, three faces) to size (the
// 250×250 one is a johns photo upscaled, as LFW's photos are face crops).
func sizedPhoto(b testing.TB, size image.Point) *align.Image {
	path := groupPhoto(b, 1)
	if size.X == 250 {
		path = johnsPhoto
	}
	im, err := align.Load(path)
	if err != nil {
		b.Fatal(err)
	}
	defer im.Close()
	m := gocv.NewMat()
	gocv.Resize(im.Mat, &m, size, 0, 0, gocv.InterpolationLinear)
	return &align.Image{Mat: m}
}

const johnsPhoto = "../testdata/johns/John_Simm/000288_00470387.jpg"

// BenchmarkDetectSize is detection plus landmarks of every face of a photo,
// per photo size.
func BenchmarkDetectSize(b *testing.B) {
	a := newAligner(b)
	for _, sz := range benchSizes {
		im := sizedPhoto(b, sz)
		b.Run(fmt.Sprintf("%dx%d", sz.X, sz.Y), func(b *testing.B) {
			n := 0
			for i := 0; i < b.N; i++ {
				faces, err := a.Detect(im)
				if err != nil {
					b.Fatal(err)
				}
				n = len(faces)
			}
			b.ReportMetric(float64(n), "faces")
		})
		im.Close()
	}
}
