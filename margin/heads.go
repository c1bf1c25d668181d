package margin

import (
	"fmt"
	"math"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Loss is a training loss over a batch of features and, for the
// classification and proxy losses, class weights or proxies: it builds, on
// the graph that holds x (N×D features) and w (WeightRows(l, C)×D, nil for
// the pair losses), the mean loss over the batch, reading the batch's labels
// from labels at run time. The same graph serves training (float32) and
// Evaluate (float64).
type Loss interface {
	// Name returns the loss's short name ("arcface", "triplet", "proxyanchor", ...).
	Name() string
	// Params returns the hyper-parameters, by name, for the record.
	Params() map[string]float64
	// Build adds the mean loss over the batch to x's graph and returns the
	// scalar node. labels must range over the classes of w's rows.
	Build(x, w *gorgonia.Node, labels *Labels) (*gorgonia.Node, error)
}

// Paper defaults (docs/losses.md and the papers cited on each head).
const (
	DefaultScale         = 64.0 // s of ArcFace, CosFace and the combined margin
	DefaultArcFaceMargin = 0.5  // m of ArcFace (Deng et al. 2019)
	DefaultCosFaceMargin = 0.35 // m of CosFace (Wang et al. 2018)
	DefaultSphereFaceM   = 4    // m of SphereFace (Liu et al. 2017)
	DefaultCenterLambda  = 0.003
	DefaultCenterAlpha   = 0.5 // α and λ of Wen et al. 2016, §4.1
)

func finite(v ...float64) bool {
	for _, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return false
		}
	}
	return true
}

func clamp1(c float64) float64 { return max(-1, min(1, c)) }

// constant returns a scalar constant of x's dtype.
func constant(x *gorgonia.Node, v float64) *gorgonia.Node {
	if x.Dtype() == tensor.Float32 {
		return gorgonia.NewConstant(float32(v))
	}
	return gorgonia.NewConstant(v)
}

// cosines returns cos θ_ij = x̂_i·Ŵ_j (N×C), the gradient flowing through both
// normalisations.
func cosines(x, w *gorgonia.Node) (*gorgonia.Node, error) {
	cos, _, err := cosinesAndProxies(x, w)
	return cos, err
}

// cosinesAndProxies is cosines, also returning the normalised ŵ.
func cosinesAndProxies(x, w *gorgonia.Node) (cos, wh *gorgonia.Node, err error) {
	xh, err := l2NormRows(x)
	if err != nil {
		return nil, nil, err
	}
	if wh, err = l2NormRows(w); err != nil {
		return nil, nil, err
	}
	cos, err = matMul(xh, wh, false, true)
	return cos, wh, err
}

// targetMargin returns the mean cross-entropy over the logits
// scale·(cos θ_ij + δ(j = y_i)·(φ(cos θ_iy) − cos θ_iy)), the common form of
// the additive and multiplicative margins (ArcFace paper, eq. 4). The
// optional rowScale (N) multiplies each row after the margin (SphereFace's
// ‖x_i‖).
func targetMargin(cos *gorgonia.Node, labels *Labels, delta func(ct *gorgonia.Node) (*gorgonia.Node, error), scale float64, rowScale *gorgonia.Node) (*gorgonia.Node, error) {
	ct, err := pick(cos, labels)
	if err != nil {
		return nil, err
	}
	d, err := delta(ct)
	if err != nil {
		return nil, err
	}
	z, err := addAt(cos, d, labels)
	if err != nil {
		return nil, err
	}
	if rowScale != nil {
		if z, err = scaleRows(z, rowScale); err != nil {
			return nil, err
		}
	}
	return meanCE(z, labels, scale)
}

func meanCE(z *gorgonia.Node, labels *Labels, scale float64) (*gorgonia.Node, error) {
	ce, err := crossEntropy(z, labels, scale)
	if err != nil {
		return nil, err
	}
	m, err := gorgonia.Mean(ce)
	if err != nil {
		return nil, fmt.Errorf("margin: mean: %w", err)
	}
	return m, nil
}

func checkNodes(x, w *gorgonia.Node, labels *Labels) error {
	if x == nil || w == nil || labels == nil {
		return fmt.Errorf("margin: nil x, w or labels")
	}
	if x.Dims() != 2 || w.Dims() != 2 {
		return fmt.Errorf("margin: x and w must be matrices, got shapes %v and %v", x.Shape(), w.Shape())
	}
	if x.Shape()[1] != w.Shape()[1] {
		return fmt.Errorf("margin: feature dimension %d of x differs from %d of w", x.Shape()[1], w.Shape()[1])
	}
	if w.Shape()[0] != labels.Classes() {
		return fmt.Errorf("margin: w has %d classes, labels range over %d", w.Shape()[0], labels.Classes())
	}
	return nil
}

