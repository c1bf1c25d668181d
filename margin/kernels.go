package margin

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// normEps is the floor of a norm before dividing by it, as in PyTorch's
// F.normalize: a zero row stays zero instead of becoming NaN.
const normEps = 1e-12

// parallelRows runs f over [0, n) in contiguous chunks on up to GOMAXPROCS
// goroutines. Each row is written by exactly one goroutine, so results do not
// depend on scheduling.
func parallelRows(n, work int, f func(lo, hi int)) {
	p := runtime.GOMAXPROCS(0)
	if p > n {
		p = n
	}
	if p <= 1 || work < 1<<16 {
		f(0, n)
		return
	}
	var wg sync.WaitGroup
	chunk := (n + p - 1) / p
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			f(lo, hi)
		}(lo, hi)
	}
	wg.Wait()
}

// ---- L2 normalisation of rows: y_i = x_i / max(‖x_i‖, ε) ----

func l2NormRows(x *gorgonia.Node) (*gorgonia.Node, error) {
	o := &op{name: "l2normrows", inDims: []int{2}, outDims: 2, shape: sameAs(0), wrt: []bool{true}}
	o.k32, o.k64 = both(l2NormK[float32], l2NormK[float64])
	o.diff = func(in gorgonia.Nodes, out, g *gorgonia.Node) (gorgonia.Nodes, error) {
		// dL/dx = (g − y (y·g)) / ‖x‖ for ‖x‖ > ε, and g/ε below.
		d := &op{name: "l2normrowsgrad", inDims: []int{2, 2, 2}, outDims: 2, shape: sameAs(0)}
		d.k32, d.k64 = both(l2NormGradK[float32], l2NormGradK[float64])
		n, err := apply(d, in[0], out, g)
		return gorgonia.Nodes{n}, err
	}
	return apply(o, x)
}

func rowNorm[T float](row []T) float64 {
	var s float64
	for _, v := range row {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s)
}

func l2NormK[T float](c *call, in [][]T, out []T) error {
	r, d := c.in[0][0], c.in[0][1]
	x := in[0]
	parallelRows(r, r*d, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			row := x[i*d : (i+1)*d]
			inv := T(1 / max(rowNorm(row), normEps))
			o := out[i*d : (i+1)*d]
			for j, v := range row {
				o[j] = v * inv
			}
		}
	})
	return nil
}

func l2NormGradK[T float](c *call, in [][]T, out []T) error {
	r, d := c.in[0][0], c.in[0][1]
	x, y, g := in[0], in[1], in[2]
	parallelRows(r, r*d, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			n := rowNorm(x[i*d : (i+1)*d])
			yr, gr, o := y[i*d:(i+1)*d], g[i*d:(i+1)*d], out[i*d:(i+1)*d]
			if n < normEps {
				for j := range o {
					o[j] = gr[j] / normEps
				}
				continue
			}
			var dot float64
			for j := range yr {
				dot += float64(yr[j]) * float64(gr[j])
			}
			inv := 1 / n
			for j := range o {
				o[j] = T((float64(gr[j]) - float64(yr[j])*dot) * inv)
			}
		}
	})
	return nil
}

// ---- row norms: n_i = ‖x_i‖ ----

func rowNorms(x *gorgonia.Node) (*gorgonia.Node, error) {
	o := &op{name: "rownorms", inDims: []int{2}, outDims: 1, shape: rowsOf(0), wrt: []bool{true}}
	o.k32, o.k64 = both(rowNormsK[float32], rowNormsK[float64])
	o.diff = func(in gorgonia.Nodes, out, g *gorgonia.Node) (gorgonia.Nodes, error) {
		// dL/dx_i = g_i x_i / ‖x_i‖.
		d := &op{name: "rownormsgrad", inDims: []int{2, 1, 1}, outDims: 2, shape: sameAs(0)}
		d.k32, d.k64 = both(rowNormsGradK[float32], rowNormsGradK[float64])
		n, err := apply(d, in[0], out, g)
		return gorgonia.Nodes{n}, err
	}
	return apply(o, x)
}

func rowNormsK[T float](c *call, in [][]T, out []T) error {
	r, d := c.in[0][0], c.in[0][1]
	for i := 0; i < r; i++ {
		out[i] = T(rowNorm(in[0][i*d : (i+1)*d]))
	}
	return nil
}

