package enroll

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
)

// kernels runs f with the assembly kernels (when the CPU has them) and with
// the pure-Go fallback.
func kernels(t *testing.T, f func(t *testing.T)) {
	saved := useAsm
	defer func() { useAsm = saved }()
	for _, asm := range []bool{false, true} {
		if asm && !haveAsm() {
			t.Log("no AVX2+FMA: assembly kernels not tested")
			continue
		}
		useAsm = asm
		t.Run(fmt.Sprintf("asm=%v", asm), f)
	}
}

func TestDotKernels(t *testing.T) {
	kernels(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		for n := range 140 {
			a, b := randEmb(rng, n), randEmb(rng, n+3) // b may be longer
			var want float64
			for i := range a {
				want += float64(a[i]) * float64(b[i])
			}
			if got := dotF32(a, b); math.Abs(float64(got)-want) > 1e-4*(1+math.Sqrt(float64(n))) {
				t.Errorf("dotF32 n=%d: %v, want %v", n, got, want)
			}
			qa, qb := make([]int8, n), make([]int16, n+3)
			var wantI int64
			for i := range qa {
				qa[i] = int8(rng.IntN(255) - 127)
				qb[i] = int16(rng.IntN(255) - 127)
				wantI += int64(qa[i]) * int64(qb[i])
			}
			if got := dotI8(qa, qb); int64(got) != wantI {
				t.Errorf("dotI8 n=%d: %v, want %v", n, got, wantI)
			}
		}
		// Extremes: no overflow at 512 × 127·127.
		qa, qb := make([]int8, 512), make([]int16, 512)
		for i := range qa {
			qa[i], qb[i] = -127, -127
		}
		if got := dotI8(qa, qb); got != 512*127*127 {
			t.Errorf("dotI8 extreme: %v", got)
		}
	})
}

// synthetic builds an index of ids identities with per templates each:
// identity centres plus noise, so queries near a centre have a true answer.
func synthetic(rng *rand.Rand, dim, ids, per int, noise float64) (*Index, [][]float32) {
	ix := NewIndex(dim, ids*per)
	centres := make([][]float32, ids)
	for i := range ids {
		centres[i] = randEmb(rng, dim)
		for j := range per {
			e := make([]float32, dim)
			for d := range e {
				e[d] = centres[i][d] + float32(noise*rng.NormFloat64())
			}
			if err := ix.Add(uint64(i+1), fmt.Sprint("id", i), uint64(i*per+j+1), e); err != nil {
				panic(err)
			}
		}
	}
	return ix, centres
}

func cos64(a, b []float32) float64 {
	var d, na, nb float64
	for i := range a {
		d += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	return d / math.Sqrt(na*nb)
}

func TestSearchBruteForce(t *testing.T) {
	kernels(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(5, 6))
		const dim = 37 // odd: exercises the kernel tails
		// 3000 identities × 3 templates: above minChunk, so both cores work.
		ix, _ := synthetic(rng, dim, 3000, 3, 1)
		raw := make([][]float32, ix.Len()) // the rows, for brute force
		for r := range raw {
			raw[r] = ix.row(r)
		}
		s := ix.NewSearcher()
		defer s.Close()
		for q := range 10 {
			query := randEmb(rng, dim)
			if q%2 == 0 {
				copy(query, raw[rng.IntN(len(raw))])
				query[0] += 0.3
			}
			// Brute force: best template per identity, sorted.
			best := map[uint64]float64{}
			bestT := map[uint64]uint64{}
			for r, row := range raw {
				id := ix.ids[ix.owner(r)]
				if c := cos64(row, query); c > best[id] || bestT[id] == 0 {
					best[id], bestT[id] = c, ix.tid(r)
				}
			}
			type m struct {
				id uint64
				c  float64
			}
			var all []m
			for id, c := range best {
				all = append(all, m{id, c})
			}
			slices.SortFunc(all, func(a, b m) int {
				switch {
				case a.c > b.c:
					return -1
				case a.c < b.c:
					return 1
				}
				return 0
			})
			for _, k := range []int{1, 5, 20} {
				got, err := s.Search(query, k)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != k {
					t.Fatalf("k=%d: %d results", k, len(got))
				}
				seen := map[uint64]bool{}
				for i, g := range got {
					if seen[g.IdentityID] {
						t.Fatalf("identity %d twice", g.IdentityID)
					}
					seen[g.IdentityID] = true
					if math.Abs(float64(g.Score)-all[i].c) > 1e-5 || math.Abs(best[g.IdentityID]-float64(g.Score)) > 1e-5 {
						t.Fatalf("k=%d rank %d: %+v, brute %+v", k, i, g, all[i])
					}
					if g.Name != fmt.Sprint("id", g.IdentityID-1) {
						t.Fatalf("name %q for identity %d", g.Name, g.IdentityID)
					}
					if i > 0 && got[i-1].Score < g.Score {
						t.Fatal("results not sorted")
					}
				}
				if math.Abs(best[got[0].IdentityID]-all[0].c) > 1e-6 {
					t.Fatalf("top-1 %+v, brute %+v", got[0], all[0])
				}
			}
		}
		// k larger than the number of identities, and bad queries.
		if got, err := s.Search(randEmb(rng, dim), 1e6); err != nil || len(got) != 3000 {
			t.Errorf("k > identities: %d results, %v", len(got), err)
		}
		if _, err := s.Search(make([]float32, dim), 1); err == nil {
			t.Error("zero query accepted")
		}
		if _, err := s.Search(make([]float32, dim+1), 1); err == nil {
			t.Error("wrong length accepted")
		}
	})
}

