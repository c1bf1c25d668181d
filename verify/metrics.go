package verify

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Decision rule used by every metric in this file: a pair is accepted as
// "same person" when its score (cosine similarity) is ≥ the threshold.
// TAR (true accept rate) is the share of genuine (same-person) pairs accepted,
// FAR (false accept rate) the share of impostor (different-person) pairs
// accepted, FRR = 1 − TAR. The protocols are described in docs/protocols.md.

// ErrNoPairs is returned when a metric is asked of an empty set of scores.
var ErrNoPairs = errors.New("verify: no scored pairs")

// ErrNoImpostors is returned when a metric needs impostor (different-person)
// pairs and there are none.
var ErrNoImpostors = errors.New("verify: no impostor (different-person) pairs")

// ErrNoGenuine is returned when a metric needs genuine (same-person) pairs and
// there are none.
var ErrNoGenuine = errors.New("verify: no genuine (same-person) pairs")

// StandardFARs are the false-accept rates at which evaluations report the
// true-accept rate (docs/protocols.md: TAR@FAR = 1e-2, 1e-3, 1e-4).
var StandardFARs = []float64{1e-2, 1e-3, 1e-4}

// ROCPoint is one operating point of a ROC curve: accepting every pair whose
// score is ≥ Threshold gives the rates FAR and TAR and the counts behind them.
type ROCPoint struct {
	// Threshold: pairs with score ≥ Threshold are accepted.
	Threshold float64 `json:"threshold"`
	// FAR is FalseAccepts over the impostor pairs.
	FAR float64 `json:"far"`
	// TAR is TrueAccepts over the genuine pairs.
	TAR float64 `json:"tar"`
	// FalseAccepts counts the impostor pairs accepted.
	FalseAccepts int `json:"false_accepts"`
	// TrueAccepts counts the genuine pairs accepted.
	TrueAccepts int `json:"true_accepts"`
}

// ROC is a receiver operating characteristic computed from labelled scores.
// Points run from the strictest threshold (+Inf: nothing accepted, FAR = TAR = 0)
// to the loosest (the lowest score: everything accepted, FAR = TAR = 1), one
// point per distinct score value, so FAR and TAR never decrease along it.
type ROC struct {
	// Points are the operating points, by decreasing threshold (not in
	// JSON: up to one per pair; use AtFAR for a few).
	Points []ROCPoint `json:"-"`
	// Genuine counts the same-person pairs.
	Genuine int `json:"genuine"`
	// Impostor counts the different-person pairs.
	Impostor int `json:"impostor"`
	// AUC is the area under the TAR-vs-FAR curve (trapezoids between points),
	// equal to P(genuine score > impostor score) + ½·P(equal).
	AUC float64 `json:"auc"`
	// EER is the equal error rate: the rate at which FAR = FRR, linearly
	// interpolated between the two operating points where FAR − FRR changes sign.
	EER float64 `json:"eer"`
	// EERThreshold is the threshold of the operating point where |FAR − FRR| is
	// smallest (the one to use to operate near the EER).
	EERThreshold float64 `json:"eer_threshold"`
}

// scored is one labelled score, with its fold for the k-fold protocol.
type scored struct {
	s    float64
	same bool
	fold int32
}

// sortScores checks inputs and returns the scores sorted by decreasing value.
func sortScores(scores []float64, same []bool, folds []int) ([]scored, error) {
	if len(scores) != len(same) {
		return nil, fmt.Errorf("verify: %d scores but %d labels", len(scores), len(same))
	}
	if folds != nil && len(folds) != len(scores) {
		return nil, fmt.Errorf("verify: %d scores but %d fold indices", len(scores), len(folds))
	}
	if len(scores) == 0 {
		return nil, ErrNoPairs
	}
	v := make([]scored, len(scores))
	for i, s := range scores {
		if math.IsNaN(s) || math.IsInf(s, 0) {
			return nil, fmt.Errorf("verify: score %d is %v", i, s)
		}
		v[i] = scored{s: s, same: same[i]}
		if folds != nil {
			v[i].fold = int32(folds[i])
		}
	}
	slices.SortFunc(v, func(a, b scored) int {
		switch {
		case a.s > b.s:
			return -1
		case a.s < b.s:
			return 1
		}
		return 0
	})
	return v, nil
}

