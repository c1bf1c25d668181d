package enroll

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

const testModel = "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581"

// TestMain lets the multi-process tests re-execute this test binary as a
// child that enrolls (FACEVER_ENROLL_CHILD=concurrent|crash), or that
// runs damaged-file trials (corrupt).
func TestMain(m *testing.M) {
	switch os.Getenv("FACEVER_ENROLL_CHILD") {
	case "":
		os.Exit(m.Run())
	case "concurrent":
		os.Exit(childConcurrent())
	case "crash":
		os.Exit(childCrash())
	case "corrupt":
		os.Exit(childCorrupt())
	default:
		fmt.Fprintln(os.Stderr, "unknown child mode")
		os.Exit(3)
	}
}

func randEmb(rng *rand.Rand, dim int) []float32 {
	e := make([]float32, dim)
	for i := range e {
		e[i] = float32(rng.NormFloat64())
	}
	return e
}

func openTest(t *testing.T, path string, opts Options) *Gallery {
	t.Helper()
	g, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

func TestGalleryCRUD(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	g := openTest(t, path, Options{Model: testModel})
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", st.Mode().Perm())
	}
	rng := rand.New(rand.NewPCG(1, 1))
	sha := strings.Repeat("ab", 32)
	ann, ts, err := g.Enroll("Ann", map[string]string{"team": "a"}, []Template{
		{Embedding: randEmb(rng, 8), Source: "ann1.jpg", PhotoSHA256: sha},
		{Embedding: randEmb(rng, 8), Source: "ann2.jpg"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if ann.ID == 0 || ann.Templates != 2 || len(ts) != 2 || ts[0].IdentityID != ann.ID || ts[0].ID == ts[1].ID {
		t.Fatalf("Enroll: %+v %+v", ann, ts)
	}
	// Enrolling the same name again adds to the identity and merges metadata.
	ann2, _, err := g.Enroll("Ann", map[string]string{"badge": "7"}, []Template{{Embedding: randEmb(rng, 8), Source: "ann3.jpg"}})
	if err != nil || ann2.ID != ann.ID || ann2.Templates != 3 || ann2.Metadata["team"] != "a" || ann2.Metadata["badge"] != "7" {
		t.Fatalf("second Enroll: %+v %v", ann2, err)
	}
	bob, err := g.AddIdentity("Bob", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.AddIdentity("Bob", nil); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate name: %v", err)
	}
	if _, err := g.AddTemplates(bob.ID, []Template{{Embedding: randEmb(rng, 8)}}); err != nil {
		t.Fatal(err)
	}
	list, err := g.List()
	if err != nil || len(list) != 2 || list[0].Name != "Ann" || list[1].Name != "Bob" || list[1].Templates != 1 {
		t.Fatalf("List: %+v %v", list, err)
	}
	got, err := g.Templates(ann.ID)
	if err != nil || len(got) != 3 || got[0].Source != "ann1.jpg" || got[0].PhotoSHA256 != sha || got[1].PhotoSHA256 != "" || got[0].Created.IsZero() {
		t.Fatalf("Templates: %+v %v", got, err)
	}
	for i := range got[0].Embedding {
		if got[0].Embedding[i] != ts[0].Embedding[i] {
			t.Fatal("embedding did not round-trip")
		}
	}
	for _, ref := range []string{"Ann", strconv.FormatUint(ann.ID, 10), "#" + strconv.FormatUint(ann.ID, 10)} {
		if it, err := g.Resolve(ref); err != nil || it.ID != ann.ID {
			t.Errorf("Resolve(%q) = %+v, %v", ref, it, err)
		}
	}
	if _, err := g.Resolve("Nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve(Nobody): %v", err)
	}
	// Rename.
	if err := g.Rename(bob.ID, "Ann"); !errors.Is(err, ErrExists) {
		t.Errorf("rename onto Ann: %v", err)
	}
	if err := g.Rename(bob.ID, "Robert"); err != nil {
		t.Fatal(err)
	}
	if _, err := g.GetByName("Bob"); !errors.Is(err, ErrNotFound) {
		t.Errorf("old name still resolves: %v", err)
	}
	if it, err := g.GetByName("Robert"); err != nil || it.ID != bob.ID {
		t.Errorf("GetByName(Robert): %+v %v", it, err)
	}
	// The photo index finds Ann's first photo.
	if found, err := g.FindPhoto(sha); err != nil || len(found) != 1 || found[0].IdentityID != ann.ID || found[0].Source != "ann1.jpg" {
		t.Errorf("FindPhoto: %+v %v", found, err)
	}
	if _, err := g.FindPhoto("zz"); !errors.Is(err, ErrInvalid) {
		t.Errorf("FindPhoto(zz): %v", err)
	}
	// Remove drops the identity and its templates.
	if err := g.Remove(ann.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Get(ann.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("removed identity: %v", err)
	}
	if err := g.Remove(ann.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("second remove: %v", err)
	}
	if found, err := g.FindPhoto(sha); err != nil || len(found) != 0 {
		t.Errorf("FindPhoto after remove: %+v %v", found, err)
	}
	ix, err := g.LoadIndex()
	if err != nil || ix.Len() != 1 || ix.Identities() != 1 {
		t.Fatalf("index after remove: %v %v", ix, err)
	}
	if m := g.Meta(); m.Dim != 8 || m.Model != testModel || m.Head != "" || m.Schema != SchemaVersion || m.Created.IsZero() {
		t.Errorf("Meta = %+v", m)
	}
}

func TestGalleryInvalid(t *testing.T) {
	g := openTest(t, filepath.Join(t.TempDir(), "g.db"), Options{Model: testModel})
	rng := rand.New(rand.NewPCG(2, 2))
	if _, _, err := g.Enroll("A", nil, []Template{{Embedding: randEmb(rng, 4)}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		emb  []float32
		sha  string
		want error
	}{
		{"", []float32{1, 2, 3, 4}, "", ErrInvalid},
		{" padded", []float32{1, 2, 3, 4}, "", ErrInvalid},
		{"tab\tname", []float32{1, 2, 3, 4}, "", ErrInvalid},
		{"B", []float32{1, 2, 3}, "", ErrDimension},
		{"B", []float32{0, 0, 0, 0}, "", ErrInvalid},
		{"B", []float32{1, float32(math.NaN()), 0, 0}, "", ErrInvalid},
		{"B", nil, "", ErrInvalid},
		{"B", []float32{1, 2, 3, 4}, "xyz", ErrInvalid},
	}
	for _, tc := range tests {
		_, _, err := g.Enroll(tc.name, nil, []Template{{Embedding: tc.emb, PhotoSHA256: tc.sha}})
		if !errors.Is(err, tc.want) {
			t.Errorf("Enroll(%q, %v, %q) = %v, want %v", tc.name, tc.emb, tc.sha, err, tc.want)
		}
	}
	// A failed enroll leaves nothing behind (one transaction).
	if _, err := g.GetByName("B"); !errors.Is(err, ErrNotFound) {
		t.Errorf("failed enroll created B: %v", err)
	}
}

func TestGalleryModelMismatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	g, err := Open(path, Options{Model: testModel, Head: "arcface-1"})
	if err != nil {
		t.Fatal(err)
	}
	g.Close()
	tests := []struct {
		opts Options
		want error
	}{
		{Options{Model: testModel, Head: "arcface-1"}, nil},
		{Options{Model: testModel}, ErrModelMismatch},
		{Options{Model: testModel, Head: "cosface"}, ErrModelMismatch},
		{Options{Model: strings.Repeat("0", 64), Head: "arcface-1"}, ErrModelMismatch},
		{Options{Model: strings.Repeat("0", 64), Head: "arcface-1", ReadOnly: true}, ErrModelMismatch},
		{Options{}, nil}, // no model: listing is fine
	}
	for _, tc := range tests {
		g, err := Open(path, tc.opts)
		if !errors.Is(err, tc.want) {
			t.Errorf("Open(%+v) = %v, want %v", tc.opts, err, tc.want)
		}
		if err == nil {
			if tc.opts.Model == "" {
				if _, _, err := g.Enroll("x", nil, []Template{{Embedding: []float32{1}}}); !errors.Is(err, ErrNoModel) {
					t.Errorf("enroll without model: %v", err)
				}
			}
			g.Close()
		} else if !strings.Contains(err.Error(), "arcface-1") {
			t.Errorf("mismatch error does not say what the gallery holds: %v", err)
		}
	}
}

func TestGalleryReadOnlyAndLock(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "g.db")
	if _, err := Open(filepath.Join(dir, "missing.db"), Options{ReadOnly: true}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("read-only open of a missing file: %v", err)
	}
	g, err := Open(path, Options{Model: testModel})
	if err != nil {
		t.Fatal(err)
	}
	// A second writer waits for the lock, then gives up.
	start := time.Now()
	if _, err := Open(path, Options{Timeout: 200 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Errorf("second writer: %v", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("gave up after %v, before the timeout", d)
	}
	g.Close()
	ro, err := Open(path, Options{ReadOnly: true, Model: testModel})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, err := ro.AddIdentity("A", nil); !errors.Is(err, ErrReadOnly) {
		t.Errorf("write through read-only: %v", err)
	}
	// Readers share the lock.
	ro2, err := Open(path, Options{ReadOnly: true, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Errorf("second reader: %v", err)
	} else {
		ro2.Close()
	}
}

func TestGalleryFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	g := openTest(t, path, Options{})
	g.Close()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	openTest(t, path, Options{})
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode after reopen %v, want 0600", st.Mode().Perm())
	}
}

func TestGallerySchema(t *testing.T) {
	dir := t.TempDir()
	// A bbolt file of something else is refused.
	foreign := filepath.Join(dir, "foreign.db")
	db, err := bolt.Open(foreign, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("other")); return err })
	db.Close()
	if _, err := Open(foreign, Options{}); !errors.Is(err, ErrSchema) {
		t.Errorf("foreign file: %v", err)
	}
	// A migration added later runs once, on the first read-write open.
	path := filepath.Join(dir, "g.db")
	g := openTest(t, path, Options{Model: testModel})
	if _, _, err := g.Enroll("Ann", nil, []Template{{Embedding: []float32{1, 0}}}); err != nil {
		t.Fatal(err)
	}
	g.Close()
	saved := migrations
	defer func() { migrations = saved }()
	runs := 0
	next := latestSchema() + 1
	migrations = append(append([]migration(nil), saved...), migration{next, "test: add a bucket", func(tx *bolt.Tx) error {
		runs++
		_, err := tx.CreateBucket([]byte("v2"))
		return err
	}})
	if _, err := Open(path, Options{ReadOnly: true}); !errors.Is(err, ErrSchema) {
		t.Errorf("read-only open of an old schema: %v", err)
	}
	for range 2 {
		g, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if g.Meta().Schema != next {
			t.Errorf("schema %d after migration", g.Meta().Schema)
		}
		if it, err := g.GetByName("Ann"); err != nil || it.Templates != 1 {
			t.Errorf("data after migration: %+v %v", it, err)
		}
		g.Close()
	}
	if runs != 1 {
		t.Errorf("migration ran %d times", runs)
	}
	// The old program refuses the newer file.
	migrations = saved
	if _, err := Open(path, Options{}); !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), "newer") {
		t.Errorf("newer schema: %v", err)
	}
	if latestSchema() != SchemaVersion {
		t.Errorf("SchemaVersion %d, migrations end at %d", SchemaVersion, latestSchema())
	}
}

