package align_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/color/palette"
	"image/draw"
	"image/gif"
	"image/jpeg"
	"image/png"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gocv.io/x/gocv"
	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"

	"github.com/facever/facever/align"
)

const johnJPEG = "../testdata/johns/John_Simm/000288_00470387.jpg"

func readJohn(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(johnJPEG))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// johnBGR is the reference photo decoded from its JPEG (150×150 BGR).
func johnBGR(t testing.TB) gocv.Mat {
	t.Helper()
	m, err := gocv.IMDecode(readJohn(t), gocv.IMReadColor)
	if err != nil || m.Empty() {
		t.Fatalf("decoding the reference JPEG: %v", err)
	}
	return m
}

// cvEncode writes m with OpenCV's encoder for ext.
func cvEncode(t testing.TB, ext string, m gocv.Mat, params ...int) []byte {
	t.Helper()
	var buf *gocv.NativeByteBuffer
	var err error
	if len(params) == 0 { // IMEncodeWithParams indexes params[0]
		buf, err = gocv.IMEncode(gocv.FileExt(ext), m)
	} else {
		buf, err = gocv.IMEncodeWithParams(gocv.FileExt(ext), m, params)
	}
	if err != nil {
		t.Fatalf("encoding %s: %v", ext, err)
	}
	defer buf.Close()
	return append([]byte(nil), buf.GetBytes()...)
}

// toGo converts a BGR Mat to a Go RGBA image.
func toGo(m gocv.Mat) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, m.Cols(), m.Rows()))
	b := m.ToBytes()
	for i := 0; i < m.Cols()*m.Rows(); i++ {
		img.Pix[4*i], img.Pix[4*i+1], img.Pix[4*i+2], img.Pix[4*i+3] = b[3*i+2], b[3*i+1], b[3*i], 255
	}
	return img
}

