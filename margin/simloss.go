package margin

import (
	"errors"
	"fmt"
	"math"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// This file holds what the pair and proxy losses share: one custom op that
// turns a similarity matrix S (N×M: the batch against itself for the pair
// losses, against the proxies for the proxy losses) into the loss, with the
// gradient dL/dS computed in the same pass. The cosines themselves come from
// the row normalisation and matrix product ops, so gradients flow through
// both normalisations to the features and the proxies.

// ErrDegenerateBatch is wrapped by the error a loss returns for a batch on
// which it is not defined: a triplet loss on a batch without two photos of
// one identity and one of another, an N-pair loss without two identities with
// two photos each, a lifted-structure loss without an anchor that has both a
// positive and a negative. Draw P ≥ 2 identities × K ≥ 2 photos per batch.
var ErrDegenerateBatch = errors.New("degenerate batch")

func degenerate(loss, why string) error {
	return fmt.Errorf("margin: %s: %w: %s; draw batches of P ≥ 2 identities × K ≥ 2 photos each", loss, ErrDegenerateBatch, why)
}

// simFunc computes a loss from the similarity matrix s (n×m, row-major), the
// rows' labels and the columns' labels (the class of each proxy, or the
// batch's labels again). It adds dL/ds into grad (zero on entry) and returns
// the loss and how many rows it counts as correct (nearest column of the
// row's own label).
type simFunc func(s []float64, n, m int, rowY, colY []int, grad []float64) (loss float64, correct int, err error)

// simState carries a forward pass's gradient to the backward pass of the
// same run.
type simState struct {
	s, grad []float64
	valid   bool
}

// simLoss returns the loss f computes from s (N×M) as a vector of length 1.
// colY gives the columns' labels for a batch of N rows (whose labels l holds)
// and M columns.
func simLoss(s *gorgonia.Node, name, key string, l *Labels, colY func(rowY []int, m int) ([]int, error), f simFunc) (*gorgonia.Node, error) {
	st := &simState{}
	key = fmt.Sprintf("%s,%s", l.key(), key)
	one := func([]tensor.Shape) (tensor.Shape, error) { return tensor.Shape{1}, nil }
	o := &op{name: name, key: key, inDims: []int{2}, outDims: 1, shape: one, wrt: []bool{true}}
	o.k32, o.k64 = both(simK[float32](l, st, colY, f), simK[float64](l, st, colY, f))
	o.diff = func(in gorgonia.Nodes, out, g *gorgonia.Node) (gorgonia.Nodes, error) {
		d := &op{name: name + "grad", key: fmt.Sprintf("%s,%p", key, st), inDims: []int{2, 1}, outDims: 2, shape: sameAs(0)}
		d.k32, d.k64 = both(simGradK[float32](l, st, colY, f), simGradK[float64](l, st, colY, f))
		n, err := apply(d, in[0], g)
		return gorgonia.Nodes{n}, err
	}
	return apply(o, s)
}

// simRun copies s (n×m) into st as float64 and evaluates f on it, keeping
// the gradient in st for the backward pass.
func simRun[T float](st *simState, l *Labels, colY func([]int, int) ([]int, error), f simFunc, s []T, n, m int) (float64, int, error) {
	st.valid = false
	cy, err := colY(l.y, m)
	if err != nil {
		return 0, 0, err
	}
	st.s = grow(&st.s, n*m)
	for i, v := range s {
		st.s[i] = float64(v)
	}
	st.grad = grow(&st.grad, n*m)
	clear(st.grad)
	loss, correct, err := f(st.s, n, m, l.y, cy, st.grad)
	if err != nil {
		return 0, 0, err
	}
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return 0, 0, fmt.Errorf("margin: loss is %v", loss)
	}
	st.valid = true
	return loss, correct, nil
}

func simK[T float](l *Labels, st *simState, colY func([]int, int) ([]int, error), f simFunc) func(c *call, in [][]T, out []T) error {
	return func(c *call, in [][]T, out []T) error {
		n, m := c.in[0][0], c.in[0][1]
		if err := l.check(n, -1); err != nil {
			return err
		}
		loss, correct, err := simRun(st, l, colY, f, in[0], n, m)
		if err != nil {
			return err
		}
		l.correct.Store(int64(correct))
		out[0] = T(loss)
		return nil
	}
}

func simGradK[T float](l *Labels, st *simState, colY func([]int, int) ([]int, error), f simFunc) func(c *call, in [][]T, out []T) error {
	return func(c *call, in [][]T, out []T) error {
		n, m := c.in[0][0], c.in[0][1]
		if err := l.check(n, -1); err != nil {
			return err
		}
		if !st.valid || len(st.grad) != n*m {
			// No forward pass of this run to reuse: recompute.
			if _, _, err := simRun(st, l, colY, f, in[0], n, m); err != nil {
				return err
			}
		}
		g := float64(in[1][0])
		for i, v := range st.grad {
			out[i] = T(g * v)
		}
		return nil
	}
}

// batchLabels is the colY of the pair losses: the columns are the batch.
func batchLabels(rowY []int, m int) ([]int, error) {
	if m != len(rowY) {
		return nil, fmt.Errorf("margin: %d columns for a batch of %d", m, len(rowY))
	}
	return rowY, nil
}

