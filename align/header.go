package align

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// ErrUnsupported is returned for image formats facever recognises but does
// not decode (HEIF/HEIC, AVIF, BigTIFF, animated WebP); its message says how
// to convert the file. It wraps ErrNotImage.
var ErrUnsupported = fmt.Errorf("%w: unsupported image format", ErrNotImage)

// Header is what an image file's header says, read without decoding any
// pixel.
type Header struct {
	// Format is one of the Format* names (see Sniff).
	Format string
	// Width and Height are the stored dimensions in pixels (before any EXIF
	// rotation, which swaps them but keeps their product).
	Width, Height int
	// Alpha is set when the image has an alpha channel or a transparent
	// colour; Decode composites such images on white.
	Alpha bool
	// Progressive is set for JPEGs that libjpeg must buffer whole before
	// output (progressive or multi-scan); they cannot be read at reduced
	// size with less memory than at full size.
	Progressive bool
	// arithmetic is set for arithmetic-coded JPEGs (SOF9..SOF15).
	arithmetic bool
}

// Pixels is Width×Height.
func (h Header) Pixels() int64 { return int64(h.Width) * int64(h.Height) }

// ReadHeader reads the format and dimensions of an image from its first
// bytes (a few kilobytes suffice for every format but JPEGs with large
// metadata, whose frame header follows the metadata). It does not check
// that the rest of the file is present; Decode does.
func ReadHeader(data []byte) (Header, error) {
	format, ok := Sniff(data)
	if format == "" {
		return Header{}, fmt.Errorf("%w: the data is none of the formats facever reads (%s)", ErrNotImage, formatList)
	}
	if !ok {
		return Header{Format: format}, refusal(format)
	}
	var h Header
	var err error
	switch format {
	case FormatJPEG:
		h, err = jpegHeader(data)
	case FormatPNG:
		h, err = pngHeader(data)
	case FormatGIF:
		h, err = gifHeader(data)
	case FormatWebP:
		h, err = webpHeader(data)
	case FormatTIFF:
		h, err = tiffHeader(data)
	case FormatBMP:
		h, err = bmpHeader(data)
	case FormatPNM:
		h, _, err = pnmHeader(data)
	case FormatJPEG2000:
		h, err = jp2Header(data)
	}
	h.Format = format
	if errors.Is(err, ErrUnsupported) {
		return h, err
	}
	if err != nil {
		return h, fmt.Errorf("%w: %s header: %v", ErrNotImage, formatName[format], err)
	}
	if h.Width <= 0 || h.Height <= 0 {
		return h, fmt.Errorf("%w: %s header says %d×%d pixels", ErrNotImage, formatName[format], h.Width, h.Height)
	}
	return h, nil
}

// formatList names what Decode reads, for error messages.
const formatList = "JPEG, PNG, WebP, TIFF, BMP, GIF, PBM/PGM/PPM/PAM, JPEG 2000"

// formatName is each format's name in messages.
var formatName = map[string]string{
	FormatJPEG: "JPEG", FormatPNG: "PNG", FormatBMP: "BMP", FormatTIFF: "TIFF", FormatWebP: "WebP",
	FormatPNM: "PNM", FormatGIF: "GIF", FormatJPEG2000: "JPEG 2000", FormatHEIF: "HEIF/HEIC", FormatAVIF: "AVIF",
}

// refusal explains how to convert a format facever does not decode.
func refusal(format string) error {
	switch format {
	case FormatHEIF:
		return fmt.Errorf("%w: this is a HEIF/HEIC photo (what iPhones and many Android phones write); convert it to JPEG first, e.g. `heif-convert photo.heic photo.jpg` (Debian/Ubuntu package libheif-examples), or set the phone to save \"Most Compatible\" (JPEG)", ErrUnsupported)
	case FormatAVIF:
		return fmt.Errorf("%w: this is an AVIF photo; convert it to PNG or JPEG first, e.g. `avifdec photo.avif photo.png` (Debian/Ubuntu package libavif-bin)", ErrUnsupported)
	}
	return fmt.Errorf("%w: %s", ErrUnsupported, format)
}

