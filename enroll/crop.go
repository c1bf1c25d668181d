package enroll

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// CheckCrop checks a template's crop before a store writes it: nil or
// empty (no crop), or a JPEG (it starts with the SOI marker and a marker
// byte) of at most MaxCropBytes.
func CheckCrop(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if len(b) > MaxCropBytes {
		return fmt.Errorf("%w: a template's crop is %d bytes, more than the %d allowed", ErrTooLarge, len(b), MaxCropBytes)
	}
	if !bytes.HasPrefix(b, []byte{0xFF, 0xD8, 0xFF}) {
		return fmt.Errorf("%w: a template's crop must be a JPEG image", ErrInvalid)
	}
	return nil
}

// The crops bucket (since schema 6) holds each template's crop apart from
// the template, under the template's key (identity id ‖ template id), so
// that listing templates and loading the index never read an image. A
// value is version byte 1, the JPEG, and the CRC-32C (little endian) of
// the key and all that.
var bucketCrops = []byte("crops")

// sealCrop is the stored value of a crop.
func sealCrop(key, jpeg []byte) []byte {
	v := make([]byte, 0, 1+len(jpeg)+4)
	v = append(append(v, 1), jpeg...)
	return binary.LittleEndian.AppendUint32(v, recordSum(key, v))
}

// openCrop checks a stored crop (its key, format, checksum, and that it is
// a JPEG within MaxCropBytes) and returns the JPEG, which aliases v.
func openCrop(key, v []byte) ([]byte, error) {
	if len(key) != 16 {
		return nil, fmt.Errorf("%w: crop key %x is not 16 bytes", ErrCorrupt, key)
	}
	name := "the crop of " + templateName(key)
	if len(v) < 1+4 || v[0] != 1 {
		return nil, fmt.Errorf("%w: %s: unknown record format", ErrCorrupt, name)
	}
	n := len(v) - 4
	if recordSum(key, v[:n]) != binary.LittleEndian.Uint32(v[n:]) {
		return nil, fmt.Errorf("%w: %s: record checksum mismatch", ErrCorrupt, name)
	}
	jpeg := v[1:n]
	if len(jpeg) == 0 {
		return nil, fmt.Errorf("%w: %s is empty", ErrCorrupt, name)
	}
	if err := CheckCrop(jpeg); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, name, err)
	}
	return jpeg, nil
}

// putCrop stores the crop of the template at key, when it has one (crop
// already checked with CheckCrop).
func putCrop(tx *bolt.Tx, key, crop []byte) error {
	if len(crop) == 0 {
		return nil
	}
	b := tx.Bucket(bucketCrops)
	if b == nil {
		return fmt.Errorf("%w: the crops bucket is missing", ErrCorrupt)
	}
	return b.Put(key, sealCrop(key, crop))
}

// hasCrop reports whether the template at key has a crop (a key lookup:
// the image is not read).
func hasCrop(tx *bolt.Tx, key []byte) bool {
	b := tx.Bucket(bucketCrops)
	return b != nil && b.Get(key) != nil
}

// deleteCrop deletes the crop of the template at key, if any.
func deleteCrop(tx *bolt.Tx, key []byte) error {
	if b := tx.Bucket(bucketCrops); b != nil {
		return b.Delete(key)
	}
	return nil
}

// deleteCrops deletes the crops of every template of identity id.
func deleteCrops(tx *bolt.Tx, id uint64) error {
	b := tx.Bucket(bucketCrops)
	if b == nil {
		return nil
	}
	prefix := u64(id)
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// TemplateCrop returns the JPEG crop kept for template tid of identity id
// (a copy): ErrNotFound when the identity is absent, ErrTemplateNotFound
// when it has no such template, ErrNoCrop when the template has no crop,
// ErrCorrupt when the stored crop is damaged.
func (g *Gallery) TemplateCrop(id, tid uint64) ([]byte, error) {
	var out []byte
	err := g.view(func(tx *bolt.Tx) error {
		if _, err := getIdentity(tx, id); err != nil {
			return err
		}
		key := append(u64(id), u64(tid)...)
		if tx.Bucket(bucketTemplates).Get(key) == nil {
			return fmt.Errorf("%w: no template %d in identity %d", ErrTemplateNotFound, tid, id)
		}
		b := tx.Bucket(bucketCrops)
		var v []byte
		if b != nil {
			v = b.Get(key)
		}
		if v == nil {
			return fmt.Errorf("%w (template %d of identity %d)", ErrNoCrop, tid, id)
		}
		jpeg, err := openCrop(key, v)
		if err != nil {
			return err
		}
		out = bytes.Clone(jpeg) // the bbolt value is valid only in the transaction
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