// ComputeROC computes the ROC curve, its AUC and the EER of labelled scores
// (same[i] reports whether pair i shows one person). It sorts once:
// O(n log n) time, one point per distinct score. It needs at least one
// genuine and one impostor pair.
func ComputeROC(scores []float64, same []bool) (*ROC, error) {
	v, err := sortScores(scores, same, nil)
	if err != nil {
		return nil, err
	}
	return rocSorted(v)
}

func rocSorted(v []scored) (*ROC, error) {
	g, im := 0, 0
	for _, x := range v {
		if x.same {
			g++
		} else {
			im++
		}
	}
	if g == 0 {
		return nil, ErrNoGenuine
	}
	if im == 0 {
		return nil, ErrNoImpostors
	}
	r := &ROC{Genuine: g, Impostor: im}
	r.Points = append(r.Points, ROCPoint{Threshold: math.Inf(1)})
	ta, fa := 0, 0
	for i := 0; i < len(v); {
		t := v[i].s
		for ; i < len(v) && v[i].s == t; i++ {
			if v[i].same {
				ta++
			} else {
				fa++
			}
		}
		r.Points = append(r.Points, ROCPoint{
			Threshold: t, FalseAccepts: fa, TrueAccepts: ta,
			FAR: float64(fa) / float64(im), TAR: float64(ta) / float64(g),
		})
	}
	// AUC by trapezoids, in counts to stay exact: Σ Δfa·(ta_prev+ta)/2 / (g·im).
	var area float64
	for i := 1; i < len(r.Points); i++ {
		p, q := r.Points[i-1], r.Points[i]
		area += float64(q.FalseAccepts-p.FalseAccepts) * float64(p.TrueAccepts+q.TrueAccepts) / 2
	}
	r.AUC = area / (float64(g) * float64(im))
	// EER: FAR − FRR goes from −1 (first point) to +1 (last point); it crosses
	// zero once, between two consecutive points.
	best, crossed := math.Inf(1), false
	for i := 1; i < len(r.Points); i++ {
		p, q := r.Points[i-1], r.Points[i]
		dp, dq := p.FAR-(1-p.TAR), q.FAR-(1-q.TAR)
		if d := math.Abs(dq); d < best {
			best, r.EERThreshold = d, q.Threshold
		}
		if !crossed && dp < 0 && dq >= 0 {
			t := -dp / (dq - dp)
			r.EER = p.FAR + t*(q.FAR-p.FAR)
			crossed = true
		}
	}
	return r, nil
}

// OperatingPoint is the ROC point chosen for a target false-accept rate.
type OperatingPoint struct {
	// TargetFAR is the false-accept rate asked for.
	TargetFAR float64 `json:"target_far"`
	// Available is false when there are fewer than 1/TargetFAR impostor
	// pairs: the rate cannot be measured at all, and the other fields are zero.
	Available bool `json:"available"`
	// Reliable is false when fewer than 10/TargetFAR impostor pairs back it
	// (fewer than ten false accepts allowed): the point is noisy.
	Reliable bool `json:"reliable"`
	ROCPoint
}

// MinImpostorsFor returns how many impostor pairs a false-accept rate needs to
// be measured (1/far) and to be measured reliably, with at least ten false
// accepts at the target (10/far: FAR 1e-4 needs 1e5 impostor pairs).
func MinImpostorsFor(far float64) (measurable, reliable int) {
	return int(math.Ceil(1/far - 1e-9)), int(math.Ceil(10/far - 1e-9))
}

