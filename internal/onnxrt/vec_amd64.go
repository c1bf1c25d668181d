package onnxrt

import "golang.org/x/sys/cpu"

// hasVec says the AVX2/FMA helpers below can run; useVec selects them
// (tests switch it off with the Go micro-kernel to cover the Go paths).
var hasVec = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// dwTapsAsm computes out[x] = Σ_t w[t]·srcs[t][x] for x < n, n a multiple
// of 8 (vec_amd64.s).
//
//go:noescape
func dwTapsAsm(out *float32, n int, srcs **float32, w *float32, taps int)

// epiAsm applies bias, residual and a (P)Relu-style activation in place
// (vec_amd64.s); n is a multiple of 8 and r may be nil.
//
//go:noescape
func epiAsm(d *float32, n int, b float32, r *float32, a float32)

// dwRowAsm computes one output row of the direct depthwise kernel:
// out[x] = Σ_t w[t]·src[offs[t]+x] for x < n, with epiAsm's epilogue
// (bias b, slope a) where epi ≠ 0 (vec_amd64.s).
//
//go:noescape
func dwRowAsm(out *float32, n int, src *float32, offs *int, w *float32, taps int, epi int, b float32, a float32)

// copyRowsAsm copies rows runs of n floats from src (rows srcStride apart)
// to dst (rows dstStride apart) (vec_amd64.s).
//
//go:noescape
func copyRowsAsm(dst *float32, dstStride int, src *float32, srcStride int, rows, n int)

// deint2Asm splits rows runs of n floats into their even columns (to
// even) and odd ones (to odd), rows dstStride apart (vec_amd64.s).
//
//go:noescape
func deint2Asm(even, odd *float32, dstStride int, src *float32, srcStride int, rows, n int)

// dwRows4Asm is dwRowAsm for rows output rows (a multiple of 4) of ow
// values, ow floats apart in out and wph apart in src (vec_amd64.s).
//
//go:noescape
func dwRows4Asm(out *float32, ow, rows int, src *float32, wph int, offs *int, w *float32, taps int, epi int, b float32, a float32)

// packPanelAsm packs one 16-column panel of kc im2col rows from one to
// three runs (c0, len, off) of a padded plane (vec_amd64.s).
//
//go:noescape
func packPanelAsm(dst *float32, kc int, src *float32, taps *int, runs *int, nruns int)
