package onnxrt_test

import (
	"fmt"
	"reflect"
	"runtime"
	"sync"
	"testing"

	"github.com/facever/facever/infer"
)

// TestSerialAsPool: a model set to one thread (SetThreads(1)) gives the
// outputs of the same model run over the pool, bit for bit, on the three
// real models and real faces at batch 1 and 4; and once warm it runs
// without allocating.
func TestSerialAsPool(t *testing.T) {
	files := faceImages(t)
	for _, rm := range realModels {
		_, pool := loadReal(t, rm)
		_, serial := loadReal(t, rm)
		serial.SetThreads(1)
		names := outNames(pool)
		in := pool.Inputs()[0].Name
		for _, batch := range []int{1, 4} {
			inputs := map[string]infer.Tensor{in: blob(t, rm, files[:batch])}
			want, err := pool.Run(inputs, names)
			if err != nil {
				t.Fatal(err)
			}
			got, err := serial.Run(inputs, names)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s batch %d: one thread's outputs differ from the pool's", rm.file, batch)
			}
			outs := make([]infer.Tensor, len(names))
			allocs := testing.AllocsPerRun(5, func() {
				if err := serial.RunInto(inputs, names, outs); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("%s batch %d, one thread: %.1f allocations per run", rm.file, batch, allocs)
			}
		}
	}
}

// TestSerialConcurrent: runs of a one-thread model from several
// goroutines at once (each on its own plan), on different faces and batch
// sizes, each give exactly the outputs of running that input alone; a
// model on the pool, run from the same goroutines, too (its runs are
// serialised).
func TestSerialConcurrent(t *testing.T) {
	files := faceImages(t)
	rounds := 30
	if testing.Short() {
		rounds = 5
	}
	for _, rm := range realModels[1:] { // fr_detect and fr_landmark
		for _, threads := range []int{1, 0} {
			_, m := loadReal(t, rm)
			m.SetThreads(threads)
			names := outNames(m)
			in := m.Inputs()[0].Name
			type job struct {
				x    map[string]infer.Tensor
				want []infer.Tensor
			}
			var jobs []job
			for i := 0; i < 6; i++ {
				batch := 1 + i%2
				x := map[string]infer.Tensor{in: blob(t, rm, files[3*i:3*i+batch])}
				want, err := m.Run(x, names)
				if err != nil {
					t.Fatal(err)
				}
				jobs = append(jobs, job{x, want})
			}
			workers := max(4, 2*runtime.GOMAXPROCS(0))
			var wg sync.WaitGroup
			errs := make(chan error, workers)
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for r := 0; r < rounds; r++ {
						j := jobs[(w+r)%len(jobs)]
						got, err := m.Run(j.x, names)
						if err == nil && !reflect.DeepEqual(got, j.want) {
							err = fmt.Errorf("worker %d round %d: outputs differ from the input run alone", w, r)
						}
						if err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("%s, threads %d: %v", rm.file, threads, err)
			}
		}
	}
}
