package enroll

import (
	"errors"
	"fmt"
	"maps"
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
// templates take 2.06 GB), int8: dim + 16 bytes (528 B); plus, per
// Searcher, 8 bytes per identity per core (see Searcher).
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

	version uint64 // the gallery transaction it was read in (0: built by hand)
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
	// The identity tables are shared, clipped so that an Add to either index
	// reallocates instead of writing into the other's arrays.
	ix.owner, ix.tids, ix.ids, ix.names = slices.Clip(ix.owner), slices.Clip(ix.tids), slices.Clip(ix.ids), slices.Clip(ix.names)
	q := &Index{dim: ix.dim, int8: true, version: ix.version, owner: ix.owner, tids: ix.tids, ids: ix.ids, names: ix.names, slot: maps.Clone(ix.slot),
		q8: make([]int8, 0, len(ix.data)), scale: make([]float32, 0, len(ix.tids))}
	for r := range ix.tids {
		q.appendInt8(ix.data[r*ix.dim:(r+1)*ix.dim], 1)
	}
	return q
}

// Version is the id of the gallery transaction the index was read in (see
// Gallery.Version; 0 for an index built with NewIndex).
func (ix *Index) Version() uint64 { return ix.version }

// Dim is the embedding length.
func (ix *Index) Dim() int { return ix.dim }

// Len is the number of templates.
func (ix *Index) Len() int { return len(ix.tids) }

// Identities is the number of distinct identities.
func (ix *Index) Identities() int { return len(ix.ids) }

// Int8 reports whether the index is the compact int8 kind.
func (ix *Index) Int8() bool { return ix.int8 }

// BytesPerTemplate is the index memory per template (rows, scale, owner,
// template id), not counting the identity table and the Searchers' state.
func (ix *Index) BytesPerTemplate() int {
	if ix.int8 {
		return ix.dim + 4 + 4 + 8
	}
	return 4*ix.dim + 4 + 8
}

// Match is one identity found by a search.
type Match struct {
	// IdentityID identifies the person.
	IdentityID uint64 `json:"identity_id"`
	// Name is the person's name when the index was loaded.
	Name string `json:"name"`
	// Score is the cosine similarity of the query with the identity's best
	// template.
	Score float32 `json:"similarity"`
	// TemplateID is that best template.
	TemplateID uint64 `json:"template_id"`
}

// Searcher runs queries against one Index without allocating: it owns the
// per-identity buffers and a worker goroutine per extra core. One Searcher
// serves one goroutine at a time; use one per goroutine. Close it to stop its
// workers (a forgotten Searcher is stopped when garbage collected).
//
// Its state is 8 bytes per identity per core per query of the largest batch
// (each core keeps the best score and row of every identity over its share
// of the rows), plus the normalised queries.
type Searcher struct {
	*searcher
}

type searcher struct {
	ix     *Index
	batch  int       // queries in the current call
	q      []float32 // normalised queries, batch × dim
	q16    []int16   // quantised queries, int8 mode
	qscale []float32 // per query, int8 mode
	parts  []part    // one per chunk of rows
	top    []int32   // slots of the current top k, best first
	res    []Match   // batch × k
	out    [][]Match
	one    [1][]float32
	chunks int
	work   chan int
	done   chan struct{}
	once   sync.Once
}

