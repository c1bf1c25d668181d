package align_test

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"math"
	"testing"

	"gocv.io/x/gocv"

	"github.com/facever/facever/align"
)

// dcOnlyJPEG writes a baseline greyscale JPEG 8× the size of g in each
// direction in which every 8×8 block is flat, of g's grey at that place:
// only the DC coefficients are coded, so a 200-megapixel photo takes about a
// megabyte, and decoding it at 1/8 gives g back. It is how a real photo of
// more pixels than the test could hold in memory is made.
func dcOnlyJPEG(g gocv.Mat) []byte {
	bw, bh := g.Cols(), g.Rows()
	px := g.ToBytes()
	var b bytes.Buffer
	seg := func(marker byte, payload ...byte) {
		b.Write([]byte{0xFF, marker, byte((len(payload) + 2) >> 8), byte(len(payload) + 2)})
		b.Write(payload)
	}
	b.Write([]byte{0xFF, 0xD8})
	dqt := []byte{0}
	for i := 0; i < 64; i++ {
		dqt = append(dqt, 8) // DC = 8·(v−128) for a flat block: quantised, v−128
	}
	seg(0xDB, dqt...)
	W, H := 8*bw, 8*bh
	seg(0xC0, 8, byte(H>>8), byte(H), byte(W>>8), byte(W), 1, 1, 0x11, 0)
	// The standard luminance DC table (ITU T.81 K.3), and an AC table with
	// one code, "0", for end-of-block.
	dcBits := []byte{0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0}
	dht := append([]byte{0x00}, dcBits...)
	for v := 0; v < 12; v++ {
		dht = append(dht, byte(v))
	}
	dht = append(dht, 0x10, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	seg(0xC4, dht...)
	// Canonical codes of the DC table.
	var code [12]uint32
	var size [12]uint
	c, k := uint32(0), 0
	for l := 1; l <= 16; l++ {
		for n := 0; n < int(dcBits[l-1]); n++ {
			code[k], size[k] = c, uint(l)
			c++
			k++
		}
		c <<= 1
	}
	seg(0xDA, 1, 1, 0x00, 0, 63, 0)
	var acc uint64
	var nacc uint
	put := func(v uint32, n uint) {
		acc = acc<<n | uint64(v)&(1<<n-1)
		nacc += n
		for nacc >= 8 {
			by := byte(acc >> (nacc - 8))
			b.WriteByte(by)
			if by == 0xFF {
				b.WriteByte(0) // byte stuffing
			}
			nacc -= 8
		}
	}
	prev := 0
	for by := 0; by < bh; by++ {
		for bx := 0; bx < bw; bx++ {
			dc := int(px[by*bw+bx]) - 128
			d := dc - prev
			prev = dc
			cat, mag := 0, d
			if mag < 0 {
				mag = -mag
			}
			for mag>>cat != 0 {
				cat++
			}
			put(code[cat], size[cat])
			if cat > 0 {
				v := d
				if d < 0 {
					v = d - 1
				}
				put(uint32(v), uint(cat))
			}
			put(0, 1) // EOB
		}
	}
	if nacc > 0 {
		put(0x7F, 8-nacc) // pad with one bits
	}
	b.Write([]byte{0xFF, 0xD9})
	return b.Bytes()
}

// bigCanvas is a 2048×1536 grey scene with John Simm's face 512 pixels
// wide in it: the 1/8 view of a 16384×12288 (201-megapixel) photo.
func bigCanvas(t testing.TB) gocv.Mat {
	orig := johnBGR(t)
	defer orig.Close()
	face, grey := gocv.NewMat(), gocv.NewMat()
	defer face.Close()
	defer grey.Close()
	gocv.Resize(orig, &face, image.Pt(512, 512), 0, 0, gocv.InterpolationCubic)
	gocv.CvtColor(face, &grey, gocv.ColorBGRToGray)
	canvas := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(128, 0, 0, 0), 1536, 2048, gocv.MatTypeCV8UC1)
	roi := canvas.Region(image.Rect(768, 512, 1280, 1024))
	grey.CopyTo(&roi)
	roi.Close()
	return canvas
}

