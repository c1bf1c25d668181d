// Package verify decides whether two faces belong to the same person, and
// measures how well such decisions are made: cosine similarity against a
// threshold; ROC, AUC, EER, TAR@FAR; the calibration of a threshold at a
// target false-accept rate; ROC plots; and the evaluation protocols, all on
// features the caller computes (verify links no model and no training code):
//
//   - pairs (1:1): pairs files (LFW pairs.txt, CSV; streamed, bounded) or
//     every pair of a folder per person (PairsFromPeople), scored by
//     PairSet.Scores and evaluated by PairSet.Evaluate with the k-fold
//     protocol of LFW and an explicit policy for photos without a face
//     (NoFaceReject or NoFaceSkip);
//   - open set (1:N): SplitPeople enrols each person's first photo and
//     keeps the rest as probes, single-photo people as strangers;
//     EvaluateOpenSet reports rank-1, the detect-and-identify and
//     false-alarm rates, a threshold sweep and a threshold calibrated on
//     half of the strangers, with the 1:N search pluggable (Matcher);
//   - held-out people (after training): HeldOutPairs and IndexPairs.Measure.
package verify

import "math"

// DefaultThreshold is the cosine similarity at or above which two faces of
// the default backbone (fr_feature) are declared the same person. How it was
// chosen is in the README ("Choosing the threshold"): it is the lowest
// threshold that accepts none of LFW View 2's 3,000 different-person pairs
// (false-accept rate below 1/3000), at a false-reject rate of 4.5 %.
const DefaultThreshold = 0.38

// Cosine returns the cosine similarity of a and b (their dot product divided
// by both norms). Vectors of different lengths or a zero vector give NaN.
func Cosine(a, b []float32) float64 {
	if len(a) != len(b) || len(a) == 0 {
		return math.NaN()
	}
	var dot, na, nb float64
	for i := range a {
		x, y := float64(a[i]), float64(b[i])
		dot += x * y
		na += x * x
		nb += y * y
	}
	if na == 0 || nb == 0 {
		return math.NaN()
	}
	return dot / math.Sqrt(na*nb)
}

// Decision is the outcome of comparing two faces.
type Decision struct {
	Similarity float64 `json:"similarity"`
	Threshold  float64 `json:"threshold"`
	Same       bool    `json:"same_person"`
}

// Decide compares two embeddings against a threshold.
func Decide(a, b []float32, threshold float64) Decision {
	s := Cosine(a, b)
	return Decision{Similarity: s, Threshold: threshold, Same: s >= threshold}
}
