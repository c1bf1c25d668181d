package enroll

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// flipAt flips one byte of a file.
func flipAt(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// flipAll flips the byte at delta in every copy of needle in a file (freed
// pages may hold old copies of a record).
func flipAll(t *testing.T, path string, needle []byte, delta int64) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i := 0; ; n++ {
		j := bytes.Index(data[i:], needle)
		if j < 0 {
			break
		}
		flipAt(t, path, int64(i+j)+delta)
		i += j + 1
	}
	if n == 0 {
		t.Fatalf("%q not in the file", needle)
	}
}

func embBytes(e []float32) []byte {
	var b []byte
	for _, x := range e {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

// TestRecordChecksums: a flipped byte in a template or an identity record
// gives ErrCorrupt naming the record, from every read and from Check.
func TestRecordChecksums(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	g := openTest(t, path, Options{Model: testModel})
	rng := rand.New(rand.NewPCG(5, 5))
	e := randEmb(rng, 32)
	ann, ts, err := g.Enroll("Ann", nil, []Template{{Embedding: randEmb(rng, 32)}, {Embedding: e}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := g.Enroll("Bob-the-second", map[string]string{"k": "v"}, []Template{{Embedding: randEmb(rng, 32)}}); err != nil {
		t.Fatal(err)
	}
	if r, err := g.Check(); err != nil || !r.OK() || r.Identities != 2 || r.Templates != 3 || !r.PageCheck {
		t.Fatalf("Check of a sound gallery: %+v %v", r, err)
	}
	g.Close()
	flipAll(t, path, embBytes(e), 7)
	g = openTest(t, path, Options{Model: testModel})
	want := fmt.Sprintf("template %d of identity %d", ts[1].ID, ann.ID)
	if _, err := g.Templates(ann.ID); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), want) {
		t.Errorf("Templates: %v, want ErrCorrupt naming %s", err, want)
	}
	if _, err := g.LoadIndex(); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), want) {
		t.Errorf("LoadIndex: %v", err)
	}
	if _, err := g.Search(e, 1); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Search: %v", err)
	}
	r, err := g.Check()
	if err != nil || r.OK() || !strings.Contains(strings.Join(r.Problems, "\n"), want) {
		t.Errorf("Check: %+v %v", r, err)
	}
	g.Close()

	flipAll(t, path, []byte(`"Bob-the-second"`), 3)
	g = openTest(t, path, Options{Model: testModel})
	if _, err := g.Get(2); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "identity 2") {
		t.Errorf("Get: %v", err)
	}
	if _, err := g.List(); !errors.Is(err, ErrCorrupt) {
		t.Errorf("List: %v", err)
	}
	if _, err := g.GetByName("Bob-the-second"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("GetByName: %v", err)
	}
}

