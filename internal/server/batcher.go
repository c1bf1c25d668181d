package server

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	facever "github.com/facever/facever"
	"github.com/facever/facever/align"
)

// embed returns the embeddings of chips: through the batcher when MaxBatch
// is above 1, else on the caller's goroutine (inline).
func (s *Server) embed(ctx context.Context, chips []align.Chip) ([][]float32, error) {
	if s.batch != nil {
		return s.batch.run(ctx, chips)
	}
	return s.inline.run(ctx, chips)
}

// batcher runs the backbone for faces of requests that arrive together in
// one batch: a chunk waits at most window for others to join, up to max
// faces per run. A request's faces are cut into chunks of at most max and
// sent one chunk at a time, each after the previous one's run, so that a
// request of thousands of faces holds the backbone for one run at a time
// and the chunks of other requests run in between. Requests of a face or
// two (verify, identify) go first into the next run, ahead of the chunks of
// large enrolls, so that they wait for at most the run in progress. A
// chunk whose request was cancelled (the client went away, the request
// timed out) is dropped before its run.
type batcher struct {
	embed  func([]align.Chip) ([][]float32, error)
	max    int
	window time.Duration
	small  chan *embedJob // requests of at most smallJob faces
	bulk   chan *embedJob // chunks of larger requests
	stop   chan struct{}
	done   chan struct{}
	// observe records each backbone run's duration and size.
	observe func(d time.Duration, faces int)
	// waitingSmall and waitingBulk count the jobs offered to the loop and
	// not yet taken (the tests wait on them instead of sleeping).
	waitingSmall, waitingBulk atomic.Int64
}

// smallJob is the most faces of a request that goes ahead of bulk chunks.
const smallJob = 2

type embedJob struct {
	ctx   context.Context
	chips []align.Chip
	out   [][]float32
	err   error
	done  chan struct{}
}

func newBatcher(embed func([]align.Chip) ([][]float32, error), max int, window time.Duration, observe func(time.Duration, int)) *batcher {
	b := &batcher{embed: embed, max: max, window: window, small: make(chan *embedJob), bulk: make(chan *embedJob), stop: make(chan struct{}), done: make(chan struct{}), observe: observe}
	go b.loop()
	return b
}

