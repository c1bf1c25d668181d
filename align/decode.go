package align

import (
	"bytes"
	"fmt"
	"image"
	"image/gif"
	// image.Decode and image.DecodeConfig keep knowing JPEG and PNG for
	// the packages that use them on photos (this package did since its
	// start).
	_ "image/jpeg"
	_ "image/png"

	"gocv.io/x/gocv"
)

// DecodeOptions bound what DecodeWith accepts.
type DecodeOptions struct {
	// MaxPixels is the largest width×height decoded into memory (0: the
	// package's MaxPixels). A baseline JPEG above it is read at 1/2, 1/4 or
	// 1/8 of its size (libjpeg's scaled decoding, which never holds the full
	// size in memory), the least reduction that fits, as long as the
	// reduced photo keeps MinReducedSide pixels on its longer side; any
	// other image above it is ErrTooLarge, refused from its header before a
	// pixel is decoded.
	MaxPixels int
	// FullSize refuses a JPEG above MaxPixels instead of reading it reduced.
	FullSize bool
}

// MinReducedSide is the smallest longer side a large JPEG is reduced to.
// The detector looks at a 320-pixel-wide copy and finds faces down to about
// 1/20 of the photo's width; at 1600 pixels across such a face is still 80
// pixels wide, close to the 112-pixel chip it is aligned to, so reduction
// does not cost a face the detector could find.
const MinReducedSide = 1600

// Decode decodes a photo into a BGR image with the package's MaxPixels;
// see DecodeWith.
func Decode(data []byte) (*Image, error) { return DecodeWith(data, DecodeOptions{}) }

// DecodeWith decodes a photo into a BGR image. The format comes from the
// content (Sniff), never from a name: JPEG, PNG, WebP, TIFF (first page),
// BMP, GIF (first frame), PBM/PGM/PPM/PAM and JPEG 2000. Grey and 16-bit
// images come out as 8-bit BGR; images with transparency are composited on
// white; JPEGs are turned upright by their EXIF orientation.
//
// Every check that can be made from the header is made before any pixel is
// decoded: the dimensions against opt.MaxPixels (decompression bombs: a
// small file that claims gigapixels is ErrTooLarge without allocating
// them) and MinSide (ErrTooSmall), then that the file is complete (a
// truncated file is ErrNotImage: the decoders would fill the missing part
// with grey). HEIF/HEIC and AVIF photos are ErrUnsupported, with a message
// that says how to convert them. A large JPEG may be read reduced; the
// Image's Scale says at what size.
func DecodeWith(data []byte, opt DecodeOptions) (*Image, error) {
	limit := opt.MaxPixels
	if limit <= 0 {
		limit = MaxPixels
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty file", ErrNotImage)
	}
	if int64(len(data)) > MaxFileBytes {
		return nil, fmt.Errorf("%w: %d MiB, the limit is %d MiB", ErrTooLarge, len(data)>>20, MaxFileBytes>>20)
	}
	h, err := ReadHeader(data)
	if err != nil {
		return nil, err
	}
	name := formatName[h.Format]
	if h.Width < MinSide || h.Height < MinSide {
		return nil, fmt.Errorf("%w: %d×%d pixels, at least %d×%d needed to find a face", ErrTooSmall, h.Width, h.Height, MinSide, MinSide)
	}
	reduce := 1
	if h.Pixels() > int64(limit) {
		if reduce, err = reduction(h, limit, opt.FullSize); err != nil {
			return nil, err
		}
	}
	if err := complete(h, data); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotImage, err)
	}
	var m gocv.Mat
	if h.Format == FormatGIF {
		m, err = decodeGIF(data)
	} else {
		m, err = decodeCV(data, h, reduce)
	}
	if err != nil {
		return nil, err
	}
	if m.Cols() < MinSide || m.Rows() < MinSide || int64(m.Cols())*int64(m.Rows()) > int64(limit) {
		w, ht := m.Cols(), m.Rows()
		m.Close()
		if w < MinSide || ht < MinSide {
			return nil, fmt.Errorf("%w: %d×%d pixels, at least %d×%d needed to find a face", ErrTooSmall, w, ht, MinSide, MinSide)
		}
		return nil, fmt.Errorf("%w: %s decoded to %d×%d pixels, the limit is %d", ErrTooLarge, name, w, ht, limit)
	}
	im := &Image{Mat: m, Format: h.Format, Scale: 1 / float64(reduce)}
	if reduce > 1 {
		im.srcW, im.srcH = h.Width, h.Height
		if (h.Width+reduce-1)/reduce != m.Cols() { // turned by its EXIF orientation
			im.srcW, im.srcH = h.Height, h.Width
		}
	}
	return im, nil
}

