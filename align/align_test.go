package align_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"gocv.io/x/gocv"

	"github.com/facever/facever/align"
	"github.com/facever/facever/internal/session"
	"github.com/facever/facever/internal/testmodels"
	"github.com/facever/facever/models"
)

var runtimeFlag = flag.String("runtime", "opencv", "runtime for the detector and landmark models")

// modelsDir is the models directory, after checking the detector and the
// landmark model (skipped without them, see internal/testmodels).
func modelsDir(t testing.TB) string {
	t.Helper()
	return testmodels.Dir(t, "fr_detect", "fr_landmark")
}

func newAligner(t testing.TB) *align.Aligner {
	t.Helper()
	det, err := session.Open(*runtimeFlag, modelsDir(t), models.Detect)
	if err != nil {
		t.Fatalf("detector (run `make setup`): %v", err)
	}
	lmk, err := session.Open(*runtimeFlag, modelsDir(t), models.Landmark)
	if err != nil {
		t.Fatalf("landmarks (run `make setup`): %v", err)
	}
	t.Cleanup(func() { det.Close(); lmk.Close() })
	return align.New(det, lmk, align.DefaultOptions)
}

func groupPhoto(t testing.TB, i int) string {
	t.Helper()
	return testmodels.File(t, filepath.Join("..", "testdata", "external", "groups", fmt.Sprintf("sample%d.jpg", i)), "make setup")
}

// TestDetectGroupPhotos counts faces on the six group photos of
// @vladmandic/face-api 1.7.15 (3, 3, 3, 4, 5 and 4 people).
func TestDetectGroupPhotos(t *testing.T) {
	a := newAligner(t)
	want := []int{3, 3, 3, 4, 5, 4}
	for i, n := range want {
		t.Run(fmt.Sprintf("sample%d", i+1), func(t *testing.T) {
			im, err := align.Load(groupPhoto(t, i+1))
			if err != nil {
				t.Fatal(err)
			}
			defer im.Close()
			faces, err := a.Detect(im)
			if err != nil {
				t.Fatal(err)
			}
			if len(faces) != n {
				t.Fatalf("found %d faces, want %d", len(faces), n)
			}
			for k, f := range faces {
				if k > 0 && f.Area() > faces[k-1].Area() {
					t.Errorf("faces not sorted by area")
				}
				if f.Box[0] < -f.Width() || f.Box[2] > float64(im.Width())+f.Width() {
					t.Errorf("face %d box %v outside the %d×%d photo", k, f.Box, im.Width(), im.Height())
				}
				// Five points must sit inside the box in anatomical order.
				l := f.Landmarks
				if !(l[0].X < l[1].X && l[3].X < l[4].X && l[0].Y < l[3].Y && l[1].Y < l[4].Y) {
					t.Errorf("face %d landmarks out of order: %v", k, l)
				}
				chip, err := align.Align(im, f)
				if err != nil {
					t.Fatal(err)
				}
				if len(chip.Pix) != align.ChipSize*align.ChipSize*3 {
					t.Fatalf("chip has %d bytes", len(chip.Pix))
				}
			}
		})
	}
}

// TestAlignedLandmarksLandOnTemplate: after warping, the five points of a
// real face map close to the ArcFace template (residual of the fit).
func TestAlignedLandmarksLandOnTemplate(t *testing.T) {
	a := newAligner(t)
	paths, _ := filepath.Glob(filepath.Join("..", "testdata", "johns", "*", "*.jpg"))
	if len(paths) != 55 {
		t.Fatalf("found %d johns photos", len(paths))
	}
	for _, p := range paths[:11] {
		im, err := align.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		faces, err := a.Detect(im)
		im.Close()
		if err != nil || len(faces) != 1 {
			t.Fatalf("%s: %d faces, %v", p, len(faces), err)
		}
		m, _ := align.Similarity(faces[0].Landmarks[:], align.Template[:])
		for k, q := range faces[0].Landmarks {
			got := m.Apply(q)
			if d := (got.X-align.Template[k].X)*(got.X-align.Template[k].X) + (got.Y-align.Template[k].Y)*(got.Y-align.Template[k].Y); d > 8*8 {
				t.Errorf("%s: point %d lands %.1f px from the template", p, k, d)
			}
		}
	}
}