// allowedFalseAccepts is the most false accepts among im impostor pairs that
// keeps FAR ≤ far: ⌊far·im⌋ (with a tolerance for rounding, e.g. 1e-3·3000).
func allowedFalseAccepts(far float64, im int) int {
	return int(math.Floor(far*float64(im) + 1e-9))
}

// AtFAR returns the operating point with the highest TAR whose FAR is ≤ far,
// that is the lowest threshold that keeps FAR ≤ far. See OperatingPoint for
// when the impostor count does not allow the rate.
func (r *ROC) AtFAR(far float64) OperatingPoint {
	op := OperatingPoint{TargetFAR: far}
	measurable, reliable := MinImpostorsFor(far)
	if r.Impostor < measurable {
		return op
	}
	op.Available, op.Reliable = true, r.Impostor >= reliable
	// Points are sorted by non-decreasing false accepts: take the last point
	// within the allowance (counts, not rates, to avoid rounding at the edge).
	allowed := allowedFalseAccepts(far, r.Impostor)
	i, _ := slices.BinarySearchFunc(r.Points, allowed, func(p ROCPoint, a int) int {
		if p.FalseAccepts <= a {
			return -1
		}
		return 1
	})
	op.ROCPoint = r.Points[i-1] // Points[0] has FAR 0, so i ≥ 1
	if i == 1 && len(r.Points) > 1 {
		// Accept nothing: just above the top score (finite, for JSON).
		op.Threshold = math.Nextafter(r.Points[1].Threshold, math.Inf(1))
	}
	return op
}

// Accuracy is the share of pairs decided correctly at a threshold.
type Accuracy struct {
	// Threshold: pairs with score ≥ Threshold are declared the same person.
	Threshold float64 `json:"threshold"`
	// Accuracy is Correct / Pairs.
	Accuracy float64 `json:"accuracy"`
	// Correct counts the pairs decided correctly, out of Pairs.
	Correct int `json:"correct"`
	// Pairs counts the pairs decided.
	Pairs int `json:"pairs"`
}

// AccuracyAt returns the accuracy of accepting pairs with score ≥ threshold.
func AccuracyAt(scores []float64, same []bool, threshold float64) (Accuracy, error) {
	if len(scores) != len(same) {
		return Accuracy{}, fmt.Errorf("verify: %d scores but %d labels", len(scores), len(same))
	}
	if len(scores) == 0 {
		return Accuracy{}, ErrNoPairs
	}
	c := 0
	for i, s := range scores {
		if (s >= threshold) == same[i] {
			c++
		}
	}
	return Accuracy{Threshold: threshold, Accuracy: float64(c) / float64(len(scores)), Correct: c, Pairs: len(scores)}, nil
}

// BestAccuracy returns the threshold that maximises accuracy over all the
// pairs, and that accuracy (an optimistic figure: the threshold is chosen on
// the pairs it is measured on; KFold is the honest one). The threshold is the
// midpoint between the lowest accepted and the highest rejected score; among
// equally accurate thresholds the strictest is chosen, as insightface's LFW
// evaluation does (verification.py calculate_roc: argmax over ascending
// distance thresholds). The reference pipeline (docs/design.md) instead
// takes the loosest tied score itself, so its k-fold figure can differ by a pair or so
// per fold.
func BestAccuracy(scores []float64, same []bool) (Accuracy, error) {
	v, err := sortScores(scores, same, nil)
	if err != nil {
		return Accuracy{}, err
	}
	return bestSorted(v, -1), nil
}