// reduction picks the JPEG scale denominator (2, 4 or 8) that brings the
// photo under limit pixels, or says why it cannot be read.
func reduction(h Header, limit int, fullSize bool) (int, error) {
	mp := func(n int64) string { return fmt.Sprintf("%.1f megapixels", float64(n)/1e6) }
	tooLarge := fmt.Errorf("%w: %s header says %d×%d pixels (%s), the limit is %s", ErrTooLarge, formatName[h.Format], h.Width, h.Height, mp(h.Pixels()), mp(int64(limit)))
	switch {
	case h.Format != FormatJPEG:
		return 0, fmt.Errorf("%w; only JPEGs are read at reduced size: scale it down first, or convert it to JPEG", tooLarge)
	case fullSize:
		return 0, tooLarge
	case h.Progressive:
		return 0, fmt.Errorf("%w; a progressive JPEG cannot be read at reduced size without holding it all in memory: re-save it as baseline (e.g. `jpegtran -copy all big.jpg > baseline.jpg`) or scale it down", tooLarge)
	}
	for _, f := range []int{2, 4, 8} {
		w, ht := (h.Width+f-1)/f, (h.Height+f-1)/f
		if int64(w)*int64(ht) > int64(limit) {
			continue
		}
		if max(w, ht) < MinReducedSide {
			return 0, fmt.Errorf("%w; at 1/%d it would be %d×%d, too small to keep its faces (at least %d pixels on the longer side)", tooLarge, f, w, ht, MinReducedSide)
		}
		return f, nil
	}
	return 0, fmt.Errorf("%w; even at 1/8 it would be %s", tooLarge, mp(int64((h.Width+7)/8)*int64((h.Height+7)/8)))
}

// decodeCV decodes with OpenCV: as BGR (which applies JPEG's EXIF
// orientation and converts grey and 16-bit samples), or unchanged for images
// with alpha, which are then composited on white.
func decodeCV(data []byte, h Header, reduce int) (gocv.Mat, error) {
	flags := gocv.IMReadColor
	switch {
	case reduce == 2:
		flags = gocv.IMReadReducedColor2
	case reduce == 4:
		flags = gocv.IMReadReducedColor4
	case reduce == 8:
		flags = gocv.IMReadReducedColor8
	case h.Alpha:
		flags = gocv.IMReadUnchanged
	}
	m, err := gocv.IMDecode(data, flags)
	if err != nil {
		return m, fmt.Errorf("%w: %v", ErrNotImage, err)
	}
	if m.Empty() {
		m.Close()
		return m, fmt.Errorf("%w: the %s data is corrupt", ErrNotImage, formatName[h.Format])
	}
	if flags != gocv.IMReadUnchanged {
		return m, nil
	}
	out, err := toBGR(m)
	m.Close()
	return out, err
}

// toBGR turns an image decoded unchanged (1 to 4 channels, 8 or 16 bits)
// into 8-bit BGR, compositing any alpha channel on white.
func toBGR(m gocv.Mat) (gocv.Mat, error) {
	src := m
	switch m.Type() & 7 { // the depth: the low three bits
	case gocv.MatTypeCV8U:
	case gocv.MatTypeCV16U:
		src = gocv.NewMat()
		defer src.Close()
		m.ConvertToWithParams(&src, gocv.MatTypeCV8U, 1.0/257, 0)
	default:
		return gocv.Mat{}, fmt.Errorf("%w: samples of OpenCV depth %d are not read", ErrNotImage, m.Type()&7)
	}
	out := gocv.NewMat()
	switch src.Channels() {
	case 1:
		gocv.CvtColor(src, &out, gocv.ColorGrayToBGR)
	case 3:
		src.CopyTo(&out)
	case 4:
		out.Close()
		return compositeWhite(src)
	default:
		out.Close()
		return gocv.Mat{}, fmt.Errorf("%w: %d channels", ErrNotImage, src.Channels())
	}
	return out, nil
}

