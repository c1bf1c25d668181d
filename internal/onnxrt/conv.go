package onnxrt

import (
	"fmt"

	"github.com/facever/facever/internal/gemm"
)

// Conv: grouped and depthwise 1-D and 2-D convolution. Regular groups run
// as a GEMM per (image, group): Y_g[M_g × P] = W_g[M_g × K_g] · im2col(X_g)
// (Chellapilla, Puri and Simard, "High Performance Convolutional Neural
// Networks for Document Processing", 2006), where the im2col matrix is never
// stored: gemm.PackB reads it straight from the image into the packed panels.
// Depthwise groups (one input channel each) run a direct kernel. Bias,
// a residual Add and an activation are applied in the epilogue while the
// tile is still in cache.

func init() {
	compilers["Conv"] = compileConv
}

// useVec selects the AVX2 depthwise and epilogue helpers where the CPU has
// them; tests switch it off with the Go micro-kernel to cover the Go paths.
var useVec = hasVec

type convGeom struct {
	n, c, h, w     int // input
	m, oh, ow      int // output
	kh, kw         int
	sh, sw, dh, dw int
	pt, pl, pb, pr int // pads top, left, bottom, right
	group, cg, mg  int
}

// convPads resolves pads, strides and dilations for spatial dims in of
// kernel k (ONNX Conv/Pool semantics, including auto_pad).
func resolvePads(a attrs, in, k, strides, dil []int, ceil bool) (begin, end, out []int, err error) {
	r := len(in)
	begin, end, out = make([]int, r), make([]int, r), make([]int, r)
	pads := a.ints("pads")
	ap := a.str("auto_pad", "NOTSET")
	if pads != nil && len(pads) != 2*r {
		return nil, nil, nil, fmt.Errorf("pads %v for %d spatial dims", pads, r)
	}
	for i := 0; i < r; i++ {
		ek := dil[i]*(k[i]-1) + 1
		switch ap {
		case "SAME_UPPER", "SAME_LOWER":
			o := (in[i] + strides[i] - 1) / strides[i]
			total := (o-1)*strides[i] + ek - in[i]
			if total < 0 {
				total = 0
			}
			if ap == "SAME_UPPER" {
				begin[i] = total / 2
			} else {
				begin[i] = total - total/2
			}
			end[i] = total - begin[i]
		case "VALID", "NOTSET", "":
			if ap == "NOTSET" || ap == "" {
				if pads != nil {
					begin[i], end[i] = pads[i], pads[i+r]
				}
			}
		default:
			return nil, nil, nil, fmt.Errorf("auto_pad %q", ap)
		}
		span := in[i] + begin[i] + end[i] - ek
		if span < 0 {
			return nil, nil, nil, fmt.Errorf("kernel %d larger than padded input %d", ek, in[i]+begin[i]+end[i])
		}
		if ceil {
			out[i] = (span+strides[i]-1)/strides[i] + 1
			// the last window must start inside the input or left padding
			if (out[i]-1)*strides[i] >= in[i]+begin[i] {
				out[i]--
			}
		} else {
			out[i] = span/strides[i] + 1
		}
	}
	return begin, end, out, nil
}

func intsOr(a attrs, name string, r, def int) []int {
	v := a.ints(name)
	if v == nil {
		v = make([]int, r)
		for i := range v {
			v[i] = def
		}
	}
	return v
}

type convOp struct {
	g       convGeom
	x, w, b *tensor
	res, y  *tensor
	fuse    fusion
	resBc   *bcast // residual of another shape, added after
	ap      []float32
	wConst  bool
	depth   bool
	mb, nb  int // block sizes
	mBlocks int
	nBlocks int
	bias    []float32
	p       *plan
	jobFn   func(w, lo, hi int)
	dwFn    func(w, lo, hi int)
	dw      *dwLayout
	// pointwise: a 1×1, stride 1, unpadded convolution, whose im2col
	// matrix is the input itself
	pointwise bool
	// phases: the phase layout of strided convolutions' inputs, kept in
	// the plan's shared scratch (phaseBlock floats per input plane)
	phases     *dwLayout
	phaseBlock int
	// imTaps[k]: where im2col row k (channel, ky, kx) starts in the
	// phase-split planes of one image and group, for output pixel (0,0)
	imTaps []int
	fillFn func(w, lo, hi int)
	dwPtrs [][]*float32
	// dwPadded[w]: worker w's scratch holds a padded plane of this
	// depthwise layout (fill) in this run, so later planes only need
	// their inside copied (fillInside)
	dwPadded []bool
}

