//go:build !amd64

package gemm

const (
	haveAsm       = false
	haveAVX512Asm = false
)

func kernelAVX2(kc int, a, b, c *float32, ldc int, acc bool, ldb int) {
	panic("gemm: no assembly kernel")
}

func kernelAVX512(kc int, a, b, c *float32, ldc int, acc bool, ldb, b2 int) {
	panic("gemm: no assembly kernel")
}

func kernelAVX512x16(kc int, a, b, c *float32, ldc int, acc bool, ldb int) {
	panic("gemm: no assembly kernel")
}
