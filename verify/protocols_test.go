package verify

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/facever/facever/dataset"
)

// TestNoFacePolicy: a pair with a photo without a feature scores NaN; the
// reject policy decides it "different person" (score −1) and keeps it in
// every figure, the skip policy leaves it out.
func TestNoFacePolicy(t *testing.T) {
	ps, err := ParsePairs(strings.NewReader("a1,a2,1\nb1,b2,1\nc1,c2,1\na1,b1,0\nb2,c1,0\nc2,a2,0\nd1,a1,1\nd1,b1,0\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	f := map[string][]float32{
		"a1": {1, 0.1}, "a2": {1, 0.2}, "b1": {0.1, 1}, "b2": {0.2, 1}, "c1": {-1, 0.1}, "c2": {-1, 0.2},
		// d1 has no face.
	}
	scores := ps.Scores(func(p string) []float32 { return f[p] })
	if len(scores) != 8 || !math.IsNaN(scores[6]) || !math.IsNaN(scores[7]) || math.Abs(scores[0]-Cosine(f["a1"], f["a2"])) > 0 {
		t.Fatalf("scores %v", scores)
	}
	// Reject: the same as scoring those pairs −1 by hand.
	rej, err := ps.Evaluate(scores, PairsOptions{Folds: 2})
	if err != nil {
		t.Fatal(err)
	}
	byHand := slices.Clone(scores)
	byHand[6], byHand[7] = -1, -1
	want, err := Evaluate(byHand, ps.Labels(), nil, 2)
	if err != nil {
		t.Fatal(err)
	}
	if rej.Pairs != 8 || rej.Rejected != 2 || rej.Skipped != 0 || rej.ROC.AUC != want.ROC.AUC || rej.KFold.Mean != want.KFold.Mean || rej.Best != want.Best {
		t.Errorf("reject: %+v, want %+v", rej, want)
	}
	// The genuine pair without a face is a false reject: 7 of 8 right.
	if rej.Best.Accuracy != 7.0/8 {
		t.Errorf("reject: best accuracy %v, want 7/8", rej.Best.Accuracy)
	}
	// Skip: the same as leaving those pairs out.
	skip, err := ps.Evaluate(scores, PairsOptions{Folds: 2, NoFace: NoFaceSkip})
	if err != nil {
		t.Fatal(err)
	}
	if skip.Pairs != 6 || skip.Skipped != 2 || skip.Rejected != 0 || skip.Best.Accuracy != 1 || skip.ROC.AUC != 1 {
		t.Errorf("skip: %+v", skip)
	}
	// Calibrate under both policies: the impostor pair without a face is a
	// rejected impostor (reject) or not counted (skip).
	cr, err := ps.Calibrate(scores, 0.5, NoFaceReject)
	if err != nil || cr.Impostor != 4 || cr.Genuine != 4 || cr.Skipped != 0 {
		t.Errorf("calibrate, reject: %+v %v", cr, err)
	}
	cs, err := ps.Calibrate(scores, 0.5, NoFaceSkip)
	if err != nil || cs.Impostor != 3 || cs.Genuine != 3 || cs.Skipped != 2 {
		t.Errorf("calibrate, skip: %+v %v", cs, err)
	}
	if _, err := ps.Evaluate(scores, PairsOptions{NoFace: 7}); err == nil {
		t.Error("unknown policy accepted")
	}
	if NoFaceReject.String() != "reject" || NoFaceSkip.String() != "skip" || NoFace(7).String() != "NoFace(7)" {
		t.Error("policy names")
	}
}

// unit returns a unit vector near axis k of a d-dimensional space, with a
// little noise.
func unit(rng *rand.Rand, d, k int, noise float64) []float32 {
	v := make([]float32, d)
	var n float64
	for i := range v {
		x := noise * rng.NormFloat64()
		if i == k {
			x += 1
		}
		v[i] = float32(x)
		n += x * x
	}
	for i := range v {
		v[i] /= float32(math.Sqrt(n))
	}
	return v
}

// TestEvaluateOpenSetTiny: every figure of a small case worked out by hand.
func TestEvaluateOpenSetTiny(t *testing.T) {
	// ann, bob, cy: enrolled (two or more photos); dee, eve, fay: strangers.
	people := []dataset.Person{
		{Name: "ann", Photos: []string{"ann1", "ann2", "ann3"}},
		{Name: "bob", Photos: []string{"bob1", "bob2"}},
		{Name: "cy", Photos: []string{"cy1", "cy2"}},
		{Name: "dee", Photos: []string{"dee1"}},
		{Name: "eve", Photos: []string{"eve1"}},
		{Name: "fay", Photos: []string{"fay1"}},
		{Name: "gus", Photos: []string{"gus1", "gus2"}},
	}
	s, err := SplitPeople(people, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Gallery) != 4 || len(s.Known) != 5 || len(s.Unknown) != 3 || len(s.People) != 7 || s.Unknown[1].Person != "eve" {
		t.Fatalf("split %+v", s)
	}
	c := func(deg float64) []float32 { // a unit vector at an angle: cosines are cos(Δ)
		r := deg * math.Pi / 180
		return []float32{float32(math.Cos(r)), float32(math.Sin(r))}
	}
	f := map[string][]float32{
		"ann1": c(0), "ann2": c(10), "ann3": c(40), // ann3: best match ann (cos 40° = 0.766; bob: cos 50°)
		"bob1": nil, "bob2": c(90), // bob1 has no face: bob is enrolled with bob2, no probe left
		"cy1": c(180), "cy2": c(100), // cy2 is nearer bob (cos 10°) than cy (cos 80°): wrong at rank 1
		"dee1": c(20),            // stranger, best cos 20° = 0.940 (ann)
		"eve1": c(135),           // stranger, best cos 45° = 0.707 (bob, cy)
		"fay1": nil,              // stranger without a face
		"gus1": nil, "gus2": nil, // never enrolled: no face at all
	}
	var built []Template
	closed := false
	opt := OpenSetOptions{Threshold: 0.8, TargetFalseAlarm: 0, Sweep: []float64{0.5, 0.95},
		NewMatcher: func(ts []Template) (Matcher, error) {
			built = ts
			m, _ := NewCosineMatcher(ts)
			return closer{m, &closed}, nil
		}}
	ev, err := EvaluateOpenSet(s, func(p string) []float32 { return f[p] }, opt)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tm := range built {
		names = append(names, tm.Identity)
	}
	if !slices.Equal(names, []string{"ann", "bob", "cy"}) || !closed {
		t.Errorf("templates %v, closed %v", names, closed)
	}
	// Mated probes: ann2 (ann, 0.985), ann3 (ann, 0.766), cy2 (bob, 0.985).
	if ev.Enrolled != 3 || ev.MatedProbes != 3 || ev.Strangers != 2 || ev.PhotosWithoutFace != 4 {
		t.Errorf("counts %+v", ev)
	}
	if !approx(ev.Rank1, 2.0/3) || !approx(ev.DetectIdentify, 1.0/3) || !approx(ev.FalseAlarm, 0.5) {
		t.Errorf("at 0.8: rank-1 %v, DIR %v, false alarms %v; want 2/3, 1/3, 1/2", ev.Rank1, ev.DetectIdentify, ev.FalseAlarm)
	}
	wantSweep := []OpenSetPoint{{0.5, 2.0 / 3, 1}, {0.95, 1.0 / 3, 0}}
	for i, p := range ev.Sweep {
		if p.Threshold != wantSweep[i].Threshold || !approx(p.DetectIdentify, wantSweep[i].DetectIdentify) || !approx(p.FalseAlarm, wantSweep[i].FalseAlarm) {
			t.Errorf("sweep %d: %+v, want %+v", i, p, wantSweep[i])
		}
	}
	// Calibration: dee (position 3) tests, eve (position 4) calibrates: no
	// false alarm allowed, so the threshold is just above eve's 0.707 (bob
	// and cy are both 45° away); dee (0.940) is then matched, ann2 and ann3
	// identified.
	want := math.Nextafter(max(Cosine(c(135), c(90)), Cosine(c(135), c(180))), math.Inf(1))
	if ev.Calibrated.Threshold != want || ev.Calibrated.FalseAlarm != 1 || !approx(ev.Calibrated.DetectIdentify, 2.0/3) {
		t.Errorf("calibrated %+v, want threshold %v, false alarm 1, DIR 2/3", ev.Calibrated, want)
	}
	// Without any mated probe with a face: an error saying so.
	f["ann2"], f["ann3"], f["cy2"] = nil, nil, nil
	if _, err := EvaluateOpenSet(s, func(p string) []float32 { return f[p] }, opt); !errors.Is(err, ErrNoMatedProbes) {
		t.Errorf("no mated probes: %v", err)
	}
}

type closer struct {
	Matcher
	closed *bool
}

func (c closer) Close() error { *c.closed = true; return nil }

// TestEvaluateOpenSetRandom: on random people, EvaluateOpenSet agrees with
// a direct count over every probe and template, and its calibrated
// threshold lets at most the target share of the calibration strangers in.
func TestEvaluateOpenSetRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	const d = 64
	var people []dataset.Person
	f := map[string][]float32{}
	for p := range 60 {
		n := 1 + rng.IntN(4)
		if p%3 == 0 {
			n = 1 // a stranger
		}
		person := dataset.Person{Name: fmt.Sprintf("p%02d", p)}
		for i := range n {
			path := fmt.Sprintf("%s/%d", person.Name, i)
			person.Photos = append(person.Photos, path)
			if rng.IntN(10) > 0 { // one photo in ten has no face
				f[path] = unit(rng, d, p, 0.12)
			}
		}
		people = append(people, person)
	}
	s, err := SplitPeople(people, 2)
	if err != nil {
		t.Fatal(err)
	}
	feature := func(p string) []float32 { return f[p] }
	ev, err := EvaluateOpenSet(s, feature, OpenSetOptions{Threshold: 0.6, TargetFalseAlarm: 0.2})
	if err != nil {
		t.Fatal(err)
	}
	// Direct count: enrol each person's first two usable photos (at most
	// their count minus one), probe with the rest.
	type tmpl struct {
		id string
		f  []float32
	}
	var gallery []tmpl
	type probe struct {
		truth string
		f     []float32
	}
	var mated, strangers []probe
	var strangerPerson []int
	missing := 0
	for i, p := range people {
		var usable [][]float32
		for _, path := range p.Photos {
			if f[path] == nil {
				missing++
			} else {
				usable = append(usable, f[path])
			}
		}
		if len(p.Photos) == 1 {
			for _, u := range usable {
				strangers = append(strangers, probe{"", u})
				strangerPerson = append(strangerPerson, i)
			}
			continue
		}
		n := min(2, len(p.Photos)-1, len(usable))
		for _, u := range usable[:n] {
			gallery = append(gallery, tmpl{p.Name, u})
		}
		for _, u := range usable[n:] {
			mated = append(mated, probe{p.Name, u})
		}
	}
	top1 := func(q []float32) (string, float64) {
		best, score := "", math.Inf(-1)
		for _, g := range gallery {
			if s := Cosine(q, g.f); s > score {
				best, score = g.id, s
			}
		}
		return best, score
	}
	right, rightAbove, alarms := 0, 0, 0
	for _, m := range mated {
		id, s := top1(m.f)
		if id == m.truth {
			right++
			if s >= 0.6 {
				rightAbove++
			}
		}
	}
	var calib []float64
	for i, st := range strangers {
		_, s := top1(st.f)
		if s >= 0.6 {
			alarms++
		}
		if strangerPerson[i]%2 == 0 {
			calib = append(calib, s)
		}
	}
	if ev.MatedProbes != len(mated) || ev.Strangers != len(strangers) || ev.PhotosWithoutFace != missing ||
		!approx(ev.Rank1, float64(right)/float64(len(mated))) || !approx(ev.DetectIdentify, float64(rightAbove)/float64(len(mated))) ||
		!approx(ev.FalseAlarm, float64(alarms)/float64(len(strangers))) {
		t.Errorf("EvaluateOpenSet %+v\nby hand: %d mated, %d strangers, %d missing, rank-1 %d, DIR %d, alarms %d",
			ev, len(mated), len(strangers), missing, right, rightAbove, alarms)
	}
	if len(ev.Sweep) != len(DefaultSweep) {
		t.Errorf("sweep %v", ev.Sweep)
	}
	// On the calibration half, the calibrated threshold admits at most
	// ⌊0.2·n⌋ strangers, and one more without the Nextafter step.
	admitted := 0
	for _, s := range calib {
		if s >= ev.Calibrated.Threshold {
			admitted++
		}
	}
	if allowed := int(0.2 * float64(len(calib))); admitted > allowed || len(calib) < 5 {
		t.Errorf("calibrated threshold %v admits %d of %d calibration strangers, allowed %d", ev.Calibrated.Threshold, admitted, len(calib), allowed)
	}
	t.Logf("%d mated probes, %d strangers: rank-1 %.3f, DIR %.3f, false alarms %.3f; calibrated %+v", ev.MatedProbes, ev.Strangers, ev.Rank1, ev.DetectIdentify, ev.FalseAlarm, ev.Calibrated)
}

