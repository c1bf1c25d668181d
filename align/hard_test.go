package align_test

import (
	"fmt"
	"image"
	"sort"
	"testing"

	"gocv.io/x/gocv"

	"github.com/facever/facever/align"
	"github.com/facever/facever/facehead"
	"github.com/facever/facever/internal/session"
	"github.com/facever/facever/internal/testmodels"
	"github.com/facever/facever/models"
	"github.com/facever/facever/verify"
)

// hardCase builds one hard photo from a johns photo (a 150×150 chip).
type hardCase struct {
	name  string
	build func(src gocv.Mat, seed int64) gocv.Mat
}

// framed pastes the photo at side pixels into a w×h backdrop.
func framed(w, h, side int) func(gocv.Mat, int64) gocv.Mat {
	return func(src gocv.Mat, seed int64) gocv.Mat {
		bg := backdrop(w, h, seed)
		paste(&bg, src, side, image.Pt(int(seed*37)%(w-side), int(seed*53)%(h-side)))
		return bg
	}
}

func then(f func(gocv.Mat, int64) gocv.Mat, g func(gocv.Mat) gocv.Mat) func(gocv.Mat, int64) gocv.Mat {
	return func(src gocv.Mat, seed int64) gocv.Mat {
		a := f(src, seed)
		defer a.Close()
		return g(a)
	}
}

func rolled(deg float64) func(gocv.Mat, int64) gocv.Mat {
	return then(framed(400, 400, 200), func(m gocv.Mat) gocv.Mat { return rollImage(m, deg) })
}

// hardCases are the hard photos of the tests (the johns faces are about
// 0.75 of the chip's side, so a 54-pixel chip holds a 40-pixel face).
var hardCases = []hardCase{
	{"small 40px face in 4000×3000", framed(4000, 3000, 54)},
	{"small 60px face in 4000×3000", framed(4000, 3000, 80)},
	{"80px face in 1920×1280", framed(1920, 1280, 107)},
	{"dark (×0.3), 120px in 1920×1280", then(framed(1920, 1280, 160), func(m gocv.Mat) gocv.Mat { return darken(m, 0.3) })},
	{"blurred (σ 2), 120px in 1280×960", then(framed(1280, 960, 160), func(m gocv.Mat) gocv.Mat { return blur(m, 2) })},
	{"JPEG quality 30, 100px in 1920×1280", then(framed(1920, 1280, 133), func(m gocv.Mat) gocv.Mat { return recompress(m, 30) })},
	{"JPEG quality 60, 100px in 1920×1280", then(framed(1920, 1280, 133), func(m gocv.Mat) gocv.Mat { return recompress(m, 60) })},
	{"rolled +28°", rolled(28)},
	{"rolled −28°", rolled(-28)},
	{"rolled +45°", rolled(45)},
	{"rolled −45°", rolled(-45)},
	{"turned 90°", func(m gocv.Mat, _ int64) gocv.Mat { return turnImage(m, 90) }},
	{"turned 180°", func(m gocv.Mat, _ int64) gocv.Mat { return turnImage(m, 180) }},
	{"turned 270°", func(m gocv.Mat, _ int64) gocv.Mat { return turnImage(m, 270) }},
}

// TestHardPhotos builds hard photos from the johns photos (two per person)
// and checks that the face is found and aligned well enough for the
// backbone: each hard photo's embedding is compared with another ordinary
// photo of the same person and one of another person; the pair is right
// when the same-person similarity reaches the default threshold and the
// other stays below it. It reports, per kind, faces found and pairs right.
func TestHardPhotos(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 140 hard photos")
	}
	a := newAligner(t)
	fea, err := session.Open(*runtimeFlag, testmodels.Dir(t, "fr_detect", "fr_landmark", "fr_feature"), models.Feature)
	if err != nil {
		t.Fatalf("backbone (run `make setup`): %v", err)
	}
	defer fea.Close()
	emb := facehead.NewEmbedder(fea, models.Feature, nil)
	people := map[string][]string{}
	for _, p := range johnsPaths(t) {
		person := filepathDir(p)
		people[person] = append(people[person], p)
	}
	var names []string
	for n := range people {
		sort.Strings(people[n])
		names = append(names, n)
	}
	sort.Strings(names)
	embedPath := func(p string) []float32 {
		im, err := align.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		defer im.Close()
		faces, err := a.Detect(im)
		if err != nil || len(faces) == 0 {
			t.Fatalf("%s: %d faces, %v", p, len(faces), err)
		}
		chip, err := align.Align(im, faces[0])
		if err != nil {
			t.Fatal(err)
		}
		e, err := emb.Embed([]align.Chip{chip})
		if err != nil {
			t.Fatal(err)
		}
		return e[0]
	}
	thr := verify.DefaultThreshold
	totalFound, totalRight, total := 0, 0, 0
	for _, hc := range hardCases {
		found, right, n := 0, 0, 0
		for pi, person := range names {
			ref := embedPath(people[person][len(people[person])-1])
			other := embedPath(people[names[(pi+1)%len(names)]][0])
			for k := 0; k < 2; k++ {
				src, err := align.Load(people[person][k])
				if err != nil {
					t.Fatal(err)
				}
				m := hc.build(src.Mat, int64(10*pi+k+1))
				src.Close()
				n++
				faces, err := a.Detect(asImage(m))
				if err != nil {
					t.Fatal(err)
				}
				if len(faces) > 0 {
					found++
					chip, err := align.Align(asImage(m), faces[0])
					if err != nil {
						t.Fatal(err)
					}
					e, err := emb.Embed([]align.Chip{chip})
					if err != nil {
						t.Fatal(err)
					}
					same, diff := verify.Cosine(e[0], ref), verify.Cosine(e[0], other)
					if same >= thr && diff < thr {
						right++
					}
				}
				m.Close()
			}
		}
		t.Logf("%-38s faces found %2d/%d, pairs right %2d/%d", hc.name, found, n, right, n)
		totalFound += found
		totalRight += right
		total += n
	}
	t.Logf("all hard photos: faces found %d/%d, pairs right %d/%d", totalFound, total, totalRight, total)
	if totalRight < total*hardMinRight/100 {
		t.Errorf("pairs right %d/%d, want at least %d %%", totalRight, total, hardMinRight)
	}
}

// hardMinRight is the share of hard photos (in %) whose pairs must be right.
const hardMinRight = 90

func filepathDir(p string) string {
	d := []byte(p)
	i := len(d) - 1
	for i >= 0 && d[i] != '/' {
		i--
	}
	return fmt.Sprint(string(d[:max(i, 0)]))
}
