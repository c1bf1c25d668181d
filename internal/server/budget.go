package server

import (
	"context"
	"sync"
)

// budget is a weighted semaphore over bytes: the memory that decoded images
// may hold at once. Waiters are granted in arrival order, but one that fits
// does not wait behind an earlier one that does not (a small photo is not
// held up by a large one waiting for the budget to drain); a large one is
// not starved, since what small ones can hold is bounded by the requests
// at work at once. A waiter whose context ends leaves the queue.
type budget struct {
	mu      sync.Mutex
	size    int64
	used    int64
	waiters []*budgetWaiter
}

type budgetWaiter struct {
	n     int64
	ready chan struct{}
}

func newBudget(size int64) *budget { return &budget{size: size} }

// acquire takes n bytes (n ≤ size), waiting until they are free or ctx ends.
func (b *budget) acquire(ctx context.Context, n int64) error {
	b.mu.Lock()
	if b.used+n <= b.size {
		b.used += n
		b.mu.Unlock()
		return nil
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
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

// wake grants, in arrival order, every waiter that fits (b.mu held).
func (b *budget) wake() {
	kept := b.waiters[:0]
	for _, w := range b.waiters {
		if b.used+w.n <= b.size {
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

// inUse is the bytes held now (for /metrics and tests).
func (b *budget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}
