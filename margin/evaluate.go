package margin

import (
	"fmt"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Evaluate returns the mean loss over the batch and its gradients with respect to x and w.
//
// x holds N features of dimension D and labels one class per feature. w holds
// the class weights or proxies (WeightRows(h, C) rows of dimension D: one per
// class, K per class for SoftTriple) and is nil for the pair losses, whose
// gradW is then nil too. It builds h's graph in float64 — the very graph
// training runs, in float32 — differentiates it with gorgonia.Grad and runs
// it on a tape machine. Empty or ragged input, NaN or Inf, a dimension
// mismatch or a label out of range is an error, and so is a batch the loss is
// not defined on (see ErrDegenerateBatch).
func Evaluate(h Loss, x, w [][]float64, labels []int) (loss float64, gradX, gradW [][]float64, err error) {
	if h == nil {
		return 0, nil, nil, fmt.Errorf("margin: nil loss")
	}
	xs, n, d, err := flatten("x", x)
	if err != nil {
		return 0, nil, nil, err
	}
	if len(labels) != n {
		return 0, nil, nil, fmt.Errorf("margin: %d labels for %d samples", len(labels), n)
	}
	perClass := WeightRows(h, 1) // rows of w per class; 0 for the pair losses
	pair := perClass == 0
	var ws []float64
	var c int
	classes := 0
	if pair {
		if len(w) != 0 {
			return 0, nil, nil, fmt.Errorf("margin: %s is a pair loss and takes no class weights: pass w = nil", h.Name())
		}
		for _, v := range labels {
			classes = max(classes, v+1)
		}
	} else {
		var dw int
		if ws, c, dw, err = flatten("w", w); err != nil {
			return 0, nil, nil, err
		}
		if d != dw {
			return 0, nil, nil, fmt.Errorf("margin: x has dimension %d, w has %d", d, dw)
		}
		if c%perClass != 0 {
			return 0, nil, nil, fmt.Errorf("margin: %s needs %d rows of w per class, got %d rows", h.Name(), perClass, c)
		}
		classes = c / perClass
	}
	lab := NewLabels(classes)
	if err := lab.Set(labels); err != nil {
		return 0, nil, nil, err
	}
	if err := CheckBatch(h, labels); err != nil {
		return 0, nil, nil, err
	}

	g := gorgonia.NewGraph()
	xn := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(n, d), gorgonia.WithName("x"),
		gorgonia.WithValue(tensor.New(tensor.WithShape(n, d), tensor.WithBacking(xs))))
	learn := gorgonia.Nodes{xn}
	var wn *gorgonia.Node
	if !pair {
		wn = gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(c, d), gorgonia.WithName("w"),
			gorgonia.WithValue(tensor.New(tensor.WithShape(c, d), tensor.WithBacking(ws))))
		learn = append(learn, wn)
	}
	cost, err := h.Build(xn, wn, lab)
	if err != nil {
		return 0, nil, nil, err
	}
	if _, err := gorgonia.Grad(cost, learn...); err != nil {
		return 0, nil, nil, fmt.Errorf("margin: %s: gradient: %w", h.Name(), err)
	}
	vm := gorgonia.NewTapeMachine(g, gorgonia.BindDualValues(learn...))
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		return 0, nil, nil, fmt.Errorf("margin: %s: run: %w", h.Name(), err)
	}
	loss, err = scalarValue(cost.Value())
	if err != nil {
		return 0, nil, nil, err
	}
	if gradX, err = gradRows(xn, n, d); err != nil {
		return 0, nil, nil, err
	}
	if wn != nil {
		if gradW, err = gradRows(wn, c, d); err != nil {
			return 0, nil, nil, err
		}
	}
	return loss, gradX, gradW, nil
}

func flatten(name string, m [][]float64) ([]float64, int, int, error) {
	if len(m) == 0 || len(m[0]) == 0 {
		return nil, 0, 0, fmt.Errorf("margin: %s is empty", name)
	}
	d := len(m[0])
	out := make([]float64, 0, len(m)*d)
	for i, row := range m {
		if len(row) != d {
			return nil, 0, 0, fmt.Errorf("margin: %s row %d has %d values, row 0 has %d", name, i, len(row), d)
		}
		if !finite(row...) {
			return nil, 0, 0, fmt.Errorf("margin: %s row %d is not finite", name, i)
		}
		out = append(out, row...)
	}
	return out, len(m), d, nil
}

func scalarValue(v gorgonia.Value) (float64, error) {
	switch s := v.Data().(type) {
	case float64:
		return s, nil
	case float32:
		return float64(s), nil
	case []float64:
		if len(s) == 1 {
			return s[0], nil
		}
	}
	return 0, fmt.Errorf("margin: loss is %T, want a scalar", v.Data())
}

func gradRows(n *gorgonia.Node, rows, cols int) ([][]float64, error) {
	gv, err := n.Grad()
	if err != nil {
		return nil, fmt.Errorf("margin: gradient of %s: %w", n.Name(), err)
	}
	flat, ok := gv.Data().([]float64)
	if !ok || len(flat) != rows*cols {
		return nil, fmt.Errorf("margin: gradient of %s is %T of %d values", n.Name(), gv.Data(), len(flat))
	}
	out := make([][]float64, rows)
	for i := range out {
		out[i] = append([]float64(nil), flat[i*cols:(i+1)*cols]...)
	}
	return out, nil
}
