package margin

import (
	"math/rand/v2"
	"testing"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// benchMetric times one training step's forward and backward pass of a pair
// or proxy loss in float32 on a P×K batch of 32 identities × 4 photos
// (N = 128) of dimension D = 512: the gradient with respect to x and, for the
// proxy losses, to the WeightRows(h, classes) proxies. The batch's
// identities are 32 distinct classes drawn from the given number of classes.
func benchMetric(b *testing.B, h Loss, classes int) {
	const p, k, d = 32, 4, 512
	const n = p * k
	r := rand.New(rand.NewPCG(2, 2))
	ids := r.Perm(classes)[:p]
	labels := make([]int, n)
	for i := range labels {
		labels[i] = ids[i/k]
	}
	if err := CheckBatch(h, labels); err != nil {
		b.Fatal(err)
	}
	randF32 := func(size int) []float32 {
		v := make([]float32, size)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return v
	}
	g := gorgonia.NewGraph()
	x := gorgonia.NewMatrix(g, tensor.Float32, gorgonia.WithShape(n, d), gorgonia.WithName("x"),
		gorgonia.WithValue(tensor.New(tensor.WithShape(n, d), tensor.WithBacking(randF32(n*d)))))
	var w *gorgonia.Node
	if rows := WeightRows(h, classes); rows > 0 {
		w = gorgonia.NewMatrix(g, tensor.Float32, gorgonia.WithShape(rows, d), gorgonia.WithName("w"),
			gorgonia.WithValue(tensor.New(tensor.WithShape(rows, d), tensor.WithBacking(randF32(rows*d)))))
	}
	lab := NewLabels(classes)
	if err := lab.Set(labels); err != nil {
		b.Fatal(err)
	}
	benchGraph(b, h, x, w, lab, n)
}

// BenchmarkPairLosses times each pair loss at N = 128 (32 identities × 4
// photos), D = 512, with its default hyper-parameters.
func BenchmarkPairLosses(b *testing.B) {
	must := mustLoss(b)
	heads := []struct {
		name string
		head Loss
	}{
		{"contrastive", must(NewContrastive(DefaultContrastivePosMargin, DefaultContrastiveNegMargin))},
		{"triplet-all", must(NewTriplet(DefaultTripletMargin, MineAll))},
		{"triplet-hard", must(NewTriplet(DefaultTripletMargin, MineHard))},
		{"triplet-semi-hard", must(NewTriplet(DefaultTripletMargin, MineSemiHard))},
		{"npair-mc", must(NewNPair(NPairMC))},
		{"npair-ovo", must(NewNPair(NPairOVO))},
		{"lifted", must(NewLiftedStructure(DefaultLiftedMargin))},
		{"multisimilarity", must(NewMultiSimilarity(DefaultMSAlpha, DefaultMSBeta, DefaultMSMargin))},
	}
	for _, tc := range heads {
		b.Run(tc.name, func(b *testing.B) { benchMetric(b, tc.head, 32) })
	}
}

// BenchmarkProxyLosses times the proxy losses at N = 128 (32 identities × 4
// photos), D = 512 and C = 4 000 classes (SoftTriple with K = 2 centres per
// class: 8 000 rows), with the gradients of x and of the proxies.
func BenchmarkProxyLosses(b *testing.B) {
	const classes = 4000
	must := mustLoss(b)
	heads := []struct {
		name string
		head Loss
	}{
		{"proxynca", must(NewProxyNCA(DefaultProxyNCAScale))},
		{"proxyanchor", must(NewProxyAnchor(DefaultProxyAnchorAlpha, DefaultProxyAnchorMargin))},
		{"softtriple-k2", must(NewSoftTriple(2, DefaultSoftTripleGamma, DefaultSoftTripleLambda, DefaultSoftTripleDelta, DefaultSoftTripleTau))},
	}
	for _, tc := range heads {
		b.Run(tc.name, func(b *testing.B) { benchMetric(b, tc.head, classes) })
	}
}
