package margin

import (
	"fmt"

	"gorgonia.org/gorgonia"
)

// CenterLoss is softmax cross-entropy on W·x plus the centre term of Wen et
// al., "A Discriminative Feature Learning Approach for Deep Face
// Recognition", ECCV 2016: L = CE + (λ/2)·(1/N)·Σ_i ‖x_i − c_{y_i}‖². The
// centres are constants for the gradient; UpdateCenters moves them after each
// step (the paper's α rule).
type CenterLoss struct {
	lambda  float64
	centers [][]float64
	lastX   []float64 // the features of the last forward pass, N×D
	lastY   []int     // and their labels
	// alpha is the centre rate AfterStep applies; stepped says that New
	// built the loss for training (with alpha) rather than NewCenterLoss.
	alpha   float64
	stepped bool
}

// newTrainCenter returns the Center loss New builds: λ ≥ 0, the centre rate
// α ∈ [0, 1] that AfterStep applies, and no centres until InitClasses.
func newTrainCenter(lambda, alpha float64) (*CenterLoss, error) {
	if !finite(lambda) || lambda < 0 {
		return nil, fmt.Errorf("margin: center loss needs a finite λ ≥ 0, got %v", lambda)
	}
	if !finite(alpha) || alpha < 0 || alpha > 1 {
		return nil, fmt.Errorf("margin: center loss needs a centre rate α in [0, 1], got %v", alpha)
	}
	return &CenterLoss{lambda: lambda, alpha: alpha, stepped: true}, nil
}

// InitClasses implements ClassInitializer: the centres start as the class
// means (C×D, finite), which the loss keeps (not a copy).
func (h *CenterLoss) InitClasses(means [][]float64) error {
	if err := checkCenters(means); err != nil {
		return err
	}
	h.centers = means
	return nil
}

// BeforeStep implements Stepper; it does nothing.
func (h *CenterLoss) BeforeStep(int) error { return nil }

// AfterStep implements Stepper: for a loss built by New, the centres move
// towards the last batch's features with rate α (UpdateLastBatch). With
// λ = 0 the centres play no part and stay.
func (h *CenterLoss) AfterStep() error {
	if !h.stepped || h.lambda == 0 {
		return nil
	}
	return h.UpdateLastBatch(h.alpha)
}

func checkCenters(centers [][]float64) error {
	if len(centers) == 0 || len(centers[0]) == 0 {
		return fmt.Errorf("margin: center loss needs C×D centres, got none")
	}
	d := len(centers[0])
	for j, c := range centers {
		if len(c) != d {
			return fmt.Errorf("margin: centre %d has %d values, centre 0 has %d", j, len(c), d)
		}
		if !finite(c...) {
			return fmt.Errorf("margin: centre %d is not finite", j)
		}
	}
	return nil
}

// NewCenterLoss returns a Center-loss head with λ ≥ 0 and one centre per class
// (C×D, finite). The head keeps centers itself (not a copy) and reads them at
// every run, so UpdateCenters(h.Centers(), ...) takes effect on the next step.
func NewCenterLoss(lambda float64, centers [][]float64) (*CenterLoss, error) {
	if !finite(lambda) || lambda < 0 {
		return nil, fmt.Errorf("margin: center loss needs a finite λ ≥ 0, got %v", lambda)
	}
	if err := checkCenters(centers); err != nil {
		return nil, err
	}
	return &CenterLoss{lambda: lambda, centers: centers}, nil
}

// Name implements Loss.
func (*CenterLoss) Name() string { return "center" }

// Params implements Loss; a loss built by New also reports its centre rate
// "alpha".
func (h *CenterLoss) Params() map[string]float64 {
	if h.stepped {
		return map[string]float64{"lambda": h.lambda, "alpha": h.alpha}
	}
	return map[string]float64{"lambda": h.lambda}
}

// Centers returns the centres the head reads (not a copy).
func (h *CenterLoss) Centers() [][]float64 { return h.centers }

// Build implements Loss.
func (h *CenterLoss) Build(x, w *gorgonia.Node, labels *Labels) (*gorgonia.Node, error) {
	if err := checkNodes(x, w, labels); err != nil {
		return nil, err
	}
	if len(h.centers) == 0 {
		return nil, fmt.Errorf("margin: center loss has no centres yet (InitClasses sets them)")
	}
	if len(h.centers) != labels.Classes() || len(h.centers[0]) != x.Shape()[1] {
		return nil, fmt.Errorf("margin: %d×%d centres for %d classes of dimension %d",
			len(h.centers), len(h.centers[0]), labels.Classes(), x.Shape()[1])
	}
	z, err := matMul(x, w, false, true)
	if err != nil {
		return nil, err
	}
	ce, err := meanCE(z, labels, 1)
	if err != nil {
		return nil, err
	}
	if h.lambda == 0 {
		return ce, nil
	}
	dist, err := h.dist(x, labels)
	if err != nil {
		return nil, err
	}
	md, err := gorgonia.Mean(dist)
	if err != nil {
		return nil, err
	}
	t, err := gorgonia.Mul(md, constant(md, h.lambda/2))
	if err != nil {
		return nil, err
	}
	return gorgonia.Add(ce, t)
}

