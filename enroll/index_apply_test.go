package enroll

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// model is the state an index should reflect: identity → name and
// templates (template id → embedding).
type model struct {
	names map[uint64]string
	tmpl  map[uint64]map[uint64][]float32
}

func newModel() *model {
	return &model{names: map[uint64]string{}, tmpl: map[uint64]map[uint64][]float32{}}
}

func (m *model) clone() *model {
	c := newModel()
	for id, n := range m.names {
		c.names[id] = n
	}
	for id, ts := range m.tmpl {
		c.tmpl[id] = map[uint64][]float32{}
		for tid, e := range ts {
			c.tmpl[id][tid] = e
		}
	}
	return c
}

// apply mirrors Index.Apply's semantics on the model.
func (m *model) apply(cs []Change) {
	for _, c := range cs {
		switch c.Kind {
		case AddTemplate:
			m.names[c.IdentityID] = c.Name
			if m.tmpl[c.IdentityID] == nil {
				m.tmpl[c.IdentityID] = map[uint64][]float32{}
			}
			if _, ok := m.tmpl[c.IdentityID][c.TemplateID]; !ok {
				m.tmpl[c.IdentityID][c.TemplateID] = c.Embedding
			}
		case RemoveTemplate:
			delete(m.tmpl[c.IdentityID], c.TemplateID)
		case RemoveIdentity:
			delete(m.tmpl, c.IdentityID)
		case RenameIdentity:
			if _, ok := m.names[c.IdentityID]; ok {
				m.names[c.IdentityID] = c.Name
			}
		}
	}
}

// fresh builds an index of the model from nothing (templates by id).
func (m *model) fresh(t *testing.T, dim int, q8 bool) *Index {
	ix := NewIndex(dim, 0)
	var tids [][2]uint64
	for id, ts := range m.tmpl {
		for tid := range ts {
			tids = append(tids, [2]uint64{tid, id})
		}
	}
	slices.SortFunc(tids, func(a, b [2]uint64) int { return int(a[0]) - int(b[0]) })
	for _, p := range tids {
		if err := ix.Add(p[1], m.names[p[1]], p[0], m.tmpl[p[1]][p[0]]); err != nil {
			t.Fatal(err)
		}
	}
	if q8 {
		ix = ix.Quantize()
	}
	return ix
}

// dump is an index's live content, canonical: one line per template, by
// template id, with its identity, name and exact row values.
func dump(ix *Index) []string {
	var out []string
	ix.eachLive(func(r int, s int32) {
		b := fmt.Appendf(nil, "%020d %d %q", ix.tid(r), ix.ids[s], ix.name(s))
		if ix.int8 {
			blk := &ix.blocks[r>>blockShift]
			i := r & (blockRows - 1)
			for _, x := range blk.q8[i*ix.dim : (i+1)*ix.dim] {
				b = strconv.AppendInt(append(b, ' '), int64(x), 10)
			}
			b = strconv.AppendUint(append(b, ' '), uint64(math.Float32bits(blk.scale[i])), 16)
		} else {
			for _, x := range ix.row(r) {
				b = strconv.AppendUint(append(b, ' '), uint64(math.Float32bits(x)), 16)
			}
		}
		out = append(out, string(b))
	})
	slices.Sort(out)
	return out
}