var errShort = errors.New("the file ends inside the header")

// jpegSOF reports whether marker m starts a frame (SOF0..SOF15 but DHT,
// JPG and DAC) and whether that frame is progressive.
func jpegSOF(m byte) (sof, progressive bool) {
	if m < 0xC0 || m > 0xCF || m == 0xC4 || m == 0xC8 || m == 0xCC {
		return false, false
	}
	return true, m == 0xC2 || m == 0xC6 || m == 0xCA || m == 0xCE
}

// jpegHeader walks the marker segments up to the frame header (SOF).
func jpegHeader(b []byte) (Header, error) {
	i := 2
	for {
		if i+4 > len(b) {
			return Header{}, errShort
		}
		if b[i] != 0xFF {
			return Header{}, fmt.Errorf("no marker at byte %d", i)
		}
		m := b[i+1]
		if m == 0xFF {
			i++
			continue
		}
		if m >= 0xD0 && m <= 0xD7 || m == 0x01 {
			i += 2
			continue
		}
		if m == 0xD9 || m == 0xDA {
			return Header{}, errors.New("no frame header before the image data")
		}
		l := int(binary.BigEndian.Uint16(b[i+2:]))
		if l < 2 {
			return Header{}, fmt.Errorf("marker segment of length %d", l)
		}
		if sof, prog := jpegSOF(m); sof {
			if i+10 > len(b) {
				return Header{}, errShort
			}
			h := Header{Height: int(binary.BigEndian.Uint16(b[i+5:])), Width: int(binary.BigEndian.Uint16(b[i+7:])), Progressive: prog, arithmetic: m >= 0xC9}
			if h.Height == 0 {
				return h, errors.New("the height is given after the image data (DNL marker), which facever does not read")
			}
			return h, nil
		}
		i += 2 + l
	}
}

// pngHeader reads IHDR and looks for a tRNS chunk before the image data.
func pngHeader(b []byte) (Header, error) {
	if len(b) < 33 {
		return Header{}, errShort
	}
	if string(b[12:16]) != "IHDR" {
		return Header{}, errors.New("the first chunk is not IHDR")
	}
	w, h := binary.BigEndian.Uint32(b[16:]), binary.BigEndian.Uint32(b[20:])
	if w > 1<<31-1 || h > 1<<31-1 {
		return Header{}, fmt.Errorf("%d×%d pixels", w, h)
	}
	hd := Header{Width: int(w), Height: int(h), Alpha: b[25] == 4 || b[25] == 6}
	for i := 8; i+8 <= len(b); {
		n := int(binary.BigEndian.Uint32(b[i:]))
		typ := string(b[i+4 : i+8])
		if typ == "tRNS" {
			hd.Alpha = true
		}
		if typ == "IDAT" || n < 0 || n > len(b) {
			break
		}
		i += 12 + n
	}
	return hd, nil
}

// gifHeader reads the logical screen and walks to the first image
// descriptor (noting a transparent colour on the way).
func gifHeader(b []byte) (Header, error) {
	if len(b) < 13 {
		return Header{}, errShort
	}
	h := Header{Width: int(binary.LittleEndian.Uint16(b[6:])), Height: int(binary.LittleEndian.Uint16(b[8:]))}
	_, transparent, err := gifFirstFrame(b)
	h.Alpha = transparent
	if err == errShort {
		err = nil // ReadHeader may be given only the first bytes
	}
	return h, err
}

