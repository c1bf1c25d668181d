package server

import (
	"context"
	"sync"
)

// budget is a weighted semaphore: the memory that decoded images may hold
// at once, or the detector slots. Urgent waiters (the photo of a verify or
// an identify, which a person is waiting for) are granted before the
// others (the photos of an enroll); within each kind in arrival order, but
// one that fits does not wait behind an earlier one that does not (a small
// photo is not held up by a large one waiting for the budget to drain); a
// large one is not starved, since what small ones can hold is bounded by
// the requests at work at once. The last reserve units are for urgent
// waiters only, so that an urgent photo finds room even when the others
// fill the budget. A waiter whose context ends leaves the queue.
type budget struct {
	mu      sync.Mutex
	size    int64
	reserve int64
	used    int64
	waiters []*budgetWaiter
}

type budgetWaiter struct {
	n      int64
	urgent bool
	ready  chan struct{}
}

func newBudget(size, reserve int64) *budget { return &budget{size: size, reserve: reserve} }

// fits reports whether n more fit for a waiter of this kind (b.mu held).
func (b *budget) fits(n int64, urgent bool) bool {
	limit := b.size
	if !urgent {
		limit -= b.reserve
	}
	return b.used+n <= limit
}

// acquire takes n (n ≤ size, and n ≤ size-reserve unless urgent), waiting
// until it is free or ctx ends.
func (b *budget) acquire(ctx context.Context, n int64, urgent bool) error {
	b.mu.Lock()
	if b.fits(n, urgent) && (urgent || !b.urgentWaiting()) {
		b.used += n
		b.mu.Unlock()
		return nil
	}
	w := &budgetWaiter{n: n, urgent: urgent, ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		select {
		case <-w.ready: // granted meanwhile: give it back
			b.used -= n
			b.wake()
		default:
			for i, x := range b.waiters {
				if x == w {
					b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
					break
				}
			}
			b.wake() // the head of the queue may have changed
		}
		b.mu.Unlock()
		return ctx.Err()
	}
}

// release gives back n bytes.
func (b *budget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	b.wake()
	b.mu.Unlock()
}

// urgentWaiting reports whether an urgent waiter is queued (b.mu held).
func (b *budget) urgentWaiting() bool {
	for _, w := range b.waiters {
		if w.urgent {
			return true
		}
	}
	return false
}

// wake grants every waiter that fits: urgent ones first, each kind in
// arrival order; others only while no urgent one waits (b.mu held).
func (b *budget) wake() {
	for _, urgent := range []bool{true, false} {
		if !urgent && b.urgentWaiting() {
			return
		}
		kept := b.waiters[:0]
		for _, w := range b.waiters {
			if w.urgent == urgent && b.fits(w.n, urgent) {
				b.used += w.n
				close(w.ready)
				continue
			}
			kept = append(kept, w)
		}
		for i := len(kept); i < len(b.waiters); i++ {
			b.waiters[i] = nil
		}
		b.waiters = kept
	}
}

// inUse is the bytes held now (for /metrics and tests).
func (b *budget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}
