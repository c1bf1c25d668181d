package margin

import (
	"fmt"
	"math"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// The proxy losses compare each sample with learned proxies, one (or, for
// SoftTriple, K) per class, held in w; similarities are cosines
// S_ij = x̂_i·p̂_j, the gradient flowing through both normalisations.

// proxyLoss is the shared Loss of the proxy losses: f on S = x̂p̂ᵀ.
func proxyLoss(name, key string, x, w *gorgonia.Node, labels *Labels, k int, f simFunc) (*gorgonia.Node, error) {
	if err := checkProxies(name, x, w, labels, k); err != nil {
		return nil, err
	}
	cos, err := cosines(x, w)
	if err != nil {
		return nil, err
	}
	return sumLoss(simLoss(cos, name, key, labels, proxyLabels(labels, k), f))
}

// rowLosses runs f over the rows [lo, hi) in parallel chunks, each row's loss
// stored in losses[i] and summed in row order afterwards, so the result does
// not depend on scheduling. f reports whether row i was classified right.
func rowLosses(n, work int, losses []float64, f func(i int, scratch *[]float64) (loss float64, ok bool)) (float64, int) {
	oks := make([]bool, n)
	parallelRows(n, work, func(lo, hi int) {
		var scratch []float64
		for i := lo; i < hi; i++ {
			losses[i], oks[i] = f(i, &scratch)
		}
	})
	var sum float64
	correct := 0
	for i, l := range losses[:n] {
		sum += l
		if oks[i] {
			correct++
		}
	}
	return sum, correct
}

func grow(b *[]float64, n int) []float64 {
	if cap(*b) < n {
		*b = make([]float64, n)
	}
	return (*b)[:n]
}

// ---- ProxyNCA ----

// ProxyNCA is the loss of Movshovitz-Attias, Toshev, Leung, Ioffe and Singh,
// "No Fuss Distance Metric Learning using Proxies", ICCV 2017:
//
//	−log( exp(−d(x, p_y)) / Σ_{p≠p_y} exp(−d(x, p)) )
//
// with d the squared Euclidean distance between x and the proxy, both
// normalised and scaled to norm √scale, so that −d = scale·(2S − 2); the
// sample's own proxy is left out of the denominator, as in the paper (the
// loss can therefore go below zero). Averaged over the batch; it needs at
// least two classes.
type ProxyNCA struct{ scale float64 }

// NewProxyNCA returns a ProxyNCA loss; scale > 0 is the squared norm the
// normalised features and proxies are scaled to (9 in the reference
// implementations: norm 3).
func NewProxyNCA(scale float64) (*ProxyNCA, error) {
	if !finite(scale) || scale <= 0 || scale > 1000 {
		return nil, fmt.Errorf("margin: proxynca needs a scale in (0, 1000], got %v", scale)
	}
	return &ProxyNCA{scale: scale}, nil
}

// Name implements Loss.
func (*ProxyNCA) Name() string { return "proxynca" }

// Params implements Loss.
func (h *ProxyNCA) Params() map[string]float64 { return map[string]float64{"scale": h.scale} }

// Build implements Loss; w holds one proxy per class.
func (h *ProxyNCA) Build(x, w *gorgonia.Node, labels *Labels) (*gorgonia.Node, error) {
	if labels != nil && labels.Classes() < 2 {
		return nil, fmt.Errorf("margin: proxynca needs at least two classes, got %d", labels.Classes())
	}
	return proxyLoss(h.Name(), fmt.Sprint(h.scale), x, w, labels, 1, h.eval)
}

func (h *ProxyNCA) eval(s []float64, n, m int, y, _ []int, grad []float64) (float64, int, error) {
	if m < 2 {
		return 0, 0, fmt.Errorf("margin: proxynca needs at least two classes, got %d", m)
	}
	k := 2 * h.scale // −d(x, p) = k·S − 2·scale; the constant cancels
	inv := 1 / float64(n)
	losses := make([]float64, n)
	sum, correct := rowLosses(n, n*m, losses, func(i int, scratch *[]float64) (float64, bool) {
		row, g := s[i*m:(i+1)*m], grad[i*m:(i+1)*m]
		buf := grow(scratch, 2*m)
		z, wt := buf[:0], buf[m:2*m]
		for j, v := range row {
			if j != y[i] {
				z = append(z, k*v)
			}
		}
		l := logSumExp(z, wt[:len(z)]) - k*row[y[i]]
		t := 0
		for j := range row {
			if j != y[i] {
				g[j] = inv * k * wt[t]
				t++
			}
		}
		g[y[i]] = -inv * k
		return l, argmax(row) == y[i]
	})
	return sum * inv, correct, nil
}

// ---- Proxy Anchor ----

// ProxyAnchor is the loss of Kim, Kim, Cho and Kwak, "Proxy Anchor Loss for
// Deep Metric Learning", CVPR 2020, eq. 4:
//
//	(1/|P⁺|) Σ_{p∈P⁺} log(1 + Σ_{x∈X_p⁺} exp(−α(s(x, p) − δ)))
//	+ (1/|P|) Σ_{p∈P} log(1 + Σ_{x∈X_p⁻} exp(α(s(x, p) + δ)))
//
// P⁺ the proxies of the classes present in the batch, P all proxies, X_p⁺
// the batch's samples of p's class and X_p⁻ the others. Every batch is
// defined.
type ProxyAnchor struct{ alpha, delta float64 }

// NewProxyAnchor returns a Proxy Anchor loss with scale α > 0 and margin δ.
func NewProxyAnchor(alpha, delta float64) (*ProxyAnchor, error) {
	if !finite(alpha, delta) || alpha <= 0 || alpha > 1000 || delta < -1 || delta > 1 {
		return nil, fmt.Errorf("margin: proxyanchor needs 0 < α ≤ 1000 and a margin in [−1, 1], got α=%v δ=%v", alpha, delta)
	}
	return &ProxyAnchor{alpha: alpha, delta: delta}, nil
}

// Name implements Loss.
func (*ProxyAnchor) Name() string { return "proxyanchor" }

// Params implements Loss.
func (h *ProxyAnchor) Params() map[string]float64 {
	return map[string]float64{"alpha": h.alpha, "margin": h.delta}
}

// Build implements Loss; w holds one proxy per class.
func (h *ProxyAnchor) Build(x, w *gorgonia.Node, labels *Labels) (*gorgonia.Node, error) {
	return proxyLoss(h.Name(), fmt.Sprintf("%v,%v", h.alpha, h.delta), x, w, labels, 1, h.eval)
}

func (h *ProxyAnchor) eval(s []float64, n, m int, y, _ []int, grad []float64) (float64, int, error) {
	present := make([]int, m) // samples of each class in the batch
	for _, v := range y {
		present[v]++
	}
	nPos := 0
	for _, c := range present {
		if c > 0 {
			nPos++
		}
	}
	invPos, invAll := 1/float64(nPos), 1/float64(m)
	pos, neg := make([]float64, m), make([]float64, m)
	parallelRows(m, n*m, func(lo, hi int) {
		zp, wp := make([]float64, 0, n), make([]float64, n)
		zn, wn := make([]float64, 0, n), make([]float64, n)
		for p := lo; p < hi; p++ {
			zp, zn = zp[:0], zn[:0]
			for i := 0; i < n; i++ {
				if y[i] == p {
					zp = append(zp, -h.alpha*(s[i*m+p]-h.delta))
				} else {
					zn = append(zn, h.alpha*(s[i*m+p]+h.delta))
				}
			}
			if len(zp) > 0 {
				pos[p] = softplusSum(zp, wp[:len(zp)])
			}
			neg[p] = softplusSum(zn, wn[:len(zn)])
			a, b := 0, 0
			for i := 0; i < n; i++ {
				if y[i] == p {
					grad[i*m+p] = -h.alpha * invPos * wp[a]
					a++
				} else {
					grad[i*m+p] = h.alpha * invAll * wn[b]
					b++
				}
			}
		}
	})
	var lp, ln float64
	for p := range pos {
		lp += pos[p]
		ln += neg[p]
	}
	correct := 0
	for i := 0; i < n; i++ {
		if argmax(s[i*m:(i+1)*m]) == y[i] {
			correct++
		}
	}
	return lp*invPos + ln*invAll, correct, nil
}

// ---- SoftTriple ----

// softTripleEps is added under the square root of the centre regulariser, as
// in the authors' code (idstcv/SoftTriple, loss/SoftTriple.py), so that its
// gradient stays finite when two centres coincide.
const softTripleEps = 1e-5

// SoftTriple is the loss of Qian, Shang, Sun, Hu, Li and Jin, "SoftTriple
// Loss: Deep Metric Learning Without Triplet Sampling", ICCV 2019: K centres
// per class, the relaxed similarity of sample i to class c
//
//	S'_ic = Σ_k q_k S_ic,k,  q = softmax_k(S_ic,k / γ)    (eq. 8)
//
// the cross-entropy over the logits λ(S'_ic − δ·[c = y_i]) (eq. 10), averaged
// over the batch, plus τ times the centre regulariser
// Σ_c Σ_{t<s} √(2 + ε − 2 ŵ_c,tᵀŵ_c,s) / (C·K(K−1)) (eq. 12, normalised as in
// the authors' code), which merges redundant centres. The centres of class c
// are rows c·K … c·K+K−1 of w.
type SoftTriple struct {
	k                         int
	gamma, lambda, delta, tau float64
}

// NewSoftTriple returns a SoftTriple loss with k ≥ 1 centres per class,
// entropy temperature γ > 0, scale λ > 0, margin δ and regulariser weight
// τ ≥ 0.
func NewSoftTriple(k int, gamma, lambda, delta, tau float64) (*SoftTriple, error) {
	if k < 1 || k > 1000 || !finite(gamma, lambda, delta, tau) || gamma <= 0 || lambda <= 0 || lambda > 1000 || delta < -1 || delta > 1 || tau < 0 {
		return nil, fmt.Errorf("margin: softtriple needs 1 ≤ K ≤ 1000, γ > 0, 0 < λ ≤ 1000, δ in [−1, 1] and τ ≥ 0, got K=%d γ=%v λ=%v δ=%v τ=%v", k, gamma, lambda, delta, tau)
	}
	return &SoftTriple{k: k, gamma: gamma, lambda: lambda, delta: delta, tau: tau}, nil
}

// Name implements Loss.
func (*SoftTriple) Name() string { return "softtriple" }

// Params implements Loss.
func (h *SoftTriple) Params() map[string]float64 {
	return map[string]float64{"k": float64(h.k), "gamma": h.gamma, "lambda": h.lambda, "delta": h.delta, "tau": h.tau}
}

// K returns the number of centres per class.
func (h *SoftTriple) K() int { return h.k }

func (h *SoftTriple) weightRows(classes int) int { return classes * h.k }

// Build implements Loss; w holds K centres per class.
func (h *SoftTriple) Build(x, w *gorgonia.Node, labels *Labels) (*gorgonia.Node, error) {
	if err := checkProxies(h.Name(), x, w, labels, h.k); err != nil {
		return nil, err
	}
	if labels.Classes() < 2 {
		return nil, fmt.Errorf("margin: softtriple needs at least two classes, got %d", labels.Classes())
	}
	cos, wh, err := cosinesAndProxies(x, w)
	if err != nil {
		return nil, err
	}
	key := fmt.Sprintf("%d,%v,%v,%v", h.k, h.gamma, h.lambda, h.delta)
	ce, err := sumLoss(simLoss(cos, h.Name(), key, labels, proxyLabels(labels, h.k), h.eval))
	if err != nil {
		return nil, err
	}
	if h.k == 1 || h.tau == 0 {
		return ce, nil
	}
	reg, err := sumLoss(softTripleReg(wh, h.k))
	if err != nil {
		return nil, err
	}
	if reg, err = gorgonia.Mul(reg, constant(reg, h.tau)); err != nil {
		return nil, err
	}
	return gorgonia.Add(ce, reg)
}

func (h *SoftTriple) eval(s []float64, n, m int, y, _ []int, grad []float64) (float64, int, error) {
	k := h.k
	c := m / k
	if c < 2 {
		return 0, 0, fmt.Errorf("margin: softtriple needs at least two classes, got %d", c)
	}
	inv := 1 / float64(n)
	losses := make([]float64, n)
	sum, correct := rowLosses(n, n*m, losses, func(i int, scratch *[]float64) (float64, bool) {
		row, g := s[i*m:(i+1)*m], grad[i*m:(i+1)*m]
		// Scratch: centre weights q (m), logits rel, their softmax p and the
		// relaxed similarities rs (c each), one class's exponents z (k).
		buf := grow(scratch, m+3*c+k)
		q, rel, p, rs, z := buf[:m], buf[m:m+c], buf[m+c:m+2*c], buf[m+2*c:m+3*c], buf[m+3*c:]
		for cl := 0; cl < c; cl++ {
			sk, qk := row[cl*k:(cl+1)*k], q[cl*k:(cl+1)*k]
			for t, v := range sk {
				z[t] = v / h.gamma
			}
			logSumExp(z, qk)
			var r float64
			for t, v := range sk {
				r += qk[t] * v
			}
			rs[cl] = r
			rel[cl] = h.lambda * r
			if cl == y[i] {
				rel[cl] -= h.lambda * h.delta
			}
		}
		best := argmax(rel)
		l := logSumExp(rel, p) - rel[y[i]]
		for cl := 0; cl < c; cl++ {
			// dL/dS'_c = λ(p_c − [c = y]); dS'_c/dS_c,k = q_k(1 + (S_c,k − S'_c)/γ).
			d := h.lambda * p[cl]
			if cl == y[i] {
				d -= h.lambda
			}
			sk, qk := row[cl*k:(cl+1)*k], q[cl*k:(cl+1)*k]
			for t, v := range sk {
				g[cl*k+t] = inv * d * qk[t] * (1 + (v-rs[cl])/h.gamma)
			}
		}
		return l, best == y[i]
	})
	return sum * inv, correct, nil
}

// softTripleReg returns, as a vector of length 1, SoftTriple's centre
// regulariser Σ_c Σ_{t<s} √(2 + ε − 2 ŵ_tᵀŵ_s) / (C·K(K−1)) of the
// normalised centres wh (C·K×D).
func softTripleReg(wh *gorgonia.Node, k int) (*gorgonia.Node, error) {
	one := func([]tensor.Shape) (tensor.Shape, error) { return tensor.Shape{1}, nil }
	o := &op{name: "softtriplereg", key: fmt.Sprint(k), inDims: []int{2}, outDims: 1, shape: one, wrt: []bool{true}}
	o.k32, o.k64 = both(softTripleRegK[float32](k, false), softTripleRegK[float64](k, false))
	o.diff = func(in gorgonia.Nodes, out, g *gorgonia.Node) (gorgonia.Nodes, error) {
		d := &op{name: "softtripleregrad", key: fmt.Sprint(k), inDims: []int{2, 1}, outDims: 2, shape: sameAs(0)}
		d.k32, d.k64 = both(softTripleRegK[float32](k, true), softTripleRegK[float64](k, true))
		n, err := apply(d, in[0], g)
		return gorgonia.Nodes{n}, err
	}
	return apply(o, wh)
}

// softTripleRegK computes the regulariser, or with grad its gradient
// g·Σ_{s≠t} −ŵ_s / √(2 + ε − 2 ŵ_tᵀŵ_s) / (C·K(K−1)) for each centre t.
func softTripleRegK[T float](k int, grad bool) func(c *call, in [][]T, out []T) error {
	return func(c *call, in [][]T, out []T) error {
		rows, d := c.in[0][0], c.in[0][1]
		if rows%k != 0 {
			return fmt.Errorf("softtriplereg: %d centres is not a multiple of K=%d", rows, k)
		}
		classes := rows / k
		norm := 1 / float64(classes*k*(k-1))
		w := in[0]
		dot := func(a, b int) float64 {
			var s float64
			for j := 0; j < d; j++ {
				s += float64(w[a*d+j]) * float64(w[b*d+j])
			}
			return s
		}
		if !grad {
			per := make([]float64, classes)
			parallelRows(classes, classes*k*k*d, func(lo, hi int) {
				for cl := lo; cl < hi; cl++ {
					for t := 0; t < k; t++ {
						for u := t + 1; u < k; u++ {
							per[cl] += math.Sqrt(max(2+softTripleEps-2*dot(cl*k+t, cl*k+u), softTripleEps))
						}
					}
				}
			})
			var sum float64
			for _, v := range per {
				sum += v
			}
			out[0] = T(sum * norm)
			return nil
		}
		g := float64(in[1][0]) * norm
		parallelRows(classes, classes*k*k*d, func(lo, hi int) {
			acc := make([]float64, d)
			for cl := lo; cl < hi; cl++ {
				for t := 0; t < k; t++ {
					clear(acc)
					a := cl*k + t
					for u := 0; u < k; u++ {
						if u == t {
							continue
						}
						b := cl*k + u
						f := -g / math.Sqrt(max(2+softTripleEps-2*dot(a, b), softTripleEps))
						for j := 0; j < d; j++ {
							acc[j] += f * float64(w[b*d+j])
						}
					}
					for j := 0; j < d; j++ {
						out[a*d+j] = T(acc[j])
					}
				}
			}
		})
		return nil
	}
}