func TestFalseAlarmThreshold(t *testing.T) {
	s := []float64{0.1, 0.9, 0.5, 0.7, 0.3}
	for _, tc := range []struct {
		target float64
		want   float64
	}{
		{0, math.Nextafter(0.9, 2)},   // nobody in
		{0.2, math.Nextafter(0.7, 2)}, // one of five in
		{0.39, math.Nextafter(0.7, 2)},
		{0.4, math.Nextafter(0.5, 2)},
		{1, 0.1}, // everyone in
	} {
		if got := falseAlarmThreshold(s, tc.target); got != tc.want {
			t.Errorf("target %v: %v, want %v", tc.target, got, tc.want)
		}
	}
	if s[0] != 0.1 {
		t.Error("input reordered")
	}
}

func TestCosineMatcher(t *testing.T) {
	m, _ := NewCosineMatcher([]Template{{"a", []float32{1, 0}}, {"b", []float32{0, 1}}, {"a", []float32{0.6, 0.8}}})
	if id, s, err := m.Top1([]float32{0.5, 0.9}); id != "a" || err != nil || !approx(s, Cosine([]float32{0.5, 0.9}, []float32{0.6, 0.8})) {
		t.Errorf("Top1 = %s %v %v", id, s, err)
	}
	if _, _, err := m.Top1([]float32{1, 0, 0}); err == nil {
		t.Error("dimension mismatch accepted")
	}
	empty, _ := NewCosineMatcher(nil)
	if _, _, err := empty.Top1([]float32{1}); err == nil {
		t.Error("empty gallery answered")
	}
}

