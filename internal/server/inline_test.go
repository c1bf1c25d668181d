package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/facever/facever/align"
)

// slotRecognizer is a fakeRecognizer that records the person of each
// backbone run, holds the runs of the people hold names at gate until the
// test sends on it, and counts the calls inside Detect and EmbedChips
// together (busy, and the most at once).
type slotRecognizer struct {
	*fakeRecognizer
	hold  map[byte]bool
	gate  chan struct{}
	held  atomic.Int64
	freed atomic.Int64 // held runs let through
	mu    sync.Mutex
	order []byte // the person of each backbone run, in order
	busy  atomic.Int64
	most  atomic.Int64
}

func (r *slotRecognizer) enter() {
	n := r.busy.Add(1)
	for m := r.most.Load(); n > m && !r.most.CompareAndSwap(m, n); m = r.most.Load() {
	}
}

func (r *slotRecognizer) Detect(im *align.Image) ([]align.Face, error) {
	r.enter()
	defer r.busy.Add(-1)
	return r.fakeRecognizer.Detect(im)
}

func (r *slotRecognizer) EmbedChips(chips []align.Chip) ([][]float32, error) {
	r.enter()
	defer r.busy.Add(-1)
	p := chips[0].Pix[0]
	r.mu.Lock()
	r.order = append(r.order, p)
	r.mu.Unlock()
	if r.hold[p] {
		r.held.Add(1)
		<-r.gate
		r.held.Add(-1)
		r.freed.Add(1)
	}
	return r.fakeRecognizer.EmbedChips(chips)
}

func (r *slotRecognizer) runs() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.order...)
}

// waiters counts the waiters of b of one kind.
func waiters(b *budget, urgent bool) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, w := range b.waiters {
		if w.urgent == urgent {
			n++
		}
	}
	return n
}

// twoEnrolls starts an enroll of 3n photos of person 1 and, once its
// photos are detected and its first face is held in the backbone (holding
// the only slot), an enroll of n photos of person 3; it lets person 1's
// faces through one at a time until the second enroll's photos are
// detected too (each face let through gives the slot to one of its
// photos). Then one face of the first enroll is in the backbone, the
// second enroll's first face waits for the slot, and the first enroll has
// 2n-1 faces left.
func twoEnrolls(t *testing.T, rec *slotRecognizer, f *fixture, ctxB context.Context, n int) (a, b chan int, idA, idB uint64) {
	t.Helper()
	idA, a = enrollAsync(t, f, context.Background(), "a", 1, 3*n)
	waitFor(t, "the first enroll's photos detected and its first face held", func() bool {
		return rec.detects.Load() == int64(3*n) && rec.held.Load() == 1
	})
	idB, b = enrollAsync(t, f, ctxB, "b", 3, n)
	for {
		waitFor(t, "a face held in the backbone and the second enroll waiting", func() bool {
			return rec.held.Load() == 1 && waiters(f.srv.detectors, false) == 1
		})
		if rec.detects.Load() == int64(4*n) {
			return a, b, idA, idB
		}
		k := rec.freed.Load()
		rec.gate <- struct{}{}
		waitFor(t, "the face let through", func() bool { return rec.freed.Load() == k+1 })
	}
}

// newInlineFixture serves rec with MaxBatch 1 (the default: the backbone
// runs on the request's goroutine) and detectors slots.
func newInlineFixture(t *testing.T, rec *slotRecognizer, detectors int) (*fixture, *syncBuffer) {
	f, log := newFakeFixture(t, rec.fakeRecognizer, func(c *Config) {
		c.Recognizer, c.MaxBatch, c.Detectors, c.MaxPhotos = rec, 1, detectors, 64
	})
	if f.srv.batch != nil || f.srv.inline == nil {
		t.Fatal("MaxBatch 1 does not run the backbone inline")
	}
	return f, log
}

