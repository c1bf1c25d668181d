package enroll

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// CheckReport is what Check found.
type CheckReport struct {
	// Path is the gallery file.
	Path string `json:"path"`
	// Txid is the file's newest transaction; Recorded the one its counter
	// file holds (0: none).
	Txid     uint64 `json:"txid"`
	Recorded uint64 `json:"recorded_txid,omitempty"`
	// MetaPages says whether each bbolt meta page is valid (one invalid
	// page is normal after a crash in the middle of a commit, and is
	// rewritten by the next commit).
	MetaPages [2]bool `json:"meta_pages_valid"`
	// Identities, Templates, Photos, Crops and APIKeys are the records read.
	Identities int `json:"identities"`
	Templates  int `json:"templates"`
	Photos     int `json:"photos"`
	Crops      int `json:"crops"`
	APIKeys    int `json:"api_keys"`
	// Problems lists the damage found, one sentence each (at most
	// MaxProblems); empty when the gallery is sound.
	Problems []string `json:"problems"`
	// PageCheck says whether bbolt's own page check (tx.Check) ran: it is
	// skipped when Check's own page walk found the structure damaged, as
	// it could crash on such a file.
	PageCheck bool `json:"page_check"`
}

// MaxProblems bounds CheckReport.Problems.
const MaxProblems = 100

// OK reports whether no damage was found.
func (r *CheckReport) OK() bool { return len(r.Problems) == 0 }

func (r *CheckReport) add(format string, args ...any) {
	if len(r.Problems) < MaxProblems {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	} else if len(r.Problems) == MaxProblems {
		r.Problems = append(r.Problems, "(more problems not listed)")
	}
}

// Check reads the whole gallery in one read transaction and reports every
// damage it finds: each identity and template record's checksum, the names
// and photo indexes against the records, each crop (its checksum, a JPEG
// within MaxCropBytes, of a template that exists), each identity's template
// count, the record counts, the API key records, the transaction counter,
// and then bbolt's own page check (tx.Check: every page reachable once, freelist
// consistent). The error is for a failure to run the check at all.
func (g *Gallery) Check() (*CheckReport, error) {
	r := &CheckReport{Path: g.path}
	if fm, err := readFileMeta(g.path); err != nil {
		r.add("file: %v", err)
	} else {
		r.MetaPages = fm.valid
		for i, ok := range fm.valid {
			if !ok {
				r.add("bbolt meta page %d is invalid (normal after a crash during a commit; otherwise damage)", i)
			}
		}
	}
	if rec, ok, err := readSidecar(g.path + SidecarSuffix); err != nil {
		r.add("%v", err)
	} else if ok {
		r.Recorded = rec
	}
	g.mu.Lock()
	if g.sideErr != nil {
		r.add("the transaction counter could not be written: %v", g.sideErr)
	}
	g.mu.Unlock()
	err := g.view(func(tx *bolt.Tx) error {
		r.Txid = uint64(tx.ID())
		if r.Recorded > r.Txid {
			r.add("transaction %d was committed but the file's newest is %d (meta-page rollback)", r.Recorded, r.Txid)
		}
		// The page structure first, with reads of our own; bbolt's
		// tx.Check runs in a goroutine of its own, where a panic on a
		// damaged page could not be recovered, so it runs only on a
		// structure found sound.
		if !checkPages(g.path, r.Txid, r.add) {
			return nil
		}
		if err := guard(func() error { g.checkRecords(tx, r); return nil }); err != nil {
			r.add("walking the records: %v", err)
			return nil
		}
		r.PageCheck = true
		for err := range tx.Check() {
			r.add("bbolt: %v", err)
		}
		return nil
	})
	return r, err
}