func goEncode(t testing.TB, enc func(*bytes.Buffer) error) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := enc(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// sampleDiff is the mean absolute difference of two 8-bit Mats' samples
// (-1 if their sizes differ).
func sampleDiff(a, b gocv.Mat) float64 {
	if a.Cols() != b.Cols() || a.Rows() != b.Rows() || a.Channels() != b.Channels() {
		return -1
	}
	x, y := a.ToBytes(), b.ToBytes()
	var s float64
	for i := range x {
		d := float64(x[i]) - float64(y[i])
		if d < 0 {
			d = -d
		}
		s += d
	}
	return s / float64(len(x))
}

// formatCase is one photo written in one format, and what decoding it must
// give back.
type formatCase struct {
	name, format string
	data         []byte
	want         gocv.Mat // the expected BGR pixels
	tol          float64  // allowed mean absolute difference per sample
}

// formatCases writes the reference photo in every format facever reads,
// with OpenCV's encoders and Go's, in colour, grey, 16 bits and with alpha.
// The Mats are closed by t.Cleanup.
func formatCases(t testing.TB) []formatCase {
	orig := johnBGR(t)
	grey, grey3 := gocv.NewMat(), gocv.NewMat()
	gocv.CvtColor(orig, &grey, gocv.ColorBGRToGray)
	gocv.CvtColor(grey, &grey3, gocv.ColorGrayToBGR)
	orig16, grey16 := gocv.NewMat(), gocv.NewMat()
	orig.ConvertToWithParams(&orig16, gocv.MatTypeCV16U, 257, 0)
	grey.ConvertToWithParams(&grey16, gocv.MatTypeCV16U, 257, 0)
	t.Cleanup(func() { orig.Close(); grey.Close(); grey3.Close(); orig16.Close(); grey16.Close() })

	// With alpha: opaque inside, transparent in a 25-pixel frame whose
	// colour channels hold noise; decoded, the frame must be white.
	bgra, framed := gocv.NewMat(), orig.Clone()
	gocv.CvtColor(orig, &bgra, gocv.ColorBGRToBGRA)
	px, _ := bgra.DataPtrUint8()
	fp, _ := framed.DataPtrUint8()
	rng := rand.New(rand.NewSource(1))
	w, h := orig.Cols(), orig.Rows()
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			if x >= 25 && x < w-25 && y >= 25 && y < h-25 {
				continue
			}
			i := y*w + x
			px[4*i], px[4*i+1], px[4*i+2], px[4*i+3] = byte(rng.Intn(256)), byte(rng.Intn(256)), byte(rng.Intn(256)), 0
			fp[3*i], fp[3*i+1], fp[3*i+2] = 255, 255, 255
		}
	}
	t.Cleanup(func() { bgra.Close(); framed.Close() })
	nrgba := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < w*h; i++ {
		nrgba.Pix[4*i], nrgba.Pix[4*i+1], nrgba.Pix[4*i+2], nrgba.Pix[4*i+3] = px[4*i+2], px[4*i+1], px[4*i], px[4*i+3]
	}

	goRGBA := toGo(orig)
	rgba64 := image.NewRGBA64(goRGBA.Rect)
	gray16 := image.NewGray16(goRGBA.Rect)
	gb := grey.ToBytes()
	for i := 0; i < w*h; i++ {
		for c := 0; c < 4; c++ {
			v := goRGBA.Pix[4*i+c]
			rgba64.Pix[8*i+2*c], rgba64.Pix[8*i+2*c+1] = v, v
		}
		gray16.Pix[2*i], gray16.Pix[2*i+1] = gb[i], gb[i]
	}
	// GIF: 256 colours (Plan 9 palette, dithered), and one transparent.
	pal := image.NewPaletted(goRGBA.Rect, palette.Plan9)
	draw.FloydSteinberg.Draw(pal, pal.Rect, goRGBA, image.Point{})
	palT := image.NewPaletted(goRGBA.Rect, append(color.Palette{color.RGBA{}}, palette.Plan9[:255]...))
	draw.FloydSteinberg.Draw(palT, palT.Rect, goRGBA, image.Point{})
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			if !(x >= 25 && x < w-25 && y >= 25 && y < h-25) {
				palT.SetColorIndex(x, y, 0)
			}
		}
	}
	gifFramed := framed // transparent frame on white

	return []formatCase{
		{"JPEG", align.FormatJPEG, readJohn(t), orig, 0},
		{"PNG OpenCV", align.FormatPNG, cvEncode(t, ".png", orig), orig, 0},
		{"PNG Go", align.FormatPNG, goEncode(t, func(b *bytes.Buffer) error { return png.Encode(b, goRGBA) }), orig, 0},
		{"PNG 16-bit", align.FormatPNG, goEncode(t, func(b *bytes.Buffer) error { return png.Encode(b, rgba64) }), orig, 0},
		{"PNG grey 16-bit", align.FormatPNG, goEncode(t, func(b *bytes.Buffer) error { return png.Encode(b, gray16) }), grey3, 0},
		{"PNG grey", align.FormatPNG, cvEncode(t, ".png", grey), grey3, 0},
		{"PNG alpha", align.FormatPNG, goEncode(t, func(b *bytes.Buffer) error { return png.Encode(b, nrgba) }), framed, 0},
		{"BMP OpenCV", align.FormatBMP, cvEncode(t, ".bmp", orig), orig, 0},
		{"BMP Go", align.FormatBMP, goEncode(t, func(b *bytes.Buffer) error { return bmp.Encode(b, goRGBA) }), orig, 0},
		{"BMP grey", align.FormatBMP, cvEncode(t, ".bmp", grey), grey3, 0},
		{"TIFF OpenCV", align.FormatTIFF, cvEncode(t, ".tiff", orig), orig, 0},
		{"TIFF Go deflate", align.FormatTIFF, goEncode(t, func(b *bytes.Buffer) error {
			return tiff.Encode(b, goRGBA, &tiff.Options{Compression: tiff.Deflate})
		}), orig, 0},
		{"TIFF 16-bit", align.FormatTIFF, cvEncode(t, ".tiff", orig16), orig, 0},
		{"TIFF alpha", align.FormatTIFF, cvEncode(t, ".tiff", bgra), framed, 0},
		{"WebP lossless", align.FormatWebP, cvEncode(t, ".webp", orig, gocv.IMWriteWebpQuality, 101), orig, 0},
		{"WebP lossy", align.FormatWebP, cvEncode(t, ".webp", orig, gocv.IMWriteWebpQuality, 90), orig, 4},
		{"WebP alpha", align.FormatWebP, cvEncode(t, ".webp", bgra, gocv.IMWriteWebpQuality, 101), framed, 0},
		{"PPM", align.FormatPNM, cvEncode(t, ".ppm", orig), orig, 0},
		{"PPM plain", align.FormatPNM, cvEncode(t, ".ppm", orig, gocv.IMWritePxmBinary, 0), orig, 0},
		{"PGM (ORL)", align.FormatPNM, cvEncode(t, ".pgm", grey), grey3, 0},
		{"PGM plain", align.FormatPNM, cvEncode(t, ".pgm", grey, gocv.IMWritePxmBinary, 0), grey3, 0},
		{"PGM 16-bit", align.FormatPNM, cvEncode(t, ".pgm", grey16), grey3, 0},
		{"PAM", align.FormatPNM, cvEncode(t, ".pam", orig), orig, 0},
		{"GIF (Yale)", align.FormatGIF, goEncode(t, func(b *bytes.Buffer) error { return gif.Encode(b, pal, nil) }), orig, 20},
		{"GIF transparent", align.FormatGIF, goEncode(t, func(b *bytes.Buffer) error { return gif.Encode(b, palT, nil) }), gifFramed, 20},
		{"JPEG 2000", align.FormatJPEG2000, cvEncode(t, ".jp2", orig), orig, 2}, // OpenCV's default rate is lossy
		{"J2K codestream", align.FormatJPEG2000, j2kCodestream(t, cvEncode(t, ".jp2", orig)), orig, 2},
		{"PNG palette", align.FormatPNG, goEncode(t, func(b *bytes.Buffer) error { return png.Encode(b, pal) }), orig, 20},
		{"PNG palette tRNS", align.FormatPNG, goEncode(t, func(b *bytes.Buffer) error { return png.Encode(b, palT) }), gifFramed, 20},
	}
}

