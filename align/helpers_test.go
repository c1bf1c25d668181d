package align_test

import (
	"bytes"
	"hash/crc32"
	"image"
	"image/gif"
	"io"
)

func crc32IEEE(b []byte) uint32 { return crc32.ChecksumIEEE(b) }

func pngEncodeGIF(w io.Writer, img *image.Paletted) error { return gif.Encode(w, img, nil) }

func gifBytes(t interface{ Fatal(...any) }) []byte {
	var b bytes.Buffer
	pal := image.NewPaletted(image.Rect(0, 0, 20, 20), nil)
	pal.Palette = append(pal.Palette, image.Black)
	if err := gif.Encode(&b, pal, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