// enrollAsync posts n photos of person to a new identity named name and
// sends the answer's status on the returned channel.
func enrollAsync(t *testing.T, f *fixture, ctx context.Context, name string, person byte, n int) (uint64, chan int) {
	_, doc := f.do(t, "POST", "/v1/identities", "application/json", jsonBody(map[string]any{"name": name}), f.key)
	id := uint64(doc["id"].(float64))
	var list []string
	for i := 0; i < n; i++ {
		list = append(list, b64(photo(t, person, 1, 20+i)))
	}
	req, _ := http.NewRequestWithContext(ctx, "POST", f.http.URL+fmt.Sprintf("/v1/identities/%d/faces", id), bytes.NewReader(jsonBody(map[string]any{"images": list})))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", f.key)
	done := make(chan int, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- -1
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	return id, done
}

// TestInlineUrgentSlot: with two detector slots (one kept for urgent
// work), an identify is detected, embedded and answered while an enroll's
// backbone run holds the other slot and a second enroll waits for it: on
// the inline path verify and identify do not wait for enrolls at all.
func TestInlineUrgentSlot(t *testing.T) {
	rec := &slotRecognizer{fakeRecognizer: &fakeRecognizer{}, hold: map[byte]bool{1: true, 3: true}, gate: make(chan struct{})}
	f, _ := newInlineFixture(t, rec, 2)
	_, a := enrollAsync(t, f, context.Background(), "a", 1, 16)
	_, b := enrollAsync(t, f, context.Background(), "b", 3, 16)
	waitFor(t, "one enroll's run in the backbone and the other enroll waiting", func() bool {
		return rec.held.Load() == 1 && waiters(f.srv.detectors, false) == 1
	})
	for i := 0; i < 3; i++ {
		code, doc := f.do(t, "POST", "/v1/identify", "application/json", jsonBody(map[string]any{"image": b64(photo(t, 2, 1, 24))}), f.key)
		if code != 200 {
			t.Fatalf("identify: %d %v", code, doc)
		}
		if h := rec.held.Load(); h != 1 {
			t.Fatalf("%d enroll runs held while the identify ran, want 1", h)
		}
	}
	openGate(t, rec.gate)
	if ca, cb := <-a, <-b; ca != 200 || cb != 200 {
		t.Fatalf("enrolls: %d, %d", ca, cb)
	}
	if m := rec.most.Load(); m > 2 {
		t.Fatalf("%d detector and backbone calls at once, over the 2 slots", m)
	}
	if u := f.srv.detectors.inUse(); u != 0 {
		t.Fatalf("%d slots still held", u)
	}
}

// TestInlineSmallFirst: with a single slot, an enroll's face in the
// backbone and another enroll's face waiting for the slot, an identify
// goes ahead of both enrolls' remaining faces: its photo is detected when
// the run in progress ends, and its face runs right after the one enroll
// face that took the slot while the identify was aligning (the slot is
// not kept from detection to the backbone: an urgent request waits for at
// most the run in progress each time it asks for the slot). The test lets
// the held faces through one at a time, each once the identify waits for
// the slot again, so that it checks the order the slot is granted in, not
// how fast the identify's goroutine aligns on a loaded machine.
func TestInlineSmallFirst(t *testing.T) {
	rec := &slotRecognizer{fakeRecognizer: &fakeRecognizer{}, hold: map[byte]bool{1: true, 3: true}, gate: make(chan struct{})}
	f, _ := newInlineFixture(t, rec, 1)
	a, b, _, _ := twoEnrolls(t, rec, f, context.Background(), 16)
	identified := make(chan struct{})
	go func() {
		defer close(identified)
		if code, doc := f.do(t, "POST", "/v1/identify", "application/json", jsonBody(map[string]any{"image": b64(photo(t, 2, 1, 24))}), f.key); code != 200 {
			t.Errorf("identify: %d %v", code, doc)
		}
	}()
	waitFor(t, "the identify waiting for the slot", func() bool { return waiters(f.srv.detectors, true) == 1 })
	busy := len(rec.runs())
	for done := false; !done; {
		k := rec.freed.Load()
		rec.gate <- struct{}{}
		waitFor(t, "the face let through", func() bool { return rec.freed.Load() == k+1 })
		waitFor(t, "the identify answered, or waiting for the slot while an enroll face is held", func() bool {
			select {
			case <-identified:
				done = true
				return true
			default:
			}
			return rec.held.Load() == 1 && waiters(f.srv.detectors, true) == 1
		})
	}
	openGate(t, rec.gate)
	if ca, cb := <-a, <-b; ca != 200 || cb != 200 {
		t.Fatalf("enrolls: %d, %d", ca, cb)
	}
	runs := rec.runs()
	at := bytes.IndexByte(runs, 2)
	if at != busy+1 {
		t.Fatalf("the identify's face ran in backbone run %d, want %d, right after the one in progress and one more (runs: %v)", at, busy+1, runs)
	}
	if len(runs) != 65 || bytes.LastIndexByte(runs, 1) < at || bytes.LastIndexByte(runs, 3) < at {
		t.Fatalf("runs %v: want 65, the enrolls' last after the identify's", runs)
	}
}

// TestInlineCancel: an enroll whose client goes away while its faces wait
// for the slot stops waiting at once (answered 499 while the run in
// progress is still held), leaves the queue, runs no face and commits
// nothing; the other enroll completes; no slot is left held.
func TestInlineCancel(t *testing.T) {
	rec := &slotRecognizer{fakeRecognizer: &fakeRecognizer{}, hold: map[byte]bool{1: true, 3: true}, gate: make(chan struct{})}
	f, log := newInlineFixture(t, rec, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	keptDone, waitingDone, keptID, waitingID := twoEnrolls(t, rec, f, ctx, 8)
	cancel()
	if c := <-waitingDone; c != -1 {
		t.Fatalf("the cancelled enroll got an answer: %d", c)
	}
	waitFor(t, "the cancelled enroll's handler to stop", func() bool { return strings.Contains(log.String(), `"status":499`) })
	if h := rec.held.Load(); h != 1 {
		t.Fatalf("the held run ended (%d held) before the cancelled enroll stopped", h)
	}
	if w := waiters(f.srv.detectors, false); w != 0 {
		t.Fatalf("%d waiters left in the slot queue after the cancel", w)
	}
	openGate(t, rec.gate)
	if c := <-keptDone; c != 200 {
		t.Fatalf("the other enroll: %d", c)
	}
	if bytes.IndexByte(rec.runs(), 3) >= 0 {
		t.Fatalf("a face of the cancelled enroll ran (runs: %v)", rec.runs())
	}
	if it, _ := f.gal.Get(waitingID); it.Templates != 0 {
		t.Fatalf("the cancelled enroll committed %d templates", it.Templates)
	}
	if it, _ := f.gal.Get(keptID); it.Templates != 24 {
		t.Fatalf("the other enroll committed %d templates, want 24", it.Templates)
	}
	if u := f.srv.detectors.inUse(); u != 0 {
		t.Fatalf("%d slots still held", u)
	}
}

// TestInlineClose: close waits for the run in progress and then refuses
// every later run with errShuttingDown (503 unavailable to a client).
func TestInlineClose(t *testing.T) {
	gate := make(chan struct{})
	in := make(chan struct{}, 1)
	e := newInline(func(chips []align.Chip) ([][]float32, error) {
		in <- struct{}{}
		<-gate
		return [][]float32{{1}}, nil
	}, newBudget(2, 1), nil)
	chip := []align.Chip{{Size: align.ChipSize, Pix: make([]byte, align.ChipSize*align.ChipSize*3)}}
	ran := make(chan error, 1)
	go func() {
		_, err := e.run(context.Background(), chip)
		ran <- err
	}()
	<-in
	closed := make(chan struct{})
	go func() { e.close(); close(closed) }()
	waitFor(t, "close to begin", func() bool { e.mu.Lock(); defer e.mu.Unlock(); return e.stopped })
	select {
	case <-closed:
		t.Fatal("close returned while a run was in progress")
	default:
	}
	close(gate)
	<-closed
	if err := <-ran; err != nil {
		t.Fatalf("the run in progress: %v", err)
	}
	if _, err := e.run(context.Background(), chip); !errors.Is(err, errShuttingDown) {
		t.Fatalf("a run after close: %v, want errShuttingDown", err)
	}
	if ae := asAPIError(errShuttingDown); ae.status != 503 {
		t.Fatalf("errShuttingDown answers %d", ae.status)
	}
}

// TestInlineRace: 8 identify clients and 2 enroll clients at once, many
// rounds, on the inline path with 2 slots: every answer is right, the
// detector and the backbone together never run more than the 2 slots at
// once, every face runs once, and no slot is left held.
func TestInlineRace(t *testing.T) {
	rec := &slotRecognizer{fakeRecognizer: &fakeRecognizer{detectDelay: time.Millisecond, embedDelay: time.Millisecond}}
	f, _ := newInlineFixture(t, rec, 2)
	var ids [2]uint64
	for p := range ids {
		id, done := enrollAsync(t, f, context.Background(), fmt.Sprint("p", p), byte(10+p), 2)
		if c := <-done; c != 200 {
			t.Fatalf("enroll: %d", c)
		}
		ids[p] = id
	}
	const rounds = 40
	var wg sync.WaitGroup
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				p := (c + i) % 2
				code, doc := f.do(t, "POST", "/v1/identify", "application/json", jsonBody(map[string]any{"image": b64(photo(t, byte(10+p), 1, 24+i%8))}), f.key)
				m, _ := doc["match"].(map[string]any)
				if code != 200 || m == nil || uint64(m["identity_id"].(float64)) != ids[p] {
					t.Errorf("identify of person %d: %d %v", p, code, doc)
					return
				}
			}
		}()
	}
	for c := 0; c < 2; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < rounds/8; i++ {
				_, done := enrollAsync(t, f, context.Background(), fmt.Sprint("e", c, "-", i), byte(20+c), 6)
				if code := <-done; code != 200 {
					t.Errorf("enroll: %d", code)
					return
				}
			}
		}()
	}
	wg.Wait()
	if m := rec.most.Load(); m > 2 {
		t.Fatalf("%d detector and backbone calls at once, over the 2 slots", m)
	}
	if u := f.srv.detectors.inUse(); u != 0 {
		t.Fatalf("%d slots still held", u)
	}
	if n := len(rec.runs()); n != 2*2+8*rounds+2*(rounds/8)*6 {
		t.Fatalf("%d backbone runs, want one a face", n)
	}
}

// openGate lets every run held at gate through, from now until the test
// ends.
func openGate(t *testing.T, gate chan<- struct{}) {
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		for {
			select {
			case gate <- struct{}{}:
			case <-stop:
				return
			}
		}
	}()
}
