package align_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/facever/facever/align"
)

// lfwPairsPhotos lists the photos of LFW View 2's pairs.txt under dir.
func lfwPairsPhotos(t testing.TB, dir string) []string {
	f, err := os.Open(filepath.Join(dir, "pairs.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]bool{}
	photo := func(name, n string) {
		var k int
		fmt.Sscan(n, &k)
		seen[filepath.Join(dir, "images", name, fmt.Sprintf("%s_%04d.jpg", name, k))] = true
	}
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		w := strings.Fields(sc.Text())
		switch len(w) {
		case 3:
			photo(w[0], w[1])
			photo(w[0], w[2])
		case 4:
			photo(w[0], w[1])
			photo(w[2], w[3])
		}
	}
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// TestLFWEveryPhoto detects every photo of LFW View 2's pairs (7,701
// photos) when FACEVER_LFW names the LFW folder (../shared/faces/lfw; about
// two minutes on two cores): none may come back without a face, and the
// person's face must score at least DefaultMinQuality, so that enroll
// keeps every LFW photo. The person's face is the face whose box holds the
// photo's centre (LFW photos are centred on the person they are labelled
// with; a few hold a larger face of someone else, a face in the
// background, often cut by the border, which may score low). With
// FACEVER_LFW_ALL=1 as well it reads all 13,233 LFW photos. Without
// FACEVER_LFW it skips.
func TestLFWEveryPhoto(t *testing.T) {
	dir := os.Getenv("FACEVER_LFW")
	if dir == "" {
		t.Skip("set FACEVER_LFW=../shared/faces/lfw to check every LFW View 2 photo")
	}
	a := newAligner(t)
	paths := lfwPairsPhotos(t, dir)
	if os.Getenv("FACEVER_LFW_ALL") != "" { // all 13,233 photos, not only View 2's
		var err error
		if paths, err = filepath.Glob(filepath.Join(dir, "images", "*", "*.jpg")); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	noFace, low, notLargest, largestLow := 0, 0, 0, 0
	var qs, ups, mouths []float64
	turned := 0
	for _, p := range paths {
		im, err := align.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		faces, err := a.Detect(im)
		w, h := im.Width(), im.Height()
		im.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(faces) == 0 {
			noFace++
			t.Errorf("%s: no face", p)
			continue
		}
		c := centreFace(faces, w, h)
		if c != 0 {
			notLargest++
			if q := faces[0].Quality.Score; q < align.DefaultMinQuality {
				largestLow++
			}
		}
		f := faces[c]
		q := f.Quality.Score
		qs = append(qs, q)
		ups = append(ups, f.Quality.Upright-f.Quality.Tracking)
		mouths = append(mouths, f.Quality.MouthInside)
		if f.Rotation != 0 {
			turned++
			t.Logf("%s: read turned by %d°", p, f.Rotation)
		}
		if q < align.DefaultMinQuality {
			low++
			t.Errorf("%s: the person's face's quality %.3f below the default minimum %.2f: %+v", p, q, align.DefaultMinQuality, f.Quality.Rounded())
		}
	}
	el := time.Since(start)
	sort.Float64s(qs)
	pct := func(f float64) float64 { return qs[int(f*float64(len(qs)-1))] }
	sort.Float64s(ups)
	sort.Float64s(mouths)
	t.Logf("mouth inside: min %.3f p0.1 %.3f p1 %.3f", mouths[0], mouths[len(mouths)/1000], mouths[len(mouths)/100])
	t.Logf("uprightness of the largest face: min %.3f p1 %.3f p5 %.3f median %.3f", ups[0], ups[len(ups)/100], ups[len(ups)/20], ups[len(ups)/2])
	t.Logf("the person's face is not the largest in %d photos (the largest below the default minimum in %d: enroll --largest refuses them)", notLargest, largestLow)
	t.Logf("LFW: %d photos in %v (%.1f ms per photo); %d without a face; %d read turned; %d below quality %.2f; person's face quality min %.3f p1 %.3f p5 %.3f median %.3f",
		len(paths), el.Round(time.Second), float64(el.Milliseconds())/float64(len(paths)), noFace, turned, low, align.DefaultMinQuality, qs[0], pct(0.01), pct(0.05), pct(0.5))
}
