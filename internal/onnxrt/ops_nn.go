package onnxrt

import (
	"math"

	"github.com/facever/facever/internal/gemm"
)

func init() {
	compilers["Gemm"] = compileGemm
	compilers["MatMul"] = compileMatMul
	compilers["BatchNormalization"] = compileBatchNorm
	compilers["MaxPool"] = func(c *cctx) error { return compilePool(c, true) }
	compilers["AveragePool"] = func(c *cctx) error { return compilePool(c, false) }
	compilers["GlobalAveragePool"] = func(c *cctx) error { return compileGlobalPool(c, false) }
	compilers["GlobalMaxPool"] = func(c *cctx) error { return compileGlobalPool(c, true) }
	compilers["Softmax"] = func(c *cctx) error { return compileSoftmax(c, false) }
	compilers["LogSoftmax"] = func(c *cctx) error { return compileSoftmax(c, true) }
	compilers["LpNormalization"] = compileLpNorm
	compilers["Pad"] = compilePad
	for _, r := range []string{"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceSumSquare", "ReduceL1", "ReduceL2"} {
		r := r
		compilers[r] = func(c *cctx) error { return compileReduce(c, r) }
	}
}

func compileGemm(c *cctx) error {
	a, b, cc := c.in[0], c.input(1), c.input(2)
	if b == nil || a.dt != dtFloat || b.dt != dtFloat || len(a.shape) != 2 || len(b.shape) != 2 {
		return c.errorf("needs 2-D float A and B")
	}
	ta, tb := c.n.attrs.int("transA", 0) == 1, c.n.attrs.int("transB", 0) == 1
	alpha, beta := c.n.attrs.float("alpha", 1), c.n.attrs.float("beta", 1)
	M, K := a.shape[0], a.shape[1]
	ars, acs := K, 1
	if ta {
		M, K = K, M
		ars, acs = 1, M
	}
	K2, N := b.shape[0], b.shape[1]
	brs, bcs := N, 1
	if tb {
		K2, N = N, K2
		brs, bcs = 1, K2
	}
	if K != K2 {
		return c.errorf("A %v and B %v do not multiply", a.shape, b.shape)
	}
	y := c.setOut(0, dtFloat, []int{M, N})
	var cs *stridedCopy
	if cc != nil && beta != 0 {
		if c.opset < 7 && c.n.attrs.int("broadcast", 0) == 0 && !sameShape(cc.shape, y.shape) {
			return c.errorf("C shape %v without broadcast", cc.shape)
		}
		full, err := broadcastShapes([]int{M, N}, cc.shape)
		if err != nil || !sameShape(full, y.shape) {
			return c.errorf("C of shape %v for output %v", cc.shape, y.shape)
		}
		cs = &stridedCopy{shape: y.shape, strides: broadcastStrides(cc.shape, y.shape), ctr: make([]int, 2)}
	}
	s := gemm.NewScratch(M, K)
	var bp []float32
	if b.konst {
		// constant B (a layer's weights): packed once here, not every run
		if err := c.reserve(int64(gemm.PackedBSize(K, N)) * 4); err != nil {
			return err
		}
		bp = make([]float32, gemm.PackedBSize(K, N))
		gemm.PackBAll(bp, b.f, K, N, brs, bcs)
	}
	c.run = func() {
		bt := float32(0)
		if cs != nil {
			cs.runF(y.f, cc.f)
			bt = beta
		}
		if bp != nil && !legacyConv {
			gemm.SerialPacked(M, N, K, alpha, a.f, ars, acs, bp, bt, y.f, N, s)
			return
		}
		gemm.Serial(M, N, K, alpha, a.f, ars, acs, b.f, brs, bcs, bt, y.f, N, s)
	}
	return nil
}

