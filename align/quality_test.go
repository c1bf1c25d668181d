package align_test

import (
	"image"
	"math"
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
// or above DefaultMinQuality; crops of only the forehead and eyes, and the
// photos turned upside down read without the rotation search (the chip
// then comes out upside down), are below it (or have no face at all).
// With the search, the upside-down photos are read turned by 180° and
// score as good faces again.
func TestQualitySeparates(t *testing.T) {
	a := newAligner(t)
	plain := newAlignerOpt(t, align.Options{NoRotate: true})
	var good, forehead, flipped, fixed, blurred []float64
	upright, foreheadRefused, wrongKept := 0, 0, 0
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
		// Forehead and eyes: the top 45 % of the chip photo.
		top := im.Mat.Region(image.Rect(0, 0, im.Width(), im.Height()*45/100))
		crop := top.Clone()
		top.Close()
		q, ff := bestQuality(t, a, crop)
		crop.Close()
		forehead = append(forehead, q)
		if q < 0 || q < align.DefaultMinQuality || ff.Quality.FacePixels < enrollMinFace {
			foreheadRefused++
		}
		if q >= align.DefaultMinQuality {
			t.Logf("%s: forehead-and-eyes crop scores %.3f, not below %.2f: %+v", p, q, align.DefaultMinQuality, ff.Quality.Rounded())
		}
		// Upside down, read as it stands: when the landmark model takes
		// the face for an upright one (|roll| < 90°), its chip comes out
		// upside down and must score low.
		turned := turnImage(im.Mat, 180)
		q, f := bestQuality(t, plain, turned)
		if q >= 0 && math.Abs(f.Roll) < 90 {
			flipped = append(flipped, q)
			if q >= align.DefaultMinQuality {
				t.Logf("%s: upside down, aligned upside down, scores %.3f, not below %.2f", p, q, align.DefaultMinQuality)
			}
		}
		q, f = bestQuality(t, a, turned)
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
	t.Logf("below the default minimum %.2f: forehead crops %d/%d, upside down aligned upside down %d/%d, upside down with the search %d/%d",
		align.DefaultMinQuality, below(forehead), len(forehead), below(flipped), len(flipped), below(fixed), len(fixed))
	t.Logf("forehead crops enroll refuses by default (no face, under %d px, or below the minimum quality): %d/%d", enrollMinFace, foreheadRefused, len(forehead))
	if foreheadRefused < len(forehead)*qualityMinForehead/100 {
		t.Errorf("enroll refuses only %d of %d forehead crops by default, want %d %%", foreheadRefused, len(forehead), qualityMinForehead)
	}
	if n := below(flipped); n < len(flipped)*qualityMinFlipped/100 {
		t.Errorf("only %d of %d upside-down chips below the default minimum, want %d %%", n, len(flipped), qualityMinFlipped)
	}
	t.Logf("upside-down photos with the search: %d read at 180°, %d of the others kept (aligned wrongly, quality at or above %.2f)", upright, wrongKept, align.DefaultMinQuality)
	if wrongKept > qualityMaxWrongKept {
		t.Errorf("%d upside-down photos read at another turn are kept by the default minimum, want at most %d", wrongKept, qualityMaxWrongKept)
	}
	if quantiles(blurred)[1] >= quantiles(good)[1] {
		t.Errorf("blurred copies' median quality %.3f is not below the photos' %.3f", quantiles(blurred)[1], quantiles(good)[1])
	}
	t.Logf("blurred copies (σ 6 px): quality min/median/max %.3f (−1: no face), %d of %d below %.2f", quantiles(blurred), below(blurred), len(blurred), align.DefaultMinQuality)
	// A CI-cheap share of LFW (100 photos of View 2, every 77th) when the
	// set is there: all at or above the default (TestLFWEveryPhoto does all).
	if dir := lfwDir(); dir != "" {
		var lfw []float64
		for i, p := range lfwPairsPhotos(t, dir) {
			if i%77 != 0 {
				continue
			}
			im, err := align.Load(p)
			if err != nil {
				t.Fatal(err)
			}
			q, _ := bestQuality(t, a, im.Mat)
			im.Close()
			lfw = append(lfw, q)
			if q < align.DefaultMinQuality {
				t.Errorf("%s: LFW photo's quality %.3f below the default %.2f", p, q, align.DefaultMinQuality)
			}
		}
		t.Logf("LFW, %d photos: quality min/median/max %.3f", len(lfw), quantiles(lfw))
	}
	t.Logf("quality min/median/max: johns %.3f, forehead crops %.3f, upside down aligned upside down (%d photos) %.3f, upside down with the search %.3f (%d of 55 read at 180°)",
		quantiles(good), quantiles(forehead), len(flipped), quantiles(flipped), quantiles(fixed), upright)
}

// enrollMinFace is enroll's default --min-face (facever.DefaultMinFace).
const enrollMinFace = 40

// The shares (in %) of forehead crops that enroll's defaults and of
// upside-down chips that the default minimum quality must refuse
// (measured: see the README).
const (
	qualityMinForehead  = 94
	qualityMinFlipped   = 88
	qualityMaxWrongKept = 5
)

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
