package align_test

import (
	"flag"
	"fmt"
	"go/format"
	"math"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/facever/facever/align"
)

var updateFaceLike = flag.Bool("update-facelike", false, "refit align/upright_weights.go on the quality experiment's fit half")

// faceLikeData returns the fit half's chips (normalised) and labels: 1 for
// the person's face of a real photo, 0 for the faces of a constructed bad
// one; each class weighs half in all.
func faceLikeData(samples []qSample, fit bool) (x [][]float64, y, wt []float64) {
	var pos, neg int
	for _, s := range samples {
		if s.Fit != fit {
			continue
		}
		for _, f := range s.Faces {
			// Only the bad faces the other parts let through teach
			// the classifier anything the score needs.
			if s.Kind != kindGood && align.ScoredWith(f.Q, 0, -1e9, -1e9+1).Score < faceLikeHardMin {
				continue
			}
			chips := [][]uint8{f.Chip, mirrorChip(f.Chip)} // and its mirror image
			for _, c := range chips {
				x = append(x, align.FaceChipZ(c))
				if s.Kind == kindGood {
					y = append(y, 1)
					pos++
				} else {
					y = append(y, 0)
					neg++
				}
			}
		}
	}
	for _, v := range y {
		if v == 1 {
			wt = append(wt, 0.5/float64(pos))
		} else {
			wt = append(wt, 0.5/float64(neg))
		}
	}
	return x, y, wt
}

// faceNet is the face-likeness network as fitted: features are
// standardised by mu and sd, then w1 (hidden×d, row by row), b1, tanh, w2,
// b2.
type faceNet struct {
	d, h   int
	w1     []float64
	b1, w2 []float64
	b2     float64
	mu, sd []float64
}

// logit is the network's log-odds on x (align.FaceChipZ).
func (m *faceNet) logit(x []float64) float64 {
	s := m.b2
	for k := 0; k < m.h; k++ {
		a := m.b1[k]
		row := m.w1[k*m.d : (k+1)*m.d]
		for j, v := range x {
			a += row[j] * (v - m.mu[j]) / m.sd[j]
		}
		s += m.w2[k] * math.Tanh(a)
	}
	return s
}

// folded returns the hidden layer with the standardisation folded in: row
// k of w and b[k] such that b[k] + w[k]·x is the unit's input on raw x.
func (m *faceNet) folded() (w [][]float64, b []float64) {
	for k := 0; k < m.h; k++ {
		row := make([]float64, m.d)
		bk := m.b1[k]
		for j := range row {
			row[j] = m.w1[k*m.d+j] / m.sd[j]
			bk -= row[j] * m.mu[j]
		}
		w, b = append(w, row), append(b, bk)
	}
	return w, b
}

