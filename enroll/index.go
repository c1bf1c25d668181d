package enroll

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"runtime"
	"sync"
)

// Index is an in-memory matrix of templates for exact 1:N cosine search:
// L2-normalised float32 rows (or int8 rows, see Quantize) in blocks of
// 16,384 rows, with the identity of each row.
//
// An Index is a snapshot: once searched it never changes. Build one with
// Gallery.LoadIndex or NewIndex and Add; derive newer snapshots with Apply,
// which shares the rows with the old snapshot (new templates are appended
// after the rows the old one sees, removed ones are hidden by a tombstone
// bitmap of the new snapshot, renames copy one chunk of names), so that a
// Searcher of the old snapshot keeps working while the new one is
// published. When a quarter of the rows are tombstones, Apply compacts.
//
// Memory per template: float32: 4·dim + 16 bytes (dim 512: 2,064 B, so 1M
// templates take 2.06 GB), int8: dim + 20 bytes (532 B); plus, per
// Searcher, 8 bytes per identity per core (see Searcher).
type Index struct {
	dim    int
	int8   bool
	blocks []block    // rows r live in blocks[r>>blockShift]
	n      int        // rows, tombstones included
	ids    []uint64   // identity id of each slot
	names  [][]string // identity name of each slot, in chunks of nameChunk
	dead   []uint64   // tombstone bitmap over rows (words past its end: none)
	ndead  int        // tombstones
	nident int        // slots with at least one live row
	hint   int        // rows still expected by the builder (NewIndex capacity)
	lin    *lineage   // state shared by the snapshots derived from one another

	version uint64 // the gallery transaction or change sequence it reflects
}

// block holds up to blockRows consecutive rows.
type block struct {
	data  []float32 // rows·dim, float32 kind
	q8    []int8    // rows·dim, int8 kind
	scale []float32 // per row, int8 kind: row ≈ scale·q8 row
	owner []int32   // identity slot of each row
	tids  []uint64  // template id of each row
}

const (
	blockShift = 14
	blockRows  = 1 << blockShift
	nameShift  = 10
	nameChunk  = 1 << nameShift
)

// lineage is what only the newest snapshot of a chain (its tip) may change:
// the slot of each identity, and per slot its live rows and newest row, per
// row the previous row of the same slot. Searchers never read it.
type lineage struct {
	mu   sync.Mutex
	tip  *Index
	slot map[uint64]int32
	last []int32 // per slot: newest row, -1 for none
	live []int32 // per slot: rows not tombstoned
	prev []int32 // per row: the slot's previous row, -1 for none
}

// NewIndex returns an empty float32 index for embeddings of length dim, with
// room for capacity templates.
func NewIndex(dim, capacity int) *Index {
	ix := &Index{dim: dim, hint: max(0, capacity), lin: &lineage{slot: map[uint64]int32{}}}
	ix.lin.tip = ix
	return ix
}

// ErrEmptyQuery is returned for a zero, empty or non-finite query.
var ErrEmptyQuery = errors.New("enroll: query embedding is zero, empty or not finite")

// errNotTip: Add was called on a snapshot that Apply has moved past.
var errNotTip = errors.New("enroll: Add on an index that has newer snapshots (use Apply)")

// inverseNorm returns 1/‖emb‖ after checking emb's length and values.
func (ix *Index) inverseNorm(templateID uint64, emb []float32) (float32, error) {
	if len(emb) != ix.dim {
		return 0, fmt.Errorf("%w: template %d has %d values, the index %d", ErrDimension, templateID, len(emb), ix.dim)
	}
	var sq float64
	for _, x := range emb {
		sq += float64(x) * float64(x)
	}
	if sq == 0 || math.IsNaN(sq) || math.IsInf(sq, 0) {
		return 0, fmt.Errorf("%w: template %d is zero or not finite", ErrInvalid, templateID)
	}
	return float32(1 / math.Sqrt(sq)), nil
}

// Add appends one template of identity identityID (called name). The
// embedding is copied and normalised to unit length. Add builds an index
// before it is searched; to change one that is in use, use Apply.
func (ix *Index) Add(identityID uint64, name string, templateID uint64, emb []float32) error {
	if ix.lin.tip != ix {
		return errNotTip
	}
	inv, err := ix.inverseNorm(templateID, emb)
	if err != nil {
		return err
	}
	ix.appendRow(identityID, name, templateID, emb, inv)
	return nil
}

