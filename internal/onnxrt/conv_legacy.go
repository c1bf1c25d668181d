package onnxrt

// legacyConv selects the kernels as they were before the depthwise row
// kernel (dwJob, dwLayout.fillInside) and Gemm's B packed at compile time:
// every depthwise plane padded in full and computed as one flat vector
// with junk columns, copied out, then the epilogue; Gemm packing a
// constant B on every run. Tests and benchmarks switch it on to compare
// old and new bit for bit and side by side (SetLegacyConv).
var legacyConv bool

// dwJobLegacy is dwJob as it was: the whole padded plane filled for every
// input plane, one flat virtual output with junk columns, copied out.
func (op *convOp) dwJobLegacy(wk, lo, hi int) {
	g := op.g
	l := op.dw
	mult := g.mg // output channels per group (depth multiplier)
	kk := g.kh * g.kw
	buf := op.p.scratch[wk]
	phase, vout := buf[:l.phaseSize], buf[l.phaseSize:l.phaseSize+l.vlen]
	ptrs := op.dwPtrs[wk]
	for t, off := range l.tapOff {
		ptrs[t] = &phase[off]
	}
	last := -1
	P := g.oh * g.ow
	for pi := lo; pi < hi; pi++ {
		ni, m := pi/g.m, pi%g.m
		ci := m / mult
		if key := ni*g.c + ci; key != last {
			l.fill(&g, phase, op.x.f[key*g.h*g.w:(key+1)*g.h*g.w])
			last = key
		}
		w := op.w.f[m*kk : (m+1)*kk]
		if useVec {
			dwTapsAsm(&vout[0], l.vlen, &ptrs[0], &w[0], kk)
		} else {
			clear(vout)
			for t, off := range l.tapOff {
				wt := w[t]
				src := phase[off : off+l.vlen]
				for v := range vout {
					vout[v] += wt * src[v]
				}
			}
		}
		y := op.y.f[pi*P : (pi+1)*P]
		for oy := 0; oy < g.oh; oy++ {
			copy(y[oy*g.ow:(oy+1)*g.ow], vout[oy*l.wph:oy*l.wph+g.ow])
		}
		op.epilogue(ni, m, m+1, 0, P)
	}
}
