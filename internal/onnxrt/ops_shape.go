package onnxrt

import (
	"fmt"
)

// Shape, layout and constant operators. Values whose inputs are all
// constant are folded at plan time (Shape → Gather → Unsqueeze → Concat
// chains become constants), so the shape arguments of Reshape, Slice,
// Squeeze and friends are known when the plan is built.

func init() {
	compilers["Constant"] = compileConstant
	compilers["Shape"] = compileShape
	compilers["Reshape"] = compileReshape
	compilers["Flatten"] = compileFlatten
	compilers["Squeeze"] = compileSqueeze
	compilers["Unsqueeze"] = compileUnsqueeze
	compilers["Identity"] = compileIdentity
	compilers["Dropout"] = compileDropout
	compilers["Transpose"] = compileTranspose
	compilers["Concat"] = compileConcat
	compilers["Slice"] = compileSlice
	compilers["Gather"] = compileGather
	compilers["Cast"] = compileCast
	compilers["ConstantOfShape"] = compileConstantOfShape
	compilers["Expand"] = compileExpand
}

func compileConstant(c *cctx) error {
	a := c.n.attrs
	var t *tensor
	switch {
	case a["value"] != nil:
		gt, ok := a["value"].(gtensorT)
		if !ok {
			return c.errorf("value is not a tensor")
		}
		var err error
		t, err = fromGorgonia(gt)
		if err != nil {
			return c.errorf("%v", err)
		}
	case a.has("value_float"):
		t = &tensor{shape: []int{}, f: []float32{a.float("value_float", 0)}}
	case a.has("value_floats"):
		fs, _ := a["value_floats"].([]float32)
		t = &tensor{shape: []int{len(fs)}, f: append([]float32{}, fs...)}
	case a.has("value_int"):
		t = &tensor{shape: []int{}, dt: dtInt, i: []int64{int64(a.int("value_int", 0))}}
	case a.has("value_ints"):
		is, _ := a["value_ints"].([]int64)
		t = &tensor{shape: []int{len(is)}, dt: dtInt, i: append([]int64{}, is...)}
	default:
		return c.errorf("%w: this form of Constant", ErrUnsupportedOp)
	}
	t.konst = true
	c.out[0] = t
	return nil
}

func compileShape(c *cctx) error {
	s := c.in[0].shape
	r := len(s)
	start, end := c.n.attrs.int("start", 0), c.n.attrs.int("end", r)
	if start < 0 {
		start += r
	}
	if end < 0 {
		end += r
	}
	start, end = clamp(start, 0, r), clamp(end, 0, r)
	if end < start {
		end = start
	}
	t := c.setOut(0, dtInt, []int{end - start})
	t.i = make([]int64, end-start)
	for i := range t.i {
		t.i[i] = int64(s[start+i])
	}
	return nil
}

func clamp(v, lo, hi int) int {
	if v < lo {
		return lo
	}
	if v > hi {
		return hi
	}
	return v
}

// constInts reads a constant integer input.
func (c *cctx) constInts(i int) ([]int, error) {
	t := c.input(i)
	if t == nil {
		return nil, nil
	}
	if !t.konst {
		return nil, c.errorf("%w: input %d must be constant at plan time", ErrUnsupportedOp, i)
	}
	out := make([]int, t.size())
	for k := range out {
		if t.dt == dtFloat {
			out[k] = int(t.f[k])
		} else {
			out[k] = int(t.i[k])
		}
	}
	return out, nil
}