// j2kCodestream is the raw codestream inside a JP2 file's jp2c box.
func j2kCodestream(t testing.TB, jp2 []byte) []byte {
	i := bytes.Index(jp2, []byte("jp2c"))
	if i < 4 {
		t.Fatal("no jp2c box")
	}
	n := int(binary.BigEndian.Uint32(jp2[i-4:]))
	if n == 0 {
		return jp2[i+4:]
	}
	return jp2[i+4 : i-4+n]
}

// TestDecodeFormats: the reference photo written in every format decodes
// to the same pixels (exactly for the lossless ones), transparency on
// white, with its format named from the content alone.
func TestDecodeFormats(t *testing.T) {
	for _, tc := range formatCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			if f, ok := align.Sniff(tc.data); f != tc.format || !ok {
				t.Fatalf("Sniff = %q, %v; want %q", f, ok, tc.format)
			}
			hd, err := align.ReadHeader(tc.data)
			if err != nil || hd.Width != 150 || hd.Height != 150 {
				t.Fatalf("ReadHeader = %+v, %v", hd, err)
			}
			im, err := align.Decode(tc.data)
			if err != nil {
				t.Fatal(err)
			}
			defer im.Close()
			if im.Format != tc.format || im.Scale != 1 || im.Mat.Type() != gocv.MatTypeCV8UC3 {
				t.Fatalf("decoded format %q scale %v type %v", im.Format, im.Scale, im.Mat.Type())
			}
			d := sampleDiff(im.Mat, tc.want)
			if d < 0 || d > tc.tol {
				t.Fatalf("decoded %d×%d differs from the original by %.3f per sample (allowed %.1f)", im.Width(), im.Height(), d, tc.tol)
			}
		})
	}
}

