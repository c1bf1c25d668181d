package main

import (
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/facever/facever/internal/testmodels"
	"github.com/facever/facever/verify"
)

// TestQualityBands: pairs fall in the band of their lower quality, a pair
// with a photo without a face or quality in the unknown band (decided
// "different"), and each band's accuracy is at the threshold given.
func TestQualityBands(t *testing.T) {
	ps := &verify.PairSet{Pairs: []verify.Pair{
		{A: "a", B: "b", Same: true},  // q 0.9: right (0.6 ≥ 0.4)
		{A: "a", B: "c", Same: true},  // q 0.3: wrong (0.2 < 0.4)
		{A: "c", B: "d", Same: false}, // q 0.3: right
		{A: "b", B: "e", Same: false}, // no face: right (decided different)
		{A: "b", B: "e", Same: true},  // no face: wrong
		{A: "a", B: "f", Same: true},  // q exactly 1: last band, right
		{A: "b", B: "g", Same: false}, // q 0.5, on an edge: band [0.5, 0.95), wrong
	}}
	scores := []float64{0.6, 0.2, 0.1, math.NaN(), math.NaN(), 0.9, 0.45}
	quality := map[string]float64{"a": 0.97, "b": 0.9, "c": 0.3, "d": 0.6, "e": math.NaN(), "f": 1, "g": 0.5}
	bands := qualityBands(ps, scores, quality, 0.4, []float64{0.5, 0.95})
	type want struct{ pairs, genuine, correct int }
	for i, w := range []want{{2, 1, 1}, {2, 1, 1}, {1, 1, 1}, {2, 1, 1}} {
		b := bands[i]
		if b.Pairs != w.pairs || b.Genuine != w.genuine || b.Correct != w.correct || b.Impostor != w.pairs-w.genuine {
			t.Errorf("band %d: %+v, want %+v", i, b, w)
		}
	}
	if !bands[3].Unknown || bands[3].Min != nil || *bands[2].Max != 1 || *bands[1].Min != 0.5 || bands[0].Accuracy != 0.5 {
		t.Errorf("bands: %+v", bands)
	}
	for _, bad := range []string{"0", "1", "0.5,0.4", "x", "0.5,0.5", "NaN"} {
		if _, err := parseBandEdges(bad); err == nil {
			t.Errorf("--quality-bands %q: want an error", bad)
		}
	}
	if e, err := parseBandEdges(" 0.5, 0.8 "); err != nil || len(e) != 2 {
		t.Errorf("edges: %v %v", e, err)
	}
}

// TestEvalByQuality: eval --by-quality on the johns photos (every pair of
// the 55) gives bands whose pairs add up to the evaluation's, in JSON and
// as a table.
func TestEvalByQuality(t *testing.T) {
	testmodels.Dir(t)
	cache := filepath.Join(t.TempDir(), "c.db")
	code, out, errs := facever(t, "eval", "--data", "../../testdata/johns", "--by-quality", "--json", "--cache", cache)
	if code != exitOK {
		t.Fatalf("exit %d %s", code, errs)
	}
	var doc struct {
		Evaluation struct {
			Pairs int `json:"pairs"`
			KFold struct {
				Mean float64 `json:"mean"`
			} `json:"kfold"`
		} `json:"evaluation"`
		ByQuality []qualityBand `json:"by_quality"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	total, correct := 0, 0
	for _, b := range doc.ByQuality {
		total += b.Pairs
		correct += b.Correct
	}
	if len(doc.ByQuality) != 5 || !doc.ByQuality[4].Unknown || total != doc.Evaluation.Pairs || total != 55*54/2 || doc.ByQuality[4].Pairs != 0 {
		t.Fatalf("bands %+v for %d pairs", doc.ByQuality, doc.Evaluation.Pairs)
	}
	// At the folds' mean threshold the bands' accuracy is close to the
	// k-fold accuracy (each fold uses its own threshold).
	if acc := float64(correct) / float64(total); math.Abs(acc-doc.Evaluation.KFold.Mean) > 0.02 {
		t.Errorf("bands' accuracy %.4f, k-fold %.4f", acc, doc.Evaluation.KFold.Mean)
	}
	// The johns photos are good faces (quality 0.897 at the lowest): no
	// pair below 0.5.
	if doc.ByQuality[0].Pairs != 0 {
		t.Errorf("pairs below quality 0.5: %+v", doc.ByQuality[0])
	}
	code, out, errs = facever(t, "eval", "--data", "../../testdata/johns", "--by-quality", "--quality-bands", "0.9,0.99", "--cache", cache)
	if code != exitOK || !strings.Contains(out, "accuracy by the pair's lower face quality") || !strings.Contains(out, "[0.99, 1.00]") {
		t.Fatalf("exit %d:\n%s%s", code, out, errs)
	}
	if code, _, errs = facever(t, "eval", "--data", "../../testdata/johns", "--by-quality", "--quality-bands", "0.9,0.8"); code != exitError || !strings.Contains(errs, "must increase") {
		t.Errorf("decreasing edges: exit %d %q", code, errs)
	}
}
