package train

import (
	"math"

	"gonum.org/v1/gonum/mat"

	"github.com/facever/facever/facehead"
)

// The projection P (d′×(d+1), last column the bias), how it starts, what it
// gives the training features, and how it becomes the inference head.

// initProjection returns P (d′×(d+1), bias column zero): the identity when
// d′ = d, else the top-d′ principal axes of the features (uncentred second
// moment, so that cosines are preserved as well as they can be).
func initProjection(features [][]float32, dOut int) []float32 {
	d := len(features[0])
	p := make([]float32, dOut*(d+1))
	if dOut == d {
		for i := 0; i < d; i++ {
			p[i*(d+1)+i] = 1
		}
		return p
	}
	m := mat.NewSymDense(d, nil)
	row := make([]float64, d)
	for _, f := range features {
		for j, v := range f {
			row[j] = float64(v)
		}
		m.SymRankOne(m, 1/float64(len(features)), mat.NewVecDense(d, row))
	}
	var eig mat.EigenSym
	if !eig.Factorize(m, true) {
		// Fall back to the first d′ axes.
		for i := 0; i < dOut; i++ {
			p[i*(d+1)+i] = 1
		}
		return p
	}
	var vecs mat.Dense
	eig.VectorsTo(&vecs)
	// Eigenvalues come in increasing order: take the last d′ columns, with
	// a deterministic sign (largest component positive).
	for i := 0; i < dOut; i++ {
		col := d - 1 - i
		sign, best := 1.0, 0.0
		for j := 0; j < d; j++ {
			if v := vecs.At(j, col); math.Abs(v) > best {
				best, sign = math.Abs(v), math.Copysign(1, v)
			}
		}
		for j := 0; j < d; j++ {
			p[i*(d+1)+j] = float32(sign * vecs.At(j, col))
		}
	}
	return p
}

// embedAll returns P·[x; 1] for every feature, BatchNorm-standardised with
// the population statistics when gamma is set.
func embedAll(features [][]float32, proj []float32, dOut int, gamma, beta []float32) [][]float64 {
	d := len(features[0])
	out := make([][]float64, len(features))
	if isIdentity(proj, d, dOut) {
		for i, f := range features {
			o := make([]float64, d)
			for j, v := range f {
				o[j] = float64(v)
			}
			out[i] = o
		}
	} else {
		// [x 1]·Pᵀ for all samples at once (gonum's blocked, parallel GEMM).
		xs := mat.NewDense(len(features), d+1, nil)
		for i, f := range features {
			row := xs.RawRowView(i)
			for j, v := range f {
				row[j] = float64(v)
			}
			row[d] = 1
		}
		ps := mat.NewDense(dOut, d+1, nil)
		for k, v := range proj {
			ps.RawMatrix().Data[k] = float64(v)
		}
		var z mat.Dense
		z.Mul(xs, ps.T())
		for i := range out {
			out[i] = z.RawRowView(i)
		}
	}
	if gamma != nil {
		mean, inv := popStats(out, dOut)
		for _, o := range out {
			for j := range o {
				o[j] = float64(gamma[j])*(o[j]-mean[j])*inv[j] + float64(beta[j])
			}
		}
	}
	return out
}

// isIdentity reports whether proj is [I 0] (the initial projection with d′ = d).
func isIdentity(proj []float32, d, dOut int) bool {
	if d != dOut {
		return false
	}
	for r := 0; r < dOut; r++ {
		for j := 0; j <= d; j++ {
			want := float32(0)
			if j == r {
				want = 1
			}
			if proj[r*(d+1)+j] != want {
				return false
			}
		}
	}
	return true
}

func popStats(z [][]float64, dOut int) (mean, inv []float64) {
	mean, inv = make([]float64, dOut), make([]float64, dOut)
	for _, o := range z {
		for j, v := range o {
			mean[j] += v
		}
	}
	for j := range mean {
		mean[j] /= float64(len(z))
	}
	for _, o := range z {
		for j, v := range o {
			inv[j] += (v - mean[j]) * (v - mean[j])
		}
	}
	for j := range inv {
		inv[j] = 1 / math.Sqrt(inv[j]/float64(len(z))+bnEps)
	}
	return mean, inv
}

func classMeans(emb [][]float64, y []int, classes, dOut int) [][]float64 {
	means := make([][]float64, classes)
	counts := make([]int, classes)
	for c := range means {
		means[c] = make([]float64, dOut)
	}
	for i, e := range emb {
		for j, v := range e {
			means[y[i]][j] += v
		}
		counts[y[i]]++
	}
	for c, m := range means {
		for j := range m {
			m[j] /= float64(max(counts[c], 1))
		}
	}
	return means
}

// fold returns the inference head: W = diag(γ·inv)·P, b = γ·inv·(p_b − μ) + β
// with BatchNorm's population statistics over the training features (exact,
// rather than a running average), or P and its bias column without it.
func fold(features [][]float32, proj []float32, dOut int, gamma, beta []float32, meta facehead.HeadMeta) (*facehead.Head, error) {
	d := len(features[0])
	w, b := make([]float32, dOut*d), make([]float32, dOut)
	var mean, inv []float64
	if gamma != nil {
		mean, inv = popStats(embedAll(features, proj, dOut, nil, nil), dOut)
	}
	for r := 0; r < dOut; r++ {
		pr := proj[r*(d+1) : (r+1)*(d+1)]
		k, br := 1.0, float64(pr[d])
		if gamma != nil {
			k = float64(gamma[r]) * inv[r]
			br = k*(br-mean[r]) + float64(beta[r])
		}
		for j := 0; j < d; j++ {
			w[r*d+j] = float32(k * float64(pr[j]))
		}
		b[r] = float32(br)
	}
	return facehead.NewHead(d, dOut, w, b, meta)
}