// bestSorted sweeps the sorted scores, skipping fold skip (−1: none).
func bestSorted(v []scored, skip int32) Accuracy {
	n, im := 0, 0
	for _, x := range v {
		if x.fold == skip {
			continue
		}
		n++
		if !x.same {
			im++
		}
	}
	// Accept nothing: every impostor is correct.
	correct, best := im, im
	bestIdx := -1 // index in v of the lowest accepted score; −1 = accept nothing
	for i := 0; i < len(v); {
		t := v[i].s
		for ; i < len(v) && v[i].s == t; i++ {
			if v[i].fold == skip {
				continue
			}
			if v[i].same {
				correct++
			} else {
				correct--
			}
		}
		if correct > best {
			best, bestIdx = correct, i-1
		}
	}
	a := Accuracy{Correct: best, Pairs: n}
	if n > 0 {
		a.Accuracy = float64(best) / float64(n)
	}
	// Threshold: midpoint between the lowest accepted score and the next
	// lower score of a pair in the set (or that score itself at the bottom).
	lo := -1
	for j := bestIdx + 1; j < len(v); j++ {
		if v[j].fold != skip {
			lo = j
			break
		}
	}
	switch {
	case bestIdx < 0 && lo < 0:
		a.Threshold = 0
	case bestIdx < 0:
		a.Threshold = math.Nextafter(v[lo].s, math.Inf(1))
	case lo < 0:
		a.Threshold = v[bestIdx].s
	default:
		a.Threshold = v[bestIdx].s/2 + v[lo].s/2
		if a.Threshold <= v[lo].s { // adjacent floats
			a.Threshold = v[bestIdx].s
		}
	}
	return a
}

// FoldResult is the outcome of one fold of the k-fold protocol.
type FoldResult struct {
	// Fold is the fold's index, from 0.
	Fold int `json:"fold"`
	// Threshold is the one chosen on the other folds.
	Threshold float64 `json:"threshold"`
	// Accuracy is measured on this fold alone.
	Accuracy float64 `json:"accuracy"`
	// Correct counts the fold's pairs decided correctly, out of Pairs.
	Correct int `json:"correct"`
	// Pairs counts the fold's pairs.
	Pairs int `json:"pairs"`
}

// KFoldResult is the LFW-style k-fold accuracy: the mean and standard deviation
// (population, as in the LFW evaluation code: np.std) of the per-fold accuracies.
type KFoldResult struct {
	// Folds holds each fold's threshold and accuracy.
	Folds []FoldResult `json:"folds"`
	// Mean and Std are the mean and population standard deviation of the
	// per-fold accuracies.
	Mean float64 `json:"mean"`
	// Std is the population standard deviation (np.std) of the accuracies.
	Std float64 `json:"std"`
	// MeanThreshold is the mean of the chosen thresholds.
	MeanThreshold float64 `json:"mean_threshold"`
}

// KFold runs the LFW protocol (docs/protocols.md): for each fold, choose the
// threshold maximising accuracy on the other k−1 folds (BestAccuracy's rule)
// and report accuracy on the fold; then mean ± std over folds. folds[i] in
// [0,k) gives the fold of pair i; nil assigns folds with AssignFolds. It sorts
// once: O(n log n + k·n).
func KFold(scores []float64, same []bool, folds []int, k int) (KFoldResult, error) {
	folds, err := checkFolds(same, folds, k)
	if err != nil {
		return KFoldResult{}, err
	}
	v, err := sortScores(scores, same, folds)
	if err != nil {
		return KFoldResult{}, err
	}
	return kfoldSorted(v, k)
}

// checkFolds fills in nil folds and checks their range.
func checkFolds(same []bool, folds []int, k int) ([]int, error) {
	if k < 2 {
		return nil, fmt.Errorf("verify: k-fold needs k ≥ 2, got %d", k)
	}
	if folds == nil {
		return AssignFolds(same, k), nil
	}
	for i, f := range folds {
		if f < 0 || f >= k {
			return nil, fmt.Errorf("verify: pair %d has fold %d, want 0..%d", i, f, k-1)
		}
	}
	return folds, nil
}

