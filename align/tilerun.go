package align

import (
	"runtime"
	"sync"
	"sync/atomic"

	"gocv.io/x/gocv"

	"github.com/facever/facever/infer"
)

// detectTiles runs the detector on the tiles ts of m and returns their
// boxes, in the order of ts (as running them one after another would).
//
// The detector's runs stay one after another, on the calling goroutine:
// a session need only be safe for one goroutine at a time, and the
// engine's kernels already use every core. What runs beside them is the
// reading of the next tiles' inputs (resizing a region of the photo into
// the 320×240 input, about a fifth of a tile's cost on a large photo): up
// to GOMAXPROCS−1 helper goroutines read tiles ahead, at most
// GOMAXPROCS tiles' inputs exist at once, and the caller waits for tile
// i's input, runs it, and hands the tensor back for reuse.
func (a *Aligner) detectTiles(m gocv.Mat, ts []tileRect) ([]Face, error) {
	helpers := min(runtime.GOMAXPROCS(0), len(ts)) - 1
	if helpers < 1 {
		var cand []Face
		for _, t := range ts {
			c, err := a.detectTile(m, t)
			if err != nil {
				return nil, err
			}
			cand = append(cand, c...)
		}
		return cand, nil
	}
	type input struct {
		x   infer.Tensor
		err error
	}
	ready := make([]chan input, len(ts))
	for i := range ready {
		ready[i] = make(chan input, 1)
	}
	// A helper takes a token before it takes the next tile, so the tiles
	// holding tokens are always the first ones not yet run: the caller's
	// next tile is always being read or read.
	tokens := make(chan struct{}, helpers+1)
	done := make(chan struct{})
	var next atomic.Int64
	var wg sync.WaitGroup
	for h := 0; h < helpers; h++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case tokens <- struct{}{}:
				case <-done:
					return
				}
				select {
				case <-done:
					return
				default:
				}
				i := int(next.Add(1)) - 1
				if i >= len(ts) {
					return
				}
				x, err := tileInput(m, ts[i])
				ready[i] <- input{x, err}
			}
		}()
	}
	defer func() {
		close(done)
		wg.Wait()
		for _, r := range ready { // inputs read but not run (after an error)
			select {
			case in := <-r:
				if in.err == nil {
					putInput(in.x)
				}
			default:
			}
		}
	}()
	var cand []Face
	for i, t := range ts {
		in := <-ready[i]
		if in.err != nil {
			return nil, in.err
		}
		a.lap("detector input (wait)")
		c, err := a.runTile(in.x, t)
		putInput(in.x)
		a.lap("detector")
		<-tokens
		if err != nil {
			return nil, err
		}
		cand = append(cand, c...)
	}
	return cand, nil
}
