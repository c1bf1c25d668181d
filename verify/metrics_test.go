package verify

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func approx(a, b float64) bool { return math.Abs(a-b) < 1e-12 }

// tiny is the hand-computed case used below. Sorted by score:
// 0.9 G, 0.8 G, 0.7 I, 0.4 G, 0.3 I, 0.1 I (3 genuine, 3 impostor).
var (
	tinyScores = []float64{0.1, 0.9, 0.3, 0.8, 0.7, 0.4}
	tinySame   = []bool{false, true, false, true, false, true}
)

func TestROCTiny(t *testing.T) {
	r, err := ComputeROC(tinyScores, tinySame)
	if err != nil {
		t.Fatal(err)
	}
	want := []ROCPoint{
		{math.Inf(1), 0, 0, 0, 0},
		{0.9, 0, 1.0 / 3, 0, 1},
		{0.8, 0, 2.0 / 3, 0, 2},
		{0.7, 1.0 / 3, 2.0 / 3, 1, 2},
		{0.4, 1.0 / 3, 1, 1, 3},
		{0.3, 2.0 / 3, 1, 2, 3},
		{0.1, 1, 1, 3, 3},
	}
	if len(r.Points) != len(want) {
		t.Fatalf("got %d points, want %d: %+v", len(r.Points), len(want), r.Points)
	}
	for i, p := range r.Points {
		w := want[i]
		if p.Threshold != w.Threshold || !approx(p.FAR, w.FAR) || !approx(p.TAR, w.TAR) || p.FalseAccepts != w.FalseAccepts || p.TrueAccepts != w.TrueAccepts {
			t.Errorf("point %d = %+v, want %+v", i, p, w)
		}
	}
	// 8 of the 9 (genuine, impostor) pairs are ordered correctly.
	if !approx(r.AUC, 8.0/9) {
		t.Errorf("AUC = %v, want 8/9", r.AUC)
	}
	// At 0.7: FAR = 1/3 = FRR.
	if !approx(r.EER, 1.0/3) || r.EERThreshold != 0.7 {
		t.Errorf("EER = %v at %v, want 1/3 at 0.7", r.EER, r.EERThreshold)
	}
}

func TestAtFARTiny(t *testing.T) {
	r, err := ComputeROC(tinyScores, tinySame)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		far                 float64
		available, reliable bool
		threshold, tar      float64
	}{
		{0.1, false, false, 0, 0},      // 3 impostors < 1/0.1
		{0.34, true, false, 0.4, 1},    // one false accept allowed
		{1.0 / 3, true, false, 0.4, 1}, // exactly one: counts, not rounded rates
		{0.5, true, false, 0.4, 1},
		{0.99, true, false, 0.3, 1}, // two false accepts allowed
		{1, true, false, 0.1, 1},
	}
	for _, tc := range tests {
		op := r.AtFAR(tc.far)
		if op.Available != tc.available || op.Reliable != tc.reliable || op.Threshold != tc.threshold || !approx(op.TAR, tc.tar) {
			t.Errorf("AtFAR(%v) = %+v, want available %v reliable %v threshold %v TAR %v", tc.far, op, tc.available, tc.reliable, tc.threshold, tc.tar)
		}
	}
}

func TestAccuracyTiny(t *testing.T) {
	a, err := BestAccuracy(tinyScores, tinySame)
	if err != nil {
		t.Fatal(err)
	}
	// ≥ 0.8 and ≥ 0.4 both give 5/6; the strictest wins, midway to 0.7.
	if a.Correct != 5 || a.Pairs != 6 || !approx(a.Threshold, 0.75) {
		t.Errorf("BestAccuracy = %+v, want 5/6 at 0.75", a)
	}
	b, _ := AccuracyAt(tinyScores, tinySame, 0.75)
	if b.Correct != 5 {
		t.Errorf("AccuracyAt(0.75) = %+v", b)
	}
	// All genuine: accept everything, threshold at the lowest score.
	a, _ = BestAccuracy([]float64{0.2, 0.5}, []bool{true, true})
	if a.Correct != 2 || a.Threshold != 0.2 {
		t.Errorf("all genuine: %+v", a)
	}
	// All impostor: accept nothing, threshold just above the top.
	a, _ = BestAccuracy([]float64{0.2, 0.5}, []bool{false, false})
	if a.Correct != 2 || !(a.Threshold > 0.5) {
		t.Errorf("all impostor: %+v", a)
	}
}