func kfoldSorted(v []scored, k int) (KFoldResult, error) {
	res := KFoldResult{}
	var sum, sumT float64
	for f := range k {
		a := bestSorted(v, int32(f))
		fr := FoldResult{Fold: f, Threshold: a.Threshold}
		for _, x := range v {
			if x.fold != int32(f) {
				continue
			}
			fr.Pairs++
			if (x.s >= a.Threshold) == x.same {
				fr.Correct++
			}
		}
		if fr.Pairs == 0 {
			return KFoldResult{}, fmt.Errorf("verify: fold %d has no pairs", f)
		}
		fr.Accuracy = float64(fr.Correct) / float64(fr.Pairs)
		res.Folds = append(res.Folds, fr)
		sum += fr.Accuracy
		sumT += fr.Threshold
	}
	res.Mean = sum / float64(k)
	res.MeanThreshold = sumT / float64(k)
	var ss float64
	for _, fr := range res.Folds {
		ss += (fr.Accuracy - res.Mean) * (fr.Accuracy - res.Mean)
	}
	res.Std = math.Sqrt(ss / float64(k))
	return res, nil
}

// AssignFolds gives each pair a fold in [0,k), stratified: the i-th genuine
// pair goes to fold i mod k, and likewise the impostor pairs, so every fold
// holds both classes in the same proportion. Deterministic.
func AssignFolds(same []bool, k int) []int {
	folds := make([]int, len(same))
	g, im := 0, 0
	for i, s := range same {
		if s {
			folds[i] = g % k
			g++
		} else {
			folds[i] = im % k
			im++
		}
	}
	return folds
}

// Calibration is a threshold chosen for a target false-accept rate, with the
// counts it rests on.
type Calibration struct {
	// TargetFAR is the false-accept rate asked for.
	TargetFAR float64 `json:"target_far"`
	// Threshold: accept pairs with score ≥ Threshold. It is the lowest observed
	// score at which the measured FAR is still ≤ TargetFAR.
	Threshold float64 `json:"threshold"`
	// FAR and TAR are measured on the given pairs at Threshold.
	FAR float64 `json:"far"`
	// TAR is the true-accept rate at Threshold (0 without genuine pairs).
	TAR float64 `json:"tar"`
	// FalseAccepts counts the impostor pairs accepted at Threshold.
	FalseAccepts int `json:"false_accepts"`
	// TrueAccepts counts the genuine pairs accepted at Threshold.
	TrueAccepts int `json:"true_accepts"`
	// Genuine counts the same-person pairs the calibration rests on.
	Genuine int `json:"genuine"`
	// Impostor counts the different-person pairs it rests on.
	Impostor int `json:"impostor"`
	// NeededImpostors is how many impostor pairs would make the estimate
	// reliable (10/TargetFAR, ten false accepts at the target).
	NeededImpostors int `json:"needed_impostors"`
	// Warning is non-empty when the impostor pairs are too few for the rate.
	Warning string `json:"warning,omitempty"`
	// Skipped counts pairs left out because they could not be scored
	// (PairSet.Calibrate).
	Skipped int `json:"skipped,omitempty"`
}

