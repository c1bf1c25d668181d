package dataset

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// Format names an image file format recognised by its first bytes.
type Format string

// The formats Sniff recognises. Whether facever can decode one is the
// decoder's business (package align); the walker only decides what is a
// photo, so that a photo in a format the decoder refuses is reported by the
// decoder with its reason instead of being silently left out.
const (
	JPEG     Format = "jpeg"
	PNG      Format = "png"
	GIF      Format = "gif"
	BMP      Format = "bmp"
	TIFF     Format = "tiff"
	WebP     Format = "webp"
	PNM      Format = "pnm" // PBM, PGM, PPM, PAM (Netpbm, P1–P7)
	JPEG2000 Format = "jpeg2000"
	HEIF     Format = "heif" // HEIC and other HEIF images (phones)
	AVIF     Format = "avif"
)

// SniffLen is how many leading bytes Sniff looks at (fewer is fine: a
// shorter file is judged on what it has).
const SniffLen = 64

// Sniff returns the image format of a file that starts with head, or "" when
// head is not the start of an image. Only the content counts, never the file
// name: an extension-less GIF is a photo, a text file named x.jpg is not.
func Sniff(head []byte) Format {
	head = head[:min(len(head), SniffLen)]
	switch {
	case bytes.HasPrefix(head, []byte{0xFF, 0xD8, 0xFF}):
		return JPEG
	case bytes.HasPrefix(head, []byte("\x89PNG\r\n\x1a\n")):
		return PNG
	case bytes.HasPrefix(head, []byte("GIF87a")), bytes.HasPrefix(head, []byte("GIF89a")):
		return GIF
	case isBMP(head):
		return BMP
	case bytes.HasPrefix(head, []byte("II*\x00")), bytes.HasPrefix(head, []byte("MM\x00*")),
		bytes.HasPrefix(head, []byte("II+\x00")), bytes.HasPrefix(head, []byte("MM\x00+")): // classic and BigTIFF
		return TIFF
	case len(head) >= 12 && bytes.Equal(head[:4], []byte("RIFF")) && bytes.Equal(head[8:12], []byte("WEBP")):
		return WebP
	case isPNM(head):
		return PNM
	case bytes.HasPrefix(head, []byte("\x00\x00\x00\x0cjP  \r\n\x87\n")), // JP2 signature box
		bytes.HasPrefix(head, []byte{0xFF, 0x4F, 0xFF, 0x51}): // raw J2K codestream (SOC, SIZ)
		return JPEG2000
	}
	return sniffISOBMFF(head)
}

// isBMP checks "BM" and a known DIB header size, since two letters alone
// would also start many text files.
func isBMP(h []byte) bool {
	if len(h) < 18 || h[0] != 'B' || h[1] != 'M' {
		return false
	}
	switch binary.LittleEndian.Uint32(h[14:18]) {
	case 12, 16, 40, 52, 56, 64, 108, 124: // CORE, OS/2 2, INFO, V2, V3, OS/2 2 full, V4, V5
		return true
	}
	return false
}

// isPNM checks the Netpbm magic "P1".."P7" followed by white space.
func isPNM(h []byte) bool {
	if len(h) < 3 || h[0] != 'P' || h[1] < '1' || h[1] > '7' {
		return false
	}
	switch h[2] {
	case ' ', '\t', '\n', '\r', '\v', '\f':
		return true
	}
	return false
}

// sniffISOBMFF recognises HEIF (HEIC) and AVIF images: an ISO base media file
// whose first box is "ftyp" with an image brand, major or compatible.
func sniffISOBMFF(h []byte) Format {
	if len(h) < 16 || !bytes.Equal(h[4:8], []byte("ftyp")) {
		return ""
	}
	size := int(binary.BigEndian.Uint32(h[:4]))
	if size < 16 || size%4 != 0 {
		return ""
	}
	end := min(size, len(h))
	brands := [][]byte{h[8:12]} // major brand, then (after minor version) compatible ones
	for i := 16; i+4 <= end; i += 4 {
		brands = append(brands, h[i:i+4])
	}
	heif := false
	for _, b := range brands {
		switch string(b) {
		case "avif", "avis":
			return AVIF
		case "heic", "heix", "heim", "heis", "hevc", "hevx", "mif1", "msf1":
			heif = true
		}
	}
	if heif {
		return HEIF
	}
	return ""
}

// errEmpty marks a file of zero bytes.
var errEmpty = errors.New("empty file")

// SniffFile reads the first bytes of a regular file and returns its image
// format ("" when it is not an image). It never reads more than SniffLen
// bytes, and it refuses what is not a regular file (a FIFO would block).
func SniffFile(path string) (Format, error) {
	st, err := os.Stat(path) // before opening: opening a FIFO blocks
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var buf [SniffLen]byte
	n, err := io.ReadFull(f, buf[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", err
	}
	if n == 0 {
		return "", errEmpty
	}
	return Sniff(buf[:n]), nil
}