func TestCalibrateTiny(t *testing.T) {
	tests := []struct {
		far       float64
		threshold float64
		fa, ta    int
		warn      bool
	}{
		{0.1, 0.8, 0, 2, true},  // not measurable: reject every impostor
		{0.34, 0.4, 1, 3, true}, // measurable, not reliable
		{1, 0.1, 3, 3, true},    // 3 < 10 impostors
	}
	for _, tc := range tests {
		c, err := Calibrate(tinyScores, tinySame, tc.far)
		if err != nil {
			t.Fatal(err)
		}
		if c.Threshold != tc.threshold || c.FalseAccepts != tc.fa || c.TrueAccepts != tc.ta || (c.Warning != "") != tc.warn || c.Genuine != 3 || c.Impostor != 3 {
			t.Errorf("Calibrate(%v) = %+v", tc.far, c)
		}
	}
	// The top score is an impostor: threshold above it, finite for JSON.
	r, _ := ComputeROC([]float64{0.9, 0.9, 0.5}, []bool{false, false, true}) // tied top impostors
	if op := r.AtFAR(0.5); !op.Available || op.TrueAccepts != 0 || !(op.Threshold > 0.9) || math.IsInf(op.Threshold, 0) {
		t.Errorf("AtFAR with a top impostor: %+v", op)
	}
	if _, err := json.Marshal(r.AtFAR(0.5)); err != nil {
		t.Error(err)
	}
	c, err := Calibrate([]float64{0.9, 0.5}, []bool{false, true}, 0.01)
	if err != nil || !(c.Threshold > 0.9) || c.FalseAccepts != 0 || c.TrueAccepts != 0 {
		t.Errorf("top impostor: %+v %v", c, err)
	}
	// Enough impostors: no warning.
	scores := make([]float64, 1000)
	same := make([]bool, 1000)
	for i := range scores {
		scores[i] = float64(i)
	}
	c, err = Calibrate(scores, same, 0.01)
	if err != nil || c.Warning != "" || c.FalseAccepts != 10 || c.Threshold != 990 {
		t.Errorf("1000 impostors at 1e-2: %+v %v", c, err)
	}
	for _, bad := range []float64{0, -1, 2, math.NaN()} {
		if _, err := Calibrate(tinyScores, tinySame, bad); err == nil {
			t.Errorf("Calibrate(far %v) accepted", bad)
		}
	}
	if _, err := Calibrate([]float64{1}, []bool{true}, 0.1); !errors.Is(err, ErrNoImpostors) {
		t.Errorf("no impostors: %v", err)
	}
}

func TestMetricErrors(t *testing.T) {
	if _, err := ComputeROC(nil, nil); !errors.Is(err, ErrNoPairs) {
		t.Errorf("empty: %v", err)
	}
	if _, err := ComputeROC([]float64{1, 2}, []bool{true}); err == nil {
		t.Error("length mismatch accepted")
	}
	for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if _, err := ComputeROC([]float64{1, bad}, []bool{true, false}); err == nil {
			t.Errorf("score %v accepted", bad)
		}
	}
	if _, err := ComputeROC([]float64{1, 2}, []bool{true, true}); !errors.Is(err, ErrNoImpostors) {
		t.Errorf("no impostors: %v", err)
	}
	if _, err := ComputeROC([]float64{1, 2}, []bool{false, false}); !errors.Is(err, ErrNoGenuine) {
		t.Errorf("no genuine: %v", err)
	}
	if _, err := KFold(tinyScores, tinySame, nil, 1); err == nil {
		t.Error("k = 1 accepted")
	}
	if _, err := KFold(tinyScores, tinySame, []int{0, 0, 0, 0, 0, 5}, 2); err == nil {
		t.Error("fold out of range accepted")
	}
	if _, err := KFold(tinyScores, tinySame, []int{0, 0, 0, 0, 0, 0}, 2); err == nil {
		t.Error("empty fold accepted")
	}
}

// randomCase draws n labelled scores, quantised so that ties occur.
func randomCase(rng *rand.Rand, n int, levels int) ([]float64, []bool) {
	scores := make([]float64, n)
	same := make([]bool, n)
	for i := range scores {
		same[i] = rng.IntN(2) == 0
		x := rng.NormFloat64()
		if same[i] {
			x += 1.5
		}
		scores[i] = math.Round(x*float64(levels)) / float64(levels)
	}
	same[0], same[1] = true, false
	return scores, same
}

