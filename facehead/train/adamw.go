package train

import (
	"fmt"
	"math"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// adamW is Adam with decoupled weight decay (Loshchilov & Hutter, "Decoupled
// Weight Decay Regularization", ICLR 2019) over gorgonia nodes' values, in
// place; it zeroes the gradients after each step.
type adamW struct {
	nodes   gorgonia.Nodes
	decay   []bool
	lrScale []float64 // per node, multiplies the step's learning rate
	wd      float64
	m, v    [][]float32
	t       int
}

func newAdamW(nodes gorgonia.Nodes, decay []bool, lrScale []float64, wd float64) *adamW {
	a := &adamW{nodes: nodes, decay: decay, lrScale: lrScale, wd: wd}
	for _, n := range nodes {
		size := n.Shape().TotalSize()
		a.m = append(a.m, make([]float32, size))
		a.v = append(a.v, make([]float32, size))
	}
	return a
}

func (a *adamW) step(lr float64) error {
	const b1, b2, eps = 0.9, 0.999, 1e-8
	a.t++
	c1 := 1 - math.Pow(b1, float64(a.t))
	c2 := 1 - math.Pow(b2, float64(a.t))
	for k, n := range a.nodes {
		gv, err := n.Grad()
		if err != nil {
			return fmt.Errorf("gradient of %s: %w", n.Name(), err)
		}
		gd := gv.(*tensor.Dense)
		g := gd.Float32s()
		p := n.Value().Data().([]float32)
		m, v := a.m[k], a.v[k]
		lr := lr * a.lrScale[k]
		shrink := float32(1)
		if a.decay[k] {
			shrink = float32(1 - lr*a.wd)
		}
		for i, gi := range g {
			m[i] = b1*m[i] + (1-b1)*gi
			v[i] = b2*v[i] + (1-b2)*gi*gi
			mh := float64(m[i]) / c1
			vh := float64(v[i]) / c2
			p[i] = p[i]*shrink - float32(lr*mh/(math.Sqrt(vh)+eps))
		}
		gd.Zero()
	}
	return nil
}
