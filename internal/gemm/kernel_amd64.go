package gemm

const (
	haveAsm       = true
	haveAVX512Asm = true
)

// kernelAVX2 is the AVX2/FMA 6×16 micro-kernel (kernel_amd64.s):
// C[0:6,0:16] (+)= A·B over kc steps; ldc and ldb are the row strides of C
// and B in floats (ldb = NR for a packed panel).
//
//go:noescape
func kernelAVX2(kc int, a, b, c *float32, ldc int, acc bool, ldb int)

// kernelAVX512 is the AVX-512F 6×32 micro-kernel (kernel_amd64.s):
// C[0:6,0:32] (+)= A·[B₀ B₁] over kc steps, where B₀ is b (row stride
// ldb) and B₁ the panel b2 floats after it.
//
//go:noescape
func kernelAVX512(kc int, a, b, c *float32, ldc int, acc bool, ldb, b2 int)

// kernelAVX512x16 is the AVX-512F 6×16 micro-kernel (kernel_amd64.s) for a
// single B panel, with kernelAVX2's arguments.
//
//go:noescape
func kernelAVX512x16(kc int, a, b, c *float32, ldc int, acc bool, ldb int)