// gifFirstFrame walks a GIF to the end of its first frame's image data and
// returns the offset just past it.
func gifFirstFrame(b []byte) (end int, transparent bool, err error) {
	i := 13
	if b[10]&0x80 != 0 {
		i += 3 << (b[10]&7 + 1)
	}
	// subBlocks skips data sub-blocks up to and including the terminator.
	subBlocks := func(i int) (int, error) {
		for {
			if i >= len(b) {
				return i, errShort
			}
			n := int(b[i])
			i++
			if n == 0 {
				return i, nil
			}
			i += n
		}
	}
	for {
		if i >= len(b) {
			return i, transparent, errShort
		}
		switch b[i] {
		case 0x21: // extension
			if i+2 > len(b) {
				return i, transparent, errShort
			}
			if b[i+1] == 0xF9 && i+4 <= len(b) && b[i+3]&1 != 0 {
				transparent = true
			}
			if i, err = subBlocks(i + 2); err != nil {
				return i, transparent, err
			}
		case 0x2C: // image descriptor
			if i+10 > len(b) {
				return i, transparent, errShort
			}
			flags := b[i+9]
			i += 10
			if flags&0x80 != 0 {
				i += 3 << (flags&7 + 1)
			}
			i++ // LZW minimum code size
			i, err = subBlocks(i)
			return i, transparent, err
		case 0x3B:
			return i, transparent, errors.New("the file ends before its first frame")
		default:
			return i, transparent, fmt.Errorf("unknown block 0x%02x at byte %d", b[i], i)
		}
	}
}

// webpHeader reads the first chunk: VP8 (lossy), VP8L (lossless) or VP8X
// (extended: canvas size, alpha and animation flags).
func webpHeader(b []byte) (Header, error) {
	if len(b) < 30 {
		return Header{}, errShort
	}
	d := b[20:]
	switch string(b[12:16]) {
	case "VP8 ":
		if d[3] != 0x9D || d[4] != 0x01 || d[5] != 0x2A {
			return Header{}, errors.New("no VP8 start code")
		}
		return Header{Width: int(binary.LittleEndian.Uint16(d[6:]) & 0x3FFF), Height: int(binary.LittleEndian.Uint16(d[8:]) & 0x3FFF)}, nil
	case "VP8L":
		if d[0] != 0x2F {
			return Header{}, errors.New("no VP8L signature")
		}
		v := binary.LittleEndian.Uint32(d[1:])
		return Header{Width: int(v&0x3FFF) + 1, Height: int(v>>14&0x3FFF) + 1, Alpha: v>>28&1 != 0}, nil
	case "VP8X":
		if d[0]&0x02 != 0 {
			return Header{}, fmt.Errorf("%w: this is an animated WebP; extract one frame first, e.g. `webpmux -get frame 1 anim.webp -o frame.webp` (package webp)", ErrUnsupported)
		}
		w := int(d[4]) | int(d[5])<<8 | int(d[6])<<16
		h := int(d[7]) | int(d[8])<<8 | int(d[9])<<16
		return Header{Width: w + 1, Height: h + 1, Alpha: d[0]&0x10 != 0}, nil
	}
	return Header{}, fmt.Errorf("unknown first chunk %q", b[12:16])
}

// tiff is a parsed first image file directory.
type tiff struct {
	order  binary.ByteOrder
	b      []byte
	fields map[uint16][]uint32
}

// tiffHeader reads the first IFD (the first page).
func tiffHeader(b []byte) (Header, error) {
	t, err := readTIFF(b)
	if err != nil {
		return Header{}, err
	}
	h := Header{Width: int(t.one(256)), Height: int(t.one(257))}
	// ExtraSamples: 1 associated, 2 unassociated alpha, 0 unspecified; the
	// last is taken as alpha when it is the one extra sample of a grey or
	// RGB page (what OpenCV writes for BGRA). An alpha channel that is zero
	// everywhere is dropped by the decoder.
	spp, photometric := t.one(277), t.one(262)
	extra := t.fields[338]
	for _, es := range extra {
		if es == 1 || es == 2 {
			h.Alpha = true
		}
	}
	if len(extra) <= 1 && (photometric == 2 && spp == 4 || photometric <= 1 && spp == 2) {
		h.Alpha = true
	}
	return h, nil
}

