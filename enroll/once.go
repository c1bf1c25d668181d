package enroll

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Idempotent writes: a client names a write with a key of its choosing
// (HTTP's Idempotency-Key header) and the gallery remembers, in the same
// transaction as the write, the key, a digest of the request and the
// answer, so that a retried request (after a timeout, a lost connection or
// a restart of the server) gets the first answer and writes nothing more.

var (
	bucketOnce       = []byte("idempotency")
	bucketOnceByTime = []byte("idempotency_by_time")
)

// OnceTTL is how long an idempotency key is remembered; an older one is
// forgotten (removed by a later idempotent write) and counts as new.
const OnceTTL = 24 * time.Hour

// MaxOnceKey is the longest idempotency key, in bytes.
const MaxOnceKey = 255

// ErrOnceMismatch: an idempotency key was used before for another request.
var ErrOnceMismatch = errors.New("enroll: idempotency key already used for a different request")

// OnceRecord is what the gallery remembers of an idempotent write.
type OnceRecord struct {
	// Digest identifies the request (e.g. a sha256 of its route and body).
	Digest string `json:"digest"`
	// Status and Body are the answer that was given.
	Status int    `json:"status"`
	Body   []byte `json:"body"`
	// Created is when the write was made.
	Created time.Time `json:"created"`
}

func checkOnceKey(key string) error {
	if key == "" || len(key) > MaxOnceKey {
		return fmt.Errorf("%w: idempotency key must be 1 to %d bytes, not %d", ErrInvalid, MaxOnceKey, len(key))
	}
	return nil
}

// onceLookup returns the live record of key, if any.
func onceLookup(tx *bolt.Tx, key string, now time.Time) (OnceRecord, bool, error) {
	b := tx.Bucket(bucketOnce)
	if b == nil {
		return OnceRecord{}, false, nil
	}
	v := b.Get([]byte(key))
	if v == nil {
		return OnceRecord{}, false, nil
	}
	var rec OnceRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return OnceRecord{}, false, fmt.Errorf("%w: idempotency record %q: %v", ErrCorrupt, key, err)
	}
	if now.Sub(rec.Created) > OnceTTL {
		return OnceRecord{}, false, nil
	}
	return rec, true, nil
}

// LookupOnce returns the record of idempotency key key, when it is
// remembered (ok false otherwise).
func (g *Gallery) LookupOnce(key string) (rec OnceRecord, ok bool, err error) {
	if err := checkOnceKey(key); err != nil {
		return OnceRecord{}, false, err
	}
	err = g.view(func(tx *bolt.Tx) error {
		rec, ok, err = onceLookup(tx, key, time.Now())
		return err
	})
	return rec, ok, err
}

// AddTemplatesOnce is AddTemplates named by idempotency key key, for the
// request whose digest is digest. When the key is remembered with the same
// digest it adds nothing and returns the remembered record (replay true);
// with another digest it fails with ErrOnceMismatch. Otherwise it adds the
// templates, calls answer with the identity as it now is and the saved
// templates, and stores the key with answer's status and body, all in one
// transaction: a write and its record commit together or not at all.
func (g *Gallery) AddTemplatesOnce(id uint64, ts []Template, key, digest string, answer func(Identity, []Template) (int, []byte, error)) (rec OnceRecord, replay bool, err error) {
	if err := checkOnceKey(key); err != nil {
		return OnceRecord{}, false, err
	}
	err = g.update(func(tx *bolt.Tx) error {
		now := time.Now().UTC()
		old, ok, err := onceLookup(tx, key, now)
		if err != nil {
			return err
		}
		if ok {
			if old.Digest != digest {
				return fmt.Errorf("%w (key %q, first used %s)", ErrOnceMismatch, key, old.Created.Format(time.RFC3339))
			}
			rec, replay = old, true
			return nil
		}
		it, err := getIdentity(tx, id)
		if err != nil {
			return err
		}
		saved, err := g.addTemplates(tx, &it, ts)
		if err != nil {
			return err
		}
		status, body, err := answer(it, saved)
		if err != nil {
			return err
		}
		rec = OnceRecord{Digest: digest, Status: status, Body: body, Created: now}
		return putOnce(tx, key, rec)
	})
	return rec, replay, err
}

// putOnce stores rec under key, and forgets up to 100 expired keys.
func putOnce(tx *bolt.Tx, key string, rec OnceRecord) error {
	b, err := tx.CreateBucketIfNotExists(bucketOnce)
	if err != nil {
		return err
	}
	bt, err := tx.CreateBucketIfNotExists(bucketOnceByTime)
	if err != nil {
		return err
	}
	// The time index: created (Unix ns, big endian) ‖ key.
	limit := u64(uint64(rec.Created.Add(-OnceTTL).UnixNano()))
	var expired [][]byte
	c := bt.Cursor()
	for k, _ := c.First(); k != nil && len(expired) < 100 && len(k) >= 8 && bytes.Compare(k[:8], limit) < 0; k, _ = c.Next() {
		expired = append(expired, append([]byte(nil), k...))
	}
	for _, k := range expired {
		if err := bt.Delete(k); err != nil {
			return err
		}
		// Forget the key unless it was used again since (a newer record).
		if v := b.Get(k[8:]); v != nil {
			var r OnceRecord
			if json.Unmarshal(v, &r) != nil || uint64(r.Created.UnixNano()) == binary.BigEndian.Uint64(k[:8]) {
				if err := b.Delete(k[8:]); err != nil {
					return err
				}
			}
		}
	}
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := b.Put([]byte(key), v); err != nil {
		return err
	}
	return bt.Put(append(u64(uint64(rec.Created.UnixNano())), key...), nil)
}