// dist returns ‖x_i − c_{y_i}‖² with gradient 2(x_i − c_{y_i}).
func (h *CenterLoss) dist(x *gorgonia.Node, labels *Labels) (*gorgonia.Node, error) {
	key := fmt.Sprintf("%p,%s", h, labels.key())
	o := &op{name: "centerdist", key: key, inDims: []int{2}, outDims: 1, shape: rowsOf(0), wrt: []bool{true}}
	o.k32, o.k64 = both(centerDistK[float32](h, labels), centerDistK[float64](h, labels))
	o.diff = func(in gorgonia.Nodes, out, g *gorgonia.Node) (gorgonia.Nodes, error) {
		d := &op{name: "centerdistgrad", key: key, inDims: []int{2, 1}, outDims: 2, shape: sameAs(0)}
		d.k32, d.k64 = both(centerDistGradK[float32](h, labels), centerDistGradK[float64](h, labels))
		n, err := apply(d, in[0], g)
		return gorgonia.Nodes{n}, err
	}
	return apply(o, x)
}

func centerDistK[T float](h *CenterLoss, l *Labels) func(c *call, in [][]T, out []T) error {
	return func(c *call, in [][]T, out []T) error {
		r, d := c.in[0][0], c.in[0][1]
		if err := l.check(r, -1); err != nil {
			return err
		}
		// Keep the batch for UpdateLastBatch: the graph's own values may be
		// overwritten later in the run (gorgonia reuses registers).
		if cap(h.lastX) < r*d {
			h.lastX = make([]float64, r*d)
		}
		h.lastX = h.lastX[:r*d]
		for i, v := range in[0] {
			h.lastX[i] = float64(v)
		}
		h.lastY = append(h.lastY[:0], l.y...)
		for i, y := range l.y {
			var s float64
			cy := h.centers[y]
			for j, v := range in[0][i*d : (i+1)*d] {
				e := float64(v) - cy[j]
				s += e * e
			}
			out[i] = T(s)
		}
		return nil
	}
}

func centerDistGradK[T float](h *CenterLoss, l *Labels) func(c *call, in [][]T, out []T) error {
	return func(c *call, in [][]T, out []T) error {
		r, d := c.in[0][0], c.in[0][1]
		if err := l.check(r, -1); err != nil {
			return err
		}
		for i, y := range l.y {
			g2 := 2 * float64(in[1][i])
			cy := h.centers[y]
			for j, v := range in[0][i*d : (i+1)*d] {
				out[i*d+j] = T(g2 * (float64(v) - cy[j]))
			}
		}
		return nil
	}
}

// UpdateLastBatch applies UpdateCenters with rate alpha to the head's own
// centres, for the features and labels of the last run of a graph built
// from h (the training step just taken). It is an error before any run, or
// with λ = 0 (the graph then has no centre term and keeps no batch).
func (h *CenterLoss) UpdateLastBatch(alpha float64) error {
	if len(h.lastY) == 0 {
		return fmt.Errorf("margin: center loss: no batch has run")
	}
	return UpdateCenters(h.centers, h.lastX, h.lastY, alpha)
}

// UpdateCenters applies one step of Wen et al.'s centre update (ECCV 2016,
// eq. 4 and Algorithm 1) for the batch feats (N rows of D values, flat,
// row-major) with labels:
// Δc_j = Σ_i δ(y_i = j)(c_j − x_i) / (1 + Σ_i δ(y_i = j)), c_j ← c_j − α·Δc_j.
// Classes absent from the batch do not move.
func UpdateCenters[T float32 | float64](centers [][]float64, feats []T, labels []int, alpha float64) error {
	if len(centers) == 0 || len(labels) == 0 {
		return fmt.Errorf("margin: update centres: empty centres or batch")
	}
	d := len(centers[0])
	if len(feats) != len(labels)*d {
		return fmt.Errorf("margin: update centres: %d values for %d samples of dimension %d", len(feats), len(labels), d)
	}
	if !finite(alpha) || alpha < 0 || alpha > 1 {
		return fmt.Errorf("margin: update centres: α must be in [0, 1], got %v", alpha)
	}
	for i, y := range labels {
		if y < 0 || y >= len(centers) {
			return fmt.Errorf("margin: update centres: label %d of sample %d out of range [0, %d)", y, i, len(centers))
		}
	}
	count := map[int]int{}
	delta := map[int][]float64{}
	for i, y := range labels {
		count[y]++
		dy := delta[y]
		if dy == nil {
			dy = make([]float64, d)
			delta[y] = dy
		}
		for j := range dy {
			dy[j] += centers[y][j] - float64(feats[i*d+j])
		}
	}
	for y, dy := range delta {
		k := alpha / float64(1+count[y])
		for j := range dy {
			centers[y][j] -= k * dy[j]
		}
	}
	return nil
}
