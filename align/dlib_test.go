package align_test

import (
	"image"
	"image/color"
	"math"
	"path/filepath"
	"testing"

	"gocv.io/x/gocv"

	"github.com/facever/facever/align"
)

// gradientImage makes a w×h BGR image with B = x/2, G = y/2, R = 77: every
// channel is linear in the pixel coordinates, so bilinear sampling at a
// point (px, py) inside the image gives exactly px/2 and py/2.
func gradientImage(t *testing.T, w, h int) *align.Image {
	t.Helper()
	if w > 512 || h > 512 {
		t.Fatal("gradient must stay below 256")
	}
	m := gocv.NewMatWithSize(h, w, gocv.MatTypeCV8UC3)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			m.SetUCharAt(y, 3*x, uint8(x/2))
			m.SetUCharAt(y, 3*x+1, uint8(y/2))
			m.SetUCharAt(y, 3*x+2, 77)
		}
	}
	return &align.Image{Mat: m}
}

// faceFrom places dlib's five template points, mapped by the similarity
// p ↦ s·R(θ)·p + t, at their 68-point indices.
func faceFrom(s, theta float64, t align.Point) (align.Face, align.Affine) {
	c, sn := s*math.Cos(theta), s*math.Sin(theta)
	m := align.Affine{{c, -sn, t.X}, {sn, c, t.Y}}
	var f align.Face
	for i, k := range align.DlibIndices {
		f.Points68[k] = m.Apply(align.DlibTemplate[i])
	}
	return f, m
}

// TestAlignDlibIdentity: landmarks exactly on the template (s = 1, no
// rotation) make k = 1 and centre (75, 75), so chip pixel (x, y) samples
// the photo at (x + 0.5, y + 0.5): on a linear gradient, B = (x+0.5)/2.
func TestAlignDlibIdentity(t *testing.T) {
	im := gradientImage(t, 300, 300)
	defer im.Close()
	f, _ := faceFrom(1, 0, align.Point{})
	chip, err := align.AlignDlib(im, f)
	if err != nil {
		t.Fatal(err)
	}
	if chip.Size != 150 || len(chip.Pix) != 150*150*3 {
		t.Fatalf("chip size %d, %d bytes", chip.Size, len(chip.Pix))
	}
	exact := 0
	for y := 0; y < 150; y++ {
		for x := 0; x < 150; x++ {
			// bilinear between x/2 and (x+1)/2 (integer halves) at 0.5,
			// truncated; the fitted transform is the identity up to
			// rounding, which may move a value that is exactly an
			// integer just below it
			wantB := int((float64(x/2) + float64((x+1)/2)) / 2)
			wantG := int((float64(y/2) + float64((y+1)/2)) / 2)
			p := chip.Pix[3*(150*y+x):]
			db, dg := int(p[2])-wantB, int(p[1])-wantG
			if p[0] != 77 || db < -1 || db > 0 || dg < -1 || dg > 0 {
				t.Fatalf("chip (%d,%d) = RGB %v, want 77 %d %d", x, y, p[:3], wantG, wantB)
			}
			if db == 0 && dg == 0 {
				exact++
			}
		}
	}
	if exact < 150*150*9/10 {
		t.Errorf("only %d of %d pixels exact", exact, 150*150)
	}
}

