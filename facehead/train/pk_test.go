package train

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/facever/facever/facehead"
	"github.com/facever/facever/margin"
)

// TestPKSamplerBatches checks that the pair losses' batches hold P distinct
// identities × K photos each, that an identity's photos are distinct when it
// has K or more, that singletons are never drawn, and that identities are
// drawn evenly.
func TestPKSamplerBatches(t *testing.T) {
	// Identities 0–9 with 1, 2, …, 10 photos.
	var y []int
	for id := 0; id < 10; id++ {
		for k := 0; k <= id; k++ {
			y = append(y, id)
		}
	}
	s, err := newPKSampler(y, 10, 12, 4)
	if err != nil {
		t.Fatal(err)
	}
	if s.p != 3 || s.k != 4 || len(s.ids) != 9 {
		t.Fatalf("P=%d K=%d eligible=%d, want 3, 4, 9", s.p, s.k, len(s.ids))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	drawn := map[int]int{}
	for b := 0; b < 300; b++ {
		batch := s.draw(rng)
		if len(batch) != 12 {
			t.Fatalf("batch of %d", len(batch))
		}
		seen := map[int]bool{}
		for p := 0; p < 3; p++ {
			group := batch[p*4 : (p+1)*4]
			id := y[group[0]]
			if id == 0 {
				t.Fatal("a single-photo identity was drawn")
			}
			if seen[id] {
				t.Fatalf("identity %d twice in one batch", id)
			}
			seen[id] = true
			drawn[id]++
			photos := map[int]bool{}
			for k, i := range group {
				if y[i] != id {
					t.Fatalf("group %d mixes identities %d and %d", p, id, y[i])
				}
				if k > 0 && group[k-1] == i {
					t.Fatalf("photo %d twice in a row", i)
				}
				photos[i] = true
			}
			if want := min(id+1, 4); len(photos) < want {
				t.Errorf("identity %d with %d photos: %d distinct in its group, want %d", id, id+1, len(photos), want)
			}
		}
	}
	for id := 1; id < 10; id++ {
		if drawn[id] < 90 || drawn[id] > 110 {
			t.Errorf("identity %d drawn %d times in 300 batches of 3 from 9, want about 100", id, drawn[id])
		}
	}
}

// TestPairLossNeedsRepeatedIdentities checks the clear refusals: pair losses
// on data where fewer than two identities have two photos, and K < 2.
func TestPairLossNeedsRepeatedIdentities(t *testing.T) {
	feats, labels := synth(3, 5, 1, 8, 4, 0.1, 0.1)
	feats2, labels2 := synth(4, 1, 3, 8, 4, 0.1, 0.1)
	feats = append(feats, feats2...)
	for _, l := range labels2 {
		labels = append(labels, l+100)
	}
	for _, loss := range margin.NamesOf(margin.Pair) {
		_, _, err := Train(feats, labels, Config{Loss: loss, Epochs: 1})
		if err == nil || !strings.Contains(err.Error(), "at least 2 identities with 2 or more photos") {
			t.Errorf("%s: error %v", loss, err)
		}
	}
	feats, labels = synth(5, 4, 3, 8, 4, 0.1, 0.1)
	if _, _, err := Train(feats, labels, Config{Loss: "triplet", Epochs: 1, PerIdentity: 1}); err == nil || !strings.Contains(err.Error(), "K ≥ 2") {
		t.Errorf("K=1: error %v", err)
	}
	if _, _, err := Train(feats, labels, Config{Loss: "triplet", Epochs: 1, LossParams: margin.Params{"mining": 3}}); err == nil || !strings.Contains(err.Error(), "semi-hard") {
		t.Errorf("mining 3: error %v", err)
	}
	if _, _, err := Train(feats, labels, Config{Loss: "npair", Epochs: 1, LossParams: margin.Params{"variant": 2}}); err == nil || !strings.Contains(err.Error(), "mc or ovo") {
		t.Errorf("variant 2: error %v", err)
	}
	// A proxy loss trains on the same data without P×K batches.
	if _, rep, err := Train(feats, labels, Config{Loss: "softtriple", Epochs: 2, BatchSize: 4}); err != nil || rep.Steps != 6 {
		t.Errorf("softtriple: %v, %d steps", err, rep.Steps)
	}
}

// TestProxyLRScale checks that the proxies' learning-rate scale reaches the
// optimiser: the same run with scale 1 and 10 gives different heads, both
// of which lift held-out AUC above the raw features', and the scale is recorded.
func TestProxyLRScale(t *testing.T) {
	train, trainY := synth(1, 40, 20, 64, 16, 0.15, 0.35)
	test, testY := synth(2, 20, 10, 64, 16, 0.15, 0.35)
	rawAUC, _ := verify(test, testY)
	var heads []*facehead.Head
	for _, scale := range []float64{1, 10} {
		h, rep, err := Train(train, trainY, Config{Loss: "proxyanchor", Epochs: 10, BatchSize: 64, LR: 1e-2, ProxyLRScale: scale, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		if auc, _ := verify(project(h, test), testY); auc < rawAUC+0.05 {
			t.Errorf("scale %v: held-out AUC %.3f, raw %.3f", scale, auc, rawAUC)
		}
		if got, ok := rep.Params["proxy_lr_scale"]; (scale != 1) != ok || (ok && got != scale) {
			t.Errorf("scale %v: recorded %v %v", scale, got, ok)
		}
		heads = append(heads, h)
	}
	a, b := make([]float32, heads[0].OutDim()), make([]float32, heads[1].OutDim())
	heads[0].Project(a, test[0])
	heads[1].Project(b, test[0])
	if cosine(a, b) > 1-1e-9 {
		t.Error("the proxy learning-rate scale changed nothing")
	}
}
