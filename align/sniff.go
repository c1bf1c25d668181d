package align

import "github.com/facever/facever/internal/imageformat"

// SniffLen is how many leading bytes of a file Sniff needs to recognise
// every format it knows (fewer are accepted; a short file is judged on what
// it has).
const SniffLen = imageformat.SniffLen

// Format names returned by Sniff and stored in Header.Format.
const (
	FormatJPEG     = imageformat.JPEG
	FormatPNG      = imageformat.PNG
	FormatBMP      = imageformat.BMP
	FormatTIFF     = imageformat.TIFF
	FormatWebP     = imageformat.WebP
	FormatPNM      = imageformat.PNM // PBM, PGM, PPM (plain or raw) and PAM
	FormatGIF      = imageformat.GIF
	FormatJPEG2000 = imageformat.JPEG2000 // JP2 file or raw J2K codestream
	FormatHEIF     = imageformat.HEIF     // HEIC/HEIF, what phones write
	FormatAVIF     = imageformat.AVIF
)

// Sniff names the image format of a file from its first bytes (magic
// numbers; the file name is never looked at). format is "" when the bytes
// are no image format facever knows. ok is true when facever decodes that
// format; it is false for the formats recognised only to be refused with
// advice (HEIF/HEIC and AVIF). It is imageformat.Sniff, the one the folder
// walker uses, so that a file the walker takes for a photo is one Decode
// reads.
func Sniff(header []byte) (format string, ok bool) { return imageformat.Sniff(header) }

// isPNMSpace is the whitespace of the PNM headers (netpbm's isspace).
func isPNMSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}
