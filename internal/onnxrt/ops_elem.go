package onnxrt

import (
	"math"
)

// Element-wise operators with numpy broadcasting
// (https://github.com/onnx/onnx/blob/main/docs/Broadcasting.md).

const (
	opAdd = iota
	opSub
	opMul
	opDiv
	opPRelu
	opPow
	opMax
	opMin
)

func init() {
	for name, op := range map[string]int{"Add": opAdd, "Sub": opSub, "Mul": opMul, "Div": opDiv, "PRelu": opPRelu} {
		op := op
		compilers[name] = func(c *cctx) error { return compileBinary(c, op) }
	}
	for name, fn := range unaryFuncs {
		fn := fn
		compilers[name] = func(c *cctx) error { return compileUnary(c, fn) }
	}
	compilers["Pow"] = compilePow
	compilers["Relu"] = func(c *cctx) error { return compileAct(c, actRelu) }
	compilers["LeakyRelu"] = func(c *cctx) error { return compileAct(c, actLeaky) }
	compilers["Clip"] = func(c *cctx) error { return compileAct(c, actClip) }
	compilers["Sum"] = func(c *cctx) error { return compileVariadic(c, opAdd) }
	compilers["Max"] = func(c *cctx) error { return compileVariadic(c, opMax) }
	compilers["Min"] = func(c *cctx) error { return compileVariadic(c, opMin) }
}

// bcast walks two inputs broadcast to an output shape, with adjacent
// dimensions merged where both inputs allow it.
type bcast struct {
	shape  []int
	sa, sb []int
	ctr    []int
}

func newBcast(a, b, out []int) *bcast {
	sa, sb := broadcastStrides(a, out), broadcastStrides(b, out)
	var shape, ra, rb []int
	for i := range out {
		if out[i] == 1 {
			continue
		}
		if k := len(shape) - 1; k >= 0 && ra[k] == sa[i]*out[i] && rb[k] == sb[i]*out[i] {
			shape[k] *= out[i]
			ra[k], rb[k] = sa[i], sb[i]
			continue
		}
		shape, ra, rb = append(shape, out[i]), append(ra, sa[i]), append(rb, sb[i])
	}
	if len(shape) == 0 {
		shape, ra, rb = []int{1}, []int{0}, []int{0}
	}
	return &bcast{shape: shape, sa: ra, sb: rb, ctr: make([]int, len(shape))}
}

func (bc *bcast) runF(op int, d, a, b []float32) {
	r := len(bc.shape)
	inner, ia, ib := bc.shape[r-1], bc.sa[r-1], bc.sb[r-1]
	for i := range bc.ctr {
		bc.ctr[i] = 0
	}
	pa, pb := 0, 0
	for o := 0; o < len(d); o += inner {
		binF(op, d[o:o+inner], a[pa:], b[pb:], ia, ib)
		for k := r - 2; k >= 0; k-- {
			bc.ctr[k]++
			pa += bc.sa[k]
			pb += bc.sb[k]
			if bc.ctr[k] < bc.shape[k] {
				break
			}
			pa -= bc.sa[k] * bc.shape[k]
			pb -= bc.sb[k] * bc.shape[k]
			bc.ctr[k] = 0
		}
	}
}

func (bc *bcast) runI(op int, d, a, b []int64) {
	r := len(bc.shape)
	inner, ia, ib := bc.shape[r-1], bc.sa[r-1], bc.sb[r-1]
	for i := range bc.ctr {
		bc.ctr[i] = 0
	}
	pa, pb := 0, 0
	for o := 0; o < len(d); o += inner {
		for j := 0; j < inner; j++ {
			x, y := a[pa+j*ia], b[pb+j*ib]
			var v int64
			switch op {
			case opAdd:
				v = x + y
			case opSub:
				v = x - y
			case opMul:
				v = x * y
			case opDiv:
				if y != 0 {
					v = x / y
				}
			case opMax:
				v = max(x, y)
			case opMin:
				v = min(x, y)
			case opPow:
				v = int64(math.Pow(float64(x), float64(y)))
			case opPRelu:
				v = x
				if x < 0 {
					v = x * y
				}
			}
			d[o+j] = v
		}
		for k := r - 2; k >= 0; k-- {
			bc.ctr[k]++
			pa += bc.sa[k]
			pb += bc.sb[k]
			if bc.ctr[k] < bc.shape[k] {
				break
			}
			pa -= bc.sa[k] * bc.shape[k]
			pb -= bc.sb[k] * bc.shape[k]
			bc.ctr[k] = 0
		}
	}
}

