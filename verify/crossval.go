package verify

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sort"
)

// Projection maps a feature to an embedding, as a trained head does
// (facehead.Head is one): Project writes the embedding of feat into dst
// (len OutDim).
type Projection interface {
	Project(dst, feat []float32)
	OutDim() int
}

// Fit trains a projection for fold on the features of the other folds'
// people, labels telling the people apart (one value per person).
type Fit func(fold int, features [][]float32, labels []int) (Projection, error)

// Features are the backbone features of a cross-validation: each photo's,
// by path, and each person's photos.
type Features struct {
	// ByPath holds the feature of each photo that has one; a photo without
	// (no face found) is left out of training, and its pairs score −1.
	ByPath map[string][]float32
	// Photos lists each person's photos, in the order training reads them.
	// A person is named by the folder of their photos (root/<person>/<photo>),
	// as in the pairs' paths.
	Photos map[string][]string
}

// CrossValidation is the outcome of CrossValidate.
type CrossValidation struct {
	// Scores holds every pair's score, in the pair set's order, each from
	// the projection of its fold; −1 where a photo has no feature.
	Scores []float64
	// Evaluation is the pair set's protocol on Scores (each fold's
	// threshold chosen on the other folds).
	Evaluation *Evaluation
}

// PersonOf returns the person of a photo path: the name of its folder.
func PersonOf(path string) string { return filepath.Base(filepath.Dir(path)) }

// FoldPeople returns the people of each fold of ps, sorted (a pair's people
// are the folders of its photos), and checks that no two folds share a
// person. The set must define two or more folds.
func FoldPeople(ps *PairSet) ([][]string, error) {
	if ps == nil || ps.Folds < 2 {
		return nil, errors.New("the pairs file defines no folds: crossval needs LFW's pairs.txt format")
	}
	sets := make([]map[string]bool, ps.Folds)
	for i := range sets {
		sets[i] = map[string]bool{}
	}
	for i, p := range ps.Pairs {
		if p.Fold < 0 || p.Fold >= ps.Folds {
			return nil, fmt.Errorf("pair %d has fold %d, the set has %d", i+1, p.Fold, ps.Folds)
		}
		sets[p.Fold][PersonOf(p.A)] = true
		sets[p.Fold][PersonOf(p.B)] = true
	}
	owner := map[string]int{}
	out := make([][]string, ps.Folds)
	for f, s := range sets {
		for n := range s {
			out[f] = append(out[f], n)
		}
		sort.Strings(out[f])
	}
	for f, names := range out {
		for _, n := range names {
			if g, ok := owner[n]; ok {
				return nil, fmt.Errorf("folds %d and %d share %s: crossval needs identity-disjoint folds", g+1, f+1, n)
			}
			owner[n] = f
		}
	}
	return out, nil
}

// ScorePairs returns the cosine of every pair's embeddings, emb giving a
// photo's (nil: none, and the pair scores RejectScore, −1, decided
// "different": PairSet.Scores with the NoFaceReject policy applied).
func ScorePairs(ps *PairSet, emb func(path string) []float32) []float64 {
	s := ps.Scores(emb)
	for i := range s {
		if math.IsNaN(s[i]) {
			s[i] = RejectScore
		}
	}
	return s
}

// CrossValidate runs a trained projection through a pair set's folds so
// that no score comes from a projection that saw its people: for each fold
// k, fit trains on every photo with a feature of the people of the other
// folds (folds in order, people sorted within a fold, each person's photos
// in the order of Features.Photos, labels 0, 1, … per person), and fold k's
// pairs are scored with the result. The pair set's protocol then runs on
// the scores. The folds must be identity-disjoint (FoldPeople); a person of
// the pairs without photos in features is an error.
func CrossValidate(ps *PairSet, features Features, fit Fit) (*CrossValidation, error) {
	people, err := FoldPeople(ps)
	if err != nil {
		return nil, err
	}
	for _, names := range people {
		for _, n := range names {
			if _, ok := features.Photos[n]; !ok {
				return nil, fmt.Errorf("no photos of %s", n)
			}
		}
	}
	scores := make([]float64, len(ps.Pairs))
	for k := range people {
		var tf [][]float32
		var tl []int
		label := 0
		for j, names := range people {
			if j == k {
				continue
			}
			for _, n := range names {
				for _, p := range features.Photos[n] {
					if f := features.ByPath[p]; f != nil {
						tf = append(tf, f)
						tl = append(tl, label)
					}
				}
				label++
			}
		}
		proj, err := fit(k, tf, tl)
		if err != nil {
			return nil, fmt.Errorf("fold %d: %w", k+1, err)
		}
		cache := map[string][]float32{}
		emb := func(p string) []float32 {
			if e, ok := cache[p]; ok {
				return e
			}
			f := features.ByPath[p]
			if f == nil {
				return nil
			}
			e := make([]float32, proj.OutDim())
			proj.Project(e, f)
			cache[p] = e
			return e
		}
		for i, p := range ps.Pairs {
			if p.Fold != k {
				continue
			}
			if a, b := emb(p.A), emb(p.B); a == nil || b == nil {
				scores[i] = RejectScore // NoFaceReject
			} else {
				scores[i] = Cosine(a, b)
			}
		}
	}
	ev, err := Evaluate(scores, ps.Labels(), ps.FoldIndices(), ps.Folds)
	if err != nil {
		return nil, err
	}
	return &CrossValidation{Scores: scores, Evaluation: ev}, nil
}
