// Package imageformat names an image file's format from its first bytes
// (magic numbers), without decoding it and without cgo: the folder walker
// (dataset) and the decoder (align) share it, so that what counts as a photo
// is decided in one place and the packages that only walk folders (verify,
// through dataset) do not link OpenCV.
package imageformat

import (
	"bytes"
	"encoding/binary"
)

// SniffLen is how many leading bytes of a file Sniff needs to recognise
// every format it knows (fewer are accepted; a short file is judged on what
// it has).
const SniffLen = 64

// Format names returned by Sniff (align.Header.Format holds them).
const (
	JPEG     = "jpeg"
	PNG      = "png"
	BMP      = "bmp"
	TIFF     = "tiff"
	WebP     = "webp"
	PNM      = "pnm" // PBM, PGM, PPM (plain or raw) and PAM
	GIF      = "gif"
	JPEG2000 = "jpeg2000" // JP2 file or raw J2K codestream
	HEIF     = "heif"     // HEIC/HEIF, what phones write
	AVIF     = "avif"
)

// Sniff names the image format of a file from its first bytes (magic
// numbers; the file name is never looked at). format is "" when the bytes
// are no image format facever knows. ok is true when facever decodes that
// format; it is false for the formats recognised only to be refused with
// advice (HEIF/HEIC and AVIF). Pass at least SniffLen bytes when the file
// has them.
//
// Sniff is what decides whether a file is a photo: folder walkers use it so
// that a photo without an extension (the Yale faces) is read and a text file
// called x.jpg is not.
func Sniff(header []byte) (format string, ok bool) {
	b := header
	switch {
	case len(b) >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF:
		return JPEG, true
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		return PNG, true
	case bytes.HasPrefix(b, []byte("GIF87a")), bytes.HasPrefix(b, []byte("GIF89a")):
		return GIF, true
	case len(b) >= 12 && bytes.HasPrefix(b, []byte("RIFF")) && string(b[8:12]) == "WEBP":
		return WebP, true
	case bytes.HasPrefix(b, []byte("II*\x00")), bytes.HasPrefix(b, []byte("MM\x00*")),
		bytes.HasPrefix(b, []byte("II+\x00")), bytes.HasPrefix(b, []byte("MM\x00+")):
		return TIFF, true
	case len(b) >= 14 && b[0] == 'B' && b[1] == 'M' && bmpPlausible(b):
		return BMP, true
	case len(b) >= 3 && b[0] == 'P' && b[1] >= '1' && b[1] <= '7' && isPNMSpace(b[2]):
		return PNM, true
	case bytes.HasPrefix(b, []byte("\x00\x00\x00\x0cjP  \r\n\x87\n")), bytes.HasPrefix(b, []byte{0xFF, 0x4F, 0xFF, 0x51}):
		return JPEG2000, true
	}
	if f := isoBrand(b); f != "" {
		return f, false
	}
	return "", false
}

// bmpPlausible: "BM" is also the start of ordinary text, so the BMP header's
// reserved fields (zero) and its info-header size (a known value) must agree.
func bmpPlausible(b []byte) bool {
	if len(b) < 18 {
		return len(b) >= 14 && binary.LittleEndian.Uint32(b[6:10]) == 0
	}
	if binary.LittleEndian.Uint32(b[6:10]) != 0 {
		return false
	}
	switch binary.LittleEndian.Uint32(b[14:18]) {
	case 12, 16, 40, 52, 56, 64, 108, 124:
		return true
	}
	return false
}

func isPNMSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// isoBrand recognises the ISO base media file format images (HEIF, HEIC,
// AVIF) by the major and compatible brands of their ftyp box.
func isoBrand(b []byte) string {
	if len(b) < 12 || string(b[4:8]) != "ftyp" {
		return ""
	}
	size := int(binary.BigEndian.Uint32(b[0:4]))
	if size < 16 || size > len(b) {
		size = len(b)
	}
	brands := [][]byte{b[8:12]}
	for i := 16; i+4 <= size; i += 4 {
		brands = append(brands, b[i:i+4])
	}
	heif := false
	for _, br := range brands {
		switch string(br) {
		case "avif", "avis":
			return AVIF
		case "heic", "heix", "hevc", "hevx", "heim", "heis", "hevm", "hevs", "mif1", "msf1", "mif2":
			heif = true
		}
	}
	if heif {
		return HEIF
	}
	return ""
}
