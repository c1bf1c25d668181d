package align_test

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/facever/facever/align"
)

// greyAlphaPNG writes a w×h grey+alpha PNG (colour type 4), which neither
// Go's encoder nor OpenCV's writes: left half opaque grey 100, right half
// transparent.
func greyAlphaPNG(w, h int) []byte {
	var raw bytes.Buffer
	for y := 0; y < h; y++ {
		raw.WriteByte(0) // filter: none
		for x := 0; x < w; x++ {
			if x < w/2 {
				raw.Write([]byte{100, 255})
			} else {
				raw.Write([]byte{7, 0})
			}
		}
	}
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(raw.Bytes())
	zw.Close()
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		binary.Write(&b, binary.BigEndian, uint32(len(data)))
		c := append([]byte(typ), data...)
		b.Write(c)
		binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(c))
	}
	ihdr := binary.BigEndian.AppendUint32(nil, uint32(w))
	ihdr = binary.BigEndian.AppendUint32(ihdr, uint32(h))
	chunk("IHDR", append(ihdr, 8, 4, 0, 0, 0))
	chunk("IDAT", z.Bytes())
	chunk("IEND", nil)
	return b.Bytes()
}

// TestDecodeGreyAlphaPNG: grey with alpha is composited on white too.
func TestDecodeGreyAlphaPNG(t *testing.T) {
	im, err := align.Decode(greyAlphaPNG(40, 20))
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	if im.Mat.Type() != gocv.MatTypeCV8UC3 || im.Width() != 40 || im.Height() != 20 {
		t.Fatalf("%d×%d type %v", im.Width(), im.Height(), im.Mat.Type())
	}
	b := im.Mat.ToBytes()
	for y := 0; y < 20; y++ {
		for x := 0; x < 40; x++ {
			want := byte(100)
			if x >= 20 {
				want = 255
			}
			for c := 0; c < 3; c++ {
				if got := b[3*(y*40+x)+c]; got != want {
					t.Fatalf("pixel (%d, %d) channel %d is %d, want %d", x, y, c, got, want)
				}
			}
		}
	}
}

// rle8BMP writes a w×h 8-bit RLE-compressed BMP with a grey palette, each
// row one run of grey 10·y, then the end-of-bitmap code.
func rle8BMP(w, h int) []byte {
	var px bytes.Buffer
	for y := 0; y < h; y++ {
		px.Write([]byte{byte(w), byte(10 * y), 0, 0}) // a run, end of line
	}
	px.Write([]byte{0, 1}) // end of bitmap
	le := binary.LittleEndian
	off := 14 + 40 + 256*4
	var b bytes.Buffer
	b.WriteString("BM")
	binary.Write(&b, le, uint32(off+px.Len()))
	binary.Write(&b, le, uint32(0))
	binary.Write(&b, le, uint32(off))
	binary.Write(&b, le, []uint32{40, uint32(w), uint32(h)})
	binary.Write(&b, le, []uint16{1, 8})
	binary.Write(&b, le, []uint32{1, uint32(px.Len()), 2835, 2835, 256, 0})
	for i := 0; i < 256; i++ {
		b.Write([]byte{byte(i), byte(i), byte(i), 0})
	}
	b.Write(px.Bytes())
	return b.Bytes()
}

// TestDecodeRLEBMP: an RLE8 BMP decodes (rows bottom-up), and one cut
// before its end-of-bitmap code is refused as truncated.
func TestDecodeRLEBMP(t *testing.T) {
	data := rle8BMP(20, 20)
	im, err := align.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	b := im.Mat.ToBytes()
	im.Close()
	// Row y of the file is row 19−y of the image.
	if b[0] != 190 || b[3*20*19] != 0 {
		t.Fatalf("top-left %d, bottom-left %d; want 190 and 0", b[0], b[3*20*19])
	}
	if _, err := align.Decode(data[:len(data)-2]); !errors.Is(err, align.ErrNotImage) || !strings.Contains(err.Error(), "end-of-bitmap") {
		t.Fatalf("RLE without its end: %v", err)
	}
}
