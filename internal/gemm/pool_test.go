package gemm

import (
	"sync"
	"sync/atomic"
	"testing"
)

// TestParallelRaces has several goroutines call Parallel at once, many
// rounds each, with ranges of several sizes: every index is run exactly
// once per call, worker indices stay below Workers(), and no call returns
// before its work is done (run it with -race too).
func TestParallelRaces(t *testing.T) {
	const callers, rounds, n = 6, 150, 1000
	var wg sync.WaitGroup
	errs := make(chan string, callers)
	for g := 0; g < callers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			counts := make([]int32, n)
			for r := 0; r < rounds; r++ {
				grain := 1 + (g*rounds+r)%37
				var badWorker atomic.Bool
				Parallel(n, grain, func(w, lo, hi int) {
					if w < 0 || w >= Workers() {
						badWorker.Store(true)
					}
					for i := lo; i < hi; i++ {
						atomic.AddInt32(&counts[i], 1)
					}
				})
				// Parallel has returned: every index must be done now
				for i := range counts {
					if c := atomic.LoadInt32(&counts[i]); c != int32(r+1) {
						errs <- "an index was run a wrong number of times or after Parallel returned"
						return
					}
				}
				if badWorker.Load() {
					errs <- "worker index out of range"
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
