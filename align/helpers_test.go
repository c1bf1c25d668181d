package align_test

import (
	"hash/crc32"
	"image"
	"image/gif"
	"io"
)

func crc32IEEE(b []byte) uint32 { return crc32.ChecksumIEEE(b) }

func pngEncodeGIF(w io.Writer, img *image.Paletted) error { return gif.Encode(w, img, nil) }
