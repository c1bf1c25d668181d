// Package featcache keeps backbone features of photos on disk, keyed by the
// photo's content, the backbone and the alignment mode, so that evaluation
// and training over the same photos run the detector and backbone only once.
//
// The cache is one bbolt file (an ACID B+tree in a single file): a crash
// mid-write leaves either the old or the new entry, never a torn one.
package featcache

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
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

// Open opens (creating if needed) the cache file at path.
func Open(path string) (*Cache, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 30 * time.Second})
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

func encode(e Entry) []byte {
	out := make([]byte, 8+4*len(e.Feature))
	binary.LittleEndian.PutUint32(out, uint32(e.Faces))
	binary.LittleEndian.PutUint32(out[4:], uint32(len(e.Feature)))
	for i, v := range e.Feature {
		binary.LittleEndian.PutUint32(out[8+4*i:], math.Float32bits(v))
	}
	return out
}

func decode(v []byte) (Entry, error) {
	if len(v) < 8 {
		return Entry{}, errors.New("short entry")
	}
	faces := int(binary.LittleEndian.Uint32(v))
	n := int(binary.LittleEndian.Uint32(v[4:]))
	if len(v) != 8+4*n {
		return Entry{}, errors.New("entry length mismatch")
	}
	e := Entry{Faces: faces}
	if n > 0 {
		e.Feature = make([]float32, n)
		for i := range e.Feature {
			e.Feature[i] = math.Float32frombits(binary.LittleEndian.Uint32(v[8+4*i:]))
		}
	}
	return e, nil
}