// TestMetaRollback: damage to the newest meta page makes bbolt fall back to
// the transaction before; Open notices from the counter file and refuses,
// unless told to accept the loss.
func TestMetaRollback(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	g := openTest(t, path, Options{Model: testModel})
	if _, _, err := g.Enroll("Ann", nil, []Template{{Embedding: []float32{1, 0}}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := g.Enroll("Bob", nil, []Template{{Embedding: []float32{0, 1}}}); err != nil {
		t.Fatal(err)
	}
	txid := g.Version()
	g.Close()
	fm, err := readFileMeta(path)
	if err != nil || fm.txid != txid {
		t.Fatalf("meta: %+v %v, want txid %d", fm, err, txid)
	}
	newest := int64(txid % 2) // bbolt writes txid's meta to page txid%2
	flipAt(t, path, newest*int64(fm.pageSize)+metaOffset+50)
	for _, ro := range []bool{true, false} {
		_, err := Open(path, Options{ReadOnly: ro})
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "rollback") {
			t.Errorf("read-only %v: Open after a meta-page rollback: %v", ro, err)
		}
	}
	g, err = Open(path, Options{AcceptRollback: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.GetByName("Bob"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Bob after the rollback: %v (the lost transaction enrolled him)", err)
	}
	g.Close()
	// Accepted: later opens work.
	openTest(t, path, Options{})
}

// TestNotAGallery: an empty file, a file of random bytes and a bbolt file
// whose meta pages are both destroyed are refused, and left as they were.
func TestNotAGallery(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, ro := range []bool{false, true} {
		if _, err := Open(empty, Options{Model: testModel, ReadOnly: ro}); !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), "empty") {
			t.Errorf("empty file (read-only %v): %v", ro, err)
		}
	}
	if st, _ := os.Stat(empty); st.Size() != 0 {
		t.Errorf("the empty file was written: %d bytes", st.Size())
	}
	junk := filepath.Join(dir, "junk.db")
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 20000)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	os.WriteFile(junk, data, 0o600)
	if _, err := Open(junk, Options{}); !errors.Is(err, ErrSchema) {
		t.Errorf("random bytes: %v", err)
	}
	if got, _ := os.ReadFile(junk); !bytes.Equal(got, data) {
		t.Error("the foreign file was changed")
	}
	path := filepath.Join(dir, "g.db")
	g := openTest(t, path, Options{})
	g.Close()
	fm, _ := readFileMeta(path)
	flipAt(t, path, metaOffset+60)
	flipAt(t, path, int64(fm.pageSize)+metaOffset+60)
	if _, err := Open(path, Options{}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "meta pages") {
		t.Errorf("both meta pages destroyed: %v", err)
	}
}

// TestTruncated: a file cut short is refused at Open; one cut short while
// open gives ErrCorrupt from the read that meets the missing pages (a
// memory fault in bbolt's mmap, recovered), not a crash.
func TestTruncated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	g := openTest(t, path, Options{Model: testModel})
	fillGallery(t, g, rand.New(rand.NewPCG(3, 3)), 100, 4, 128)
	g.Close()
	st, _ := os.Stat(path)
	if err := os.Truncate(path, st.Size()/2); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, Options{}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("half a file: %v", err)
	}
	if err := os.Truncate(path, st.Size()); err != nil { // zeros at the end
		t.Fatal(err)
	}
	// Zeros instead: bbolt fails as it reads them, in Open or later.
	if g, err := Open(path, Options{ReadOnly: true}); !errors.Is(err, ErrCorrupt) {
		if err != nil {
			t.Errorf("zeroed half: Open: %v", err)
		} else {
			if _, err := g.LoadIndex(); !errors.Is(err, ErrCorrupt) {
				t.Errorf("zeroed half: %v", err)
			}
			g.Close()
		}
	}
	// The failed open released its lock.
	if g, err := Open(path, Options{Timeout: 100 * time.Millisecond}); errors.Is(err, ErrLocked) {
		t.Errorf("a failed open kept the lock: %v", err)
	} else if err == nil {
		g.Close()
	}
	// Truncated under an open gallery: pages past the end fault.
	path2 := filepath.Join(t.TempDir(), "g2.db")
	g = openTest(t, path2, Options{Model: testModel})
	fillGallery(t, g, rand.New(rand.NewPCG(3, 3)), 100, 4, 128)
	g.Close()
	g = openTest(t, path2, Options{ReadOnly: true})
	if err := os.Truncate(path2, 8192); err != nil {
		t.Fatal(err)
	}
	if _, err := g.LoadIndex(); !errors.Is(err, ErrCorrupt) {
		t.Errorf("truncated while open: LoadIndex: %v", err)
	}
	if _, err := g.List(); !errors.Is(err, ErrCorrupt) {
		t.Errorf("truncated while open: List: %v", err)
	}
}