// childEnv returns the command re-running this test binary as a child.
func childCmd(t *testing.T, mode string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FACEVER_ENROLL_CHILD="+mode, "FACEVER_ENROLL_ARGS="+strings.Join(args, "|"))
	cmd.Stderr = os.Stderr
	return cmd
}

func childArgs() []string { return strings.Split(os.Getenv("FACEVER_ENROLL_ARGS"), "|") }

// childConcurrent enrolls n identities named prefix-i, opening and closing
// the gallery for each as the CLI does. Args: path, prefix, n.
func childConcurrent() int {
	a := childArgs()
	n, _ := strconv.Atoi(a[2])
	rng := rand.New(rand.NewPCG(uint64(len(a[1])), 9))
	for i := range n {
		g, err := Open(a[0], Options{Model: testModel, Timeout: time.Minute})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		_, _, err = g.Enroll(fmt.Sprintf("%s-%d", a[1], i), nil, []Template{{Embedding: randEmb(rng, 64)}})
		// Everyone also adds to one shared identity.
		if err == nil {
			_, _, err = g.Enroll("shared", nil, []Template{{Embedding: randEmb(rng, 64), Source: a[1]}})
		}
		g.Close()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

func TestConcurrentProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	const n = 25
	var cmds []*exec.Cmd
	for _, p := range []string{"left", "right"} {
		cmd := childCmd(t, "concurrent", path, p, strconv.Itoa(n))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("child: %v", err)
		}
	}
	g := openTest(t, path, Options{ReadOnly: true})
	list, err := g.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2*n+1 {
		t.Fatalf("%d identities, want %d", len(list), 2*n+1)
	}
	for _, p := range []string{"left", "right"} {
		for i := range n {
			if it, err := g.GetByName(fmt.Sprintf("%s-%d", p, i)); err != nil || it.Templates != 1 {
				t.Errorf("%s-%d: %+v %v", p, i, it, err)
			}
		}
	}
	if it, err := g.GetByName("shared"); err != nil || it.Templates != 2*n {
		t.Errorf("shared identity: %+v %v, want %d templates", it, err, 2*n)
	}
	if ix, err := g.LoadIndex(); err != nil || ix.Len() != 4*n {
		t.Errorf("index: %v templates, %v", ix.Len(), err)
	}
}

