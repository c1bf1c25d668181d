//go:build !amd64

package enroll

func haveAsm() bool { return false }

func dotF32Asm(a, b *float32, n int) float32 {
	panic("enroll: no assembly kernels on this architecture")
}

func dotI8Asm(a *int8, b *int16, n int) int32 {
	panic("enroll: no assembly kernels on this architecture")
}