// AddLE is Add for an embedding given as little-endian float32s (the
// gallery's encoding), decoded straight into the index: no copy of the
// embedding is made.
func (ix *Index) AddLE(identityID uint64, name string, templateID uint64, le []byte) error {
	if ix.lin.tip != ix {
		return errNotTip
	}
	if len(le) != 4*ix.dim {
		return fmt.Errorf("%w: template %d has %d bytes, the index needs %d", ErrDimension, templateID, len(le), 4*ix.dim)
	}
	var sq float64
	for i := 0; i < len(le); i += 4 {
		x := float64(math.Float32frombits(binary.LittleEndian.Uint32(le[i:])))
		sq += x * x
	}
	if sq == 0 || math.IsNaN(sq) || math.IsInf(sq, 0) {
		return fmt.Errorf("%w: template %d is zero or not finite", ErrInvalid, templateID)
	}
	inv := float32(1 / math.Sqrt(sq))
	s := ix.slotFor(identityID, name)
	r, blk := ix.newRow(s, templateID)
	d := ix.dim
	if ix.int8 {
		var m float32
		for i := 0; i < len(le); i += 4 {
			m = max(m, float32(math.Abs(float64(math.Float32frombits(binary.LittleEndian.Uint32(le[i:]))*inv))))
		}
		scale := m / 127
		row := growTail(&blk.q8, d)
		for i := range row {
			row[i] = int8(math.Round(float64(math.Float32frombits(binary.LittleEndian.Uint32(le[4*i:])) * inv / scale)))
		}
		blk.scale = append(blk.scale, scale)
	} else {
		row := growTail(&blk.data, d)
		for i := range row {
			row[i] = math.Float32frombits(binary.LittleEndian.Uint32(le[4*i:])) * inv
		}
	}
	ix.linkRow(s, r)
	return nil
}

// growTail extends *p by n elements in place (its capacity was reserved by
// newRow) and returns them.
func growTail[T any](p *[]T, n int) []T {
	l := len(*p)
	*p = (*p)[:l+n]
	return (*p)[l:]
}

// appendRow adds a row (emb scaled by inv) of identity identityID.
func (ix *Index) appendRow(identityID uint64, name string, templateID uint64, emb []float32, inv float32) {
	s := ix.slotFor(identityID, name)
	r, blk := ix.newRow(s, templateID)
	if ix.int8 {
		quantize(&blk.q8, &blk.scale, emb, inv)
	} else {
		row := growTail(&blk.data, ix.dim)
		for i, x := range emb {
			row[i] = x * inv
		}
	}
	ix.linkRow(s, r)
}

// quantize appends a row quantised symmetrically: q = round(x/scale),
// scale = max|x|/127, after normalisation by inv.
func quantize(q8 *[]int8, sc *[]float32, emb []float32, inv float32) {
	var m float32
	for _, x := range emb {
		m = max(m, float32(math.Abs(float64(x*inv))))
	}
	scale := m / 127
	row := growTail(q8, len(emb))
	for i, x := range emb {
		row[i] = int8(math.Round(float64(x * inv / scale)))
	}
	*sc = append(*sc, scale)
}

// slotFor returns the slot of identityID, making one (called name) if it
// has none, and keeps the slot's name up to date.
func (ix *Index) slotFor(identityID uint64, name string) int32 {
	lin := ix.lin
	s, ok := lin.slot[identityID]
	if !ok {
		s = int32(len(ix.ids))
		lin.slot[identityID] = s
		ix.ids = append(ix.ids, identityID)
		if c := len(ix.names); c == 0 || len(ix.names[c-1]) == nameChunk {
			ix.names = append(ix.names, make([]string, 0, min(nameChunk, max(16, ix.hint/4))))
		}
		c := len(ix.names) - 1
		ix.names[c] = append(ix.names[c], name)
		lin.last = append(lin.last, -1)
		lin.live = append(lin.live, 0)
	} else if ix.name(s) != name {
		ix.setName(s, name)
	}
	return s
}

// name returns the name of slot s.
func (ix *Index) name(s int32) string { return ix.names[s>>nameShift][s&(nameChunk-1)] }