// fitFaceNet fits a network of h tanh units minimising the weighted
// logistic loss plus lambda/2 times the squared weights (not the biases)
// by minibatch gradient descent (Adam; epochs passes over the data in
// batches of faceLikeBatch, the step falling linearly from lr to 0), from a
// fixed pseudo-random start and order: the same data give the same network.
func fitFaceNet(x [][]float64, y, wt []float64, h int, lambda float64, epochs int, lr float64) *faceNet {
	d := len(x[0])
	m := &faceNet{d: d, h: h, mu: make([]float64, d), sd: make([]float64, d)}
	for _, xi := range x {
		for j, v := range xi {
			m.mu[j] += v
		}
	}
	for j := range m.mu {
		m.mu[j] /= float64(len(x))
	}
	for _, xi := range x {
		for j, v := range xi {
			m.sd[j] += (v - m.mu[j]) * (v - m.mu[j])
		}
	}
	for j := range m.sd {
		m.sd[j] = math.Sqrt(m.sd[j]/float64(len(x))) + 1e-3
	}
	xs := make([][]float64, len(x))
	for i, xi := range x {
		xs[i] = make([]float64, d)
		for j, v := range xi {
			xs[i][j] = (v - m.mu[j]) / m.sd[j]
		}
	}
	// Parameters, one slice: w1, b1, w2, b2.
	p := make([]float64, h*d+2*h+1)
	m.w1, m.b1, m.w2 = p[:h*d], p[h*d:h*d+h], p[h*d+h:h*d+2*h]
	seed := uint64(88172645463325252) // xorshift64
	next := func() uint64 {
		seed ^= seed << 13
		seed ^= seed >> 7
		seed ^= seed << 17
		return seed
	}
	rnd := func() float64 { return float64(next()>>11)/(1<<53)*2 - 1 }
	for i := range m.w1 {
		m.w1[i] = rnd() / math.Sqrt(float64(d))
	}
	for i := range m.w2 {
		m.w2[i] = rnd() / math.Sqrt(float64(h))
	}
	g, mo, ve := make([]float64, len(p)), make([]float64, len(p)), make([]float64, len(p))
	gw1, gb1, gw2 := g[:h*d], g[h*d:h*d+h], g[h*d+h:h*d+2*h]
	hid := make([]float64, h)
	order := make([]int, len(x))
	for i := range order {
		order[i] = i
	}
	const beta1, beta2, eps = 0.9, 0.999, 1e-8
	steps := epochs * ((len(x) + faceLikeBatch - 1) / faceLikeBatch)
	it := 0
	for ep := 0; ep < epochs; ep++ {
		for i := len(order) - 1; i > 0; i-- {
			j := int(next() % uint64(i+1))
			order[i], order[j] = order[j], order[i]
		}
		for lo := 0; lo < len(order); lo += faceLikeBatch {
			batch := order[lo:min(lo+faceLikeBatch, len(order))]
			scale := float64(len(x)) / float64(len(batch))
			clear(g)
			b2 := p[len(p)-1]
			for _, i := range batch {
				xi := xs[i]
				s := b2
				for k := 0; k < h; k++ {
					a := m.b1[k]
					row := m.w1[k*d : (k+1)*d]
					for j, v := range xi {
						a += row[j] * v
					}
					hid[k] = math.Tanh(a)
					s += m.w2[k] * hid[k]
				}
				e := scale * wt[i] * (1/(1+math.Exp(-s)) - y[i])
				g[len(g)-1] += e
				for k := 0; k < h; k++ {
					gw2[k] += e * hid[k]
					da := e * m.w2[k] * (1 - hid[k]*hid[k])
					gb1[k] += da
					row := gw1[k*d : (k+1)*d]
					for j, v := range xi {
						row[j] += da * v
					}
				}
			}
			for j, v := range m.w1 {
				gw1[j] += lambda * v
			}
			for k, v := range m.w2 {
				gw2[k] += lambda * v
			}
			it++
			c1, c2 := 1-math.Pow(beta1, float64(it)), 1-math.Pow(beta2, float64(it))
			step := lr * (1 - float64(it-1)/float64(steps))
			for j, gj := range g {
				mo[j] = beta1*mo[j] + (1-beta1)*gj
				ve[j] = beta2*ve[j] + (1-beta2)*gj*gj
				p[j] -= step * (mo[j] / c1) / (math.Sqrt(ve[j]/c2) + eps)
			}
		}
	}
	m.b2 = p[len(p)-1]
	return m
}