func compileReshape(c *cctx) error {
	x := c.in[0]
	var shape []int
	if len(c.in) > 1 && c.in[1] != nil {
		var err error
		if shape, err = c.constInts(1); err != nil {
			return err
		}
	} else {
		shape = c.n.attrs.ints("shape")
	}
	allowZero := c.n.attrs.int("allowzero", 0) == 1
	out := make([]int, len(shape))
	neg := -1
	known := 1
	for i, d := range shape {
		switch {
		case d == 0 && !allowZero:
			if i >= len(x.shape) {
				return c.errorf("shape %v: 0 at %d beyond input rank", shape, i)
			}
			out[i] = x.shape[i]
		case d == -1:
			if neg >= 0 {
				return c.errorf("shape %v has two -1", shape)
			}
			neg = i
			continue
		case d < 0:
			return c.errorf("bad shape %v", shape)
		default:
			out[i] = d
		}
		known *= out[i]
	}
	if neg >= 0 {
		if known == 0 || x.size()%known != 0 {
			return c.errorf("cannot reshape %v to %v", x.shape, shape)
		}
		out[neg] = x.size() / known
	}
	if prod(out) != x.size() {
		return c.errorf("cannot reshape %v to %v", x.shape, shape)
	}
	c.setOut(0, x.dt, out)
	c.alias = 0
	return nil
}

func compileFlatten(c *cctx) error {
	x := c.in[0]
	r := len(x.shape)
	ax := c.n.attrs.int("axis", 1)
	if ax < 0 {
		ax += r
	}
	if ax < 0 || ax > r {
		return c.errorf("axis out of range")
	}
	c.setOut(0, x.dt, []int{prod(x.shape[:ax]), prod(x.shape[ax:])})
	c.alias = 0
	return nil
}

func (c *cctx) axesArg(inputIdx int) ([]int, bool, error) {
	if c.n.attrs.has("axes") {
		return c.n.attrs.ints("axes"), true, nil
	}
	if c.input(inputIdx) != nil {
		a, err := c.constInts(inputIdx)
		return a, true, err
	}
	return nil, false, nil
}

func normAxes(axes []int, r int) ([]int, error) {
	out := make([]int, len(axes))
	seen := map[int]bool{}
	for i, a := range axes {
		if a < 0 {
			a += r
		}
		if a < 0 || a >= r || seen[a] {
			return nil, fmt.Errorf("axis %d out of range or repeated for rank %d", axes[i], r)
		}
		seen[a] = true
		out[i] = a
	}
	return out, nil
}

func compileSqueeze(c *cctx) error {
	x := c.in[0]
	axes, given, err := c.axesArg(1)
	if err != nil {
		return err
	}
	drop := make([]bool, len(x.shape))
	if given {
		ax, err := normAxes(axes, len(x.shape))
		if err != nil {
			return c.errorf("%v", err)
		}
		for _, a := range ax {
			if x.shape[a] != 1 {
				return c.errorf("cannot squeeze axis %d of %v", a, x.shape)
			}
			drop[a] = true
		}
	} else {
		for i, d := range x.shape {
			drop[i] = d == 1
		}
	}
	var out []int
	for i, d := range x.shape {
		if !drop[i] {
			out = append(out, d)
		}
	}
	c.setOut(0, x.dt, out)
	c.alias = 0
	return nil
}

func compileUnsqueeze(c *cctx) error {
	x := c.in[0]
	axes, _, err := c.axesArg(1)
	if err != nil {
		return err
	}
	r := len(x.shape) + len(axes)
	ax, err := normAxes(axes, r)
	if err != nil {
		return c.errorf("%v", err)
	}
	ins := make([]bool, r)
	for _, a := range ax {
		ins[a] = true
	}
	out := make([]int, 0, r)
	k := 0
	for i := 0; i < r; i++ {
		if ins[i] {
			out = append(out, 1)
		} else {
			out = append(out, x.shape[k])
			k++
		}
	}
	c.setOut(0, x.dt, out)
	c.alias = 0
	return nil
}

func compileIdentity(c *cctx) error {
	c.setOut(0, c.in[0].dt, c.in[0].shape)
	c.alias = 0
	return nil
}

