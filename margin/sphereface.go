package margin

import (
	"fmt"
	"math"

	"gorgonia.org/gorgonia"
)

// SphereFace is the multiplicative angular margin (A-Softmax) of Liu et al.,
// "SphereFace: Deep Hypersphere Embedding for Face Recognition", CVPR 2017,
// as implemented in wy1iu/sphereface's margin_inner_product_layer: W is
// normalised, x is not; the target logit is
// f_y = (λ·‖x‖·cos θ_y + ‖x‖·ψ(θ_y)) / (1 + λ) and the others ‖x‖·cos θ_j,
// with ψ(θ) = (−1)^k·cos(mθ) − 2k on [kπ/m, (k+1)π/m]. k and the sign are
// constants for the gradient. λ is annealed during training (Anneal).
type SphereFace struct {
	m      int
	lambda float64
	anneal *Anneal // the schedule BeforeStep follows; nil: λ stays as set
}

// newAnnealedSphereFace returns the SphereFace loss New builds: λ follows
// the schedule a, starting at a.Lambda(0).
func newAnnealedSphereFace(m int, a Anneal) (*SphereFace, error) {
	if a.Base < 0 || a.Min < 0 || a.Gamma < 0 || !finite(a.Base, a.Min, a.Gamma, a.Power) {
		return nil, fmt.Errorf("margin: sphereface: bad annealing %+v (base, γ and min must be finite and ≥ 0)", a)
	}
	h, err := NewSphereFace(m, a.Lambda(0))
	if err != nil {
		return nil, err
	}
	h.anneal = &a
	return h, nil
}

// BeforeStep implements Stepper: for a loss built by New, λ takes its
// schedule's value at step iter.
func (h *SphereFace) BeforeStep(iter int) error {
	if h.anneal == nil {
		return nil
	}
	return h.SetLambda(h.anneal.Lambda(iter))
}

// AfterStep implements Stepper; it does nothing.
func (h *SphereFace) AfterStep() error { return nil }

// NewSphereFace returns a SphereFace head with m ∈ {1, 2, 3, 4} and a fixed
// λ ≥ 0 (change it between steps with SetLambda).
func NewSphereFace(m int, lambda float64) (*SphereFace, error) {
	if m < 1 || m > 4 {
		return nil, fmt.Errorf("margin: sphereface needs m in {1, 2, 3, 4}, got %d", m)
	}
	h := &SphereFace{m: m}
	if err := h.SetLambda(lambda); err != nil {
		return nil, err
	}
	return h, nil
}

// SetLambda sets λ ≥ 0 for the next runs of graphs built from h.
func (h *SphereFace) SetLambda(lambda float64) error {
	if !finite(lambda) || lambda < 0 {
		return fmt.Errorf("margin: sphereface needs a finite λ ≥ 0, got %v", lambda)
	}
	h.lambda = lambda
	return nil
}

// Lambda returns the current λ.
func (h *SphereFace) Lambda() float64 { return h.lambda }

// Name implements Loss.
func (*SphereFace) Name() string { return "sphereface" }

// Params implements Loss: m and the current λ, and the schedule of a loss
// built by New.
func (h *SphereFace) Params() map[string]float64 {
	p := map[string]float64{"m": float64(h.m), "lambda": h.lambda}
	if a := h.anneal; a != nil {
		p["anneal_base"], p["anneal_gamma"], p["anneal_power"], p["anneal_min"] = a.Base, a.Gamma, a.Power, a.Min
	}
	return p
}

// SpherePsi returns ψ(θ) = (−1)^k·cos(mθ) − 2k for cos θ = c, θ ∈ [kπ/m,
// (k+1)π/m], and its derivative with respect to c with k held constant.
// cos(mθ) is the Chebyshev polynomial T_m(c): c, 2c² − 1, 4c³ − 3c,
// 8c⁴ − 8c² + 1 (Liu et al. 2017, eq. 7 and the reference implementation).
func SpherePsi(m int, c float64) (psi, dpsi float64) {
	c = clamp1(c)
	theta := math.Acos(c)
	k := int(math.Floor(float64(m) * theta / math.Pi))
	if k >= m {
		k = m - 1
	}
	var t, dt float64
	switch m {
	case 1:
		t, dt = c, 1
	case 2:
		t, dt = 2*c*c-1, 4*c
	case 3:
		t, dt = 4*c*c*c-3*c, 12*c*c-3
	default:
		c2 := c * c
		t, dt = 8*c2*c2-8*c2+1, 32*c2*c-16*c
	}
	if k%2 == 1 {
		t, dt = -t, -dt
	}
	return t - 2*float64(k), dt
}

// Build implements Loss.
func (h *SphereFace) Build(x, w *gorgonia.Node, labels *Labels) (*gorgonia.Node, error) {
	if err := checkNodes(x, w, labels); err != nil {
		return nil, err
	}
	cos, err := cosines(x, w)
	if err != nil {
		return nil, err
	}
	norms, err := rowNorms(x)
	if err != nil {
		return nil, err
	}
	m := h.m
	// λ is read at run time so that annealing needs no new graph; the key
	// names this head so that two heads never share the node.
	return targetMargin(cos, labels, func(ct *gorgonia.Node) (*gorgonia.Node, error) {
		return scalarFn(ct, "spheredelta", fmt.Sprintf("%d,%p", m, h),
			func(c float64) float64 {
				p, _ := SpherePsi(m, c)
				return (h.lambda*c+p)/(1+h.lambda) - c
			},
			func(c float64) float64 {
				_, d := SpherePsi(m, c)
				return (h.lambda+d)/(1+h.lambda) - 1
			})
	}, 1, norms)
}

// Anneal is SphereFace's λ schedule (wy1iu/sphereface, sphereface_train.prototxt):
// λ = max(Min, Base·(1 + Gamma·iter)^(−Power)).
type Anneal struct {
	Base  float64 // λ at iteration 0
	Gamma float64 // decay rate γ
	Power float64 // decay exponent
	Min   float64 // floor λ_min
}

// DefaultAnneal returns the reference schedule: base 1000, γ 0.12, power 1,
// λ_min 5.
func DefaultAnneal() Anneal { return Anneal{Base: 1000, Gamma: 0.12, Power: 1, Min: 5} }

// Lambda returns λ at training iteration iter (0-based).
func (a Anneal) Lambda(iter int) float64 {
	return max(a.Min, a.Base*math.Pow(1+a.Gamma*float64(iter), -a.Power))
}