// binF applies op over d with a and b read at strides ia, ib (0 or 1).
func binF(op int, d, a, b []float32, ia, ib int) {
	n := len(d)
	if ia == 1 && ib == 1 {
		a, b = a[:n], b[:n]
		switch op {
		case opAdd:
			for i := range d {
				d[i] = a[i] + b[i]
			}
			return
		case opSub:
			for i := range d {
				d[i] = a[i] - b[i]
			}
			return
		case opMul:
			for i := range d {
				d[i] = a[i] * b[i]
			}
			return
		case opDiv:
			for i := range d {
				d[i] = a[i] / b[i]
			}
			return
		}
	}
	if ia == 1 && ib == 0 {
		a = a[:n]
		y := b[0]
		switch op {
		case opAdd:
			for i := range d {
				d[i] = a[i] + y
			}
			return
		case opSub:
			for i := range d {
				d[i] = a[i] - y
			}
			return
		case opMul:
			for i := range d {
				d[i] = a[i] * y
			}
			return
		case opDiv:
			for i := range d {
				d[i] = a[i] / y
			}
			return
		}
	}
	for i := range d {
		x, y := a[i*ia], b[i*ib]
		var v float32
		switch op {
		case opAdd:
			v = x + y
		case opSub:
			v = x - y
		case opMul:
			v = x * y
		case opDiv:
			v = x / y
		case opPRelu:
			v = x
			if x < 0 {
				v = x * y
			}
		case opPow:
			v = float32(math.Pow(float64(x), float64(y)))
		case opMax:
			v = x
			if y > x || y != y {
				v = y
			}
		case opMin:
			v = x
			if y < x || y != y {
				v = y
			}
		}
		d[i] = v
	}
}

func compileBinary(c *cctx, op int) error {
	a, b := c.in[0], c.input(1)
	if b == nil {
		return c.errorf("missing input")
	}
	if a.dt != b.dt {
		return c.errorf("input types %v and %v differ", a.dt, b.dt)
	}
	if a.dt == dtBool {
		return c.errorf("%w: boolean arithmetic", ErrUnsupportedOp)
	}
	var out []int
	var err error
	bs := b.shape
	if c.opset < 7 && op != opPRelu && c.n.attrs.int("broadcast", 0) == 1 {
		// legacy broadcasting: b aligns with a at axis
		ax := c.n.attrs.int("axis", len(a.shape)-len(b.shape))
		if ax < 0 {
			ax += len(a.shape)
		}
		if ax < 0 || ax+len(b.shape) > len(a.shape) {
			return c.errorf("bad legacy broadcast axis")
		}
		bs = append(append([]int{}, b.shape...), make([]int, len(a.shape)-ax-len(b.shape))...)
		for i := len(b.shape); i < len(bs); i++ {
			bs[i] = 1
		}
	}
	if op == opPRelu && c.opset < 7 && len(a.shape) >= 2 && b.size() == a.shape[1] && b.size() > 1 {
		// PRelu-6: one slope per channel
		bs = make([]int, len(a.shape)-1)
		for i := range bs {
			bs[i] = 1
		}
		bs[0] = b.size()
	}
	out, err = broadcastShapes(a.shape, bs)
	if err != nil {
		return c.errorf("%v", err)
	}
	if op == opPRelu && !sameShape(out, a.shape) {
		return c.errorf("slope shape %v does not broadcast to %v", b.shape, a.shape)
	}
	o := c.setOut(0, a.dt, out)
	bc := newBcast(a.shape, bs, out)
	if a.dt == dtFloat {
		c.run = func() {
			if len(o.f) > 0 {
				bc.runF(op, o.f, a.f, b.f)
			}
		}
	} else {
		c.run = func() {
			if len(o.i) > 0 {
				bc.runI(op, o.i, a.i, b.i)
			}
		}
	}
	return nil
}

// compileVariadic folds Sum, Max and Min over their inputs pairwise.
func compileVariadic(c *cctx, op int) error {
	if len(c.in) == 0 || c.in[0] == nil {
		return c.errorf("no inputs")
	}
	shape := c.in[0].shape
	dt := c.in[0].dt
	for _, t := range c.in[1:] {
		var err error
		if t == nil || t.dt != dt {
			return c.errorf("bad inputs")
		}
		if shape, err = broadcastShapes(shape, t.shape); err != nil {
			return c.errorf("%v", err)
		}
	}
	if dt == dtBool {
		return c.errorf("%w: boolean %s", ErrUnsupportedOp, c.n.op)
	}
	o := c.setOut(0, dt, shape)
	first := &stridedCopy{shape: shape, strides: broadcastStrides(c.in[0].shape, shape), ctr: make([]int, len(shape))}
	var bcs []*bcast
	for _, t := range c.in[1:] {
		bcs = append(bcs, newBcast(shape, t.shape, shape))
	}
	ins := c.in
	c.run = func() {
		if o.size() == 0 {
			return
		}
		if dt == dtInt {
			first.runI(o.i, ins[0].i)
			for k, bc := range bcs {
				bc.runI(op, o.i, o.i, ins[k+1].i)
			}
			return
		}
		first.runF(o.f, ins[0].f)
		for k, bc := range bcs {
			bc.runF(op, o.f, o.f, ins[k+1].f)
		}
	}
	return nil
}