func compileMatMul(c *cctx) error {
	a, b := c.in[0], c.input(1)
	if b == nil || a.dt != dtFloat || b.dt != dtFloat || len(a.shape) == 0 || len(b.shape) == 0 {
		return c.errorf("needs float A and B of rank ≥ 1")
	}
	as, bs := a.shape, b.shape
	if len(as) == 1 {
		as = []int{1, as[0]}
	}
	if len(bs) == 1 {
		bs = []int{bs[0], 1}
	}
	M, K := as[len(as)-2], as[len(as)-1]
	K2, N := bs[len(bs)-2], bs[len(bs)-1]
	if K != K2 {
		return c.errorf("A %v and B %v do not multiply", a.shape, b.shape)
	}
	batch, err := broadcastShapes(as[:len(as)-2], bs[:len(bs)-2])
	if err != nil {
		return c.errorf("%v", err)
	}
	out := append(append([]int{}, batch...), M, N)
	if len(a.shape) == 1 {
		out = append(out[:len(out)-2], N)
	}
	if len(b.shape) == 1 {
		out = out[:len(out)-1]
	}
	y := c.setOut(0, dtFloat, out)
	nb := prod(batch)
	aSt := broadcastStrides(as[:len(as)-2], batch)
	bSt := broadcastStrides(bs[:len(bs)-2], batch)
	ctr := make([]int, len(batch))
	s := gemm.NewScratch(M, K)
	c.run = func() {
		for i := range ctr {
			ctr[i] = 0
		}
		for bi := 0; bi < nb; bi++ {
			ao, bo := 0, 0
			for k := range ctr {
				ao += ctr[k] * aSt[k]
				bo += ctr[k] * bSt[k]
			}
			gemm.Serial(M, N, K, 1, a.f[ao*M*K:], K, 1, b.f[bo*K*N:], N, 1, 0, y.f[bi*M*N:], N, s)
			for k := len(ctr) - 1; k >= 0; k-- {
				ctr[k]++
				if ctr[k] < batch[k] {
					break
				}
				ctr[k] = 0
			}
		}
	}
	return nil
}

func compileBatchNorm(c *cctx) error {
	x := c.in[0]
	if len(c.out) > 1 && c.opset >= 14 {
		return c.errorf("%w: training mode", ErrUnsupportedOp)
	}
	if c.n.attrs.int("training_mode", 0) != 0 {
		return c.errorf("%w: training mode", ErrUnsupportedOp)
	}
	if len(c.out) > 1 {
		return c.errorf("%w: training outputs", ErrUnsupportedOp)
	}
	if len(x.shape) < 2 || x.dt != dtFloat {
		return c.errorf("needs float X of rank ≥ 2")
	}
	C := x.shape[1]
	for i := 1; i <= 4; i++ {
		t := c.input(i)
		if t == nil || t.dt != dtFloat || t.size() != C {
			if c.opset < 9 && c.n.attrs.int("spatial", 1) == 0 {
				return c.errorf("%w: spatial=0", ErrUnsupportedOp)
			}
			return c.errorf("parameter %d must have %d values", i, C)
		}
	}
	eps := float64(c.n.attrs.float("epsilon", 1e-5))
	y := c.setOut(0, dtFloat, x.shape)
	scale := make([]float32, C)
	shift := make([]float32, C)
	inner := prod(x.shape[2:])
	sc, bi, mean, vr := c.in[1], c.in[2], c.in[3], c.in[4]
	c.run = func() {
		for ch := 0; ch < C; ch++ {
			s := float64(sc.f[ch]) / math.Sqrt(float64(vr.f[ch])+eps)
			scale[ch] = float32(s)
			shift[ch] = float32(float64(bi.f[ch]) - float64(mean.f[ch])*s)
		}
		for i := 0; i < x.shape[0]*C; i++ {
			ch := i % C
			s, b := scale[ch], shift[ch]
			src, dst := x.f[i*inner:(i+1)*inner], y.f[i*inner:(i+1)*inner]
			for j, v := range src {
				dst[j] = v*s + b
			}
		}
	}
	return nil
}