// TestDecodeLargeJPEGReduced: a 201-megapixel JPEG, over the 100-megapixel
// limit, is read at 1/2 (and at 1/4 under a 20-megapixel limit, as a
// server would ask); its face is found, reported in the photo's own
// coordinates, and aligned to the same chip as at 1/8 scale.
func TestDecodeLargeJPEGReduced(t *testing.T) {
	canvas := bigCanvas(t)
	defer canvas.Close()
	data := dcOnlyJPEG(canvas)
	hd, err := align.ReadHeader(data)
	if err != nil || hd.Width != 16384 || hd.Height != 12288 {
		t.Fatalf("header %+v, %v", hd, err)
	}
	a := newAligner(t)

	// Reference: the scene itself, scaled up by 8 in the coordinates.
	ref := gocv.NewMat()
	gocv.CvtColor(canvas, &ref, gocv.ColorGrayToBGR)
	refIm := &align.Image{Mat: ref, Scale: 1.0 / 8}
	defer refIm.Close()
	refFaces, err := a.Detect(refIm)
	if err != nil || len(refFaces) != 1 {
		t.Fatalf("reference scene: %d faces, %v", len(refFaces), err)
	}
	refChip, err := align.Align(refIm, refFaces[0])
	if err != nil {
		t.Fatal(err)
	}
	rf := refFaces[0]
	if rf.Box[0] < 768*8*0.9 || rf.Box[2] > 1280*8*1.1 {
		t.Fatalf("reference face box %v is not around the pasted face (x 6144..10240)", rf.Box)
	}

	for _, tc := range []struct {
		limit int
		scale float64
	}{{0, 0.5}, {20_000_000, 0.25}} {
		im, err := align.DecodeWith(data, align.DecodeOptions{MaxPixels: tc.limit})
		if err != nil {
			t.Fatalf("limit %d: %v", tc.limit, err)
		}
		if im.Scale != tc.scale || im.Width() != int(16384*tc.scale) || im.Height() != int(12288*tc.scale) {
			t.Fatalf("limit %d: read %d×%d at scale %v, want scale %v", tc.limit, im.Width(), im.Height(), im.Scale, tc.scale)
		}
		if w, h := im.SourceSize(); w != 16384 || h != 12288 {
			t.Fatalf("SourceSize %d×%d", w, h)
		}
		faces, err := a.Detect(im)
		if err != nil || len(faces) != 1 {
			t.Fatalf("scale %v: %d faces, %v", tc.scale, len(faces), err)
		}
		f := faces[0]
		tol := 0.03 * rf.Width()
		for k := range f.Box {
			if math.Abs(f.Box[k]-rf.Box[k]) > tol {
				t.Fatalf("scale %v: box %v, the scene's ×8 is %v (tolerance %.0f px)", tc.scale, f.Box, rf.Box, tol)
			}
		}
		for k := range f.Landmarks {
			if d := math.Hypot(f.Landmarks[k].X-rf.Landmarks[k].X, f.Landmarks[k].Y-rf.Landmarks[k].Y); d > tol {
				t.Fatalf("scale %v: landmark %d at %v, the scene's ×8 at %v", tc.scale, k, f.Landmarks[k], rf.Landmarks[k])
			}
		}
		chip, err := align.Align(im, f)
		if err != nil {
			t.Fatal(err)
		}
		var diff float64
		for i := range chip.Pix {
			diff += math.Abs(float64(chip.Pix[i]) - float64(refChip.Pix[i]))
		}
		maxDev := 0.0
		for k := range f.Box {
			maxDev = math.Max(maxDev, math.Abs(f.Box[k]-rf.Box[k]))
		}
		t.Logf("scale %v: box %.0f (scene ×8: %.0f), largest box deviation %.1f px of a %.0f-px face, chip difference %.2f per sample", tc.scale, f.Box, rf.Box, maxDev, rf.Width(), diff/float64(len(chip.Pix)))
		if diff /= float64(len(chip.Pix)); diff > 6 {
			t.Fatalf("scale %v: the chip differs from the scene's by %.1f per sample", tc.scale, diff)
		}
		im.Close()
	}

	for _, tc := range []struct {
		name string
		opt  align.DecodeOptions
	}{
		{"full size only", align.DecodeOptions{FullSize: true}},
		{"1 megapixel: 1/8 would still be 3.1", align.DecodeOptions{MaxPixels: 1_000_000}},
	} {
		if _, err := align.DecodeWith(data, tc.opt); !errors.Is(err, align.ErrTooLarge) {
			t.Errorf("%s: %v, want ErrTooLarge", tc.name, err)
		}
	}
}

// TestReducedTooSmall: a reduction that would leave fewer than
// MinReducedSide pixels across is refused rather than losing the faces.
func TestReducedTooSmall(t *testing.T) {
	orig := johnBGR(t)
	defer orig.Close()
	big := gocv.NewMat()
	defer big.Close()
	gocv.Resize(orig, &big, image.Pt(2400, 2400), 0, 0, gocv.InterpolationLinear)
	data := cvEncode(t, ".jpg", big)
	im, err := align.DecodeWith(data, align.DecodeOptions{MaxPixels: 2_000_000}) // 1/2: 1200², under 1600
	if err == nil {
		im.Close()
	}
	if !errors.Is(err, align.ErrTooLarge) {
		t.Fatalf("%v, want ErrTooLarge", err)
	}
	im, err = align.DecodeWith(data, align.DecodeOptions{MaxPixels: 6_000_000}) // fits at full size
	if err != nil || im.Scale != 1 {
		t.Fatalf("%v", err)
	}
	im.Close()
}

// BenchmarkDecodeLarge reads the 201-megapixel JPEG of
// TestDecodeLargeJPEGReduced at 1/2 (the default limit), 1/4 (a 20-megapixel
// limit) and 1/8 (a 4-megapixel limit).
func BenchmarkDecodeLarge(b *testing.B) {
	canvas := bigCanvas(b)
	data := dcOnlyJPEG(canvas)
	canvas.Close()
	for _, limit := range []int{0, 20_000_000, 4_000_000} {
		b.Run(fmt.Sprintf("limit=%d", limit), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				im, err := align.DecodeWith(data, align.DecodeOptions{MaxPixels: limit})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(im.Scale, "scale")
				im.Close()
			}
		})
	}
}
