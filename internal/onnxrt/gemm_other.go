//go:build !amd64

package onnxrt

const hasAVX2FMA = false

func kernelAsm(kc int, a, b, c *float32, ldc int, acc bool, ldb int) { panic("no assembly kernel") }

func dwTapsAsm(out *float32, n int, srcs **float32, w *float32, taps int) {
	panic("no assembly kernel")
}

func epiAsm(d *float32, n int, b float32, r *float32, a float32) { panic("no assembly kernel") }
