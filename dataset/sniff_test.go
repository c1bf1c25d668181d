package dataset

import (
	"bytes"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"gocv.io/x/gocv"

	"github.com/facever/facever/align"
	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"
)

const johnsPhoto = "../testdata/johns/John_Simm/000288_00470387.jpg"

func testImage() *image.RGBA {
	im := image.NewRGBA(image.Rect(0, 0, 24, 16))
	for y := range 16 {
		for x := range 24 {
			im.Set(x, y, color.RGBA{uint8(10 * x), uint8(15 * y), 90, 255})
		}
	}
	return im
}

// encoded returns real files of every format, written by real encoders: Go's
// own for JPEG, PNG, GIF, BMP and TIFF, OpenCV's (of a johns photo) for WebP,
// the Netpbm family, JPEG 2000, TIFF and BMP. HEIF and AVIF (no encoder here) are the first box of files
// as the ISO base media format (ISO/IEC 14496-12) and HEIF (ISO/IEC 23008-12)
// define it.
func encoded(t testing.TB) map[string][]byte {
	t.Helper()
	im := testImage()
	out := map[string][]byte{}
	enc := map[string]func(*bytes.Buffer) error{
		"jpeg": func(b *bytes.Buffer) error { return jpeg.Encode(b, im, nil) },
		"png":  func(b *bytes.Buffer) error { return png.Encode(b, im) },
		"gif":  func(b *bytes.Buffer) error { return gif.Encode(b, im, nil) },
		"bmp":  func(b *bytes.Buffer) error { return bmp.Encode(b, im) },
		"tiff": func(b *bytes.Buffer) error { return tiff.Encode(b, im, nil) },
	}
	for name, f := range enc {
		var b bytes.Buffer
		if err := f(&b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = b.Bytes()
	}
	mat := gocv.IMRead(johnsPhoto, gocv.IMReadColor)
	if mat.Empty() {
		t.Fatalf("OpenCV cannot read %s", johnsPhoto)
	}
	defer mat.Close()
	grey := gocv.NewMat()
	defer grey.Close()
	gocv.CvtColor(mat, &grey, gocv.ColorBGRToGray)
	for _, c := range []struct {
		name, ext string
		m         gocv.Mat
	}{{"webp", ".webp", mat}, {"ppm", ".ppm", mat}, {"pgm", ".pgm", grey}, {"pbm", ".pbm", grey}, {"jp2", ".jp2", mat}, {"cvtiff", ".tiff", mat}, {"cvbmp", ".bmp", mat}} {
		buf, err := gocv.IMEncode(gocv.FileExt(c.ext), c.m)
		if err != nil {
			t.Logf("OpenCV cannot write %s here: %v", c.ext, err)
			continue
		}
		out[c.name] = bytes.Clone(buf.GetBytes())
		buf.Close()
	}
	// ftyp box: size, "ftyp", major brand, minor version, compatible brands.
	ftyp := func(major string, compat ...string) []byte {
		b := []byte{0, 0, 0, byte(16 + 4*len(compat))}
		b = append(b, "ftyp"+major+"\x00\x00\x00\x00"...)
		for _, c := range compat {
			b = append(b, c...)
		}
		return append(b, "\x00\x00\x00\x21meta"...) // the next box
	}
	out["heic"] = ftyp("heic", "mif1", "heic")
	out["heif-mif1"] = ftyp("mif1", "mif1", "miaf")
	out["avif"] = ftyp("avif", "mif1", "avif", "miaf")
	out["avif-compat"] = ftyp("mif1", "mif1", "avif")
	out["j2k"] = []byte{0xFF, 0x4F, 0xFF, 0x51, 0, 0x2f, 0, 0}
	return out
}

// TestSniffFileFormats: every format's real file is a photo by its content,
// whatever its name (they are written without an extension), and what is
// not an image is not.
func TestSniffFileFormats(t *testing.T) {
	want := map[string]string{
		"jpeg": align.FormatJPEG, "png": align.FormatPNG, "gif": align.FormatGIF, "bmp": align.FormatBMP,
		"tiff": align.FormatTIFF, "webp": align.FormatWebP, "ppm": align.FormatPNM, "pgm": align.FormatPNM,
		"pbm": align.FormatPNM, "jp2": align.FormatJPEG2000, "cvtiff": align.FormatTIFF, "cvbmp": align.FormatBMP,
		"heic": align.FormatHEIF, "heif-mif1": align.FormatHEIF, "avif": align.FormatAVIF,
		"avif-compat": align.FormatAVIF, "j2k": align.FormatJPEG2000,
	}
	files := encoded(t)
	dir := t.TempDir()
	for name, f := range want {
		data, ok := files[name]
		if !ok {
			if name == "jp2" { // OpenCV may be built without OpenJPEG
				continue
			}
			t.Errorf("no %s file", name)
			continue
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := SniffFile(p); got != f || err != nil {
			t.Errorf("%s (% x...): SniffFile = %q, %v; want %q", name, data[:min(16, len(data))], got, err, f)
		}
	}
	for name, data := range map[string]string{
		"text.jpg":        "hello, these are my notes\n",
		"bm.bmp":          "BMW 320d, 2004, blue, low mileage\n",
		"p1.pgm":          "P1ease call me back\n",
		"wave.webp":       "RIFF\x24\x00\x00\x00WAVEfmt ",
		"video.heic":      "\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom",
		"Thumbs.db":       "\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00\x00",
		"DS_Store":        "\x00\x00\x00\x01Bud1\x00\x00\x10\x00",
		"two-bytes.jpg":   "\xff\xd8",
		"archive.zip.jpg": "PK\x03\x04",
		"doc.pdf":         "%PDF-1.7\n",
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(data), 0o644)
		if got, err := SniffFile(p); got != "" || err != nil {
			t.Errorf("%s: SniffFile = %q, %v; want not an image", name, got, err)
		}
	}
	jpg, err := os.ReadFile(johnsPhoto)
	if err != nil {
		t.Fatal(err)
	}
	if f, _ := align.Sniff(jpg); f != align.FormatJPEG {
		t.Error("a johns photo is not a JPEG")
	}
}

func TestSniffFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "noext")
	if err := os.WriteFile(p, encoded(t)["gif"], 0o644); err != nil {
		t.Fatal(err)
	}
	if f, err := SniffFile(p); err != nil || f != align.FormatGIF {
		t.Errorf("extension-less GIF: %q %v", f, err)
	}
	empty := filepath.Join(dir, "empty.jpg")
	os.WriteFile(empty, nil, 0o644)
	if _, err := SniffFile(empty); err != errEmpty {
		t.Errorf("empty file: %v", err)
	}
	if _, err := SniffFile(dir); err == nil {
		t.Error("a folder sniffed")
	}
	if _, err := SniffFile(filepath.Join(dir, "none")); err == nil {
		t.Error("a missing file sniffed")
	}
}
