package main

import (
	"bytes"
	"encoding/json"
	"image"
	"image/color"
	"image/color/palette"
	"image/draw"
	"image/gif"
	"math"
	"os"
	"path/filepath"
	"testing"

	"gocv.io/x/gocv"
	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"

	"github.com/facever/facever/align"
	"github.com/facever/facever/internal/testmodels"
	"github.com/facever/facever/verify"
)

// matToRGBA converts a BGR Mat to a Go image.
func matToRGBA(m gocv.Mat) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, m.Cols(), m.Rows()))
	b := m.ToBytes()
	for i := 0; i < m.Cols()*m.Rows(); i++ {
		img.Pix[4*i], img.Pix[4*i+1], img.Pix[4*i+2], img.Pix[4*i+3] = b[3*i+2], b[3*i+1], b[3*i], 255
	}
	return img
}

func encodeCV(t *testing.T, ext string, m gocv.Mat, params ...int) []byte {
	t.Helper()
	var buf *gocv.NativeByteBuffer
	var err error
	if len(params) == 0 {
		buf, err = gocv.IMEncode(gocv.FileExt(ext), m)
	} else {
		buf, err = gocv.IMEncodeWithParams(gocv.FileExt(ext), m, params)
	}
	if err != nil {
		t.Fatalf("%s: %v", ext, err)
	}
	defer buf.Close()
	return append([]byte(nil), buf.GetBytes()...)
}

