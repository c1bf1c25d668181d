package verify

import (
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
)

// Template is one enrolled feature of a person.
type Template struct {
	// Identity is the person's name.
	Identity string
	// Feature is the embedding.
	Feature []float32
}

// A Matcher answers the 1:N searches of EvaluateOpenSet: the identity and
// score of the best-matching template for a probe. A Matcher that is also an
// io.Closer is closed when the evaluation ends.
type Matcher interface {
	Top1(probe []float32) (identity string, score float64, err error)
}

// cosineMatcher searches exhaustively by cosine similarity.
type cosineMatcher []Template

func (m cosineMatcher) Top1(probe []float32) (string, float64, error) {
	best, score := -1, math.Inf(-1)
	for i, t := range m {
		s := Cosine(probe, t.Feature)
		if math.IsNaN(s) {
			return "", 0, fmt.Errorf("verify: probe and template of %s cannot be compared (dimensions %d and %d, or a zero vector)", t.Identity, len(probe), len(t.Feature))
		}
		if s > score {
			best, score = i, s
		}
	}
	if best < 0 {
		return "", 0, errors.New("verify: empty gallery")
	}
	return m[best].Identity, score, nil
}

// NewCosineMatcher searches templates exhaustively by cosine similarity (the
// default of EvaluateOpenSet).
func NewCosineMatcher(templates []Template) (Matcher, error) {
	return cosineMatcher(templates), nil
}

// DefaultSweep are the thresholds at which EvaluateOpenSet reports both
// rates by default: 0.30 to 0.70 in steps of 0.05.
var DefaultSweep = []float64{0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60, 0.65, 0.70}

// OpenSetOptions are the choices of EvaluateOpenSet.
type OpenSetOptions struct {
	// Threshold is the operating point reported first.
	Threshold float64
	// TargetFalseAlarm is the share of strangers allowed to match someone
	// at the calibrated threshold (e.g. 0.01).
	TargetFalseAlarm float64
	// Sweep lists further thresholds to report (nil: DefaultSweep).
	Sweep []float64
	// NewMatcher builds the 1:N search over the enrolled templates (nil:
	// NewCosineMatcher). Pass the search that identification uses in
	// production so that the figures are those of that code.
	NewMatcher func(templates []Template) (Matcher, error)
}

// OpenSetPoint is one operating point of open-set identification.
type OpenSetPoint struct {
	// Threshold is the score at or above which a top-1 match is accepted.
	Threshold float64 `json:"threshold"`
	// DetectIdentify is the share of mated probes identified correctly and
	// at or above the threshold.
	DetectIdentify float64 `json:"detect_identify_rate"`
	// FalseAlarm is the share of strangers matched to someone.
	FalseAlarm float64 `json:"false_alarm_rate"`
}

// OpenSetEvaluation is the outcome of the open-set 1:N protocol
// (EvaluateOpenSet).
type OpenSetEvaluation struct {
	// Threshold is OpenSetOptions.Threshold.
	Threshold float64 `json:"threshold"`
	// Enrolled counts the people enrolled (those with a usable photo).
	Enrolled int `json:"enrolled"`
	// MatedProbes counts the probes of enrolled people.
	MatedProbes int `json:"mated_probes"`
	// Rank1 is the share of mated probes whose best match is the right
	// person (closed set, no threshold).
	Rank1 float64 `json:"rank1"`
	// DetectIdentify is the share of mated probes identified correctly and
	// above the threshold (open set).
	DetectIdentify float64 `json:"detect_identify_rate"`
	// Strangers counts the probes of people not enrolled; FalseAlarm is the
	// share of them matched to someone at the threshold (should be near the
	// FAR).
	Strangers int `json:"strangers"`
	// FalseAlarm is the share of strangers matched to someone at Threshold.
	FalseAlarm float64 `json:"false_alarm_rate"`
	// PhotosWithoutFace counts the photos without a feature, left out.
	PhotosWithoutFace int `json:"photos_without_face"`
	// Sweep gives both rates at the sweep's thresholds.
	Sweep []OpenSetPoint `json:"sweep"`
	// TargetFalseAlarm is OpenSetOptions.TargetFalseAlarm.
	TargetFalseAlarm float64 `json:"target_false_alarm"`
	// Calibrated is the threshold chosen on half of the strangers (those of
	// every other person) for TargetFalseAlarm, with both rates measured on
	// the other half; zero when there are too few strangers to split.
	Calibrated OpenSetPoint `json:"calibrated"`
}

// ErrNoMatedProbes is returned by EvaluateOpenSet when no enrolled person
// has a probe with a feature: there is nothing to identify.
var ErrNoMatedProbes = errors.New("verify: no person with two or more photos with a face")

