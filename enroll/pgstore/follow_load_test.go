package pgstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/facever/facever/enroll"
	"github.com/facever/facever/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

// copyRow is one (identity_id, id, embedding) row of a COPY stream.
type copyRow struct {
	identity, template uint64
	emb                []float32
}

// copyStream encodes rows as PostgreSQL's binary COPY format does.
func copyStream(rows []copyRow) []byte {
	b := append([]byte(nil), copySignature...)
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint32(b, 0)
	for _, r := range rows {
		b = binary.BigEndian.AppendUint16(b, 3)
		b = binary.BigEndian.AppendUint32(b, 8)
		b = binary.BigEndian.AppendUint64(b, r.identity)
		b = binary.BigEndian.AppendUint32(b, 8)
		b = binary.BigEndian.AppendUint64(b, r.template)
		b = binary.BigEndian.AppendUint32(b, uint32(4*len(r.emb)))
		for _, x := range r.emb {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
		}
	}
	return binary.BigEndian.AppendUint16(b, 0xffff)
}

// feed writes stream to a new parser in pieces cut at random.
func feed(rng *rand.Rand, stream []byte, dim int, names map[uint64]string) (*copyParser, error) {
	p := &copyParser{ix: enroll.NewIndex(dim, 0), names: names, dim: dim}
	for len(stream) > 0 {
		n := min(len(stream), 1+rng.IntN(3*(30+4*dim)))
		if rng.IntN(4) == 0 {
			n = min(len(stream), 1+rng.IntN(3))
		}
		piece := append([]byte(nil), stream[:n]...) // the writer's buffer is reused
		if _, err := p.Write(piece); err != nil {
			return p, err
		}
		clear(piece)
		stream = stream[n:]
	}
	if !p.done {
		return p, errors.New("no trailer")
	}
	return p, nil
}

// TestCopyParser: the real COPY stream of a gallery, cut into writes at
// random (rows split anywhere, even inside the header), gives the index
// the one-query loader gives; damaged streams fail with a clear error.
func TestCopyParser(t *testing.T) {
	s := open(t, pgtest.URL(t))
	rng := rand.New(rand.NewPCG(1, 1))
	const dim = 12
	for i := range 40 {
		ts := make([]enroll.Template, 1+rng.IntN(3))
		for j := range ts {
			ts[j].Embedding = vec(rng, dim)
		}
		if _, _, err := s.Enroll(fmt.Sprint("id", i%30), nil, ts); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	var stream bytes.Buffer
	names := map[uint64]string{}
	err := pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, "SELECT id, name FROM facever.identities")
		var id int64
		var name string
		if _, err := pgx.ForEachRow(rows, []any{&id, &name}, func() error { names[uint64(id)] = name; return nil }); err != nil {
			return err
		}
		_, err := tx.Conn().PgConn().CopyTo(ctx, &stream, copyTemplates)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want, err := s.LoadIndex()
	if err != nil {
		t.Fatal(err)
	}
	queries := [][]float32{vec(rng, dim), vec(rng, dim), vec(rng, dim)}
	for round := range 200 {
		p, err := feed(rng, stream.Bytes(), dim, names)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if p.rows != want.Len() || len(p.buf) != 0 {
			t.Fatalf("round %d: %d rows, %d bytes left over", round, p.rows, len(p.buf))
		}
		sameAnswers(t, fmt.Sprintf("round %d", round), p.ix, want, queries)
	}
	// Damage, each with the error a person can act on.
	good := stream.Bytes()
	for _, c := range []struct {
		what   string
		stream []byte
		want   string
	}{
		{"not COPY", append([]byte("PGCOPX\n\xff\r\n\x00"), good[11:]...), "not a binary COPY stream"},
		{"truncated", good[:len(good)-100], "no trailer"},
		{"no trailer", good[:len(good)-2], "no trailer"},
		{"wrong dimension", copyStream([]copyRow{{1, 1, make([]float32, dim+1)}}), "has 52 bytes, the gallery's dimension 12 needs 48"},
		{"unknown identity", copyStream([]copyRow{{999999, 1, vec(rng, dim)}}), "which the snapshot does not have"},
		{"zero embedding", copyStream([]copyRow{{1, 1, make([]float32, dim)}}), "zero or not finite"},
		{"two fields", append(copyStream(nil)[:19], 0, 2), "a COPY row of 2 fields"},
		{"short id", func() []byte {
			b := copyStream([]copyRow{{1, 1, vec(rng, dim)}})
			b[19+2+3] = 4
			return b
		}(), "ids of 4 and 8 bytes"},
		{"data after trailer", append(copyStream(nil), 0, 3), "data after the COPY trailer"},
	} {
		known := names
		if c.what != "not COPY" && c.what != "truncated" && c.what != "no trailer" {
			known = map[uint64]string{1: "a"} // the synthetic rows' identity
		}
		_, err := feed(rng, c.stream, dim, known)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.what, err, c.want)
		}
	}
}

