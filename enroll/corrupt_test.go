package enroll

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The corruption suite damages copies of a real gallery file, by truncation
// at many offsets and by random byte flips, and runs the gallery's reads and
// writes on each: every trial must end in a clean error or a correct answer.
// Trials run in child processes (FACEVER_ENROLL_CHILD=corrupt), so that a
// crash (a fault bbolt's mmap could not recover, a runtime throw) is
// caught, named and counted as a failure instead of ending the test binary.

const (
	corruptTruncations = 100
	corruptFlips       = 300
	corruptBatch       = 50
)

// corruptTrial damages path, a copy of the pristine gallery, as trial i
// says, and describes the damage.
func corruptTrial(path string, i int) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	size := st.Size()
	rng := rand.New(rand.NewPCG(uint64(i), 77))
	if i < corruptTruncations {
		// Spread over the file, jittered, and some at page boundaries.
		off := size * int64(i) / corruptTruncations
		if i%3 == 1 {
			off += rng.Int64N(max(1, size/corruptTruncations))
		} else if i%3 == 2 {
			off = off / 4096 * 4096
		}
		return fmt.Sprintf("truncated to %d of %d bytes", off, size), os.Truncate(path, off)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	n := 1 + rng.IntN(20)
	var where []string
	for range n {
		off := rng.Int64N(size)
		b := []byte{0}
		f.ReadAt(b, off)
		b[0] ^= byte(1 + rng.IntN(255))
		if _, err := f.WriteAt(b, off); err != nil {
			return "", err
		}
		where = append(where, strconv.FormatInt(off, 10))
	}
	return fmt.Sprintf("%d bytes flipped at %s", n, strings.Join(where, ",")), nil
}

// truth is what the pristine gallery holds.
type truth struct {
	ids    []uint64
	people map[uint64]Identity
	embs   map[uint64][]Template
	crops  map[[2]uint64][]byte // identity id, template id → crop
}

func readTruth(path string) (*truth, error) {
	g, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer g.Close()
	list, err := g.List()
	if err != nil {
		return nil, err
	}
	tr := &truth{people: map[uint64]Identity{}, embs: map[uint64][]Template{}, crops: map[[2]uint64][]byte{}}
	for _, it := range list {
		tr.ids = append(tr.ids, it.ID)
		tr.people[it.ID] = it
		if tr.embs[it.ID], err = g.Templates(it.ID); err != nil {
			return nil, err
		}
		for _, t := range tr.embs[it.ID] {
			if t.HasCrop {
				if tr.crops[[2]uint64{it.ID, t.ID}], err = g.TemplateCrop(it.ID, t.ID); err != nil {
					return nil, err
				}
			}
		}
	}
	return tr, nil
}

