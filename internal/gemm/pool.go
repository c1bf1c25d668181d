package gemm

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// A small fork-join pool. Kernels split their work into ranges; the caller
// and every helper goroutine take ranges from a shared counter, so a helper
// that starts late only takes fewer ranges. Between kernels the helpers spin
// for a short while on a generation counter before they park: the layers of
// a face model last tens of microseconds each, about as long as waking a
// parked goroutine takes. Nothing here allocates, so a compiled plan runs
// without allocation.

type task struct {
	fn    func(worker, lo, hi int)
	n     int
	grain int
}

// spinIters bounds how long an idle helper polls for the next task (a
// few microseconds, yielding every 256 polls) before it parks. Spinning
// helps an idle machine and costs a loaded one; this value was not tuned
// on an idle machine (the shared one never was).
const spinIters = 1 << 12

type poolWorker struct {
	parked atomic.Int32
	wake   chan struct{}
}

var (
	poolOnce sync.Once
	poolMu   sync.Mutex
	nWorkers int
	workers  []*poolWorker

	runMu   sync.Mutex // one parallel call at a time
	cur     task       // written before gen is incremented
	gen     atomic.Uint64
	next    atomic.Int64 // next range index
	pending atomic.Int64 // helpers still working on cur
)

// SetThreads sets the number of threads Parallel uses (at least 1). It has
// an effect only before the pool's first use; the default is GOMAXPROCS.
func SetThreads(n int) {
	if n < 1 {
		n = 1
	}
	poolMu.Lock()
	defer poolMu.Unlock()
	if workers == nil {
		nWorkers = n
	}
}

// Workers returns the number of workers Parallel runs on (starting the
// pool): the worker index passed to its function is below it.
func Workers() int {
	startPool()
	return nWorkers
}

func startPool() {
	poolOnce.Do(func() {
		poolMu.Lock()
		defer poolMu.Unlock()
		if nWorkers == 0 {
			nWorkers = runtime.GOMAXPROCS(0)
		}
		workers = make([]*poolWorker, nWorkers)
		for w := 1; w < nWorkers; w++ {
			pw := &poolWorker{wake: make(chan struct{}, 1)}
			workers[w] = pw
			go pw.loop(w, gen.Load())
		}
	})
}

// loop runs helper w; seen is the generation before its first task (read
// when the pool starts, not when the goroutine does, which may be later).
func (pw *poolWorker) loop(w int, seen uint64) {
	for {
		// spin, then park until the caller wakes us
		i := 0
		for gen.Load() == seen {
			i++
			if i < spinIters {
				if i&255 == 0 {
					runtime.Gosched()
				}
				continue
			}
			pw.parked.Store(1)
			if gen.Load() != seen {
				// a task arrived meanwhile: unpark ourselves unless
				// the caller already did (then its wake is on the way)
				if pw.parked.CompareAndSwap(1, 0) {
					break
				}
			}
			<-pw.wake
			i = 0
		}
		seen = gen.Load()
		t := cur
		t.work(w)
		pending.Add(-1)
	}
}

func (t *task) work(w int) {
	for {
		i := int(next.Add(1)) - 1
		lo := i * t.grain
		if lo >= t.n {
			return
		}
		t.fn(w, lo, min(lo+t.grain, t.n))
	}
}

// Parallel runs fn over [0,n) in ranges of grain items on every worker
// and returns when all are done. fn gets the worker index (0 ≤ worker <
// Workers()) for scratch memory. One Parallel call runs at a time; a call
// from inside fn deadlocks. It does not allocate.
func Parallel(n, grain int, fn func(worker, lo, hi int)) {
	startPool()
	if grain < 1 {
		grain = 1
	}
	if nWorkers == 1 || n <= grain {
		fn(0, 0, n)
		return
	}
	runMu.Lock()
	defer runMu.Unlock()
	cur = task{fn: fn, n: n, grain: grain}
	next.Store(0)
	pending.Store(int64(nWorkers - 1))
	gen.Add(1)
	for _, pw := range workers[1:] {
		if pw.parked.CompareAndSwap(1, 0) {
			pw.wake <- struct{}{}
		}
	}
	t := cur
	t.work(0)
	for i := 0; pending.Load() != 0; i++ {
		if i&63 == 63 {
			runtime.Gosched()
		}
	}
	cur = task{}
}