// TestNoFace: a real photo region without faces (the bodies below the faces
// of a group photo) gives no face.
func TestNoFace(t *testing.T) {
	a := newAligner(t)
	im, err := align.Load(groupPhoto(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	region := im.Mat.Region(image.Rect(0, 700, im.Width(), im.Height()))
	defer region.Close()
	buf, err := gocv.IMEncode(gocv.JPEGFileExt, region)
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	crop, err := align.Decode(buf.GetBytes())
	if err != nil {
		t.Fatal(err)
	}
	defer crop.Close()
	faces, err := a.Detect(crop)
	if err != nil {
		t.Fatal(err)
	}
	if len(faces) != 0 {
		t.Fatalf("found %d faces in a region without faces: %v", len(faces), faces[0].Box)
	}
}

func pngBytes(t testing.TB, w, h int) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = byte(i * 7)
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// HugePNGHeader returns a PNG whose IHDR claims w×h pixels, with no data.
func hugePNGHeader(t testing.TB, w, h int) []byte {
	src := pngBytes(t, 16, 16)
	out := append([]byte(nil), src[:33]...) // signature + IHDR chunk
	out[16], out[17], out[18], out[19] = byte(w>>24), byte(w>>16), byte(w>>8), byte(w)
	out[20], out[21], out[22], out[23] = byte(h>>24), byte(h>>16), byte(h>>8), byte(h)
	crc := crc32IEEE(out[12:29])
	out[29], out[30], out[31], out[32] = byte(crc>>24), byte(crc>>16), byte(crc>>8), byte(crc)
	return out
}

func TestDecodeBadInputs(t *testing.T) {
	jpg, err := os.ReadFile(filepath.Join("..", "testdata", "johns", "John_Simm", "000288_00470387.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, align.ErrNotImage},
		{"text", []byte("this is not an image, just some words\n"), align.ErrNotImage},
		{"truncated JPEG", jpg[:len(jpg)/3], align.ErrNotImage},
		{"JPEG header only", jpg[:200], align.ErrNotImage},
		{"1×1 PNG", pngBytes(t, 1, 1), align.ErrTooSmall},
		{"30000×30000 PNG header", hugePNGHeader(t, 30000, 30000), align.ErrTooLarge},
		{"BMP magic with garbage", []byte("BM\x00\x00garbage garbage garbage"), align.ErrNotImage},
		{"GIF", gifBytes(t), align.ErrNotImage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			im, err := align.Decode(tc.data)
			if err == nil {
				im.Close()
				t.Fatal("decoded without error")
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %q, want %v", err, tc.want)
			}
		})
	}
	im, err := align.Decode(jpg)
	if err != nil {
		t.Fatalf("valid JPEG: %v", err)
	}
	if im.Width() != 150 || im.Height() != 150 {
		t.Errorf("decoded %d×%d, want 150×150", im.Width(), im.Height())
	}
	im.Close()
}

// FuzzDecode: no input makes the loader panic or abort; whatever decodes is
// a non-empty, bounded image.
func FuzzDecode(f *testing.F) {
	jpg, _ := os.ReadFile(filepath.Join("..", "testdata", "johns", "John_Simm", "000288_00470387.jpg"))
	f.Add(jpg)
	f.Add(jpg[:len(jpg)/2])
	f.Add(pngBytes(f, 20, 20))
	f.Add(hugePNGHeader(f, 30000, 30000))
	f.Add([]byte("GIF89a"))
	var gif bytes.Buffer
	pal := image.NewPaletted(image.Rect(0, 0, 20, 20), []color.Color{color.Black, color.White})
	_ = pngEncodeGIF(&gif, pal)
	f.Add(gif.Bytes())
	var jb bytes.Buffer
	_ = jpeg.Encode(&jb, image.NewGray(image.Rect(0, 0, 32, 32)), nil)
	f.Add(jb.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		im, err := align.Decode(data)
		if err != nil {
			return
		}
		defer im.Close()
		if im.Mat.Empty() || im.Width() < align.MinSide || im.Height() < align.MinSide || im.Width()*im.Height() > align.MaxPixels {
			t.Fatalf("accepted a %d×%d image", im.Width(), im.Height())
		}
	})
}
