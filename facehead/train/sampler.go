package train

import (
	"fmt"
	"math/rand/v2"
)

// pkSampler draws the batches of the pair losses: P identities × K photos
// (the "PK" batches of Hermans et al. 2017, FaceNet's identity-balanced
// batches). Only identities with two or more photos are drawn. Identities
// come from a shuffled queue refilled when it runs short, so every identity
// is drawn about as often; each identity's photos cycle through shuffled
// orders, so K photos are distinct when it has K or more, and repeat
// otherwise.
type pkSampler struct {
	p, k   int
	ids    []int   // eligible identities
	photos [][]int // sample indices of each identity
	cursor []int   // next position in photos[id]
	queue  []int   // identities still to draw before the next reshuffle
	buf    []int
}

func newPKSampler(y []int, classes, batchSize, k int) (*pkSampler, error) {
	if k < 2 {
		return nil, fmt.Errorf("pair losses need at least 2 photos per identity in a batch, got %d", k)
	}
	s := &pkSampler{k: k, photos: make([][]int, classes), cursor: make([]int, classes)}
	for i, v := range y {
		s.photos[v] = append(s.photos[v], i)
	}
	for id, ph := range s.photos {
		if len(ph) >= 2 {
			s.ids = append(s.ids, id)
		}
	}
	if len(s.ids) < 2 {
		return nil, fmt.Errorf("pair losses need at least 2 identities with 2 or more photos each; %d of the %d identities have", len(s.ids), classes)
	}
	s.p = min(max(batchSize/k, 2), len(s.ids))
	s.buf = make([]int, 0, s.p*k)
	return s, nil
}

// draw returns the next batch's sample indices (valid until the next call).
func (s *pkSampler) draw(rng *rand.Rand) []int {
	if len(s.queue) < s.p {
		s.queue = append(s.queue[:0], s.ids...)
		rng.Shuffle(len(s.queue), func(i, j int) { s.queue[i], s.queue[j] = s.queue[j], s.queue[i] })
	}
	out := s.buf[:0]
	for _, id := range s.queue[:s.p] {
		ph := s.photos[id]
		if len(ph)-s.cursor[id] < min(s.k, len(ph)) {
			s.cursor[id] = 0 // too few left in this order for distinct photos: reshuffle
		}
		for t := 0; t < s.k; t++ {
			if s.cursor[id] == 0 {
				last := -1
				if len(out) > 0 && t > 0 {
					last = out[len(out)-1]
				}
				rng.Shuffle(len(ph), func(i, j int) { ph[i], ph[j] = ph[j], ph[i] })
				if ph[0] == last {
					ph[0], ph[len(ph)-1] = ph[len(ph)-1], ph[0]
				}
			}
			out = append(out, ph[s.cursor[id]])
			s.cursor[id] = (s.cursor[id] + 1) % len(ph)
		}
	}
	s.queue = s.queue[s.p:]
	s.buf = out
	return out
}