// childCrash enrolls identities crash-i forever, printing "ok i" after each
// Enroll has returned (committed). Args: path, start.
func childCrash() int {
	a := childArgs()
	start, _ := strconv.Atoi(a[1])
	g, err := Open(a[0], Options{Model: testModel})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	rng := rand.New(rand.NewPCG(uint64(start), 3))
	w := bufio.NewWriter(os.Stdout)
	for i := start; ; i++ {
		// Several templates per enroll make the transaction span pages.
		ts := []Template{{Embedding: randEmb(rng, 512)}, {Embedding: randEmb(rng, 512)}, {Embedding: randEmb(rng, 512)}}
		if _, _, err := g.Enroll(fmt.Sprintf("crash-%d", i), nil, ts); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprintf(w, "ok %d\n", i)
		w.Flush()
	}
}

func TestCrashDuringEnroll(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	acked := map[int]bool{}
	next := 0
	rng := rand.New(rand.NewPCG(4, 4))
	for round := range 3 {
		cmd := childCmd(t, "crash", path, strconv.Itoa(next))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		// Kill after a random number of acknowledged enrolls, mid-stream.
		stopAt := 20 + rng.IntN(40)
		got := 0
		for sc.Scan() {
			var i int
			if _, err := fmt.Sscanf(sc.Text(), "ok %d", &i); err != nil {
				t.Fatalf("child said %q", sc.Text())
			}
			acked[i] = true
			next = max(next, i+1)
			if got++; got == stopAt {
				cmd.Process.Signal(syscall.SIGKILL)
				break
			}
		}
		// Enrolls acknowledged between our last read and the kill count too.
		for sc.Scan() {
			var i int
			if _, err := fmt.Sscanf(sc.Text(), "ok %d", &i); err == nil {
				acked[i] = true
				next = max(next, i+1)
			}
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child ended with %v, want SIGKILL", round, err)
		}
		next++ // the enroll in flight may or may not have committed
		g, err := Open(path, Options{Model: testModel, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		for i := range acked {
			if it, err := g.GetByName(fmt.Sprintf("crash-%d", i)); err != nil || it.Templates != 3 {
				t.Errorf("round %d: acknowledged crash-%d: %+v %v", round, i, it, err)
			}
		}
		// Whatever is there is whole: every identity has its 3 templates.
		list, err := g.List()
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range list {
			if it.Templates != 3 {
				t.Errorf("round %d: %s has %d templates", round, it.Name, it.Templates)
			}
		}
		if ix, err := g.LoadIndex(); err != nil || ix.Len() != 3*len(list) {
			t.Errorf("round %d: index of %d identities: %v templates, %v", round, len(list), ix.Len(), err)
		}
		if err := g.db.View(func(tx *bolt.Tx) error {
			for err := range tx.Check() {
				return err
			}
			return nil
		}); err != nil {
			t.Errorf("round %d: consistency check: %v", round, err)
		}
		t.Logf("round %d: %d acknowledged, %d in the gallery", round, len(acked), len(list))
		g.Close()
	}
}

// TestMigrationV2 upgrades a schema-1 gallery: the photo index is built from
// the templates already there.
func TestMigrationV2(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	saved := migrations
	defer func() { migrations = saved }()
	migrations = saved[:1]
	g, err := Open(path, Options{Model: testModel})
	if err != nil {
		t.Fatal(err)
	}
	sha := strings.Repeat("0f", 32)
	if _, _, err := g.Enroll("Ann", nil, []Template{{Embedding: []float32{1, 2}, PhotoSHA256: sha}, {Embedding: []float32{2, 1}}}); err != nil {
		t.Fatal(err)
	}
	g.Close()
	migrations = saved
	g = openTest(t, path, Options{})
	if g.Meta().Schema != SchemaVersion {
		t.Fatalf("schema %d after migration", g.Meta().Schema)
	}
	if found, err := g.FindPhoto(sha); err != nil || len(found) != 1 || found[0].Embedding[0] != 1 {
		t.Errorf("FindPhoto after migration: %+v %v", found, err)
	}
}
