package gemm

import (
	"runtime"
	"sync"
)

// scratchPool recycles the packing buffers of Sgemm.
var scratchPool = sync.Pool{New: func() any { return &Scratch{} }}

// Sgemm computes C = alpha·op(A)·op(B) + beta·C for row-major float32
// matrices, as BLAS's sgemm: op(A) is M×K (A is M×K with row stride lda, or
// K×M when transA), op(B) is K×N (B is K×N with row stride ldb, or N×K when
// transB), C is M×N with row stride ldc. It runs the packed
// micro-kernel GEMM (see gemm.go), split over every core along the larger
// of M and N with goroutines of its own (not the Parallel pool). margin's
// training losses use it as their BLAS.
func Sgemm(transA, transB bool, M, N, K int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if M == 0 || N == 0 {
		return
	}
	ars, acs := lda, 1
	if transA {
		ars, acs = 1, lda
	}
	brs, bcs := ldb, 1
	if transB {
		brs, bcs = 1, ldb
	}
	workers := runtime.GOMAXPROCS(0)
	// Below about a million multiply-adds the split costs more than it saves.
	if M*N*K < 1<<20 {
		workers = 1
	}
	splitN := N >= M
	total := M
	if splitN {
		total = N
	}
	// Chunks are multiples of the micro-tile so tiles are not cut.
	unit := mr
	if splitN {
		unit = nr
	}
	chunk := (total + workers - 1) / workers
	chunk = (chunk + unit - 1) / unit * unit
	var wg sync.WaitGroup
	for lo := 0; lo < total; lo += chunk {
		hi := min(lo+chunk, total)
		run := func(lo, hi int) {
			s := scratchPool.Get().(*Scratch)
			if splitN {
				s.Grow(M, K)
				Serial(M, hi-lo, K, alpha, a, ars, acs, b[lo*bcs:], brs, bcs, beta, c[lo:], ldc, s)
			} else {
				s.Grow(hi-lo, K)
				Serial(hi-lo, N, K, alpha, a[lo*ars:], ars, acs, b, brs, bcs, beta, c[lo*ldc:], ldc, s)
			}
			scratchPool.Put(s)
		}
		if hi == total {
			run(lo, hi) // the last chunk on the calling goroutine
			break
		}
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			run(lo, hi)
		}(lo, hi)
	}
	wg.Wait()
}