// checkRecords walks every bucket of a gallery, adding what is wrong to r.
func (g *Gallery) checkRecords(tx *bolt.Tx, r *CheckReport) {
	for _, b := range [][]byte{bucketMeta, bucketIdentities, bucketNames, bucketTemplates, bucketPhotos, bucketAPIKeys, bucketCrops} {
		if tx.Bucket(b) == nil {
			r.add("bucket %q is missing", b)
			return
		}
	}
	meta := readMeta(tx)
	if meta.Schema != latestSchema() {
		r.add("schema %d, want %d", meta.Schema, latestSchema())
	}
	people := map[uint64]Identity{}
	_ = tx.Bucket(bucketIdentities).ForEach(func(k, v []byte) error {
		r.Identities++
		if len(k) != 8 {
			r.add("identity key %x is not 8 bytes", k)
			return nil
		}
		it, err := decodeIdentity(binary.BigEndian.Uint64(k), v)
		if err != nil {
			r.add("%v", err)
			return nil
		}
		people[it.ID] = it
		return nil
	})
	named := map[uint64]bool{}
	_ = tx.Bucket(bucketNames).ForEach(func(k, v []byte) error {
		if len(v) != 8 {
			r.add("names index: the entry of %q is damaged", k)
			return nil
		}
		id := binary.BigEndian.Uint64(v)
		it, ok := people[id]
		switch {
		case !ok:
			r.add("names index: %q points at identity %d, which does not exist or is damaged", k, id)
		case it.Name != string(k):
			r.add("names index: %q points at identity %d, called %q", k, id, it.Name)
		default:
			named[id] = true
		}
		return nil
	})
	seen := map[uint64]int{}
	withPhoto := map[string]bool{}
	emb := make([]float32, 0, meta.Dim)
	_ = tx.Bucket(bucketTemplates).ForEach(func(k, v []byte) error {
		r.Templates++
		t, err := decodeTemplate(k, v, emb[:cap(emb)])
		if err != nil {
			r.add("%v", err)
			return nil
		}
		if len(t.Embedding) != meta.Dim {
			r.add("%s has %d values, the gallery %d", templateName(k), len(t.Embedding), meta.Dim)
		}
		if _, ok := people[t.IdentityID]; !ok {
			r.add("%s belongs to no identity", templateName(k))
		}
		seen[t.IdentityID]++
		if t.PhotoSHA256 != "" {
			withPhoto[string(photoSHA(v))+string(k)] = true
		}
		return nil
	})
	for id, it := range people {
		if !named[id] {
			r.add("identity %d (%q) is missing from the names index", id, it.Name)
		}
		if seen[id] != it.Templates {
			r.add("identity %d (%q) has %d templates, its record says %d", id, it.Name, seen[id], it.Templates)
		}
	}
	_ = tx.Bucket(bucketPhotos).ForEach(func(k, _ []byte) error {
		r.Photos++
		if len(k) != 48 {
			r.add("photo index key %x is not 48 bytes", k)
		} else if !withPhoto[string(k)] {
			r.add("photo index: %s of photo %s does not exist or comes from another photo", templateName(k[32:]), hex.EncodeToString(k[:32]))
		}
		delete(withPhoto, string(k))
		return nil
	})
	for k := range withPhoto {
		r.add("photo index: %s is missing", templateName([]byte(k[32:])))
	}
	tb := tx.Bucket(bucketTemplates)
	_ = tx.Bucket(bucketCrops).ForEach(func(k, v []byte) error {
		r.Crops++
		if _, err := openCrop(k, v); err != nil {
			r.add("%v", err)
		} else if tb.Get(k) == nil {
			r.add("the crop of %s: no such template", templateName(k))
		}
		return nil
	})
	if c, ok, err := getCounts(tx); err != nil {
		r.add("%v", err)
	} else if !ok {
		r.add("the record counts are missing")
	} else if c.identities != uint64(r.Identities) || c.templates != uint64(r.Templates) {
		r.add("%d identities and %d templates found, %d and %d recorded", r.Identities, r.Templates, c.identities, c.templates)
	}
	_ = tx.Bucket(bucketAPIKeys).ForEach(func(k, v []byte) error {
		r.APIKeys++
		var rec APIKey
		if err := json.Unmarshal(v, &rec); err != nil {
			r.add("API key record %.12s…: %v", k, err)
		}
		return nil
	})
}

// BackupInfo describes a backup.
type BackupInfo struct {
	// Path is the backup file.
	Path string `json:"path"`
	// Txid is the gallery transaction the copy holds.
	Txid uint64 `json:"txid"`
	// Bytes is the size of the copy.
	Bytes int64 `json:"bytes"`
}

// CopyTo writes a consistent copy of the whole gallery file, as of one
// read transaction, to w (bbolt's tx.WriteTo): writers go on meanwhile, and
// the copy holds none of their later transactions. It returns the bytes
// written and the transaction copied.
func (g *Gallery) CopyTo(w io.Writer) (n int64, txid uint64, err error) {
	err = g.view(func(tx *bolt.Tx) error {
		txid = uint64(tx.ID())
		n, err = tx.WriteTo(w)
		return err
	})
	return n, txid, err
}