// TestVerifyEveryFormat: John Simm's photo, converted to every format
// facever reads and saved without an extension, verifies against his other
// photo as the JPEG does: the same similarity for the lossless conversions,
// the same decision with a similarity within 0.05 for the grey, palette and
// lossy ones (ORL-style 92×112 PGM and Yale-style 320×243 GIF included).
func TestVerifyEveryFormat(t *testing.T) {
	testmodels.Dir(t)
	jpg, err := os.ReadFile(simmA)
	if err != nil {
		t.Fatal(err)
	}
	orig, err := gocv.IMDecode(jpg, gocv.IMReadColor)
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	grey, o16, small, smallGrey, yale := gocv.NewMat(), gocv.NewMat(), gocv.NewMat(), gocv.NewMat(), gocv.NewMat()
	defer grey.Close()
	defer o16.Close()
	defer small.Close()
	defer smallGrey.Close()
	defer yale.Close()
	gocv.CvtColor(orig, &grey, gocv.ColorBGRToGray)
	orig.ConvertToWithParams(&o16, gocv.MatTypeCV16U, 257, 0)
	// ORL: 92×112 grey, a crop of the photo's 92:112 middle (no stretch).
	mid := orig.Region(image.Rect(13, 0, 136, 150))
	gocv.Resize(mid, &small, image.Pt(92, 112), 0, 0, gocv.InterpolationArea)
	mid.Close()
	gocv.CvtColor(small, &smallGrey, gocv.ColorBGRToGray)
	// Yale: 320×243 grey, the face 243 pixels high in the middle.
	face := gocv.NewMat()
	defer face.Close()
	gocv.Resize(grey, &face, image.Pt(243, 243), 0, 0, gocv.InterpolationLinear)
	gocv.CopyMakeBorder(face, &yale, 0, 0, 38, 39, gocv.BorderReplicate, color.RGBA{})
	rgba := matToRGBA(orig)
	var gifB, yaleB, bmpB, tiffB bytes.Buffer
	pal := image.NewPaletted(rgba.Rect, palette.Plan9)
	draw.FloydSteinberg.Draw(pal, pal.Rect, rgba, image.Point{})
	gif.Encode(&gifB, pal, nil)
	greys := make(color.Palette, 256) // the Yale GIFs have a 256-grey palette
	for i := range greys {
		greys[i] = color.Gray{Y: uint8(i)}
	}
	yg := image.NewPaletted(image.Rect(0, 0, 320, 243), greys)
	yaleBGR := gocv.NewMat()
	defer yaleBGR.Close()
	gocv.CvtColor(yale, &yaleBGR, gocv.ColorGrayToBGR)
	draw.Draw(yg, yg.Rect, matToRGBA(yaleBGR), image.Point{}, draw.Src)
	gif.Encode(&yaleB, yg, nil)
	bmp.Encode(&bmpB, rgba)
	tiff.Encode(&tiffB, rgba, &tiff.Options{Compression: tiff.Deflate})

	dir := t.TempDir()
	cases := []struct {
		name     string
		data     []byte
		lossless bool
	}{
		{"png", encodeCV(t, ".png", orig), true},
		{"png16", encodeCV(t, ".png", o16), true},
		{"bmp", bmpB.Bytes(), true},
		{"tiff", tiffB.Bytes(), true},
		{"tiff16", encodeCV(t, ".tiff", o16), true},
		{"webp", encodeCV(t, ".webp", orig, gocv.IMWriteWebpQuality, 101), true},
		{"ppm", encodeCV(t, ".ppm", orig), true},
		{"webp-lossy", encodeCV(t, ".webp", orig, gocv.IMWriteWebpQuality, 80), false},
		{"jp2", encodeCV(t, ".jp2", orig), false},
		{"pgm", encodeCV(t, ".pgm", grey), false},
		{"gif", gifB.Bytes(), false},
		{"orl-pgm-92x112", encodeCV(t, ".pgm", smallGrey), false},
		{"yale-gif-320x243", yaleB.Bytes(), false},
	}
	args := []string{"embed", "--json", simmA, simmB}
	for _, c := range cases {
		p := filepath.Join(dir, c.name) // no extension: read by content
		if err := os.WriteFile(p, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, p)
	}
	code, out, errs := facever(t, args...)
	if code != exitOK {
		t.Fatalf("embed: exit %d %s", code, errs)
	}
	var doc struct {
		Photos []struct {
			Path      string    `json:"path"`
			Scale     float64   `json:"scale"`
			Embedding []float32 `json:"embedding"`
		} `json:"photos"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Photos) != len(cases)+2 {
		t.Fatalf("embed JSON: %v (%d photos)", err, len(doc.Photos))
	}
	b := doc.Photos[1].Embedding
	ref := verify.Cosine(doc.Photos[0].Embedding, b)
	if ref < verify.DefaultThreshold {
		t.Fatalf("the JPEG pair is not the same person (%.4f)", ref)
	}
	for i, c := range cases {
		if doc.Photos[i+2].Scale != 1 {
			t.Errorf("%s: read at scale %v", c.name, doc.Photos[i+2].Scale)
		}
		s := verify.Cosine(doc.Photos[i+2].Embedding, b)
		t.Logf("%-17s similarity to %s: %.4f (JPEG: %.4f)", c.name, filepath.Base(simmB), s, ref)
		if c.lossless && math.Abs(s-ref) > 1e-5 || !c.lossless && math.Abs(s-ref) > 0.05 {
			t.Errorf("%s: similarity %.4f, the JPEG's is %.4f", c.name, s, ref)
		}
		if s < verify.DefaultThreshold {
			t.Errorf("%s: not the same person (%.4f)", c.name, s)
		}
	}
	// And through verify itself, the ORL-style PGM without an extension.
	code, out, errs = facever(t, "verify", filepath.Join(dir, "orl-pgm-92x112"), simmB)
	if code != exitOK {
		t.Fatalf("verify ORL-style PGM: exit %d %q %s", code, out, errs)
	}
}

// TestDetectReducedJSON: a JPEG over the pixel limit is read at 1/2, and
// detect --json says so, with the photo's own size and the face box in the
// photo's coordinates (the same box as at full size).
func TestDetectReducedJSON(t *testing.T) {
	testmodels.Dir(t)
	orig := gocv.IMRead(simmA, gocv.IMReadColor)
	defer orig.Close()
	big := gocv.NewMat()
	defer big.Close()
	gocv.Resize(orig, &big, image.Pt(3600, 3600), 0, 0, gocv.InterpolationCubic)
	p := filepath.Join(t.TempDir(), "big.jpg")
	if err := os.WriteFile(p, encodeCV(t, ".jpg", big, gocv.IMWriteJpegQuality, 90), 0o644); err != nil {
		t.Fatal(err)
	}
	type doc struct {
		Photos []struct {
			Width  int     `json:"width"`
			Height int     `json:"height"`
			Scale  float64 `json:"scale"`
			Faces  []struct {
				Box [4]float64 `json:"box"`
			} `json:"faces"`
		} `json:"photos"`
	}
	detect := func() doc {
		code, out, errs := facever(t, "detect", p, "--json")
		var d doc
		if code != exitOK || json.Unmarshal([]byte(out), &d) != nil || len(d.Photos) != 1 || len(d.Photos[0].Faces) != 1 {
			t.Fatalf("detect: exit %d %q %s", code, out, errs)
		}
		return d
	}
	full := detect()
	saved := align.MaxPixels
	align.MaxPixels = 5_000_000 // 13 megapixels: read at 1/2
	defer func() { align.MaxPixels = saved }()
	half := detect()
	f, h := full.Photos[0], half.Photos[0]
	if f.Scale != 1 || h.Scale != 0.5 || h.Width != 3600 || h.Height != 3600 {
		t.Fatalf("full size: scale %v; reduced: scale %v, %d×%d", f.Scale, h.Scale, h.Width, h.Height)
	}
	w := f.Faces[0].Box[2] - f.Faces[0].Box[0]
	for k := range f.Faces[0].Box {
		if d := math.Abs(f.Faces[0].Box[k] - h.Faces[0].Box[k]); d > 0.03*w {
			t.Fatalf("box at 1/2 %v, at full size %v", h.Faces[0].Box, f.Faces[0].Box)
		}
	}
}
