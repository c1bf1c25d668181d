package margin

import (
	"math/rand/v2"
	"testing"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// benchLoss times one training step's forward and backward pass in float32
// at the size, N = 256, D = 512, C = 10 000 (PyTorch 1.13 on this
// machine, ArcFace: 213 ms per batch, 1 200 samples/s).
func benchLoss(b *testing.B, mk func(c, d int) Loss) {
	const n, d, c = 256, 512, 10000
	r := rand.New(rand.NewPCG(1, 1))
	xs := make([]float32, n*d)
	ws := make([]float32, c*d)
	for i := range xs {
		xs[i] = float32(r.NormFloat64())
	}
	for i := range ws {
		ws[i] = float32(r.NormFloat64() * 0.01)
	}
	labels := make([]int, n)
	for i := range labels {
		labels[i] = r.IntN(c)
	}
	g := gorgonia.NewGraph()
	x := gorgonia.NewMatrix(g, tensor.Float32, gorgonia.WithShape(n, d), gorgonia.WithName("x"),
		gorgonia.WithValue(tensor.New(tensor.WithShape(n, d), tensor.WithBacking(xs))))
	w := gorgonia.NewMatrix(g, tensor.Float32, gorgonia.WithShape(c, d), gorgonia.WithName("w"),
		gorgonia.WithValue(tensor.New(tensor.WithShape(c, d), tensor.WithBacking(ws))))
	lab := NewLabels(c)
	if err := lab.Set(labels); err != nil {
		b.Fatal(err)
	}
	benchGraph(b, mk(c, d), x, w, lab, n)
}

// benchGraph builds h's loss on x and w (nil for the pair losses) with the
// gradients of both, then times forward and backward runs, reporting
// samples/s for batches of n.
func benchGraph(b *testing.B, h Loss, x, w *gorgonia.Node, lab *Labels, n int) {
	learn := gorgonia.Nodes{x}
	if w != nil {
		learn = append(learn, w)
	}
	cost, err := h.Build(x, w, lab)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := gorgonia.Grad(cost, learn...); err != nil {
		b.Fatal(err)
	}
	vm := gorgonia.NewTapeMachine(x.Graph(), gorgonia.BindDualValues(learn...))
	defer vm.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := vm.RunAll(); err != nil {
			b.Fatal(err)
		}
		vm.Reset()
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "samples/s")
}

func BenchmarkSoftmax(b *testing.B) {
	benchLoss(b, func(int, int) Loss { return NewSoftmax() })
}

func BenchmarkArcFace(b *testing.B) {
	benchLoss(b, func(int, int) Loss { h, _ := NewArcFace(DefaultScale, DefaultArcFaceMargin, false); return h })
}

func BenchmarkCosFace(b *testing.B) {
	benchLoss(b, func(int, int) Loss { h, _ := NewCosFace(DefaultScale, DefaultCosFaceMargin); return h })
}

func BenchmarkSphereFace(b *testing.B) {
	benchLoss(b, func(int, int) Loss { h, _ := NewSphereFace(DefaultSphereFaceM, 5); return h })
}

func BenchmarkCenterLoss(b *testing.B) {
	benchLoss(b, func(c, d int) Loss {
		centers := make([][]float64, c)
		for i := range centers {
			centers[i] = make([]float64, d)
		}
		h, _ := NewCenterLoss(DefaultCenterLambda, centers)
		return h
	})
}

func BenchmarkCombined(b *testing.B) {
	benchLoss(b, func(int, int) Loss { h, _ := NewCombined(DefaultScale, 1, 0.3, 0.2); return h })
}
