package onnxrt

import (
	"fmt"
	"math/rand"
	"testing"
)

// naive reference: C = alpha·A·B + beta·C.
func refGemm(M, N, K int, alpha float32, a, b []float32, beta float32, c []float32) {
	for i := 0; i < M; i++ {
		for j := 0; j < N; j++ {
			var s float64
			for k := 0; k < K; k++ {
				s += float64(a[i*K+k]) * float64(b[k*N+j])
			}
			c[i*N+j] = alpha*float32(s) + beta*c[i*N+j]
		}
	}
}

// TestSgemm checks both micro-kernels on sizes around the block edges.
func TestSgemm(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	kernels := []bool{false}
	if hasAVX2FMA {
		kernels = append(kernels, true)
	}
	for _, asm := range kernels {
		old := useAsm
		useAsm = asm
		for _, sz := range [][3]int{{1, 1, 1}, {6, 16, 1}, {7, 17, 3}, {13, 33, 257}, {64, 130, 300}, {5, 200, 600}} {
			M, N, K := sz[0], sz[1], sz[2]
			a, b := make([]float32, M*K), make([]float32, K*N)
			c, want := make([]float32, M*N), make([]float32, M*N)
			for i := range a {
				a[i] = rng.Float32()*2 - 1
			}
			for i := range b {
				b[i] = rng.Float32()*2 - 1
			}
			for i := range c {
				c[i] = rng.Float32()
				want[i] = c[i]
			}
			refGemm(M, N, K, 0.5, a, b, 2, want)
			var tmp [mr * nr]float32
			sgemm(M, N, K, 0.5, a, K, 1, b, N, 1, 2, c, N, make([]float32, packedASize(M, K)), make([]float32, kcBlock*ncBlock), &tmp)
			for i := range c {
				if d := c[i] - want[i]; d > 1e-3 || d < -1e-3 {
					t.Fatalf("asm=%v %v: c[%d] = %g, want %g", asm, sz, i, c[i], want[i])
				}
			}
		}
		useAsm = old
	}
}

// BenchmarkSgemm measures one thread of the GEMM on 1×1-convolution shapes
// of fr_feature (M output channels, N pixels, K input channels).
func BenchmarkSgemm(b *testing.B) {
	for _, sz := range [][3]int{{128, 3136, 64}, {128, 784, 64}, {256, 196, 128}, {512, 49, 128}} {
		M, N, K := sz[0], sz[1], sz[2]
		a, bb, c := make([]float32, M*K), make([]float32, K*N), make([]float32, M*N)
		ap, bp := make([]float32, packedASize(M, K)), make([]float32, kcBlock*ncBlock)
		var tmp [mr * nr]float32
		b.Run(fmt.Sprintf("M%d_N%d_K%d", M, N, K), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				sgemm(M, N, K, 1, a, K, 1, bb, N, 1, 0, c, N, ap, bp, &tmp)
			}
			b.ReportMetric(2*float64(M*N*K)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