func compilePool(c *cctx, isMax bool) error {
	x := c.in[0]
	if x.dt != dtFloat {
		return c.errorf("needs float X")
	}
	if len(c.out) > 1 {
		return c.errorf("%w: Indices output", ErrUnsupportedOp)
	}
	r := len(x.shape)
	if r != 3 && r != 4 {
		return c.errorf("%w: %d-D pooling", ErrUnsupportedOp, r-2)
	}
	sp := r - 2
	k := c.n.attrs.ints("kernel_shape")
	if len(k) != sp {
		return c.errorf("kernel_shape %v", k)
	}
	strides := intsOr(c.n.attrs, "strides", sp, 1)
	dil := intsOr(c.n.attrs, "dilations", sp, 1)
	if len(strides) != sp || len(dil) != sp {
		return c.errorf("strides or dilations of wrong length")
	}
	for i := range k {
		if k[i] < 1 || strides[i] < 1 || dil[i] < 1 {
			return c.errorf("bad kernel, strides or dilations")
		}
	}
	ceil := c.n.attrs.int("ceil_mode", 0) == 1
	begin, end, out, err := resolvePads(c.n.attrs, x.shape[2:], k, strides, dil, ceil)
	if err != nil {
		return c.errorf("%v", err)
	}
	_ = end
	inclPad := c.n.attrs.int("count_include_pad", 0) == 1
	var g convGeom
	if sp == 1 {
		g = convGeom{h: 1, w: x.shape[2], kh: 1, kw: k[0], sh: 1, sw: strides[0], dh: 1, dw: dil[0], pl: begin[0], pr: end[0], oh: 1, ow: out[0]}
	} else {
		g = convGeom{h: x.shape[2], w: x.shape[3], kh: k[0], kw: k[1], sh: strides[0], sw: strides[1], dh: dil[0], dw: dil[1],
			pt: begin[0], pl: begin[1], pb: end[0], pr: end[1], oh: out[0], ow: out[1]}
	}
	y := c.setOut(0, dtFloat, append([]int{x.shape[0], x.shape[1]}, out...))
	planes := x.shape[0] * x.shape[1]
	c.run = func() {
		for p := 0; p < planes; p++ {
			xp := x.f[p*g.h*g.w : (p+1)*g.h*g.w]
			yp := y.f[p*g.oh*g.ow : (p+1)*g.oh*g.ow]
			for oy := 0; oy < g.oh; oy++ {
				for ox := 0; ox < g.ow; ox++ {
					iy0, ix0 := oy*g.sh-g.pt, ox*g.sw-g.pl
					var s float32
					if isMax {
						s = float32(math.Inf(-1))
					}
					cnt := 0
					padCnt := 0
					for ky := 0; ky < g.kh; ky++ {
						iy := iy0 + ky*g.dh
						for kx := 0; kx < g.kw; kx++ {
							ix := ix0 + kx*g.dw
							// count_include_pad counts positions inside the padded input
							if iy >= -g.pt && iy < g.h+g.pb && ix >= -g.pl && ix < g.w+g.pr {
								padCnt++
							}
							if iy < 0 || iy >= g.h || ix < 0 || ix >= g.w {
								continue
							}
							v := xp[iy*g.w+ix]
							cnt++
							if isMax {
								if v > s {
									s = v
								}
							} else {
								s += v
							}
						}
					}
					if !isMax {
						d := cnt
						if inclPad {
							d = padCnt
						}
						if d > 0 {
							s /= float32(d)
						}
					}
					yp[oy*g.ow+ox] = s
				}
			}
		}
	}
	return nil
}

func compileGlobalPool(c *cctx, isMax bool) error {
	x := c.in[0]
	if x.dt != dtFloat || len(x.shape) < 2 {
		return c.errorf("needs float X of rank ≥ 2")
	}
	out := append([]int{}, x.shape...)
	for i := 2; i < len(out); i++ {
		out[i] = 1
	}
	y := c.setOut(0, dtFloat, out)
	inner := prod(x.shape[2:])
	c.run = func() {
		for p := range y.f {
			src := x.f[p*inner : (p+1)*inner]
			if isMax {
				m := float32(math.Inf(-1))
				for _, v := range src {
					if v > m {
						m = v
					}
				}
				y.f[p] = m
			} else {
				var s float64
				for _, v := range src {
					s += float64(v)
				}
				y.f[p] = float32(s / float64(inner))
			}
		}
	}
	return nil
}

