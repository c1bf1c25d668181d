package margin

import (
	"gonum.org/v1/gonum/blas"
	"gorgonia.org/gorgonia"

	"github.com/facever/facever/internal/gemm"
)

// The heads spend most of their time in three matrix products of N×D by
// D×C (forward, and the two gradients). By default they run on the BLAS
// gorgonia uses (gorgonia.Use; gonum's pure-Go one unless changed). Built
// with -tags openblas (cgo, Debian's libopenblas-dev), they call OpenBLAS's
// cblas_sgemm and cblas_dgemm directly instead; see gemm_openblas.go.
//
// Measured on the 2-core AVX-512 machine of DESIGN.md (shared, so ±30 %),
// forward+backward at N = 256, D = 512, C = 10 000 in float32: about 1 s per
// batch with gonum (≈ 250 samples/s; three quarters of the time in gonum's
// sgemm), 0.12–0.28 s with OpenBLAS (ArcFace ≈ 0.2–0.28 s, 900–1 250
// samples/s, against PyTorch's 0.213 s and 1 200 samples/s).

// gemmBackend names the implementation in use, for benchmarks and reports.
var gemmBackend = "gorgonia BLAS (gonum pure Go unless gorgonia.Use changed it)"

// GEMMBackend returns a description of the matrix-multiply implementation the
// heads run on.
func GEMMBackend() string { return gemmBackend }

// sgemm computes c = op(a)·op(b) for row-major float32 matrices.
var sgemm = func(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	gemm.Sgemm(transA, transB, m, n, k, 1, a, lda, b, ldb, 0, c, ldc)
}

// dgemm computes c = op(a)·op(b) for row-major float64 matrices.
var dgemm = func(transA, transB bool, m, n, k int, a []float64, lda int, b []float64, ldb int, c []float64, ldc int) {
	gorgonia.WhichBLAS().Dgemm(btr(transA), btr(transB), m, n, k, 1, a, lda, b, ldb, 0, c, ldc)
}

func btr(t bool) blas.Transpose {
	if t {
		return blas.Trans
	}
	return blas.NoTrans
}
