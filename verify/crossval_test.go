package verify

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// cvData builds a synthetic cross-validation: folds × perFold people with
// photos each, features whose first sig values carry the person (a unit
// centre plus noise) and the other d − sig strong nuisance shared by all,
// and in each fold as many same-person pairs as different-person ones.
func cvData(folds, perFold, photos, d, sig int) (*PairSet, Features, map[*float32]string) {
	r := rand.New(rand.NewPCG(1, 2))
	ps := &PairSet{Format: FormatLFW, Folds: folds}
	feats := Features{ByPath: map[string][]float32{}, Photos: map[string][]string{}}
	owner := map[*float32]string{}
	for f := 0; f < folds; f++ {
		var names []string
		for p := 0; p < perFold; p++ {
			name := fmt.Sprintf("person_%d_%d", f, p)
			names = append(names, name)
			mu := make([]float64, sig)
			var n float64
			for j := range mu {
				mu[j] = r.NormFloat64()
				n += mu[j] * mu[j]
			}
			for k := 0; k < photos; k++ {
				path := filepath.Join("root", name, fmt.Sprintf("%s_%04d.jpg", name, k+1))
				v := make([]float32, d)
				for j := range v {
					if j < sig {
						v[j] = float32(mu[j]/math.Sqrt(n) + 0.2*r.NormFloat64())
					} else {
						v[j] = float32(0.5 * r.NormFloat64())
					}
				}
				feats.ByPath[path] = v
				feats.Photos[name] = append(feats.Photos[name], path)
				owner[&v[0]] = name
			}
		}
		for p, name := range names {
			other := names[(p+1)%len(names)]
			ps.Pairs = append(ps.Pairs,
				Pair{A: feats.Photos[name][0], B: feats.Photos[name][1], Same: true, Fold: f},
				Pair{A: feats.Photos[name][2], B: feats.Photos[other][0], Same: false, Fold: f})
		}
	}
	return ps, feats, owner
}

// maskFit learns, from the training people only, which dimensions carry
// identity: those whose between-person variance exceeds the within-person
// one (a diagonal Fisher criterion); the projection keeps those.
type mask struct {
	keep []bool
	fold int
}

func (m mask) OutDim() int { return len(m.keep) }

func (m mask) Project(dst, feat []float32) {
	for j, v := range feat {
		dst[j] = 0
		if m.keep[j] {
			dst[j] = v
		}
	}
}

func fitMask(fold int, feats [][]float32, labels []int) mask {
	d := len(feats[0])
	sum, count := map[int][]float64{}, map[int]int{}
	for i, f := range feats {
		if sum[labels[i]] == nil {
			sum[labels[i]] = make([]float64, d)
		}
		for j, v := range f {
			sum[labels[i]][j] += float64(v)
		}
		count[labels[i]]++
	}
	between, within := make([]float64, d), make([]float64, d)
	for i, f := range feats {
		for j, v := range f {
			m := sum[labels[i]][j] / float64(count[labels[i]])
			within[j] += (float64(v) - m) * (float64(v) - m)
			between[j] += m * m
		}
	}
	keep := make([]bool, d)
	for j := range keep {
		keep[j] = between[j] > within[j]
	}
	return mask{keep: keep, fold: fold}
}

