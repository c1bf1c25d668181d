package margin

import (
	"math"
	"math/rand/v2"
	"testing"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// TestFloat32MatchesEvaluate runs each head's graph in float32, as training
// does, and compares loss and gradients with Evaluate's float64 run. It also
// runs the graph twice with different labels to check that one graph serves
// several batches (with the gradients zeroed between runs).
func TestFloat32MatchesEvaluate(t *testing.T) {
	const n, d, c = 6, 5, 4
	for name, head := range allLosses(t, c, d) {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(3, 4))
			x, w := randMat(r, n, d, 1), randMat(r, c, d, 1)
			flat32 := func(m [][]float64) []float32 {
				var out []float32
				for _, row := range m {
					for _, v := range row {
						out = append(out, float32(v))
					}
				}
				return out
			}
			g := gorgonia.NewGraph()
			xn := gorgonia.NewMatrix(g, tensor.Float32, gorgonia.WithShape(n, d), gorgonia.WithName("x"),
				gorgonia.WithValue(tensor.New(tensor.WithShape(n, d), tensor.WithBacking(flat32(x)))))
			wn := gorgonia.NewMatrix(g, tensor.Float32, gorgonia.WithShape(c, d), gorgonia.WithName("w"),
				gorgonia.WithValue(tensor.New(tensor.WithShape(c, d), tensor.WithBacking(flat32(w)))))
			lab := NewLabels(c)
			cost, err := head.Build(xn, wn, lab)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := gorgonia.Grad(cost, xn, wn); err != nil {
				t.Fatal(err)
			}
			vm := gorgonia.NewTapeMachine(g, gorgonia.BindDualValues(xn, wn))
			defer vm.Close()
			for _, labels := range [][]int{{0, 1, 2, 3, 1, 2}, {3, 3, 0, 1, 2, 0}} {
				if err := lab.Set(labels); err != nil {
					t.Fatal(err)
				}
				if err := vm.RunAll(); err != nil {
					t.Fatal(err)
				}
				want, gx, gw, err := Evaluate(head, x, w, labels)
				if err != nil {
					t.Fatal(err)
				}
				got := float64(cost.Value().Data().(float32))
				if math.Abs(got-want) > 1e-4*(1+math.Abs(want)) {
					t.Errorf("labels %v: float32 loss %v, float64 %v", labels, got, want)
				}
				cmp := func(which string, node *gorgonia.Node, ref [][]float64) {
					gv, err := node.Grad()
					if err != nil {
						t.Fatal(err)
					}
					for k, v := range gv.Data().([]float32) {
						i, j := k/d, k%d
						if math.Abs(float64(v)-ref[i][j]) > 1e-3*(1+math.Abs(ref[i][j])) {
							t.Errorf("labels %v: d/d%s[%d][%d] float32 %v, float64 %v", labels, which, i, j, v, ref[i][j])
						}
					}
				}
				cmp("x", xn, gx)
				cmp("w", wn, gw)
				vm.Reset()
				// The tape machine adds into the bound gradients: zero them
				// between runs, as gorgonia's solvers do after each step.
				for _, node := range []*gorgonia.Node{xn, wn} {
					gv, _ := node.Grad()
					gv.(*tensor.Dense).Zero()
				}
			}
		})
	}
}