// Calibrate chooses the threshold at which the false-accept rate on the given
// impostor pairs equals (does not exceed) targetFAR, and reports the counts it
// rests on, with a warning when there are fewer than 10/targetFAR impostor
// pairs (FAR 1e-4 needs ≳ 1e5). With fewer than 1/targetFAR impostors no
// impostor may be accepted at all, so the threshold sits just above the
// highest impostor score. Genuine pairs are optional (TAR is then 0).
func Calibrate(scores []float64, same []bool, targetFAR float64) (Calibration, error) {
	if !(targetFAR > 0 && targetFAR <= 1) {
		return Calibration{}, fmt.Errorf("verify: target FAR %g is not in (0, 1]", targetFAR)
	}
	v, err := sortScores(scores, same, nil)
	if err != nil {
		return Calibration{}, err
	}
	c := Calibration{TargetFAR: targetFAR}
	for _, x := range v {
		if x.same {
			c.Genuine++
		} else {
			c.Impostor++
		}
	}
	if c.Impostor == 0 {
		return Calibration{}, ErrNoImpostors
	}
	measurable, reliable := MinImpostorsFor(targetFAR)
	c.NeededImpostors = reliable
	allowed := allowedFalseAccepts(targetFAR, c.Impostor)
	// Walk distinct scores from the top while false accepts stay ≤ allowed.
	ta, fa := 0, 0
	c.Threshold = math.Inf(1)
	for i := 0; i < len(v); {
		t := v[i].s
		dt, df := 0, 0
		j := i
		for ; j < len(v) && v[j].s == t; j++ {
			if v[j].same {
				dt++
			} else {
				df++
			}
		}
		if fa+df > allowed {
			break
		}
		ta, fa, c.Threshold, i = ta+dt, fa+df, t, j
	}
	if math.IsInf(c.Threshold, 1) {
		// Even the top score is an impostor at the limit: accept nothing
		// observed, just above the highest score.
		c.Threshold = math.Nextafter(v[0].s, math.Inf(1))
	}
	c.TrueAccepts, c.FalseAccepts = ta, fa
	c.FAR = float64(fa) / float64(c.Impostor)
	if c.Genuine > 0 {
		c.TAR = float64(ta) / float64(c.Genuine)
	}
	switch {
	case c.Impostor < measurable:
		c.Warning = fmt.Sprintf("only %d impostor pairs: FAR %g cannot be measured (needs ≥ %d, ≳ %d for a reliable estimate); the threshold rejects every impostor seen", c.Impostor, targetFAR, measurable, reliable)
	case c.Impostor < reliable:
		c.Warning = fmt.Sprintf("only %d impostor pairs: FAR %g rests on %d allowed false accepts; ≳ %d impostor pairs are needed for a reliable estimate", c.Impostor, targetFAR, allowed, reliable)
	}
	return c, nil
}

// Evaluation gathers the standard verification metrics of a set of labelled
// scores (docs/protocols.md).
type Evaluation struct {
	// Pairs counts the scored pairs.
	Pairs int `json:"pairs"`
	// Genuine counts the same-person pairs among them.
	Genuine int `json:"genuine"`
	// Impostor counts the different-person pairs among them.
	Impostor int `json:"impostor"`
	// Skipped counts pairs left out because they could not be scored
	// (PairSet.Evaluate); Pairs does not include them.
	Skipped int `json:"skipped,omitempty"`
	// Rejected counts pairs that could not be scored and were decided
	// "different person" (NoFaceReject); Pairs includes them. It is left out
	// of JSON, whose documents (facever eval --json) count the photos
	// without a face instead.
	Rejected int `json:"-"`
	// ROC holds the curve, AUC and EER.
	ROC *ROC `json:"roc"`
	// Best is the single best threshold over all pairs (optimistic).
	Best Accuracy `json:"best"`
	// KFold is the k-fold protocol result.
	KFold KFoldResult `json:"kfold"`
	// TARAtFAR holds one operating point per StandardFARs entry.
	TARAtFAR []OperatingPoint `json:"tar_at_far"`
}

// Evaluate computes ROC (AUC, EER), TAR at StandardFARs, the best-threshold
// accuracy and the k-fold accuracy. folds may be nil (see KFold).
func Evaluate(scores []float64, same []bool, folds []int, k int) (*Evaluation, error) {
	folds, err := checkFolds(same, folds, k)
	if err != nil {
		return nil, err
	}
	v, err := sortScores(scores, same, folds)
	if err != nil {
		return nil, err
	}
	roc, err := rocSorted(v)
	if err != nil {
		return nil, err
	}
	e := &Evaluation{Pairs: len(scores), Genuine: roc.Genuine, Impostor: roc.Impostor, ROC: roc}
	e.Best = bestSorted(v, -1)
	for _, far := range StandardFARs {
		e.TARAtFAR = append(e.TARAtFAR, roc.AtFAR(far))
	}
	if e.KFold, err = kfoldSorted(v, k); err != nil {
		return nil, err
	}
	return e, nil
}
