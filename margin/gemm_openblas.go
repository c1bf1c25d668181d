//go:build openblas && cgo

package margin

// Built with -tags openblas: the heads' matrix products call OpenBLAS
// (Debian: apt-get install libopenblas-dev). Measured on this machine at
// N = 256, D = 512, C = 10 000; see the package benchmarks.

/*
#cgo LDFLAGS: -lopenblas
enum { rowMajor = 101, noTrans = 111, trans = 112 };
void cblas_sgemm(int order, int ta, int tb, int m, int n, int k, float alpha,
	const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
void cblas_dgemm(int order, int ta, int tb, int m, int n, int k, double alpha,
	const double *a, int lda, const double *b, int ldb, double beta, double *c, int ldc);
*/
import "C"

func ctr(t bool) C.int {
	if t {
		return C.trans
	}
	return C.noTrans
}

func init() {
	gemmBackend = "OpenBLAS (cblas, -tags openblas)"
	sgemm = func(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
		if m == 0 || n == 0 {
			return
		}
		if k == 0 {
			clear(c[:m*ldc])
			return
		}
		C.cblas_sgemm(C.rowMajor, ctr(transA), ctr(transB), C.int(m), C.int(n), C.int(k), 1,
			(*C.float)(&a[0]), C.int(lda), (*C.float)(&b[0]), C.int(ldb), 0, (*C.float)(&c[0]), C.int(ldc))
	}
	dgemm = func(transA, transB bool, m, n, k int, a []float64, lda int, b []float64, ldb int, c []float64, ldc int) {
		if m == 0 || n == 0 {
			return
		}
		if k == 0 {
			clear(c[:m*ldc])
			return
		}
		C.cblas_dgemm(C.rowMajor, ctr(transA), ctr(transB), C.int(m), C.int(n), C.int(k), 1,
			(*C.double)(&a[0]), C.int(lda), (*C.double)(&b[0]), C.int(ldb), 0, (*C.double)(&c[0]), C.int(ldc))
	}
}