var unaryFuncs = map[string]func(x float64, a attrs) float64{
	"Sigmoid": func(x float64, _ attrs) float64 {
		if x >= 0 {
			return 1 / (1 + math.Exp(-x))
		}
		e := math.Exp(x)
		return e / (1 + e)
	},
	"Tanh":       func(x float64, _ attrs) float64 { return math.Tanh(x) },
	"Exp":        func(x float64, _ attrs) float64 { return math.Exp(x) },
	"Sqrt":       func(x float64, _ attrs) float64 { return math.Sqrt(x) },
	"Abs":        func(x float64, _ attrs) float64 { return math.Abs(x) },
	"Neg":        func(x float64, _ attrs) float64 { return -x },
	"Reciprocal": func(x float64, _ attrs) float64 { return 1 / x },
	"Floor":      func(x float64, _ attrs) float64 { return math.Floor(x) },
	"Ceil":       func(x float64, _ attrs) float64 { return math.Ceil(x) },
	"Log":        func(x float64, _ attrs) float64 { return math.Log(x) },
	"Softsign":   func(x float64, _ attrs) float64 { return x / (1 + math.Abs(x)) },
	"Softplus": func(x float64, _ attrs) float64 {
		if x > 30 {
			return x
		}
		return math.Log1p(math.Exp(x))
	},
	"Elu": func(x float64, a attrs) float64 {
		if x < 0 {
			return float64(a.float("alpha", 1)) * (math.Exp(x) - 1)
		}
		return x
	},
	"Selu": func(x float64, a attrs) float64 {
		al, g := float64(a.float("alpha", 1.67326319217681884765625)), float64(a.float("gamma", 1.05070102214813232421875))
		if x <= 0 {
			return g * (al*math.Exp(x) - al)
		}
		return g * x
	},
	"HardSigmoid": func(x float64, a attrs) float64 {
		al, b := float64(a.float("alpha", 0.2)), float64(a.float("beta", 0.5))
		return math.Max(0, math.Min(1, al*x+b))
	},
	"HardSwish": func(x float64, _ attrs) float64 { return x * math.Max(0, math.Min(1, x/6+0.5)) },
}

func compileUnary(c *cctx, fn func(float64, attrs) float64) error {
	x := c.in[0]
	if x.dt != dtFloat {
		if c.n.op == "Abs" || c.n.op == "Neg" {
			o := c.setOut(0, x.dt, x.shape)
			neg := c.n.op == "Neg"
			c.run = func() {
				for i, v := range x.i {
					if neg || v < 0 {
						v = -v
					}
					o.i[i] = v
				}
			}
			return nil
		}
		return c.errorf("%w: %s of %v", ErrUnsupportedOp, c.n.op, x.dt)
	}
	o := c.setOut(0, dtFloat, x.shape)
	a := c.n.attrs
	if c.n.op == "Exp" {
		c.run = func() { expF(o.f, x.f) }
		return nil
	}
	c.run = func() {
		for i, v := range x.f {
			o.f[i] = float32(fn(float64(v), a))
		}
	}
	return nil
}

func expF(d, s []float32) {
	for i, v := range s {
		d[i] = float32(math.Exp(float64(v)))
	}
}

// activation kinds, standalone and fused into Conv/Gemm epilogues.
const (
	actNone = iota
	actRelu
	actLeaky
	actClip
	actPRelu
)

// fusion is an activation applied to a Conv's output channels.
type fusion struct {
	kind     int
	alpha    float32   // LeakyRelu
	lo, hi   float32   // Clip
	slope    []float32 // PRelu, one per channel (or one for all)
	residual int       // value id added before the activation, -1 for none
}

func clipBounds(c *cctx) (float32, float32, error) {
	lo, hi := float32(math.Inf(-1)), float32(math.Inf(1))
	if c.opset < 11 {
		return c.n.attrs.float("min", lo), c.n.attrs.float("max", hi), nil
	}
	for k, p := range []*float32{&lo, &hi} {
		t := c.input(k + 1)
		if t == nil {
			continue
		}
		if t.size() != 1 {
			return 0, 0, c.errorf("Clip bounds must be scalars")
		}
		if !t.konst {
			continue // read at run time
		}
		if t.dt == dtFloat {
			*p = t.f[0]
		} else {
			*p = float32(t.i[0])
		}
	}
	return lo, hi, nil
}

