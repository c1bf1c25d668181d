package onnxrt

import "github.com/facever/facever/internal/gemm"

// SetNoFuse switches graph rewrites off for tests.
func SetNoFuse(b bool) { noFuse = b }

// SetKernel selects a GEMM micro-kernel for tests, with the AVX2 helpers
// (depthwise taps, epilogues) on for every kernel but the Go one, and
// returns a function that restores the previous choice.
func SetKernel(k gemm.Kernel) (restore func(), err error) {
	old, err := gemm.Use(k)
	if err != nil {
		return func() {}, err
	}
	oldVec := useVec
	useVec = hasVec && k != gemm.Go
	return func() { gemm.Use(old); useVec = oldVec }, nil
}

// SetLegacyConv selects the depthwise code as it was before the row
// kernel (legacyConv) and returns a function that restores the choice.
func SetLegacyConv(b bool) (restore func()) {
	old := legacyConv
	legacyConv = b
	return func() { legacyConv = old }
}
