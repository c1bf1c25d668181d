package margin

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// metricLosses returns every pair and proxy loss, with hyper-parameters that
// keep all their terms active on small random batches.
func metricLosses(t testing.TB) map[string]Loss {
	t.Helper()
	must := mustLoss(t)
	return map[string]Loss{
		"contrastive":       must(NewContrastive(0.8, 0.1)),
		"triplet-all":       must(NewTriplet(0.5, MineAll)),
		"triplet-hard":      must(NewTriplet(0.5, MineHard)),
		"triplet-semi-hard": must(NewTriplet(0.5, MineSemiHard)),
		"npair-mc":          must(NewNPair(NPairMC)),
		"npair-ovo":         must(NewNPair(NPairOVO)),
		"lifted":            must(NewLiftedStructure(1)),
		"multisimilarity":   must(NewMultiSimilarity(2, 10, 0.3)),
		"multisimilarity-mined": func() Loss {
			h, err := NewMultiSimilarity(2, 10, 0.3)
			if err == nil {
				h, err = h.WithMining(0.3)
			}
			return must(h, err)
		}(),
		"proxynca":           must(NewProxyNCA(3)),
		"proxyanchor":        must(NewProxyAnchor(8, 0.1)),
		"softtriple":         must(NewSoftTriple(3, 0.1, 5, 0.01, 0.2)),
		"softtriple-k1":      must(NewSoftTriple(1, 0.1, 5, 0.01, 0.2)),
		"softtriple-default": must(NewSoftTriple(DefaultSoftTripleK, DefaultSoftTripleGamma, DefaultSoftTripleLambda, DefaultSoftTripleDelta, DefaultSoftTripleTau)),
	}
}

// weightsFor returns random weights of the shape h reads for c classes (nil
// for the pair losses).
func weightsFor(r *rand.Rand, h Loss, c, d int) [][]float64 {
	rows := WeightRows(h, c)
	if rows == 0 {
		return nil
	}
	return randMat(r, rows, d, 1)
}

// TestMetricGradientFiniteDifference checks every pair and proxy loss's
// analytic gradients with respect to x and the proxies against central
// differences of its float64 loss, on a P×K batch (3 identities × 2–3
// photos) of 5-dimensional features.
func TestMetricGradientFiniteDifference(t *testing.T) {
	const d, c = 5, 4
	labels := []int{0, 0, 1, 1, 2, 2, 0, 1}
	for name, head := range metricLosses(t) {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(3, 4))
			x, w := randMat(r, len(labels), d, 1), weightsFor(r, head, c, d)
			loss, gx, gw, err := Evaluate(head, x, w, labels)
			if err != nil {
				t.Fatal(err)
			}
			if math.IsNaN(loss) || loss == 0 {
				t.Fatalf("loss %v: the test batch should make every term active", loss)
			}
			if (w == nil) != (gw == nil) {
				t.Fatalf("w nil %v, gradW nil %v", w == nil, gw == nil)
			}
			nonzero := checkFiniteDifferences(t, head, x, w, labels, gx, gw)
			if nonzero == 0 {
				t.Error("every gradient is zero")
			}
		})
	}
}

// TestDegenerateBatches pins down what each loss does on batches without a
// positive pair and on batches of a single identity: a defined value, or an
// error wrapping ErrDegenerateBatch that says how to draw batches.
func TestDegenerateBatches(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	x := randMat(r, 4, 3, 1)
	noPositive := []int{0, 1, 2, 3}
	oneClass := []int{1, 1, 1, 1}
	// Which batches each loss refuses.
	refuses := map[string][2]bool{ // {no positive pair, one identity}
		"contrastive": {false, false}, "triplet-all": {true, true}, "triplet-hard": {true, true},
		"triplet-semi-hard": {true, true}, "npair-mc": {true, true}, "npair-ovo": {true, true},
		"lifted": {true, true}, "multisimilarity": {false, false}, "multisimilarity-mined": {false, false},
		"proxynca": {false, false}, "proxyanchor": {false, false},
		"softtriple": {false, false}, "softtriple-k1": {false, false}, "softtriple-default": {false, false},
	}
	for name, head := range metricLosses(t) {
		for k, labels := range [][]int{noPositive, oneClass} {
			w := weightsFor(r, head, 4, 3)
			loss, gx, _, err := Evaluate(head, x, w, labels)
			if refuses[name][k] {
				if !errors.Is(err, ErrDegenerateBatch) || !strings.Contains(err.Error(), "P ≥ 2 identities × K ≥ 2 photos") {
					t.Errorf("%s on %v: error %v, want ErrDegenerateBatch with advice", name, labels, err)
				}
				continue
			}
			if err != nil || math.IsNaN(loss) || math.IsInf(loss, 0) || gx == nil {
				t.Errorf("%s on %v: loss %v, error %v; want a defined value", name, labels, loss, err)
			}
		}
	}
	// A single sample has no pair at all.
	for _, name := range []string{"contrastive", "multisimilarity"} {
		if _, _, _, err := Evaluate(metricLosses(t)[name], x[:1], nil, []int{0}); !errors.Is(err, ErrDegenerateBatch) {
			t.Errorf("%s on one sample: error %v", name, err)
		}
	}
}

