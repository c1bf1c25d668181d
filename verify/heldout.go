package verify

import (
	"fmt"
	"math/rand/v2"
)

// IndexPairs are labelled pairs of samples named by their index, for
// protocols built on labelled features rather than files (a held-out set of
// people after training).
type IndexPairs struct {
	// A and B index the two samples of each pair.
	A, B []int
	// Same reports whether both samples have the same label.
	Same []bool
}

// Len is the number of pairs.
func (p IndexPairs) Len() int { return len(p.A) }

// HeldOutPairs builds the verification pairs of a set of labelled samples:
// every same-label pair (at most maxPairs/2 of them, drawn with seed when
// there are more) and as many different-label pairs drawn at random with
// seed (fewer when the draw keeps hitting same-label pairs: it gives up
// after 20 tries per pair). The same labels, seed and limit give the same
// pairs.
func HeldOutPairs(labels []int, seed int64, maxPairs int) IndexPairs {
	var gen [][2]int
	for i := range labels {
		for j := i + 1; j < len(labels); j++ {
			if labels[i] == labels[j] {
				gen = append(gen, [2]int{i, j})
			}
		}
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 42))
	if len(gen) > maxPairs/2 {
		rng.Shuffle(len(gen), func(i, j int) { gen[i], gen[j] = gen[j], gen[i] })
		gen = gen[:maxPairs/2]
	}
	var p IndexPairs
	for _, g := range gen {
		p.A, p.B, p.Same = append(p.A, g[0]), append(p.B, g[1]), append(p.Same, true)
	}
	n := len(gen)
	for tries := 0; n > 0 && tries < 20*len(gen); tries++ {
		i, j := rng.IntN(len(labels)), rng.IntN(len(labels))
		if labels[i] != labels[j] {
			p.A, p.B, p.Same = append(p.A, i), append(p.B, j), append(p.Same, false)
			n--
		}
	}
	return p
}

// HeldOut is how well embeddings separate the pairs of a held-out set.
type HeldOut struct {
	// Pairs counts the pairs.
	Pairs int `json:"pairs"`
	// AUC is the area under the ROC curve.
	AUC float64 `json:"auc"`
	// Accuracy is at the best-accuracy threshold.
	Accuracy float64 `json:"accuracy"`
	// Threshold is the best-accuracy threshold.
	Threshold float64 `json:"threshold"`
	// TARAt is the true-accept rate at FAR.
	TARAt float64 `json:"tar"`
	// FAR is the false-accept rate TARAt is measured at.
	FAR float64 `json:"far"`
}

// Measure scores the pairs by the cosine similarity of features[A[i]] and
// features[B[i]] and reports AUC, the best accuracy and TAR at far.
func (p IndexPairs) Measure(features [][]float32, far float64) (HeldOut, error) {
	if len(p.B) != len(p.A) || len(p.Same) != len(p.A) {
		return HeldOut{}, fmt.Errorf("verify: index pairs of unequal lengths %d, %d, %d", len(p.A), len(p.B), len(p.Same))
	}
	scores := make([]float64, len(p.A))
	for k := range p.A {
		if p.A[k] < 0 || p.A[k] >= len(features) || p.B[k] < 0 || p.B[k] >= len(features) {
			return HeldOut{}, fmt.Errorf("verify: pair %d (%d, %d) outside the %d features", k, p.A[k], p.B[k], len(features))
		}
		scores[k] = Cosine(features[p.A[k]], features[p.B[k]])
	}
	roc, err := ComputeROC(scores, p.Same)
	if err != nil {
		return HeldOut{}, err
	}
	best, err := BestAccuracy(scores, p.Same)
	if err != nil {
		return HeldOut{}, err
	}
	op := roc.AtFAR(far)
	return HeldOut{Pairs: len(p.A), AUC: roc.AUC, Accuracy: best.Accuracy, Threshold: best.Threshold, TARAt: op.TAR, FAR: far}, nil
}
