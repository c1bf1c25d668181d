package enroll

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"
)

// # Damage
//
// A gallery file can be damaged by a bad disk, a careless copy or an
// unlucky operator. This file holds what notices it before it turns into a
// crash or a wrong answer:
//
//   - guard: every bbolt access runs under it; a bbolt panic, or a memory
//     fault reading a page past the end of a truncated file through bbolt's
//     mmap, becomes an ErrCorrupt error.
//   - readFileMeta: the two bbolt meta pages are read and validated before
//     bbolt opens the file, so an empty file, a foreign file, a file whose
//     two meta pages are destroyed and a truncated file (shorter than its
//     newest transaction's high-water mark) are refused with a message
//     instead of being adopted or crashing later.
//   - record checksums (CRC-32C of key and value, schema 4): see
//     encodeTemplate and putIdentity.
//   - the committed-transaction counter (sidecar, below).
//
// # Meta-page rollback and the sidecar
//
// bbolt writes each transaction's meta page alternately to page 0 and 1 and
// on open takes the valid one with the higher transaction id. If the newest
// meta page is damaged, bbolt silently falls back to the older one: the last
// committed transaction is gone, and the file is self-consistent, so nothing
// inside it can tell. A counter kept in a bucket would be rolled back with
// the tree it lives in (the old meta page points at the old tree, which
// holds the old counter), so the counter must live outside the file. The
// gallery keeps it in a sidecar, PATH.txid (16 bytes: "fvtx", the txid,
// CRC-32C; mode 0600), written and fsync'd after every commit and at every
// read-write Open, before the write returns. Its txid is therefore never
// higher than the file's newest durable transaction, except after a
// rollback (or an older file copied over the gallery by hand), which Open
// then refuses with ErrCorrupt. A missing sidecar (a gallery copied without
// it, a backup) is not an error: it is recreated by the next read-write
// open. A sidecar lost in a power failure before its fsync can only be
// behind the file, never ahead: the check can miss, it cannot cry wolf.
// Restore rewrites the sidecar for the restored file.

// SidecarSuffix is appended to a gallery's path to name the file holding
// its committed-transaction counter.
const SidecarSuffix = ".txid"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recordSum is the CRC-32C of a record's key and value: a value moved under
// another key fails its check too.
func recordSum(key, val []byte) uint32 {
	return crc32.Update(crc32.Checksum(key, castagnoli), castagnoli, val)
}

// guard runs fn, turning a panic (bbolt panics on many kinds of damage) and
// a memory fault (a page beyond the end of a truncated file, read through
// bbolt's mmap) into an ErrCorrupt error instead of a crash. bbolt's View
// and Update roll their transaction back on the way out.
func guard(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v (run `facever gallery check`; restore a backup with `facever gallery restore`)", ErrCorrupt, p)
		}
	}()
	return fn()
}

// fileMeta is what a gallery file's bbolt meta pages say.
type fileMeta struct {
	size     int64
	pageSize int
	valid    [2]bool
	txids    [2]uint64
	txid     uint64 // of the newest valid meta page
	pgid     uint64 // its high-water mark, in pages
}

const (
	boltMagic   = 0xED0CDAED
	boltVersion = 2
	metaOffset  = 16 // page header: id, flags, count, overflow
	metaSumEnd  = metaOffset + 56
)

// parseMeta validates one meta page as bbolt does (magic, version,
// FNV-64a checksum) and returns its page size, high-water mark and txid.
func parseMeta(p []byte) (pageSize int, pgid, txid uint64, err error) {
	if len(p) < metaSumEnd+8 {
		return 0, 0, 0, errors.New("short")
	}
	le := binary.LittleEndian
	if le.Uint32(p[metaOffset:]) != boltMagic {
		return 0, 0, 0, errors.New("not a bbolt meta page")
	}
	if le.Uint32(p[metaOffset+4:]) != boltVersion {
		return 0, 0, 0, errors.New("unknown bbolt version")
	}
	h := fnv.New64a()
	h.Write(p[metaOffset:metaSumEnd])
	if h.Sum64() != le.Uint64(p[metaSumEnd:]) {
		return 0, 0, 0, errors.New("checksum mismatch")
	}
	return int(le.Uint32(p[metaOffset+8:])), le.Uint64(p[metaOffset+40:]), le.Uint64(p[metaOffset+48:]), nil
}

// readFileMeta reads the meta pages of an existing, non-empty file.
func readFileMeta(path string) (fileMeta, error) {
	f, err := os.Open(path)
	if err != nil {
		return fileMeta{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fileMeta{}, err
	}
	m := fileMeta{size: st.Size()}
	buf := make([]byte, metaSumEnd+8)
	magic := false
	for i := range 2 {
		off := int64(0)
		if i == 1 {
			// Page 1 starts one page in: at meta 0's page size, or at
			// bbolt's default when meta 0 is unreadable.
			off = int64(m.pageSize)
			if off == 0 {
				off = 4096
			}
		}
		clear(buf)
		if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
			return m, err
		}
		magic = magic || binary.LittleEndian.Uint32(buf[metaOffset:]) == boltMagic
		ps, pgid, txid, err := parseMeta(buf)
		if err != nil || ps < 512 || ps > 1<<16 {
			continue
		}
		if m.pageSize == 0 {
			m.pageSize = ps
		}
		m.valid[i], m.txids[i] = true, txid
		if txid >= m.txid {
			m.txid, m.pgid = txid, pgid
			m.pageSize = ps
		}
	}
	switch {
	case !m.valid[0] && !m.valid[1] && !magic:
		return m, fmt.Errorf("%w: not a facever gallery (not a bbolt database file)", ErrSchema)
	case !m.valid[0] && !m.valid[1]:
		return m, fmt.Errorf("%w: both bbolt meta pages are damaged", ErrCorrupt)
	case m.pgid < 2:
		return m, fmt.Errorf("%w: the meta page of transaction %d claims %d pages", ErrCorrupt, m.txid, m.pgid)
	case m.pgid > uint64(m.size)/uint64(m.pageSize):
		return m, fmt.Errorf("%w: truncated: the file is %d bytes, its last transaction (%d) needs %d pages of %d bytes", ErrCorrupt, m.size, m.txid, m.pgid, m.pageSize)
	}
	return m, nil
}