// TestDecodePBM: a 1-bit PBM (raw and plain) decodes to black and white.
func TestDecodePBM(t *testing.T) {
	orig := johnBGR(t)
	defer orig.Close()
	grey := gocv.NewMat()
	defer grey.Close()
	gocv.CvtColor(orig, &grey, gocv.ColorBGRToGray)
	for _, binary := range []int{1, 0} {
		im, err := align.Decode(cvEncode(t, ".pbm", grey, gocv.IMWritePxmBinary, binary))
		if err != nil {
			t.Fatalf("binary %d: %v", binary, err)
		}
		b := im.Mat.ToBytes()
		black := 0
		for _, v := range b {
			if v != 0 && v != 255 {
				t.Fatalf("binary %d: sample %d in a bilevel image", binary, v)
			}
			if v == 0 {
				black++
			}
		}
		if im.Width() != 150 || black == 0 || black == len(b) {
			t.Fatalf("binary %d: %d×%d, %d of %d samples black", binary, im.Width(), im.Height(), black, len(b))
		}
		im.Close()
	}
}

// withEXIFOrientation inserts an APP1 Exif segment holding only the
// Orientation tag right after a JPEG's SOI marker.
func withEXIFOrientation(jpg []byte, orientation uint16) []byte {
	var tiffB bytes.Buffer
	le := binary.LittleEndian
	tiffB.WriteString("II*\x00")
	binary.Write(&tiffB, le, uint32(8))
	binary.Write(&tiffB, le, uint16(1))                    // one entry
	binary.Write(&tiffB, le, [3]uint16{0x0112, 3, 0})      // Orientation, SHORT, count low
	binary.Write(&tiffB, le, [3]uint16{0, orientation, 0}) // count high, value, pad
	binary.Write(&tiffB, le, uint32(0))                    // no next IFD
	payload := append([]byte("Exif\x00\x00"), tiffB.Bytes()...)
	seg := []byte{0xFF, 0xE1, byte((len(payload) + 2) >> 8), byte(len(payload) + 2)}
	out := append([]byte{0xFF, 0xD8}, seg...)
	out = append(out, payload...)
	return append(out, jpg[2:]...)
}

// TestDecodeEXIFOrientation: a JPEG whose EXIF says "rotate 90° clockwise"
// decodes upright.
func TestDecodeEXIFOrientation(t *testing.T) {
	orig := johnBGR(t)
	defer orig.Close()
	// A non-square photo, so that the rotation shows in the size too.
	wide := orig.Region(image.Rect(0, 20, 150, 120))
	defer wide.Close()
	jpg := cvEncode(t, ".jpg", wide, gocv.IMWriteJpegQuality, 95)
	plain, err := align.Decode(jpg)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	for _, tc := range []struct {
		orientation uint16
		rot         gocv.RotateFlag
	}{{6, gocv.Rotate90Clockwise}, {8, gocv.Rotate90CounterClockwise}, {3, gocv.Rotate180Clockwise}} {
		im, err := align.Decode(withEXIFOrientation(jpg, tc.orientation))
		if err != nil {
			t.Fatal(err)
		}
		want := gocv.NewMat()
		gocv.Rotate(plain.Mat, &want, tc.rot)
		if d := sampleDiff(im.Mat, want); d != 0 {
			t.Errorf("orientation %d: decoded %d×%d differs from the rotated photo by %.2f", tc.orientation, im.Width(), im.Height(), d)
		}
		want.Close()
		im.Close()
	}
}