func compileConv(c *cctx) error {
	x, w := c.in[0], c.input(1)
	if w == nil || x.dt != dtFloat || w.dt != dtFloat {
		return c.errorf("needs float X and W")
	}
	r := len(x.shape)
	if r != 3 && r != 4 || len(w.shape) != r {
		return c.errorf("%w: %d-D convolution", ErrUnsupportedOp, r-2)
	}
	sp := r - 2
	k := w.shape[2:]
	if ks := c.n.attrs.ints("kernel_shape"); ks != nil && !sameShape(ks, k) {
		return c.errorf("kernel_shape %v differs from W %v", ks, w.shape)
	}
	strides := intsOr(c.n.attrs, "strides", sp, 1)
	dil := intsOr(c.n.attrs, "dilations", sp, 1)
	if len(strides) != sp || len(dil) != sp {
		return c.errorf("strides or dilations of wrong length")
	}
	for i := range strides {
		if strides[i] < 1 || dil[i] < 1 {
			return c.errorf("bad strides or dilations")
		}
	}
	begin, end, out, err := resolvePads(c.n.attrs, x.shape[2:], k, strides, dil, false)
	if err != nil {
		return c.errorf("%v", err)
	}
	g := convGeom{n: x.shape[0], c: x.shape[1], m: w.shape[0], group: c.n.attrs.int("group", 1)}
	if sp == 1 {
		g.h, g.w, g.kh, g.kw, g.sh, g.sw, g.dh, g.dw = 1, x.shape[2], 1, k[0], 1, strides[0], 1, dil[0]
		g.pl, g.pr, g.oh, g.ow = begin[0], end[0], 1, out[0]
	} else {
		g.h, g.w, g.kh, g.kw, g.sh, g.sw, g.dh, g.dw = x.shape[2], x.shape[3], k[0], k[1], strides[0], strides[1], dil[0], dil[1]
		g.pt, g.pl, g.pb, g.pr, g.oh, g.ow = begin[0], begin[1], end[0], end[1], out[0], out[1]
	}
	if g.group < 1 || g.c%g.group != 0 || g.m%g.group != 0 || w.shape[1] != g.c/g.group {
		return c.errorf("group %d does not fit X %v and W %v", g.group, x.shape, w.shape)
	}
	g.cg, g.mg = g.c/g.group, g.m/g.group
	yshape := append([]int{g.n, g.m}, out...)
	y := c.setOut(0, dtFloat, yshape)
	op := &convOp{g: g, x: x, w: w, b: c.input(2), y: y, p: c.p, wConst: w.konst}
	if op.b != nil && (op.b.size() != g.m || op.b.dt != dtFloat) {
		return c.errorf("bias of shape %v", op.b.shape)
	}
	if f := c.n.fuse; f != nil {
		op.fuse = *f
		if f.residual >= 0 {
			op.res = c.in[len(c.in)-1]
			if !sameShape(op.res.shape, yshape) {
				full, err := broadcastShapes(yshape, op.res.shape)
				if err != nil || !sameShape(full, yshape) {
					return c.errorf("residual of shape %v for output %v", op.res.shape, yshape)
				}
				op.resBc = newBcast(yshape, op.res.shape, yshape)
			}
		}
		if op.fuse.kind == actPRelu && len(op.fuse.slope) != 1 && len(op.fuse.slope) != g.m {
			return c.errorf("PRelu slope of %d for %d channels", len(op.fuse.slope), g.m)
		}
	}
	op.bias = make([]float32, g.m)
	op.depth = g.cg == 1 && g.kh*g.kw > 1
	P := g.oh * g.ow
	K := g.cg * g.kh * g.kw
	if !op.depth {
		if err := c.reserve(int64(g.group*gemm.PackedASize(g.mg, K)) * 4); err != nil {
			return err
		}
		op.ap = make([]float32, g.group*gemm.PackedASize(g.mg, K))
		if op.wConst {
			op.packWeights()
		}
		op.pointwise = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.pt == 0 && g.pl == 0 && g.pb == 0 && g.pr == 0
		if !op.pointwise {
			// pad every input plane (strided: and split it into its
			// phases) once, so that im2col rows become contiguous runs
			op.phases = newDWLayout(&g)
			op.phaseBlock = op.phases.planes * op.phases.hph * op.phases.wph
			c.p.sharedScratch(g.n * g.c * op.phaseBlock)
			op.fillFn = op.fillJob
			op.imTaps = make([]int, K)
			l := op.phases
			for kk := range op.imTaps {
				ci, ky, kx := kk/(g.kh*g.kw), (kk%(g.kh*g.kw))/g.kw, kk%g.kw
				py, dy := (ky*g.dh)%g.sh, (ky*g.dh)/g.sh
				px, dx := (kx*g.dw)%g.sw, (kx*g.dw)/g.sw
				op.imTaps[kk] = ci*op.phaseBlock + (py*g.sw+px)*l.hph*l.wph + dy*l.wph + dx
			}
		}
		op.mBlocks = (g.mg + 95) / 96
		op.mb = ((g.mg+op.mBlocks-1)/op.mBlocks + gemm.MR - 1) / gemm.MR * gemm.MR
		op.mBlocks = (g.mg + op.mb - 1) / op.mb
		op.nb = gemm.NC
		op.nBlocks = (P + op.nb - 1) / op.nb
		c.p.scratchSize(gemm.KC * gemm.NC)
		op.jobFn = op.job
	} else {
		op.dw = newDWLayout(&g)
		c.p.scratchSize(op.dw.phaseSize + op.dw.vlen)
		op.dwPtrs = make([][]*float32, c.p.workers())
		for i := range op.dwPtrs {
			op.dwPtrs[i] = make([]*float32, g.kh*g.kw)
		}
		op.dwPadded = make([]bool, c.p.workers())
		op.dwFn = op.dwJob
	}
	c.run = op.run
	return nil
}

