package margin

import (
	"math"
	"math/rand/v2"
	"testing"
)

// polar returns the 2-d vector of norm r at angle a. The cosine of
// polar(r, a) and polar(r', b) is cos(a − b) whatever the norms, so the
// batches below carry deliberately mixed norms: the losses read cosines only.
func polar(r, a float64) []float64 { return []float64{r * math.Cos(a), r * math.Sin(a)} }

// TestMetricHandValues compares each pair and proxy loss on tiny hand-built
// batches with its paper formula, written out term by term for that batch.
// Every similarity is a cosine of two angles (or, in 3-d, of axis-aligned
// vectors), so the expected values are exact up to rounding.
func TestMetricHandValues(t *testing.T) {
	mustH := mustLoss(t)
	c, exp, log, hinge := math.Cos, math.Exp, math.Log, func(v float64) float64 { return math.Max(0, v) }
	pi := math.Pi

	// Triplet batch: labels 0 0 1 1 at angles 0, 0.5, −0.3, 0.8, so
	// S01 = c(.5), S02 = c(.3), S03 = c(.8), S12 = c(.8), S13 = c(.3), S23 = c(1.1).
	// Anchors 0 and 1: the hardest negative (cosine c(.3)) is more similar
	// than the positive (c(.5)), the semi-hard one (c(.8)) is not. Anchors 2
	// and 3: both negatives are more similar than the positive (c(1.1)), so
	// semi-hard mining falls back on the least similar one (c(.8)) while hard
	// mining takes c(.3).
	tripX := [][]float64{polar(1, 0), polar(2, 0.5), polar(0.7, -0.3), polar(1.3, 0.8)}
	tripY := []int{0, 0, 1, 1}

	// Lifted structure, m = 0.2: labels 0 0 1 1 2 1 at angles 0, 0.1, π,
	// π+0.4, 2.5, π−0.3. Sample 4 has no positive and is no anchor; anchors
	// 0 and 1 have terms below zero (their negatives all lie far away).
	const lm = 0.2
	liftX := [][]float64{polar(1, 0), polar(3, 0.1), polar(0.5, pi), polar(2, pi+0.4), polar(1, 2.5), polar(1.5, pi-0.3)}
	liftY := []int{0, 0, 1, 1, 2, 1}
	lift0 := (lm - c(0.1)) + log(exp(c(pi))+exp(c(pi+0.4))+exp(c(2.5))+exp(c(pi-0.3)))
	lift1 := (lm - c(0.1)) + log(exp(c(pi-0.1))+exp(c(pi+0.3))+exp(c(2.4))+exp(c(pi-0.4)))
	lift2 := log(exp(lm-c(0.4))+exp(lm-c(0.3))) + log(exp(c(pi))+exp(c(pi-0.1))+exp(c(pi-2.5)))
	lift3 := log(exp(lm-c(0.4))+exp(lm-c(0.7))) + log(exp(c(pi+0.4))+exp(c(pi+0.3))+exp(c(pi+0.4-2.5)))
	lift5 := log(exp(lm-c(0.3))+exp(lm-c(0.7))) + log(exp(c(pi-0.3))+exp(c(pi-0.4))+exp(c(pi-0.3-2.5)))
	if lift0 >= 0 || lift1 >= 0 || lift2 <= 0 || lift3 <= 0 || lift5 <= 0 {
		t.Fatalf("lifted batch does not exercise the hinge: %v %v %v %v %v", lift0, lift1, lift2, lift3, lift5)
	}

	// Multi-similarity, α = 2, β = 10, λ = 0.5: labels 0 0 1 2 at angles
	// 0, 0.7, 0.4, 2.0; samples 2 and 3 have no positive (log(1 + 0) = 0).
	const msA, msB, msL = 2.0, 10.0, 0.5
	ms, err := NewMultiSimilarity(msA, msB, msL)
	if err != nil {
		t.Fatal(err)
	}
	msMined, err := ms.WithMining(0.1)
	if err != nil {
		t.Fatal(err)
	}
	msPos := func(s ...float64) float64 {
		sum := 1.0
		for _, v := range s {
			sum += exp(-msA * (v - msL))
		}
		return log(sum) / msA
	}
	msNeg := func(s ...float64) float64 {
		sum := 1.0
		for _, v := range s {
			sum += exp(msB * (v - msL))
		}
		return log(sum) / msB
	}

	// SoftTriple, K = 2, γ = 0.1, λ = 5, δ = 0.01, τ = 0.2, three classes
	// with centres at angles (0, 0.6), (2.0, 2.9), (4.0, 4.3); samples at
	// 0.2 (class 0), 2.5 (class 1), 4.1 (class 2) and 1.1 (class 0).
	const stG, stL, stD, stT = 0.1, 5.0, 0.01, 0.2
	centres := [][2]float64{{0, 0.6}, {2.0, 2.9}, {4.0, 4.3}}
	relaxed := func(a float64, cl int) float64 { // S'_ic = Σ_k softmax_k(S_k/γ)·S_k
		s1, s2 := c(a-centres[cl][0]), c(a-centres[cl][1])
		return (s1*exp(s1/stG) + s2*exp(s2/stG)) / (exp(s1/stG) + exp(s2/stG))
	}
	stCE := func(a float64, y int) float64 {
		var l [3]float64
		for cl := range l {
			l[cl] = stL * relaxed(a, cl)
		}
		l[y] -= stL * stD
		return log(exp(l[0])+exp(l[1])+exp(l[2])) - l[y]
	}
	stReg := (math.Sqrt(2+1e-5-2*c(0.6)) + math.Sqrt(2+1e-5-2*c(0.9)) + math.Sqrt(2+1e-5-2*c(0.3))) / (3 * 2 * 1)

	tests := []struct {
		name   string
		head   Loss
		x, w   [][]float64
		labels []int
		want   float64
	}{
		// m_p = 0.9, m_n = 0.3; labels 0 0 1 1 at angles 0, 0.2, 1, 2:
		// (0,1) positive inside m_p, (2,3) positive outside, (0,2) and (1,2)
		// negatives above m_n, (0,3) and (1,3) below.
		{"contrastive", mustH(NewContrastive(0.9, 0.3)),
			[][]float64{polar(2, 0), polar(0.5, 0.2), polar(3, 1), polar(1.5, 2)}, nil, []int{0, 0, 1, 1},
			(hinge(0.9-c(0.2)) + hinge(c(1)-0.3) + hinge(c(2)-0.3) + hinge(c(0.8)-0.3) + hinge(c(1.8)-0.3) + hinge(0.9-c(1))) / 6},
		// Defaults m_p = 1, m_n = 0.5 in 3-d: S02 = 0 (positive), S13 = 1/√2
		// (positive), S03 = 1/√2 (negative), the other negatives orthogonal.
		{"contrastive-3d", mustH(NewContrastive(DefaultContrastivePosMargin, DefaultContrastiveNegMargin)),
			[][]float64{{2, 0, 0}, {0, 1, 0}, {0, 0, 3}, {1, 1, 0}}, nil, []int{0, 1, 0, 1},
			((1 - 0) + (1/math.Sqrt2 - 0.5) + (1 - 1/math.Sqrt2)) / 6},
		{"triplet-all", mustH(NewTriplet(0.1, MineAll)), tripX, nil, tripY,
			(hinge(c(0.3)-c(0.5)+0.1) + hinge(c(0.8)-c(0.5)+0.1) + // anchor 0, positive 1, negatives 2, 3
				hinge(c(0.8)-c(0.5)+0.1) + hinge(c(0.3)-c(0.5)+0.1) + // anchor 1, positive 0
				hinge(c(0.3)-c(1.1)+0.1) + hinge(c(0.8)-c(1.1)+0.1) + // anchor 2, positive 3, negatives 0, 1
				hinge(c(0.8)-c(1.1)+0.1) + hinge(c(0.3)-c(1.1)+0.1)) / 8}, // anchor 3, positive 2
		{"triplet-hard", mustH(NewTriplet(0.3, MineHard)), tripX, nil, tripY,
			(2*(c(0.3)-c(0.5)+0.3) + 2*(c(0.3)-c(1.1)+0.3)) / 4},
		{"triplet-semi-hard", mustH(NewTriplet(0.3, MineSemiHard)), tripX, nil, tripY,
			(2*(c(0.8)-c(0.5)+0.3) + 2*(c(0.8)-c(1.1)+0.3)) / 4},
		// Hard mining takes the least similar positive: labels 0 0 0 1 at
		// angles 0, 0.2, 0.6, 1.0; sample 3 has no positive.
		{"triplet-hard-positives", mustH(NewTriplet(0.3, MineHard)),
			[][]float64{polar(1, 0), polar(2, 0.2), polar(0.3, 0.6), polar(1, 1)}, nil, []int{0, 0, 0, 1},
			((c(1) - c(0.6) + 0.3) + (c(0.8) - c(0.4) + 0.3) + (c(0.4) - c(0.6) + 0.3)) / 3},
		// Labels 0 1 0 1: identity 0's photos are samples 0 and 2, identity 1's
		// samples 1 and 3; anchors 0, 1 with positives 2, 3.
		{"npair-mc-2x2", mustH(NewNPair(NPairMC)),
			[][]float64{polar(1, 0), polar(2, 1.2), polar(0.5, 0.3), polar(3, 1.7)}, nil, []int{0, 1, 0, 1},
			(log(1+exp(c(1.7)-c(0.3))) + log(1+exp(c(0.9)-c(0.5)))) / 2},
		{"npair-ovo-2x2", mustH(NewNPair(NPairOVO)),
			[][]float64{polar(1, 0), polar(2, 1.2), polar(0.5, 0.3), polar(3, 1.7)}, nil, []int{0, 1, 0, 1},
			(log(1+exp(c(1.7)-c(0.3))) + log(1+exp(c(0.9)-c(0.5)))) / 2},
		// Labels 2 0 1 0 2 1 at angles 0, 0.9, 2.1, 1.3, 0.4, 2.4: anchors
		// 0, 1, 2 (identities 2, 0, 1) with positives 4, 3, 5.
		{"npair-mc-3x2", mustH(NewNPair(NPairMC)),
			[][]float64{polar(1, 0), polar(2, 0.9), polar(0.5, 2.1), polar(1, 1.3), polar(4, 0.4), polar(1, 2.4)}, nil, []int{2, 0, 1, 0, 2, 1},
			(log(1+exp(c(1.3)-c(0.4))+exp(c(2.4)-c(0.4))) +
				log(1+exp(c(0.5)-c(0.4))+exp(c(1.5)-c(0.4))) +
				log(1+exp(c(1.7)-c(0.3))+exp(c(0.8)-c(0.3)))) / 3},
		{"npair-ovo-3x2", mustH(NewNPair(NPairOVO)),
			[][]float64{polar(1, 0), polar(2, 0.9), polar(0.5, 2.1), polar(1, 1.3), polar(4, 0.4), polar(1, 2.4)}, nil, []int{2, 0, 1, 0, 2, 1},
			(log(1+exp(c(1.3)-c(0.4))) + log(1+exp(c(2.4)-c(0.4))) +
				log(1+exp(c(0.5)-c(0.4))) + log(1+exp(c(1.5)-c(0.4))) +
				log(1+exp(c(1.7)-c(0.3))) + log(1+exp(c(0.8)-c(0.3)))) / 3},
		// Two rounds: labels 0 0 1 1 0 0 1 1 at angles 0, .2, 1, 1.3, 2, 2.5,
		// 3, 3.2; round 0 pairs (0,1), (2,3), round 1 pairs (4,5), (6,7).
		{"npair-mc-2x4", mustH(NewNPair(NPairMC)),
			[][]float64{polar(1, 0), polar(1, 0.2), polar(2, 1), polar(1, 1.3), polar(1, 2), polar(3, 2.5), polar(1, 3), polar(0.5, 3.2)},
			nil, []int{0, 0, 1, 1, 0, 0, 1, 1},
			(log(1+exp(c(1.3)-c(0.2))) + log(1+exp(c(0.8)-c(0.3))) + log(1+exp(c(1.2)-c(0.5))) + log(1+exp(c(0.5)-c(0.2)))) / 4},
		{"lifted", mustH(NewLiftedStructure(lm)), liftX, nil, liftY,
			(hinge(lift0) + hinge(lift1) + hinge(lift2) + hinge(lift3) + hinge(lift5)) / 5},
		{"multisimilarity", mustH(NewMultiSimilarity(msA, msB, msL)),
			[][]float64{polar(1, 0), polar(2, 0.7), polar(0.5, 0.4), polar(1, 2)}, nil, []int{0, 0, 1, 2},
			(msPos(c(0.7)) + msNeg(c(0.4), c(2)) + // sample 0
				msPos(c(0.7)) + msNeg(c(0.3), c(1.3)) + // sample 1
				msNeg(c(0.4), c(0.3), c(1.6)) + // sample 2
				msNeg(c(2), c(1.3), c(1.6))) / 4}, // sample 3
		// The same batch with the paper's mining, ε = 0.1: sample 0 keeps
		// its positive (c(.7) − ε < c(.4)) and the negative at c(.4)
		// (c(.4) + ε > c(.7)) but not the one at c(2); sample 1 likewise
		// keeps c(.3) and drops c(1.3); samples 2 and 3 have no positive and
		// contribute nothing; the mean is still over all four.
		{"multisimilarity-mined", msMined,
			[][]float64{polar(1, 0), polar(2, 0.7), polar(0.5, 0.4), polar(1, 2)}, nil, []int{0, 0, 1, 2},
			(msPos(c(0.7)) + msNeg(c(0.4)) + msPos(c(0.7)) + msNeg(c(0.3))) / 4},
		// ProxyNCA, scale 3, −d = 3(2S − 2), proxies along the three axes.
		// Sample 2 is equally similar to every proxy: log 2 with its own
		// proxy left out of the denominator.
		{"proxynca", mustH(NewProxyNCA(3)),
			[][]float64{{1, 1, 0}, {0, 3, 3 * math.Sqrt(3)}, {0.5, 0.5, 0.5}},
			[][]float64{{2, 0, 0}, {0, 0.5, 0}, {0, 0, 1}}, []int{0, 2, 1},
			((-3*(2/math.Sqrt2-2) + log(exp(3*(2/math.Sqrt2-2))+exp(3*(0-2)))) +
				(-3*(math.Sqrt(3)-2) + log(exp(3*(0-2))+exp(3*(1-2)))) +
				math.Ln2) / 3},
		// Proxy Anchor, α = 4, δ = 0.1: proxies at 0, 1.5, 3.0, samples at
		// 0.2, −0.4 (class 0) and 1.2 (class 1); class 2 is absent, so
		// |P⁺| = 2 while the negative term runs over all 3 proxies.
		{"proxyanchor", mustH(NewProxyAnchor(4, 0.1)),
			[][]float64{polar(1, 0.2), polar(2, -0.4), polar(0.5, 1.2)},
			[][]float64{polar(2, 0), polar(0.3, 1.5), polar(1, 3)}, []int{0, 0, 1},
			(log(1+exp(-4*(c(0.2)-0.1))+exp(-4*(c(0.4)-0.1)))+log(1+exp(-4*(c(0.3)-0.1))))/2 +
				(log(1+exp(4*(c(1.2)+0.1)))+
					log(1+exp(4*(c(1.3)+0.1))+exp(4*(c(1.9)+0.1)))+
					log(1+exp(4*(c(2.8)+0.1))+exp(4*(c(3.4)+0.1))+exp(4*(c(1.8)+0.1))))/3},
		{"softtriple", mustH(NewSoftTriple(2, stG, stL, stD, stT)),
			[][]float64{polar(1, 0.2), polar(2, 2.5), polar(0.5, 4.1), polar(1, 1.1)},
			[][]float64{polar(1, 0), polar(2, 0.6), polar(0.5, 2), polar(1, 2.9), polar(3, 4), polar(1, 4.3)}, []int{0, 1, 2, 0},
			(stCE(0.2, 0)+stCE(2.5, 1)+stCE(4.1, 2)+stCE(1.1, 0))/4 + stT*stReg},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			loss, gx, gw, err := Evaluate(tc.head, tc.x, tc.w, tc.labels)
			if err != nil {
				t.Fatal(err)
			}
			near(t, "loss", loss, tc.want, 1e-12)
			if len(gx) != len(tc.x) || (tc.w == nil) != (gw == nil) {
				t.Errorf("gradient shapes: %d rows of gradX for %d, gradW nil %v", len(gx), len(tc.x), gw == nil)
			}
		})
	}
}

