package enroll

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
)

// Index is an in-memory matrix of templates for exact 1:N cosine search:
// one contiguous row-major []float32 (or []int8, see Quantize) of
// L2-normalised rows, with the identity of each row. It is immutable once
// searched; build it with Gallery.LoadIndex or NewIndex and Add.
//
// Memory per template: float32: 4·dim + 12 bytes (dim 512: 2,060 B, so 1M
// templates take 2.06 GB), int8: dim + 16 bytes (528 B), plus 4 bytes per
// template for each Searcher's score buffer.
type Index struct {
	dim   int
	int8  bool
	data  []float32 // n·dim, float32 mode
	q8    []int8    // n·dim, int8 mode
	scale []float32 // per row, int8 mode: row ≈ scale·q8 row
	owner []int32   // identity slot of each row
	tids  []uint64  // template id of each row
	ids   []uint64  // identity id of each slot
	names []string  // identity name of each slot
	slot  map[uint64]int32
}

// NewIndex returns an empty float32 index for embeddings of length dim, with
// room for capacity templates.
func NewIndex(dim, capacity int) *Index {
	return &Index{dim: dim, data: make([]float32, 0, dim*capacity), owner: make([]int32, 0, capacity),
		tids: make([]uint64, 0, capacity), slot: map[uint64]int32{}}
}

// ErrEmptyQuery is returned for a zero, empty or non-finite query.
var ErrEmptyQuery = errors.New("enroll: query embedding is zero, empty or not finite")

// Add appends one template of identity identityID (called name). The
// embedding is copied and normalised to unit length.
func (ix *Index) Add(identityID uint64, name string, templateID uint64, emb []float32) error {
	if len(emb) != ix.dim {
		return fmt.Errorf("%w: template %d has %d values, the index %d", ErrDimension, templateID, len(emb), ix.dim)
	}
	var sq float64
	for _, x := range emb {
		sq += float64(x) * float64(x)
	}
	if sq == 0 || math.IsNaN(sq) || math.IsInf(sq, 0) {
		return fmt.Errorf("%w: template %d is zero or not finite", ErrInvalid, templateID)
	}
	inv := float32(1 / math.Sqrt(sq))
	s, ok := ix.slot[identityID]
	if !ok {
		s = int32(len(ix.ids))
		ix.slot[identityID] = s
		ix.ids = append(ix.ids, identityID)
		ix.names = append(ix.names, name)
	}
	ix.owner = append(ix.owner, s)
	ix.tids = append(ix.tids, templateID)
	if ix.int8 {
		ix.appendInt8(emb, inv)
		return nil
	}
	n := len(ix.data)
	ix.data = slices.Grow(ix.data, ix.dim)[:n+ix.dim]
	row := ix.data[n:]
	for i, x := range emb {
		row[i] = x * inv
	}
	return nil
}

// appendInt8 quantises a row symmetrically: q = round(x/scale), scale =
// max|x|/127, after normalisation by inv.
func (ix *Index) appendInt8(emb []float32, inv float32) {
	var m float32
	for _, x := range emb {
		m = max(m, float32(math.Abs(float64(x*inv))))
	}
	scale := m / 127
	for _, x := range emb {
		ix.q8 = append(ix.q8, int8(math.Round(float64(x*inv/scale))))
	}
	ix.scale = append(ix.scale, scale)
}

// Quantize returns a compact int8 copy of a float32 index (4× smaller rows,
// each with its own scale). Scores are approximate: see the recall@1 test.
func (ix *Index) Quantize() *Index {
	if ix.int8 {
		return ix
	}
	q := &Index{dim: ix.dim, int8: true, owner: ix.owner, tids: ix.tids, ids: ix.ids, names: ix.names, slot: ix.slot,
		q8: make([]int8, 0, len(ix.data)), scale: make([]float32, 0, len(ix.tids))}
	for r := range ix.tids {
		q.appendInt8(ix.data[r*ix.dim:(r+1)*ix.dim], 1)
	}
	return q
}

// Dim is the embedding length.
func (ix *Index) Dim() int { return ix.dim }

// Len is the number of templates.
func (ix *Index) Len() int { return len(ix.tids) }

// Identities is the number of distinct identities.
func (ix *Index) Identities() int { return len(ix.ids) }

// Int8 reports whether the index is the compact int8 kind.
func (ix *Index) Int8() bool { return ix.int8 }

// BytesPerTemplate is the index memory per template (rows, scale, owner,
// template id), not counting a Searcher's 4-byte score per template.
func (ix *Index) BytesPerTemplate() int {
	if ix.int8 {
		return ix.dim + 4 + 4 + 8
	}
	return 4*ix.dim + 4 + 8
}

// Match is one identity found by a search.
type Match struct {
	IdentityID uint64 `json:"identity_id"`
	Name       string `json:"name"`
	// Score is the cosine similarity of the query with the identity's best
	// template.
	Score float32 `json:"score"`
	// TemplateID is that best template.
	TemplateID uint64 `json:"template_id"`
}

// Searcher runs queries against one Index without allocating: it owns the
// score buffers and a worker goroutine per extra core. One Searcher serves one
// goroutine at a time; use one per goroutine. Close it to stop its workers
// (a forgotten Searcher is stopped when garbage collected).
type Searcher struct {
	*searcher
}

