package align_test

import (
	"image"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"gocv.io/x/gocv"

	"github.com/facever/facever/align"
	"github.com/facever/facever/internal/session"
	"github.com/facever/facever/models"
)

func newAlignerOpt(t testing.TB, opt align.Options) *align.Aligner {
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
	return align.New(det, lmk, opt)
}

func johnsPaths(t testing.TB) []string {
	paths, _ := filepath.Glob(filepath.Join("..", "testdata", "johns", "*", "*.jpg"))
	if len(paths) != 55 {
		t.Fatalf("found %d johns photos, want 55", len(paths))
	}
	return paths
}

// bestQuality is the quality of the largest face of m (−1: no face).
func bestQuality(t testing.TB, a *align.Aligner, m gocv.Mat) (float64, align.Face) {
	faces, err := a.Detect(asImage(m))
	if err != nil {
		t.Fatal(err)
	}
	if len(faces) == 0 {
		return -1, align.Face{}
	}
	return faces[0].Quality.Score, faces[0]
}

func quantiles(v []float64) [3]float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return [3]float64{s[0], s[len(s)/2], s[len(s)-1]}
}

// TestQualitySeparates: on the 55 johns photos, every face's quality is at
// or above DefaultMinQuality; tiny (24×24) and black copies are below it
// or have no face, copies blurred by σ 6 px score lower at the median; the
// photos turned upside down are read at 180° by the rotation search, and
// few of those read at another turn keep a quality at or above the
// default. (Crops of the forehead and eyes, faces aligned upside down and
// the other bad crops, on johns and LFW, fit and held-out: see
// TestQualityExperiment.)
func TestQualitySeparates(t *testing.T) {
	a := newAligner(t)
	var good, fixed, blurred []float64
	upright, wrongKept := 0, 0
	for _, p := range johnsPaths(t) {
		im, err := align.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		q, _ := bestQuality(t, a, im.Mat)
		good = append(good, q)
		if q < align.DefaultMinQuality {
			t.Errorf("%s: quality %.3f of an ordinary photo below %.2f", p, q, align.DefaultMinQuality)
		}
		turned := turnImage(im.Mat, 180)
		q, f := bestQuality(t, a, turned)
		fixed = append(fixed, q)
		if f.Rotation == 180 {
			upright++
		} else if q >= align.DefaultMinQuality {
			wrongKept++
		}
		turned.Close()
		// Constructed bad photos: a tiny copy (24 px), a black one, a
		// heavily blurred one (σ 6 px).
		tiny := gocv.NewMat()
		gocv.Resize(im.Mat, &tiny, image.Pt(24, 24), 0, 0, gocv.InterpolationArea)
		if q, _ := bestQuality(t, a, tiny); q >= align.DefaultMinQuality {
			t.Errorf("%s: a 24×24 copy scores %.3f, not below %.2f", p, q, align.DefaultMinQuality)
		}
		tiny.Close()
		black := gocv.NewMatWithSize(im.Height(), im.Width(), gocv.MatTypeCV8UC3)
		if q, _ := bestQuality(t, a, black); q >= 0 {
			t.Errorf("%s: a black photo has a face (quality %.3f)", p, q)
		}
		black.Close()
		bl := blur(im.Mat, 6)
		q, _ = bestQuality(t, a, bl)
		blurred = append(blurred, q)
		bl.Close()
		im.Close()
	}
	below := func(v []float64) int {
		n := 0
		for _, q := range v {
			if q < align.DefaultMinQuality {
				n++
			}
		}
		return n
	}
	t.Logf("upside-down photos with the search: %d read at 180°, %d of the others kept (aligned wrongly, quality at or above %.2f)", upright, wrongKept, align.DefaultMinQuality)
	if wrongKept > qualityMaxWrongKept {
		t.Errorf("%d upside-down photos read at another turn are kept by the default minimum, want at most %d", wrongKept, qualityMaxWrongKept)
	}
	if quantiles(blurred)[1] >= quantiles(good)[1] {
		t.Errorf("blurred copies' median quality %.3f is not below the photos' %.3f", quantiles(blurred)[1], quantiles(good)[1])
	}
	t.Logf("blurred copies (σ 6 px): quality min/median/max %.3f (−1: no face), %d of %d below %.2f", quantiles(blurred), below(blurred), len(blurred), align.DefaultMinQuality)
	t.Logf("quality min/median/max: johns %.3f, upside down with the search %.3f (%d of 55 read at 180°)", quantiles(good), quantiles(fixed), upright)
}

// enrollMinFace is enroll's default --min-face (facever.DefaultMinFace).
const enrollMinFace = 40

// qualityMaxWrongKept is how many of the 55 johns photos turned upside
// down, read by the rotation search at another turn than 180°, may keep a
// quality at or above the default.
const qualityMaxWrongKept = 5

// lfwDir is $FACEVER_LFW, else the shared/faces/lfw beside the checkout
// (the project machine's copy) when it holds pairs.txt, else "".
func lfwDir() string {
	if d := os.Getenv("FACEVER_LFW"); d != "" {
		return d
	}
	for _, up := range []string{"../..", "../../.."} {
		d := filepath.Join(up, "shared", "faces", "lfw")
		if _, err := os.Stat(filepath.Join(d, "pairs.txt")); err == nil {
			return d
		}
	}
	return ""
}