func (op *convOp) packWeights() {
	g := op.g
	K := g.cg * g.kh * g.kw
	sz := gemm.PackedASize(g.mg, K)
	for gi := 0; gi < g.group; gi++ {
		gemm.PackA(op.ap[gi*sz:], op.w.f[gi*g.mg*K:], g.mg, K, K, 1, 1)
	}
}

func (op *convOp) run() {
	g := op.g
	if op.b != nil {
		copy(op.bias, op.b.f)
	}
	if op.depth {
		clear(op.dwPadded) // other kernels used the scratch since
		op.p.parallel(g.n*g.m, 1, op.dwFn)
	} else {
		if !op.wConst {
			op.packWeights()
		}
		if op.phased() {
			op.p.parallel(g.n*g.c, 1, op.fillFn)
		}
		op.p.parallel(g.n*g.group*op.mBlocks*op.nBlocks, 1, op.jobFn)
	}
	if op.resBc != nil {
		op.resBc.runF(opAdd, op.y.f, op.y.f, op.res.f)
		P := g.oh * g.ow
		for i := 0; i < g.n*g.m; i++ {
			s := op.y.f[i*P : (i+1)*P]
			applyAct(&op.fuse, s, s, i%g.m)
		}
	}
}

// epilogue applies bias, residual and activation to rows [m0,m1) (global
// channels) and columns [j0,j0+n) of image ni's output.
func (op *convOp) epilogue(ni, m0, m1, j0, n int) {
	g := op.g
	P := g.oh * g.ow
	f := &op.fuse
	for m := m0; m < m1; m++ {
		off := (ni*g.m+m)*P + j0
		row := op.y.f[off : off+n]
		b := op.bias[m]
		var rr []float32
		if op.res != nil && op.resBc == nil {
			rr = op.res.f[off : off+n]
		}
		// the assembly path: activations of the form max(v,0)+a·min(v,0)
		a, vec := float32(1), useVec && op.resBc == nil
		switch f.kind {
		case actRelu:
			a = 0
		case actLeaky:
			a = f.alpha
		case actPRelu:
			a = f.slope[0]
			if len(f.slope) > 1 {
				a = f.slope[m]
			}
		case actClip:
			vec = false
		}
		done := 0
		if vec && n >= 8 {
			done = n &^ 7
			var rp *float32
			if rr != nil {
				rp = &rr[0]
			}
			epiAsm(&row[0], done, b, rp, a)
		}
		rest := row[done:]
		if rr != nil {
			rr = rr[done:]
			for j := range rest {
				rest[j] += b + rr[j]
			}
		} else if b != 0 {
			for j := range rest {
				rest[j] += b
			}
		}
		if op.resBc == nil && len(rest) > 0 {
			applyAct(f, rest, rest, m)
		}
	}
}

