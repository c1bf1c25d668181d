package server

import (
	"time"

	"github.com/facever/facever/align"
	"github.com/facever/facever/facehead"
)

// batcher runs the backbone for faces of requests that arrive together in
// one batch: a request's faces wait at most window for others to join, up to
// facehead.MaxBatch faces per run.
type batcher struct {
	emb    *facehead.Embedder
	window time.Duration
	in     chan *embedJob
	stop   chan struct{}
	done   chan struct{}
	// observe records each backbone run's duration and size.
	observe func(d time.Duration, faces int)
}

type embedJob struct {
	chips []align.Chip
	out   [][]float32
	err   error
	done  chan struct{}
}

func newBatcher(emb *facehead.Embedder, window time.Duration, observe func(time.Duration, int)) *batcher {
	b := &batcher{emb: emb, window: window, in: make(chan *embedJob), stop: make(chan struct{}), done: make(chan struct{}), observe: observe}
	go b.loop()
	return b
}

// embed returns the embeddings of chips, batched with concurrent callers.
func (b *batcher) embed(chips []align.Chip) ([][]float32, error) {
	j := &embedJob{chips: chips, done: make(chan struct{})}
	select {
	case b.in <- j:
	case <-b.stop:
		return nil, errShuttingDown
	}
	<-j.done
	return j.out, j.err
}

func (b *batcher) close() {
	close(b.stop)
	<-b.done
}

func (b *batcher) loop() {
	defer close(b.done)
	for {
		var first *embedJob
		select {
		case first = <-b.in:
		case <-b.stop:
			return
		}
		jobs := []*embedJob{first}
		n := len(first.chips)
		timer := time.NewTimer(b.window)
	collect:
		for n < facehead.MaxBatch {
			select {
			case j := <-b.in:
				jobs = append(jobs, j)
				n += len(j.chips)
			case <-timer.C:
				break collect
			}
		}
		timer.Stop()
		var all []align.Chip
		for _, j := range jobs {
			all = append(all, j.chips...)
		}
		start := time.Now()
		out, err := b.emb.Embed(all)
		if b.observe != nil {
			b.observe(time.Since(start), len(all))
		}
		k := 0
		for _, j := range jobs {
			if err != nil {
				j.err = err
			} else {
				j.out = out[k : k+len(j.chips)]
			}
			k += len(j.chips)
			close(j.done)
		}
	}
}
