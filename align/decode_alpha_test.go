package align_test

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"hash/crc32"
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