func readTIFF(b []byte) (*tiff, error) {
	if len(b) < 8 {
		return nil, errShort
	}
	t := &tiff{order: binary.LittleEndian, b: b, fields: map[uint16][]uint32{}}
	if b[0] == 'M' {
		t.order = binary.BigEndian
	}
	if t.order.Uint16(b[2:]) == 43 {
		return nil, fmt.Errorf("%w: this is a BigTIFF; convert it to a classic TIFF or PNG first, e.g. `tiffcp -8 big.tif small.tif` or `convert big.tif[0] page.png`", ErrUnsupported)
	}
	off := int64(t.order.Uint32(b[4:]))
	if off < 8 || off+2 > int64(len(b)) {
		return nil, errShort
	}
	n := int64(t.order.Uint16(b[off:]))
	if off+2+12*n+4 > int64(len(b)) { // the entries and the next IFD's offset
		return nil, errShort
	}
	for k := int64(0); k < n; k++ {
		e := b[off+2+12*k:]
		tag, typ, count := t.order.Uint16(e), t.order.Uint16(e[2:]), int64(t.order.Uint32(e[4:]))
		size := int64(tiffTypeSize[min(int(typ), len(tiffTypeSize)-1)])
		if count > int64(len(b)) {
			return nil, fmt.Errorf("tag %d has %d values", tag, count)
		}
		val := e[8:12]
		if size*count > 4 {
			// Every field's values must be in the file (a truncated
			// TIFF often loses the ones stored last).
			p := int64(t.order.Uint32(e[8:]))
			if p+size*count > int64(len(b)) {
				return nil, fmt.Errorf("the file is truncated: tag %d points past its end", tag)
			}
			val = b[p : p+size*count]
		}
		if typ != 3 && typ != 4 {
			continue // only SHORT and LONG fields are read
		}
		vs := make([]uint32, count)
		for j := range vs {
			if size == 2 {
				vs[j] = uint32(t.order.Uint16(val[2*j:]))
			} else {
				vs[j] = t.order.Uint32(val[4*j:])
			}
		}
		t.fields[tag] = vs
	}
	return t, nil
}

// tiffTypeSize is the size in bytes of a value of each TIFF field type
// (0 for unknown types, whose values are not checked).
var tiffTypeSize = [...]int{0, 1, 1, 2, 4, 8, 1, 1, 2, 4, 8, 4, 8, 0}

// one is a field's first value (0 when absent).
func (t *tiff) one(tag uint16) uint32 {
	if v := t.fields[tag]; len(v) > 0 {
		return v[0]
	}
	return 0
}

// complete checks that every strip or tile of the first page lies inside
// the file.
func (t *tiff) complete() error {
	offs, counts := t.fields[273], t.fields[279]
	if len(offs) == 0 {
		offs, counts = t.fields[324], t.fields[325]
	}
	if len(offs) == 0 || len(offs) != len(counts) {
		return errors.New("the first page has no strip or tile table")
	}
	for i := range offs {
		if int64(offs[i])+int64(counts[i]) > int64(len(t.b)) {
			return fmt.Errorf("the file is truncated: strip %d of %d ends at byte %d of %d", i+1, len(offs), int64(offs[i])+int64(counts[i]), len(t.b))
		}
	}
	return nil
}

// bmp is a parsed BMP header.
type bmp struct {
	off, width, height, bpp, compression int
	alphaMask                            uint32
}

func readBMP(b []byte) (bmp, error) {
	if len(b) < 26 {
		return bmp{}, errShort
	}
	le := binary.LittleEndian
	v := bmp{off: int(le.Uint32(b[10:]))}
	hs := le.Uint32(b[14:])
	if hs == 12 { // OS/2 BITMAPCOREHEADER
		v.width, v.height, v.bpp = int(le.Uint16(b[18:])), int(le.Uint16(b[20:])), int(le.Uint16(b[24:]))
		return v, nil
	}
	if len(b) < 34 {
		return bmp{}, errShort
	}
	v.width, v.height = int(int32(le.Uint32(b[18:]))), int(int32(le.Uint32(b[22:])))
	v.bpp, v.compression = int(le.Uint16(b[28:])), int(le.Uint32(b[30:]))
	if hs >= 56 && len(b) >= 70 {
		v.alphaMask = le.Uint32(b[66:])
	}
	return v, nil
}

