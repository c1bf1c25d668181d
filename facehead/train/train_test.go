package train

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/facever/facever/facehead"
	"github.com/facever/facever/margin"
)

// synth returns unit-length features of the given classes: each class has a
// centre in the first sig dimensions (unit length, plus isotropic noise of
// std noise), and every sample carries strong nuisance (std nuis per value)
// in the other d − sig dimensions, shared by all classes: raw cosine is
// mediocre, and a linear projection that learns to drop the nuisance helps
// unseen classes too.
func synth(seed uint64, classes, perClass, d, sig int, noise, nuis float64) ([][]float32, []int) {
	r := rand.New(rand.NewPCG(seed, 99))
	var feats [][]float32
	var labels []int
	for c := 0; c < classes; c++ {
		mu := make([]float64, sig)
		var n float64
		for j := range mu {
			mu[j] = r.NormFloat64()
			n += mu[j] * mu[j]
		}
		for j := range mu {
			mu[j] /= math.Sqrt(n)
		}
		for k := 0; k < perClass; k++ {
			f := make([]float32, d)
			for j := 0; j < d; j++ {
				if j < sig {
					f[j] = float32(mu[j] + noise*r.NormFloat64())
				} else {
					f[j] = float32(nuis * r.NormFloat64())
				}
			}
			if err := facehead.Normalize(f); err != nil {
				panic(err)
			}
			feats = append(feats, f)
			labels = append(labels, c)
		}
	}
	return feats, labels
}

func cosine(a, b []float32) float64 {
	var s, na, nb float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	return s / math.Sqrt(na*nb)
}

// verify returns the AUC and the best balanced accuracy ((TPR + TNR)/2 at the
// best threshold) over all pairs of embs.
func verify(embs [][]float32, labels []int) (auc, acc float64) {
	type pair struct {
		s    float64
		same bool
	}
	var ps []pair
	var pos, neg int
	for i := range embs {
		for j := i + 1; j < len(embs); j++ {
			same := labels[i] == labels[j]
			ps = append(ps, pair{cosine(embs[i], embs[j]), same})
			if same {
				pos++
			} else {
				neg++
			}
		}
	}
	sort.Slice(ps, func(a, b int) bool { return ps[a].s > ps[b].s })
	var tp, fp int
	var area float64
	for _, p := range ps {
		if p.same {
			tp++
		} else {
			fp++
			area += float64(tp)
		}
		bal := (float64(tp)/float64(pos) + float64(neg-fp)/float64(neg)) / 2
		acc = max(acc, bal)
	}
	return area / float64(pos*neg), acc
}

func project(h *facehead.Head, feats [][]float32) [][]float32 {
	out := make([][]float32, len(feats))
	for i, f := range feats {
		out[i] = make([]float32, h.OutDim())
		h.Project(out[i], f)
	}
	return out
}

func TestTrainEachLossHeldOut(t *testing.T) {
	const d, sig = 64, 16
	train, trainY := synth(1, 40, 20, d, sig, 0.15, 0.35)
	test, testY := synth(2, 20, 10, d, sig, 0.15, 0.35)
	rawAUC, rawAcc := verify(test, testY)
	t.Logf("raw: AUC %.3f, accuracy %.3f", rawAUC, rawAcc)
	oracle := make([][]float32, len(test))
	for i, f := range test {
		oracle[i] = f[:sig]
	}
	oAUC, oAcc := verify(oracle, testY)
	t.Logf("oracle (signal dimensions only): AUC %.3f, accuracy %.3f", oAUC, oAcc)
	for _, loss := range margin.Names() {
		for _, bn := range []bool{false, true} {
			cfg := Config{Loss: loss, Epochs: 25, BatchSize: 64, LR: 1e-2, Seed: 1, BatchNorm: bn}
			h, rep, err := Train(train, trainY, cfg)
			if err != nil {
				t.Fatalf("%s: %v", loss, err)
			}
			auc, acc := verify(project(h, test), testY)
			t.Logf("%-10s bn=%v: train loss %.3f→%.3f acc %.3f; held-out AUC %.3f, accuracy %.3f (%.0f samples/s)",
				loss, bn, rep.History[0].Loss, rep.FinalLoss, rep.FinalAccuracy, auc, acc, rep.SamplesPerSec)
			if rep.FinalLoss >= rep.History[0].Loss {
				t.Errorf("%s bn=%v: training loss did not fall: %v → %v", loss, bn, rep.History[0].Loss, rep.FinalLoss)
			}
			// Chance is AUC 0.5 and balanced accuracy 0.5; raw cosine is
			// about 0.78 and 0.71 here, an oracle projection 0.998 and 0.98.
			if auc < rawAUC+0.05 || acc < rawAcc+0.05 {
				t.Errorf("%s bn=%v: held-out AUC %.3f accuracy %.3f, raw %.3f %.3f", loss, bn, auc, acc, rawAUC, rawAcc)
			}
			if rep.Identities != 40 || rep.Samples != 800 || h.Meta().Loss != loss || h.Meta().BatchNorm != bn {
				t.Errorf("%s: report %+v, meta %+v", loss, rep, h.Meta())
			}
		}
	}
}
