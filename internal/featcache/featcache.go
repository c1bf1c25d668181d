// Package featcache keeps backbone features of photos on disk, keyed by the
// photo's content, the backbone and the alignment mode, so that evaluation
// and training over the same photos run the detector and backbone only once.
//
// The cache is one bbolt file (an ACID B+tree in a single file): a crash
// mid-write leaves either the old or the new entry, never a torn one.
//
// What it holds is biometric data: for every photo read, a sha256 of its
// content (not the photo) and the backbone feature of its largest face.
// The file is kept readable by its owner only (0600, tightened on every
// Open), and Purge deletes it.
package featcache

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

var bucket = []byte("features/v1")

// Cache is an open feature cache.
type Cache struct {
	db *bolt.DB
}

// DefaultPath is the cache file used when none is given:
// $FACEVER_CACHE, else the user cache directory's facever/features.db.
func DefaultPath() string {
	if p := os.Getenv("FACEVER_CACHE"); p != "" {
		return p
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "facever", "features.db")
}

// FileMode is the cache file's permission: the owner's only, since the
// features are biometric data.
const FileMode os.FileMode = 0o600

// Open opens (creating if needed) the cache file at path. A file that
// exists with wider permissions (say 0644, from an older version or a
// umask) is tightened to FileMode before anything is read from it.
func Open(path string) (*Cache, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if err := tighten(path); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, FileMode, &bolt.Options{Timeout: 30 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open feature cache %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		db.Close()
		return nil, err
	}
	return &Cache{db: db}, nil
}

// tighten makes an existing file at path readable by its owner only.
func tighten(path string) error {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("feature cache %s: %w", path, err)
	}
	if st.Mode().Perm()&^FileMode != 0 {
		if err := os.Chmod(path, FileMode); err != nil {
			return fmt.Errorf("feature cache %s is readable by others (%v) and could not be tightened: %w", path, st.Mode().Perm(), err)
		}
	}
	return nil
}

// Stats describes a cache file.
type Stats struct {
	// Path is the file.
	Path string `json:"path"`
	// Bytes is its size on disk.
	Bytes int64 `json:"bytes"`
	// Entries is how many photos it holds features of.
	Entries int `json:"entries"`
	// Mode is its permission bits.
	Mode string `json:"mode"`
}

// Stat opens the cache at path read-only and counts its entries. A missing
// file is fs.ErrNotExist; a file that is not a feature cache is an error.
func Stat(path string) (Stats, error) {
	db, err := openExisting(path, true)
	if err != nil {
		return Stats{}, err
	}
	defer db.Close()
	st := Stats{Path: path}
	err = db.View(func(tx *bolt.Tx) error {
		st.Entries = tx.Bucket(bucket).Stats().KeyN
		return nil
	})
	if fi, serr := os.Stat(path); serr == nil {
		st.Bytes, st.Mode = fi.Size(), fi.Mode().Perm().String()
	}
	return st, err
}

// Purge deletes the cache file at path, after checking that it is a
// feature cache (a file given by mistake is not removed) and that no other
// process has it open. It returns what the file held. A missing file is
// fs.ErrNotExist.
func Purge(path string) (Stats, error) {
	db, err := openExisting(path, false)
	if err != nil {
		return Stats{}, err
	}
	st := Stats{Path: path}
	_ = db.View(func(tx *bolt.Tx) error {
		st.Entries = tx.Bucket(bucket).Stats().KeyN
		return nil
	})
	if fi, serr := os.Stat(path); serr == nil {
		st.Bytes, st.Mode = fi.Size(), fi.Mode().Perm().String()
	}
	// The file is removed while this process holds its lock, so that no
	// other process can start writing to it in between.
	rerr := os.Remove(path)
	if err := db.Close(); err != nil && rerr == nil {
		rerr = err
	}
	if rerr != nil {
		return Stats{}, fmt.Errorf("purge feature cache %s: %w", path, rerr)
	}
	return st, nil
}

