package onnxrt

import "golang.org/x/sys/cpu"

var hasAVX2FMA = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// kernelAsm is the AVX2/FMA 6×16 micro-kernel (gemm_amd64.s): C[0:6,0:16]
// (+)= A·B over kc steps; ldc and ldb are the row strides of C and B in
// floats (ldb = nr for a packed panel).
//
//go:noescape
func kernelAsm(kc int, a, b, c *float32, ldc int, acc bool, ldb int)

// dwTapsAsm computes out[x] = Σ_t w[t]·srcs[t][x] for x < n, n a multiple
// of 8 (gemm_amd64.s).
//
//go:noescape
func dwTapsAsm(out *float32, n int, srcs **float32, w *float32, taps int)

// epiAsm applies bias, residual and a (P)Relu-style activation in place
// (gemm_amd64.s); n is a multiple of 8 and r may be nil.
//
//go:noescape
func epiAsm(d *float32, n int, b float32, r *float32, a float32)
