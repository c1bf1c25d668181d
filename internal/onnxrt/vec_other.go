//go:build !amd64

package onnxrt

const hasVec = false

func dwTapsAsm(out *float32, n int, srcs **float32, w *float32, taps int) {
	panic("no assembly kernel")
}

func epiAsm(d *float32, n int, b float32, r *float32, a float32) { panic("no assembly kernel") }

func dwRowAsm(out *float32, n int, src *float32, offs *int, w *float32, taps int, epi int, b float32, a float32) {
	panic("no assembly kernel")
}

func copyRowsAsm(dst *float32, dstStride int, src *float32, srcStride int, rows, n int) {
	panic("no assembly kernel")
}

func deint2Asm(even, odd *float32, dstStride int, src *float32, srcStride int, rows, n int) {
	panic("no assembly kernel")
}

func dwRows4Asm(out *float32, ow, rows int, src *float32, wph int, offs *int, w *float32, taps int, epi int, b float32, a float32) {
	panic("no assembly kernel")
}

func packPanelAsm(dst *float32, kc int, src *float32, taps *int, runs *int, nruns int) {
	panic("no assembly kernel")
}
