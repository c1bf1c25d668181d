package align_test

import (
	"fmt"
	"image"
	"math"
	"os"
	"sort"
	"strings"
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
	images     atomic.Int64
	sequential bool // Concurrent says false whatever the session
}

// Concurrent forwards the session's own answer (see align.New).
func (s *countingSession) Concurrent() bool {
	c, ok := s.Session.(interface{ Concurrent() bool })
	return ok && c.Concurrent() && !s.sequential
}

func (s *countingSession) Run(in map[string]infer.Tensor, names []string) ([]infer.Tensor, error) {
	for _, t := range in {
		s.images.Add(int64(t.Shape[0]))
	}
	return s.Session.Run(in, names)
}

// recipe is a detection recipe the benchmarks compare: old is the recipe
// of before the image pyramid (align.LegacyOptions), new the current one;
// pool runs the landmark model over the engine's thread pool, one crop at
// a time, as the landmark session ran before it ran on one thread ("old"
// is the recipe as it ran then); the others run it on one thread, as it
// runs by default.
type recipe struct {
	name string
	opt  align.Options
	pool bool
	// sequential: the landmark model on one thread, but its crops one
	// after another (the session does not say it runs them at once).
	sequential bool
}

// recipes are the variants BenchmarkDetectSize, BenchmarkDetectLFW and
// BenchmarkDetectStages run side by side.
var recipes = []recipe{
	{"old", align.LegacyOptions(align.DefaultOptions), true, false},
	{"old-1thread", align.LegacyOptions(align.DefaultOptions), false, false},
	{"new-pool", align.DefaultOptions, true, false},
	{"new", align.DefaultOptions, false, false},
}