// TestGuard: a panic inside a transaction becomes ErrCorrupt.
func TestGuard(t *testing.T) {
	g := openTest(t, filepath.Join(t.TempDir(), "g.db"), Options{})
	err := g.view(func(tx *bolt.Tx) error { var m map[string]int; m["x"]++; return nil })
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("panic in view: %v", err)
	}
	err = g.update(func(tx *bolt.Tx) error { panic("page 7: unreachable") })
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "page 7") {
		t.Errorf("panic in update: %v", err)
	}
	if _, err := g.AddIdentity("after", nil); err != nil {
		t.Errorf("the gallery after a recovered panic: %v", err)
	}
}

// TestMigrationV4: a schema-3 gallery, records without checksums and no
// counts, is migrated: every record then carries its checksum and the counts
// are right.
func TestMigrationV4(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	saved := migrations
	defer func() { migrations = saved }()
	migrations = saved[:3]
	g, err := Open(path, Options{Model: testModel})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(8, 8))
	embs := fillGallery(t, g, rng, 1200, 2, 16) // more than one rewrite batch
	// Write the records as schema 3 did: bare JSON, template version 1.
	err = g.db.Update(func(tx *bolt.Tx) error {
		for _, b := range []struct {
			name []byte
			old  func(k, v []byte) []byte
		}{
			{bucketIdentities, func(k, v []byte) []byte { js, _ := openIdentity(k, v); return js }},
			{bucketTemplates, func(k, v []byte) []byte { o, _ := openTemplate(k, v); return append([]byte{1}, o[1:]...) }},
		} {
			if _, err := rewriteAll(tx.Bucket(b.name), func(k, v []byte) ([]byte, error) { return b.old(k, v), nil }); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Delete(keyCounts)
	})
	if err != nil {
		t.Fatal(err)
	}
	g.Close()
	migrations = saved
	g = openTest(t, path, Options{Model: testModel})
	if g.Meta().Schema != SchemaVersion {
		t.Fatalf("schema %d", g.Meta().Schema)
	}
	r, err := g.Check()
	if err != nil || !r.OK() || r.Identities != 1200 || r.Templates != 2400 {
		t.Fatalf("Check after migration: %+v %v", r, err)
	}
	for id, es := range embs {
		ts, err := g.Templates(id)
		if err != nil || len(ts) != 2 || ts[1].Embedding[3] != es[1][3] {
			t.Fatalf("identity %d after migration: %v %v", id, ts, err)
		}
	}
	if ix, err := g.LoadIndex(); err != nil || ix.Len() != 2400 {
		t.Fatalf("index: %v", err)
	}
}