// TestMetricZeroGradients checks that losses whose every term is inside its
// margin are exactly zero with exactly zero gradients, and that a contrastive
// batch with one active pair moves only that pair's rows, along the cosine's
// gradient.
func TestMetricZeroGradients(t *testing.T) {
	mustH := mustLoss(t)
	// Labels 0 0 1 1 at angles 0, 0.2, 2, 2.3: positives at cosine ≥ 0.95,
	// negatives at cosine < 0.
	x := [][]float64{polar(1, 0), polar(2, 0.2), polar(0.5, 2), polar(1, 2.3)}
	y := []int{0, 0, 1, 1}
	for name, h := range map[string]Loss{
		"contrastive":       mustH(NewContrastive(0.9, 0.3)),
		"triplet-all":       mustH(NewTriplet(0.1, MineAll)),
		"triplet-hard":      mustH(NewTriplet(0.1, MineHard)),
		"triplet-semi-hard": mustH(NewTriplet(0.1, MineSemiHard)),
		"lifted":            mustH(NewLiftedStructure(0.2)),
	} {
		loss, gx, _, err := Evaluate(h, x, nil, y)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if loss != 0 {
			t.Errorf("%s: loss %v, want 0", name, loss)
		}
		for i, row := range gx {
			for j, v := range row {
				if v != 0 {
					t.Errorf("%s: gradX[%d][%d] = %v, want 0", name, i, j, v)
				}
			}
		}
	}

	// m_p = 0.9, m_n = 0.5; labels 0 0 1 2 at angles 0, −0.1, 1, 3: only
	// the negative pair (0, 2) is active (cos 1 > 0.5; cos 1.1 < 0.5), so
	// L = (S02 − 0.5)/6 and dL/dx0 = (x̂2 − S02 x̂0)/(6‖x0‖), dL/dx2 likewise.
	x = [][]float64{polar(2, 0), polar(1, -0.1), polar(0.5, 1), polar(1, 3)}
	loss, gx, _, err := Evaluate(mustH(NewContrastive(0.9, 0.5)), x, nil, []int{0, 0, 1, 2})
	if err != nil {
		t.Fatal(err)
	}
	near(t, "loss", loss, (math.Cos(1)-0.5)/6, 1e-12)
	u0, u2 := polar(1, 0), polar(1, 1)
	for j := 0; j < 2; j++ {
		near(t, "dL/dx0", gx[0][j], (u2[j]-math.Cos(1)*u0[j])/(6*2), 1e-12)
		near(t, "dL/dx2", gx[2][j], (u0[j]-math.Cos(1)*u2[j])/(6*0.5), 1e-12)
		if gx[1][j] != 0 || gx[3][j] != 0 {
			t.Errorf("inactive rows have gradients %v, %v", gx[1], gx[3])
		}
	}
}