// TestAlignDlibGeometry checks a rotated, scaled face against the recipe
// computed from the known transform (not from the fitted one): chip pixel
// (x, y) reads the photo at T(75,75) + k·R·(x−74.5, y−74.5), k = (150s−1)/149;
// and dlib's five template points land within a pixel of the landmarks.
func TestAlignDlibGeometry(t *testing.T) {
	const w, h = 500, 480
	// a linear gradient with slope 1/2 per pixel exceeds 255 past 511 px
	im := gradientImage(t, w, h)
	defer im.Close()
	for _, tc := range []struct {
		s, theta float64
		t        align.Point
	}{
		{1.3, 0.35, align.Point{X: 120, Y: 60}},
		{0.8, -0.5, align.Point{X: 200, Y: 220}},
		{1.9, 0.05, align.Point{X: 60, Y: 80}},
		{2.4, 0.1, align.Point{X: 60, Y: 20}},   // halved first, as dlib does
		{1.0, 0.2, align.Point{X: -50, Y: -30}}, // partly outside: black
	} {
		f, m := faceFrom(tc.s, tc.theta, tc.t)
		chip, err := align.AlignDlib(im, f)
		if err != nil {
			t.Fatal(err)
		}
		k := (150*tc.s - 1) / 149
		c := m.Apply(align.Point{X: 75, Y: 75})
		cos, sin := math.Cos(tc.theta), math.Sin(tc.theta)
		inside, black := 0, 0
		for y := 0; y < 150; y++ {
			for x := 0; x < 150; x++ {
				dx, dy := float64(x)-74.5, float64(y)-74.5
				px, py := c.X+k*(cos*dx-sin*dy), c.Y+k*(sin*dx+cos*dy)
				p := chip.Pix[3*(150*y+x):]
				tol := 1.01
				if tc.s > 2 {
					// sampled from a PyrDown copy: rounding, and the
					// border reflection bends the gradient near edges
					if px < 8 || py < 8 || px >= w-9 || py >= h-9 {
						continue
					}
					tol = 1.6
				}
				if px < 0 || py < 0 || px >= w-1 || py >= h-1 {
					if p[0] != 0 || p[1] != 0 || p[2] != 0 {
						t.Fatalf("s=%g: chip (%d,%d) reads outside the photo at (%.1f,%.1f) but is %v, want black", tc.s, x, y, px, py, p[:3])
					}
					black++
					continue
				}
				inside++
				// the gradient is x/2 rounded down per pixel: bilinear
				// values stay within 1 of px/2
				if p[0] != 77 || math.Abs(float64(p[2])-px/2) > tol || math.Abs(float64(p[1])-py/2) > tol {
					t.Fatalf("s=%g: chip (%d,%d) = RGB %v, photo point (%.2f,%.2f)", tc.s, x, y, p[:3], px, py)
				}
			}
		}
		if inside == 0 {
			t.Fatalf("s=%g: no chip pixel inside the photo", tc.s)
		}
		if tc.t.X < 0 && black == 0 {
			t.Errorf("s=%g: a face past the photo's corner gave no black pixel", tc.s)
		}
		t.Logf("s=%g θ=%g: %d pixels sampled, %d black", tc.s, tc.theta, inside, black)
		// The five template points, read through the chip transform,
		// land on the landmarks (dlib's ±0.5 px conventions apart).
		cen, mm, _, err := align.DlibChipTransform(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, q := range align.DlibTemplate {
			dx, dy := q.X-74.5, q.Y-74.5
			got := align.Point{X: cen.X + mm[0][0]*dx + mm[0][1]*dy, Y: cen.Y + mm[1][0]*dx + mm[1][1]*dy}
			want := f.Points68[align.DlibIndices[i]]
			// dlib's chip maps p to c + k·R·(p − 74.5) where the fitted
			// similarity gives c + s·R·(p − 75): about s·0.7 px apart
			if d := math.Hypot(got.X-want.X, got.Y-want.Y); d > 0.75*tc.s+0.3 {
				t.Errorf("s=%g: template point %d lands %.2f px from its landmark", tc.s, i, d)
			}
		}
	}
}

// TestAlignDlibErrors: degenerate landmarks and empty images are errors.
func TestAlignDlibErrors(t *testing.T) {
	im := gradientImage(t, 64, 64)
	defer im.Close()
	if _, err := align.AlignDlib(im, align.Face{}); err == nil {
		t.Error("all-zero landmarks: no error")
	}
	if _, err := align.AlignDlib(&align.Image{Mat: gocv.NewMat()}, align.Face{}); err == nil {
		t.Error("empty image: no error")
	}
	if _, err := align.AlignDlib(nil, align.Face{}); err == nil {
		t.Error("nil image: no error")
	}
}

// warpChip runs OpenCV's WarpAffine (bilinear, black border) with m as the
// chip → photo map (WARP_INVERSE_MAP) and returns RGB bytes.
func warpChip(t *testing.T, im *align.Image, m align.Affine, inverse bool) []byte {
	t.Helper()
	mt := gocv.NewMatWithSize(2, 3, gocv.MatTypeCV64F)
	defer mt.Close()
	for r := 0; r < 2; r++ {
		for c := 0; c < 3; c++ {
			mt.SetDoubleAt(r, c, m[r][c])
		}
	}
	out := gocv.NewMat()
	defer out.Close()
	flags := gocv.InterpolationLinear
	if inverse {
		flags |= gocv.WarpInverseMap
	}
	gocv.WarpAffineWithParams(im.Mat, &out, mt, image.Pt(150, 150), flags, gocv.BorderConstant, color.RGBA{})
	b := out.ToBytes()
	for j := 0; j+2 < len(b); j += 3 {
		b[j], b[j+2] = b[j+2], b[j]
	}
	return b
}

func meanAbsDiff(a, b []byte) float64 {
	var sum float64
	for i := range a {
		sum += math.Abs(float64(a[i]) - float64(b[i]))
	}
	return sum / float64(len(a))
}

// TestAlignDlibMatchesOpenCVWarp compares the exact dlib chip with OpenCV's
// WarpAffine on real photos with detected landmarks: with the same chip →
// photo map the two differ only by OpenCV's 1/32-pixel fixed-point weights
// and rounding instead of truncation (under one grey level on average);
// with the generic warp onto the template shifted by −0.5 pixel (docs/alignment.md:
// within 0.008 in descriptor distance) they stay within a few levels.
func TestAlignDlibMatchesOpenCVWarp(t *testing.T) {
	a := newAligner(t)
	paths, _ := filepath.Glob(filepath.Join("..", "testdata", "johns", "*", "*.jpg"))
	if len(paths) != 55 {
		t.Fatalf("found %d johns photos", len(paths))
	}
	var shifted [5]align.Point
	for i, p := range align.DlibTemplate {
		shifted[i] = align.Point{X: p.X - 0.5, Y: p.Y - 0.5}
	}
	for i := 0; i < len(paths); i += 11 {
		p := paths[i]
		im, err := align.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		faces, err := a.Detect(im)
		if err != nil || len(faces) != 1 {
			im.Close()
			t.Fatalf("%s: %d faces, %v", p, len(faces), err)
		}
		chip, err := align.AlignDlib(im, faces[0])
		if err != nil {
			t.Fatal(err)
		}
		c, m, s, err := align.DlibChipTransform(faces[0])
		if err != nil {
			t.Fatal(err)
		}
		exact := align.Affine{
			{m[0][0], m[0][1], c.X - 74.5*(m[0][0]+m[0][1])},
			{m[1][0], m[1][1], c.Y - 74.5*(m[1][0]+m[1][1])},
		}
		same := meanAbsDiff(chip.Pix, warpChip(t, im, exact, true))
		five := align.DlibFivePoints(&faces[0].Points68)
		g, err := align.Similarity(five[:], shifted[:])
		if err != nil {
			t.Fatal(err)
		}
		generic := meanAbsDiff(chip.Pix, warpChip(t, im, g, false))
		im.Close()
		t.Logf("%s: scale %.2f, mean |dlib chip − OpenCV warp| = %.3f (same map), %.3f (shifted template)", filepath.Base(p), s, same, generic)
		if same > 1 {
			t.Errorf("%s: %.2f grey levels from OpenCV's warp with the same map", p, same)
		}
		if generic > 4 {
			t.Errorf("%s: %.2f grey levels from OpenCV's generic warp", p, generic)
		}
	}
}

// BenchmarkAlignDlib is dlib's exact chip from a 250×250 photo (the
// sampling only: landmarks given).
func BenchmarkAlignDlib(b *testing.B) {
	m := gocv.NewMatWithSize(250, 250, gocv.MatTypeCV8UC3)
	im := &align.Image{Mat: m}
	defer im.Close()
	f, _ := faceFrom(1.2, 0.1, align.Point{X: 30, Y: 25})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := align.AlignDlib(im, f); err != nil {
			b.Fatal(err)
		}
	}
}
