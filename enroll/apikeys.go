package enroll

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

var bucketAPIKeys = []byte("apikeys")

// ErrBadKey is returned by CheckAPIKey for an unknown or malformed key.
var ErrBadKey = errors.New("enroll: unknown API key")

// APIKey describes a key of the HTTP API. The key itself is shown once, at
// creation; the gallery stores only its sha256.
type APIKey struct {
	// Name says whom the key is for.
	Name string `json:"name"`
	// Prefix is the key's first characters, to tell keys apart.
	Prefix  string    `json:"prefix"`
	Created time.Time `json:"created"`
}

// keyPrefix starts every facever API key, so a leaked key is recognisable.
const keyPrefix = "fvk_"

func keyHash(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return []byte(hex.EncodeToString(h[:]))
}

// CreateAPIKey makes a new random key (256 bits) for name, stores its
// sha256, and returns the key: it cannot be recovered later.
func (g *Gallery) CreateAPIKey(name string) (string, APIKey, error) {
	name, err := NormalizeName(name)
	if err != nil {
		return "", APIKey{}, err
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", APIKey{}, err
	}
	key := keyPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	rec := APIKey{Name: name, Prefix: key[:len(keyPrefix)+6], Created: time.Now().UTC()}
	v, err := json.Marshal(rec)
	if err != nil {
		return "", APIKey{}, err
	}
	err = g.update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketAPIKeys)
		if err != nil {
			return err
		}
		return b.Put(keyHash(key), v)
	})
	if err != nil {
		return "", APIKey{}, err
	}
	return key, rec, nil
}

// CheckAPIKey reports the key's record, or ErrBadKey.
func (g *Gallery) CheckAPIKey(key string) (APIKey, error) {
	if !strings.HasPrefix(key, keyPrefix) || len(key) > 200 {
		return APIKey{}, ErrBadKey
	}
	var rec APIKey
	err := g.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAPIKeys)
		if b == nil {
			return ErrBadKey
		}
		v := b.Get(keyHash(key))
		if v == nil {
			return ErrBadKey
		}
		return json.Unmarshal(v, &rec)
	})
	return rec, err
}

// APIKeys lists the keys (without the keys themselves).
func (g *Gallery) APIKeys() ([]APIKey, error) {
	var out []APIKey
	err := g.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAPIKeys)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			var rec APIKey
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("corrupt API key record: %w", err)
			}
			out = append(out, rec)
			return nil
		})
	})
	return out, err
}

// RevokeAPIKey deletes every key whose prefix is prefix, and returns how many.
func (g *Gallery) RevokeAPIKey(prefix string) (int, error) {
	n := 0
	err := g.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAPIKeys)
		if b == nil {
			return nil
		}
		var del [][]byte
		err := b.ForEach(func(k, v []byte) error {
			var rec APIKey
			if json.Unmarshal(v, &rec) == nil && rec.Prefix == prefix {
				del = append(del, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range del {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(del)
		return nil
	})
	return n, err
}
