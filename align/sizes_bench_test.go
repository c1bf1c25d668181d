package align_test

import (
	"fmt"
	"image"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/facever/facever/align"
	"github.com/facever/facever/infer"
	"github.com/facever/facever/internal/session"
	"github.com/facever/facever/models"
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

// countingSession counts the images (batch entries) a session is run on.
type countingSession struct {
	infer.Session
	images atomic.Int64
}

func (s *countingSession) Run(in map[string]infer.Tensor, names []string) ([]infer.Tensor, error) {
	for _, t := range in {
		s.images.Add(int64(t.Shape[0]))
	}
	return s.Session.Run(in, names)
}

// countingAligner is an Aligner with opt whose detector and landmark
// sessions count their runs.
func countingAligner(b testing.TB, opt align.Options) (*align.Aligner, *countingSession, *countingSession) {
	b.Helper()
	det, err := session.Open(*runtimeFlag, modelsDir(b), models.Detect)
	if err != nil {
		b.Fatalf("detector (run `make setup`): %v", err)
	}
	lmk, err := session.Open(*runtimeFlag, modelsDir(b), models.Landmark)
	if err != nil {
		b.Fatalf("landmarks (run `make setup`): %v", err)
	}
	b.Cleanup(func() { det.Close(); lmk.Close() })
	cd, cl := &countingSession{Session: det}, &countingSession{Session: lmk}
	return align.New(cd, cl, opt), cd, cl
}

// cpuTime is the process's user + system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDetectSize is detection plus landmarks (and, for the current
// recipe, rotation search and quality) of every face of a photo, per photo
// size, for the recipe of before the image pyramid (old: one squashed
// 320×240 pass, landmarks once per face) and the current one (new), side
// by side in one run. Besides wall time per photo it reports CPU time per
// photo (user + system, both cores: the README's figure, since the shared
// machine's load moves wall time), detector runs and landmark crops per
// photo, and faces found:
//
//	go test ./align -run '^$' -bench DetectSize -runtime engine -benchtime 20x -count 5
func BenchmarkDetectSize(b *testing.B) {
	recipes := []struct {
		name string
		opt  align.Options
	}{{"old", align.LegacyOptions(align.DefaultOptions)}, {"new", align.DefaultOptions}}
	for _, sz := range benchSizes {
		im := sizedPhoto(b, sz)
		for _, rc := range recipes {
			a, det, lmk := countingAligner(b, rc.opt)
			b.Run(fmt.Sprintf("%dx%d/%s", sz.X, sz.Y, rc.name), func(b *testing.B) {
				if _, err := a.Detect(im); err != nil { // warm the sessions
					b.Fatal(err)
				}
				det.images.Store(0)
				lmk.images.Store(0)
				n := 0
				cpu := cpuTime()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					faces, err := a.Detect(im)
					if err != nil {
						b.Fatal(err)
					}
					n = len(faces)
				}
				b.StopTimer()
				per := float64(b.N)
				b.ReportMetric(float64(cpuTime()-cpu)/1e6/per, "cpu-ms/op")
				b.ReportMetric(float64(det.images.Load())/per, "detector-runs/op")
				b.ReportMetric(float64(lmk.images.Load())/per, "landmark-crops/op")
				b.ReportMetric(float64(n), "faces")
			})
		}
		im.Close()
	}
}

// BenchmarkDetectLFW is BenchmarkDetectSize on real LFW photos (250×250):
// 100 of LFW View 2's photos spread over the list (every 77th), each
// detected once per iteration, old recipe beside new; metrics per photo.
// It needs FACEVER_LFW (the LFW folder):
//
//	FACEVER_LFW=../shared/faces/lfw go test ./align -run '^$' -bench DetectLFW -runtime engine -benchtime 2x -count 5
func BenchmarkDetectLFW(b *testing.B) {
	dir := os.Getenv("FACEVER_LFW")
	if dir == "" {
		b.Skip("set FACEVER_LFW=../shared/faces/lfw")
	}
	var ims []*align.Image
	for i, p := range lfwPairsPhotos(b, dir) {
		if i%77 != 0 {
			continue
		}
		im, err := align.Load(p)
		if err != nil {
			b.Fatal(err)
		}
		ims = append(ims, im)
	}
	defer func() {
		for _, im := range ims {
			im.Close()
		}
	}()
	for _, rc := range []struct {
		name string
		opt  align.Options
	}{{"old", align.LegacyOptions(align.DefaultOptions)}, {"new", align.DefaultOptions}} {
		a, det, lmk := countingAligner(b, rc.opt)
		b.Run(rc.name, func(b *testing.B) {
			if _, err := a.Detect(ims[0]); err != nil {
				b.Fatal(err)
			}
			det.images.Store(0)
			lmk.images.Store(0)
			cpu := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for _, im := range ims {
					if _, err := a.Detect(im); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			per := float64(b.N * len(ims))
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1e6/per, "ms/photo")
			b.ReportMetric(float64(cpuTime()-cpu)/1e6/per, "cpu-ms/photo")
			b.ReportMetric(float64(det.images.Load())/per, "detector-runs/photo")
			b.ReportMetric(float64(lmk.images.Load())/per, "landmark-crops/photo")
		})
	}
}