// runTrial runs the gallery's operations on a damaged file and returns
// "" (every answer was correct or a clean error) or what went wrong.
//
// errs counts the clean errors; notFound those that were ErrNotFound for a
// person who is there (a point lookup cannot tell a subtree lost to damage
// from a deleted record); flagged is the number of problems Check reported.
func runTrial(path string, tr *truth, rng *rand.Rand) (wrong string, errs, notFound, flagged int) {
	defer func() {
		if p := recover(); p != nil {
			wrong = fmt.Sprintf("PANIC: %v", p)
			errs, notFound, flagged = 0, 0, 0
		}
	}()
	clean := func(err error) bool {
		if err != nil {
			errs++
			if errors.Is(err, ErrNotFound) {
				notFound++
			}
			return true
		}
		return false
	}
	g, err := Open(path, Options{Model: testModel, Timeout: -1})
	if clean(err) {
		return "", errs, 0, 0
	}
	defer g.Close()
	same := func(a, b Identity) bool {
		return a.ID == b.ID && a.Name == b.Name && a.Templates == b.Templates && fmt.Sprint(a.Metadata) == fmt.Sprint(b.Metadata)
	}
	if list, err := g.List(); !clean(err) {
		if len(list) != len(tr.ids) {
			return fmt.Sprintf("List: %d identities, want %d", len(list), len(tr.ids)), errs, notFound, 0
		}
		for _, it := range list {
			if !same(it, tr.people[it.ID]) {
				return fmt.Sprintf("List: %+v, want %+v", it, tr.people[it.ID]), errs, notFound, 0
			}
		}
	}
	pick := func() uint64 { return tr.ids[rng.IntN(len(tr.ids))] }
	for range 6 {
		id := pick()
		if it, err := g.Get(id); !clean(err) && !same(it, tr.people[id]) {
			return fmt.Sprintf("Get(%d) = %+v, want %+v", id, it, tr.people[id]), errs, notFound, 0
		}
		want := tr.people[id]
		if it, err := g.GetByName(want.Name); !clean(err) && !same(it, want) {
			return fmt.Sprintf("GetByName(%q) = %+v", want.Name, it), errs, notFound, 0
		}
		if ts, err := g.Templates(id); !clean(err) {
			if len(ts) != len(tr.embs[id]) {
				return fmt.Sprintf("Templates(%d): %d, want %d", id, len(ts), len(tr.embs[id])), errs, notFound, 0
			}
			for j, t := range ts {
				w := tr.embs[id][j]
				if t.ID != w.ID || t.Source != w.Source || t.PhotoSHA256 != w.PhotoSHA256 || fmt.Sprint(t.Embedding) != fmt.Sprint(w.Embedding) {
					return fmt.Sprintf("Templates(%d)[%d] differs", id, j), errs, notFound, 0
				}
			}
		}
	}
	for k, want := range tr.crops {
		if got, err := g.TemplateCrop(k[0], k[1]); !clean(err) && !bytes.Equal(got, want) {
			return fmt.Sprintf("TemplateCrop(%d, %d): %d bytes, not the %d enrolled", k[0], k[1], len(got), len(want)), errs, notFound, 0
		}
	}
	search := func(q []float32, want uint64, present bool) string {
		ms, err := g.Search(q, 1)
		if clean(err) {
			return ""
		}
		switch {
		case present && (len(ms) == 0 || ms[0].IdentityID != want || ms[0].Score < 0.999):
			return fmt.Sprintf("Search for identity %d: %+v", want, ms)
		case !present && len(ms) > 0 && ms[0].IdentityID == want:
			return fmt.Sprintf("Search found removed identity %d", want)
		case len(ms) > 0 && ms[0].Score > 0.5 && ms[0].IdentityID != want:
			return fmt.Sprintf("Search for identity %d answered %+v", want, ms[0])
		}
		return ""
	}
	for range 6 {
		id := pick()
		if w := search(tr.embs[id][0].Embedding, id, true); w != "" {
			return w, errs, notFound, 0
		}
	}
	// Writes: an enroll is then found, a removed person is then gone.
	e := randEmb(rng, len(tr.embs[tr.ids[0]][0].Embedding))
	if it, _, err := g.Enroll("newcomer", nil, []Template{{Embedding: e}}); !clean(err) {
		if w := search(e, it.ID, true); w != "" {
			return "after Enroll: " + w, errs, notFound, 0
		}
	}
	id := pick()
	if err := g.Remove(id); !clean(err) {
		if w := search(tr.embs[id][0].Embedding, id, false); w != "" {
			return "after Remove: " + w, errs, notFound, 0
		}
	}
	if r, err := g.Check(); err != nil {
		errs++
	} else {
		flagged = len(r.Problems)
	}
	return "", errs, notFound, flagged
}

