package onnxrt

// SetNoFuse switches graph rewrites off for tests.
func SetNoFuse(b bool) { noFuse = b }

// SetUseAsm selects the assembly micro-kernel for tests.
func SetUseAsm(b bool) bool { old := useAsm; useAsm = b && hasAVX2FMA; return old }
