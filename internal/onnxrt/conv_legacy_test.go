package onnxrt

import (
	"fmt"
	"math"
	"math/rand"
	"testing"

	"github.com/facever/facever/internal/gemm"
)

// TestConvLegacyBits: the current convolution code gives the outputs of
// the old one (legacyConv) bit for bit: depthwise row kernels (dwJob with
// fillInside, dwRows4Asm, dwRowAsm) against the flat kernel
// (dwJobLegacy), im2col panels from padded planes (packPanels,
// packPanelAsm) against packIm2col's direct and phased packing. With
// every micro-kernel (so with the assembly helpers and with the pure-Go
// paths), on random convolutions of many geometries: strides 1 to 3,
// pads, dilations, odd and tiny sizes, depth multipliers, groups,
// batches, every fused activation, with and without bias and residual, on
// inputs that hold exact and negative zeros.
func TestConvLegacyBits(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	iters := 400
	if testing.Short() {
		iters = 100
	}
	for it := 0; it < iters; it++ {
		N := 1 + rng.Intn(2)
		// depthwise (group = C, depth multiplier mult) or a regular or
		// grouped convolution (im2col and GEMM)
		depth := rng.Intn(2) == 0
		group, cg := 1+rng.Intn(2), 1+rng.Intn(5)
		C := group * cg
		mult := 1 + rng.Intn(12)
		if depth {
			C, cg = 1+rng.Intn(6), 1
			group = C
			mult = 1
			if rng.Intn(3) == 0 {
				mult = 2 + rng.Intn(2)
			}
		}
		M := group * mult
		kh, kw := 1+rng.Intn(4), 1+rng.Intn(4)
		if depth && kh*kw == 1 {
			kw = 3
		}
		if rng.Intn(2) == 0 {
			kh, kw = 3, 3
		}
		sh, sw := 1+rng.Intn(3), 1+rng.Intn(3)
		if rng.Intn(2) == 0 {
			sh = sw
		}
		dh, dw := 1, 1
		if rng.Intn(4) == 0 {
			dh, dw = 1+rng.Intn(3), 1+rng.Intn(3)
		}
		H := max(1, (kh-1)*dh+1-2) + rng.Intn(24)
		W := max(1, (kw-1)*dw+1-2) + rng.Intn(70)
		pads := []int{rng.Intn(3), rng.Intn(3), rng.Intn(3), rng.Intn(3)}
		if H+pads[0]+pads[2] < (kh-1)*dh+1 {
			pads[0] += (kh-1)*dh + 1 - H
		}
		if W+pads[1]+pads[3] < (kw-1)*dw+1 {
			pads[1] += (kw-1)*dw + 1 - W
		}
		oh := (H+pads[0]+pads[2]-dh*(kh-1)-1)/sh + 1
		ow := (W+pads[1]+pads[3]-dw*(kw-1)-1)/sw + 1
		xs, ws := []int{N, C, H, W}, []int{M, cg, kh, kw}
		x := &tensor{shape: xs, f: zeroed(rng, randF(rng, prod(xs)))}
		w := &tensor{shape: ws, f: zeroed(rng, randF(rng, prod(ws))), konst: true}
		fu := &fusion{kind: []int{actNone, actRelu, actLeaky, actPRelu, actPRelu, actClip}[rng.Intn(6)], residual: -1}
		switch fu.kind {
		case actLeaky:
			fu.alpha = 0.1
		case actPRelu:
			fu.slope = randF(rng, []int{1, M}[rng.Intn(2)])
		case actClip:
			fu.lo, fu.hi = -0.5, 0.25
		}
		m := &Model{opset: 13}
		m.values = []value{{name: "x", producer: -1}, {name: "w", konst: w, producer: -1}}
		in := []int{0, 1}
		if rng.Intn(4) != 0 {
			b := &tensor{shape: []int{M}, f: zeroed(rng, randF(rng, M)), konst: true}
			m.values = append(m.values, value{name: "b", konst: b, producer: -1})
			in = append(in, len(m.values)-1)
		}
		ins := []*tensor{x}
		m.inIDs = []int{0}
		if rng.Intn(4) == 0 {
			if len(in) < 3 {
				in = append(in, -1) // no bias, as fuse writes it
			}
			res := &tensor{shape: []int{N, M, oh, ow}, f: randF(rng, N*M*oh*ow)}
			if rng.Intn(2) == 0 {
				res.shape, res.f = []int{1, M, 1, 1}, randF(rng, M) // broadcast residual
			}
			m.values = append(m.values, value{name: "r", producer: -1})
			in = append(in, len(m.values)-1)
			m.inIDs = append(m.inIDs, len(m.values)-1)
			fu.residual = len(in) - 1
			ins = append(ins, res)
		}
		m.values = append(m.values, value{name: "y", producer: 0})
		m.outIDs = []int{len(m.values) - 1}
		m.nodes = []*node{{op: "Conv", name: "conv", in: in, out: m.outIDs,
			attrs: attrs{"group": int64(group), "strides": []int64{int64(sh), int64(sw)},
				"dilations": []int64{int64(dh), int64(dw)}, "pads": []int64{int64(pads[0]), int64(pads[1]), int64(pads[2]), int64(pads[3])}},
			fuse: fu}}
		if fu.kind == actNone && fu.residual < 0 {
			m.nodes[0].fuse = nil
		}
		for _, k := range gemm.Kernels() {
			restore, err := SetKernel(k)
			if err != nil {
				t.Fatal(err)
			}
			desc := fmt.Sprintf("%v x%v w%v group %d strides %d,%d dil %d,%d pads %v act %d res %v", k, xs, ws, group, sh, sw, dh, dw, pads, fu.kind, len(ins) > 1)
			var outs [2][]float32
			for i, legacy := range []bool{true, false} {
				legacyConv = legacy
				got, err := m.runTensors(ins)
				legacyConv = false
				if err != nil {
					restore()
					t.Fatalf("%s: %v", desc, err)
				}
				outs[i] = got[0].f
			}
			restore()
			for i := range outs[0] {
				if math.Float32bits(outs[0][i]) != math.Float32bits(outs[1][i]) {
					t.Fatalf("%s: y[%d] = %g (%#x), legacy %g (%#x)", desc, i, outs[1][i], math.Float32bits(outs[1][i]), outs[0][i], math.Float32bits(outs[0][i]))
				}
			}
		}
	}
}

// zeroed sets about one value in eight of f to +0 or −0.
func zeroed(rng *rand.Rand, f []float32) []float32 {
	for i := range f {
		switch rng.Intn(16) {
		case 0:
			f[i] = 0
		case 1:
			f[i] = float32(math.Copysign(0, -1))
		}
	}
	return f
}