func compileDropout(c *cctx) error {
	x := c.in[0]
	if t := c.input(2); t != nil {
		if !t.konst {
			return c.errorf("%w: training_mode must be constant", ErrUnsupportedOp)
		}
		if t.i[0] != 0 {
			return c.errorf("%w: training mode", ErrUnsupportedOp)
		}
	}
	if c.opset < 7 && c.n.attrs.int("is_test", 0) == 0 {
		return c.errorf("%w: training mode", ErrUnsupportedOp)
	}
	o := c.setOut(0, x.dt, x.shape)
	if len(c.out) == 1 {
		c.alias = 0
		return nil
	}
	mdt := dtBool
	if c.opset < 10 {
		mdt = dtFloat
	}
	mk := c.setOut(1, mdt, x.shape)
	c.run = func() {
		copyTensor(o, x)
		if mk.dt == dtFloat {
			for i := range mk.f {
				mk.f[i] = 1
			}
		} else {
			for i := range mk.i {
				mk.i[i] = 1
			}
		}
	}
	return nil
}

func copyTensor(dst, src *tensor) {
	if src.dt == dtFloat {
		copy(dst.f, src.f)
	} else {
		copy(dst.i, src.i)
	}
}

// strided copy: out[idx] = in[off + Σ idx_k·strides_k] over shape.
type stridedCopy struct {
	shape   []int
	strides []int
	off     int
	ctr     []int
}

func (s *stridedCopy) runF(dst, src []float32) {
	r := len(s.shape)
	if len(dst) == 0 {
		return
	}
	if r == 0 {
		dst[0] = src[s.off]
		return
	}
	ctr := s.ctr
	for i := range ctr {
		ctr[i] = 0
	}
	inner, is := s.shape[r-1], s.strides[r-1]
	pos := s.off
	for o := 0; o < len(dst); o += inner {
		d := dst[o : o+inner]
		if is == 1 {
			copy(d, src[pos:pos+inner])
		} else {
			p := pos
			for j := range d {
				d[j] = src[p]
				p += is
			}
		}
		// advance the odometer over the outer dims
		for k := r - 2; k >= 0; k-- {
			ctr[k]++
			pos += s.strides[k]
			if ctr[k] < s.shape[k] {
				break
			}
			pos -= s.strides[k] * s.shape[k]
			ctr[k] = 0
		}
	}
}

func (s *stridedCopy) runI(dst, src []int64) {
	r := len(s.shape)
	if len(dst) == 0 {
		return
	}
	if r == 0 {
		dst[0] = src[s.off]
		return
	}
	ctr := s.ctr
	for i := range ctr {
		ctr[i] = 0
	}
	inner, is := s.shape[r-1], s.strides[r-1]
	pos := s.off
	for o := 0; o < len(dst); o += inner {
		p := pos
		for j := 0; j < inner; j++ {
			dst[o+j] = src[p]
			p += is
		}
		for k := r - 2; k >= 0; k-- {
			ctr[k]++
			pos += s.strides[k]
			if ctr[k] < s.shape[k] {
				break
			}
			pos -= s.strides[k] * s.shape[k]
			ctr[k] = 0
		}
	}
}

func (s *stridedCopy) run(dst, src *tensor) {
	if src.dt == dtFloat {
		s.runF(dst.f, src.f)
	} else {
		s.runI(dst.i, src.i)
	}
}

func contiguousStrides(shape []int) []int {
	st := make([]int, len(shape))
	s := 1
	for i := len(shape) - 1; i >= 0; i-- {
		st[i] = s
		s *= shape[i]
	}
	return st
}

func compileTranspose(c *cctx) error {
	x := c.in[0]
	r := len(x.shape)
	perm := c.n.attrs.ints("perm")
	if perm == nil {
		for i := r - 1; i >= 0; i-- {
			perm = append(perm, i)
		}
	}
	if len(perm) != r {
		return c.errorf("perm %v for rank %d", perm, r)
	}
	perm, err := normAxes(perm, r)
	if err != nil {
		return c.errorf("%v", err)
	}
	xs := contiguousStrides(x.shape)
	out := make([]int, r)
	st := make([]int, r)
	for i, p := range perm {
		out[i] = x.shape[p]
		st[i] = xs[p]
	}
	o := c.setOut(0, x.dt, out)
	sc := &stridedCopy{shape: out, strides: st, ctr: make([]int, r)}
	c.run = func() { sc.run(o, x) }
	return nil
}

