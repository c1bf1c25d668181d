package enroll

import "golang.org/x/sys/cpu"

func haveAsm() bool { return cpu.X86.HasAVX2 && cpu.X86.HasFMA }

// dotF32Asm returns Σ a[i]·b[i] for i < n; n must be a multiple of 8.
//
//go:noescape
func dotF32Asm(a, b *float32, n int) float32

// dotI8Asm returns Σ a[i]·b[i] for i < n; n must be a multiple of 16.
//
//go:noescape
func dotI8Asm(a *int8, b *int16, n int) int32
