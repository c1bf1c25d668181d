package enroll

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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
	// Scopes say what the key may do (ScopeAdmin, ScopeEnroll,
	// ScopeRecognize). Keys made before schema 5 were given ScopeAdmin.
	Scopes []string `json:"scopes"`
}

// The scopes of API keys.
const (
	// ScopeAdmin may do everything: manage keys and identities (rename,
	// edit, delete), and what the other scopes allow.
	ScopeAdmin = "admin"
	// ScopeEnroll may create identities, enroll photos and read the gallery.
	ScopeEnroll = "enroll"
	// ScopeRecognize may verify and identify only.
	ScopeRecognize = "recognize"
)

// Scopes lists every scope.
var Scopes = []string{ScopeAdmin, ScopeEnroll, ScopeRecognize}

// Allows reports whether the key may act in scope (an admin key may do
// everything).
func (k APIKey) Allows(scope string) bool {
	for _, s := range k.Scopes {
		if s == scope || s == ScopeAdmin {
			return true
		}
	}
	return false
}

// checkScopes returns scopes sorted without repeats, or ErrInvalid.
func checkScopes(scopes []string) ([]string, error) {
	if len(scopes) == 0 {
		return nil, fmt.Errorf("%w: a key needs at least one scope (%s)", ErrInvalid, strings.Join(Scopes, ", "))
	}
	var out []string
	for _, want := range Scopes {
		for _, s := range scopes {
			if s == want {
				out = append(out, s)
				break
			}
		}
	}
	for _, s := range scopes {
		if !slices.Contains(Scopes, s) {
			return nil, fmt.Errorf("%w: unknown scope %q (want %s)", ErrInvalid, s, strings.Join(Scopes, ", "))
		}
	}
	return out, nil
}

// keyPrefix starts every facever API key, so a leaked key is recognisable.
const keyPrefix = "fvk_"

func keyHash(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return []byte(hex.EncodeToString(h[:]))
}

// CreateAPIKey makes a new random admin key (256 bits) for name, stores its
// sha256, and returns the key: it cannot be recovered later.
func (g *Gallery) CreateAPIKey(name string) (string, APIKey, error) {
	return g.CreateScopedAPIKey(name, []string{ScopeAdmin})
}

// CreateScopedAPIKey is CreateAPIKey for a key with the given scopes (see
// Scopes; ErrInvalid for none or an unknown one).
func (g *Gallery) CreateScopedAPIKey(name string, scopes []string) (string, APIKey, error) {
	name, err := NormalizeName(name)
	if err != nil {
		return "", APIKey{}, err
	}
	if scopes, err = checkScopes(scopes); err != nil {
		return "", APIKey{}, err
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", APIKey{}, err
	}
	key := keyPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	rec := APIKey{Name: name, Prefix: key[:len(keyPrefix)+6], Created: time.Now().UTC(), Scopes: scopes}
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

// migrateKeyScopes gives every key without scopes the admin scope (schema
// 5: before it, every key could do everything).
func migrateKeyScopes(tx *bolt.Tx) error {
	b, err := tx.CreateBucketIfNotExists(bucketAPIKeys)
	if err != nil {
		return err
	}
	_, err = rewriteAll(b, func(k, v []byte) ([]byte, error) {
		var rec map[string]json.RawMessage
		if err := json.Unmarshal(v, &rec); err != nil {
			return nil, fmt.Errorf("%w: API key record %.12s…: %v", ErrCorrupt, k, err)
		}
		if _, ok := rec["scopes"]; ok {
			return nil, nil
		}
		rec["scopes"] = json.RawMessage(`["admin"]`)
		return json.Marshal(rec)
	})
	return err
}