// TestMetricBadArguments checks the constructors' and Evaluate's refusals.
func TestMetricBadArguments(t *testing.T) {
	bad := []func() (Loss, error){
		func() (Loss, error) { return NewContrastive(1.5, 0.5) },
		func() (Loss, error) { return NewContrastive(math.NaN(), 0.5) },
		func() (Loss, error) { return NewTriplet(-0.1, MineAll) },
		func() (Loss, error) { return NewTriplet(0.1, Mining(7)) },
		func() (Loss, error) { return NewNPair(NPairVariant(3)) },
		func() (Loss, error) { return NewLiftedStructure(math.Inf(1)) },
		func() (Loss, error) { return NewMultiSimilarity(0, 50, 0.5) },
		func() (Loss, error) { return NewMultiSimilarity(2, 50, 2) },
		func() (Loss, error) {
			h, _ := NewMultiSimilarity(2, 50, 0.5)
			return h.WithMining(-0.1)
		},
		func() (Loss, error) { return NewProxyNCA(0) },
		func() (Loss, error) { return NewProxyAnchor(-1, 0.1) },
		func() (Loss, error) { return NewSoftTriple(0, 0.1, 20, 0.01, 0.2) },
		func() (Loss, error) { return NewSoftTriple(2, 0, 20, 0.01, 0.2) },
		func() (Loss, error) { return NewSoftTriple(2, 0.1, 20, 0.01, -1) },
	}
	for i, f := range bad {
		if _, err := f(); err == nil {
			t.Errorf("case %d: no error", i)
		}
	}
	for _, s := range []string{"", "easy", "HARD"} {
		if _, err := ParseMining(s); err == nil {
			t.Errorf("ParseMining(%q): no error", s)
		}
	}
	for _, s := range []string{"all", "hard", "semi-hard"} {
		m, err := ParseMining(s)
		if err != nil || m.String() != s {
			t.Errorf("ParseMining(%q) = %v, %v", s, m, err)
		}
	}
	for _, s := range []string{"mc", "ovo"} {
		v, err := ParseNPairVariant(s)
		if err != nil || v.String() != s {
			t.Errorf("ParseNPairVariant(%q) = %v, %v", s, v, err)
		}
	}
	if _, err := ParseNPairVariant("ovr"); err == nil {
		t.Error("ParseNPairVariant(ovr): no error")
	}
	x := [][]float64{{1, 0}, {0, 1}}
	c, _ := NewContrastive(1, 0.5)
	if _, _, _, err := Evaluate(c, x, [][]float64{{1, 0}}, []int{0, 1}); err == nil || !strings.Contains(err.Error(), "pass w = nil") {
		t.Errorf("contrastive with weights: %v", err)
	}
	st, _ := NewSoftTriple(2, 0.1, 20, 0.01, 0.2)
	if _, _, _, err := Evaluate(st, x, [][]float64{{1, 0}, {0, 1}, {1, 1}}, []int{0, 0}); err == nil {
		t.Error("softtriple with 3 centres for K=2: no error")
	}
	pn, _ := NewProxyNCA(9)
	if _, _, _, err := Evaluate(pn, x, nil, []int{0, 1}); err == nil {
		t.Error("proxynca without proxies: no error")
	}
	if _, _, _, err := Evaluate(pn, x, [][]float64{{1, 0}}, []int{0, 0}); err == nil || !strings.Contains(err.Error(), "two classes") {
		t.Errorf("proxynca with one class: %v", err)
	}
}