func (op *convOp) job(w, lo, hi int) {
	g := op.g
	P := g.oh * g.ow
	K := g.cg * g.kh * g.kw
	asz := gemm.PackedASize(g.mg, K)
	var tmp gemm.Tile
	bbuf := op.p.scratch[w]
	for j := lo; j < hi; j++ {
		nbI := j % op.nBlocks
		t := j / op.nBlocks
		mbI := t % op.mBlocks
		t /= op.mBlocks
		gi := t % g.group
		ni := t / g.group
		m0 := mbI * op.mb
		m1 := min(m0+op.mb, g.mg)
		j0 := nbI * op.nb
		n := min(op.nb, P-j0)
		ybase := (ni*g.m + gi*g.mg) * P
		xbase := (ni*g.c + gi*g.cg) * g.h * g.w
		x := op.x.f[xbase : xbase+g.cg*g.h*g.w]
		var direct []float32
		if op.pointwise {
			direct = x[j0:]
		}
		gemm.Block(op.ap[gi*asz:(gi+1)*asz], K, m0, m1, n, op.y.f[ybase+j0:], P, false, bbuf, &tmp,
			func(dst []float32, k0, kc int) { op.packIm2col(dst, x, ni*g.c+gi*g.cg, k0, kc, j0, n) }, direct, g.h*g.w)
		op.epilogue(ni, gi*g.mg+m0, gi*g.mg+m1, j0, n)
	}
}

// packIm2col packs rows [k0,k0+kc) and columns [j0,j0+n) of the im2col
// matrix of one image and group (row k = (channel, ky, kx), column j =
// output pixel) into gemm.NR-column panels, as gemm.PackB does.
func (op *convOp) packIm2col(dst, x []float32, plane0, k0, kc, j0, n int) {
	g := op.g
	if op.phased() {
		if legacyConv {
			op.packPhased(dst, plane0, k0, kc, j0, n)
		} else {
			op.packPanels(dst, plane0, k0, kc, j0, n)
		}
		return
	}
	if g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.pt == 0 && g.pl == 0 && g.pb == 0 && g.pr == 0 {
		gemm.PackB(dst, x, k0, kc, j0, n, g.h*g.w, 1)
		return
	}
	khw := g.kh * g.kw
	panels := (n + gemm.NR - 1) / gemm.NR
	pstride := kc * gemm.NR // floats between panels
	for k := 0; k < kc; k++ {
		kk := k0 + k
		ci := kk / khw
		ky := (kk % khw) / g.kw
		kx := kk % g.kw
		plane := x[ci*g.h*g.w : (ci+1)*g.h*g.w]
		d := dst[k*gemm.NR:]
		// walk the columns in runs along one output row
		for jj := 0; jj < n; {
			j := j0 + jj
			oy, ox := j/g.ow, j%g.ow
			run := min(g.ow-ox, n-jj)
			iy := oy*g.sh - g.pt + ky*g.dh
			if iy < 0 || iy >= g.h {
				zeroRun(d, pstride, jj, run)
				jj += run
				continue
			}
			row := plane[iy*g.w : (iy+1)*g.w]
			ix := ox*g.sw - g.pl + kx*g.dw
			// t < lo: left of the image; t ≥ hi: right of it
			lo, hi := 0, run
			if ix < 0 {
				lo = min((-ix+g.sw-1)/g.sw, run)
			}
			if last := ix + (run-1)*g.sw; last >= g.w {
				hi = max(min((g.w-ix+g.sw-1)/g.sw, run), lo)
			}
			zeroRun(d, pstride, jj, lo)
			if hi <= lo {
				hi = lo
			} else if g.sw == 1 {
				putRun(d, pstride, jj+lo, row[ix+lo:ix+hi])
			} else {
				p := ix + lo*g.sw
				for t := jj + lo; t < jj+hi; {
					off := t & (gemm.NR - 1)
					c := min(gemm.NR-off, jj+hi-t)
					dd := d[(t/gemm.NR)*pstride+off : (t/gemm.NR)*pstride+off+c]
					src := row[p : p+(c-1)*g.sw+1]
					for i := range dd {
						dd[i] = src[i*g.sw]
					}
					p += c * g.sw
					t += c
				}
			}
			zeroRun(d, pstride, jj+hi, run-hi)
			jj += run
		}
		for t := n; t < panels*gemm.NR; t++ {
			d[(t>>4)*pstride+t&15] = 0
		}
	}
}