// setName renames slot s, copying its chunk of names (the chunk may be
// shared with older snapshots; the spine of ix is its own, see derive).
func (ix *Index) setName(s int32, name string) {
	c := s >> nameShift
	ch := make([]string, len(ix.names[c]), cap(ix.names[c]))
	copy(ch, ix.names[c])
	ch[s&(nameChunk-1)] = name
	ix.names[c] = ch
}

// newRow reserves row ix.n for slot s and template templateID, and returns
// it and its block with room for the row's values.
func (ix *Index) newRow(s int32, templateID uint64) (int, *block) {
	r := ix.n
	b := r >> blockShift
	if b == len(ix.blocks) {
		ix.blocks = append(ix.blocks, block{})
	}
	blk := &ix.blocks[b]
	if len(blk.owner) == cap(blk.owner) { // grow the tail block
		rows := min(blockRows, max(16, 2*cap(blk.owner), len(blk.owner)+ix.hint))
		if ix.int8 {
			blk.q8 = reserve(blk.q8, rows*ix.dim)
			blk.scale = reserve(blk.scale, rows)
		} else {
			blk.data = reserve(blk.data, rows*ix.dim)
		}
		blk.owner = reserve(blk.owner, rows)
		blk.tids = reserve(blk.tids, rows)
	}
	blk.owner = append(blk.owner, s)
	blk.tids = append(blk.tids, templateID)
	ix.n++
	ix.hint = max(0, ix.hint-1)
	return r, blk
}

// reserve returns p with capacity c (copying it when it has less).
func reserve[T any](p []T, c int) []T {
	if cap(p) >= c {
		return p
	}
	q := make([]T, len(p), c)
	copy(q, p)
	return q
}

// linkRow records row r as slot s's newest live row.
func (ix *Index) linkRow(s int32, r int) {
	lin := ix.lin
	lin.prev = append(lin.prev, lin.last[s])
	lin.last[s] = int32(r)
	if lin.live[s] == 0 {
		ix.nident++
	}
	lin.live[s]++
}

// isDead reports whether row r is a tombstone.
func (ix *Index) isDead(r int) bool {
	w := r >> 6
	return w < len(ix.dead) && ix.dead[w]&(1<<(r&63)) != 0
}

// tid returns the template id of row r.
func (ix *Index) tid(r int) uint64 { return ix.blocks[r>>blockShift].tids[r&(blockRows-1)] }

// owner returns the slot of row r.
func (ix *Index) owner(r int) int32 { return ix.blocks[r>>blockShift].owner[r&(blockRows-1)] }

// Quantize returns a compact int8 copy of a float32 index (4× smaller rows,
// each with its own scale), without its tombstones. Scores are
// approximate: see the recall@1 test.
func (ix *Index) Quantize() *Index {
	if ix.int8 {
		return ix
	}
	q := NewIndex(ix.dim, ix.Len())
	q.int8, q.version = true, ix.version
	ix.eachLive(func(r int, s int32) {
		qs := q.slotFor(ix.ids[s], ix.name(s))
		qr, blk := q.newRow(qs, ix.tid(r))
		quantize(&blk.q8, &blk.scale, ix.row(r), 1)
		q.linkRow(qs, qr)
	})
	return q
}

// row returns float32 row r.
func (ix *Index) row(r int) []float32 {
	i := (r & (blockRows - 1)) * ix.dim
	return ix.blocks[r>>blockShift].data[i : i+ix.dim : i+ix.dim]
}

// eachLive calls fn for every live row, in row order.
func (ix *Index) eachLive(fn func(r int, s int32)) {
	for r := range ix.n {
		if !ix.isDead(r) {
			fn(r, ix.owner(r))
		}
	}
}

// Version is the id of the gallery transaction, or the change sequence, the
// index reflects (see Store.Version; 0 for an index built with NewIndex).
func (ix *Index) Version() uint64 { return ix.version }

// Dim is the embedding length.
func (ix *Index) Dim() int { return ix.dim }

// Len is the number of templates.
func (ix *Index) Len() int { return ix.n - ix.ndead }

// Identities is the number of distinct identities with templates.
func (ix *Index) Identities() int { return ix.nident }

