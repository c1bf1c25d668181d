package enroll

import (
	"bytes"
	"fmt"
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

// TemplateCrop returns the JPEG crop kept for template tid of identity id.
// PLACEHOLDER (crops-store replaces it): no crops are kept yet.
func (g *Gallery) TemplateCrop(id, tid uint64) ([]byte, error) {
	return nil, ErrNoCrop
}