// phased says whether this run pads the input planes (fillJob) for
// im2col: always but for pointwise convolutions, and the legacy code
// (legacyConv) only for strided ones.
func (op *convOp) phased() bool {
	return op.phases != nil && (!legacyConv || op.g.sw > 1)
}

// packPanels is packIm2col from the padded (phase-split) planes: each
// gemm.NR-column panel covers one to a few runs of output rows, each a
// contiguous run of a phase plane for every im2col row, packed by
// packPanelAsm where a panel has at most three runs.
func (op *convOp) packPanels(dst []float32, plane0, k0, kc, j0, n int) {
	g := op.g
	l := op.phases
	src := op.p.shared[plane0*op.phaseBlock:]
	taps := op.imTaps[k0 : k0+kc]
	const nr = gemm.NR
	var runs [3 * 3]int // (first column, length, offset in the plane)
	for q := 0; q*nr < n; q++ {
		cols := min(nr, n-q*nr)
		d := dst[q*kc*nr : (q+1)*kc*nr]
		nruns := 0
		for c := 0; c < cols; {
			j := j0 + q*nr + c
			oy, ox := j/g.ow, j%g.ow
			r := min(g.ow-ox, cols-c)
			if nruns < 3 {
				runs[3*nruns], runs[3*nruns+1], runs[3*nruns+2] = c, r, oy*l.wph+ox
			}
			nruns++
			c += r
		}
		if useVec && nruns <= 3 {
			packPanelAsm(&d[0], kc, &src[0], &taps[0], &runs[0], nruns)
			continue
		}
		for k, t := range taps {
			row := d[k*nr : (k+1)*nr]
			for c := 0; c < cols; {
				j := j0 + q*nr + c
				oy, ox := j/g.ow, j%g.ow
				r := min(g.ow-ox, cols-c)
				off := t + oy*l.wph + ox
				copy(row[c:c+r], src[off:off+r])
				c += r
			}
			clear(row[cols:])
		}
	}
}

// fillJob splits input planes [lo,hi) (image·C + channel) into phases.
func (op *convOp) fillJob(_, lo, hi int) {
	g := op.g
	sz := g.h * g.w
	for p := lo; p < hi; p++ {
		buf, x := op.p.shared[p*op.phaseBlock:(p+1)*op.phaseBlock], op.x.f[p*sz:(p+1)*sz]
		if legacyConv {
			op.phases.fill(&g, buf, x)
		} else {
			op.phases.fillAll(&g, buf, x)
		}
	}
}

// packPhased is packIm2col for strided convolutions: im2col row
// (channel, ky, kx) over a run of one output row is a contiguous run of one
// phase plane (zero padding included).
func (op *convOp) packPhased(dst []float32, plane0, k0, kc, j0, n int) {
	g := op.g
	l := op.phases
	ps := l.hph * l.wph
	khw := g.kh * g.kw
	panels := (n + gemm.NR - 1) / gemm.NR
	pstride := kc * gemm.NR
	for k := 0; k < kc; k++ {
		kk := k0 + k
		ci := kk / khw
		ky := (kk % khw) / g.kw
		kx := kk % g.kw
		base := op.p.shared[(plane0+ci)*op.phaseBlock : (plane0+ci+1)*op.phaseBlock]
		py, dy := (ky*g.dh)%g.sh, (ky*g.dh)/g.sh
		px, dx := (kx*g.dw)%g.sw, (kx*g.dw)/g.sw
		ph := base[(py*g.sw+px)*ps : (py*g.sw+px+1)*ps]
		d := dst[k*gemm.NR:]
		for jj := 0; jj < n; {
			j := j0 + jj
			oy, ox := j/g.ow, j%g.ow
			run := min(g.ow-ox, n-jj)
			off := (oy+dy)*l.wph + ox + dx
			putRun(d, pstride, jj, ph[off:off+run])
			jj += run
		}
		for t := n; t < panels*gemm.NR; t++ {
			d[(t>>4)*pstride+t&15] = 0
		}
	}
}