func rowNormsGradK[T float](c *call, in [][]T, out []T) error {
	r, d := c.in[0][0], c.in[0][1]
	x, n, g := in[0], in[1], in[2]
	for i := 0; i < r; i++ {
		k := float64(0)
		if n[i] > 0 {
			k = float64(g[i]) / float64(n[i])
		}
		for j := i * d; j < (i+1)*d; j++ {
			out[j] = T(float64(x[j]) * k)
		}
	}
	return nil
}

// ---- matrix products (sgemm and dgemm, gemm.go) ----

// matMul returns op(a)·op(b) where op transposes when asked. Only the
// a·bᵀ form is differentiated (it is the one the heads use).
func matMul(a, b *gorgonia.Node, transA, transB bool) (*gorgonia.Node, error) {
	return matMulWRT(a, b, transA, transB, true)
}

// matMulWRT is matMul; with gradA false, a is treated as data and its
// gradient (one of the three products of a training step) is not built.
func matMulWRT(a, b *gorgonia.Node, transA, transB, gradA bool) (*gorgonia.Node, error) {
	o := &op{
		name:    fmt.Sprintf("gemm%s%s", tchar(transA), tchar(transB)),
		key:     fmt.Sprintf("%v,%v", transA, transB),
		inDims:  []int{2, 2},
		outDims: 2,
		shape: func(in []tensor.Shape) (tensor.Shape, error) {
			if len(in[0]) != 2 || len(in[1]) != 2 {
				return nil, fmt.Errorf("gemm: want matrices, got %v and %v", in[0], in[1])
			}
			m, k := in[0][0], in[0][1]
			if transA {
				m, k = k, m
			}
			k2, n := in[1][0], in[1][1]
			if transB {
				k2, n = n, k2
			}
			if k != k2 {
				return nil, fmt.Errorf("gemm: inner dimensions differ: %v and %v", in[0], in[1])
			}
			return tensor.Shape{m, n}, nil
		},
		k32: func(c *call, in [][]float32, out []float32) error {
			m, n, k, lda, ldb := gemmDims(c, transA, transB)
			sgemm(transA, transB, m, n, k, in[0], lda, in[1], ldb, out, n)
			return nil
		},
		k64: func(c *call, in [][]float64, out []float64) error {
			m, n, k, lda, ldb := gemmDims(c, transA, transB)
			dgemm(transA, transB, m, n, k, in[0], lda, in[1], ldb, out, n)
			return nil
		},
	}
	if !transA && transB {
		o.key += fmt.Sprintf(",%v", gradA)
		o.wrt = []bool{gradA, true}
		o.diff = func(in gorgonia.Nodes, out, g *gorgonia.Node) (gorgonia.Nodes, error) {
			// C = A·Bᵀ: dA = G·B, dB = Gᵀ·A.
			var da *gorgonia.Node
			if gradA {
				var err error
				if da, err = matMul(g, in[1], false, false); err != nil {
					return nil, err
				}
			}
			db, err := matMul(g, in[0], true, false)
			if err != nil {
				return nil, err
			}
			return gorgonia.Nodes{da, db}, nil
		}
	}
	return apply(o, a, b)
}

func tchar(t bool) string {
	if t {
		return "T"
	}
	return "N"
}

func gemmDims(c *call, transA, transB bool) (m, n, k, lda, ldb int) {
	m, n = c.out[0], c.out[1]
	lda, ldb = c.in[0][1], c.in[1][1]
	k = c.in[0][1]
	if transA {
		k = c.in[0][0]
	}
	return
}

// ---- label-indexed operations ----

// Labels holds the class labels of the batch a built loss graph runs on.
// The graph reads them at run time, so one graph serves every batch: call Set
// before each run.
type Labels struct {
	classes int
	y       []int
	correct atomic.Int64
}

// NewLabels returns an empty label holder for a graph over the given number
// of classes.
func NewLabels(classes int) *Labels { return &Labels{classes: classes} }

// Classes returns the number of classes the labels range over.
func (l *Labels) Classes() int { return l.classes }