// ---- Softmax ----

// Softmax is plain softmax cross-entropy on the logits W·x (no bias, no
// normalisation): the baseline of the margin papers.
type Softmax struct{}

// NewSoftmax returns the plain softmax head.
func NewSoftmax() *Softmax { return &Softmax{} }

// Name implements Loss.
func (*Softmax) Name() string { return "softmax" }

// Params implements Loss.
func (*Softmax) Params() map[string]float64 { return map[string]float64{} }

// Build implements Loss.
func (*Softmax) Build(x, w *gorgonia.Node, labels *Labels) (*gorgonia.Node, error) {
	if err := checkNodes(x, w, labels); err != nil {
		return nil, err
	}
	z, err := matMul(x, w, false, true)
	if err != nil {
		return nil, err
	}
	return meanCE(z, labels, 1)
}

// ---- ArcFace ----

// ArcFace is the additive angular margin of Deng et al., "ArcFace: Additive
// Angular Margin Loss for Deep Face Recognition", CVPR 2019: target logit
// s·cos(θ_y + m), other logits s·cos θ_j, with W and x normalised.
type ArcFace struct {
	s, m       float64
	easyMargin bool
}

// NewArcFace returns an ArcFace head; s > 0 and 0 ≤ m < π. With easyMargin the
// margin applies only where cos θ_y > 0; otherwise insightface's fallback
// applies where θ_y + m > π (see ArcFacePhi).
func NewArcFace(s, m float64, easyMargin bool) (*ArcFace, error) {
	if !finite(s, m) || s <= 0 || m < 0 || m >= math.Pi {
		return nil, fmt.Errorf("margin: arcface needs s > 0 and 0 ≤ m < π, got s=%v m=%v", s, m)
	}
	return &ArcFace{s: s, m: m, easyMargin: easyMargin}, nil
}

// Name implements Loss.
func (*ArcFace) Name() string { return "arcface" }

// Params implements Loss.
func (h *ArcFace) Params() map[string]float64 {
	e := 0.0
	if h.easyMargin {
		e = 1
	}
	return map[string]float64{"s": h.s, "m": h.m, "easy_margin": e}
}

// ArcFacePhi returns the ArcFace target cosine for cos θ = c and its
// derivative (sin θ floored at 10⁻⁶ in it), as insightface's ArcFace (recognition/arcface_torch/losses.py)
// computes it: cos(θ+m) = c·cos m − sin θ·sin m with sin θ = √max(1 − c², 0);
// with easyMargin, c itself where c ≤ 0; otherwise, where c ≤ cos(π − m)
// (θ + m > π, where cos(θ+m) stops decreasing in θ), c − m·sin(π − m).
func ArcFacePhi(c, m float64, easyMargin bool) (phi, dphi float64) {
	c = clamp1(c)
	cm, sm := math.Cos(m), math.Sin(m)
	th, mm := math.Cos(math.Pi-m), math.Sin(math.Pi-m)*m
	if easyMargin && c <= 0 {
		return c, 1
	}
	if !easyMargin && c <= th {
		return c - mm, 1
	}
	s := math.Sqrt(max(1-c*c, 0))
	return c*cm - s*sm, cm + c/max(s, 1e-6)*sm
}

// Build implements Loss.
func (h *ArcFace) Build(x, w *gorgonia.Node, labels *Labels) (*gorgonia.Node, error) {
	if err := checkNodes(x, w, labels); err != nil {
		return nil, err
	}
	cos, err := cosines(x, w)
	if err != nil {
		return nil, err
	}
	m, easy := h.m, h.easyMargin
	return targetMargin(cos, labels, func(ct *gorgonia.Node) (*gorgonia.Node, error) {
		return scalarFn(ct, "arcfacedelta", fmt.Sprintf("%v,%v", m, easy),
			func(c float64) float64 { p, _ := ArcFacePhi(c, m, easy); return p - c },
			func(c float64) float64 { _, d := ArcFacePhi(c, m, easy); return d - 1 })
	}, h.s, nil)
}

// ---- CosFace ----

// CosFace is the additive cosine margin of Wang et al., "CosFace: Large
// Margin Cosine Loss for Deep Face Recognition", CVPR 2018: target logit
// s·(cos θ_y − m), other logits s·cos θ_j, with W and x normalised.
type CosFace struct{ s, m float64 }

