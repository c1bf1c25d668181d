package enroll

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// ErrDuplicatePhoto: the photo (the same content, by sha256) is already a
// template of another identity; EnrollBatch refuses it unless told to allow
// duplicates.
var ErrDuplicatePhoto = errors.New("enroll: the same photo is enrolled under another person")

// ErrAlreadyEnrolled: the photo (by sha256) is already a template of the
// identity it is enrolled for; EnrollBatch skips it (a resumed bulk enroll).
var ErrAlreadyEnrolled = errors.New("enroll: the photo is already enrolled for this person")

// BatchItem is one template to enroll for the identity called Name.
type BatchItem struct {
	// Name is the identity's name (created when there is none).
	Name string
	// Template is the template to add; its PhotoSHA256 is checked against
	// the gallery's photos.
	Template Template
}

// BatchResult is what EnrollBatch did with one item.
type BatchResult struct {
	// Identity is the item's identity as the batch left it (zero when the
	// item was refused before the identity existed).
	Identity Identity
	// Template is the template added (ID set); for ErrAlreadyEnrolled and
	// ErrDuplicatePhoto, the template that already holds the photo.
	Template Template
	// Err is nil (added), or wraps ErrAlreadyEnrolled or ErrDuplicatePhoto
	// (nothing added).
	Err error
}

// EnrollBatch adds the items' templates to their identities (created as
// needed, without metadata), all in one transaction: one fsync for the
// whole batch, and a crash loses the whole batch or nothing. An item whose
// photo (PhotoSHA256) is already a template of its identity is skipped
// (ErrAlreadyEnrolled); one whose photo is a template of another identity
// is refused (ErrDuplicatePhoto) unless allowDuplicates. Items that hold
// the same photo within the batch are treated alike, in order. The error
// is for the transaction (nothing was written); per-item outcomes are in
// the results.
func (g *Gallery) EnrollBatch(items []BatchItem, allowDuplicates bool) ([]BatchResult, error) {
	res := make([]BatchResult, len(items))
	err := g.update(func(tx *bolt.Tx) error {
		byNorm := map[string]*Identity{}
		ids := make([]*Identity, len(items))
		for i, item := range items {
			name, err := NormalizeName(item.Name)
			if err != nil {
				return fmt.Errorf("%q: %w", item.Name, err)
			}
			it := byNorm[name]
			if it == nil {
				found, ok, err := byName(tx, name)
				if err != nil {
					return err
				}
				if ok {
					it = &found
					byNorm[name] = it
				}
			}
			t := item.Template
			if t.PhotoSHA256 != "" {
				held, other, err := photoHolders(tx, t.PhotoSHA256, it)
				if err != nil {
					return err
				}
				switch {
				case held != nil:
					res[i] = BatchResult{Template: *held, Err: fmt.Errorf("%w (template #%d)", ErrAlreadyEnrolled, held.ID)}
					ids[i] = it
					continue
				case other != nil && !allowDuplicates:
					owner, err := getIdentity(tx, other.IdentityID)
					if err != nil {
						return err
					}
					res[i] = BatchResult{Template: *other, Err: fmt.Errorf("%w: template #%d of %q", ErrDuplicatePhoto, other.ID, owner.Name)}
					ids[i] = it
					continue
				}
			}
			if it == nil {
				created, err := createIdentity(tx, name, nil, g.limits())
				if err != nil {
					return err
				}
				it = &created
				byNorm[name] = it
			}
			out, err := g.addTemplates(tx, it, []Template{t})
			if err != nil {
				return fmt.Errorf("%s: %w", item.Template.Source, err)
			}
			res[i].Template = out[0]
			ids[i] = it
		}
		for i, it := range ids {
			if it != nil {
				res[i].Identity = *it
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// photoHolders finds the templates holding the photo: the first of
// identity it (nil: none yet) and the first of any other identity.
func photoHolders(tx *bolt.Tx, sha256hex string, it *Identity) (held, other *Template, err error) {
	sha, err := hex.DecodeString(sha256hex)
	if err != nil || len(sha) != 32 {
		return nil, nil, fmt.Errorf("%w: photo sha256 %q is not 64 hex digits", ErrInvalid, sha256hex)
	}
	pb := tx.Bucket(bucketPhotos)
	if pb == nil {
		return nil, nil, nil
	}
	tb := tx.Bucket(bucketTemplates)
	c := pb.Cursor()
	for k, _ := c.Seek(sha); k != nil && bytes.HasPrefix(k, sha) && len(k) == 48; k, _ = c.Next() {
		key := k[32:]
		v := tb.Get(key)
		if v == nil {
			return nil, nil, fmt.Errorf("%w: the photo index names a missing %s", ErrCorrupt, templateName(key))
		}
		t, err := decodeTemplate(key, v, nil)
		if err != nil {
			return nil, nil, err
		}
		t.HasCrop = hasCrop(tx, key)
		if it != nil && binary.BigEndian.Uint64(key[:8]) == it.ID {
			if held == nil {
				held = &t
			}
		} else if other == nil {
			other = &t
		}
	}
	return held, other, nil
}
