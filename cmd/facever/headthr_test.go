package main

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/facever/facever/verify"
)

// TestHeldOutThresholds calibrates a head's thresholds on synthetic held-out
// people (clusters around random unit centres): the 1:1 threshold keeps the
// impostor pairs' FAR at or under 1e-3 and accepts most genuine pairs, and
// the 1:N threshold, calibrated on half of the strangers, lets at most about
// 1 % of all strangers match someone.
func TestHeldOutThresholds(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const people, per, dim = 60, 4, 64
	unit := func(v []float32) []float32 {
		var s float64
		for _, x := range v {
			s += float64(x) * float64(x)
		}
		for i := range v {
			v[i] /= float32(math.Sqrt(s))
		}
		return v
	}
	var feats [][]float32
	var labels []int
	for p := 0; p < people; p++ {
		c := make([]float32, dim)
		for i := range c {
			c[i] = float32(rng.NormFloat64())
		}
		unit(c)
		for k := 0; k < per; k++ {
			f := make([]float32, dim)
			for i := range f {
				f[i] = c[i] + 0.08*float32(rng.NormFloat64())
			}
			feats = append(feats, unit(f))
			labels = append(labels, p)
		}
	}
	pairs := verify.HeldOutPairs(labels, 1, 100_000)
	th, err := heldOutThresholds(pairs, feats, labels)
	if err != nil {
		t.Fatal(err)
	}
	if th.Identities != people || th.VerifyFAR != 1e-3 || th.IdentifyFalseAlarm != 0.01 {
		t.Fatalf("thresholds %+v", th)
	}
	var fa, im, ga, ge int
	for k := range pairs.A {
		s := verify.Cosine(feats[pairs.A[k]], feats[pairs.B[k]])
		if pairs.Same[k] {
			ge++
			if s >= th.Verify {
				ga++
			}
		} else {
			im++
			if s >= th.Verify {
				fa++
			}
		}
	}
	if float64(fa) > 1e-3*float64(im) || float64(ga) < 0.9*float64(ge) {
		t.Errorf("verify threshold %.4f: %d of %d impostors, %d of %d genuine accepted", th.Verify, fa, im, ga, ge)
	}
	if th.Identify <= th.Verify-0.5 || th.Identify >= 1 {
		t.Errorf("identify threshold %.4f (verify %.4f)", th.Identify, th.Verify)
	}
	// Strangers are people 2, 3, 6, 7, ...: their best match among the
	// enrolled people's first photos must reach Identify for at most ~1 %.
	var strangers, matched int
	for i, l := range labels {
		if l%4 < 2 {
			continue
		}
		strangers++
		best := -1.0
		for j, m := range labels {
			if m%4 < 2 && (j == 0 || labels[j-1] != m) {
				best = max(best, verify.Cosine(feats[i], feats[j]))
			}
		}
		if best >= th.Identify {
			matched++
		}
	}
	if float64(matched) > 0.03*float64(strangers) {
		t.Errorf("identify threshold %.4f: %d of %d strangers matched", th.Identify, matched, strangers)
	}
}