// Set validates and stores the labels of the next batch (it keeps a copy).
func (l *Labels) Set(y []int) error {
	if len(y) == 0 {
		return fmt.Errorf("margin: empty batch")
	}
	for i, v := range y {
		if v < 0 || v >= l.classes {
			return fmt.Errorf("margin: label %d of sample %d out of range [0, %d)", v, i, l.classes)
		}
	}
	l.y = append(l.y[:0], y...)
	return nil
}

func (l *Labels) check(rows, cols int) error {
	if len(l.y) != rows {
		return fmt.Errorf("margin: %d labels set for a batch of %d", len(l.y), rows)
	}
	if cols >= 0 && cols != l.classes {
		return fmt.Errorf("margin: %d columns, labels range over %d classes", cols, l.classes)
	}
	return nil
}

// Correct returns how many samples of the last run had their label's logit
// as the largest, margin included (so it is stricter than plain accuracy for
// the margin heads). Each cross-entropy evaluation of the batch recounts it.
func (l *Labels) Correct() int { return int(l.correct.Load()) }

func (l *Labels) key() string { return fmt.Sprintf("%p", l) }

// pick returns the vector m[i, y_i].
func pick(m *gorgonia.Node, l *Labels) (*gorgonia.Node, error) {
	o := &op{name: "pick", key: l.key(), inDims: []int{2}, outDims: 1, shape: rowsOf(0), wrt: []bool{true}}
	o.k32, o.k64 = both(pickK[float32](l), pickK[float64](l))
	o.diff = func(in gorgonia.Nodes, out, g *gorgonia.Node) (gorgonia.Nodes, error) {
		n, err := scatter(in[0], g, l)
		return gorgonia.Nodes{n}, err
	}
	return apply(o, m)
}

func pickK[T float](l *Labels) func(c *call, in [][]T, out []T) error {
	return func(c *call, in [][]T, out []T) error {
		r, cols := c.in[0][0], c.in[0][1]
		if err := l.check(r, cols); err != nil {
			return err
		}
		for i, y := range l.y {
			out[i] = in[0][i*cols+y]
		}
		return nil
	}
}

// scatter returns a matrix shaped like like, zero but for v_i at [i, y_i].
func scatter(like, v *gorgonia.Node, l *Labels) (*gorgonia.Node, error) {
	o := &op{name: "scatter", key: l.key(), inDims: []int{2, 1}, outDims: 2, shape: sameAs(0)}
	o.k32, o.k64 = both(scatterK[float32](l), scatterK[float64](l))
	return apply(o, like, v)
}

func scatterK[T float](l *Labels) func(c *call, in [][]T, out []T) error {
	return func(c *call, in [][]T, out []T) error {
		r, cols := c.in[0][0], c.in[0][1]
		if err := l.check(r, cols); err != nil {
			return err
		}
		for i, y := range l.y {
			out[i*cols+y] = in[1][i]
		}
		return nil
	}
}

// addAt returns m with v_i added at [i, y_i].
func addAt(m, v *gorgonia.Node, l *Labels) (*gorgonia.Node, error) {
	o := &op{name: "addat", key: l.key(), inDims: []int{2, 1}, outDims: 2, shape: sameAs(0), wrt: []bool{true, true}}
	o.k32, o.k64 = both(addAtK[float32](l), addAtK[float64](l))
	o.diff = func(in gorgonia.Nodes, out, g *gorgonia.Node) (gorgonia.Nodes, error) {
		gv, err := pick(g, l)
		return gorgonia.Nodes{g, gv}, err
	}
	return apply(o, m, v)
}

func addAtK[T float](l *Labels) func(c *call, in [][]T, out []T) error {
	return func(c *call, in [][]T, out []T) error {
		r, cols := c.in[0][0], c.in[0][1]
		if err := l.check(r, cols); err != nil {
			return err
		}
		copy(out, in[0])
		for i, y := range l.y {
			out[i*cols+y] += in[1][i]
		}
		return nil
	}
}