// putRun writes src to columns t0… of gemm.NR-wide panels pstride floats apart.
func putRun(d []float32, pstride, t0 int, src []float32) {
	for len(src) > 0 {
		off := t0 & (gemm.NR - 1)
		c := min(gemm.NR-off, len(src))
		copy(d[(t0/gemm.NR)*pstride+off:(t0/gemm.NR)*pstride+off+c], src[:c])
		src = src[c:]
		t0 += c
	}
}

// zeroRun clears n columns from t0 of gemm.NR-wide panels pstride floats apart.
func zeroRun(d []float32, pstride, t0, n int) {
	for n > 0 {
		off := t0 & (gemm.NR - 1)
		c := min(gemm.NR-off, n)
		clear(d[(t0/gemm.NR)*pstride+off : (t0/gemm.NR)*pstride+off+c])
		n -= c
		t0 += c
	}
}

// Depthwise convolution works on a phase decomposition of the zero-padded
// plane: for strides (sh, sw) the padded plane is split into sh·sw phase
// planes (rows ≡ py mod sh, columns ≡ px mod sw), so that every tap
// (ky, kx) reads one phase plane at a fixed offset with unit stride, and the
// whole output plane (with Wph−ow junk columns per row) is one weighted sum
// of kh·kw shifted vectors (dwTapsAsm). The junk columns are dropped when
// the result is copied out.
type dwLayout struct {
	hp, wp, hph, wph int
	planes           int
	phaseSize        int // floats of all phase planes plus slack
	vlen             int // virtual output length, multiple of 8
	tapOff           []int
}

func newDWLayout(g *convGeom) *dwLayout {
	l := &dwLayout{hp: g.h + g.pt + g.pb, wp: g.w + g.pl + g.pr}
	l.hph = (l.hp + g.sh - 1) / g.sh
	l.wph = (l.wp + g.sw - 1) / g.sw
	l.planes = g.sh * g.sw
	l.phaseSize = l.planes*l.hph*l.wph + g.kw*g.dw + g.kh*g.dh*l.wph + 16
	l.vlen = (g.oh*l.wph + 7) / 8 * 8
	for ky := 0; ky < g.kh; ky++ {
		for kx := 0; kx < g.kw; kx++ {
			py, px := (ky*g.dh)%g.sh, (kx*g.dw)%g.sw
			base := (py*g.sw + px) * l.hph * l.wph
			l.tapOff = append(l.tapOff, base+(ky*g.dh/g.sh)*l.wph+kx*g.dw/g.sw)
		}
	}
	return l
}

// fill writes the padded, phase-split plane x into buf.
func (l *dwLayout) fill(g *convGeom, buf, x []float32) {
	ps := l.hph * l.wph
	py, i := 0, 0 // r = py + sh·i
	for r := 0; r < l.hp; r, py = r+1, py+1 {
		if py == g.sh {
			py, i = 0, i+1
		}
		iy := r - g.pt
		inside := iy >= 0 && iy < g.h
		var src []float32
		if inside {
			src = x[iy*g.w : (iy+1)*g.w]
		}
		if g.sw == 2 && inside {
			// both column phases in one pass: even input columns go to
			// phase pl&1, odd ones to the other (c = ix + pl)
			r0 := buf[(py*2)*ps+i*l.wph : (py*2)*ps+(i+1)*l.wph]
			r1 := buf[(py*2+1)*ps+i*l.wph : (py*2+1)*ps+(i+1)*l.wph]
			clear(r0)
			clear(r1)
			pe, base := g.pl&1, g.pl>>1
			ev, od := r0[base:], r1[base:]
			if pe == 1 {
				ev, od = r1[base:], r0[base+1:]
			}
			deintRow(ev, od, src[:g.w])
			continue
		}
		for px := 0; px < g.sw; px++ {
			row := buf[(py*g.sw+px)*ps+i*l.wph : (py*g.sw+px)*ps+(i+1)*l.wph]
			if !inside {
				clear(row)
				continue
			}
			if g.sw == 1 {
				clear(row[:g.pl])
				copy(row[g.pl:g.pl+g.w], src)
				clear(row[g.pl+g.w : l.wp])
				continue
			}
			// columns c = px + sw·j of the padded row, ix = c − pl:
			// zeros, then the strided copy of the inside, then zeros
			jlo := 0
			for jlo < len(row) && px+g.sw*jlo-g.pl < 0 {
				row[jlo] = 0
				jlo++
			}
			j := jlo
			for ix := px + g.sw*jlo - g.pl; j < len(row) && ix < g.w; ix += g.sw {
				row[j] = src[ix]
				j++
			}
			clear(row[j:])
		}
	}
}