// bmpHeader: a negative height means rows stored top-down.
func bmpHeader(b []byte) (Header, error) {
	v, err := readBMP(b)
	if err != nil {
		return Header{}, err
	}
	if v.width <= 0 {
		return Header{}, fmt.Errorf("width %d", v.width)
	}
	h := v.height
	if h < 0 {
		h = -h
	}
	return Header{Width: v.width, Height: h, Alpha: v.bpp == 32 && v.alphaMask != 0}, nil
}

// complete checks that the pixel data the header describes is present:
// rows of 4-byte-aligned pixels for uncompressed BMPs, an RLE stream that
// reaches its end-of-bitmap code for RLE8 and RLE4.
func (v bmp) complete(b []byte) error {
	if v.off < 14 || v.off >= len(b) {
		return errors.New("the pixel data offset is past the end of the file")
	}
	h := v.height
	if h < 0 {
		h = -h
	}
	switch v.compression {
	case 0, 3, 6: // BI_RGB, BI_BITFIELDS, BI_ALPHABITFIELDS
		stride := (int64(v.width)*int64(v.bpp) + 31) / 32 * 4
		if need := int64(v.off) + stride*int64(h); need > int64(len(b)) {
			return fmt.Errorf("the file is truncated: %d×%d at %d bits needs %d bytes, it has %d", v.width, h, v.bpp, need, len(b))
		}
		return nil
	case 1, 2: // BI_RLE8, BI_RLE4
		for i := v.off; i+1 < len(b); {
			n, c := b[i], b[i+1]
			i += 2
			if n != 0 {
				continue
			}
			switch c {
			case 0: // end of line
			case 1: // end of bitmap
				return nil
			case 2: // delta
				i += 2
			default: // absolute run of c pixels, padded to 16 bits
				nb := int(c)
				if v.compression == 2 {
					nb = (nb + 1) / 2
				}
				i += (nb + 1) &^ 1
			}
		}
		return errors.New("the file is truncated: the RLE data has no end-of-bitmap code")
	}
	return fmt.Errorf("compression %d is not one facever reads", v.compression)
}

// pnmHeader parses a PBM/PGM/PPM (P1..P6) or PAM (P7) header and returns the
// offset of the first sample.
func pnmHeader(b []byte) (Header, int, error) {
	kind := b[1]
	i := 2
	// token returns the next whitespace-separated header token, skipping
	// comments.
	token := func() (string, error) {
		for i < len(b) && (isPNMSpace(b[i]) || b[i] == '#') {
			if b[i] == '#' {
				for i < len(b) && b[i] != '\n' && b[i] != '\r' {
					i++
				}
				continue
			}
			i++
		}
		s := i
		for i < len(b) && !isPNMSpace(b[i]) && b[i] != '#' && i-s < 32 {
			i++
		}
		if s == i || i >= len(b) {
			return "", errShort
		}
		return string(b[s:i]), nil
	}
	number := func() (int, error) {
		t, err := token()
		if err != nil {
			return 0, err
		}
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%q is not a size", t)
		}
		return n, nil
	}
	var h Header
	var err error
	if kind == '7' {
		for {
			t, err := token()
			if err != nil {
				return h, 0, err
			}
			if t == "ENDHDR" {
				break
			}
			switch t {
			case "WIDTH":
				h.Width, err = number()
			case "HEIGHT":
				h.Height, err = number()
			case "DEPTH", "MAXVAL":
				_, err = number()
			case "TUPLTYPE":
				var tt string
				tt, err = token()
				h.Alpha = h.Alpha || bytes.HasSuffix([]byte(tt), []byte("_ALPHA"))
			default:
				err = fmt.Errorf("unknown PAM header line %q", t)
			}
			if err != nil {
				return h, 0, err
			}
		}
		for i < len(b) && b[i] != '\n' {
			i++
		}
		return h, i + 1, nil
	}
	if h.Width, err = number(); err != nil {
		return h, 0, err
	}
	if h.Height, err = number(); err != nil {
		return h, 0, err
	}
	if kind != '1' && kind != '4' {
		maxval, err := number()
		if err != nil {
			return h, 0, err
		}
		if maxval < 1 || maxval > 65535 {
			return h, 0, fmt.Errorf("maximum sample value %d", maxval)
		}
	}
	return h, i + 1, nil // one whitespace byte ends the header
}