// proxyLabels is the colY of losses with k proxies per class, the proxies of
// class c in rows c·k … c·k+k−1 of w.
func proxyLabels(l *Labels, k int) func([]int, int) ([]int, error) {
	var cy []int
	return func(_ []int, m int) ([]int, error) {
		if m != l.classes*k {
			return nil, fmt.Errorf("margin: %d proxies for %d classes × %d", m, l.classes, k)
		}
		if len(cy) != m {
			cy = make([]int, m)
			for j := range cy {
				cy[j] = j / k
			}
		}
		return cy, nil
	}
}

// selfCosines returns S = x̂x̂ᵀ (N×N).
func selfCosines(x *gorgonia.Node) (*gorgonia.Node, error) {
	xh, err := l2NormRows(x)
	if err != nil {
		return nil, err
	}
	return matMul(xh, xh, false, true)
}

// sumLoss turns simLoss's one-element vector into the scalar loss.
func sumLoss(v *gorgonia.Node, err error) (*gorgonia.Node, error) {
	if err != nil {
		return nil, err
	}
	s, err := gorgonia.Sum(v)
	if err != nil {
		return nil, fmt.Errorf("margin: sum: %w", err)
	}
	return s, nil
}

// nearestCorrect counts the rows whose most similar other sample (the
// diagonal excluded) shares their label: in-batch recall@1, the pair
// losses' accuracy.
func nearestCorrect(s []float64, n int, y []int) int {
	ok := 0
	for i := 0; i < n; i++ {
		best, arg := math.Inf(-1), -1
		for j := 0; j < n; j++ {
			if j != i && s[i*n+j] > best {
				best, arg = s[i*n+j], j
			}
		}
		if arg >= 0 && y[arg] == y[i] {
			ok++
		}
	}
	return ok
}

// softplusSum returns log(1 + Σ_k exp(z_k)) and writes into w the weights
// exp(z_k) / (1 + Σ exp z), its derivatives.
func softplusSum(z, w []float64) float64 { return logSumExpOf(z, w, true) }

// logSumExp returns log Σ_k exp(z_k) (z not empty) and writes the softmax of
// z, its derivatives, into w.
func logSumExp(z, w []float64) float64 { return logSumExpOf(z, w, false) }

// logSumExpOf is log(Σ_k exp(z_k)), with a term exp(0) = 1 added when one is
// set, and its derivatives in w; the largest exponent is factored out so
// that large z do not overflow.
func logSumExpOf(z, w []float64, one bool) float64 {
	mx := math.Inf(-1)
	if one {
		mx = 0
	}
	for _, v := range z {
		mx = max(mx, v)
	}
	var sum float64
	if one {
		sum = math.Exp(-mx)
	}
	for k, v := range z {
		w[k] = math.Exp(v - mx)
		sum += w[k]
	}
	for k := range w {
		w[k] /= sum
	}
	return mx + math.Log(sum)
}

// checkPair validates a pair loss's inputs: x a matrix, no weights.
func checkPair(name string, x, w *gorgonia.Node, labels *Labels) error {
	if x == nil || labels == nil {
		return fmt.Errorf("margin: nil x or labels")
	}
	if w != nil {
		return fmt.Errorf("margin: %s is a pair loss and takes no class weights: pass w = nil", name)
	}
	if x.Dims() != 2 {
		return fmt.Errorf("margin: x must be a matrix, got shape %v", x.Shape())
	}
	return nil
}

// checkProxies validates a proxy loss's inputs: x (N×D) and k proxies per
// class in w (C·k×D).
func checkProxies(name string, x, w *gorgonia.Node, labels *Labels, k int) error {
	if x == nil || w == nil || labels == nil {
		return fmt.Errorf("margin: %s: nil x, proxies or labels", name)
	}
	if x.Dims() != 2 || w.Dims() != 2 {
		return fmt.Errorf("margin: x and the proxies must be matrices, got shapes %v and %v", x.Shape(), w.Shape())
	}
	if x.Shape()[1] != w.Shape()[1] {
		return fmt.Errorf("margin: feature dimension %d of x differs from %d of the proxies", x.Shape()[1], w.Shape()[1])
	}
	if w.Shape()[0] != labels.Classes()*k {
		return fmt.Errorf("margin: %s needs %d proxies per class, %d in all for %d classes; got %d", name, k, labels.Classes()*k, labels.Classes(), w.Shape()[0])
	}
	return nil
}

// CheckBatch reports whether h is defined on a batch with these labels: nil,
// or an error wrapping ErrDegenerateBatch that says what the batch lacks.
// Evaluate calls it before running the graph; a training loop that draws its
// own batches can call it to skip or redraw one.
func CheckBatch(h Loss, labels []int) error {
	if len(labels) == 0 {
		return fmt.Errorf("margin: empty batch")
	}
	if c, ok := h.(interface{ checkBatch([]int) error }); ok {
		return c.checkBatch(labels)
	}
	return nil
}

// hasTriplet reports whether some sample has both another sample of its
// identity and one of another identity in the batch.
func hasTriplet(y []int) bool {
	count := map[int]int{}
	for _, v := range y {
		count[v]++
	}
	if len(count) < 2 {
		return false
	}
	for _, c := range count {
		if c >= 2 {
			return true
		}
	}
	return false
}

// WeightRows returns how many rows of w a loss reads for the given number of
// classes: one per class for the classification heads, ProxyNCA and Proxy
// Anchor, K per class for SoftTriple, none for the pair losses (contrastive,
// triplet, N-pair, lifted structure, multi-similarity), which take w = nil.
func WeightRows(h Loss, classes int) int {
	if r, ok := h.(interface{ weightRows(int) int }); ok {
		return r.weightRows(classes)
	}
	return classes
}