// fillAll writes the padded, phase-split plane x into buf as fill does
// (fill's values in every place fill writes), as a clear and fillInside.
func (l *dwLayout) fillAll(g *convGeom, buf, x []float32) {
	if g.sw > 2 {
		l.fill(g, buf, x)
		return
	}
	clear(buf[:l.planes*l.hph*l.wph])
	l.fillInside(g, buf, x)
}

// fillInside writes the inside of the padded, phase-split plane x into
// buf, where buf already holds a padded plane of the same layout (fill):
// the padding is the same zeros for every plane and is left as it is.
// Strides other than 1 and 2 along the width fill the whole plane.
func (l *dwLayout) fillInside(g *convGeom, buf, x []float32) {
	if g.sw > 2 {
		l.fill(g, buf, x)
		return
	}
	ps := l.hph * l.wph
	for py := 0; py < g.sh; py++ {
		// input rows iy ≡ py − pt (mod sh): padded rows r = iy + pt in
		// phase row py, at phase rows i = r / sh
		iy0 := ((py-g.pt)%g.sh + g.sh) % g.sh
		if iy0 >= g.h {
			continue
		}
		rows := (g.h - iy0 + g.sh - 1) / g.sh
		i0 := (iy0 + g.pt) / g.sh
		src := x[iy0*g.w:]
		if g.sw == 1 {
			dst := buf[py*ps+i0*l.wph+g.pl:]
			if useVec {
				copyRowsAsm(&dst[0], l.wph, &src[0], g.sh*g.w, rows, g.w)
				continue
			}
			for r := 0; r < rows; r++ {
				copy(dst[r*l.wph:r*l.wph+g.w], src[r*g.sh*g.w:r*g.sh*g.w+g.w])
			}
			continue
		}
		// sw == 2: even input columns to phase pl&1, odd ones to the
		// other (padded column c = ix + pl), as fill does
		base := i0*l.wph + g.pl>>1
		ev, od := buf[(py*2)*ps+base:], buf[(py*2+1)*ps+base:]
		if g.pl&1 == 1 {
			ev, od = buf[(py*2+1)*ps+base:], buf[(py*2)*ps+base+1:]
		}
		if useVec {
			if g.w == 1 {
				// no odd column: od may lie past the buffer's end
				od = ev
			}
			deint2Asm(&ev[0], &od[0], l.wph, &src[0], g.sh*g.w, rows, g.w)
			continue
		}
		for r := 0; r < rows; r++ {
			s := src[r*g.sh*g.w : r*g.sh*g.w+g.w]
			deintRow(ev[r*l.wph:], od[r*l.wph:], s)
		}
	}
}

// dwEpi says whether dwJob can apply the epilogue of output channel m as
// it stores a row (as epiAsm would: no residual, an activation of the
// form max(v,0)+a·min(v,0)), and with which slope a.
func (op *convOp) dwEpi(m int) (ok bool, a float32) {
	if !useVec || op.res != nil || op.resBc != nil {
		return false, 0
	}
	f := &op.fuse
	switch f.kind {
	case actNone:
		return true, 1
	case actRelu:
		return true, 0
	case actLeaky:
		return true, f.alpha
	case actPRelu:
		if len(f.slope) > 1 {
			return true, f.slope[m]
		}
		return true, f.slope[0]
	}
	return false, 0
}

