// Package npy reads and writes NumPy .npy files of float32 in C order
// (format versions 1.0 to 3.0, https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html).
// Arrays of float64 are read and converted to float32.
package npy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

// ErrFormat is wrapped by every error about a malformed or unsupported file.
var ErrFormat = errors.New("npy: bad format")

var magic = []byte("\x93NUMPY")

// maxElements bounds what Read allocates (1 GiB of float32).
const maxElements = 1 << 28

// Read decodes a .npy array of float32 (or float64, converted), C order.
func Read(r io.Reader) (shape []int, data []float32, err error) {
	var pre [10]byte
	if _, err := io.ReadFull(r, pre[:8]); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if !bytes.Equal(pre[:6], magic) {
		return nil, nil, fmt.Errorf("%w: not a .npy file", ErrFormat)
	}
	var hlen int
	switch pre[6] {
	case 1:
		if _, err := io.ReadFull(r, pre[8:10]); err != nil {
			return nil, nil, fmt.Errorf("%w: %v", ErrFormat, err)
		}
		hlen = int(binary.LittleEndian.Uint16(pre[8:10]))
	case 2, 3:
		var b [4]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, nil, fmt.Errorf("%w: %v", ErrFormat, err)
		}
		hlen = int(binary.LittleEndian.Uint32(b[:]))
		if hlen > 1<<20 {
			return nil, nil, fmt.Errorf("%w: header of %d bytes", ErrFormat, hlen)
		}
	default:
		return nil, nil, fmt.Errorf("%w: version %d.%d", ErrFormat, pre[6], pre[7])
	}
	hdr := make([]byte, hlen)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	descr, fortran, shape, err := parseHeader(string(hdr))
	if err != nil {
		return nil, nil, err
	}
	if fortran {
		return nil, nil, fmt.Errorf("%w: Fortran order is not supported", ErrFormat)
	}
	n := 1
	for _, d := range shape {
		if d < 0 || (d > 0 && n > maxElements/d) {
			return nil, nil, fmt.Errorf("%w: shape %v too large", ErrFormat, shape)
		}
		n *= d
	}
	var size int
	var order binary.ByteOrder
	switch descr {
	case "<f4", "|f4", "=f4":
		size, order = 4, binary.LittleEndian
	case ">f4":
		size, order = 4, binary.BigEndian
	case "<f8", "=f8":
		size, order = 8, binary.LittleEndian
	case ">f8":
		size, order = 8, binary.BigEndian
	default:
		return nil, nil, fmt.Errorf("%w: dtype %q (want float32)", ErrFormat, descr)
	}
	data = make([]float32, 0, min(n, 1<<20))
	buf := make([]byte, 64*1024)
	for len(data) < n {
		k := min((n-len(data))*size, len(buf))
		if _, err := io.ReadFull(r, buf[:k]); err != nil {
			return nil, nil, fmt.Errorf("%w: data: %v", ErrFormat, err)
		}
		for i := 0; i < k; i += size {
			if size == 4 {
				data = append(data, math.Float32frombits(order.Uint32(buf[i:])))
			} else {
				data = append(data, float32(math.Float64frombits(order.Uint64(buf[i:]))))
			}
		}
	}
	return shape, data, nil
}

// parseHeader reads the Python dict literal of a .npy header, e.g.
// {'descr': '<f4', 'fortran_order': False, 'shape': (1, 3), }.
func parseHeader(h string) (descr string, fortran bool, shape []int, err error) {
	h = strings.TrimSpace(h)
	if !strings.HasPrefix(h, "{") || !strings.HasSuffix(h, "}") {
		return "", false, nil, fmt.Errorf("%w: header %q", ErrFormat, h)
	}
	body := h[1 : len(h)-1]
	get := func(key string) (string, bool) {
		for _, q := range []string{"'", "\""} {
			i := strings.Index(body, q+key+q)
			if i < 0 {
				continue
			}
			rest := strings.TrimSpace(body[i+len(key)+2:])
			if !strings.HasPrefix(rest, ":") {
				return "", false
			}
			return strings.TrimSpace(rest[1:]), true
		}
		return "", false
	}
	d, ok := get("descr")
	if !ok || len(d) < 2 || (d[0] != '\'' && d[0] != '"') {
		return "", false, nil, fmt.Errorf("%w: no descr", ErrFormat)
	}
	end := strings.IndexByte(d[1:], d[0])
	if end < 0 {
		return "", false, nil, fmt.Errorf("%w: bad descr", ErrFormat)
	}
	descr = d[1 : 1+end]
	f, ok := get("fortran_order")
	if !ok {
		return "", false, nil, fmt.Errorf("%w: no fortran_order", ErrFormat)
	}
	fortran = strings.HasPrefix(f, "True")
	if !fortran && !strings.HasPrefix(f, "False") {
		return "", false, nil, fmt.Errorf("%w: bad fortran_order", ErrFormat)
	}
	s, ok := get("shape")
	if !ok || !strings.HasPrefix(s, "(") {
		return "", false, nil, fmt.Errorf("%w: no shape", ErrFormat)
	}
	close := strings.IndexByte(s, ')')
	if close < 0 {
		return "", false, nil, fmt.Errorf("%w: bad shape", ErrFormat)
	}
	shape = []int{}
	for _, p := range strings.Split(s[1:close], ",") {
		p = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(p), "L"))
		if p == "" {
			continue
		}
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 {
			return "", false, nil, fmt.Errorf("%w: bad shape %q", ErrFormat, s[:close+1])
		}
		shape = append(shape, v)
	}
	return descr, fortran, shape, nil
}

// Write encodes data of the given shape as a version 1.0 .npy file of
// little-endian float32 in C order.
func Write(w io.Writer, shape []int, data []float32) error {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return fmt.Errorf("npy: negative dimension in %v", shape)
		}
		n *= d
	}
	if n != len(data) {
		return fmt.Errorf("npy: shape %v needs %d values, have %d", shape, n, len(data))
	}
	var sb strings.Builder
	sb.WriteString("{'descr': '<f4', 'fortran_order': False, 'shape': (")
	for i, d := range shape {
		sb.WriteString(strconv.Itoa(d))
		if i < len(shape)-1 || len(shape) == 1 {
			sb.WriteString(",")
		}
		if i < len(shape)-1 {
			sb.WriteString(" ")
		}
	}
	sb.WriteString("), }")
	// pad with spaces to a multiple of 64 bytes, ending in a newline
	hdr := sb.String()
	total := len(magic) + 2 + 2 + len(hdr) + 1
	hdr += strings.Repeat(" ", (64-total%64)%64) + "\n"
	if len(hdr) > math.MaxUint16 {
		return fmt.Errorf("npy: header too long")
	}
	var b bytes.Buffer
	b.Write(magic)
	b.Write([]byte{1, 0})
	binary.Write(&b, binary.LittleEndian, uint16(len(hdr)))
	b.WriteString(hdr)
	if _, err := w.Write(b.Bytes()); err != nil {
		return err
	}
	buf := make([]byte, 0, 64*1024)
	for i, v := range data {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
		if len(buf) == cap(buf) || i == len(data)-1 {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	return nil
}

// ReadFile reads a .npy file.
func ReadFile(path string) (shape []int, data []float32, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	shape, data, err = Read(f)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return shape, data, nil
}

// WriteFile writes a .npy file.
func WriteFile(path string, shape []int, data []float32) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := Write(f, shape, data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
