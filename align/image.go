package align

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg"
	_ "image/png"
	"os"

	"gocv.io/x/gocv"
)

// Limits on what Decode accepts, so that a hostile or mistaken file cannot
// exhaust memory.
var (
	// MaxFileBytes is the largest image file read.
	MaxFileBytes int64 = 64 << 20
	// MaxPixels is the largest width×height decoded (100 megapixels).
	MaxPixels = 100_000_000
)

// ErrNotImage is returned for data that is not a JPEG, PNG or other image
// OpenCV can decode, including truncated files.
var ErrNotImage = errors.New("not a readable image")

// ErrTooLarge is returned for images above MaxPixels or MaxFileBytes.
var ErrTooLarge = errors.New("image too large")

// ErrTooSmall is returned for images too small to hold a face.
var ErrTooSmall = errors.New("image too small")

// MinSide is the smallest width or height accepted (pixels).
const MinSide = 16

// Image is a decoded photo in OpenCV's BGR order. Call Close when done.
type Image struct {
	// Mat is the 8-bit, 3-channel BGR image.
	Mat gocv.Mat
}

// Width and Height of the image in pixels.
func (im *Image) Width() int { return im.Mat.Cols() }

// Height of the image in pixels.
func (im *Image) Height() int { return im.Mat.Rows() }

// Close releases the image's memory.
func (im *Image) Close() error { return im.Mat.Close() }

// Load reads and decodes an image file; see Decode.
func Load(path string) (*Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s is a directory, not an image", path)
	}
	if st.Size() > MaxFileBytes {
		return nil, fmt.Errorf("%w: %s is %d MiB, the limit is %d MiB", ErrTooLarge, path, st.Size()>>20, MaxFileBytes>>20)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	im, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return im, nil
}

// Decode decodes a JPEG or PNG photo into a BGR image. The header is checked first: images over MaxPixels are refused
// before any pixel memory is allocated. An empty, truncated or non-image
// input is ErrNotImage (OpenCV's imdecode returns an empty Mat with no error
// for those; that case is caught here).
func Decode(data []byte) (*Image, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty file", ErrNotImage)
	}
	if int64(len(data)) > MaxFileBytes {
		return nil, fmt.Errorf("%w: %d MiB, the limit is %d MiB", ErrTooLarge, len(data)>>20, MaxFileBytes>>20)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err == nil {
		if int64(cfg.Width)*int64(cfg.Height) > int64(MaxPixels) {
			return nil, fmt.Errorf("%w: %s header says %d×%d pixels, the limit is %d megapixels", ErrTooLarge, format, cfg.Width, cfg.Height, MaxPixels/1_000_000)
		}
		if cfg.Width < MinSide || cfg.Height < MinSide {
			return nil, fmt.Errorf("%w: %d×%d pixels, at least %d×%d needed to find a face", ErrTooSmall, cfg.Width, cfg.Height, MinSide, MinSide)
		}
		if format == "jpeg" && !jpegComplete(data) {
			return nil, fmt.Errorf("%w: the JPEG data is truncated (no end-of-image marker)", ErrNotImage)
		}
		if format != "jpeg" && format != "png" {
			return nil, fmt.Errorf("%w: %s images are not supported, only JPEG and PNG", ErrNotImage, format)
		}
	} else {
		return nil, fmt.Errorf("%w: %v (facever reads JPEG and PNG)", ErrNotImage, err)
	}
	m, err := gocv.IMDecode(data, gocv.IMReadColor)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotImage, err)
	}
	if m.Empty() {
		m.Close()
		return nil, fmt.Errorf("%w: the data is corrupt or truncated", ErrNotImage)
	}
	if m.Cols() < MinSide || m.Rows() < MinSide {
		w, h := m.Cols(), m.Rows()
		m.Close()
		return nil, fmt.Errorf("%w: %d×%d pixels, at least %d×%d needed to find a face", ErrTooSmall, w, h, MinSide, MinSide)
	}
	if int64(m.Cols())*int64(m.Rows()) > int64(MaxPixels) {
		w, h := m.Cols(), m.Rows()
		m.Close()
		return nil, fmt.Errorf("%w: %d×%d pixels, the limit is %d megapixels", ErrTooLarge, w, h, MaxPixels/1_000_000)
	}
	return &Image{Mat: m}, nil
}

// FromRGBA wraps a Go image as a BGR Image (for callers that already hold
// pixels in memory).
func FromRGBA(img image.Image) (*Image, error) {
	b := img.Bounds()
	if b.Dx() < MinSide || b.Dy() < MinSide {
		return nil, fmt.Errorf("%w: %d×%d pixels", ErrTooSmall, b.Dx(), b.Dy())
	}
	buf := make([]byte, 0, b.Dx()*b.Dy()*3)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bb, _ := img.At(x, y).RGBA()
			buf = append(buf, byte(bb>>8), byte(g>>8), byte(r>>8))
		}
	}
	m, err := gocv.NewMatFromBytes(b.Dy(), b.Dx(), gocv.MatTypeCV8UC3, buf)
	if err != nil {
		return nil, err
	}
	return &Image{Mat: m}, nil
}

// jpegComplete reports whether a JPEG stream reaches its end-of-image marker.
// libjpeg "decodes" a truncated file by filling the missing rows with grey,
// which would silently embed half a face. Marker segments are walked up to
// the first start-of-scan; in entropy-coded data every 0xFF byte is followed
// by 0x00 (stuffing) or a marker, so the first FF D9 after it is the real EOI.
func jpegComplete(b []byte) bool {
	if len(b) < 4 || b[0] != 0xFF || b[1] != 0xD8 {
		return false
	}
	i := 2
	for i+4 <= len(b) {
		if b[i] != 0xFF {
			return false
		}
		m := b[i+1]
		if m == 0xFF { // fill byte
			i++
			continue
		}
		if m == 0xD9 {
			return true
		}
		if m >= 0xD0 && m <= 0xD7 || m == 0x01 {
			i += 2
			continue
		}
		l := int(b[i+2])<<8 | int(b[i+3])
		if l < 2 || i+2+l > len(b) {
			return false
		}
		if m == 0xDA { // start of scan: look for EOI in what follows
			return bytes.Contains(b[i+2+l:], []byte{0xFF, 0xD9})
		}
		i += 2 + l
	}
	return false
}