// crossEntropy returns the per-sample softmax cross-entropy of the logits
// scale·z: log Σ_j exp(scale·z_ij) − scale·z_{i,y_i}, computed stably (max
// subtracted). The forward pass keeps the softmax probabilities for the
// backward pass of the same run, so each step computes N×C exponentials once.
func crossEntropy(z *gorgonia.Node, l *Labels, scale float64) (*gorgonia.Node, error) {
	st := &ceState{}
	key := fmt.Sprintf("%s,%v", l.key(), scale)
	o := &op{name: "softmaxce", key: key, inDims: []int{2}, outDims: 1, shape: rowsOf(0), wrt: []bool{true}}
	o.k32, o.k64 = both(ceK[float32](l, st, scale), ceK[float64](l, st, scale))
	o.diff = func(in gorgonia.Nodes, out, g *gorgonia.Node) (gorgonia.Nodes, error) {
		// dL/dz_ij = scale·g_i·(softmax(scale·z_i)_j − δ(j = y_i)).
		d := &op{name: "softmaxcegrad", key: fmt.Sprintf("%s,%p", key, st), inDims: []int{2, 1}, outDims: 2, shape: sameAs(0)}
		d.k32, d.k64 = both(ceGradK[float32](l, st, scale), ceGradK[float64](l, st, scale))
		n, err := apply(d, in[0], g)
		return gorgonia.Nodes{n}, err
	}
	return apply(o, z)
}

// ceState carries the softmax probabilities ([]float32 or []float64) from a
// cross-entropy's forward pass to its backward pass.
type ceState struct {
	p any
}

// softmaxRow writes softmax(scale·row) into p and returns the cross-entropy
// log Σ_j exp(scale·row_j) − scale·row_y. It is computed as
// log1p(Σ_{j≠y} e_j / e_y) with e_j = exp(scale·row_j − max) so that a
// confidently right sample keeps its tiny loss instead of rounding to 0.
func softmaxRow[T float](row, p []T, scale float64, y int) float64 {
	mx := math.Inf(-1)
	for _, v := range row {
		mx = max(mx, scale*float64(v))
	}
	var s, rest float64
	for j, v := range row {
		e := math.Exp(scale*float64(v) - mx)
		p[j] = T(e)
		s += e
		if j != y {
			rest += e
		}
	}
	loss := mx + math.Log(s) - scale*float64(row[y])
	if ey := math.Exp(scale*float64(row[y]) - mx); ey > 1e-300 {
		loss = math.Log1p(rest / ey)
	}
	inv := 1 / s
	for j := range p {
		// Probabilities under 10⁻³⁰ are flushed to zero: in float32 they
		// would be subnormal, and products on subnormals run many times
		// slower (measured: softmax training 2× slower once logits spread).
		if v := float64(p[j]) * inv; v >= 1e-30 {
			p[j] = T(v)
		} else {
			p[j] = 0
		}
	}
	return loss
}

func ceK[T float](l *Labels, st *ceState, scale float64) func(c *call, in [][]T, out []T) error {
	return func(c *call, in [][]T, out []T) error {
		r, cols := c.in[0][0], c.in[0][1]
		if err := l.check(r, cols); err != nil {
			return err
		}
		p, _ := st.p.([]T)
		if len(p) != r*cols {
			p = make([]T, r*cols)
			st.p = p
		}
		z := in[0]
		l.correct.Store(0)
		parallelRows(r, r*cols, func(lo, hi int) {
			var ok int64
			for i := lo; i < hi; i++ {
				row := z[i*cols : (i+1)*cols]
				out[i] = T(softmaxRow(row, p[i*cols:(i+1)*cols], scale, l.y[i]))
				if argmax(row) == l.y[i] {
					ok++
				}
			}
			l.correct.Add(ok)
		})
		return nil
	}
}

func argmax[T float](row []T) int {
	best := 0
	for j, v := range row {
		if v > row[best] {
			best = j
		}
	}
	return best
}

func ceGradK[T float](l *Labels, st *ceState, scale float64) func(c *call, in [][]T, out []T) error {
	return func(c *call, in [][]T, out []T) error {
		r, cols := c.in[0][0], c.in[0][1]
		if err := l.check(r, cols); err != nil {
			return err
		}
		z, g := in[0], in[1]
		p, _ := st.p.([]T)
		fresh := len(p) != r*cols // no forward pass to reuse: recompute
		if fresh {
			p = make([]T, r*cols)
		}
		parallelRows(r, r*cols, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				pr, o := p[i*cols:(i+1)*cols], out[i*cols:(i+1)*cols]
				if fresh {
					softmaxRow(z[i*cols:(i+1)*cols], pr, scale, l.y[i])
				}
				gi := scale * float64(g[i])
				for j, v := range pr {
					o[j] = T(gi * float64(v))
				}
				o[l.y[i]] -= T(gi)
			}
		})
		return nil
	}
}