// run returns the embeddings of chips, batched with concurrent callers, in
// chunks of at most b.max. It returns ctx's error as soon as ctx is done.
func (b *batcher) run(ctx context.Context, chips []align.Chip) ([][]float32, error) {
	in, waiting := b.bulk, &b.waitingBulk
	if len(chips) <= smallJob {
		in, waiting = b.small, &b.waitingSmall
	}
	out := make([][]float32, 0, len(chips))
	for start := 0; start < len(chips); start += b.max {
		j := &embedJob{ctx: ctx, chips: chips[start:min(start+b.max, len(chips))], done: make(chan struct{})}
		waiting.Add(1)
		select {
		case in <- j:
			waiting.Add(-1)
		case <-b.stop:
			waiting.Add(-1)
			return nil, errShuttingDown
		case <-ctx.Done():
			waiting.Add(-1)
			return nil, ctx.Err()
		}
		select {
		case <-j.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if j.err != nil {
			return nil, j.err
		}
		out = append(out, j.out...)
	}
	return out, nil
}

func (b *batcher) close() {
	close(b.stop)
	<-b.done
}

func (b *batcher) loop() {
	defer close(b.done)
	// Jobs that did not fit in the previous run: at most one of each kind.
	var heldSmall, heldBulk *embedJob
	for {
		var jobs []*embedJob
		n := 0
		fits := func(j *embedJob) bool { return n+len(j.chips) <= b.max }
		add := func(j *embedJob) { jobs = append(jobs, j); n += len(j.chips) }
		// Small requests first: the one held back, then those waiting now.
		if heldSmall != nil {
			add(heldSmall)
			heldSmall = nil
		}
	drain:
		for n < b.max {
			select {
			case j := <-b.small:
				if !fits(j) {
					heldSmall = j
					break drain
				}
				add(j)
			default:
				break drain
			}
		}
		if heldBulk != nil && fits(heldBulk) {
			add(heldBulk)
			heldBulk = nil
		}
		if len(jobs) == 0 {
			select {
			case j := <-b.small:
				add(j)
			case j := <-b.bulk:
				add(j)
			case <-b.stop:
				return
			}
		}
		// Others that arrive within the window join while they fit.
		timer := time.NewTimer(b.window)
	collect:
		for n < b.max && heldSmall == nil {
			bulk := b.bulk
			if heldBulk != nil {
				bulk = nil
			}
			select {
			case j := <-b.small:
				if !fits(j) {
					heldSmall = j
					break collect
				}
				add(j)
			case j := <-bulk:
				if !fits(j) {
					heldBulk = j
					break collect
				}
				add(j)
			case <-timer.C:
				break collect
			}
		}
		timer.Stop()
		b.runJobs(jobs)
	}
}

// runJobs runs one backbone batch over the jobs still wanted.
func (b *batcher) runJobs(jobs []*embedJob) {
	var all []align.Chip
	live := jobs[:0]
	for _, j := range jobs {
		if err := j.ctx.Err(); err != nil {
			j.err = err
			close(j.done)
			continue
		}
		live = append(live, j)
		all = append(all, j.chips...)
	}
	if len(all) == 0 {
		return
	}
	start := time.Now()
	out, err := b.embed(all)
	if b.observe != nil {
		b.observe(time.Since(start), len(all))
	}
	k := 0
	for _, j := range live {
		if err != nil {
			j.err = err
		} else {
			j.out = out[k : k+len(j.chips)]
		}
		k += len(j.chips)
		close(j.done)
	}
}

// inline runs the backbone on each request's own goroutine, one face a
// run: the server's path with MaxBatch 1 (the default), where a run of
// several faces gains nothing on the CPU runtimes, so there is nothing to
// wait for. Each run holds one of the slots that admit photos to the
// detector (Server.detectors, as many as the recognizer loads model sets),
// so that detection and the backbone together never ask for more model
// sets than are loaded, and no goroutine hop or single loop stands between
// a request and the models: the server then runs a face as the library
// does, where the batcher's loop ran one backbone at a time while two
// photos could be in the detector (BenchmarkThroughput compares the two;
// README, Throughput).
//
// The faces of a verify or an identify (at most smallJob) wait for a slot
// as urgent: ahead of every enroll face, and with two slots or more in the
// one kept for urgent work, so that they do not wait for enrolls at all.
// A large request's faces take a slot one face at a time, so the faces of
// other requests run in between. A request whose context ends stops
// waiting at once and runs no further face (a face already running, tens
// of milliseconds, finishes first); after close no face starts.
type inline struct {
	embed   func([]align.Chip) ([][]float32, error)
	slots   *budget
	observe func(d time.Duration, faces int)

	mu      sync.Mutex
	stopped bool
	running sync.WaitGroup
}

func newInline(embed func([]align.Chip) ([][]float32, error), slots *budget, observe func(time.Duration, int)) *inline {
	return &inline{embed: embed, slots: slots, observe: observe}
}

// run returns the embeddings of chips, one backbone run a face.
func (e *inline) run(ctx context.Context, chips []align.Chip) ([][]float32, error) {
	urgent := len(chips) <= smallJob
	out := make([][]float32, 0, len(chips))
	for i := range chips {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := e.slots.acquire(ctx, 1, urgent); err != nil {
			return nil, err
		}
		emb, err := e.one(chips[i : i+1])
		e.slots.release(1)
		if err != nil {
			return nil, err
		}
		out = append(out, emb...)
	}
	return out, nil
}

// one runs the backbone on chips unless close has begun.
func (e *inline) one(chips []align.Chip) ([][]float32, error) {
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return nil, errShuttingDown
	}
	e.running.Add(1)
	e.mu.Unlock()
	defer e.running.Done()
	start := time.Now()
	out, err := e.embed(chips)
	if e.observe != nil {
		e.observe(time.Since(start), len(chips))
	}
	if errors.Is(err, facever.ErrClosed) {
		return nil, errShuttingDown
	}
	return out, err
}

// close makes later runs fail with errShuttingDown and waits for those
// running.
func (e *inline) close() {
	e.mu.Lock()
	e.stopped = true
	e.mu.Unlock()
	e.running.Wait()
}
