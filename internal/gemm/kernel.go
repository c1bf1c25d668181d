package gemm

import (
	"fmt"

	"golang.org/x/sys/cpu"
)

// Kernel names a micro-kernel implementation.
type Kernel int

// The micro-kernels, slowest first. Every one computes the same 6×16 tiles
// of the same packed layout, so they can be switched between multiplies.
const (
	Go     Kernel = iota // portable Go
	AVX2                 // AVX2 with FMA, 6×16 tiles in twelve ymm registers
	AVX512               // AVX-512F: 6×32 tiles (two B panels) in twelve zmm registers, 6×16 for a lone panel
)

// String names the kernel as the benchmarks and tests do: go, avx2, avx512.
func (k Kernel) String() string {
	switch k {
	case Go:
		return "go"
	case AVX2:
		return "avx2"
	case AVX512:
		return "avx512"
	}
	return fmt.Sprintf("Kernel(%d)", int(k))
}

var (
	hasAVX2   = haveAsm && cpu.X86.HasAVX2 && cpu.X86.HasFMA
	hasAVX512 = hasAVX2 && haveAVX512Asm && cpu.X86.HasAVX512F
)

// Available reports whether this CPU (and this build) can run k.
func (k Kernel) Available() bool {
	switch k {
	case Go:
		return true
	case AVX2:
		return hasAVX2
	case AVX512:
		return hasAVX512
	}
	return false
}

// Kernels lists the micro-kernels this CPU can run, slowest first.
func Kernels() []Kernel {
	var ks []Kernel
	for _, k := range []Kernel{Go, AVX2, AVX512} {
		if k.Available() {
			ks = append(ks, k)
		}
	}
	return ks
}

// Best is the fastest kernel this CPU can run, the one in use by default.
func Best() Kernel {
	ks := Kernels()
	return ks[len(ks)-1]
}

// kernel is the micro-kernel in use.
var kernel = Best()

// Current returns the micro-kernel in use.
func Current() Kernel { return kernel }

// Use selects the micro-kernel for later multiplies and returns the one
// it replaces; it fails for a kernel the CPU cannot run. It is meant for
// tests and benchmarks and must not be called while a multiply runs.
func Use(k Kernel) (Kernel, error) {
	if !k.Available() {
		return kernel, fmt.Errorf("gemm: micro-kernel %v is not available on this CPU", k)
	}
	old := kernel
	kernel = k
	return old, nil
}