func compileConcat(c *cctx) error {
	first := c.in[0]
	if first == nil {
		return c.errorf("no inputs")
	}
	r := len(first.shape)
	ax := c.n.attrs.int("axis", 0)
	if !c.n.attrs.has("axis") && c.opset >= 4 {
		return c.errorf("axis required")
	}
	if ax < 0 {
		ax += r
	}
	if ax < 0 || ax >= r {
		return c.errorf("axis out of range")
	}
	out := append([]int{}, first.shape...)
	out[ax] = 0
	for _, t := range c.in {
		if t == nil || len(t.shape) != r || t.dt != first.dt {
			return c.errorf("inputs of different rank or type")
		}
		for i := range t.shape {
			if i != ax && t.shape[i] != first.shape[i] {
				return c.errorf("shapes %v and %v differ off the axis", first.shape, t.shape)
			}
		}
		out[ax] += t.shape[ax]
	}
	o := c.setOut(0, first.dt, out)
	outer := prod(out[:ax])
	inner := prod(out[ax+1:])
	ins := c.in
	c.run = func() {
		off := 0
		rowOut := out[ax] * inner
		for _, t := range ins {
			blk := t.shape[ax] * inner
			for b := 0; b < outer; b++ {
				if o.dt == dtFloat {
					copy(o.f[b*rowOut+off:b*rowOut+off+blk], t.f[b*blk:(b+1)*blk])
				} else {
					copy(o.i[b*rowOut+off:b*rowOut+off+blk], t.i[b*blk:(b+1)*blk])
				}
			}
			off += blk
		}
	}
	return nil
}

func compileSlice(c *cctx) error {
	x := c.in[0]
	r := len(x.shape)
	var starts, ends, axes, steps []int
	var err error
	if c.opset < 10 {
		starts, ends, axes = c.n.attrs.ints("starts"), c.n.attrs.ints("ends"), c.n.attrs.ints("axes")
	} else {
		if starts, err = c.constInts(1); err != nil {
			return err
		}
		if ends, err = c.constInts(2); err != nil {
			return err
		}
		if axes, err = c.constInts(3); err != nil {
			return err
		}
		if steps, err = c.constInts(4); err != nil {
			return err
		}
	}
	if len(starts) != len(ends) {
		return c.errorf("starts and ends differ in length")
	}
	if axes == nil {
		for i := range starts {
			axes = append(axes, i)
		}
	}
	if len(axes) != len(starts) || (steps != nil && len(steps) != len(starts)) {
		return c.errorf("slice arguments differ in length")
	}
	// element strides of x need the raw (possibly huge) ends: use int64 math
	begin := make([]int, r)
	step := make([]int, r)
	out := append([]int{}, x.shape...)
	for i := range step {
		step[i] = 1
	}
	axes, err = normAxes(axes, r)
	if err != nil {
		return c.errorf("%v", err)
	}
	for k, a := range axes {
		d := x.shape[a]
		st := 1
		if steps != nil {
			st = steps[k]
		}
		if st == 0 {
			return c.errorf("step 0")
		}
		s, e := starts[k], ends[k]
		if s < 0 {
			s += d
		}
		if e < 0 {
			e += d
		}
		var n int
		if st > 0 {
			s, e = clamp(s, 0, d), clamp(e, 0, d)
			if e > s {
				n = (e - s + st - 1) / st
			}
		} else {
			s, e = clamp(s, -1, d-1), clamp(e, -1, d-1)
			if s > e {
				n = (s - e - st - 1) / (-st)
			}
		}
		begin[a], step[a], out[a] = s, st, n
	}
	xs := contiguousStrides(x.shape)
	off := 0
	st := make([]int, r)
	for i := range xs {
		if out[i] > 0 {
			off += begin[i] * xs[i]
		}
		st[i] = xs[i] * step[i]
	}
	o := c.setOut(0, x.dt, out)
	sc := &stridedCopy{shape: out, strides: st, off: off, ctr: make([]int, r)}
	c.run = func() {
		if o.size() > 0 {
			sc.run(o, x)
		}
	}
	return nil
}

