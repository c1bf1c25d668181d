package align_test

import (
	"encoding/gob"
	"fmt"
	"image"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/facever/facever/align"
)

// The quality experiment: real faces (the johns photos, LFW photos) and bad
// faces constructed from them, split by person into a fit half and a
// held-out half. The face-likeness weights (upright_weights.go) and the
// score's thresholds were fitted on the fit half only; the held-out half
// says how they generalise.

// Kinds of sample. kindGood is the photo itself, judged on the person's
// face (the face nearest the photo's centre: LFW photos are centred on the
// person, and some hold a larger face of someone behind); the others are
// bad faces built from it, judged on the faces found over the person's
// face (a face of someone else in the crop is not counted).
const (
	kindGood       = "good"
	kindForehead45 = "forehead (top 45 %)"
	kindForeEyes   = "forehead and eyes"
	kindToNose     = "forehead to nose"
	kindEyes       = "eyes band"
	kindMouth      = "mouth and chin"
	kindLeft       = "left half"
	kindRight      = "right half"
	kindUpsideDown = "upside down, aligned upside down"
)

var badKinds = []string{kindForehead45, kindForeEyes, kindToNose, kindEyes, kindMouth, kindLeft, kindRight, kindUpsideDown}

// qSample is one photo, real or constructed, with the faces judged.
type qSample struct {
	Set, Person, Path, Kind string
	Fit                     bool // in the fit half
	Faces                   []qFace
}

// qFace is one judged face: its quality and its 56×56 grey chip.
type qFace struct {
	Q    align.Quality
	Chip []uint8
}

// fitHalf says whether a person is in the fit half: the first three johns
// people (of five), LFW names A–M.
func fitHalf(set, person string) bool {
	if set == "johns" {
		return person < "John_Shimkus"
	}
	return strings.ToUpper(person[:1]) <= "M"
}

// centreFace is the index of the face whose box holds the photo's centre
// (the nearest box centre if several or none), −1 without faces.
func centreFace(faces []align.Face, w, h int) int {
	cx, cy := float64(w)/2, float64(h)/2
	best, bestD := -1, math.Inf(1)
	for i, f := range faces {
		d := math.Hypot((f.Box[0]+f.Box[2])/2-cx, (f.Box[1]+f.Box[3])/2-cy)
		if f.Box[0] <= cx && cx <= f.Box[2] && f.Box[1] <= cy && cy <= f.Box[3] {
			d -= 1e6 // a box holding the centre first
		}
		if d < bestD {
			best, bestD = i, d
		}
	}
	return best
}

// over says whether f's box centre lies in box grown by a fifth.
func over(f align.Face, box [4]float64) bool {
	cx, cy := (f.Box[0]+f.Box[2])/2, (f.Box[1]+f.Box[3])/2
	gx, gy := 0.2*(box[2]-box[0]), 0.2*(box[3]-box[1])
	return box[0]-gx <= cx && cx <= box[2]+gx && box[1]-gy <= cy && cy <= box[3]+gy
}

// qSamples detects the photo at path and builds its bad crops; a and plain
// are the default aligner and one without the rotation search.
func qSamples(t testing.TB, a, plain *align.Aligner, set, person, path string) []qSample {
	im, err := align.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	fit := fitHalf(set, person)
	faces, err := a.Detect(im)
	if err != nil {
		t.Fatal(err)
	}
	w, h := im.Width(), im.Height()
	c := centreFace(faces, w, h)
	good := qSample{Set: set, Person: person, Path: path, Kind: kindGood, Fit: fit}
	if c < 0 {
		return []qSample{good}
	}
	f := faces[c]
	good.Faces = []qFace{{f.Quality, align.FaceChipPix(im, f)}}
	out := []qSample{good}
	if os.Getenv("FACEVER_QUALITY_GOOD_ONLY") != "" {
		return out // the real photos only (a wider check of the real faces' tail)
	}
	eyeY := (f.Landmarks[0].Y + f.Landmarks[1].Y) / 2
	mouthY := (f.Landmarks[3].Y + f.Landmarks[4].Y) / 2
	d := mouthY - eyeY
	noseX := f.Landmarks[2].X
	clampY := func(y float64) int { return max(1, min(h, int(y+0.5))) }
	clampX := func(x float64) int { return max(1, min(w, int(x+0.5))) }
	crops := []struct {
		kind string
		r    image.Rectangle
	}{
		{kindForehead45, image.Rect(0, 0, w, h*45/100)},
		{kindForeEyes, image.Rect(0, 0, w, clampY(eyeY+0.3*d))},
		{kindToNose, image.Rect(0, 0, w, clampY(eyeY+0.6*d))},
		{kindEyes, image.Rect(0, clampY(eyeY-0.6*d)-1, w, clampY(eyeY+0.5*d))},
		{kindMouth, image.Rect(0, clampY(eyeY+0.55*d)-1, w, h)},
		{kindLeft, image.Rect(0, 0, clampX(noseX), h)},
		{kindRight, image.Rect(clampX(noseX)-1, 0, w, h)},
	}
	judge := func(kind string, m gocv.Mat, al *align.Aligner, box [4]float64, keep func(align.Face) bool) {
		fs, err := al.Detect(asImage(m))
		if err != nil {
			t.Fatal(err)
		}
		s := qSample{Set: set, Person: person, Path: path, Kind: kind, Fit: fit}
		for _, g := range fs {
			if over(g, box) && keep(g) {
				s.Faces = append(s.Faces, qFace{g.Quality, align.FaceChipPix(asImage(m), g)})
			}
		}
		out = append(out, s)
	}
	all := func(align.Face) bool { return true }
	for _, cr := range crops {
		if cr.r.Dx() < 8 || cr.r.Dy() < 8 {
			continue
		}
		reg := im.Mat.Region(cr.r)
		m := reg.Clone()
		reg.Close()
		b := f.Box
		box := [4]float64{b[0] - float64(cr.r.Min.X), b[1] - float64(cr.r.Min.Y), b[2] - float64(cr.r.Min.X), b[3] - float64(cr.r.Min.Y)}
		judge(cr.kind, m, a, box, all)
		m.Close()
	}
	// Turned upside down and read without the rotation search: the faces
	// the landmark model takes for upright ones (|roll| < 90°) come out
	// upside down.
	turned := turnImage(im.Mat, 180)
	b := f.Box
	box := [4]float64{float64(w) - b[2], float64(h) - b[3], float64(w) - b[0], float64(h) - b[1]}
	judge(kindUpsideDown, turned, plain, box, func(g align.Face) bool { return math.Abs(g.Roll) < 90 })
	turned.Close()
	return out
}

