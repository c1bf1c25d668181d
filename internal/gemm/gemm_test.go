package gemm

import (
	"fmt"
	"math"
	"math/rand"
	"runtime"
	"testing"
)

// refGemm is the naive reference in float64: C = alpha·A·B + beta·C.
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

// eachKernel runs f with every micro-kernel this CPU can run selected.
func eachKernel(t testing.TB, f func(k Kernel)) {
	for _, k := range Kernels() {
		old, err := Use(k)
		if err != nil {
			t.Fatal(err)
		}
		f(k)
		Use(old)
	}
}

func randSlice(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = rng.Float32()*2 - 1
	}
	return s
}

// gemmShapes cover every tail: rows around multiples of MR (and 2·MR),
// columns around multiples of NR, 2·NR and NC, depths around KC.
func gemmShapes() [][3]int {
	shapes := [][3]int{{1, 1, 1}, {6, 16, 1}, {6, 32, 4}, {7, 17, 3}, {12, 48, 5}, {13, 33, 257},
		{64, 130, 300}, {5, 200, 600}, {96, 128, 256}, {97, 129, 513}, {64, 3136, 64}}
	for _, m := range []int{1, 5, 6, 7, 11, 12, 13} {
		for _, n := range []int{1, 15, 16, 17, 31, 32, 33, 47, 48, 127, 128, 129, 144} {
			for _, k := range []int{1, 3, 4, 5, 255, 256, 257} {
				shapes = append(shapes, [3]int{m, n, k})
			}
		}
	}
	return shapes
}

func checkClose(t *testing.T, desc string, got, want []float32) {
	t.Helper()
	for i := range got {
		if d := math.Abs(float64(got[i] - want[i])); d > 1e-4*(1+math.Abs(float64(want[i]))) {
			t.Fatalf("%s: c[%d] = %g, want %g", desc, i, got[i], want[i])
		}
	}
}

// TestKernels checks every micro-kernel the CPU can run against the naive
// float64 product, through Serial (packed A and B, beta scaling) and
// through Block reading B in place (the 1×1 convolution path), on shapes
// with every row, column and depth tail.
func TestKernels(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	t.Logf("kernels on this CPU: %v", Kernels())
	eachKernel(t, func(k Kernel) {
		for _, sz := range gemmShapes() {
			M, N, K := sz[0], sz[1], sz[2]
			a, b := randSlice(rng, M*K), randSlice(rng, K*N)
			c := randSlice(rng, M*N)
			want := append([]float32(nil), c...)
			refGemm(M, N, K, 0.5, a, b, 2, want)
			Serial(M, N, K, 0.5, a, K, 1, b, N, 1, 2, c, N, NewScratch(M, K))
			checkClose(t, fmt.Sprintf("%v Serial %v", k, sz), c, want)

			// Block with B read in place, as a 1×1 convolution does
			if N > NC {
				continue
			}
			ap := make([]float32, PackedASize(M, K))
			PackA(ap, a, M, K, K, 1, 1)
			refGemm(M, N, K, 1, a, b, 0, want)
			var tmp Tile
			bbuf := make([]float32, KC*NC)
			Block(ap, K, 0, M, N, c, N, false, bbuf, &tmp, func(dst []float32, k0, kc int) {
				PackB(dst, b, k0, kc, 0, N, N, 1)
			}, b, N)
			checkClose(t, fmt.Sprintf("%v Block direct %v", k, sz), c, want)
		}
	})
}

// TestSerialPacked: SerialPacked with B packed once by PackBAll gives
// Serial's result bit for bit, with every micro-kernel, B plain and
// transposed, on shapes with every row, column and depth tail.
func TestSerialPacked(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	eachKernel(t, func(k Kernel) {
		for _, sz := range gemmShapes() {
			M, N, K := sz[0], sz[1], sz[2]
			a, b := randSlice(rng, M*K), randSlice(rng, K*N)
			c0 := randSlice(rng, M*N)
			for _, trans := range []bool{false, true} {
				rs, cs := N, 1
				if trans { // b holds Bᵀ (N×K)
					rs, cs = 1, K
				}
				want := append([]float32(nil), c0...)
				Serial(M, N, K, 0.5, a, K, 1, b, rs, cs, 2, want, N, NewScratch(M, K))
				bp := make([]float32, PackedBSize(K, N))
				PackBAll(bp, b, K, N, rs, cs)
				got := append([]float32(nil), c0...)
				SerialPacked(M, N, K, 0.5, a, K, 1, bp, 2, got, N, NewScratch(M, K))
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%v %v trans %v: c[%d] = %g, Serial %g", k, sz, trans, i, got[i], want[i])
					}
				}
			}
		}
	})
}

// BenchmarkSgemm measures each micro-kernel on one thread, side by side,
// on 1×1-convolution shapes of fr_feature (M output channels, N pixels, K
// input channels) and one square product: go test ./internal/gemm -bench
// Sgemm. GFLOP/s is per wall second, GFLOP/cpu-s per second of the
// benchmark thread's CPU time (Linux; the steadier one on a shared machine).
func BenchmarkSgemm(b *testing.B) {
	for _, sz := range [][3]int{{128, 3136, 64}, {128, 784, 64}, {256, 196, 128}, {512, 49, 128}, {512, 512, 512}} {
		M, N, K := sz[0], sz[1], sz[2]
		a, bb, c := make([]float32, M*K), make([]float32, K*N), make([]float32, M*N)
		s := NewScratch(M, K)
		for _, k := range Kernels() {
			b.Run(fmt.Sprintf("M%d_N%d_K%d/%v", M, N, K, k), func(b *testing.B) {
				old, _ := Use(k)
				defer Use(old)
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				c0 := threadCPU()
				for i := 0; i < b.N; i++ {
					Serial(M, N, K, 1, a, K, 1, bb, N, 1, 0, c, N, s)
				}
				flop := 2 * float64(M*N*K) * float64(b.N)
				b.ReportMetric(flop/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				if cpu := threadCPU() - c0; cpu > 0 {
					b.ReportMetric(flop/cpu.Seconds()/1e9, "GFLOP/cpu-s")
				}
			})
		}
	}
}
