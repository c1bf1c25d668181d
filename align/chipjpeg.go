package align

import (
	"bytes"
	"fmt"
	"image/jpeg"
)

// ChipJPEGQuality is the JPEG quality of Chip.JPEG: a 112×112 chip comes
// out at 3–6 KiB, with no visible loss at the size it is shown.
const ChipJPEGQuality = 90

// JPEG encodes the chip as a baseline JPEG (what a gallery keeps beside the
// template, so that a person's enrolled faces can be shown).
func (c Chip) JPEG() ([]byte, error) {
	if c.Size <= 0 || len(c.Pix) != 3*c.Size*c.Size {
		return nil, fmt.Errorf("align: chip of size %d has %d bytes, want %d", c.Size, len(c.Pix), 3*c.Size*c.Size)
	}
	img := c.RGBA()
	var buf bytes.Buffer
	buf.Grow(8 << 10)
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: ChipJPEGQuality}); err != nil {
		return nil, fmt.Errorf("align: encoding chip: %w", err)
	}
	return buf.Bytes(), nil
}