// compositeWhite blends 8-bit BGRA onto a white background. An alpha
// channel that is zero everywhere is taken as unused (as many 32-bit BMP
// and TIFF writers leave it) and dropped.
func compositeWhite(m gocv.Mat) (gocv.Mat, error) {
	px, err := m.DataPtrUint8()
	if err != nil {
		return gocv.Mat{}, fmt.Errorf("%w: %v", ErrNotImage, err)
	}
	used := false
	for i := 3; i < len(px); i += 4 {
		if px[i] != 0 {
			used = true
			break
		}
	}
	out := gocv.NewMatWithSize(m.Rows(), m.Cols(), gocv.MatTypeCV8UC3)
	dst, err := out.DataPtrUint8()
	if err != nil {
		out.Close()
		return gocv.Mat{}, fmt.Errorf("%w: %v", ErrNotImage, err)
	}
	for i, j := 0, 0; i+3 < len(px); i, j = i+4, j+3 {
		a := uint32(px[i+3])
		if !used {
			a = 255
		}
		for c := 0; c < 3; c++ {
			dst[j+c] = uint8((uint32(px[i+c])*a + 255*(255-a) + 127) / 255)
		}
	}
	return out, nil
}

// decodeGIF decodes a GIF's first frame with Go's image/gif (OpenCV 4.6
// has no GIF decoder) onto its logical screen, transparent pixels white.
// The header was checked first, and image/gif refuses a frame larger than
// the screen, so the frame's memory is bounded by the checked size.
func decodeGIF(data []byte) (gocv.Mat, error) {
	img, err := gif.Decode(bytes.NewReader(data))
	if err != nil {
		return gocv.Mat{}, fmt.Errorf("%w: %v", ErrNotImage, err)
	}
	cfg, err := gif.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return gocv.Mat{}, fmt.Errorf("%w: %v", ErrNotImage, err)
	}
	pal, ok := img.(*image.Paletted)
	if !ok {
		return gocv.Mat{}, fmt.Errorf("%w: GIF frame of type %T", ErrNotImage, img)
	}
	w, h := cfg.Width, cfg.Height
	if w == 0 || h == 0 {
		w, h = pal.Rect.Max.X, pal.Rect.Max.Y
	}
	var lut [256][3]uint8
	for i := range lut {
		lut[i] = [3]uint8{255, 255, 255}
	}
	for i, c := range pal.Palette {
		r, g, b, a := c.RGBA()
		// Palette colours are opaque or fully transparent; blend anyway.
		bl := func(v uint32) uint8 { return uint8((v*255/0xFFFF*(a>>8) + 255*(255-a>>8) + 127) / 255) }
		lut[i] = [3]uint8{bl(b), bl(g), bl(r)}
	}
	m := gocv.NewMatWithSize(h, w, gocv.MatTypeCV8UC3)
	buf, err := m.DataPtrUint8()
	if err != nil {
		m.Close()
		return gocv.Mat{}, fmt.Errorf("%w: %v", ErrNotImage, err)
	}
	for i := range buf {
		buf[i] = 255
	}
	r := pal.Rect.Intersect(image.Rect(0, 0, w, h))
	for y := r.Min.Y; y < r.Max.Y; y++ {
		row := pal.Pix[(y-pal.Rect.Min.Y)*pal.Stride:]
		for x := r.Min.X; x < r.Max.X; x++ {
			c := lut[row[x-pal.Rect.Min.X]]
			o := 3 * (y*w + x)
			buf[o], buf[o+1], buf[o+2] = c[0], c[1], c[2]
		}
	}
	return m, nil
}