// TestLoadWithoutExtension: the ORL faces are PGM files, the Yale faces
// GIFs without an extension; a text file named .jpg is not a photo.
func TestLoadWithoutExtension(t *testing.T) {
	dir := t.TempDir()
	orig := johnBGR(t)
	defer orig.Close()
	small, grey := gocv.NewMat(), gocv.NewMat()
	defer small.Close()
	defer grey.Close()
	gocv.Resize(orig, &small, image.Pt(92, 112), 0, 0, gocv.InterpolationArea)
	gocv.CvtColor(small, &grey, gocv.ColorBGRToGray)
	orl := filepath.Join(dir, "1") // ORL: s1/1.pgm; here without the extension
	if err := os.WriteFile(orl, cvEncode(t, ".pgm", grey), 0o644); err != nil {
		t.Fatal(err)
	}
	var yale bytes.Buffer
	pal := image.NewPaletted(image.Rect(0, 0, 320, 243), palette.Plan9)
	big := gocv.NewMat()
	defer big.Close()
	gocv.Resize(orig, &big, image.Pt(320, 243), 0, 0, gocv.InterpolationLinear)
	draw.Draw(pal, pal.Rect, toGo(big), image.Point{}, draw.Src)
	if err := gif.Encode(&yale, pal, nil); err != nil {
		t.Fatal(err)
	}
	yaleP := filepath.Join(dir, "subject01.happy")
	if err := os.WriteFile(yaleP, yale.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path, format string
		w, h         int
	}{{orl, align.FormatPNM, 92, 112}, {yaleP, align.FormatGIF, 320, 243}} {
		im, err := align.Load(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if im.Format != c.format || im.Width() != c.w || im.Height() != c.h {
			t.Errorf("%s: %s %d×%d, want %s %d×%d", filepath.Base(c.path), im.Format, im.Width(), im.Height(), c.format, c.w, c.h)
		}
		im.Close()
	}
	fake := filepath.Join(dir, "photo.jpg")
	os.WriteFile(fake, []byte("not a photo, whatever the name says\n"), 0o644)
	if _, err := align.Load(fake); !errors.Is(err, align.ErrNotImage) {
		t.Fatalf("text named .jpg: %v", err)
	}
}

func pngBytes(t testing.TB, w, h int) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = byte(i * 7)
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// hugePNGHeader returns a PNG whose IHDR claims w×h pixels, with no data.
func hugePNGHeader(t testing.TB, w, h int) []byte {
	out := append([]byte(nil), pngBytes(t, 16, 16)[:33]...) // signature + IHDR chunk
	binary.BigEndian.PutUint32(out[16:], uint32(w))
	binary.BigEndian.PutUint32(out[20:], uint32(h))
	binary.BigEndian.PutUint32(out[29:], crc32.ChecksumIEEE(out[12:29]))
	return out
}

// patch returns a copy of b with v written at off.
func patch(b []byte, off int, v ...byte) []byte {
	out := append([]byte(nil), b...)
	copy(out[off:], v)
	return out
}

// bombs are headers that claim far more pixels than their files hold.
func bombs(t testing.TB) map[string][]byte {
	jpg := readJohn(t)
	sof := bytes.Index(jpg, []byte{0xFF, 0xC0})
	orig := johnBGR(t)
	defer orig.Close()
	bm := cvEncode(t, ".bmp", orig)
	jp2 := cvEncode(t, ".jp2", orig)
	ihdr := bytes.Index(jp2, []byte("ihdr")) + 4
	siz := bytes.Index(jp2, []byte{0xFF, 0x4F, 0xFF, 0x51})
	jp2 = patch(jp2, siz+8, 0, 0, 0xC3, 0x50, 0, 0, 0xC3, 0x50)  // Xsiz, Ysiz 50000
	jp2 = patch(jp2, siz+24, 0, 0, 0xC3, 0x50, 0, 0, 0xC3, 0x50) // one tile
	le32 := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	be32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	// A classic TIFF whose only strip is 4 bytes but whose page is 50000².
	tif := []byte("II*\x00\x08\x00\x00\x00\x05\x00")
	for _, e := range [][3]uint32{{256, 4, 50000}, {257, 4, 50000}, {258, 3, 8}, {273, 4, 80}, {279, 4, 4}} {
		tif = binary.LittleEndian.AppendUint16(tif, uint16(e[0]))
		tif = binary.LittleEndian.AppendUint16(tif, uint16(e[1]))
		tif = append(tif, le32(1)...)
		tif = append(tif, le32(e[2])...)
	}
	tif = append(tif, make([]byte, 80-len(tif)+4)...)
	vp8l := append([]byte("RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f"), le32(16383|16383<<14)...)
	vp8l = append(vp8l, make([]byte, 9)...)
	vp8x := append([]byte("RIFF\x1a\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00\x00\x00\x00\x00"), 0x9F, 0x86, 0x01, 0x9F, 0x86, 0x01) // 100000²
	vp8x = append(vp8x, make([]byte, 8)...)
	gifB := []byte("GIF89a\xff\xff\xff\xff\x00\x00\x00,\x00\x00\x00\x00\xff\xff\xff\xff\x00\x02\x02\x4c\x01\x00;")
	return map[string][]byte{
		"PNG 30000²":              hugePNGHeader(t, 30000, 30000),
		"BMP 40000²":              patch(bm, 18, append(le32(40000), le32(40000)...)...),
		"TIFF 50000²":             tif,
		"WebP lossless 16384²":    vp8l,
		"WebP extended 100000²":   vp8x,
		"GIF 65535²":              gifB,
		"PGM 20000²":              []byte("P5\n20000 20000\n255\n\x00\x00\x00\x00"),
		"PPM plain 20000²":        []byte("P3\n20000 20000\n255\n0 0 0 1 1 1\n"),
		"JPEG 2000 50000²":        patch(jp2, ihdr, append(be32(50000), be32(50000)...)...),
		"progressive JPEG 20000²": patch(jpg, sof, 0xFF, 0xC2, jpg[sof+2], jpg[sof+3], 8, 0x4E, 0x20, 0x4E, 0x20),
	}
}

// TestDecodeBadInputs: per format, truncated files, headers that claim more
// pixels than allowed (refused before decoding) and garbage are refused
// with the right error.
func TestDecodeBadInputs(t *testing.T) {
	jpg := readJohn(t)
	sof := bytes.Index(jpg, []byte{0xFF, 0xC0})
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, align.ErrNotImage},
		{"text", []byte("this is not an image, just some words\n"), align.ErrNotImage},
		{"JPEG header only", jpg[:200], align.ErrNotImage},
		{"1×1 PNG", pngBytes(t, 1, 1), align.ErrTooSmall},
		{"BMP magic with garbage", []byte("BM\x00\x00garbage garbage garbage"), align.ErrNotImage},
		{"PGM 8×8", []byte("P5\n8 8\n255\n" + strings.Repeat("\x80", 64)), align.ErrTooSmall},
		// A baseline JPEG's header claiming 65000² would fit at 1/8, but its
		// few kilobytes cannot hold that many blocks: refused, not decoded
		// into a 66-megapixel grey image.
		{"JPEG 65000² in 5 kB", patch(jpg, sof+5, 0xFD, 0xE8, 0xFD, 0xE8), align.ErrNotImage},
		{"HEIC", []byte("\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic\x00\x00\x00\x00meta"), align.ErrUnsupported},
		{"AVIF", []byte("\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf"), align.ErrUnsupported},
		{"animated WebP", []byte("RIFF\x1a\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00\x02\x00\x00\x00\x95\x00\x00\x95\x00\x00ANIM"), align.ErrUnsupported},
		{"BigTIFF", []byte("II+\x00\x08\x00\x00\x00\x10\x00\x00\x00\x00\x00\x00\x00"), align.ErrUnsupported},
	}
	for name, b := range bombs(t) {
		tests = append(tests, struct {
			name string
			data []byte
			want error
		}{"bomb " + name, b, align.ErrTooLarge})
	}
	rng := rand.New(rand.NewSource(7))
	for _, fc := range formatCases(t) {
		d := fc.data
		tests = append(tests, []struct {
			name string
			data []byte
			want error
		}{
			{fc.name + " truncated to half", d[:len(d)/2], align.ErrNotImage},
			{fc.name + " header only", d[:min(len(d)/2, 40)], align.ErrNotImage},
		}...)
		if fc.format != align.FormatGIF { // a GIF cut after its first frame is still that frame
			tests = append(tests, struct {
				name string
				data []byte
				want error
			}{fc.name + " missing its last bytes", d[:len(d)-3], align.ErrNotImage})
		}
		// Garbage after the magic number: any refusal but no crash.
		g := append([]byte(nil), d[:4]...)
		for len(g) < 4000 {
			g = append(g, byte(rng.Intn(256)))
		}
		tests = append(tests, struct {
			name string
			data []byte
			want error
		}{fc.name + " magic then garbage", g, nil})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			im, err := align.Decode(tc.data)
			if err == nil {
				im.Close()
				t.Fatal("decoded without error")
			}
			if tc.want == nil {
				if !errors.Is(err, align.ErrNotImage) && !errors.Is(err, align.ErrTooLarge) && !errors.Is(err, align.ErrTooSmall) {
					t.Fatalf("error %q is none of the decoder's", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %q, want %v", err, tc.want)
			}
		})
	}
	im, err := align.Decode(jpg)
	if err != nil {
		t.Fatalf("valid JPEG: %v", err)
	}
	if im.Width() != 150 || im.Height() != 150 {
		t.Errorf("decoded %d×%d, want 150×150", im.Width(), im.Height())
	}
	im.Close()
}