func TestSearchBatch(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, q8 := range []bool{false, true} {
		ix, _ := synthetic(rng, 64, 3000, 3, 1)
		if q8 {
			ix = ix.Quantize()
		}
		s := ix.NewSearcher()
		one := ix.NewSearcher()
		queries := make([][]float32, 7)
		for i := range queries {
			queries[i] = randEmb(rng, 64)
		}
		for _, k := range []int{1, 4} {
			got, err := s.SearchBatch(queries, k)
			if err != nil || len(got) != len(queries) {
				t.Fatalf("SearchBatch: %d results, %v", len(got), err)
			}
			for i, q := range queries {
				want, _ := one.Search(q, k)
				if len(got[i]) != k || !slices.Equal(got[i], want) {
					t.Errorf("int8=%v k=%d query %d: batch %+v, alone %+v", q8, k, i, got[i], want)
				}
			}
		}
		queries[3] = make([]float32, 64)
		if _, err := s.SearchBatch(queries, 1); err == nil {
			t.Error("zero query in a batch accepted")
		}
		queries[3] = randEmb(rng, 64)
		if _, err := s.SearchBatch(queries, 2); err != nil {
			t.Fatal(err)
		}
		if a := testing.AllocsPerRun(5, func() { s.SearchBatch(queries, 2) }); a != 0 {
			t.Errorf("int8=%v: SearchBatch allocates %v times", q8, a)
		}
		s.Close()
		one.Close()
	}
}

func TestQuantizeIndependent(t *testing.T) {
	ix := NewIndex(2, 4)
	ix.Add(1, "a", 1, []float32{1, 0})
	q := ix.Quantize()
	ix.Add(2, "b", 2, []float32{0, 1})
	q.Add(3, "c", 3, []float32{-1, 0})
	if ix.Len() != 2 || q.Len() != 2 || ix.Identities() != 2 || q.Identities() != 2 {
		t.Fatalf("float %d/%d, int8 %d/%d", ix.Len(), ix.Identities(), q.Len(), q.Identities())
	}
	if ix.name(1) != "b" || q.name(1) != "c" || ix.ids[ix.owner(1)] != 2 || q.ids[q.owner(1)] != 3 {
		t.Errorf("indexes share state: %v %v / %v %v", ix.names, ix.ids, q.names, q.ids)
	}
}