// scaleRows returns m_ij · v_i.
func scaleRows(m, v *gorgonia.Node) (*gorgonia.Node, error) {
	o := &op{name: "scalerows", inDims: []int{2, 1}, outDims: 2, shape: sameAs(0), wrt: []bool{true, true}}
	o.k32, o.k64 = both(scaleRowsK[float32], scaleRowsK[float64])
	o.diff = func(in gorgonia.Nodes, out, g *gorgonia.Node) (gorgonia.Nodes, error) {
		gm, err := scaleRows(g, in[1])
		if err != nil {
			return nil, err
		}
		d := &op{name: "rowdot", inDims: []int{2, 2}, outDims: 1, shape: rowsOf(0)}
		d.k32, d.k64 = both(rowDotK[float32], rowDotK[float64])
		gv, err := apply(d, g, in[0])
		return gorgonia.Nodes{gm, gv}, err
	}
	return apply(o, m, v)
}

func scaleRowsK[T float](c *call, in [][]T, out []T) error {
	r, cols := c.in[0][0], c.in[0][1]
	if c.in[1][0] != r {
		return fmt.Errorf("scalerows: %d rows, %d scales", r, c.in[1][0])
	}
	parallelRows(r, r*cols, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			s := in[1][i]
			for j := i * cols; j < (i+1)*cols; j++ {
				out[j] = in[0][j] * s
			}
		}
	})
	return nil
}

func rowDotK[T float](c *call, in [][]T, out []T) error {
	r, cols := c.in[0][0], c.in[0][1]
	parallelRows(r, r*cols, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			var s float64
			for j := i * cols; j < (i+1)*cols; j++ {
				s += float64(in[0][j]) * float64(in[1][j])
			}
			out[i] = T(s)
		}
	})
	return nil
}

// ---- element-wise scalar functions with their derivative ----

// scalarFn applies f element-wise; its gradient is g·df(x). The name and key
// identify the function for gorgonia's hashing.
func scalarFn(x *gorgonia.Node, name, key string, f, df func(float64) float64) (*gorgonia.Node, error) {
	dims := x.Dims()
	o := &op{name: name, key: key, inDims: []int{dims}, outDims: dims, shape: sameAs(0), wrt: []bool{true}}
	o.k32, o.k64 = both(mapK[float32](f), mapK[float64](f))
	o.diff = func(in gorgonia.Nodes, out, g *gorgonia.Node) (gorgonia.Nodes, error) {
		d := &op{name: name + "grad", key: key, inDims: []int{dims, dims}, outDims: dims, shape: sameAs(0)}
		d.k32, d.k64 = both(mulMapK[float32](df), mulMapK[float64](df))
		n, err := apply(d, in[0], g)
		return gorgonia.Nodes{n}, err
	}
	return apply(o, x)
}

func mapK[T float](f func(float64) float64) func(c *call, in [][]T, out []T) error {
	return func(c *call, in [][]T, out []T) error {
		for i, v := range in[0] {
			out[i] = T(f(float64(v)))
		}
		return nil
	}
}

func mulMapK[T float](df func(float64) float64) func(c *call, in [][]T, out []T) error {
	return func(c *call, in [][]T, out []T) error {
		for i, v := range in[0] {
			out[i] = T(float64(in[1][i]) * df(float64(v)))
		}
		return nil
	}
}

// MatMulT returns a·bᵀ for a (N×D) and b (M×D) on the heads' matrix multiply
// (OpenBLAS under -tags openblas, see GEMMBackend), differentiable with
// respect to b, and to a unless dataA says a is data whose gradient is never
// needed (which saves one of a training step's three products: gorgonia
// computes every gradient an op offers). facehead/train builds its projection
// layer with it.
func MatMulT(a, b *gorgonia.Node, dataA bool) (*gorgonia.Node, error) {
	if a == nil || b == nil || a.Dims() != 2 || b.Dims() != 2 {
		return nil, fmt.Errorf("margin: MatMulT needs two matrices")
	}
	return matMulWRT(a, b, false, true, !dataA)
}