// TestMetricScaleInvariance checks that every pair and proxy loss reads
// cosines only: scaling a row of x (or of w) by s leaves the loss unchanged
// and divides that row's gradient by s.
func TestMetricScaleInvariance(t *testing.T) {
	const d, c = 5, 4
	labels := []int{0, 0, 1, 1, 2, 2, 0, 1}
	scales := map[int]float64{0: 0.2, 3: 7.5}
	for name, head := range metricLosses(t) {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(5, 6))
			x, w := randMat(r, len(labels), d, 1), weightsFor(r, head, c, d)
			loss, gx, gw, err := Evaluate(head, x, w, labels)
			if err != nil {
				t.Fatal(err)
			}
			xs, ws := clone(x), [][]float64(nil)
			if w != nil {
				ws = clone(w)
			}
			for i, s := range scales {
				for j := range xs[i] {
					xs[i][j] *= s
				}
				if ws != nil {
					for j := range ws[i] {
						ws[i][j] *= s
					}
				}
			}
			loss2, gx2, gw2, err := Evaluate(head, xs, ws, labels)
			if err != nil {
				t.Fatal(err)
			}
			near(t, "loss", loss2, loss, 1e-12)
			cmp := func(which string, g, g2 [][]float64) {
				for i := range g {
					s, ok := scales[i]
					if !ok {
						s = 1
					}
					for j := range g[i] {
						near(t, which, g2[i][j]*s, g[i][j], 1e-10)
					}
				}
			}
			cmp("gradX", gx, gx2)
			if w != nil {
				cmp("gradW", gw, gw2)
			}
		})
	}
}