func TestSearchZeroAlloc(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, q8 := range []bool{false, true} {
		ix, _ := synthetic(rng, 512, 5000, 2, 0.5)
		if q8 {
			ix = ix.Quantize()
		}
		s := ix.NewSearcher()
		query := randEmb(rng, 512)
		if _, err := s.Search(query, 10); err != nil { // sizes the result buffer
			t.Fatal(err)
		}
		allocs := testing.AllocsPerRun(20, func() {
			if _, err := s.Search(query, 10); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("int8=%v: %v allocations per query, want 0", q8, allocs)
		}
		s.Close()
	}
}

// TestInt8Recall measures the compact index's recall@1 against exact search:
// the share of queries whose top identity is the same.
func TestInt8Recall(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	// 2000 identities × 5 templates of 512-d; queries are fresh noisy views of
	// an identity (template–centre noise like photos of one person: same-person
	// cosines around 0.6–0.8).
	ix, centres := synthetic(rng, 512, 2000, 5, 1)
	q := ix.Quantize()
	if q.BytesPerTemplate()*3 > ix.BytesPerTemplate() {
		t.Errorf("int8 %d B/template vs float32 %d", q.BytesPerTemplate(), ix.BytesPerTemplate())
	}
	exact, compact := ix.NewSearcher(), q.NewSearcher()
	defer exact.Close()
	defer compact.Close()
	agree, correct, maxErr := 0, 0, 0.0
	hard, hardAgree := 0, 0
	const n = 500
	for i := range n {
		c := centres[rng.IntN(len(centres))]
		query := make([]float32, 512)
		for d := range query {
			query[d] = c[d] + float32(rng.NormFloat64())
		}
		e, _ := exact.Search(query, 2)
		a, _ := compact.Search(query, 1)
		if e[0].IdentityID == a[0].IdentityID {
			agree++
		}
		if e[0].Name == a[0].Name && e[0].Score > 0.3 {
			correct++
		}
		maxErr = math.Max(maxErr, math.Abs(float64(e[0].Score-a[0].Score)))
		// Hard queries: random directions, where top-1 is decided by tiny gaps.
		r := randEmb(rng, 512)
		e, _ = exact.Search(r, 2)
		a, _ = compact.Search(r, 1)
		hard++
		if e[0].IdentityID == a[0].IdentityID {
			hardAgree++
		}
		_ = i
	}
	recall := float64(agree) / n
	t.Logf("int8 recall@1 vs exact: %.3f on noisy views (max top-1 score error %.4f), %.3f on random queries; %d vs %d bytes/template",
		recall, maxErr, float64(hardAgree)/float64(hard), q.BytesPerTemplate(), ix.BytesPerTemplate())
	if recall < 0.99 {
		t.Errorf("recall@1 %.3f < 0.99", recall)
	}
	if maxErr > 0.01 {
		t.Errorf("top-1 score error %.4f > 0.01", maxErr)
	}
}

func TestGallerySearch(t *testing.T) {
	g := openTest(t, filepath.Join(t.TempDir(), "g.db"), Options{Model: testModel})
	// Empty gallery: no match, no error.
	if m, err := g.Search([]float32{1, 0, 0}, 3); err != nil || len(m) != 0 {
		t.Fatalf("empty gallery: %v %v", m, err)
	}
	if _, _, err := g.Enroll("x", nil, []Template{{Embedding: []float32{1, 0, 0}}, {Embedding: []float32{0, 1, 0}}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := g.Enroll("y", nil, []Template{{Embedding: []float32{0, 0, 2}}}); err != nil {
		t.Fatal(err)
	}
	m, err := g.Search([]float32{0, 3, 1}, 5)
	if err != nil || len(m) != 2 || m[0].Name != "x" || m[1].Name != "y" || math.Abs(float64(m[0].Score)-3/math.Sqrt(10)) > 1e-6 {
		t.Fatalf("Search: %+v %v", m, err)
	}
	// The cached index follows writes.
	if _, _, err := g.Enroll("z", nil, []Template{{Embedding: []float32{0, 3, 1}}}); err != nil {
		t.Fatal(err)
	}
	if m, _ := g.Search([]float32{0, 3, 1}, 1); len(m) != 1 || m[0].Name != "z" || math.Abs(float64(m[0].Score)-1) > 1e-6 {
		t.Fatalf("after enroll: %+v", m)
	}
}

// benchIndexes caches the synthetic benchmark indexes across sub-benchmarks.
var benchIndexes = map[[2]int]*Index{}

func benchIndex(n int, q8 bool) *Index {
	key := [2]int{n, 0}
	if q8 {
		key[1] = 1
	}
	if ix := benchIndexes[key]; ix != nil {
		return ix
	}
	if q8 {
		ix := benchIndex(n, false).Quantize()
		benchIndexes[key] = ix
		return ix
	}
	rng := rand.New(rand.NewPCG(11, 12))
	ix := NewIndex(512, n)
	e := make([]float32, 512)
	for i := range n {
		for d := range e {
			e[d] = rng.Float32()*2 - 1
		}
		if err := ix.Add(uint64(i/4+1), "", uint64(i+1), e); err != nil { // 4 templates per identity
			panic(err)
		}
	}
	benchIndexes[key] = ix
	return ix
}

func benchSearch(b *testing.B, n int, q8 bool, batch int) {
	rng := rand.New(rand.NewPCG(11, 13))
	ix := benchIndex(n, q8)
	s := ix.NewSearcher()
	defer s.Close()
	queries := make([][]float32, batch)
	for i := range queries {
		queries[i] = randEmb(rng, 512)
	}
	b.ResetTimer()
	for b.Loop() {
		if batch == 1 {
			if _, err := s.Search(queries[0], 5); err != nil {
				b.Fatal(err)
			}
		} else if _, err := s.SearchBatch(queries, 5); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch)/1e6, "ms/query")
	// Index bytes per template plus the Searcher's state (8 B per identity per
	// core per query of the batch) spread over the templates.
	state := 8 * ix.Identities() * len(s.parts) * batch
	b.ReportMetric(float64(ix.BytesPerTemplate())+float64(state)/float64(n), "B/template")
}

// BenchmarkSearch: exact float32 and compact int8 search, with the assembly
// kernels and (suffix -go) the pure-Go fallback, at 10k, 100k and 1M
// templates of 512-d, 4 templates per identity, top 5.
func BenchmarkSearch(b *testing.B) {
	saved := useAsm
	defer func() { useAsm = saved }()
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		for _, q8 := range []bool{false, true} {
			for _, asm := range []bool{true, false} {
				kind := "f32"
				if q8 {
					kind = "int8"
				}
				if !asm {
					kind += "-go"
				} else if !haveAsm() {
					continue
				}
				b.Run(fmt.Sprintf("%s/%d", kind, n), func(b *testing.B) {
					useAsm = asm
					benchSearch(b, n, q8, 1)
				})
			}
		}
	}
}

// BenchmarkSearchBatch: 1M templates, one query per pass and 16 queries
// per pass (ms/query is the figure to compare).
func BenchmarkSearchBatch(b *testing.B) {
	for _, q8 := range []bool{false, true} {
		for _, batch := range []int{1, 16} {
			kind := "f32"
			if q8 {
				kind = "int8"
			}
			b.Run(fmt.Sprintf("%s/1000000/batch%d", kind, batch), func(b *testing.B) { benchSearch(b, 1_000_000, q8, batch) })
		}
	}
}

func BenchmarkDot512(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	x, y := randEmb(rng, 512), randEmb(rng, 512)
	saved := useAsm
	defer func() { useAsm = saved }()
	for _, asm := range []bool{false, true} {
		if asm && !haveAsm() {
			continue
		}
		useAsm = asm
		b.Run(fmt.Sprintf("asm=%v", asm), func(b *testing.B) {
			var s float32
			for b.Loop() {
				s += dotF32(x, y)
			}
			_ = s
		})
	}
}

// BenchmarkLoadIndex reads 20,000 templates of 512-d (1,000 identities × 20)
// from a gallery file into an Index.
func BenchmarkLoadIndex(b *testing.B) {
	path := filepath.Join(b.TempDir(), "g.db")
	g, err := Open(path, Options{Model: testModel})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	rng := rand.New(rand.NewPCG(1, 3))
	for i := range 1000 {
		ts := make([]Template, 20)
		for j := range ts {
			ts[j].Embedding = randEmb(rng, 512)
		}
		if _, _, err := g.Enroll(fmt.Sprint("id", i), nil, ts); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		ix, err := g.LoadIndex()
		if err != nil || ix.Len() != 20000 {
			b.Fatal(ix.Len(), err)
		}
	}
}
