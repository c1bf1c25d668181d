package gemm

import (
	"fmt"
	"math"
	"math/rand"
	"testing"
)

// TestSgemmBLAS checks the exported Sgemm, every transpose and a split over
// cores, against a naive triple loop.
// Every micro-kernel the CPU can run is checked against the same reference.
func TestSgemmBLAS(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	for _, sz := range [][3]int{{1, 1, 1}, {7, 5, 3}, {64, 300, 97}, {300, 40, 129}, {256, 1000, 512}} {
		M, N, K := sz[0], sz[1], sz[2]
		for _, tr := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
			t.Run(fmt.Sprintf("%dx%dx%d_%v", M, N, K, tr), func(t *testing.T) {
				a := make([]float32, M*K)
				b := make([]float32, K*N)
				c := make([]float32, M*N)
				for i := range a {
					a[i] = rng.Float32()*2 - 1
				}
				for i := range b {
					b[i] = rng.Float32()*2 - 1
				}
				for i := range c {
					c[i] = rng.Float32()
				}
				at := func(i, k int) float32 {
					if tr[0] {
						return a[k*M+i]
					}
					return a[i*K+k]
				}
				bt := func(k, j int) float32 {
					if tr[1] {
						return b[j*K+k]
					}
					return b[k*N+j]
				}
				want := make([]float64, M*N)
				for i := 0; i < M; i++ {
					for j := 0; j < N; j++ {
						var s float64
						for k := 0; k < K; k++ {
							s += float64(at(i, k)) * float64(bt(k, j))
						}
						want[i*N+j] = 0.5*s + 2*float64(c[i*N+j])
					}
				}
				lda, ldb := K, N
				if tr[0] {
					lda = M
				}
				if tr[1] {
					ldb = K
				}
				c0 := append([]float32(nil), c...)
				eachKernel(t, func(k Kernel) {
					copy(c, c0)
					Sgemm(tr[0], tr[1], M, N, K, 0.5, a, lda, b, ldb, 2, c, N)
					for i := range want {
						if d := math.Abs(float64(c[i]) - want[i]); d > 1e-4*(1+math.Abs(want[i])) {
							t.Fatalf("%v: C[%d] = %g, want %g", k, i, c[i], want[i])
						}
					}
				})
			})
		}
	}
}
