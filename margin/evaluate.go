package margin

import (
	"fmt"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Evaluate returns the mean loss over the batch and its gradients with respect to x and w.
//
// x holds N features of dimension D, w one weight row of dimension D per
// class, labels one class per feature. It builds h's graph in float64 — the
// very graph training runs, in float32 — differentiates it with gorgonia.Grad
// and runs it on a tape machine. Empty or ragged input, NaN or Inf, a
// dimension mismatch or a label out of range is an error.
func Evaluate(h Head, x, w [][]float64, labels []int) (loss float64, gradX, gradW [][]float64, err error) {
	if h == nil {
		return 0, nil, nil, fmt.Errorf("margin: nil head")
	}
	xs, n, d, err := flatten("x", x)
	if err != nil {
		return 0, nil, nil, err
	}
	ws, c, dw, err := flatten("w", w)
	if err != nil {
		return 0, nil, nil, err
	}
	if d != dw {
		return 0, nil, nil, fmt.Errorf("margin: x has dimension %d, w has %d", d, dw)
	}
	if len(labels) != n {
		return 0, nil, nil, fmt.Errorf("margin: %d labels for %d samples", len(labels), n)
	}
	lab := NewLabels(c)
	if err := lab.Set(labels); err != nil {
		return 0, nil, nil, err
	}

	g := gorgonia.NewGraph()
	xn := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(n, d), gorgonia.WithName("x"),
		gorgonia.WithValue(tensor.New(tensor.WithShape(n, d), tensor.WithBacking(xs))))
	wn := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(c, d), gorgonia.WithName("w"),
		gorgonia.WithValue(tensor.New(tensor.WithShape(c, d), tensor.WithBacking(ws))))
	cost, err := h.Loss(xn, wn, lab)
	if err != nil {
		return 0, nil, nil, err
	}
	if _, err := gorgonia.Grad(cost, xn, wn); err != nil {
		return 0, nil, nil, fmt.Errorf("margin: %s: gradient: %w", h.Name(), err)
	}
	vm := gorgonia.NewTapeMachine(g, gorgonia.BindDualValues(xn, wn))
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
	if gradW, err = gradRows(wn, c, d); err != nil {
		return 0, nil, nil, err
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