// countingAligner is an Aligner for rc whose detector and landmark
// sessions count their runs.
func countingAligner(b testing.TB, rc recipe) (*align.Aligner, *countingSession, *countingSession) {
	b.Helper()
	det, err := session.Open(*runtimeFlag, modelsDir(b), models.Detect)
	if err != nil {
		b.Fatalf("detector (run `make setup`): %v", err)
	}
	lmk, err := session.Open(*runtimeFlag, modelsDir(b), models.Landmark)
	if err != nil {
		b.Fatalf("landmarks (run `make setup`): %v", err)
	}
	if t, ok := lmk.(interface{ SetThreads(int) }); ok && rc.pool {
		t.SetThreads(0)
	}
	b.Cleanup(func() { det.Close(); lmk.Close() })
	cd, cl := &countingSession{Session: det}, &countingSession{Session: lmk, sequential: rc.sequential}
	return align.New(cd, cl, rc.opt), cd, cl
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
	for _, sz := range benchSizes {
		im := sizedPhoto(b, sz)
		for _, rc := range recipes {
			a, det, lmk := countingAligner(b, rc)
			b.Run(fmt.Sprintf("%dx%d/%s", sz.X, sz.Y, rc.name), func(b *testing.B) {
				if _, err := a.Detect(im); err != nil { // warm the sessions
					b.Fatal(err)
				}
				det.images.Store(0)
				lmk.images.Store(0)
				n := 0
				fastest := time.Duration(math.MaxInt64)
				cpu := cpuTime()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					t := time.Now()
					faces, err := a.Detect(im)
					if err != nil {
						b.Fatal(err)
					}
					fastest = min(fastest, time.Since(t))
					n = len(faces)
				}
				b.StopTimer()
				per := float64(b.N)
				b.ReportMetric(float64(fastest)/1e6, "fastest-ms")
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
	ims := lfwSample(b, dir)
	for _, rc := range recipes {
		a, det, lmk := countingAligner(b, rc)
		b.Run(rc.name, func(b *testing.B) {
			if _, err := a.Detect(ims[0]); err != nil {
				b.Fatal(err)
			}
			det.images.Store(0)
			lmk.images.Store(0)
			fastest := make([]time.Duration, len(ims))
			for k := range fastest {
				fastest[k] = math.MaxInt64
			}
			cpu := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for k, im := range ims {
					t := time.Now()
					if _, err := a.Detect(im); err != nil {
						b.Fatal(err)
					}
					fastest[k] = min(fastest[k], time.Since(t))
				}
			}
			b.StopTimer()
			per := float64(b.N * len(ims))
			var sum time.Duration
			for _, d := range fastest {
				sum += d
			}
			b.ReportMetric(float64(sum)/1e6/float64(len(ims)), "fastest-ms/photo")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1e6/per, "ms/photo")
			b.ReportMetric(float64(cpuTime()-cpu)/1e6/per, "cpu-ms/photo")
			b.ReportMetric(float64(det.images.Load())/per, "detector-runs/photo")
			b.ReportMetric(float64(lmk.images.Load())/per, "landmark-crops/photo")
		})
	}
}

// BenchmarkDetectStages splits the new recipe's cost on a 250×250 photo
// (the johns photo of BenchmarkDetectSize) and on the 100 LFW photos of
// BenchmarkDetectLFW (with FACEVER_LFW) into Detect's steps, old recipe
// beside new: padding, the detector's input and run, NMS, landmark crops
// and runs (by the reading they belong to: the first, the turn search,
// the half-turn check), the roll refinement and the upright check, the
// tracking crop and run, quality, the rest. Each step is reported as
// process CPU time per photo (user + system, both cores; a step's time
// includes what other goroutines spent meanwhile) and, with -v, how often
// it ran:
//
//	FACEVER_LFW=/work/shared/faces/lfw go test ./align -run '^$' -bench DetectStages -runtime engine -benchtime 3x -count 5
func BenchmarkDetectStages(b *testing.B) {
	small := sizedPhoto(b, image.Pt(250, 250))
	defer small.Close()
	sets := []struct {
		name string
		ims  []*align.Image
	}{{"250x250", []*align.Image{small}}}
	if dir := os.Getenv("FACEVER_LFW"); dir != "" {
		sets = append(sets, struct {
			name string
			ims  []*align.Image
		}{"lfw", lfwSample(b, dir)})
	}
	for _, set := range sets {
		for _, rc := range recipes {
			a, _, _ := countingAligner(b, rc)
			b.Run(set.name+"/"+rc.name, func(b *testing.B) {
				if _, err := a.Detect(set.ims[0]); err != nil { // warm the sessions
					b.Fatal(err)
				}
				st := align.ClockStages(a, cpuTime)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					for _, im := range set.ims {
						if _, err := a.Detect(im); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.StopTimer()
				per := float64(b.N * len(set.ims))
				var names []string
				var total time.Duration
				for k, d := range st.Spent {
					names = append(names, k)
					total += d
				}
				sort.Strings(names)
				var lines []string
				for _, k := range names {
					metric := strings.NewReplacer(": ", "-", " ", "-").Replace(k) + "-ms"
					b.ReportMetric(float64(st.Spent[k])/1e6/per, metric)
					lines = append(lines, fmt.Sprintf("%-36s %7.3f ms/photo  %.2f/photo", k, float64(st.Spent[k])/1e6/per, float64(st.Count[k])/per))
				}
				b.ReportMetric(float64(total)/1e6/per, "cpu-ms/photo")
				b.Logf("%s %s, CPU per photo:\n%s", set.name, rc.name, strings.Join(lines, "\n"))
			})
		}
	}
}

// BenchmarkLandmarkBatch is one run of the landmark model on 1, 2, 3 and 4
// crops of a real face (the 250×250 photo's box, shifted), wall and CPU
// time per run:
//
//	go test ./align -run '^$' -bench LandmarkBatch -runtime engine -benchtime 200x -count 5
func BenchmarkLandmarkBatch(b *testing.B) {
	lmk, err := session.Open(*runtimeFlag, modelsDir(b), models.Landmark)
	if err != nil {
		b.Fatal(err)
	}
	defer lmk.Close()
	side := models.Landmark.Shape[3]
	im := sizedPhoto(b, image.Pt(250, 250))
	defer im.Close()
	grey := gocv.NewMat()
	defer grey.Close()
	gocv.CvtColor(im.Mat, &grey, gocv.ColorBGRToGray)
	for _, n := range []int{1, 2, 3, 4} {
		x := infer.NewTensor(n, 1, side, side)
		for k := 0; k < n; k++ {
			r := grey.Region(image.Rect(40+5*k, 40, 210+5*k, 210))
			small := gocv.NewMat()
			gocv.Resize(r, &small, image.Pt(side, side), 0, 0, gocv.InterpolationLinear)
			for i, v := range small.ToBytes() {
				x.Data[k*side*side+i] = float32(v) / 256
			}
			small.Close()
			r.Close()
		}
		in := map[string]infer.Tensor{models.Landmark.Input: x}
		b.Run(fmt.Sprintf("batch%d", n), func(b *testing.B) {
			if _, err := lmk.Run(in, models.Landmark.Outputs); err != nil {
				b.Fatal(err)
			}
			fastest := time.Duration(math.MaxInt64)
			cpu := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t := time.Now()
				if _, err := lmk.Run(in, models.Landmark.Outputs); err != nil {
					b.Fatal(err)
				}
				fastest = min(fastest, time.Since(t))
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu)/1e6/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(fastest)/1e6, "fastest-ms")
		})
	}
}

// lfwSample loads every 77th photo of LFW View 2's pairs under dir (100
// photos), closed when the benchmark ends.
func lfwSample(b *testing.B, dir string) []*align.Image {
	var ims []*align.Image
	b.Cleanup(func() {
		for _, im := range ims {
			im.Close()
		}
	})
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
	return ims
}
