package train

import (
	"fmt"
	"hash"
	"hash/fnv"
	"math"

	"github.com/chewxy/hm"
	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// bnEps is BatchNorm's ε (PyTorch's default).
const bnEps = 1e-5

// batchNorm returns training-mode BatchNorm over the rows of z (N×D) with
// scale gamma and shift beta (vectors of D): y = γ·(z − μ_B)/√(σ²_B + ε) + β,
// with the batch mean and biased variance (Ioffe & Szegedy, "Batch
// Normalization", ICML 2015, Algorithm 1 and §3 for the gradient).
func batchNorm(z, gamma, beta *gorgonia.Node) (*gorgonia.Node, error) {
	n, err := gorgonia.ApplyOp(bnOp{kind: bnForward}, z, gamma, beta)
	if err != nil {
		return nil, fmt.Errorf("batchnorm: %w", err)
	}
	return n, nil
}

type bnKind int

const (
	bnForward   bnKind = iota // (z, γ, β) → y
	bnGradZ                   // (z, γ, g) → dL/dz
	bnGradGamma               // (z, g) → dL/dγ
	bnGradBeta                // (g) → dL/dβ
)

// bnOp is BatchNorm's forward pass or one of its gradients.
type bnOp struct{ kind bnKind }

var _ gorgonia.SDOp = bnOp{}

// Arity implements gorgonia.Op.
func (o bnOp) Arity() int {
	switch o.kind {
	case bnForward, bnGradZ:
		return 3
	case bnGradGamma:
		return 2
	}
	return 1
}

// Type implements gorgonia.Op.
func (o bnOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	m, v := gorgonia.TensorType{Dims: 2, Of: a}, gorgonia.TensorType{Dims: 1, Of: a}
	switch o.kind {
	case bnForward:
		return hm.NewFnType(m, v, v, m)
	case bnGradZ:
		return hm.NewFnType(m, v, m, m)
	case bnGradGamma:
		return hm.NewFnType(m, m, v)
	}
	return hm.NewFnType(m, v)
}

// InferShape implements gorgonia.Op.
func (o bnOp) InferShape(ds ...gorgonia.DimSizer) (tensor.Shape, error) {
	s, ok := ds[0].(tensor.Shape)
	if !ok || len(s) != 2 {
		return nil, fmt.Errorf("batchnorm: input shape %v", ds[0])
	}
	if o.kind == bnGradGamma || o.kind == bnGradBeta {
		return tensor.Shape{s[1]}, nil
	}
	return s.Clone(), nil
}

// Do implements gorgonia.Op.
func (o bnOp) Do(vals ...gorgonia.Value) (gorgonia.Value, error) {
	ds := make([]*tensor.Dense, len(vals))
	for i, v := range vals {
		d, ok := v.(*tensor.Dense)
		if !ok {
			return nil, fmt.Errorf("batchnorm: input %d is %T", i, v)
		}
		ds[i] = d
	}
	s := ds[0].Shape()
	n, d := s[0], s[1]
	outShape, _ := o.InferShape(s)
	switch ds[0].Dtype() {
	case tensor.Float32:
		in := make([][]float32, len(ds))
		for i := range ds {
			in[i] = ds[i].Float32s()
		}
		out := make([]float32, outShape.TotalSize())
		bnKernel(o.kind, n, d, in, out)
		return tensor.New(tensor.WithShape(outShape...), tensor.WithBacking(out)), nil
	case tensor.Float64:
		in := make([][]float64, len(ds))
		for i := range ds {
			in[i] = ds[i].Float64s()
		}
		out := make([]float64, outShape.TotalSize())
		bnKernel(o.kind, n, d, in, out)
		return tensor.New(tensor.WithShape(outShape...), tensor.WithBacking(out)), nil
	}
	return nil, fmt.Errorf("batchnorm: dtype %v", ds[0].Dtype())
}

// bnStats returns the batch mean and 1/√(σ² + ε) of each column of z.
func bnStats[T float32 | float64](n, d int, z []T) (mean, inv []float64) {
	mean, inv = make([]float64, d), make([]float64, d)
	for i := 0; i < n; i++ {
		for j := 0; j < d; j++ {
			mean[j] += float64(z[i*d+j])
		}
	}
	for j := range mean {
		mean[j] /= float64(n)
	}
	for i := 0; i < n; i++ {
		for j := 0; j < d; j++ {
			e := float64(z[i*d+j]) - mean[j]
			inv[j] += e * e
		}
	}
	for j := range inv {
		inv[j] = 1 / math.Sqrt(inv[j]/float64(n)+bnEps)
	}
	return mean, inv
}

func bnKernel[T float32 | float64](kind bnKind, n, d int, in [][]T, out []T) {
	if kind == bnGradBeta {
		g := in[0]
		for i := 0; i < n; i++ {
			for j := 0; j < d; j++ {
				out[j] += g[i*d+j]
			}
		}
		return
	}
	z := in[0]
	mean, inv := bnStats(n, d, z)
	xh := func(i, j int) float64 { return (float64(z[i*d+j]) - mean[j]) * inv[j] }
	switch kind {
	case bnForward:
		gamma, beta := in[1], in[2]
		for i := 0; i < n; i++ {
			for j := 0; j < d; j++ {
				out[i*d+j] = T(float64(gamma[j])*xh(i, j) + float64(beta[j]))
			}
		}
	case bnGradGamma:
		g := in[1]
		for i := 0; i < n; i++ {
			for j := 0; j < d; j++ {
				out[j] += T(float64(g[i*d+j]) * xh(i, j))
			}
		}
	case bnGradZ:
		// dz = γ·inv/N · (N·g − Σ_i g − x̂·Σ_i g·x̂), per column.
		gamma, g := in[1], in[2]
		sg, sgx := make([]float64, d), make([]float64, d)
		for i := 0; i < n; i++ {
			for j := 0; j < d; j++ {
				gv := float64(g[i*d+j])
				sg[j] += gv
				sgx[j] += gv * xh(i, j)
			}
		}
		fn := float64(n)
		for i := 0; i < n; i++ {
			for j := 0; j < d; j++ {
				out[i*d+j] = T(float64(gamma[j]) * inv[j] / fn * (fn*float64(g[i*d+j]) - sg[j] - xh(i, j)*sgx[j]))
			}
		}
	}
}

// ReturnsPtr implements gorgonia.Op.
func (o bnOp) ReturnsPtr() bool { return false }

// CallsExtern implements gorgonia.Op.
func (o bnOp) CallsExtern() bool { return false }

// OverwritesInput implements gorgonia.Op.
func (o bnOp) OverwritesInput() int { return -1 }

// WriteHash implements gorgonia.Op.
func (o bnOp) WriteHash(h hash.Hash) { fmt.Fprintf(h, "facehead.batchnorm%d", o.kind) }

// Hashcode implements gorgonia.Op.
func (o bnOp) Hashcode() uint32 {
	h := fnv.New32a()
	o.WriteHash(h)
	return h.Sum32()
}

// String implements gorgonia.Op.
func (o bnOp) String() string { return fmt.Sprintf("batchnorm%d", o.kind) }

// DiffWRT implements gorgonia.SDOp.
func (o bnOp) DiffWRT(n int) []bool {
	out := make([]bool, n)
	if o.kind == bnForward {
		for i := range out {
			out[i] = true
		}
	}
	return out
}

// SymDiff implements gorgonia.SDOp.
func (o bnOp) SymDiff(in gorgonia.Nodes, output, grad *gorgonia.Node) (gorgonia.Nodes, error) {
	if o.kind != bnForward {
		return nil, fmt.Errorf("batchnorm gradient %d is not differentiable", o.kind)
	}
	z, gamma := in[0], in[1]
	dz, err := gorgonia.ApplyOp(bnOp{kind: bnGradZ}, z, gamma, grad)
	if err != nil {
		return nil, err
	}
	dg, err := gorgonia.ApplyOp(bnOp{kind: bnGradGamma}, z, grad)
	if err != nil {
		return nil, err
	}
	db, err := gorgonia.ApplyOp(bnOp{kind: bnGradBeta}, grad)
	if err != nil {
		return nil, err
	}
	return gorgonia.Nodes{dz, dg, db}, nil
}
