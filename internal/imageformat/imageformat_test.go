package imageformat_test

import (
	"testing"

	"github.com/facever/facever/internal/imageformat"
)

func TestSniff(t *testing.T) {
	tests := []struct {
		name   string
		data   string
		format string
		ok     bool
	}{
		{"JPEG", "\xff\xd8\xff\xe0\x00\x10JFIF\x00", imageformat.JPEG, true},
		{"PNG", "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", imageformat.PNG, true},
		{"GIF87a", "GIF87a\x10\x00", imageformat.GIF, true},
		{"GIF89a", "GIF89a\x10\x00", imageformat.GIF, true},
		{"WebP", "RIFF\x24\x00\x00\x00WEBPVP8 ", imageformat.WebP, true},
		{"RIFF WAVE", "RIFF\x24\x00\x00\x00WAVEfmt ", "", false},
		{"TIFF little-endian", "II*\x00\x08\x00\x00\x00", imageformat.TIFF, true},
		{"TIFF big-endian", "MM\x00*\x00\x00\x00\x08", imageformat.TIFF, true},
		{"BMP", "BM\x36\x00\x0c\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00\x00\x00", imageformat.BMP, true},
		{"text starting BM", "BMW is a car maker, not an image format at all", "", false},
		{"PGM", "P5\n92 112\n255\n", imageformat.PNM, true},
		{"plain PBM", "P1 2 2 0 1 1 0", imageformat.PNM, true},
		{"PAM", "P7\nWIDTH 2\n", imageformat.PNM, true},
		{"text starting P5", "P5x is not a header", "", false},
		{"JP2", "\x00\x00\x00\x0cjP  \r\n\x87\n\x00\x00\x00\x14ftypjp2 ", imageformat.JPEG2000, true},
		{"J2K codestream", "\xff\x4f\xff\x51\x00\x29", imageformat.JPEG2000, true},
		{"HEIC", "\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", imageformat.HEIF, false},
		{"HEIF mif1", "\x00\x00\x00\x10ftypmif1\x00\x00\x00\x00", imageformat.HEIF, false},
		{"AVIF", "\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", imageformat.AVIF, false},
		{"AVIF under mif1", "\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1avif", imageformat.AVIF, false},
		{"MP4 video", "\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", "", false},
		{"empty", "", "", false},
		{"text", "hello, world", "", false},
		{"two bytes of JPEG", "\xff\xd8", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, ok := imageformat.Sniff([]byte(tc.data))
			if f != tc.format || ok != tc.ok {
				t.Fatalf("Sniff = %q, %v; want %q, %v", f, ok, tc.format, tc.ok)
			}
		})
	}
}