// pnmComplete checks that a PNM file holds every sample its header
// promises: the exact byte count for the raw kinds, the number of sample
// tokens for the plain (ASCII) kinds.
func pnmComplete(b []byte) error {
	h, start, err := pnmHeader(b)
	if err != nil {
		return err
	}
	px := h.Pixels()
	kind := b[1]
	var depth, maxval int64 = 1, 255
	if kind == '7' {
		depth, maxval = pamField(b[:start], "DEPTH"), pamField(b[:start], "MAXVAL")
		if depth < 1 || depth > 4 || maxval < 1 || maxval > 65535 {
			return fmt.Errorf("PAM depth %d, maximum value %d", depth, maxval)
		}
	} else if kind != '1' && kind != '4' {
		maxval = pnmMaxval(b[:start])
	}
	if kind == '3' || kind == '6' {
		depth = 3
	}
	bytesPer := int64(1)
	if maxval > 255 {
		bytesPer = 2
	}
	var need int64
	switch kind {
	case '4':
		need = (int64(h.Width) + 7) / 8 * int64(h.Height)
	case '5', '6', '7':
		need = px * depth * bytesPer
	case '1', '2', '3':
		// Count the samples (P1's may be single digits without spaces); the
		// last one must be followed by a byte, as OpenCV's reader needs.
		want := px * depth
		var n int64
		in := false
		d := b[start-1:]
		for k, c := range d {
			digit := c >= '0' && c <= '9'
			if digit && (!in || kind == '1') {
				n++
				if n == want {
					if k+1 < len(d) && (kind == '1' || d[k+1] < '0' || d[k+1] > '9') {
						return nil
					}
					if kind != '1' {
						for k+1 < len(d) && d[k+1] >= '0' && d[k+1] <= '9' {
							k++
						}
						if k+1 < len(d) {
							return nil
						}
					}
					break
				}
			}
			in = digit
		}
		return fmt.Errorf("the file is truncated: %d of %d samples", n, want)
	}
	if have := int64(len(b) - start); have < need {
		return fmt.Errorf("the file is truncated: %d×%d needs %d bytes of samples, it has %d", h.Width, h.Height, need, have)
	}
	return nil
}

// pnmMaxval re-reads the last header number of a P2/P3/P5/P6 header.
func pnmMaxval(hdr []byte) int64 {
	f := bytes.Fields(stripComments(hdr))
	if len(f) < 4 {
		return 255
	}
	n, _ := strconv.ParseInt(string(f[3]), 10, 64)
	return n
}

// pamField reads a numeric PAM header field.
func pamField(hdr []byte, name string) int64 {
	f := bytes.Fields(stripComments(hdr))
	for k := 0; k+1 < len(f); k++ {
		if string(f[k]) == name {
			n, _ := strconv.ParseInt(string(f[k+1]), 10, 64)
			return n
		}
	}
	return 0
}

func stripComments(b []byte) []byte {
	var out []byte
	for len(b) > 0 {
		j := bytes.IndexByte(b, '#')
		if j < 0 {
			return append(out, b...)
		}
		out = append(out, b[:j]...)
		out = append(out, ' ')
		b = b[j:]
		k := bytes.IndexAny(b, "\r\n")
		if k < 0 {
			return out
		}
		b = b[k:]
	}
	return out
}

