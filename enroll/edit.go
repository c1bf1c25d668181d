package enroll

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/text/unicode/norm"
)

// ErrTemplateNotFound: no template with that id in that identity.
var ErrTemplateNotFound = errors.New("enroll: template not found")

// Edit says what Update changes of an identity.
type Edit struct {
	// Name, when not empty, renames the identity (normalised: see
	// NormalizeName; ErrExists when another identity has it).
	Name string
	// Metadata is merged into the identity's: a key with a nil value is
	// removed, another is set. The result must fit the limits (ErrTooLarge).
	Metadata map[string]*string
	// Check, when not nil, is called in the transaction with the merged
	// metadata (a caller's own limits); its error fails the update.
	Check func(map[string]string) error
}

// Update renames identity id and/or edits its metadata, in one transaction,
// and returns the identity as it now is.
func (g *Gallery) Update(id uint64, e Edit) (Identity, error) {
	name := ""
	if e.Name != "" {
		var err error
		if name, err = NormalizeName(e.Name); err != nil {
			return Identity{}, err
		}
	}
	var it Identity
	err := g.update(func(tx *bolt.Tx) error {
		var err error
		if it, err = getIdentity(tx, id); err != nil {
			return err
		}
		if len(e.Metadata) > 0 {
			md := e.merged(it.Metadata)
			if err := checkMetadata(md, g.limits()); err != nil {
				return fmt.Errorf("identity %q: %w", it.Name, err)
			}
			if e.Check != nil {
				if err := e.Check(md); err != nil {
					return err
				}
			}
			it.Metadata = md
		}
		names := tx.Bucket(bucketNames)
		if name != "" && name != it.Name {
			if names.Get([]byte(name)) != nil {
				return fmt.Errorf("%w: %q", ErrExists, name)
			}
			if err := names.Delete([]byte(it.Name)); err != nil {
				return err
			}
			if err := names.Put([]byte(name), u64(id)); err != nil {
				return err
			}
			it.Name = name
		}
		return putIdentity(tx, it)
	})
	if err != nil {
		return Identity{}, err
	}
	return it, nil
}

// RemoveTemplate deletes template tid of identity id (ErrTemplateNotFound
// when the identity has no such template) and returns the identity as it
// now is. The identity stays, with no template if that was its last.
func (g *Gallery) RemoveTemplate(id, tid uint64) (Identity, error) {
	var it Identity
	err := g.update(func(tx *bolt.Tx) error {
		var err error
		if it, err = getIdentity(tx, id); err != nil {
			return err
		}
		key := append(u64(id), u64(tid)...)
		tb := tx.Bucket(bucketTemplates)
		v := tb.Get(key)
		if v == nil {
			return fmt.Errorf("%w: no template %d in identity %d", ErrTemplateNotFound, tid, id)
		}
		if sha, photos := photoSHA(v), tx.Bucket(bucketPhotos); sha != nil && photos != nil {
			if err := photos.Delete(append(append([]byte(nil), sha...), key...)); err != nil {
				return err
			}
		}
		if err := tb.Delete(key); err != nil {
			return err
		}
		if err := deleteCrop(tx, key); err != nil {
			return err
		}
		it.Templates--
		if err := addCounts(tx, 0, -1); err != nil {
			return err
		}
		return putIdentity(tx, it)
	})
	if err != nil {
		return Identity{}, err
	}
	return it, nil
}

// TemplatesPage returns up to limit (1..MaxPage; other values: MaxPage)
// templates of identity id whose ids come after after, in enrolment order,
// and the cursor of the next page (0 on the last).
func (g *Gallery) TemplatesPage(id, after uint64, limit int) (page []Template, next uint64, err error) {
	if limit <= 0 || limit > MaxPage {
		limit = MaxPage
	}
	err = g.view(func(tx *bolt.Tx) error {
		if _, err := getIdentity(tx, id); err != nil {
			return err
		}
		c := tx.Bucket(bucketTemplates).Cursor()
		prefix := u64(id)
		start := append(u64(id), u64(after+1)...)
		if after == ^uint64(0) {
			return nil
		}
		for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(page) == limit {
				next = page[len(page)-1].ID
				return nil
			}
			t, err := decodeTemplate(k, v, nil)
			if err != nil {
				return err
			}
			t.HasCrop = hasCrop(tx, k)
			page = append(page, t)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return page, next, nil
}

// ListPrefix returns up to limit (1..MaxPage; other values: MaxPage)
// identities whose names start with prefix (compared in normal form C, byte
// for byte: case matters), in the order of their names' bytes, after the
// name after ("" to start), and the name to pass as after for the next page
// ("" on the last). Each page is one short read transaction.
func (g *Gallery) ListPrefix(prefix, after string, limit int) (page []Identity, next string, err error) {
	if limit <= 0 || limit > MaxPage {
		limit = MaxPage
	}
	prefix = norm.NFC.String(prefix)
	err = g.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketNames).Cursor()
		start := []byte(prefix)
		if after > prefix {
			start = []byte(after)
		}
		k, v := c.Seek(start)
		if after != "" && k != nil && string(k) == after {
			k, v = c.Next()
		}
		for ; k != nil && strings.HasPrefix(string(k), prefix); k, v = c.Next() {
			if len(page) == limit {
				next = page[len(page)-1].Name
				return nil
			}
			if len(v) != 8 {
				return fmt.Errorf("%w: the names index entry of %q is damaged", ErrCorrupt, k)
			}
			it, err := getIdentity(tx, binary.BigEndian.Uint64(v))
			if err != nil {
				return fmt.Errorf("%w: the names index points %q at a missing identity (%v)", ErrCorrupt, k, err)
			}
			page = append(page, it)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return page, next, nil
}

// merged is md with e's metadata edits applied (a nil value deletes its
// key), in a new map; nil when no key is left.
func (e Edit) merged(md map[string]string) map[string]string {
	out := make(map[string]string, len(md)+len(e.Metadata))
	for k, v := range md {
		out[k] = v
	}
	for k, v := range e.Metadata {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = *v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
