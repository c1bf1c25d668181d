package align_test

import (
	"flag"
	"fmt"
	"image"
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