func compileGather(c *cctx) error {
	x, idx := c.in[0], c.in[1]
	r := len(x.shape)
	ax := c.n.attrs.int("axis", 0)
	if ax < 0 {
		ax += r
	}
	if ax < 0 || ax >= r {
		return c.errorf("axis out of range")
	}
	if idx.dt == dtFloat {
		return c.errorf("float indices")
	}
	out := append(append(append([]int{}, x.shape[:ax]...), idx.shape...), x.shape[ax+1:]...)
	o := c.setOut(0, x.dt, out)
	outer, inner, d := prod(x.shape[:ax]), prod(x.shape[ax+1:]), x.shape[ax]
	ni := idx.size()
	if idx.konst {
		for _, v := range idx.i {
			if v < -int64(d) || v >= int64(d) {
				return c.errorf("index %d out of range [0,%d)", v, d)
			}
		}
	}
	c.run = func() {
		for b := 0; b < outer; b++ {
			for j := 0; j < ni; j++ {
				k := int(idx.i[j])
				if k < 0 {
					k += d
				}
				if k < 0 || k >= d {
					k = clamp(k, 0, d-1) // run-time indices out of range: clamp rather than crash
				}
				dst := (b*ni + j) * inner
				src := (b*d + k) * inner
				if x.dt == dtFloat {
					copy(o.f[dst:dst+inner], x.f[src:src+inner])
				} else {
					copy(o.i[dst:dst+inner], x.i[src:src+inner])
				}
			}
		}
	}
	return nil
}