// qualitySources lists the photos of the experiment: the 55 johns photos,
// and, with LFW, the first photo of every lfwEvery-th person (every photo
// of them with $FACEVER_QUALITY_ALL_PHOTOS set: with
// FACEVER_QUALITY_GOOD_ONLY, the face-likeness fit's extra real faces).
func qualitySources(t testing.TB, lfwEvery int) (sets, people, paths []string) {
	for _, p := range johnsPaths(t) {
		sets, people, paths = append(sets, "johns"), append(people, filepath.Base(filepath.Dir(p))), append(paths, p)
	}
	dir := lfwDir()
	if dir == "" || lfwEvery <= 0 {
		return
	}
	names, err := filepath.Glob(filepath.Join(dir, "images", "*"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	all := os.Getenv("FACEVER_QUALITY_ALL_PHOTOS") != ""
	for i, n := range names {
		if i%lfwEvery != 0 {
			continue
		}
		person := filepath.Base(n)
		photos := []string{filepath.Join(n, person+"_0001.jpg")}
		if all {
			if photos, err = filepath.Glob(filepath.Join(n, "*.jpg")); err != nil {
				t.Fatal(err)
			}
			sort.Strings(photos)
		}
		for _, p := range photos {
			sets, people, paths = append(sets, "lfw"), append(people, person), append(paths, p)
		}
	}
	return
}

// loadQSamples builds the samples, or reads them from the gob file
// $FACEVER_QSAMPLES when it exists (and writes it when it does not).
func loadQSamples(t testing.TB, lfwEvery int) []qSample {
	cache := os.Getenv("FACEVER_QSAMPLES")
	if cache != "" {
		if _, err := os.Stat(cache); err == nil {
			return readQSamples(t, cache)
		}
	}
	a := newAligner(t)
	plain := newAlignerOpt(t, align.Options{NoRotate: true})
	sets, people, paths := qualitySources(t, lfwEvery)
	var out []qSample
	for i := range paths {
		out = append(out, qSamples(t, a, plain, sets[i], people[i], paths[i])...)
	}
	if cache != "" {
		f, err := os.Create(cache)
		if err != nil {
			t.Fatal(err)
		}
		if err := gob.NewEncoder(f).Encode(out); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	return out
}

// readQSamples reads the samples of the gob file path (loadQSamples).
func readQSamples(t testing.TB, path string) []qSample {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var s []qSample
	if err := gob.NewDecoder(f).Decode(&s); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return s
}

// qSummary counts, per kind and half, the samples kept at min: a good
// photo is kept when its person's face scores at least min; a bad one when
// any judged face of at least enrollMinFace pixels does.
func qSummary(samples []qSample, min float64, score func(align.Quality) float64) map[string][2][2]int {
	out := map[string][2][2]int{} // kind → half (0 fit, 1 held-out) → {kept, total}
	for _, s := range samples {
		h := 1
		if s.Fit {
			h = 0
		}
		c := out[s.Set+" "+s.Kind]
		c[h][1]++
		kept := false
		for _, f := range s.Faces {
			if score(f.Q) >= min && (s.Kind == kindGood || f.Q.FacePixels >= enrollMinFace) {
				kept = true
			}
		}
		if kept {
			c[h][0]++
		}
		out[s.Set+" "+s.Kind] = c
	}
	return out
}

// TestQualityExperiment builds the quality experiment's samples (the 55
// johns photos; with LFW, the first photo of every 40th person, or of every
// $FACEVER_QUALITY_LFW_EVERY-th) and checks the default minimum quality on
// them, fit half and held-out half alike: every real photo's person's face
// scores at least DefaultMinQuality, and of the crops of the forehead and
// eyes, of the mouth and of half a face, and of the faces aligned upside
// down, at most qualityMaxKept % keep a face that enroll would take
// (quality at least the default, at least enrollMinFace pixels). It logs
// the counts of every kind.
func TestQualityExperiment(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and reads about 500 photos")
	}
	samples := sharedQSamples(t)
	score := func(q align.Quality) float64 { return q.Score }
	for i := range samples {
		for j := range samples[i].Faces {
			f := &samples[i].Faces[j]
			f.Q = align.Rescored(f.Q, f.Chip) // a cached sample's FaceLike may be of other weights
		}
	}
	sum := qSummary(samples, align.DefaultMinQuality, score)
	var keys []string
	for k := range sum {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	half := [2]string{"fit", "held-out"}
	for _, k := range keys {
		c := sum[k]
		t.Logf("%-45s kept fit %4d/%-4d held-out %4d/%-4d", k, c[0][0], c[0][1], c[1][0], c[1][1])
		kind := k[strings.Index(k, " ")+1:]
		for h := 0; h < 2; h++ {
			switch {
			case kind == kindGood && c[h][0] < c[h][1]:
				t.Errorf("%s, %s half: %d of %d real photos' faces below the default minimum %.2f (or without a face)", k, half[h], c[h][1]-c[h][0], c[h][1], align.DefaultMinQuality)
			case qualityMaxKept[kind] > 0 && c[h][0]*100 > qualityMaxKept[kind]*c[h][1]:
				t.Errorf("%s, %s half: %d of %d kept by the default minimum %.2f, want at most %d %%", k, half[h], c[h][0], c[h][1], align.DefaultMinQuality, qualityMaxKept[kind])
			}
		}
	}
	for _, s := range samples {
		if s.Kind != kindGood {
			continue
		}
		for _, f := range s.Faces {
			if f.Q.Score < align.DefaultMinQuality {
				t.Logf("%s: %+v", s.Path, f.Q.Rounded())
			}
		}
	}
	for h, name := range half {
		minQ, minL, n := math.Inf(1), math.Inf(1), 0
		for _, s := range samples {
			if s.Kind == kindGood && s.Fit == (h == 0) {
				for _, f := range s.Faces {
					minQ, minL, n = math.Min(minQ, f.Q.Score), math.Min(minL, f.Q.FaceLike), n+1
				}
			}
		}
		t.Logf("%s half: %d real faces, quality at least %.3f, face-likeness at least %.2f", name, n, minQ, minL)
	}
	// Against the recipe before the face-likeness gate (minimum 0.09, no
	// gate): the bad faces of the kinds qualityMaxKept limits that either
	// keeps, all halves together.
	old := qSummary(samples, qualityOldMin, func(q align.Quality) float64 { return align.ScoredWith(q, 0, -1e9, -1e9+1).Score })
	now, before := 0, 0
	for k, c := range sum {
		if qualityMaxKept[k[strings.Index(k, " ")+1:]] > 0 {
			now += c[0][0] + c[1][0]
			before += old[k][0][0] + old[k][1][0]
		}
	}
	t.Logf("forehead, mouth and half crops and upside-down faces kept: %d now, %d by the old recipe (minimum %.2f, no face-likeness gate)", now, before, qualityOldMin)
	if now*100 > before*qualityMaxOfOld {
		t.Errorf("the default keeps %d forehead, mouth and half crops and upside-down faces, more than %d %% of the old recipe's %d", now, qualityMaxOfOld, before)
	}
}

// qualityOldMin is the default minimum quality before the face-likeness
// gate; qualityMaxOfOld is the share (in %) of the bad faces it kept that
// the default may keep.
const (
	qualityOldMin   = 0.09
	qualityMaxOfOld = 10
)

// qualityMaxKept is, per kind of bad crop, the share (in %) of crops that
// may keep a face enroll would take, in either half (measured: see the
// README).
var qualityMaxKept = map[string]int{
	kindForehead45: 5,
	kindForeEyes:   5,
	kindToNose:     5,
	kindUpsideDown: 12,
	kindMouth:      5,
	kindLeft:       6,
	kindRight:      6,
}

// lfwEvery is $FACEVER_QUALITY_LFW_EVERY (every how many LFW people's first
// photo the quality experiment reads; 0: none), 40 by default.
func lfwEvery() int {
	n := 40
	if v := os.Getenv("FACEVER_QUALITY_LFW_EVERY"); v != "" {
		fmt.Sscan(v, &n)
	}
	return n
}