// NewCosFace returns a CosFace head; s > 0 and 0 ≤ m ≤ 1 (the paper uses
// 0.25–0.45, default 0.35).
func NewCosFace(s, m float64) (*CosFace, error) {
	if !finite(s, m) || s <= 0 || m < 0 || m > 1 {
		return nil, fmt.Errorf("margin: cosface needs s > 0 and 0 ≤ m ≤ 1, got s=%v m=%v", s, m)
	}
	return &CosFace{s: s, m: m}, nil
}

// Name implements Loss.
func (*CosFace) Name() string { return "cosface" }

// Params implements Loss.
func (h *CosFace) Params() map[string]float64 { return map[string]float64{"s": h.s, "m": h.m} }

// Build implements Loss.
func (h *CosFace) Build(x, w *gorgonia.Node, labels *Labels) (*gorgonia.Node, error) {
	if err := checkNodes(x, w, labels); err != nil {
		return nil, err
	}
	cos, err := cosines(x, w)
	if err != nil {
		return nil, err
	}
	m := h.m
	return targetMargin(cos, labels, func(ct *gorgonia.Node) (*gorgonia.Node, error) {
		return scalarFn(ct, "cosfacedelta", fmt.Sprint(m),
			func(float64) float64 { return -m },
			func(float64) float64 { return 0 })
	}, h.s, nil)
}

// ---- Combined margin ----

// Combined is the combined margin of the ArcFace paper (Deng et al. 2019,
// eq. 4; insightface CombinedMarginLoss): target logit
// s·(cos(m1·θ_y + m2) − m3), other logits s·cos θ_j, with W and x normalised.
// θ_y comes from the differentiable Arccos op. (1, 0.5, 0) is ArcFace without
// its θ + m > π fallback, (1, 0, 0.35) CosFace, (1.35, 0, 0) SphereFace-like.
type Combined struct{ s, m1, m2, m3 float64 }

// NewCombined returns a combined-margin head; s > 0, m1 > 0, m2 ≥ 0, m3 ≥ 0.
func NewCombined(s, m1, m2, m3 float64) (*Combined, error) {
	if !finite(s, m1, m2, m3) || s <= 0 || m1 <= 0 || m2 < 0 || m3 < 0 || m2 >= math.Pi || m3 > 1 {
		return nil, fmt.Errorf("margin: combined needs s > 0, m1 > 0, 0 ≤ m2 < π, 0 ≤ m3 ≤ 1, got s=%v m1=%v m2=%v m3=%v", s, m1, m2, m3)
	}
	return &Combined{s: s, m1: m1, m2: m2, m3: m3}, nil
}

// Name implements Loss.
func (*Combined) Name() string { return "combined" }

// Params implements Loss.
func (h *Combined) Params() map[string]float64 {
	return map[string]float64{"s": h.s, "m1": h.m1, "m2": h.m2, "m3": h.m3}
}

// Build implements Loss.
func (h *Combined) Build(x, w *gorgonia.Node, labels *Labels) (*gorgonia.Node, error) {
	if err := checkNodes(x, w, labels); err != nil {
		return nil, err
	}
	cos, err := cosines(x, w)
	if err != nil {
		return nil, err
	}
	return targetMargin(cos, labels, func(ct *gorgonia.Node) (*gorgonia.Node, error) {
		theta, err := Arccos(ct)
		if err != nil {
			return nil, err
		}
		t := theta
		if h.m1 != 1 {
			if t, err = gorgonia.Mul(t, constant(t, h.m1)); err != nil {
				return nil, err
			}
		}
		if h.m2 != 0 {
			if t, err = gorgonia.Add(t, constant(t, h.m2)); err != nil {
				return nil, err
			}
		}
		if t, err = gorgonia.Cos(t); err != nil {
			return nil, err
		}
		if h.m3 != 0 {
			if t, err = gorgonia.Sub(t, constant(t, h.m3)); err != nil {
				return nil, err
			}
		}
		return gorgonia.Sub(t, ct)
	}, h.s, nil)
}

// arccosEps floors 1 − x² in Arccos's derivative, bounding it by 10⁶ at ±1.
const arccosEps = 1e-12

// Arccos returns the element-wise arccosine of x as a differentiable gorgonia
// op. Inputs are clamped to [−1, 1] (rounding can push a normalised cosine just
// past 1), and the derivative −1/√(1 − x²) uses 1 − x² floored at 10⁻¹², so it
// stays finite at and beyond ±1.
func Arccos(x *gorgonia.Node) (*gorgonia.Node, error) {
	return scalarFn(x, "arccos", "",
		func(c float64) float64 { return math.Acos(clamp1(c)) },
		func(c float64) float64 { return -1 / math.Sqrt(max(1-c*c, arccosEps)) })
}