// Int8 reports whether the index is the compact int8 kind.
func (ix *Index) Int8() bool { return ix.int8 }

// BytesPerTemplate is the index memory per template (row, scale, owner,
// template id, link to the identity's previous row), not counting the
// identity table, the tombstones and the Searchers' state.
func (ix *Index) BytesPerTemplate() int {
	if ix.int8 {
		return ix.dim + 4 + 4 + 8 + 4
	}
	return 4*ix.dim + 4 + 8 + 4
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
	n := ix.n
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

// score scores the live rows of part p against every query of the batch
// and keeps each identity's best.
func (s *searcher) score(p *part) {
	ix := s.ix
	ni, nb := len(ix.ids), s.batch
	best := p.best[:nb*ni]
	negInf := float32(math.Inf(-1))
	for i := range best {
		best[i] = negInf
	}
	if ix.ndead == 0 {
		s.scoreRows(p, p.lo, p.hi)
		return
	}
	// Runs of live rows between the tombstones.
	for r := p.lo; r < p.hi; {
		end := ix.nextDead(r, p.hi)
		if end > r {
			s.scoreRows(p, r, end)
		}
		r = ix.nextLive(end, p.hi)
	}
}

// nextDead returns the first tombstone in rows r..hi, or hi.
func (ix *Index) nextDead(r, hi int) int {
	for r < hi {
		w := r >> 6
		if w >= len(ix.dead) {
			return hi
		}
		if m := ix.dead[w] >> (r & 63); m != 0 {
			return min(hi, r+bits.TrailingZeros64(m))
		}
		r = (w + 1) << 6
	}
	return hi
}

// nextLive returns the first live row in rows r..hi, or hi.
func (ix *Index) nextLive(r, hi int) int {
	for r < hi {
		w := r >> 6
		if w >= len(ix.dead) {
			return r
		}
		if m := ^ix.dead[w] >> (r & 63); m != 0 {
			return min(hi, r+bits.TrailingZeros64(m))
		}
		r = (w + 1) << 6
	}
	return hi
}

// scoreRows scores rows lo..hi (all live), block by block. Each row is read
// from memory once and meets all the queries while in cache.
func (s *searcher) scoreRows(p *part, lo, hi int) {
	ix := s.ix
	d, ni, nb := ix.dim, len(ix.ids), s.batch
	best, brow := p.best[:nb*ni], p.row[:nb*ni]
	for lo < hi {
		bi := lo >> blockShift
		base := bi << blockShift
		blk := &ix.blocks[bi]
		a, e := lo-base, min(hi, base+blockRows)-base
		lo = base + e
		owner := blk.owner
		if ix.int8 {
			q8, sc := blk.q8, blk.scale
			for r := a; r < e; r++ {
				row, o := q8[r*d:(r+1)*d:(r+1)*d], int(owner[r])
				for b := range nb {
					v := float32(dotI8(row, s.q16[b*d:(b+1)*d])) * sc[r] * s.qscale[b]
					if j := b*ni + o; v > best[j] {
						best[j], brow[j] = v, int32(base+r)
					}
				}
			}
			continue
		}
		data := blk.data
		for r := a; r < e; r++ {
			row, o := data[r*d:(r+1)*d:(r+1)*d], int(owner[r])
			for b := range nb {
				v := dotF32(row, s.q[b*d:(b+1)*d])
				if j := b*ni + o; v > best[j] {
					best[j], brow[j] = v, int32(base+r)
				}
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
	k = max(0, min(k, ix.nident))
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
// appends the top k identities to res (identities without a live row
// keep -Inf and are skipped).
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
	// that a merge of shards' answers (internal/fanout) ranks as one index,
	// and an index changed by Apply as one built afresh.
	ids := ix.ids
	ahead := func(sc float32, o int, t int32) bool { // does slot o rank before slot t?
		return sc > best[t] || sc == best[t] && ids[o] < ids[t]
	}
	negInf := float32(math.Inf(-1))
	top := s.top[:0]
	for o, sc := range best {
		if sc == negInf || len(top) == k && !ahead(sc, o, top[k-1]) {
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
		res = append(res, Match{IdentityID: ix.ids[o], Name: ix.name(o), Score: best[o], TemplateID: ix.tid(int(brow[o]))})
	}
	return res
}
