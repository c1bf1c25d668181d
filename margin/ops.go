package margin

import (
	"fmt"
	"hash"
	"hash/fnv"

	"github.com/chewxy/hm"
	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// This file holds a small framework for the custom gorgonia operations the
// heads are built from. Each operation is a kernel written once, generic over
// float32 and float64, wrapped in an Op that gorgonia's type checker, symbolic
// differentiation (gorgonia.Grad) and tape machine understand. Custom kernels
// keep the N×C intermediates few (the class count reaches 10⁵ in face
// training) and make the numerically delicate parts (arccos near ±1, the
// normalisations, the softmax cross-entropy) explicit.

// float is the set of element types the kernels run on.
type float interface{ ~float32 | ~float64 }

// call is what a kernel receives besides its data: the input shapes and the
// output shape.
type call struct {
	in  []tensor.Shape
	out tensor.Shape
}

// kernel32 and kernel64 compute an operation's output from its inputs.
type (
	kernel32 func(c *call, in [][]float32, out []float32) error
	kernel64 func(c *call, in [][]float64, out []float64) error
)

// symDiff returns the gradient nodes of an op's inputs (nil where the op is
// not differentiable with respect to an input).
type symDiff func(inputs gorgonia.Nodes, output, grad *gorgonia.Node) (gorgonia.Nodes, error)

// op is a custom gorgonia operation defined by its kernels.
type op struct {
	name    string                                        // printed name
	key     string                                        // everything that changes the result, for hashing
	inDims  []int                                         // tensor rank of each input
	outDims int                                           // tensor rank of the output
	shape   func(in []tensor.Shape) (tensor.Shape, error) // output shape
	k32     kernel32
	k64     kernel64
	wrt     []bool  // differentiable with respect to input i
	diff    symDiff // nil for operations that are not differentiated
}

var (
	_ gorgonia.Op   = (*op)(nil)
	_ gorgonia.SDOp = (*op)(nil)
)

// Arity implements gorgonia.Op.
func (o *op) Arity() int { return len(o.inDims) }

// Type implements gorgonia.Op.
func (o *op) Type() hm.Type {
	a := hm.TypeVariable('a')
	ts := make(hm.Types, 0, len(o.inDims)+1)
	for _, d := range o.inDims {
		ts = append(ts, tensorType(d, a))
	}
	ts = append(ts, tensorType(o.outDims, a))
	return hm.NewFnType(ts...)
}

func tensorType(dims int, a hm.TypeVariable) hm.Type {
	if dims == 0 {
		return a
	}
	return gorgonia.TensorType{Dims: dims, Of: a}
}

// InferShape implements gorgonia.Op.
func (o *op) InferShape(ds ...gorgonia.DimSizer) (tensor.Shape, error) {
	shapes, err := gorgonia.DimSizersToShapes(ds)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.name, err)
	}
	return o.shape(shapes)
}

// Do implements gorgonia.Op.
func (o *op) Do(vals ...gorgonia.Value) (gorgonia.Value, error) {
	if len(vals) != len(o.inDims) {
		return nil, fmt.Errorf("%s: %d inputs, want %d", o.name, len(vals), len(o.inDims))
	}
	shapes := make([]tensor.Shape, len(vals))
	dts := make([]*tensor.Dense, len(vals))
	for i, v := range vals {
		d, ok := v.(*tensor.Dense)
		if !ok {
			return nil, fmt.Errorf("%s: input %d is %T, want *tensor.Dense", o.name, i, v)
		}
		if d.IsMaterializable() {
			d = d.Materialize().(*tensor.Dense)
		}
		dts[i] = d
		shapes[i] = d.Shape().Clone()
	}
	outShape, err := o.shape(shapes)
	if err != nil {
		return nil, err
	}
	c := &call{in: shapes, out: outShape}
	dt := dts[0].Dtype()
	out := tensor.New(tensor.Of(dt), tensor.WithShape(outShape...))
	switch dt {
	case tensor.Float32:
		in := make([][]float32, len(dts))
		for i, d := range dts {
			if d.Dtype() != dt {
				return nil, fmt.Errorf("%s: mixed dtypes %v and %v", o.name, dt, d.Dtype())
			}
			in[i] = d.Float32s()
		}
		err = o.k32(c, in, out.Float32s())
	case tensor.Float64:
		in := make([][]float64, len(dts))
		for i, d := range dts {
			if d.Dtype() != dt {
				return nil, fmt.Errorf("%s: mixed dtypes %v and %v", o.name, dt, d.Dtype())
			}
			in[i] = d.Float64s()
		}
		err = o.k64(c, in, out.Float64s())
	default:
		return nil, fmt.Errorf("%s: dtype %v not supported", o.name, dt)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ReturnsPtr implements gorgonia.Op.
func (o *op) ReturnsPtr() bool { return false }

// CallsExtern implements gorgonia.Op.
func (o *op) CallsExtern() bool { return false }

// OverwritesInput implements gorgonia.Op.
func (o *op) OverwritesInput() int { return -1 }

// WriteHash implements gorgonia.Op.
func (o *op) WriteHash(h hash.Hash) {
	fmt.Fprintf(h, "margin.%s{%s}", o.name, o.key)
}

// Hashcode implements gorgonia.Op.
func (o *op) Hashcode() uint32 {
	h := fnv.New32a()
	o.WriteHash(h)
	return h.Sum32()
}

// String implements gorgonia.Op.
func (o *op) String() string { return o.name }

// DiffWRT implements gorgonia.SDOp.
func (o *op) DiffWRT(n int) []bool {
	out := make([]bool, n)
	copy(out, o.wrt)
	return out
}

// SymDiff implements gorgonia.SDOp.
func (o *op) SymDiff(inputs gorgonia.Nodes, output, grad *gorgonia.Node) (gorgonia.Nodes, error) {
	if o.diff == nil {
		return nil, fmt.Errorf("%s is not differentiable", o.name)
	}
	return o.diff(inputs, output, grad)
}

// both turns one generic kernel into the two instantiations an op holds.
func both(k32 kernel32, k64 kernel64) (kernel32, kernel64) { return k32, k64 }

// sameAs returns the shape of input i.
func sameAs(i int) func([]tensor.Shape) (tensor.Shape, error) {
	return func(in []tensor.Shape) (tensor.Shape, error) { return in[i].Clone(), nil }
}

// rowsOf returns the shape (rows of input i) as a vector.
func rowsOf(i int) func([]tensor.Shape) (tensor.Shape, error) {
	return func(in []tensor.Shape) (tensor.Shape, error) {
		if len(in[i]) != 2 {
			return nil, fmt.Errorf("want a matrix, got shape %v", in[i])
		}
		return tensor.Shape{in[i][0]}, nil
	}
}

// apply is gorgonia.ApplyOp with the op's name in the error.
func apply(o *op, children ...*gorgonia.Node) (*gorgonia.Node, error) {
	n, err := gorgonia.ApplyOp(o, children...)
	if err != nil {
		return nil, fmt.Errorf("margin: %s: %w", o.name, err)
	}
	return n, nil
}
