package margin

import (
	"fmt"

	"gonum.org/v1/gonum/blas"
	"gorgonia.org/gorgonia"

	"github.com/facever/facever/internal/gemm"
)

// The heads spend most of their time in three matrix products of N×D by
// D×C (forward, and the two gradients). In float32 (training) they run on
// the project's packed GEMM, internal/gemm, the engine's, on every core; in
// float64 (Evaluate, the gradient checks) on the BLAS gorgonia uses
// (gorgonia.Use; gonum's pure-Go one unless changed). Built with -tags
// openblas (cgo, Debian's libopenblas-dev), both call OpenBLAS's cblas_sgemm
// and cblas_dgemm instead; see gemm_openblas.go.
//
// Forward+backward at N = 256, D = 512, C = 10 000 in float32 (BenchmarkArcFace;
// the README's "Speed" gives the figures of the machine it was run on):
// ArcFace about 0.14 s per batch on internal/gemm, against 0.7–1.2 s on
// gonum's pure-Go GEMM and PyTorch's 0.213 s (docs/design.md, "Machines").

// gemmBackend, when not empty, names the implementation that replaces the
// default (gemm_openblas.go sets it).
var gemmBackend string

// GEMMBackend describes the matrix-multiply implementation the heads run on,
// for benchmarks and training reports: by default internal/gemm's kernel and
// workers for float32 and gorgonia's BLAS for float64.
func GEMMBackend() string {
	if gemmBackend != "" {
		return gemmBackend
	}
	return fmt.Sprintf("internal/gemm (%s micro-kernel, %d workers) for float32; gorgonia's BLAS for float64", gemm.Current(), gemm.Workers())
}

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