func compileSoftmax(c *cctx, logOut bool) error {
	x := c.in[0]
	if x.dt != dtFloat {
		return c.errorf("needs float X")
	}
	r := len(x.shape)
	def := 1
	if c.opset >= 13 {
		def = -1
	}
	ax := c.n.attrs.int("axis", def)
	if ax < 0 {
		ax += r
	}
	if ax < 0 || (ax >= r && r > 0) {
		return c.errorf("axis out of range")
	}
	y := c.setOut(0, dtFloat, x.shape)
	var outer, n, inner int
	if c.opset < 13 {
		// coerced to 2-D at axis, softmax over the whole trailing block
		outer, n, inner = prod(x.shape[:ax]), prod(x.shape[ax:]), 1
	} else {
		outer, n, inner = prod(x.shape[:ax]), x.shape[ax], prod(x.shape[ax+1:])
	}
	c.run = func() {
		for o := 0; o < outer; o++ {
			for i := 0; i < inner; i++ {
				base := o*n*inner + i
				m := float32(math.Inf(-1))
				for j := 0; j < n; j++ {
					if v := x.f[base+j*inner]; v > m {
						m = v
					}
				}
				var s float64
				for j := 0; j < n; j++ {
					e := math.Exp(float64(x.f[base+j*inner] - m))
					s += e
					if !logOut {
						y.f[base+j*inner] = float32(e)
					}
				}
				if logOut {
					ls := float32(math.Log(s))
					for j := 0; j < n; j++ {
						y.f[base+j*inner] = x.f[base+j*inner] - m - ls
					}
				} else {
					inv := float32(1 / s)
					for j := 0; j < n; j++ {
						y.f[base+j*inner] *= inv
					}
				}
			}
		}
	}
	return nil
}

func compileLpNorm(c *cctx) error {
	x := c.in[0]
	if x.dt != dtFloat {
		return c.errorf("needs float X")
	}
	r := len(x.shape)
	ax := c.n.attrs.int("axis", -1)
	if ax < 0 {
		ax += r
	}
	if ax < 0 || ax >= r {
		return c.errorf("axis out of range")
	}
	p := c.n.attrs.int("p", 2)
	if p != 1 && p != 2 {
		return c.errorf("p = %d", p)
	}
	y := c.setOut(0, dtFloat, x.shape)
	outer, n, inner := prod(x.shape[:ax]), x.shape[ax], prod(x.shape[ax+1:])
	c.run = func() {
		for o := 0; o < outer; o++ {
			for i := 0; i < inner; i++ {
				base := o*n*inner + i
				var s float64
				for j := 0; j < n; j++ {
					v := float64(x.f[base+j*inner])
					if p == 1 {
						s += math.Abs(v)
					} else {
						s += v * v
					}
				}
				if p == 2 {
					s = math.Sqrt(s)
				}
				inv := float32(0)
				if s > 0 {
					inv = float32(1 / s)
				}
				for j := 0; j < n; j++ {
					y.f[base+j*inner] = x.f[base+j*inner] * inv
				}
			}
		}
	}
	return nil
}

func compilePad(c *cctx) error {
	x := c.in[0]
	r := len(x.shape)
	var pads []int
	var err error
	val := float32(0)
	if c.opset < 11 {
		pads = c.n.attrs.ints("pads")
		if pads == nil {
			pads = c.n.attrs.ints("paddings")
		}
		val = c.n.attrs.float("value", 0)
	} else {
		if pads, err = c.constInts(1); err != nil {
			return err
		}
		if t := c.input(2); t != nil && t.size() != 1 {
			return c.errorf("constant_value must be a scalar")
		}
		if t := c.input(3); t != nil {
			return c.errorf("%w: axes input", ErrUnsupportedOp)
		}
	}
	if len(pads) != 2*r {
		return c.errorf("pads %v for rank %d", pads, r)
	}
	mode := c.n.attrs.str("mode", "constant")
	if mode != "constant" && mode != "reflect" && mode != "edge" {
		return c.errorf("%w: mode %q", ErrUnsupportedOp, mode)
	}
	out := make([]int, r)
	for i := range out {
		out[i] = x.shape[i] + pads[i] + pads[i+r]
		if out[i] < 0 {
			return c.errorf("negative output dimension")
		}
		if mode == "reflect" && (pads[i] >= x.shape[i] || pads[i+r] >= x.shape[i]) && (pads[i] > 0 || pads[i+r] > 0) {
			return c.errorf("reflect padding larger than the input")
		}
		if mode != "constant" && x.shape[i] == 0 && out[i] > 0 {
			return c.errorf("cannot pad an empty dimension")
		}
	}
	y := c.setOut(0, x.dt, out)
	xs := contiguousStrides(x.shape)
	ctr := make([]int, r)
	cv := c.input(2)
	c.run = func() {
		if cv != nil && c.opset >= 11 {
			if cv.dt == dtFloat {
				val = cv.f[0]
			} else {
				val = float32(cv.i[0])
			}
		}
		for i := range ctr {
			ctr[i] = 0
		}
		for o := 0; o < y.size(); o++ {
			src := 0
			inside := true
			for k := 0; k < r; k++ {
				i := ctr[k] - pads[k]
				d := x.shape[k]
				if i < 0 || i >= d {
					switch mode {
					case "constant":
						inside = false
					case "edge":
						i = clamp(i, 0, d-1)
					case "reflect":
						if d == 1 {
							i = 0
						}
						for i < 0 || i >= d {
							if i < 0 {
								i = -i
							}
							if i >= d {
								i = 2*(d-1) - i
							}
						}
					}
				}
				src += i * xs[k]
			}
			switch {
			case y.dt != dtFloat && inside:
				y.i[o] = x.i[src]
			case y.dt != dtFloat:
				y.i[o] = int64(val)
			case inside:
				y.f[o] = x.f[src]
			default:
				y.f[o] = val
			}
			for k := r - 1; k >= 0; k-- {
				ctr[k]++
				if ctr[k] < out[k] {
					break
				}
				ctr[k] = 0
			}
		}
	}
	return nil
}