// TestUnsupportedAdvice: HEIC and AVIF are refused with how to convert them.
func TestUnsupportedAdvice(t *testing.T) {
	for data, want := range map[string]string{
		"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic":     "heif-convert",
		"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf": "avifdec",
	} {
		_, err := align.Decode([]byte(data))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
}

// FuzzDecode: no input makes the loader panic or abort; whatever decodes is
// a non-empty, bounded image. Seeded with a photo in every format, their
// truncations and the bomb headers.
func FuzzDecode(f *testing.F) {
	for _, fc := range formatCases(f) {
		f.Add(fc.data)
		f.Add(fc.data[:len(fc.data)/2])
	}
	for _, b := range bombs(f) {
		f.Add(b)
	}
	f.Add([]byte("GIF89a"))
	f.Add(greyAlphaPNG(20, 20))
	f.Add([]byte("P1\n16 16\n" + strings.Repeat("0 1 ", 128)))
	f.Add([]byte("P7\nWIDTH 16\nHEIGHT 16\nDEPTH 4\nMAXVAL 255\nTUPLTYPE RGB_ALPHA\nENDHDR\n" + strings.Repeat("\x80", 1024)))
	var jb bytes.Buffer
	_ = jpeg.Encode(&jb, image.NewGray(image.Rect(0, 0, 32, 32)), nil)
	f.Add(jb.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		im, err := align.DecodeWith(data, align.DecodeOptions{MaxPixels: 4_000_000})
		if err != nil {
			return
		}
		defer im.Close()
		if im.Mat.Empty() || im.Width() < align.MinSide || im.Height() < align.MinSide || im.Width()*im.Height() > 4_000_000 || im.Mat.Type() != gocv.MatTypeCV8UC3 {
			t.Fatalf("accepted a %d×%d image of type %v", im.Width(), im.Height(), im.Mat.Type())
		}
	})
}

// BenchmarkDecodeFormats decodes the 150×150 reference photo in each
// format: the cost of the header and completeness checks next to the
// decoder's.
func BenchmarkDecodeFormats(b *testing.B) {
	for _, fc := range formatCases(b) {
		b.Run(strings.ReplaceAll(fc.name, " ", "_"), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				im, err := align.Decode(fc.data)
				if err != nil {
					b.Fatal(err)
				}
				im.Close()
			}
		})
	}
}

// BenchmarkReadHeader is the header check alone (what a server runs on
// every upload before deciding to decode).
func BenchmarkReadHeader(b *testing.B) {
	data := readJohn(b)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := align.ReadHeader(data); err != nil {
			b.Fatal(err)
		}
	}
}