var errLockTimeout = errors.New("timeout waiting for the file lock")

// opener returns bbolt's OpenFile hook for a gallery: it opens the file and
// takes bbolt's lock itself, so that what it then checks cannot change
// under it. A new gallery is created under a temporary name, locked, and
// linked into place, so that no other process ever sees it unlocked and
// empty; an existing file is refused when it is empty (a gallery is never
// empty once created) or when its meta pages say it is foreign, destroyed
// or truncated (readFileMeta).
//
// *opened receives the file, so that Open can close it (and release the
// lock) when bbolt panics half-way through opening a damaged file.
func opener(readOnly bool, timeout time.Duration, opened **os.File) func(string, int, os.FileMode) (*os.File, error) {
	return func(path string, flag int, mode os.FileMode) (*os.File, error) {
		if !readOnly {
			f, err := createLocked(path, mode)
			*opened = f
			if f != nil || err != nil {
				return f, err
			}
		}
		f, err := os.OpenFile(path, flag&^os.O_CREATE, mode)
		if err != nil {
			return nil, err
		}
		if err := flockWait(f.Fd(), !readOnly, timeout); err != nil {
			f.Close()
			return nil, err
		}
		st, err := f.Stat()
		if err == nil && st.Size() == 0 {
			err = fmt.Errorf("%w: the file is empty (0 bytes), not a gallery: remove it to start a new gallery there", ErrSchema)
		}
		if err == nil {
			_, err = readFileMeta(path)
		}
		if err != nil {
			f.Close()
			return nil, err
		}
		*opened = f
		return f, nil
	}
}

// createLocked creates path, locked, if it does not exist; (nil, nil) when
// it does.
func createLocked(path string, mode os.FileMode) (*os.File, error) {
	if _, err := os.Lstat(path); err == nil {
		return nil, nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".new-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err == nil {
		err = flockWait(tmp.Fd(), true, 0)
	}
	if err == nil {
		if err = os.Link(tmp.Name(), path); errors.Is(err, os.ErrExist) {
			tmp.Close()
			return nil, nil // someone else created it first
		}
	}
	if err != nil {
		tmp.Close()
		return nil, err
	}
	return tmp, nil
}

// sidecar is the committed-transaction counter file of one open gallery.
type sidecar struct {
	path string
	mu   sync.Mutex
	f    *os.File // nil: read-only gallery
	txid uint64   // the value written last
}

const sidecarMagic = "fvtx"

// readSidecar returns the txid recorded beside a gallery; ok is false when
// there is no sidecar, err non-nil when it is damaged.
func readSidecar(path string) (txid uint64, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	if len(b) != 16 || string(b[:4]) != sidecarMagic || crc32.Checksum(b[:12], castagnoli) != binary.BigEndian.Uint32(b[12:]) {
		return 0, false, fmt.Errorf("%w: the transaction counter %s is damaged (delete it to accept the gallery as it is)", ErrCorrupt, path)
	}
	return binary.BigEndian.Uint64(b[4:]), true, nil
}

// openSidecar opens (creating, mode 0600) the counter file for writing.
func openSidecar(path string) (*sidecar, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, FileMode)
	if err != nil {
		return nil, fmt.Errorf("transaction counter: %w", err)
	}
	return &sidecar{path: path, f: f}, nil
}

// record writes txid (when newer than the last value written) and syncs it.
func (s *sidecar) record(txid uint64) error {
	if s == nil || s.f == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if txid <= s.txid {
		return nil
	}
	if err := writeSidecar(s.f, txid); err != nil {
		return fmt.Errorf("transaction counter %s: %w", s.path, err)
	}
	s.txid = txid
	return nil
}

// force writes txid even when lower (Open with AcceptRollback, Restore).
func (s *sidecar) force(txid uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := writeSidecar(s.f, txid); err != nil {
		return fmt.Errorf("transaction counter %s: %w", s.path, err)
	}
	s.txid = txid
	return nil
}

func writeSidecar(f *os.File, txid uint64) error {
	var b [16]byte
	copy(b[:], sidecarMagic)
	binary.BigEndian.PutUint64(b[4:], txid)
	binary.BigEndian.PutUint32(b[12:], crc32.Checksum(b[:12], castagnoli))
	if _, err := f.WriteAt(b[:], 0); err != nil {
		return err
	}
	if err := f.Truncate(16); err != nil {
		return err
	}
	return f.Sync()
}

func (s *sidecar) close() error {
	if s == nil || s.f == nil {
		return nil
	}
	return s.f.Close()
}