// dwJob runs the direct depthwise kernel for planes [lo,hi) (image·M + m).
// A worker's first plane of a run is padded in full into its scratch,
// later ones only have their inside copied over it (fillInside); then each
// output row is computed straight into y (dwRowAsm), the epilogue applied
// as it is stored wherever epilogue would have used epiAsm (the first
// P&^7 values of the plane), and by epilogue for the rest. The sums are
// those of the flat kernel (dwJobLegacy), tap by tap from +0, bit for bit.
func (op *convOp) dwJob(wk, lo, hi int) {
	if legacyConv {
		op.dwJobLegacy(wk, lo, hi)
		return
	}
	g := op.g
	l := op.dw
	mult := g.mg // output channels per group (depth multiplier)
	kk := g.kh * g.kw
	phase := op.p.scratch[wk][:l.phaseSize]
	last := -1
	P := g.oh * g.ow
	lim := P &^ 7 // values epilogue gives epiAsm's epilogue
	for pi := lo; pi < hi; pi++ {
		ni, m := pi/g.m, pi%g.m
		ci := m / mult
		if key := ni*g.c + ci; key != last {
			x := op.x.f[key*g.h*g.w : (key+1)*g.h*g.w]
			if !op.dwPadded[wk] {
				l.fillAll(&g, phase, x)
				op.dwPadded[wk] = true
			} else {
				l.fillInside(&g, phase, x)
			}
			last = key
		}
		w := op.w.f[m*kk : (m+1)*kk]
		y := op.y.f[pi*P : (pi+1)*P]
		if !useVec {
			for oy := 0; oy < g.oh; oy++ {
				row := y[oy*g.ow : (oy+1)*g.ow]
				clear(row)
				for t, off := range l.tapOff {
					wt := w[t]
					src := phase[off+oy*l.wph : off+oy*l.wph+g.ow]
					for v := range row {
						row[v] += wt * src[v]
					}
				}
			}
			op.epilogue(ni, m, m+1, 0, P)
			continue
		}
		fused, a := op.dwEpi(m)
		epi := 0
		if fused {
			epi = lim
		}
		b := op.bias[m]
		r1 := epi / g.ow // rows wholly with the epilogue
		op.dwRows(y, phase, w, 0, r1, 1, b, a)
		if r1 < g.oh {
			r2 := r1
			if e := epi - r1*g.ow; e > 0 {
				// the row where the epilogue stops
				o := r1 * g.ow
				dwRowAsm(&y[o], e, &phase[r1*l.wph], &l.tapOff[0], &w[0], kk, 1, b, a)
				dwRowAsm(&y[o+e], g.ow-e, &phase[r1*l.wph+e], &l.tapOff[0], &w[0], kk, 0, 0, 0)
				r2++
			}
			op.dwRows(y, phase, w, r2, g.oh, 0, 0, 0)
		}
		switch {
		case !fused:
			op.epilogue(ni, m, m+1, 0, P)
		case lim < P:
			op.epilogue(ni, m, m+1, lim, P-lim) // fewer than 8: the Go tail
		}
	}
}

// dwRows computes output rows [r0,r1) of one plane into y (dwRows4Asm
// four rows at a time, dwRowAsm for the rest), with epiAsm's epilogue
// where epi ≠ 0.
func (op *convOp) dwRows(y, phase, w []float32, r0, r1, epi int, b, a float32) {
	g, l := &op.g, op.dw
	kk := len(l.tapOff)
	if n := (r1 - r0) &^ 3; n > 0 {
		dwRows4Asm(&y[r0*g.ow], g.ow, n, &phase[r0*l.wph], l.wph, &l.tapOff[0], &w[0], kk, epi, b, a)
		r0 += n
	}
	for ; r0 < r1; r0++ {
		dwRowAsm(&y[r0*g.ow], g.ow, &phase[r0*l.wph], &l.tapOff[0], &w[0], kk, epi, b, a)
	}
}

// deintRow writes the even columns of s to ev and the odd ones to od.
func deintRow(ev, od, s []float32) {
	k := 0
	for ; 2*k+1 < len(s); k++ {
		ev[k] = s[2*k]
		od[k] = s[2*k+1]
	}
	if 2*k < len(s) {
		ev[k] = s[2*k]
	}
}