// TestBackupWhileWriting takes backups while goroutines enroll: each backup
// checks out, and holds whole enrolls only (every person with 3 templates).
// Restoring one brings the gallery back to it.
func TestBackupWhileWriting(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "g.db")
	g := openTest(t, path, Options{Model: testModel})
	fillGallery(t, g, rand.New(rand.NewPCG(1, 1)), 500, 3, 128)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var enrolled atomic.Int64
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 5))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ts := []Template{{Embedding: randEmb(rng, 128)}, {Embedding: randEmb(rng, 128)}, {Embedding: randEmb(rng, 128)}}
				if _, _, err := g.Enroll(fmt.Sprintf("w%d-%d", w, i), nil, ts); err != nil {
					t.Error(err)
					return
				}
				enrolled.Add(1)
			}
		}()
	}
	var infos []BackupInfo
	for i := range 5 {
		// Each backup after at least one more enroll committed (an event,
		// not a sleep: under load a fixed pause may see none).
		for n, deadline := enrolled.Load(), time.Now().Add(30*time.Second); enrolled.Load() == n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("no enroll committed in 30 s")
			}
		}
		info, err := g.Backup(filepath.Join(dir, fmt.Sprintf("b%d.db", i)))
		if err != nil {
			t.Fatal(err)
		}
		infos = append(infos, info)
	}
	close(stop)
	wg.Wait()
	if enrolled.Load() == 0 {
		t.Fatal("no enroll ran during the backups")
	}
	var people []int
	for _, info := range infos {
		b := openTest(t, info.Path, Options{ReadOnly: true})
		list, err := b.List()
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range list {
			if it.Templates != 3 {
				t.Errorf("backup %s: %s has %d templates", info.Path, it.Name, it.Templates)
			}
		}
		if b.Version() != info.Txid {
			t.Errorf("backup %s: txid %d, reported %d", info.Path, b.Version(), info.Txid)
		}
		people = append(people, len(list))
		b.Close()
	}
	t.Logf("%d enrolls during 5 backups; people in the backups: %v", enrolled.Load(), people)
	if people[len(people)-1] == people[0] {
		t.Errorf("every backup holds %d people: the writers did not run alongside", people[0])
	}
	// Restore is refused while the gallery is open, then works.
	if _, err := Restore(infos[0].Path, path, 200*time.Millisecond); !errors.Is(err, ErrLocked) {
		t.Errorf("restore over an open gallery: %v", err)
	}
	g.Close()
	info, err := Restore(infos[0].Path, path, 0)
	if err != nil {
		t.Fatal(err)
	}
	g = openTest(t, path, Options{Model: testModel})
	if list, _ := g.List(); len(list) != people[0] || g.Version() != info.Txid {
		t.Errorf("restored gallery: %d people (want %d), txid %d (want %d)", len(list), people[0], g.Version(), info.Txid)
	}
	if _, _, err := g.Enroll("after-restore", nil, []Template{{Embedding: randEmb(rand.New(rand.NewPCG(1, 1)), 128)}}); err != nil {
		t.Error(err)
	}
	// A damaged backup is not restored.
	bad := filepath.Join(dir, "bad.db")
	data, _ := os.ReadFile(infos[1].Path)
	os.WriteFile(bad, data[:len(data)/2], 0o600)
	g.Close()
	if _, err := Restore(bad, path, 0); !errors.Is(err, ErrCorrupt) {
		t.Errorf("restore of a truncated backup: %v", err)
	}
}

// identityJSON is the stored JSON of an identity, for tests that look for it.
func identityJSON(it Identity) []byte {
	b, _ := json.Marshal(identityRecord{Name: it.Name, Metadata: it.Metadata, Created: it.Created, Templates: it.Templates})
	return b
}

// TestPageCycle: a branch page whose child points back at itself (bbolt's
// cursors would descend forever) is refused at Open.
func TestPageCycle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	g := openTest(t, path, Options{Model: testModel})
	fillGallery(t, g, rand.New(rand.NewPCG(4, 4)), 200, 2, 256)
	txid := g.Version()
	g.Close()
	// Find a branch page that is in use (checkPages reaches it).
	data, _ := os.ReadFile(path)
	fm, _ := readFileMeta(path)
	ps := fm.pageSize
	found := false
	for id := 2; id*ps < len(data) && !found; id++ {
		p := data[id*ps:]
		if binary.LittleEndian.Uint16(p[8:]) != pageBranch || binary.LittleEndian.Uint64(p) != uint64(id) {
			continue
		}
		saved := binary.LittleEndian.Uint64(p[pageHeader+8:])
		binary.LittleEndian.PutUint64(p[pageHeader+8:], uint64(id)) // first child: itself
		os.WriteFile(path, data, 0o600)
		if !checkPages(path, txid, func(string, ...any) {}) {
			found = true // in use: the cycle is live
			break
		}
		binary.LittleEndian.PutUint64(p[pageHeader+8:], saved) // a freed page: try another
	}
	if !found {
		t.Fatal("no branch page in use")
	}
	done := make(chan error, 1)
	go func() {
		g, err := Open(path, Options{ReadOnly: true})
		if err == nil {
			_, err = g.LoadIndex()
			t.Log("LoadIndex:", err)
			g.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "reached twice") {
			t.Errorf("Open of a file with a page cycle: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Open hangs on a page cycle")
	}
}