// openExisting opens an existing cache file and checks that it is one.
func openExisting(path string, readOnly bool) (*bolt.DB, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("feature cache %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() || fi.Size() == 0 {
		return nil, fmt.Errorf("%s is not a feature cache (an empty or special file); not touched", path)
	}
	db, err := bolt.Open(path, FileMode, &bolt.Options{Timeout: 2 * time.Second, ReadOnly: readOnly})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("feature cache %s is in use by another facever process; try again when it is done", path)
	}
	if err != nil {
		return nil, fmt.Errorf("%s is not a feature cache (%v); not touched", path, err)
	}
	var ok bool
	_ = db.View(func(tx *bolt.Tx) error { ok = tx.Bucket(bucket) != nil; return nil })
	if !ok {
		db.Close()
		return nil, fmt.Errorf("%s is a bbolt file but not a feature cache (no %s bucket); not touched", path, bucket)
	}
	return db, nil
}

// Close closes the cache file.
func (c *Cache) Close() error { return c.db.Close() }

// Key identifies a feature: the photo's content, the backbone's sha256 and
// a mode string (alignment recipe, detector options).
func Key(content []byte, backboneSHA, mode string) []byte {
	h := sha256.New()
	h.Write(content)
	h.Write([]byte{0})
	h.Write([]byte(backboneSHA))
	h.Write([]byte{0})
	h.Write([]byte(mode))
	return h.Sum(nil)
}

// Entry is what the cache holds for one photo.
type Entry struct {
	// Faces is how many faces the detector found (0: none; Feature is nil).
	Faces int
	// Feature is the normalised backbone feature of the largest face.
	Feature []float32
	// Quality is that face's quality score (align.Quality), NaN when not
	// known (aligned input, or an entry written before quality was kept).
	Quality float64
}

// Get returns the entry for key, and whether it was there.
func (c *Cache) Get(key []byte) (Entry, bool, error) {
	var e Entry
	var ok bool
	err := c.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucket).Get(key)
		if v == nil {
			return nil
		}
		var err error
		e, err = decode(v)
		ok = err == nil
		return nil // a damaged entry is a miss: it is recomputed
	})
	return e, ok, err
}

// PutMany stores several entries in one transaction.
func (c *Cache) PutMany(keys [][]byte, entries []Entry) error {
	if len(keys) != len(entries) {
		return errors.New("featcache: keys and entries differ in length")
	}
	return c.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		for i := range keys {
			if err := b.Put(keys[i], encode(entries[i])); err != nil {
				return err
			}
		}
		return nil
	})
}

// encode lays an entry out as faces (uint32), n (uint32), n float32s and
// the quality (float64; entries written before it was kept end after the
// feature and read as NaN).
func encode(e Entry) []byte {
	n := 8 + 4*len(e.Feature)
	out := make([]byte, n+8)
	binary.LittleEndian.PutUint32(out, uint32(e.Faces))
	binary.LittleEndian.PutUint32(out[4:], uint32(len(e.Feature)))
	for i, v := range e.Feature {
		binary.LittleEndian.PutUint32(out[8+4*i:], math.Float32bits(v))
	}
	binary.LittleEndian.PutUint64(out[n:], math.Float64bits(e.Quality))
	return out
}

func decode(v []byte) (Entry, error) {
	if len(v) < 8 {
		return Entry{}, errors.New("short entry")
	}
	faces := int(binary.LittleEndian.Uint32(v))
	n := int(binary.LittleEndian.Uint32(v[4:]))
	if n < 0 || n > len(v)/4 || len(v) != 8+4*n && len(v) != 16+4*n {
		return Entry{}, errors.New("entry length mismatch")
	}
	e := Entry{Faces: faces, Quality: math.NaN()}
	if len(v) == 16+4*n {
		e.Quality = math.Float64frombits(binary.LittleEndian.Uint64(v[8+4*n:]))
	}
	if n > 0 {
		e.Feature = make([]float32, n)
		for i := range e.Feature {
			e.Feature[i] = math.Float32frombits(binary.LittleEndian.Uint32(v[8+4*i:]))
		}
	}
	return e, nil
}