func compileReduce(c *cctx, kind string) error {
	x := c.in[0]
	if x.dt != dtFloat {
		return c.errorf("%w: integer %s", ErrUnsupportedOp, kind)
	}
	r := len(x.shape)
	var axes []int
	var err error
	if c.n.attrs.has("axes") {
		axes = c.n.attrs.ints("axes")
	} else if c.input(1) != nil {
		if axes, err = c.constInts(1); err != nil {
			return err
		}
	}
	keep := c.n.attrs.int("keepdims", 1) == 1
	if len(axes) == 0 {
		if c.n.attrs.int("noop_with_empty_axes", 0) == 1 {
			c.setOut(0, dtFloat, x.shape)
			c.alias = 0
			return nil
		}
		for i := 0; i < r; i++ {
			axes = append(axes, i)
		}
	}
	axes, err = normAxes(axes, r)
	if err != nil {
		return c.errorf("%v", err)
	}
	red := make([]bool, r)
	for _, a := range axes {
		red[a] = true
	}
	var out, full []int
	for i, d := range x.shape {
		if red[i] {
			full = append(full, 1)
			if keep {
				out = append(out, 1)
			}
		} else {
			full = append(full, d)
			out = append(out, d)
		}
	}
	y := c.setOut(0, dtFloat, out)
	// walk x; the output index uses x's index with reduced dims zeroed
	yst := contiguousStrides(full)
	for i := range yst {
		if red[i] {
			yst[i] = 0
		}
	}
	if err := c.reserve(int64(y.size()) * 8); err != nil {
		return err
	}
	acc := make([]float64, y.size())
	cnt := float64(x.size()) / math.Max(1, float64(y.size()))
	ctr := make([]int, r)
	c.run = func() {
		init := 0.0
		switch kind {
		case "ReduceMax":
			init = math.Inf(-1)
		case "ReduceMin":
			init = math.Inf(1)
		case "ReduceProd":
			init = 1
		}
		for i := range acc {
			acc[i] = init
		}
		for i := range ctr {
			ctr[i] = 0
		}
		oi := 0
		for _, v32 := range x.f {
			v := float64(v32)
			switch kind {
			case "ReduceMax":
				acc[oi] = math.Max(acc[oi], v)
			case "ReduceMin":
				acc[oi] = math.Min(acc[oi], v)
			case "ReduceProd":
				acc[oi] *= v
			case "ReduceSumSquare", "ReduceL2":
				acc[oi] += v * v
			case "ReduceL1":
				acc[oi] += math.Abs(v)
			default:
				acc[oi] += v
			}
			for k := r - 1; k >= 0; k-- {
				ctr[k]++
				oi += yst[k]
				if ctr[k] < x.shape[k] {
					break
				}
				oi -= yst[k] * x.shape[k]
				ctr[k] = 0
			}
		}
		for i, v := range acc {
			switch kind {
			case "ReduceMean":
				v /= cnt
			case "ReduceL2":
				v = math.Sqrt(v)
			}
			y.f[i] = float32(v)
		}
	}
	return nil
}
