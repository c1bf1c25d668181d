package align

import (
	"bytes"
	"errors"
	"fmt"
	"image"
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

// ErrNotImage is returned for data that is not an image in a format facever
// reads (see Sniff), including truncated and corrupt files.
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
	// Format is the file format it was decoded from (a Format* name; ""
	// for an Image made in memory).
	Format string
	// Scale is the size Mat was decoded at over the photo's own size: 1 at
	// full size, 1/2, 1/4 or 1/8 for a large JPEG read reduced (see
	// DecodeOptions). 0 means 1 (an Image built by hand). Faces found by
	// Aligner.Detect are in the photo's coordinates, that is Mat's divided by
	// Scale.
	Scale float64
	// srcW, srcH are the photo's size (upright), when read reduced.
	srcW, srcH int
}

// SourceSize is the photo's own width and height (upright): the Mat's size
// unless the photo was read reduced.
func (im *Image) SourceSize() (w, h int) {
	if im.srcW > 0 && im.srcH > 0 {
		return im.srcW, im.srcH
	}
	s := im.scale()
	return int(float64(im.Width())/s + 0.5), int(float64(im.Height())/s + 0.5)
}

// Width and Height of the image in pixels.
func (im *Image) Width() int { return im.Mat.Cols() }

// Height of the image in pixels.
func (im *Image) Height() int { return im.Mat.Rows() }

// Close releases the image's memory.
func (im *Image) Close() error { return im.Mat.Close() }

// Load reads and decodes an image file; see Decode.
func Load(path string) (*Image, error) { return LoadWith(path, DecodeOptions{}) }

// LoadWith is Load with a caller-chosen pixel limit; see DecodeWith.
func LoadWith(path string, opt DecodeOptions) (*Image, error) {
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
	im, err := DecodeWith(data, opt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return im, nil
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
	return &Image{Mat: m, Scale: 1}, nil
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

// scale is Scale with 0 (and a nil image) read as 1.
func (im *Image) scale() float64 {
	if im == nil || im.Scale <= 0 {
		return 1
	}
	return im.Scale
}

// scaleFace multiplies every coordinate of f by s.
func scaleFace(f Face, s float64) Face {
	for k := range f.Box {
		f.Box[k] *= s
	}
	for k := range f.Landmarks {
		f.Landmarks[k].X *= s
		f.Landmarks[k].Y *= s
	}
	for k := range f.Points68 {
		f.Points68[k].X *= s
		f.Points68[k].Y *= s
	}
	return f
}

// toSource maps faces found on im's pixels to the photo's coordinates (a
// no-op unless the photo was read reduced).
func (im *Image) toSource(faces []Face) {
	if s := im.scale(); s != 1 {
		for i := range faces {
			faces[i] = scaleFace(faces[i], 1/s)
		}
	}
}

// fromSource maps a face in the photo's coordinates to im's pixels.
func (im *Image) fromSource(f Face) Face {
	if s := im.scale(); s != 1 {
		return scaleFace(f, s)
	}
	return f
}
