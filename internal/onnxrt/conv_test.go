package onnxrt

import (
	"fmt"
	"math"
	"math/rand"
	"testing"

	"github.com/facever/facever/internal/gemm"
)

// naiveConv is the textbook definition of ONNX Conv (2-D, NCHW).
func naiveConv(x []float32, xs []int, w []float32, ws []int, b []float32, group, sh, sw, dh, dw, pt, pl, oh, ow int) []float32 {
	N, C, H, W := xs[0], xs[1], xs[2], xs[3]
	M, cg, kh, kw := ws[0], ws[1], ws[2], ws[3]
	mg := M / group
	y := make([]float32, N*M*oh*ow)
	for n := 0; n < N; n++ {
		for m := 0; m < M; m++ {
			g := m / mg
			for oy := 0; oy < oh; oy++ {
				for ox := 0; ox < ow; ox++ {
					s := 0.0
					if b != nil {
						s = float64(b[m])
					}
					for c := 0; c < cg; c++ {
						for ky := 0; ky < kh; ky++ {
							for kx := 0; kx < kw; kx++ {
								iy, ix := oy*sh-pt+ky*dh, ox*sw-pl+kx*dw
								if iy < 0 || iy >= H || ix < 0 || ix >= W {
									continue
								}
								s += float64(x[((n*C+g*cg+c)*H+iy)*W+ix]) * float64(w[((m*cg+c)*kh+ky)*kw+kx])
							}
						}
					}
					y[((n*M+m)*oh+oy)*ow+ox] = float32(s)
				}
			}
		}
	}
	return y
}

// TestConvRandom compares Conv (GEMM, pointwise and depthwise paths, both
// micro-kernels, fused PRelu and residual) with the naive definition on
// random geometries.
func TestConvRandom(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	kernels := gemm.Kernels()
	for it := 0; it < 150; it++ {
		N := 1 + rng.Intn(3)
		group := []int{1, 1, 2, 0}[rng.Intn(4)] // 0: depthwise
		cg := 1 + rng.Intn(5)
		C := cg * max(group, 1)
		if group == 0 {
			C, cg = 1+rng.Intn(8), 1
			group = C
		}
		mg := 1 + rng.Intn(20)
		if group == C && rng.Intn(2) == 0 {
			mg = 1
		}
		M := mg * group
		kh, kw := 1+rng.Intn(4), 1+rng.Intn(4)
		sh, sw := 1+rng.Intn(3), 1+rng.Intn(3)
		dh, dw := 1+rng.Intn(2), 1+rng.Intn(2)
		H, W := kh*dh+rng.Intn(20), kw*dw+rng.Intn(40)
		pads := []int{rng.Intn(3), rng.Intn(3), rng.Intn(3), rng.Intn(3)}
		if rng.Intn(3) == 0 {
			kh, kw, sh, sw, dh, dw, pads = 1, 1, 1, 1, 1, 1, []int{0, 0, 0, 0}
		}
		oh := (H+pads[0]+pads[2]-dh*(kh-1)-1)/sh + 1
		ow := (W+pads[1]+pads[3]-dw*(kw-1)-1)/sw + 1
		xs, ws := []int{N, C, H, W}, []int{M, cg, kh, kw}
		x := &tensor{shape: xs, f: randF(rng, prod(xs))}
		w := &tensor{shape: ws, f: randF(rng, prod(ws)), konst: true}
		b := &tensor{shape: []int{M}, f: randF(rng, M), konst: true}
		res := &tensor{shape: []int{N, M, oh, ow}, f: randF(rng, N*M*oh*ow)}
		slope := randF(rng, M)
		want := naiveConv(x.f, xs, w.f, ws, b.f, group, sh, sw, dh, dw, pads[0], pads[1], oh, ow)
		for i := range want {
			v := want[i] + res.f[i]
			if v < 0 {
				v *= slope[(i/(oh*ow))%M]
			}
			want[i] = v
		}
		for _, k := range kernels {
			restore, err := SetKernel(k)
			if err != nil {
				t.Fatal(err)
			}
			m := &Model{opset: 13}
			m.values = []value{{name: "x", producer: -1}, {name: "w", konst: w, producer: -1}, {name: "b", konst: b, producer: -1},
				{name: "r", producer: -1}, {name: "y", producer: 0}}
			m.nodes = []*node{{op: "Conv", name: "conv", in: []int{0, 1, 2, 3}, out: []int{4},
				attrs: attrs{"group": int64(group), "strides": []int64{int64(sh), int64(sw)},
					"dilations": []int64{int64(dh), int64(dw)}, "pads": []int64{int64(pads[0]), int64(pads[1]), int64(pads[2]), int64(pads[3])}},
				fuse: &fusion{kind: actPRelu, slope: slope, residual: 3}}}
			m.inIDs, m.outIDs = []int{0, 3}, []int{4}
			got, err := m.runTensors([]*tensor{x, res})
			restore()
			desc := fmt.Sprintf("%v x%v w%v group %d strides %d,%d dil %d,%d pads %v", k, xs, ws, group, sh, sw, dh, dw, pads)
			if err != nil {
				t.Fatalf("%s: %v", desc, err)
			}
			for i := range want {
				if d := math.Abs(float64(got[0].f[i] - want[i])); d > 1e-4*(1+math.Abs(float64(want[i]))) {
					t.Fatalf("%s: y[%d] = %g, want %g", desc, i, got[0].f[i], want[i])
				}
			}
		}
	}
}

func randF(rng *rand.Rand, n int) []float32 {
	f := make([]float32, n)
	for i := range f {
		f[i] = rng.Float32()*2 - 1
	}
	return f
}