// Backup writes a consistent copy of the gallery to path (mode 0600) while
// other goroutines of this process go on reading and writing (a hot
// backup, see CopyTo). The copy is written to a temporary file beside
// path, synced, checked (Check: it must be sound), and only then renamed
// over path, so path never holds a partial backup. Another process cannot
// back up a gallery that a server holds open (bbolt's file lock): that
// goes through the server.
func (g *Gallery) Backup(path string) (BackupInfo, error) {
	if abs, err := filepath.Abs(path); err == nil {
		if own, err := filepath.Abs(g.path); err == nil && abs == own {
			return BackupInfo{}, fmt.Errorf("%w: backup %s: that is the gallery itself", ErrInvalid, path)
		}
	}
	info, err := writeBackup(path, g.CopyTo)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("backup of %s: %w", g.path, err)
	}
	return info, nil
}

// SaveBackup writes a backup received as a stream (from a running server's
// GET /v1/backup) to path the way Backup does: into a temporary file beside
// path, synced, checked like Check (a truncated or damaged stream is
// refused and path is left as it was), then renamed over path (mode 0600).
// txid is the transaction the server copied, reported back in the info.
func SaveBackup(r io.Reader, path string, txid uint64) (BackupInfo, error) {
	info, err := writeBackup(path, func(w io.Writer) (int64, uint64, error) {
		n, err := io.Copy(w, r)
		return n, txid, err
	})
	if err != nil {
		return BackupInfo{}, fmt.Errorf("backup to %s: %w", path, err)
	}
	return info, nil
}

// writeBackup writes what copyTo yields to a temporary file beside path,
// syncs and checks it, and renames it over path.
func writeBackup(path string, copyTo func(io.Writer) (int64, uint64, error)) (BackupInfo, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return BackupInfo{}, err
	}
	defer os.Remove(tmp.Name())
	n, txid, err := copyTo(tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return BackupInfo{}, err
	}
	if err := checkFile(tmp.Name()); err != nil {
		return BackupInfo{}, fmt.Errorf("the copy does not check out: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return BackupInfo{}, err
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return BackupInfo{}, err
	}
	return BackupInfo{Path: path, Txid: txid, Bytes: n}, nil
}

// checkFile opens a gallery file read-only and checks it.
func checkFile(path string) error {
	g, err := Open(path, Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return err
	}
	defer g.Close()
	r, err := g.Check()
	if err != nil {
		return err
	}
	if !r.OK() {
		return fmt.Errorf("%w: %s", ErrCorrupt, r.Problems[0])
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}

// Restore replaces the gallery at path with the backup at from, after
// checking the backup (Check: it must be sound and of this program's
// schema or older). It takes the gallery's file lock first, so it fails
// with ErrLocked (after timeout; 0: DefaultTimeout) while another process,
// a server, holds the gallery: stop it first. The backup is copied beside
// path, synced and renamed into place, and the transaction counter is reset
// to the backup's: what was committed after the backup is gone, by choice.
func Restore(from, path string, timeout time.Duration) (BackupInfo, error) {
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	if err := checkFile(from); err != nil {
		return BackupInfo{}, fmt.Errorf("restore from %s: %w", from, err)
	}
	src, err := os.Open(from)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("restore: %w", err)
	}
	defer src.Close()
	fm, err := readFileMeta(from)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("restore from %s: %w", from, err)
	}
	// Hold the gallery's lock while it is replaced.
	if cur, err := os.OpenFile(path, os.O_RDWR, 0); err == nil {
		defer cur.Close()
		if err := flockWait(cur.Fd(), true, timeout); err != nil {
			if errors.Is(err, errLockTimeout) {
				return BackupInfo{}, fmt.Errorf("restore %s: %w (waited %v): stop the process using it first", path, ErrLocked, timeout)
			}
			return BackupInfo{}, fmt.Errorf("restore %s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return BackupInfo{}, fmt.Errorf("restore: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".restore-*")
	if err != nil {
		return BackupInfo{}, fmt.Errorf("restore: %w", err)
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, src)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		return BackupInfo{}, fmt.Errorf("restore %s: %w", path, err)
	}
	side, err := openSidecar(path + SidecarSuffix)
	if err == nil {
		err = side.force(fm.txid)
		side.close()
	}
	if err != nil {
		return BackupInfo{}, fmt.Errorf("restore %s: the gallery is restored, but %w", path, err)
	}
	return BackupInfo{Path: path, Txid: fm.txid, Bytes: n}, nil
}