// sameIndex checks that got and want hold the same templates and answer
// the same queries identically.
func sameIndex(t *testing.T, what string, got, want *Index, queries [][]float32) {
	t.Helper()
	if got.Len() != want.Len() || got.Identities() != want.Identities() {
		t.Fatalf("%s: %d templates of %d identities, fresh %d of %d", what, got.Len(), got.Identities(), want.Len(), want.Identities())
	}
	if g, w := dump(got), dump(want); !slices.Equal(g, w) {
		i := 0
		for i < min(len(g), len(w)) && g[i] == w[i] {
			i++
		}
		t.Fatalf("%s: content differs at line %d of %d/%d:\napplied %.200s\nfresh   %.200s", what, i, len(g), len(w), g[min(i, len(g)-1)], w[min(i, len(w)-1)])
	}
	gs, ws := got.NewSearcher(), want.NewSearcher()
	defer gs.Close()
	defer ws.Close()
	ks := []int{1, 3, 50}
	if want.Identities() < 2000 {
		ks = append(ks, want.Identities()+2) // all of them
	}
	for _, k := range ks {
		gm, err := gs.SearchBatch(queries, k)
		if err != nil {
			t.Fatal(err)
		}
		wm, err := ws.SearchBatch(queries, k)
		if err != nil {
			t.Fatal(err)
		}
		for q := range queries {
			if !slices.Equal(gm[q], wm[q]) {
				i := 0
				for i < min(len(gm[q]), len(wm[q])) && gm[q][i] == wm[q][i] {
					i++
				}
				t.Fatalf("%s: query %d k=%d: %d/%d results, rank %d differs: applied %+v, fresh %+v", what, q, k, len(gm[q]), len(wm[q]), i, gm[q][min(i, len(gm[q])-1)], wm[q][min(i, len(wm[q])-1)])
			}
		}
	}
}

