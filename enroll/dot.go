package enroll

// Dot products for search. The pure-Go versions are unrolled with
// independent accumulators; on amd64 with AVX2 and FMA (golang.org/x/sys/cpu)
// assembly kernels take over (dot_amd64.s). Tests run both.

// useAsm selects the assembly kernels; set at start-up on capable CPUs, and
// switched off by the tests to cover the fallback.
var useAsm = haveAsm()

// dotF32 returns Σ a[i]·b[i] over len(a) (b at least as long).
func dotF32(a, b []float32) float32 {
	if useAsm && len(a) >= 8 {
		n := len(a) &^ 7
		s := dotF32Asm(&a[0], &b[0], n)
		if n == len(a) {
			return s
		}
		return s + dotF32Go(a[n:], b[n:len(a)])
	}
	return dotF32Go(a, b)
}

// dotF32Go is the portable kernel: eight accumulators break the add
// dependency chain.
func dotF32Go(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3, s4, s5, s6, s7 float32
	i := 0
	for ; i+8 <= len(a); i += 8 {
		aa, bb := a[i:i+8:i+8], b[i:i+8:i+8]
		s0 += aa[0] * bb[0]
		s1 += aa[1] * bb[1]
		s2 += aa[2] * bb[2]
		s3 += aa[3] * bb[3]
		s4 += aa[4] * bb[4]
		s5 += aa[5] * bb[5]
		s6 += aa[6] * bb[6]
		s7 += aa[7] * bb[7]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
}

// dotI8 returns Σ a[i]·b[i] for int8 template values a and the query b
// widened to int16 (b at least as long as a).
func dotI8(a []int8, b []int16) int32 {
	if useAsm && len(a) >= 16 {
		n := len(a) &^ 15
		s := dotI8Asm(&a[0], &b[0], n)
		if n == len(a) {
			return s
		}
		return s + dotI8Go(a[n:], b[n:len(a)])
	}
	return dotI8Go(a, b)
}

// dotI8Go is the portable int8 kernel (int32 accumulators cannot overflow:
// |a·b| ≤ 127·127 per term, so 2^31 allows > 130,000 dimensions).
func dotI8Go(a []int8, b []int16) int32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 int32
	i := 0
	for ; i+8 <= len(a); i += 8 {
		aa, bb := a[i:i+8:i+8], b[i:i+8:i+8]
		s0 += int32(aa[0])*int32(bb[0]) + int32(aa[4])*int32(bb[4])
		s1 += int32(aa[1])*int32(bb[1]) + int32(aa[5])*int32(bb[5])
		s2 += int32(aa[2])*int32(bb[2]) + int32(aa[6])*int32(bb[6])
		s3 += int32(aa[3])*int32(bb[3]) + int32(aa[7])*int32(bb[7])
	}
	for ; i < len(a); i++ {
		s0 += int32(a[i]) * int32(b[i])
	}
	return s0 + s1 + s2 + s3
}