// TestCrossValidate checks the protocol on synthetic features: each fold's
// projection is fitted on exactly the other folds' people (every photo, one
// label per person, in the documented order), each fold's pairs are scored
// with its own fold's projection, a photo without a feature scores −1, and
// the fitted projection lifts the cross-validated AUC over the raw
// features' (it learns to drop the nuisance without seeing the people it is
// scored on).
func TestCrossValidate(t *testing.T) {
	const folds, perFold, photos, d, sig = 4, 5, 4, 24, 6
	ps, feats, owner := cvData(folds, perFold, photos, d, sig)
	people, err := FoldPeople(ps)
	if err != nil {
		t.Fatal(err)
	}
	// A photo of fold 0 without a feature: its pair scores −1.
	delete(feats.ByPath, ps.Pairs[0].A)
	fits := make([]mask, folds)
	cv, err := CrossValidate(ps, feats, func(k int, tf [][]float32, tl []int) (Projection, error) {
		var wantPeople []string
		for j, names := range people {
			if j != k {
				wantPeople = append(wantPeople, names...)
			}
		}
		var gotPeople []string
		for i, f := range tf {
			name := owner[&f[0]]
			if strings.HasPrefix(name, fmt.Sprintf("person_%d_", k)) {
				t.Fatalf("fold %d trained on %s, one of its own people", k, name)
			}
			if i == 0 || tl[i] != tl[i-1] {
				gotPeople = append(gotPeople, name)
			} else if owner[&tf[i-1][0]] != name {
				t.Fatalf("fold %d: label %d covers %s and %s", k, tl[i], owner[&tf[i-1][0]], name)
			}
		}
		if !slices.Equal(gotPeople, wantPeople) || !slices.IsSorted(tl) || tl[0] != 0 || tl[len(tl)-1] != len(wantPeople)-1 {
			t.Fatalf("fold %d trained on people %v (labels %v), want %v", k, gotPeople, tl, wantPeople)
		}
		want := (folds - 1) * perFold * photos
		if k != 0 {
			want-- // fold 0's photo without a feature
		}
		if len(tf) != want {
			t.Fatalf("fold %d: %d training photos, want %d", k, len(tf), want)
		}
		fits[k] = fitMask(k, tf, tl)
		return fits[k], nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range ps.Pairs {
		want := -1.0
		if a, b := feats.ByPath[p.A], feats.ByPath[p.B]; a != nil && b != nil {
			ea, eb := make([]float32, d), make([]float32, d)
			fits[p.Fold].Project(ea, a)
			fits[p.Fold].Project(eb, b)
			want = Cosine(ea, eb)
		}
		if cv.Scores[i] != want {
			t.Fatalf("pair %d (fold %d): score %v, want %v", i, p.Fold, cv.Scores[i], want)
		}
	}
	if cv.Scores[0] != -1 {
		t.Errorf("the pair without a feature scored %v", cv.Scores[0])
	}
	raw, err := Evaluate(ScorePairs(ps, func(p string) []float32 { return feats.ByPath[p] }), ps.Labels(), ps.FoldIndices(), ps.Folds)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("AUC raw %.3f, cross-validated mask %.3f; accuracy %.3f, %.3f", raw.ROC.AUC, cv.Evaluation.ROC.AUC, raw.KFold.Mean, cv.Evaluation.KFold.Mean)
	if cv.Evaluation.ROC.AUC < raw.ROC.AUC+0.05 || cv.Evaluation.Pairs != len(ps.Pairs) {
		t.Errorf("cross-validated AUC %.3f over %d pairs, raw %.3f", cv.Evaluation.ROC.AUC, cv.Evaluation.Pairs, raw.ROC.AUC)
	}
}

// TestCrossValidateRefusals checks the clear errors: no folds, folds that
// share a person, a person without photos, and a fit that fails (named by
// its fold).
func TestCrossValidateRefusals(t *testing.T) {
	fit := func(k int, tf [][]float32, tl []int) (Projection, error) { return fitMask(k, tf, tl), nil }
	ps, feats, _ := cvData(3, 2, 3, 8, 4)
	if _, err := CrossValidate(&PairSet{Pairs: ps.Pairs}, feats, fit); err == nil || !strings.Contains(err.Error(), "defines no folds") {
		t.Errorf("no folds: %v", err)
	}
	shared := *ps
	shared.Pairs = append(slices.Clone(ps.Pairs), Pair{A: ps.Pairs[0].A, B: ps.Pairs[0].B, Same: true, Fold: 2})
	if _, err := CrossValidate(&shared, feats, fit); err == nil || !strings.Contains(err.Error(), "folds 1 and 3 share person_0_0") {
		t.Errorf("shared person: %v", err)
	}
	bad := *ps
	bad.Pairs = append(slices.Clone(ps.Pairs), Pair{A: "a/b.jpg", B: "a/c.jpg", Fold: 5})
	if _, err := CrossValidate(&bad, feats, fit); err == nil || !strings.Contains(err.Error(), "fold 5") {
		t.Errorf("fold out of range: %v", err)
	}
	missing := Features{ByPath: feats.ByPath, Photos: map[string][]string{}}
	if _, err := CrossValidate(ps, missing, fit); err == nil || !strings.Contains(err.Error(), "no photos of person_0_0") {
		t.Errorf("missing person: %v", err)
	}
	boom := errors.New("boom")
	_, err := CrossValidate(ps, feats, func(k int, tf [][]float32, tl []int) (Projection, error) {
		if k == 1 {
			return nil, boom
		}
		return fitMask(k, tf, tl), nil
	})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "fold 2") {
		t.Errorf("failing fit: %v", err)
	}
}