// bruteCounts counts accepts at threshold t.
func bruteCounts(scores []float64, same []bool, t float64) (ta, fa, g, im int) {
	for i, s := range scores {
		if same[i] {
			g++
			if s >= t {
				ta++
			}
		} else {
			im++
			if s >= t {
				fa++
			}
		}
	}
	return
}

func candidates(scores []float64) []float64 {
	c := append([]float64{math.Inf(1)}, scores...)
	return c
}

func TestMetricsBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 40 {
		n := 2 + rng.IntN(300)
		scores, same := randomCase(rng, n, 1+rng.IntN(20))
		r, err := ComputeROC(scores, same)
		if err != nil {
			t.Fatal(err)
		}
		// AUC = P(g > i) + ½ P(g = i), by the double loop.
		var num float64
		for i := range scores {
			for j := range scores {
				if same[i] && !same[j] {
					switch {
					case scores[i] > scores[j]:
						num++
					case scores[i] == scores[j]:
						num += 0.5
					}
				}
			}
		}
		if want := num / float64(r.Genuine*r.Impostor); math.Abs(r.AUC-want) > 1e-12 {
			t.Fatalf("trial %d: AUC %v, brute %v", trial, r.AUC, want)
		}
		// Every point matches brute counting at its threshold.
		for _, p := range r.Points {
			ta, fa, _, _ := bruteCounts(scores, same, p.Threshold)
			if ta != p.TrueAccepts || fa != p.FalseAccepts {
				t.Fatalf("trial %d: point %+v, brute ta %d fa %d", trial, p, ta, fa)
			}
		}
		// EER bounds: max_t min(FAR,FRR) ≤ EER ≤ min_t max(FAR,FRR).
		lo, hi := 0.0, 1.0
		for _, th := range candidates(scores) {
			ta, fa, g, im := bruteCounts(scores, same, th)
			far, frr := float64(fa)/float64(im), 1-float64(ta)/float64(g)
			lo = math.Max(lo, math.Min(far, frr))
			hi = math.Min(hi, math.Max(far, frr))
		}
		if r.EER < lo-1e-12 || r.EER > hi+1e-12 {
			t.Fatalf("trial %d: EER %v outside [%v, %v]", trial, r.EER, lo, hi)
		}
		// TAR@FAR: the best TAR among thresholds with FAR ≤ target.
		for _, far := range []float64{0.5, 0.1, 0.05, 0.01} {
			op := r.AtFAR(far)
			if !op.Available {
				if m, _ := MinImpostorsFor(far); r.Impostor >= m {
					t.Fatalf("trial %d: FAR %v unavailable with %d impostors", trial, far, r.Impostor)
				}
				continue
			}
			best := -1
			for _, th := range candidates(scores) {
				ta, fa, _, im := bruteCounts(scores, same, th)
				if fa <= int(far*float64(im)+1e-9) && ta > best {
					best = ta
				}
			}
			if op.TrueAccepts != best {
				t.Fatalf("trial %d: AtFAR(%v) = %+v, brute true accepts %d", trial, far, op, best)
			}
			c, err := Calibrate(scores, same, far)
			if err != nil || c.TrueAccepts != best || c.Threshold != op.Threshold {
				t.Fatalf("trial %d: Calibrate(%v) = %+v %v, AtFAR %+v", trial, far, c, err, op)
			}
		}
		// Best accuracy: the maximum over all thresholds, achieved at the
		// returned threshold.
		a, err := BestAccuracy(scores, same)
		if err != nil {
			t.Fatal(err)
		}
		best := 0
		for _, th := range candidates(scores) {
			ta, fa, _, im := bruteCounts(scores, same, th)
			best = max(best, ta+im-fa)
		}
		at, _ := AccuracyAt(scores, same, a.Threshold)
		if a.Correct != best || at.Correct != best {
			t.Fatalf("trial %d: best accuracy %+v (at threshold: %d), brute %d", trial, a, at.Correct, best)
		}
	}
}

func TestKFoldBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := range 20 {
		k := 2 + rng.IntN(9)
		n := 4*k + rng.IntN(200)
		scores, same := randomCase(rng, n, 1+rng.IntN(10))
		folds := make([]int, n)
		for i := range folds {
			folds[i] = i % k
		}
		res, err := KFold(scores, same, folds, k)
		if err != nil {
			t.Fatal(err)
		}
		var mean float64
		for f, fr := range res.Folds {
			var trS, teS []float64
			var trL, teL []bool
			for i := range scores {
				if folds[i] == f {
					teS, teL = append(teS, scores[i]), append(teL, same[i])
				} else {
					trS, trL = append(trS, scores[i]), append(trL, same[i])
				}
			}
			// The threshold maximises training accuracy...
			best := 0
			for _, th := range candidates(trS) {
				a, _ := AccuracyAt(trS, trL, th)
				best = max(best, a.Correct)
			}
			tr, _ := AccuracyAt(trS, trL, fr.Threshold)
			if tr.Correct != best {
				t.Fatalf("trial %d fold %d: threshold %v gives %d on training folds, best %d", trial, f, fr.Threshold, tr.Correct, best)
			}
			// ...and the accuracy is measured on the held-out fold.
			te, _ := AccuracyAt(teS, teL, fr.Threshold)
			if te.Correct != fr.Correct || te.Pairs != fr.Pairs {
				t.Fatalf("trial %d fold %d: %+v, brute %+v", trial, f, fr, te)
			}
			mean += te.Accuracy / float64(k)
		}
		if math.Abs(mean-res.Mean) > 1e-12 {
			t.Fatalf("trial %d: mean %v, brute %v", trial, res.Mean, mean)
		}
	}
}

func TestKFoldSeparable(t *testing.T) {
	// Perfectly separable scores: every fold is 100 %, std 0.
	var scores []float64
	var same []bool
	for i := range 100 {
		scores = append(scores, 0.5+float64(i)/1000, -0.5+float64(i)/1000)
		same = append(same, true, false)
	}
	res, err := KFold(scores, same, nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	if res.Mean != 1 || res.Std != 0 || len(res.Folds) != 10 {
		t.Errorf("separable: %+v", res)
	}
	for _, fr := range res.Folds {
		if fr.Pairs != 20 {
			t.Errorf("fold %d has %d pairs, want 20 (stratified)", fr.Fold, fr.Pairs)
		}
	}
}

func TestAssignFolds(t *testing.T) {
	same := []bool{true, true, true, false, false, true, false}
	got := AssignFolds(same, 2)
	want := []int{0, 1, 0, 0, 1, 1, 0}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("AssignFolds = %v, want %v", got, want)
		}
	}
}

func TestEvaluate(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	scores, same := randomCase(rng, 6000, 1000)
	e, err := Evaluate(scores, same, nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	if e.Pairs != 6000 || e.Genuine+e.Impostor != 6000 || len(e.TARAtFAR) != 3 || len(e.KFold.Folds) != 10 {
		t.Fatalf("Evaluate: %+v", e)
	}
	// ~3000 impostors: 1e-2 and 1e-3 measurable, 1e-4 not; only 1e-2 reliable.
	if !e.TARAtFAR[0].Available || !e.TARAtFAR[0].Reliable || !e.TARAtFAR[1].Available || e.TARAtFAR[1].Reliable || e.TARAtFAR[2].Available {
		t.Errorf("TAR@FAR availability: %+v", e.TARAtFAR)
	}
	// d' = 1.5 between two unit normals: AUC = Φ(1.5/√2) ≈ 0.856.
	if math.Abs(e.ROC.AUC-0.856) > 0.02 {
		t.Errorf("AUC = %v, want ≈ 0.856", e.ROC.AUC)
	}
	if b, err := json.Marshal(e); err != nil || !strings.Contains(string(b), `"auc"`) || strings.Contains(string(b), `"points"`) {
		t.Errorf("JSON: %s %v", b, err)
	}
	if e.KFold.Mean > e.Best.Accuracy+1e-12 {
		t.Errorf("k-fold %v above best-threshold accuracy %v", e.KFold.Mean, e.Best.Accuracy)
	}
}

func BenchmarkEvaluate1M(b *testing.B) {
	rng := rand.New(rand.NewPCG(7, 8))
	scores, same := randomCase(rng, 1_000_000, 1_000_000)
	b.ResetTimer()
	for b.Loop() {
		if _, err := Evaluate(scores, same, nil, 10); err != nil {
			b.Fatal(err)
		}
	}
}