func compileCast(c *cctx) error {
	x := c.in[0]
	to := c.n.attrs.int("to", 0)
	var dt dtype
	switch to {
	case 1, 11: // FLOAT, DOUBLE
		dt = dtFloat
	case 6, 7: // INT32, INT64
		dt = dtInt
	case 9:
		dt = dtBool
	default:
		return c.errorf("%w: cast to type %d", ErrUnsupportedOp, to)
	}
	o := c.setOut(0, dt, x.shape)
	c.run = func() {
		switch {
		case x.dt == dtFloat && dt == dtFloat:
			copy(o.f, x.f)
		case x.dt == dtFloat && dt == dtInt:
			for i, v := range x.f {
				o.i[i] = int64(v)
			}
		case x.dt == dtFloat && dt == dtBool:
			for i, v := range x.f {
				o.i[i] = b2i(v != 0)
			}
		case dt == dtFloat:
			for i, v := range x.i {
				o.f[i] = float32(v)
			}
		case dt == dtBool:
			for i, v := range x.i {
				o.i[i] = b2i(v != 0)
			}
		default:
			copy(o.i, x.i)
		}
	}
	return nil
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func compileConstantOfShape(c *cctx) error {
	shape, err := c.constInts(0)
	if err != nil {
		return err
	}
	t := &tensor{shape: shape}
	if v, ok := c.n.attrs["value"].(gtensorT); ok {
		vt, err := fromGorgonia(v)
		if err != nil {
			return c.errorf("%v", err)
		}
		t.dt = vt.dt
		if vt.size() != 1 {
			return c.errorf("value must have one element")
		}
		if vt.dt == dtFloat {
			t.f = make([]float32, prod(shape))
			for i := range t.f {
				t.f[i] = vt.f[0]
			}
		} else {
			t.i = make([]int64, prod(shape))
			for i := range t.i {
				t.i[i] = vt.i[0]
			}
		}
	} else {
		t.f = make([]float32, prod(shape))
	}
	c.out[0] = t
	return nil
}

func compileExpand(c *cctx) error {
	x := c.in[0]
	shape, err := c.constInts(1)
	if err != nil {
		return err
	}
	out, err := broadcastShapes(x.shape, shape)
	if err != nil {
		return c.errorf("%v", err)
	}
	o := c.setOut(0, x.dt, out)
	sc := &stridedCopy{shape: out, strides: broadcastStrides(x.shape, out), ctr: make([]int, len(out))}
	c.run = func() { sc.run(o, x) }
	return nil
}

// broadcastShapes is numpy's multidirectional broadcasting.
func broadcastShapes(a, b []int) ([]int, error) {
	r := len(a)
	if len(b) > r {
		r = len(b)
	}
	out := make([]int, r)
	for i := 0; i < r; i++ {
		da, db := 1, 1
		if k := len(a) - r + i; k >= 0 {
			da = a[k]
		}
		if k := len(b) - r + i; k >= 0 {
			db = b[k]
		}
		switch {
		case da == db:
			out[i] = da
		case da == 1:
			out[i] = db
		case db == 1:
			out[i] = da
		default:
			return nil, fmt.Errorf("shapes %v and %v do not broadcast", a, b)
		}
	}
	return out, nil
}

// broadcastStrides gives the element strides of a tensor of shape s read
// as the broadcast shape out (0 along broadcast dimensions).
func broadcastStrides(s, out []int) []int {
	st := make([]int, len(out))
	cs := contiguousStrides(s)
	for i := range out {
		k := len(s) - len(out) + i
		if k >= 0 && s[k] != 1 {
			st[i] = cs[k]
		}
	}
	return st
}

func init() {
	compilers["Split"] = compileSplit
	compilers["Tile"] = compileTile
}

func compileSplit(c *cctx) error {
	x := c.in[0]
	r := len(x.shape)
	ax := c.n.attrs.int("axis", 0)
	if ax < 0 {
		ax += r
	}
	if ax < 0 || ax >= r {
		return c.errorf("axis out of range")
	}
	split := c.n.attrs.ints("split")
	if split == nil && c.input(1) != nil {
		var err error
		if split, err = c.constInts(1); err != nil {
			return err
		}
	}
	n := len(c.out)
	if split == nil {
		if x.shape[ax]%n != 0 {
			return c.errorf("cannot split %d into %d equal parts", x.shape[ax], n)
		}
		for i := 0; i < n; i++ {
			split = append(split, x.shape[ax]/n)
		}
	}
	if len(split) != n {
		return c.errorf("split %v for %d outputs", split, n)
	}
	total := 0
	for _, s := range split {
		if s < 0 {
			return c.errorf("negative split")
		}
		total += s
	}
	if total != x.shape[ax] {
		return c.errorf("split %v does not sum to %d", split, x.shape[ax])
	}
	outer, inner := prod(x.shape[:ax]), prod(x.shape[ax+1:])
	outs := make([]*tensor, n)
	for i, s := range split {
		shape := append([]int{}, x.shape...)
		shape[ax] = s
		outs[i] = c.setOut(i, x.dt, shape)
	}
	c.run = func() {
		off := 0
		row := x.shape[ax] * inner
		for i, s := range split {
			blk := s * inner
			for b := 0; b < outer; b++ {
				if x.dt == dtFloat {
					copy(outs[i].f[b*blk:(b+1)*blk], x.f[b*row+off:b*row+off+blk])
				} else {
					copy(outs[i].i[b*blk:(b+1)*blk], x.i[b*row+off:b*row+off+blk])
				}
			}
			off += blk
		}
	}
	return nil
}

func compileTile(c *cctx) error {
	x := c.in[0]
	reps, err := c.constInts(1)
	if err != nil {
		return err
	}
	if len(reps) != len(x.shape) {
		return c.errorf("repeats %v for rank %d", reps, len(x.shape))
	}
	// view the output as shape (reps[0], x0, reps[1], x1, ...) read from x
	// with stride 0 along the repeat dimensions
	var shape, strides []int
	xs := contiguousStrides(x.shape)
	out := make([]int, len(x.shape))
	for i, d := range x.shape {
		if reps[i] < 0 {
			return c.errorf("negative repeat")
		}
		out[i] = d * reps[i]
		shape = append(shape, reps[i], d)
		strides = append(strides, 0, xs[i])
	}
	o := c.setOut(0, x.dt, out)
	sc := &stridedCopy{shape: shape, strides: strides, ctr: make([]int, len(shape))}
	c.run = func() {
		if o.size() > 0 {
			sc.run(o, x)
		}
	}
	return nil
}