func compileAct(c *cctx, kind int) error {
	x := c.in[0]
	f := fusion{kind: kind, alpha: c.n.attrs.float("alpha", 0.01)}
	if kind == actClip {
		var err error
		if f.lo, f.hi, err = clipBounds(c); err != nil {
			return err
		}
	}
	o := c.setOut(0, x.dt, x.shape)
	if x.dt != dtFloat {
		if kind != actRelu && kind != actClip {
			return c.errorf("%w: integer %s", ErrUnsupportedOp, c.n.op)
		}
		c.run = func() {
			for i, v := range x.i {
				switch kind {
				case actRelu:
					v = max(v, 0)
				case actClip:
					if float32(v) < f.lo {
						v = int64(f.lo)
					}
					if float32(v) > f.hi {
						v = int64(f.hi)
					}
				}
				o.i[i] = v
			}
		}
		return nil
	}
	lo, hi := c.input(1), c.input(2)
	c.run = func() {
		if kind == actClip && c.opset >= 11 {
			if lo != nil {
				f.lo = lo.f[0]
			}
			if hi != nil {
				f.hi = hi.f[0]
			}
		}
		applyAct(&f, o.f, x.f, 0)
	}
	return nil
}

// compilePow computes Pow for any mix of float and integer base and
// exponent; the result has the base's type.
func compilePow(c *cctx) error {
	a, b := c.in[0], c.input(1)
	if b == nil || a.dt == dtBool || b.dt == dtBool {
		return c.errorf("bad inputs")
	}
	out, err := broadcastShapes(a.shape, b.shape)
	if err != nil {
		return c.errorf("%v", err)
	}
	o := c.setOut(0, a.dt, out)
	sa := &stridedCopy{shape: out, strides: broadcastStrides(a.shape, out), ctr: make([]int, len(out))}
	sb := &stridedCopy{shape: out, strides: broadcastStrides(b.shape, out), ctr: make([]int, len(out))}
	n := prod(out)
	var ai, bi []int64
	kbytes := int64(n) * 8
	if a.dt != dtFloat {
		kbytes += int64(n) * 8
	}
	if b.dt != dtFloat {
		kbytes += int64(n) * 8
	}
	if err := c.reserve(kbytes); err != nil {
		return err
	}
	af, bf := make([]float32, n), make([]float32, n)
	if a.dt != dtFloat {
		ai = make([]int64, n)
	}
	if b.dt != dtFloat {
		bi = make([]int64, n)
	}
	c.run = func() {
		if n == 0 {
			return
		}
		if a.dt == dtFloat {
			sa.runF(af, a.f)
		} else {
			sa.runI(ai, a.i)
			for i, v := range ai {
				af[i] = float32(v)
			}
		}
		if b.dt == dtFloat {
			sb.runF(bf, b.f)
		} else {
			sb.runI(bi, b.i)
			for i, v := range bi {
				bf[i] = float32(v)
			}
		}
		for i := range af {
			if a.dt == dtInt && b.dt == dtInt {
				o.i[i] = int64(math.Pow(float64(ai[i]), float64(bi[i])))
				continue
			}
			v := math.Pow(float64(af[i]), float64(bf[i]))
			if a.dt == dtFloat {
				o.f[i] = float32(v)
			} else {
				o.i[i] = int64(v)
			}
		}
	}
	return nil
}

// applyAct writes act(s) to d; ch selects the PRelu slope. The sign tests
// are branch-free (the sign bit as 0 or 1): activations have random signs,
// and a mispredicted branch per element costs more than the arithmetic.
func applyAct(f *fusion, d, s []float32, ch int) {
	switch f.kind {
	case actNone:
		if &d[0] != &s[0] {
			copy(d, s)
		}
	case actRelu:
		d = d[:len(s)]
		for i, v := range s {
			b := math.Float32bits(v)
			d[i] = math.Float32frombits(b &^ uint32(int32(b)>>31))
		}
	case actLeaky:
		scaleNeg(d, s, f.alpha)
	case actClip:
		lo, hi := f.lo, f.hi
		for i, v := range s {
			d[i] = min(max(v, lo), hi)
		}
	case actPRelu:
		a := f.slope[0]
		if len(f.slope) > 1 {
			a = f.slope[ch]
		}
		scaleNeg(d, s, a)
	}
}

// scaleNeg writes v for v ≥ 0 and a·v for v < 0.
func scaleNeg(d, s []float32, a float32) {
	d = d[:len(s)]
	am1 := a - 1
	for i, v := range s {
		neg := float32(math.Float32bits(v) >> 31)
		d[i] = v * (1 + am1*neg)
	}
}