type searcher struct {
	ix      *Index
	q       []float32 // normalised query
	q16     []int16   // quantised query, int8 mode
	qscale  float32
	scores  []float32
	best    []float32 // per identity slot
	bestRow []int32
	top     []int32 // slots of the current top k, best first
	res     []Match
	chunks  int
	work    chan [2]int
	done    chan struct{}
	once    sync.Once
}

// stop ends the workers, once.
func (s *searcher) stop() {
	s.once.Do(func() {
		if s.work != nil {
			close(s.work)
		}
	})
}

// minChunk is the fewest rows worth handing to another core.
const minChunk = 4096

// NewSearcher returns a Searcher over ix using up to GOMAXPROCS cores.
func (ix *Index) NewSearcher() *Searcher {
	n := ix.Len()
	s := &searcher{ix: ix, q: make([]float32, ix.dim), scores: make([]float32, n),
		best: make([]float32, len(ix.ids)), bestRow: make([]int32, len(ix.ids))}
	if ix.int8 {
		s.q16 = make([]int16, ix.dim)
	}
	s.chunks = max(1, min(runtime.GOMAXPROCS(0), n/minChunk))
	if s.chunks > 1 {
		s.work = make(chan [2]int, s.chunks)
		s.done = make(chan struct{}, s.chunks)
		for range s.chunks - 1 {
			go s.worker()
		}
	}
	out := &Searcher{s}
	if s.work != nil {
		runtime.AddCleanup(out, func(s *searcher) { s.stop() }, s)
	}
	return out
}

func (s *searcher) worker() {
	for r := range s.work {
		s.score(r[0], r[1])
		s.done <- struct{}{}
	}
}

// Close stops the Searcher's workers. It must not be used afterwards.
func (s *Searcher) Close() {
	s.stop()
}

// score fills scores[lo:hi].
func (s *searcher) score(lo, hi int) {
	d := s.ix.dim
	if s.ix.int8 {
		q8, q, sc := s.ix.q8, s.q16, s.ix.scale
		for r := lo; r < hi; r++ {
			s.scores[r] = float32(dotI8(q8[r*d:(r+1)*d:(r+1)*d], q)) * sc[r] * s.qscale
		}
		return
	}
	data, q := s.ix.data, s.q
	for r := lo; r < hi; r++ {
		s.scores[r] = dotF32(data[r*d:(r+1)*d:(r+1)*d], q)
	}
}

// Search returns the k identities most similar to query, best first, each
// scored by its best template (exact cosine against every template of the
// index; approximate for an int8 index). The returned slice belongs to the
// Searcher and is overwritten by the next Search. It does not allocate.
func (s *Searcher) Search(query []float32, k int) ([]Match, error) {
	ix := s.ix
	if ix.Len() == 0 {
		return s.res[:0], nil
	}
	if len(query) != ix.dim {
		return nil, ErrDimension
	}
	var sq float64
	for _, x := range query {
		sq += float64(x) * float64(x)
	}
	if sq == 0 || math.IsNaN(sq) || math.IsInf(sq, 0) {
		return nil, ErrEmptyQuery
	}
	inv := float32(1 / math.Sqrt(sq))
	var m float32
	for i, x := range query {
		s.q[i] = x * inv
		m = max(m, float32(math.Abs(float64(s.q[i]))))
	}
	if ix.int8 {
		s.qscale = m / 127
		for i, x := range s.q {
			s.q16[i] = int16(math.Round(float64(x / s.qscale)))
		}
	}
	n := ix.Len()
	if s.chunks > 1 {
		step := (n + s.chunks - 1) / s.chunks
		for c := 1; c < s.chunks; c++ {
			s.work <- [2]int{c * step, min(n, (c+1)*step)}
		}
		s.score(0, min(n, step))
		for c := 1; c < s.chunks; c++ {
			<-s.done
		}
	} else {
		s.score(0, n)
	}
	// Best template per identity.
	for i := range s.best {
		s.best[i] = float32(math.Inf(-1))
	}
	for r, sc := range s.scores {
		if o := ix.owner[r]; sc > s.best[o] {
			s.best[o], s.bestRow[o] = sc, int32(r)
		}
	}
	// Top k identities by insertion into a sorted list of at most k slots.
	k = min(k, len(s.best))
	if k <= 0 {
		return s.res[:0], nil
	}
	if cap(s.top) < k {
		s.top = make([]int32, 0, k) // grows once per larger k
		s.res = make([]Match, 0, k)
	}
	top := s.top[:0]
	for o, sc := range s.best {
		if len(top) == k && sc <= s.best[top[k-1]] {
			continue
		}
		if len(top) < k {
			top = append(top, 0)
		}
		j := len(top) - 1
		for ; j > 0 && s.best[top[j-1]] < sc; j-- {
			top[j] = top[j-1]
		}
		top[j] = int32(o)
	}
	s.top = top
	res := s.res[:0]
	for _, o := range top {
		res = append(res, Match{IdentityID: ix.ids[o], Name: ix.names[o], Score: s.best[o], TemplateID: ix.tids[s.bestRow[o]]})
	}
	s.res = res
	return res, nil
}