// randomChanges makes a batch of changes against model m: adds to new and
// existing identities, re-adds, removals (of present and absent
// templates), identity removals and renames.
func randomChanges(rng *rand.Rand, m *model, dim int, nextID, nextTID *uint64, n int) []Change {
	ids := make([]uint64, 0, len(m.names))
	for id := range m.names {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	pick := func() uint64 {
		if len(ids) == 0 || rng.IntN(4) == 0 {
			*nextID++
			ids = append(ids, *nextID)
			return *nextID
		}
		return ids[rng.IntN(len(ids))]
	}
	var cs []Change
	for range n {
		switch p := rng.IntN(100); {
		case p < 55:
			id := pick()
			*nextTID++
			name := m.names[id]
			if name == "" {
				name = fmt.Sprint("id", id)
			}
			cs = append(cs, Change{Kind: AddTemplate, IdentityID: id, TemplateID: *nextTID, Name: name, Embedding: randEmb(rng, dim)})
			if rng.IntN(10) == 0 { // the same template again: applied once
				cs = append(cs, cs[len(cs)-1])
			}
		case p < 80:
			id := pick()
			tid := uint64(rng.IntN(int(*nextTID) + 2))
			for t := range m.tmpl[id] {
				if rng.IntN(2) == 0 {
					tid = t
					break
				}
			}
			cs = append(cs, Change{Kind: RemoveTemplate, IdentityID: id, TemplateID: tid})
		case p < 88:
			cs = append(cs, Change{Kind: RemoveIdentity, IdentityID: pick()})
		default:
			cs = append(cs, Change{Kind: RenameIdentity, IdentityID: pick(), Name: fmt.Sprintf("n%d-%d", rng.IntN(1000), len(cs))})
		}
	}
	return cs
}

// TestApplyEqualsFresh: every sequence of Apply calls gives the index a
// fresh build of the final state gives (same templates, names, rows, same
// answers), for both kinds, through compactions, while every older
// snapshot keeps the state it had.
func TestApplyEqualsFresh(t *testing.T) {
	saved := compactMin
	defer func() { compactMin = saved }()
	for _, tc := range []struct {
		dim, rounds, batch, start int
		q8                        bool
		compact                   int
	}{
		{dim: 37, rounds: 400, batch: 6, compact: 8},
		{dim: 37, rounds: 400, batch: 6, compact: 8, q8: true},
		{dim: 37, rounds: 150, batch: 40, compact: 1 << 30}, // never compacts: tombstones pile up
		// Many rows over several blocks and both cores' parts.
		{dim: 8, rounds: 60, batch: 400, start: 40_000, compact: 2000}, // 8-d: many equal scores
		{dim: 16, rounds: 40, batch: 400, start: 40_000, compact: 2000, q8: true},
	} {
		t.Run(fmt.Sprintf("dim%d/q8=%v/start%d/compact%d", tc.dim, tc.q8, tc.start, tc.compact), func(t *testing.T) {
			compactMin = tc.compact
			if raceEnabled && tc.start > 0 {
				tc.start, tc.rounds, tc.compact = 12_000, 20, 600
				compactMin = tc.compact
			}
			rng := rand.New(rand.NewPCG(uint64(tc.dim), uint64(tc.rounds)))
			m := newModel()
			var nextID, nextTID uint64
			ix := NewIndex(tc.dim, 0)
			if tc.q8 {
				ix = ix.Quantize()
			}
			if tc.start > 0 {
				var cs []Change
				for range tc.start {
					nextTID++
					id := uint64(rng.IntN(tc.start/4) + 1)
					cs = append(cs, Change{Kind: AddTemplate, IdentityID: id, TemplateID: nextTID, Name: fmt.Sprint("id", id), Embedding: randEmb(rng, tc.dim)})
				}
				nextID = uint64(tc.start / 4)
				var err error
				if ix, err = ix.Apply(1, cs); err != nil {
					t.Fatal(err)
				}
				m.apply(cs)
			}
			type kept struct {
				ix   *Index
				want []string
			}
			var old []kept
			compactions := 0
			for round := range tc.rounds {
				cs := randomChanges(rng, m, tc.dim, &nextID, &nextTID, 1+rng.IntN(tc.batch))
				if tc.start > 0 && round == tc.rounds/2 { // a third of the identities go at once
					for id := range m.tmpl {
						if rng.IntN(3) == 0 {
							cs = append(cs, Change{Kind: RemoveIdentity, IdentityID: id})
						}
					}
				}
				nx, err := ix.Apply(uint64(round+2), cs)
				if err != nil {
					t.Fatal(err)
				}
				if nx.lin != ix.lin {
					compactions++
				}
				ix = nx
				m.apply(cs)
				if ix.Version() != uint64(round+2) {
					t.Fatalf("version %d after round %d", ix.Version(), round)
				}
				if round%max(1, tc.rounds/40, tc.start/4000) == 0 || round == tc.rounds-1 {
					queries := make([][]float32, 4)
					for i := range queries {
						queries[i] = randEmb(rng, tc.dim)
					}
					sameIndex(t, fmt.Sprintf("round %d", round), ix, m.fresh(t, tc.dim, tc.q8), queries)
					old = append(old, kept{ix, dump(ix)})
				}
			}
			for i, k := range old {
				if got := dump(k.ix); !slices.Equal(got, k.want) {
					t.Fatalf("old snapshot %d (version %d) changed after later applies", i, k.ix.Version())
				}
			}
			t.Logf("%d templates of %d identities at the end, %d tombstones, %d compactions", ix.Len(), ix.Identities(), ix.ndead, compactions)
			if tc.compact < 1<<20 && compactions == 0 {
				t.Error("no compaction happened")
			}
			if tc.compact >= 1<<20 && ix.ndead == 0 {
				t.Error("no tombstones")
			}
		})
	}
}

// TestApplyOldSnapshot: Apply on a snapshot that has a newer one forks
// (both chains stay right), Add on it is refused, and a bad embedding
// changes nothing.
func TestApplyOldSnapshot(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	base, err := NewIndex(4, 0).Apply(1, []Change{{Kind: AddTemplate, IdentityID: 1, TemplateID: 1, Name: "a", Embedding: []float32{1, 0, 0, 0}}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := base.Apply(2, []Change{{Kind: AddTemplate, IdentityID: 2, TemplateID: 2, Name: "b", Embedding: []float32{0, 1, 0, 0}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := base.Add(3, "c", 3, []float32{0, 0, 1, 0}); err != errNotTip {
		t.Fatalf("Add on an old snapshot: %v", err)
	}
	b, err := base.Apply(3, []Change{{Kind: AddTemplate, IdentityID: 3, TemplateID: 3, Name: "c", Embedding: []float32{0, 0, 1, 0}}, {Kind: RenameIdentity, IdentityID: 1, Name: "A"}})
	if err != nil {
		t.Fatal(err)
	}
	a2, err := a.Apply(4, []Change{{Kind: RemoveIdentity, IdentityID: 1}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ix   *Index
		want []string
	}{
		{base, []string{"1 a"}}, {a, []string{"1 a", "2 b"}}, {b, []string{"1 A", "3 c"}}, {a2, []string{"2 b"}},
	} {
		var got []string
		c.ix.eachLive(func(r int, s int32) { got = append(got, fmt.Sprint(c.ix.tid(r), " ", c.ix.name(s))) })
		if !slices.Equal(got, c.want) {
			t.Errorf("version %d: %v, want %v", c.ix.Version(), got, c.want)
		}
	}
	// A bad embedding fails the call and leaves the chain as it was.
	if _, err := a2.Apply(5, []Change{{Kind: AddTemplate, IdentityID: 9, TemplateID: 9, Name: "z", Embedding: []float32{1, 0, 0, 0}},
		{Kind: AddTemplate, IdentityID: 9, TemplateID: 10, Name: "z", Embedding: []float32{float32(math.NaN()), 0, 0, 0}}}); err == nil {
		t.Fatal("NaN embedding applied")
	}
	if _, err := a2.Apply(5, []Change{{Kind: AddTemplate, IdentityID: 9, TemplateID: 9, Embedding: []float32{1, 0}}}); err == nil {
		t.Fatal("short embedding applied")
	}
	if _, err := a2.Apply(5, []Change{{Kind: 99}}); err == nil {
		t.Fatal("unknown kind applied")
	}
	a3, err := a2.Apply(5, []Change{{Kind: AddTemplate, IdentityID: 4, TemplateID: 4, Name: "d", Embedding: randEmb(rng, 4)}})
	if err != nil || a3.Len() != 2 || a3.Identities() != 2 || a2.Len() != 1 {
		t.Fatalf("after a refused Apply: %d/%d templates, %v", a3.Len(), a2.Len(), err)
	}
}

// TestApplySearchZeroAlloc: a snapshot with tombstones is searched without
// allocating.
func TestApplySearchZeroAlloc(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	for _, q8 := range []bool{false, true} {
		ix, _ := synthetic(rng, 64, 3000, 3, 0.5)
		if q8 {
			ix = ix.Quantize()
		}
		var cs []Change
		for id := uint64(1); id <= 3000; id += 7 {
			cs = append(cs, Change{Kind: RemoveIdentity, IdentityID: id}, Change{Kind: RemoveTemplate, IdentityID: id + 1, TemplateID: id*3 + 1})
		}
		ix, err := ix.Apply(1, cs)
		if err != nil || ix.ndead == 0 {
			t.Fatal(err, ix.ndead)
		}
		s := ix.NewSearcher()
		query := randEmb(rng, 64)
		if _, err := s.Search(query, 10); err != nil {
			t.Fatal(err)
		}
		if a := testing.AllocsPerRun(20, func() { s.Search(query, 10) }); a != 0 {
			t.Errorf("int8=%v: %v allocations per query", q8, a)
		}
		s.Close()
	}
}

// TestApplyConcurrentReaders: readers search the published snapshot (and
// keep searching the one they hold) while a writer applies changes and
// publishes new snapshots. Every answer must be the one of the snapshot
// searched: its templates are found with similarity 1, removed ones are
// never found, and a held snapshot answers the same every time. Run under
// -race.
func TestApplyConcurrentReaders(t *testing.T) {
	const dim, rounds, readers = 32, 300, 4
	saved := compactMin
	compactMin = 64
	defer func() { compactMin = saved }()
	rng := rand.New(rand.NewPCG(21, 22))
	type pub struct {
		ix *Index
		m  *model
	}
	m := newModel()
	var start []Change // 1,500 identities × 3: 4,500 rows, both cores search
	for i := range 4500 {
		id := uint64(i/3 + 1)
		start = append(start, Change{Kind: AddTemplate, IdentityID: id, TemplateID: uint64(i + 1), Name: fmt.Sprint("id", id), Embedding: unit(randEmb(rng, dim))})
	}
	ix, err := NewIndex(dim, 0).Apply(0, start)
	if err != nil {
		t.Fatal(err)
	}
	m.apply(start)
	var cur atomic.Pointer[pub]
	cur.Store(&pub{ix, m.clone()})
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for g := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 99))
			for !stop.Load() {
				p := cur.Load()
				s := p.ix.NewSearcher()
				// A template of this snapshot, and its answer, several times
				// while newer snapshots appear.
				var first []Match
				var q0 []float32
				for i := range 5 {
					var id, tid uint64
					var emb []float32
					for id0, ts := range p.m.tmpl {
						for tid0, e := range ts {
							id, tid, emb = id0, tid0, e
							break
						}
						if emb != nil && rng.IntN(3) == 0 {
							break
						}
					}
					if emb == nil {
						break
					}
					got, err := s.Search(emb, 3)
					if err != nil {
						errs <- err
						return
					}
					if got[0].IdentityID != id || got[0].Name != p.m.names[id] || math.Abs(float64(got[0].Score)-1) > 1e-5 {
						errs <- fmt.Errorf("version %d: template %d of %d (%q): top %+v", p.ix.Version(), tid, id, p.m.names[id], got[0])
						return
					}
					for _, g := range got {
						if _, ok := p.m.tmpl[g.IdentityID][g.TemplateID]; !ok {
							errs <- fmt.Errorf("version %d: found template %d of %d, not in the snapshot", p.ix.Version(), g.TemplateID, g.IdentityID)
							return
						}
					}
					if i == 0 {
						first, q0 = append([]Match(nil), got...), emb
					}
				}
				if q0 != nil { // the held snapshot answers as it did
					if again, err := s.Search(q0, 3); err != nil || !slices.Equal(again, first) {
						errs <- fmt.Errorf("version %d: the same query gave %+v, then %+v (%v)", p.ix.Version(), first, again, err)
						return
					}
				}
				s.Close()
			}
		}()
	}
	var nextID, nextTID uint64 = 2000, 10_000
	for round := range rounds {
		cs := randomChanges(rng, m, dim, &nextID, &nextTID, 1+rng.IntN(30))
		for i := range cs { // keep the embeddings unit-length for the score check
			if cs[i].Kind == AddTemplate {
				cs[i].Embedding = unit(cs[i].Embedding)
			}
		}
		nx, err := ix.Apply(uint64(round+1), cs)
		if err != nil {
			t.Fatal(err)
		}
		ix = nx
		m.apply(cs)
		cur.Store(&pub{ix, m.clone()})
		select {
		case err := <-errs:
			t.Fatal(err)
		default:
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	sameIndex(t, "end", ix, m.fresh(t, dim, false), [][]float32{randEmb(rng, dim)})
}

func unit(e []float32) []float32 {
	var sq float64
	for _, x := range e {
		sq += float64(x) * float64(x)
	}
	inv := float32(1 / math.Sqrt(sq))
	out := make([]float32, len(e))
	for i, x := range e {
		out[i] = x * inv
	}
	return out
}

// BenchmarkApply: the cost of one small change to a 1M-template index of
// 512-d (what a follower pays per change), by kind.
func BenchmarkApply(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 5))
	base := benchIndex(1_000_000, false).Compact() // its own chain
	emb := randEmb(rng, 512)
	for _, kind := range []ChangeKind{AddTemplate, RemoveTemplate, RenameIdentity, RemoveIdentity} {
		b.Run(kind.String(), func(b *testing.B) {
			ix := base.Compact() // a chain of its own (Apply on base, no longer the tip, would fork it)
			tid := uint64(2_000_000)
			for i := 0; b.Loop(); i++ {
				id := uint64(i%200_000 + 1)
				c := Change{Kind: kind, IdentityID: id, TemplateID: uint64(4*(id-1) + 1 + uint64(i/200_000)), Name: fmt.Sprint("r", i), Embedding: emb}
				if kind == AddTemplate {
					tid++
					c.TemplateID = tid
				}
				nx, err := ix.Apply(uint64(i), []Change{c})
				if err != nil {
					b.Fatal(err)
				}
				ix = nx
			}
		})
	}
}