// TestHeldOutPairs: every same-label pair (up to half the limit) and as
// many different-label pairs, the same for the same seed; Measure on
// features that separate the labels gives AUC 1.
func TestHeldOutPairs(t *testing.T) {
	labels := []int{0, 0, 0, 1, 1, 2, 2, 2, 2, 3}
	p := HeldOutPairs(labels, 1, 1000)
	same, diff := 0, 0
	seen := map[[2]int]bool{}
	for k := range p.Len() {
		a, b := p.A[k], p.B[k]
		if p.Same[k] != (labels[a] == labels[b]) {
			t.Fatalf("pair %d (%d, %d) labelled %v", k, a, b, p.Same[k])
		}
		if p.Same[k] {
			same++
			seen[[2]int{a, b}] = true
		} else {
			diff++
		}
	}
	// 3 + 1 + 6 same-label pairs.
	if same != 10 || diff != 10 || len(seen) != 10 {
		t.Errorf("%d same, %d different", same, diff)
	}
	if q := HeldOutPairs(labels, 1, 1000); !slices.Equal(q.A, p.A) || !slices.Equal(q.B, p.B) {
		t.Error("same seed, other pairs")
	}
	if q := HeldOutPairs(labels, 2, 1000); slices.Equal(q.A, p.A) && slices.Equal(q.B, p.B) {
		t.Error("another seed, the same pairs")
	}
	if q := HeldOutPairs(labels, 1, 8); q.Len() != 8 {
		t.Errorf("limit 8: %d pairs", q.Len())
	}
	if q := HeldOutPairs([]int{0, 1, 2}, 1, 100); q.Len() != 0 {
		t.Errorf("no same-label pair: %d pairs", q.Len())
	}
	rng := rand.New(rand.NewPCG(1, 2))
	feats := make([][]float32, len(labels))
	for i, l := range labels {
		feats[i] = unit(rng, 8, l, 0.05)
	}
	h, err := p.Measure(feats, 0.1)
	if err != nil || h.Pairs != 20 || h.AUC != 1 || h.Accuracy != 1 || h.TARAt != 1 || h.FAR != 0.1 {
		t.Errorf("Measure: %+v %v", h, err)
	}
	if _, err := p.Measure(feats[:3], 1e-2); err == nil {
		t.Error("pairs outside the features accepted")
	}
}
