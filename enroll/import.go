package enroll

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ImportIdentity stores it and its templates as given (see Importer): the
// copy of `facever gallery migrate`.
func (g *Gallery) ImportIdentity(it Identity, ts []Template) error {
	if g.opts.Model == "" && len(ts) > 0 {
		return ErrNoModel
	}
	if it.ID == 0 || it.ID == math.MaxUint64 {
		return fmt.Errorf("%w: identity id %d", ErrInvalid, it.ID)
	}
	name, err := NormalizeName(it.Name)
	if err != nil {
		return err
	}
	if err := checkMetadata(it.Metadata, g.limits()); err != nil {
		return fmt.Errorf("identity %q: %w", name, err)
	}
	if it.Created.IsZero() {
		return fmt.Errorf("%w: identity %q has no created time", ErrInvalid, name)
	}
	return g.update(func(tx *bolt.Tx) error {
		ib, names := tx.Bucket(bucketIdentities), tx.Bucket(bucketNames)
		if ib.Get(u64(it.ID)) != nil {
			return fmt.Errorf("%w: id %d", ErrExists, it.ID)
		}
		if names.Get([]byte(name)) != nil {
			return fmt.Errorf("%w: %q", ErrExists, name)
		}
		meta := tx.Bucket(bucketMeta)
		dim := 0
		if v := meta.Get([]byte("dim")); len(v) == 4 {
			dim = int(binary.BigEndian.Uint32(v))
		}
		tb, photos := tx.Bucket(bucketTemplates), tx.Bucket(bucketPhotos)
		maxTID := tb.Sequence()
		for i, t := range ts {
			if t.IdentityID != it.ID {
				return fmt.Errorf("%w: template %d belongs to identity %d, not %d", ErrInvalid, t.ID, t.IdentityID, it.ID)
			}
			if t.ID == 0 || t.ID == math.MaxUint64 || t.Created.IsZero() {
				return fmt.Errorf("%w: template %d of identity %d: id or created time missing", ErrInvalid, t.ID, it.ID)
			}
			if err := checkEmbedding(t.Embedding, i); err != nil {
				return err
			}
			if err := CheckCrop(t.Crop); err != nil {
				return fmt.Errorf("template %d: %w", t.ID, err)
			}
			if dim == 0 {
				dim = len(t.Embedding)
				var v [4]byte
				binary.BigEndian.PutUint32(v[:], uint32(dim))
				if err := meta.Put([]byte("dim"), v[:]); err != nil {
					return err
				}
			}
			if len(t.Embedding) != dim {
				return fmt.Errorf("%w: template %d has %d values, the gallery %d", ErrDimension, t.ID, len(t.Embedding), dim)
			}
			key := append(u64(it.ID), u64(t.ID)...)
			if tb.Get(key) != nil {
				return fmt.Errorf("%w: template %d", ErrExists, t.ID)
			}
			v, err := encodeTemplate(t)
			if err != nil {
				return fmt.Errorf("template %d: %w", t.ID, err)
			}
			if err := tb.Put(key, v); err != nil {
				return err
			}
			if err := putCrop(tx, key, t.Crop); err != nil {
				return err
			}
			if sha := photoSHA(v); sha != nil && photos != nil {
				if err := photos.Put(append(append([]byte(nil), sha...), key...), nil); err != nil {
					return err
				}
			}
			maxTID = max(maxTID, t.ID)
		}
		if err := tb.SetSequence(maxTID); err != nil {
			return err
		}
		if err := ib.SetSequence(max(ib.Sequence(), it.ID)); err != nil {
			return err
		}
		rec := Identity{ID: it.ID, Name: name, Metadata: it.Metadata, Created: it.Created.UTC(), Templates: len(ts)}
		if err := putIdentity(tx, rec); err != nil {
			return err
		}
		if err := names.Put([]byte(name), u64(it.ID)); err != nil {
			return err
		}
		return addCounts(tx, 1, len(ts))
	})
}

// checkEmbedding refuses an empty, non-finite or zero embedding (template
// i), as AddTemplates does.
func checkEmbedding(e []float32, i int) error {
	if len(e) == 0 {
		return fmt.Errorf("%w: template %d has an empty embedding", ErrInvalid, i)
	}
	var sq float64
	for _, x := range e {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return fmt.Errorf("%w: template %d has a non-finite value", ErrInvalid, i)
		}
		sq += float64(x) * float64(x)
	}
	if sq == 0 {
		return fmt.Errorf("%w: template %d is a zero vector", ErrInvalid, i)
	}
	return nil
}

// checkKeyHash refuses a hash that is not 64 lowercase hex digits.
func checkKeyHash(h string) error {
	if b, err := hex.DecodeString(h); err != nil || len(b) != 32 || hex.EncodeToString(b) != h {
		return fmt.Errorf("%w: API key hash %.70q is not 64 lowercase hex digits", ErrInvalid, h)
	}
	return nil
}

// ImportAPIKey stores an API key record by its hash (see Importer).
func (g *Gallery) ImportAPIKey(rec APIKeyRecord) error {
	if err := checkKeyHash(rec.Hash); err != nil {
		return err
	}
	name, err := NormalizeName(rec.Name)
	if err != nil {
		return err
	}
	scopes, err := checkScopes(rec.Scopes)
	if err != nil {
		return err
	}
	if rec.Created.IsZero() {
		rec.Created = time.Now()
	}
	v, err := json.Marshal(APIKey{Name: name, Prefix: rec.Prefix, Created: rec.Created.UTC(), Scopes: scopes})
	if err != nil {
		return err
	}
	return g.update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketAPIKeys)
		if err != nil {
			return err
		}
		if b.Get([]byte(rec.Hash)) != nil {
			return fmt.Errorf("%w: API key %s… (%s)", ErrExists, rec.Prefix, name)
		}
		return b.Put([]byte(rec.Hash), v)
	})
}

// APIKeyRecords lists the API key records with their hashes.
func (g *Gallery) APIKeyRecords() ([]APIKeyRecord, error) {
	var out []APIKeyRecord
	err := g.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAPIKeys)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var rec APIKey
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("%w: API key record %.12s…: %v", ErrCorrupt, k, err)
			}
			out = append(out, APIKeyRecord{Hash: string(k), APIKey: rec})
			return nil
		})
	})
	return out, err
}