// childCorrupt runs trials from..to on copies of a pristine gallery and
// prints one line per trial. Args: pristine path, work dir, from, to.
func childCorrupt() int {
	a := childArgs()
	from, _ := strconv.Atoi(a[2])
	to, _ := strconv.Atoi(a[3])
	tr, err := readTruth(a[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	w := bufio.NewWriter(os.Stdout)
	for i := from; i < to; i++ {
		path := filepath.Join(a[1], fmt.Sprintf("trial-%d.db", i))
		for _, suffix := range []string{"", SidecarSuffix} {
			if err := copyFile(a[0]+suffix, path+suffix); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		what, err := corruptTrial(path, i)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprintf(w, "start %d %s\n", i, what)
		w.Flush()
		wrong, errs, notFound, flagged := runTrial(path, tr, rand.New(rand.NewPCG(uint64(i), 1)))
		if wrong != "" {
			fmt.Fprintf(w, "wrong %d %s\n", i, wrong)
		} else {
			fmt.Fprintf(w, "done %d %d %d %d\n", i, errs, notFound, flagged)
		}
		w.Flush()
		os.Remove(path)
		os.Remove(path + SidecarSuffix)
	}
	return 0
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// TestCorruption: 100 truncations and 300 trials of 1–20 random flipped
// bytes on a gallery of 150 people (450 templates, 12 of them with crops,
// with freed pages from removes and re-enrolls): no trial may crash, panic
// or answer wrongly.
func TestCorruption(t *testing.T) {
	dir := t.TempDir()
	pristine := filepath.Join(dir, "pristine.db")
	g := openTest(t, pristine, Options{Model: testModel})
	rng := rand.New(rand.NewPCG(21, 21))
	fillGallery(t, g, rng, 160, 3, 128)
	for id := uint64(1); id <= 160; id += 16 { // some history: freed pages
		if err := g.Remove(id); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 6 {
		ts := []Template{{Embedding: randEmb(rng, 128), Source: "p.jpg", PhotoSHA256: strings.Repeat(fmt.Sprintf("%02x", i), 32), Crop: testJPEG(t, i)}, {Embedding: randEmb(rng, 128), Crop: testJPEG(t, 10+i)}, {Embedding: randEmb(rng, 128)}}
		if _, _, err := g.Enroll(fmt.Sprintf("later-%d", i), map[string]string{"badge": strconv.Itoa(i)}, ts); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := g.CreateAPIKey("ops"); err != nil {
		t.Fatal(err)
	}
	g.Close()
	st, _ := os.Stat(pristine)
	total := corruptTruncations + corruptFlips
	outcome := map[string]int{}
	var failures []string
	for next := 0; next < total; {
		to := min(total, next+corruptBatch)
		cmd := childCmd(t, "corrupt", pristine, dir, strconv.Itoa(next), strconv.Itoa(to))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		started, what, finished := -1, "", next-1
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			f := strings.SplitN(sc.Text(), " ", 3)
			i, _ := strconv.Atoi(f[1])
			switch f[0] {
			case "start":
				started, what = i, f[2]
			case "wrong":
				failures = append(failures, fmt.Sprintf("trial %d (%s): %s", i, what, f[2]))
				outcome["wrong"]++
				finished = i
			case "done":
				var errs, notFound, flagged int
				fmt.Sscanf(f[2], "%d %d %d", &errs, &notFound, &flagged)
				switch {
				case errs > 0:
					outcome["clean error"]++
				case flagged > 0:
					outcome["all correct, Check reports the damage"]++
				default:
					outcome["all correct, Check finds nothing"]++
				}
				if notFound > 0 {
					outcome["ErrNotFound for a person who is there"]++
				}
				finished = i
			}
		}
		err = cmd.Wait()
		if started > finished {
			tail := stderr.String()
			if len(tail) > 600 {
				tail = tail[:600]
			}
			failures = append(failures, fmt.Sprintf("trial %d (%s): the process crashed (%v): %s", started, what, err, tail))
			outcome["crash"]++
			next = started + 1
			continue
		}
		if err != nil {
			t.Fatalf("child %d..%d: %v (last trial started %d, finished %d; scan: %v) %s", next, to, err, started, finished, sc.Err(), stderr.String())
		}
		next = to
	}
	t.Logf("%d trials on a %d-byte gallery: %v", total, st.Size(), outcome)
	for _, f := range failures {
		t.Error(f)
	}
}