// part is one core's share of a search: rows lo..hi, and for every query of
// the batch the best score and row of each identity among those rows.
type part struct {
	lo, hi int
	best   []float32 // batch × identities
	row    []int32   // batch × identities
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
	s := &searcher{ix: ix}
	s.chunks = max(1, min(runtime.GOMAXPROCS(0), n/minChunk))
	s.parts = make([]part, s.chunks)
	step := (n + s.chunks - 1) / s.chunks
	for c := range s.parts {
		s.parts[c].lo, s.parts[c].hi = min(n, c*step), min(n, (c+1)*step)
	}
	s.grow(1)
	if s.chunks > 1 {
		s.work = make(chan int, s.chunks)
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

// grow sizes the per-query buffers for b queries.
func (s *searcher) grow(b int) {
	if len(s.qscale) >= b {
		return
	}
	d, ni := s.ix.dim, len(s.ix.ids)
	s.q = make([]float32, b*d)
	s.qscale = make([]float32, b)
	if s.ix.int8 {
		s.q16 = make([]int16, b*d)
	}
	for c := range s.parts {
		s.parts[c].best = make([]float32, b*ni)
		s.parts[c].row = make([]int32, b*ni)
	}
	s.out = make([][]Match, b)
}

func (s *searcher) worker() {
	for c := range s.work {
		s.score(&s.parts[c])
		s.done <- struct{}{}
	}
}

// Close stops the Searcher's workers. It must not be used afterwards.
func (s *Searcher) Close() {
	s.stop()
}

// score scores the rows of part p against every query of the batch and
// keeps each identity's best. Each row is read from memory once and meets
// all the queries while in cache.
func (s *searcher) score(p *part) {
	ix := s.ix
	d, ni, nb := ix.dim, len(ix.ids), s.batch
	best, brow := p.best[:nb*ni], p.row[:nb*ni]
	negInf := float32(math.Inf(-1))
	for i := range best {
		best[i] = negInf
	}
	owner := ix.owner
	if ix.int8 {
		q8, sc := ix.q8, ix.scale
		for r := p.lo; r < p.hi; r++ {
			row, o := q8[r*d:(r+1)*d:(r+1)*d], int(owner[r])
			for b := range nb {
				v := float32(dotI8(row, s.q16[b*d:(b+1)*d])) * sc[r] * s.qscale[b]
				if j := b*ni + o; v > best[j] {
					best[j], brow[j] = v, int32(r)
				}
			}
		}
		return
	}
	data := ix.data
	for r := p.lo; r < p.hi; r++ {
		row, o := data[r*d:(r+1)*d:(r+1)*d], int(owner[r])
		for b := range nb {
			v := dotF32(row, s.q[b*d:(b+1)*d])
			if j := b*ni + o; v > best[j] {
				best[j], brow[j] = v, int32(r)
			}
		}
	}
}

// Search returns the k identities most similar to query, best first, each
// scored by its best template (exact cosine against every template of the
// index; approximate for an int8 index). The returned slice belongs to the
// Searcher and is overwritten by the next search. It does not allocate.
func (s *Searcher) Search(query []float32, k int) ([]Match, error) {
	s.one[0] = query
	out, err := s.SearchBatch(s.one[:], k)
	s.one[0] = nil
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// SearchBatch runs Search for several queries in one pass over the index
// (each template is read from memory once for all of them: faster per query
// than one by one). The results belong to the Searcher, as with Search. It
// allocates only when given more queries, or a larger k, than ever before
// (its state grows with the batch: see Searcher).
func (s *Searcher) SearchBatch(queries [][]float32, k int) ([][]Match, error) {
	ix := s.ix
	if len(queries) == 0 {
		return nil, nil
	}
	s.grow(len(queries))
	s.batch = len(queries)
	out := s.out[:len(queries)]
	if ix.Len() == 0 {
		for b := range out {
			out[b] = s.res[:0]
		}
		return out, nil
	}
	d := ix.dim
	for b, query := range queries {
		if len(query) != d {
			return nil, fmt.Errorf("%w: query %d has %d values, the index %d", ErrDimension, b, len(query), d)
		}
		var sq float64
		for _, x := range query {
			sq += float64(x) * float64(x)
		}
		if sq == 0 || math.IsNaN(sq) || math.IsInf(sq, 0) {
			return nil, fmt.Errorf("%w (query %d)", ErrEmptyQuery, b)
		}
		inv := float32(1 / math.Sqrt(sq))
		q := s.q[b*d : (b+1)*d]
		var m float32
		for i, x := range query {
			q[i] = x * inv
			m = max(m, float32(math.Abs(float64(q[i]))))
		}
		if ix.int8 {
			s.qscale[b] = m / 127
			q16 := s.q16[b*d : (b+1)*d]
			for i, x := range q {
				q16[i] = int16(math.Round(float64(x / s.qscale[b])))
			}
		}
	}
	if s.chunks > 1 {
		for c := 1; c < s.chunks; c++ {
			s.work <- c
		}
		s.score(&s.parts[0])
		for c := 1; c < s.chunks; c++ {
			<-s.done
		}
	} else {
		s.score(&s.parts[0])
	}
	k = max(0, min(k, len(ix.ids)))
	if need := len(queries) * k; cap(s.res) < need || cap(s.top) < k {
		s.res = make([]Match, 0, need) // grows once per larger batch or k
		s.top = make([]int32, 0, k)
	}
	res := s.res[:0]
	for b := range queries {
		start := len(res)
		res = s.rank(b, k, res)
		out[b] = res[start:len(res):len(res)]
	}
	s.res = res
	return out, nil
}

// rank merges the parts' per-identity bests for query b into part 0 and
// appends the top k identities to res.
func (s *searcher) rank(b, k int, res []Match) []Match {
	ix := s.ix
	ni := len(ix.ids)
	best, brow := s.parts[0].best[b*ni:(b+1)*ni], s.parts[0].row[b*ni:(b+1)*ni]
	for _, p := range s.parts[1:] {
		pb, pr := p.best[b*ni:(b+1)*ni], p.row[b*ni:(b+1)*ni]
		for o, v := range pb {
			if v > best[o] {
				best[o], brow[o] = v, pr[o]
			}
		}
	}
	if k == 0 {
		return res
	}
	// Top k by insertion into a sorted list of at most k slots. Equal
	// scores rank by identity id, lowest first (whatever the slot order), so
	// that a merge of shards' answers (internal/fanout) ranks as one index.
	ids := ix.ids
	ahead := func(sc float32, o int, t int32) bool { // does slot o rank before slot t?
		return sc > best[t] || sc == best[t] && ids[o] < ids[t]
	}
	top := s.top[:0]
	for o, sc := range best {
		if len(top) == k && !ahead(sc, o, top[k-1]) {
			continue
		}
		if len(top) < k {
			top = append(top, 0)
		}
		j := len(top) - 1
		for ; j > 0 && ahead(sc, o, top[j-1]); j-- {
			top[j] = top[j-1]
		}
		top[j] = int32(o)
	}
	for _, o := range top {
		res = append(res, Match{IdentityID: ix.ids[o], Name: ix.names[o], Score: best[o], TemplateID: ix.tids[brow[o]]})
	}
	return res
}