// EvaluateOpenSet runs the open-set 1:N protocol on a split (SplitPeople):
// each person's gallery photos are enrolled, their other photos (mated
// probes) are identified against everyone enrolled, and the strangers
// (people never enrolled) should come back unknown.
//
// feature returns a photo's embedding, nil when it has none (no usable
// face). Such photos are left out and counted; a person whose gallery
// photos all lack a feature is enrolled with their next photos that have
// one (as many as the split enrolled), the rest staying probes, so that a
// person counts as enrolled whenever one of their photos is usable.
//
// The calibrated threshold is chosen on the strangers of every other person
// (in the split's order: People positions 0, 2, 4, ...) as the lowest that
// lets at most TargetFalseAlarm of them match someone, and measured on the
// strangers of the other people, so that the false-alarm rate reported for
// it is not the one it was fitted to.
func EvaluateOpenSet(s *OpenSetSplit, feature func(path string) []float32, opt OpenSetOptions) (*OpenSetEvaluation, error) {
	ev := &OpenSetEvaluation{Threshold: opt.Threshold, TargetFalseAlarm: opt.TargetFalseAlarm}
	// Each person's photos in order, gallery first, and how many the split
	// enrolled.
	type person struct {
		photos  []Photo
		gallery int
	}
	byName := map[string]*person{}
	var order []string
	add := func(ph Photo, gallery bool) {
		p := byName[ph.Identity]
		if p == nil {
			p = &person{}
			byName[ph.Identity] = p
			order = append(order, ph.Identity)
		}
		p.photos = append(p.photos, ph)
		if gallery {
			p.gallery++
		}
	}
	for _, ph := range s.Gallery {
		add(ph, true)
	}
	for _, ph := range s.Known {
		add(ph, false)
	}
	var templates []Template
	type probe struct {
		truth string
		emb   []float32
	}
	var mated []probe
	for _, name := range order {
		p := byName[name]
		var usable [][]float32
		for _, ph := range p.photos {
			if f := feature(ph.Path); f != nil {
				usable = append(usable, f)
			} else {
				ev.PhotosWithoutFace++
			}
		}
		if len(usable) == 0 {
			continue
		}
		n := min(p.gallery, len(usable))
		for _, f := range usable[:n] {
			templates = append(templates, Template{Identity: name, Feature: f})
		}
		ev.Enrolled++
		for _, f := range usable[n:] {
			mated = append(mated, probe{name, f})
		}
	}
	// Strangers, with the position of their person in the split's order.
	position := make(map[string]int, len(s.People))
	for i, n := range s.People {
		position[n] = i
	}
	var strangers [][]float32
	var strangerPos []int
	for _, ph := range s.Unknown {
		f := feature(ph.Path)
		if f == nil {
			ev.PhotosWithoutFace++
			continue
		}
		pos, ok := position[ph.Person]
		if !ok {
			return nil, fmt.Errorf("verify: stranger %s: person %q is not in the split's People", ph.Path, ph.Person)
		}
		strangers = append(strangers, f)
		strangerPos = append(strangerPos, pos)
	}
	if len(templates) == 0 || len(mated) == 0 {
		return nil, ErrNoMatedProbes
	}
	newMatcher := opt.NewMatcher
	if newMatcher == nil {
		newMatcher = NewCosineMatcher
	}
	m, err := newMatcher(templates)
	if err != nil {
		return nil, fmt.Errorf("verify: open-set gallery: %w", err)
	}
	if c, ok := m.(io.Closer); ok {
		defer c.Close()
	}
	// Each probe's top-1 answer.
	known := make([]Probe, 0, len(mated))
	for _, p := range mated {
		id, score, err := m.Top1(p.emb)
		if err != nil {
			return nil, err
		}
		known = append(known, Probe{Truth: p.truth, Best: id, Score: score})
	}
	var strange, testStrangers []Probe
	var calib []float64
	for i, f := range strangers {
		id, score, err := m.Top1(f)
		if err != nil {
			return nil, err
		}
		pb := Probe{Best: id, Score: score}
		strange = append(strange, pb)
		if strangerPos[i]%2 == 0 {
			calib = append(calib, pb.Score)
		} else {
			testStrangers = append(testStrangers, pb)
		}
	}
	point := func(t float64, strangers []Probe) (OpenSetPoint, OpenSetResult, error) {
		r, err := OpenSet(append(append([]Probe(nil), known...), strangers...), t)
		return OpenSetPoint{Threshold: t, DetectIdentify: r.DIR, FalseAlarm: r.FPIR}, r, err
	}
	ev.MatedProbes, ev.Strangers = len(mated), len(strangers)
	at, r, err := point(ev.Threshold, strange)
	if err != nil {
		return nil, err
	}
	ev.Rank1, ev.DetectIdentify, ev.FalseAlarm = r.Rank1, at.DetectIdentify, at.FalseAlarm
	sweep := opt.Sweep
	if sweep == nil {
		sweep = DefaultSweep
	}
	for _, t := range sweep {
		p, _, err := point(t, strange)
		if err != nil {
			return nil, err
		}
		ev.Sweep = append(ev.Sweep, p)
	}
	if len(calib) > 0 && len(testStrangers) > 0 {
		thr := falseAlarmThreshold(calib, ev.TargetFalseAlarm)
		if ev.Calibrated, _, err = point(thr, testStrangers); err != nil {
			return nil, err
		}
	}
	return ev, nil
}

// falseAlarmThreshold is the lowest threshold at which at most target of
// the strangers' top-1 scores are accepted (score ≥ threshold): just above
// the score of the (⌊target·n⌋+1)-th highest; all of them when target
// allows every one.
func falseAlarmThreshold(scores []float64, target float64) float64 {
	s := append([]float64(nil), scores...)
	sort.Sort(sort.Reverse(sort.Float64Slice(s)))
	allowed := int(math.Floor(target * float64(len(s))))
	if allowed >= len(s) {
		return s[len(s)-1]
	}
	return math.Nextafter(s[allowed], math.Inf(1))
}