// jp2Header reads the SIZ segment of a J2K codestream, or the ihdr and
// cdef boxes of a JP2 file.
func jp2Header(b []byte) (Header, error) {
	if b[0] == 0xFF {
		return j2kSIZ(b)
	}
	var h Header
	found := false
	err := jp2Boxes(b, 0, len(b), func(typ string, s, e int) error {
		if typ != "jp2h" {
			return nil
		}
		return jp2Boxes(b, s, e, func(typ string, s, e int) error {
			switch typ {
			case "ihdr":
				if e-s < 14 {
					return errShort
				}
				h.Height, h.Width = int(binary.BigEndian.Uint32(b[s:])), int(binary.BigEndian.Uint32(b[s+4:]))
				found = true
			case "cdef":
				for k := s + 2; k+6 <= e; k += 6 {
					if t := binary.BigEndian.Uint16(b[k+2:]); t == 1 || t == 2 {
						h.Alpha = true
					}
				}
			}
			return nil
		})
	})
	if err != nil && !(err == errShort && found) {
		return h, err
	}
	if !found {
		return h, errors.New("no image header box (ihdr)")
	}
	err = nil
	// The codestream's own header must agree with the box's and pass the
	// same checks.
	_ = jp2Boxes(b, 0, len(b), func(typ string, s, e int) error {
		if typ == "jp2c" && err == nil {
			var cs Header
			if cs, err = j2kSIZ(b[s:e]); err == nil && (cs.Width != h.Width || cs.Height != h.Height) {
				err = fmt.Errorf("the codestream is %d×%d, the header box says %d×%d", cs.Width, cs.Height, h.Width, h.Height)
			}
			if err == errShort {
				err = nil // only the first bytes were given
			}
		}
		return nil
	})
	if err != nil {
		return h, err
	}
	if h.Width > 1<<31-1 || h.Height > 1<<31-1 || h.Width < 0 || h.Height < 0 {
		return h, fmt.Errorf("%d×%d pixels", h.Width, h.Height)
	}
	return h, nil
}

// j2kSIZ reads the image size from a codestream's SIZ marker segment.
func j2kSIZ(b []byte) (Header, error) {
	if len(b) < 42 {
		return Header{}, errShort
	}
	be := binary.BigEndian
	xs, ys, xo, yo := be.Uint32(b[8:]), be.Uint32(b[12:]), be.Uint32(b[16:]), be.Uint32(b[20:])
	if xo >= xs || yo >= ys {
		return Header{}, fmt.Errorf("image area %d..%d × %d..%d", xo, xs, yo, ys)
	}
	xt, yt, xto, yto := be.Uint32(b[24:]), be.Uint32(b[28:]), be.Uint32(b[32:]), be.Uint32(b[36:])
	if xt == 0 || yt == 0 || xto > xo || yto > yo {
		return Header{}, fmt.Errorf("tiles of %d×%d", xt, yt)
	}
	// The standard allows at most 65535 tiles; OpenJPEG allocates a
	// structure per tile, so a header of 1×1 tiles is a bomb of its own.
	if tiles := int64((xs-xto+xt-1)/xt) * int64((ys-yto+yt-1)/yt); tiles > 65535 {
		return Header{}, fmt.Errorf("%d tiles, more than the 65535 the standard allows", tiles)
	}
	nc := be.Uint16(b[40:])
	if nc < 1 || nc > 4 {
		return Header{}, fmt.Errorf("%d components (a photo has 1 to 4)", nc)
	}
	return Header{Width: int(xs - xo), Height: int(ys - yo), Alpha: nc == 2 || nc == 4}, nil
}

// jp2Boxes calls fn with the type and payload bounds of each box in
// b[s:e]. A box running past e is errShort.
func jp2Boxes(b []byte, s, e int, fn func(typ string, s, e int) error) error {
	for s < e {
		if s+8 > e {
			return errShort
		}
		l := int64(binary.BigEndian.Uint32(b[s:]))
		typ := string(b[s+4 : s+8])
		hl := int64(8)
		switch l {
		case 0:
			l = int64(e - s)
		case 1:
			if s+16 > e {
				return errShort
			}
			l, hl = int64(binary.BigEndian.Uint64(b[s+8:])), 16
		}
		if l < hl {
			return fmt.Errorf("box %q of length %d", typ, l)
		}
		if int64(s)+l > int64(e) {
			if err := fn(typ, s+int(hl), e); err != nil {
				return err
			}
			return errShort
		}
		if err := fn(typ, s+int(hl), s+int(l)); err != nil {
			return err
		}
		s += int(l)
	}
	return nil
}