// TestFaceLikeFit refits the face-likeness classifier on the quality
// experiment's fit half (3 johns people, LFW names A–M: see
// TestQualityExperiment) and checks that the committed weights are what
// it gives (within 0.25 in log-odds on every fit chip: the chips depend on
// the runtime's last bits); -update-facelike rewrites upright_weights.go.
func TestFaceLikeFit(t *testing.T) {
	if testing.Short() {
		t.Skip("reads the quality experiment's photos")
	}
	if !*updateFaceLike && lfwEvery() != faceLikeEvery {
		t.Skipf("the weights were fitted on every %dth LFW person: set FACEVER_QUALITY_LFW_EVERY=%d to check them", faceLikeEvery, faceLikeEvery)
	}
	good := os.Getenv("FACEVER_QGOOD")
	if good == "" {
		t.Skip("set FACEVER_QGOOD to the extra real faces (see faceLikeExtra)")
	}
	samples := loadQSamples(t, faceLikeEvery)
	x, y, wt := faceLikeData(faceLikeExtra(t, samples, good), true)
	m := fitFaceNet(x, y, wt, faceLikeHidden, faceLikeLambda, faceLikeIters, faceLikeRate)
	t.Logf("fitted on %d chips (the fit half's real faces and the bad faces scoring at least %.2f without the gate, each with its mirror image)", len(x), faceLikeHardMin)
	if *updateFaceLike {
		var sb strings.Builder
		sb.WriteString("// Code generated by TestFaceLikeFit -update-facelike; DO NOT EDIT.\n\npackage align\n\n")
		sb.WriteString("// faceHiddenW, faceHiddenB, faceOutW and faceOut are the face-likeness\n")
		fmt.Fprintf(&sb, "// classifier (upright.go): a network of %d tanh units fitted (weighted\n", faceLikeHidden)
		fmt.Fprintf(&sb, "// logistic loss, L2 %g on the weights, %d full-batch Adam steps of %g from a\n", faceLikeLambda, faceLikeIters, faceLikeRate)
		fmt.Fprintf(&sb, "// fixed start; features standardised, folded into the first layer) on %d\n", len(x))
		fmt.Fprintf(&sb, "// chips of the quality experiment's fit half (TestQualityExperiment's\n// samples, LFW's every %dth person): the person's face of real photos (johns\n", faceLikeEvery)
		sb.WriteString("// John_Salley, John_Savage and John_Schneider; LFW names A–M, every photo\n")
		sb.WriteString("// of theirs: faceLikeExtra) against the\n")
		fmt.Fprintf(&sb, "// faces of the bad crops built from them that score at least %.2f without\n", faceLikeHardMin)
		sb.WriteString("// this gate, each chip with its mirror image. Regenerate with\n")
		fmt.Fprintf(&sb, "// FACEVER_LFW=DIR FACEVER_QUALITY_LFW_EVERY=%d FACEVER_QGOOD=FILE go test\n// ./align -run TestFaceLikeFit -update-facelike.\n", faceLikeEvery)
		w, b := m.folded()
		fmt.Fprintf(&sb, "const faceOut = %.9g\n\nvar faceOutW = [%d]float32{", m.b2, m.h)
		for k, v := range m.w2 {
			if k > 0 {
				sb.WriteString(", ")
			}
			fmt.Fprintf(&sb, "%.7g", v)
		}
		fmt.Fprintf(&sb, "}\n\nvar faceHiddenB = [%d]float32{", m.h)
		for k, v := range b {
			if k > 0 {
				sb.WriteString(", ")
			}
			fmt.Fprintf(&sb, "%.7g", v)
		}
		fmt.Fprintf(&sb, "}\n\nvar faceHiddenW = [%d][faceFeatures]float32{\n", m.h)
		for _, row := range w {
			sb.WriteString("\t{")
			for j, v := range row {
				if j > 0 {
					sb.WriteString(", ")
				}
				if j%16 == 0 {
					sb.WriteString("\n\t\t")
				}
				fmt.Fprintf(&sb, "%.6g", v)
			}
			sb.WriteString(",\n\t},\n")
		}
		sb.WriteString("}\n")
		src, err := format.Source([]byte(sb.String()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile("upright_weights.go", src, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	worst := 0.0
	for _, xi := range x {
		worst = math.Max(worst, math.Abs(m.logit(xi)-align.FaceLogit(xi)))
	}
	t.Logf("committed weights against the refit: log-odds differ by %.3g at most", worst)
	if worst > 0.25 {
		t.Errorf("the committed face-likeness weights differ from the refit by up to %.3g in log-odds: run go test ./align -run TestFaceLikeFit -update-facelike", worst)
	}
}

// faceLikeExtra returns samples and the real faces of the good-only sample
// file path that samples lack (by photo): the classifier is fitted on every
// photo of the fit half's LFW people, built by
// FACEVER_QUALITY_LFW_EVERY=1 FACEVER_QUALITY_ALL_PHOTOS=1
// FACEVER_QUALITY_GOOD_ONLY=1 FACEVER_QSAMPLES=path go test ./align -run
// TestQualityExperiment (faceLikeData keeps the fit half's).
func faceLikeExtra(t *testing.T, samples []qSample, path string) []qSample {
	have := map[string]bool{}
	for _, s := range samples {
		have[s.Path] = true
	}
	out := append([]qSample(nil), samples...)
	for _, s := range readQSamples(t, path) {
		if s.Kind == kindGood && s.Set == "lfw" && !have[s.Path] {
			out = append(out, s)
		}
	}
	return out
}

// faceLikeHardMin is the score without the face-likeness gate from which
// a bad face is a training example.
var faceLikeHardMin = 0.05

func init() {
	if v := os.Getenv("FACEVER_QUALITY_HARD"); v != "" {
		fmt.Sscan(v, &faceLikeHardMin)
	}
}

// faceLikeMargin is how far above the minimum score the fit half's worst
// real face must stay (a factor).
const faceLikeMargin = 1.15

// The classifier's fit: L2 strength and gradient steps, and every how
// many LFW people the samples read.
const (
	faceLikeEvery  = 4
	faceLikeHidden = 16
	faceLikeLambda = 1e-3
	faceLikeIters  = 30 // epochs
	faceLikeRate   = 0.003
	faceLikeBatch  = 128
)

// TestQualitySweep prints, for the fit and the held-out half, the
// face-likeness of real and bad faces, and the counts kept for a grid of
// gates and minimum scores; set FACEVER_QUALITY_SWEEP=1. The fit half's
// face-likeness is cross-fitted (fitted on its people A–F, read on G–M,
// and the other way round), the held-out half's is the committed weights';
// $FACEVER_QGOOD adds the real photos of a good-only sample file.
func TestQualitySweep(t *testing.T) {
	if os.Getenv("FACEVER_QUALITY_SWEEP") == "" {
		t.Skip("set FACEVER_QUALITY_SWEEP=1")
	}
	samples := loadQSamples(t, lfwEvery())
	if g := os.Getenv("FACEVER_QGOOD"); g != "" {
		for _, s := range readQSamples(t, g) {
			if s.Set == "lfw" {
				s.Set = "lfw+"
				samples = append(samples, s)
			}
		}
	}
	fold := func(s qSample) int {
		if s.Set == "johns" {
			if s.Person == "John_Salley" {
				return 0
			}
			return 1
		}
		if strings.ToUpper(s.Person[:1]) < "G" {
			return 0
		}
		return 1
	}
	fl := make([][]float64, len(samples))
	for i, s := range samples {
		fl[i] = make([]float64, len(s.Faces))
		for j, f := range s.Faces {
			fl[i][j] = align.FaceLogit(align.FaceChipZ(f.Chip))
		}
	}
	for k := 0; k < 2; k++ {
		var tr []qSample
		for _, s := range samples {
			if s.Fit && s.Set != "lfw+" && fold(s) != k {
				tr = append(tr, s)
			}
		}
		x, y, wt := faceLikeData(tr, true)
		m := fitFaceNet(x, y, wt, faceLikeHidden, faceLikeLambda, faceLikeIters, faceLikeRate)
		for i, s := range samples {
			if !s.Fit || fold(s) != k {
				continue
			}
			for j, f := range s.Faces {
				fl[i][j] = m.logit(align.FaceChipZ(f.Chip))
			}
		}
	}
	for _, half := range []bool{true, false} {
		byKind := map[string][]float64{}
		for i, s := range samples {
			if s.Fit != half {
				continue
			}
			byKind[s.Set+" "+s.Kind] = append(byKind[s.Set+" "+s.Kind], fl[i]...)
		}
		for k, v := range byKind {
			if len(v) == 0 {
				continue
			}
			sort.Float64s(v)
			t.Logf("fit=%v %-45s n=%4d face_like min %.2f p0.2 %.2f p1 %.2f median %.2f max %.2f", half, k, len(v), v[0], v[len(v)/500], v[len(v)/100], v[len(v)/2], v[len(v)-1])
		}
	}
	target := map[string]bool{kindForehead45: true, kindForeEyes: true, kindToNose: true, kindUpsideDown: true}
	type cand struct {
		lo, w, min                         float64
		fitBad, holdBad, fitGood, holdGood int
		worstFit, worstHold                float64
	}
	var cands []cand
	for lo := -8.0; lo <= 2; lo += 0.5 {
		for _, w := range []float64{0.5, 1, 2, 4} {
			worst := [2]float64{1, 1}
			sc := make([][]float64, len(samples))
			for i, s := range samples {
				for j, f := range s.Faces {
					v := align.ScoredWith(f.Q, fl[i][j], lo, lo+w).Score
					sc[i] = append(sc[i], v)
					if s.Kind == kindGood {
						h := 1
						if s.Fit {
							h = 0
						}
						worst[h] = math.Min(worst[h], v)
					}
				}
			}
			for _, min := range []float64{0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45} {
				c := cand{lo: lo, w: w, min: min, worstFit: worst[0], worstHold: worst[1]}
				for i, s := range samples {
					kept := false
					for j, v := range sc[i] {
						if v >= min && (s.Kind == kindGood || s.Faces[j].Q.FacePixels >= enrollMinFace) {
							kept = true
						}
					}
					switch {
					case s.Kind == kindGood && !kept && s.Fit:
						c.fitGood++
					case s.Kind == kindGood && !kept:
						c.holdGood++
					case target[s.Kind] && kept && s.Fit:
						c.fitBad++
					case target[s.Kind] && kept:
						c.holdBad++
					}
				}
				if float64(c.fitGood) <= 0 && worst[0] >= min*faceLikeMargin {
					cands = append(cands, c)
				}
			}
		}
	}
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].fitBad != cands[j].fitBad {
			return cands[i].fitBad < cands[j].fitBad
		}
		return cands[i].lo < cands[j].lo
	})
	for i, c := range cands {
		if i >= 30 {
			break
		}
		t.Logf("gate %.1f..%.1f min %.2f: bad kept fit %d held-out %d; good lost fit %d held-out %d; worst good fit %.3f held-out %.3f", c.lo, c.lo+c.w, c.min, c.fitBad, c.holdBad, c.fitGood, c.holdGood, c.worstFit, c.worstHold)
	}
}

// mirrorChip is a chip mirrored left to right.
func mirrorChip(c []uint8) []uint8 {
	n := align.FaceChipSide
	out := make([]uint8, len(c))
	for y := 0; y < n; y++ {
		for x := 0; x < n; x++ {
			out[y*n+x] = c[y*n+n-1-x]
		}
	}
	return out
}

// TestFaceLikeCV chooses the classifier's L2 strength within the fit half:
// it fits on the fit half's people A–F (johns: John_Salley) and validates
// on its people G–M (johns: John_Savage, John_Schneider) and on the extra
// real photos of $FACEVER_QGOOD (a good-only sample file) of those
// people; set FACEVER_QUALITY_CV=1.
func TestFaceLikeCV(t *testing.T) {
	if os.Getenv("FACEVER_QUALITY_CV") == "" {
		t.Skip("set FACEVER_QUALITY_CV=1")
	}
	samples := loadQSamples(t, lfwEvery())
	train := func(s qSample) bool {
		if s.Set == "johns" {
			return s.Person == "John_Salley"
		}
		return strings.ToUpper(s.Person[:1]) < "G"
	}
	var tr, va []qSample
	for _, s := range samples {
		if !s.Fit {
			continue
		}
		if train(s) {
			tr = append(tr, s)
		} else {
			va = append(va, s)
		}
	}
	if g := os.Getenv("FACEVER_QGOOD"); g != "" {
		for _, s := range readQSamples(t, g) {
			if s.Fit && !train(s) && s.Set == "lfw" {
				va = append(va, s)
			}
		}
	}
	mirror := os.Getenv("FACEVER_QUALITY_MIRROR") != ""
	if mirror {
		n := len(tr)
		for _, s := range tr[:n] {
			m := s
			m.Faces = nil
			for _, f := range s.Faces {
				m.Faces = append(m.Faces, qFace{f.Q, mirrorChip(f.Chip)})
			}
			tr = append(tr, m)
		}
	}
	x, y, wt := faceLikeData(tr, true)
	iters := faceLikeIters
	if v := os.Getenv("FACEVER_QUALITY_ITERS"); v != "" {
		fmt.Sscan(v, &iters)
	}
	for _, lambda := range []float64{1e-4, 1e-3, 1e-2, 1e-1} {
		m := fitFaceNet(x, y, wt, faceLikeHidden, lambda, iters, faceLikeRate)
		logit := func(c []uint8) float64 { return m.logit(align.FaceChipZ(c)) }
		var good []float64
		bad := map[string][]float64{}
		for _, s := range va {
			for _, f := range s.Faces {
				if s.Kind == kindGood {
					good = append(good, logit(f.Chip))
				} else {
					bad[s.Kind] = append(bad[s.Kind], logit(f.Chip))
				}
			}
		}
		sort.Float64s(good)
		line := fmt.Sprintf("λ %g: good n=%d min %.2f p0.2 %.2f p1 %.2f median %.2f;", lambda, len(good), good[0], good[len(good)/500], good[len(good)/100], good[len(good)/2])
		for _, k := range badKinds {
			above, above2 := 0, 0
			for _, v := range bad[k] {
				if v >= good[0] {
					above++
				}
				if v >= good[len(good)/500] {
					above2++
				}
			}
			line += fmt.Sprintf(" | %s %d %d /%d", k, above, above2, len(bad[k]))
		}
		t.Log(line)
	}
}