// FuzzCopyParser: any byte stream, cut anywhere, is parsed or refused
// without a panic, and the carried buffer never exceeds one row.
func FuzzCopyParser(f *testing.F) {
	rng := rand.New(rand.NewPCG(2, 2))
	f.Add(copyStream([]copyRow{{1, 1, vec(rng, 4)}, {2, 2, vec(rng, 4)}, {1, 3, vec(rng, 4)}}), uint64(1))
	f.Add(copyStream(nil), uint64(2))
	f.Add([]byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\xff\xff\xff\xff"), uint64(3))
	f.Fuzz(func(t *testing.T, stream []byte, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, seed))
		p := &copyParser{ix: enroll.NewIndex(4, 0), names: map[uint64]string{1: "a", 2: "b"}, dim: 4}
		for len(stream) > 0 {
			n := min(len(stream), 1+rng.IntN(64))
			if _, err := p.Write(stream[:n]); err != nil {
				return
			}
			if len(p.buf) > 19+1<<20+2+26+16 {
				t.Fatalf("carried %d bytes", len(p.buf))
			}
			stream = stream[n:]
		}
	})
}

// TestLoadScale measures a node's start on a large gallery: set
// FACEVER_LOAD_TEMPLATES (e.g. 1000000) to run it. It fills a database
// with that many 512-d templates (4 per identity) by COPY FROM, then times
// Open (migrations, meta, the binary COPY load) until the node answers an
// identify, and reports the time and the memory the index took.
// FACEVER_LOAD_STORAGE=main stores the embeddings in the rows (no TOAST).
func TestLoadScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("FACEVER_LOAD_TEMPLATES"))
	if n <= 0 {
		t.Skip("set FACEVER_LOAD_TEMPLATES=1000000 to measure a node's start at that size")
	}
	const dim, per = 512, 4
	url := pgtest.URL(t)
	s := open(t, url)
	if _, _, err := s.Enroll("seed", nil, []enroll.Template{{Embedding: make([]float32, dim)}}); err == nil {
		t.Fatal("zero embedding accepted")
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if st := os.Getenv("FACEVER_LOAD_STORAGE"); st != "" { // e.g. main: embeddings kept in the row, not TOASTed
		switch st {
		case "plain", "external", "extended", "main":
		default:
			t.Fatalf("FACEVER_LOAD_STORAGE=%q: plain, external, extended or main", st)
		}
		if _, err := conn.Exec(ctx, "ALTER TABLE facever.templates ALTER COLUMN embedding SET STORAGE "+st); err != nil {
			t.Fatal(err)
		}
	}
	fill := time.Now()
	people := (n + per - 1) / per
	created := time.Now().UTC()
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"facever", "identities"}, []string{"name", "created", "templates"},
		pgx.CopyFromSlice(people, func(i int) ([]any, error) {
			return []any{fmt.Sprintf("person%07d", i), created, int32(min(per, n-i*per))}, nil
		})); err != nil {
		t.Fatal(err)
	}
	var first int64
	if err := conn.QueryRow(ctx, "SELECT min(id) FROM facever.identities").Scan(&first); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 3))
	emb := make([]float32, dim)
	le := make([]byte, 4*dim)
	var probe []float32
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"facever", "templates"}, []string{"identity_id", "embedding", "created"},
		pgx.CopyFromFunc(func() func() ([]any, error) {
			i := 0
			return func() ([]any, error) {
				if i == n {
					return nil, nil
				}
				for d := range emb {
					emb[d] = float32(rng.NormFloat64())
				}
				if i == n/2 {
					probe = append([]float32(nil), emb...)
				}
				for d, x := range emb {
					binary.LittleEndian.PutUint32(le[4*d:], math.Float32bits(x))
				}
				i++
				return []any{first + int64((i-1)/per), le, created}, nil
			}
		}())); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "UPDATE facever.meta SET dim = $1; VACUUM ANALYZE facever.templates", dim); err != nil {
		if _, err := conn.Exec(ctx, "UPDATE facever.meta SET dim = $1", dim); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, "VACUUM ANALYZE facever.templates"); err != nil {
			t.Fatal(err)
		}
	}
	var size string
	if err := conn.QueryRow(ctx, "SELECT pg_size_pretty(pg_total_relation_size('facever.templates'))").Scan(&size); err != nil {
		t.Fatal(err)
	}
	t.Logf("filled %d templates of %d identities (%s on disk) in %v", n, people, size, time.Since(fill).Round(time.Millisecond))
	s.Close()

	// What PostgreSQL and the wire cost alone: the same COPY into
	// io.Discard, sorted by id (as the load reads) and in table order.
	for _, q := range []string{copyTemplates, strings.Replace(copyTemplates, " ORDER BY id", "", 1)} {
		c0 := pgCPU(t)
		t0 := time.Now()
		if _, err := conn.PgConn().CopyTo(ctx, io.Discard, q); err != nil {
			t.Fatal(err)
		}
		t.Logf("COPY to nowhere %.2f s (PostgreSQL CPU %.2f s): %s", time.Since(t0).Seconds(), pgCPU(t)-c0, q)
	}

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu0, pg0 := selfCPU(), pgCPU(t)
	start := time.Now()
	node, err := Open(url, enroll.Options{Model: testModel, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	m, err := node.Search(probe, 1)
	ready := time.Since(start)
	if err != nil || len(m) != 1 || m[0].Score < 0.9999 {
		t.Fatalf("identify after the load: %+v %v", m, err)
	}
	runtime.ReadMemStats(&after)
	t.Logf("CPU during the start: this process %.2f s, PostgreSQL %.2f s (load average %s)", selfCPU()-cpu0, pgCPU(t)-pg0, loadAvg())
	ix, _ := node.Index()
	t.Logf("node ready in %.2f s: %d templates of %d identities, heap +%.0f MB (index rows %d B/template = %.0f MB), total allocated during the load %.0f MB, peak RSS %s",
		ready.Seconds(), ix.Len(), ix.Identities(), float64(after.HeapAlloc-before.HeapAlloc)/1e6,
		ix.BytesPerTemplate(), float64(ix.BytesPerTemplate()*ix.Len())/1e6, float64(after.TotalAlloc-before.TotalAlloc)/1e6, peakRSS())
	if ix.Len() != n {
		t.Fatalf("%d templates loaded, want %d", ix.Len(), n)
	}
	// The one-query loader, for comparison.
	t0 := time.Now()
	if _, err := node.LoadIndex(); err != nil {
		t.Fatal(err)
	}
	t.Logf("the one-query loader (LoadIndex) takes %.2f s", time.Since(t0).Seconds())
}

// selfCPU is the user+system CPU time of this process, in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// pgCPU is the user+system CPU time of the shared cluster's processes (the
// postmaster's children that are alive), in seconds.
func pgCPU(t *testing.T) float64 {
	b, err := os.ReadFile(filepath.Join(pgtest.Shared(t).Dir(), "data", "postmaster.pid"))
	if err != nil {
		return 0
	}
	pm := strings.SplitN(string(b), "\n", 2)[0]
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	tick := 100.0 // USER_HZ
	total := 0.0
	for _, p := range stats {
		st, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:]))
		// state ppid ... utime stime: fields 14 and 15 of stat, 12 and 13 here.
		if len(f) > 12 && f[1] == pm {
			u, _ := strconv.ParseFloat(f[11], 64)
			s, _ := strconv.ParseFloat(f[12], 64)
			total += (u + s) / tick
		}
	}
	return total
}

// loadAvg is the machine's 1-minute load average.
func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "unknown"
}

// peakRSS is the process's peak resident memory (VmHWM), as Linux reports it.
func peakRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:"))
		}
	}
	return "unknown"
}