// complete checks, per format, that the file is not cut short: libjpeg,
// libpng, libtiff and OpenJPEG all "decode" a truncated file with the
// missing part grey or black, which would embed half a face.
func complete(h Header, b []byte) error {
	switch h.Format {
	case FormatJPEG:
		if !jpegComplete(b) {
			return errors.New("the JPEG data is truncated (no end-of-image marker)")
		}
		// Huffman coding spends at least one bit on each 8×8 block of the
		// first component, so a file shorter than pixels/512 bytes cannot
		// hold the image its header claims: libjpeg would "decode" it as
		// grey, up to the pixel limit (a decompression bomb).
		if !h.arithmetic && int64(len(b)) < h.Pixels()/512 {
			return fmt.Errorf("the JPEG header says %d×%d pixels, but %d bytes cannot hold them (at least %d needed)", h.Width, h.Height, len(b), h.Pixels()/512)
		}
	case FormatPNG:
		for i := 8; ; {
			if i+12 > len(b) {
				return errors.New("the PNG data is truncated (no IEND chunk)")
			}
			n := int64(binary.BigEndian.Uint32(b[i:]))
			if n > 1<<31-1 || int64(i)+12+n > int64(len(b)) {
				return fmt.Errorf("the PNG data is truncated (chunk %q runs past the end)", b[i+4:i+8])
			}
			if string(b[i+4:i+8]) == "IEND" {
				return nil
			}
			i += 12 + int(n)
		}
	case FormatGIF:
		if _, _, err := gifFirstFrame(b); err != nil {
			if err == errShort {
				return errors.New("the GIF data is truncated (its first frame is cut short)")
			}
			return err
		}
	case FormatWebP:
		size := int64(binary.LittleEndian.Uint32(b[4:]))
		if size+8 > int64(len(b)) {
			return fmt.Errorf("the WebP data is truncated: its header says %d bytes, the file has %d", size+8, len(b))
		}
		for i := int64(12); i < size+8; {
			if i+8 > size+8 {
				return errors.New("the WebP data is truncated (a chunk header is cut)")
			}
			n := int64(binary.LittleEndian.Uint32(b[i+4:]))
			if i+8+n > size+8 {
				return fmt.Errorf("the WebP data is truncated (chunk %q runs past the end)", b[i:i+4])
			}
			i += 8 + n + n&1
		}
	case FormatTIFF:
		t, err := readTIFF(b)
		if err != nil {
			return err
		}
		return t.complete()
	case FormatBMP:
		v, err := readBMP(b)
		if err != nil {
			return err
		}
		return v.complete(b)
	case FormatPNM:
		return pnmComplete(b)
	case FormatJPEG2000:
		return jp2Complete(b)
	}
	return nil
}

// jp2Complete checks that the codestream ends with its EOC marker (in a JP2
// file, at the end of the jp2c box, which must fit in the file).
func jp2Complete(b []byte) error {
	cs := b
	if b[0] != 0xFF {
		cs = nil
		err := jp2Boxes(b, 0, len(b), func(typ string, s, e int) error {
			if typ == "jp2c" && cs == nil {
				cs = b[s:e]
			}
			return nil
		})
		if err == errShort {
			return errors.New("the JPEG 2000 data is truncated (a box runs past the end)")
		}
		if err != nil {
			return err
		}
		if cs == nil {
			return errors.New("no codestream box (jp2c)")
		}
	}
	if len(cs) < 2 || cs[len(cs)-2] != 0xFF || cs[len(cs)-1] != 0xD9 {
		return errors.New("the JPEG 2000 data is truncated (no end-of-codestream marker)")
	}
	return nil
}
