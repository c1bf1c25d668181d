package dlib

import (
	"encoding/binary"
	"fmt"
	"math"
)

// FormatError reports where and why a .dat file does not have the expected
// layout: Offset is the byte offset at which the item Want was being read.
type FormatError struct {
	Offset int
	Want   string
	Msg    string
}

// Error implements error.
func (e *FormatError) Error() string {
	return fmt.Sprintf("dlib: at byte %d: expected %s: %s", e.Offset, e.Want, e.Msg)
}

// reader decodes dlib's serialisation primitives from a byte slice. Every
// read is bounds-checked; nothing allocates more than the bytes that remain.
type reader struct {
	b   []byte
	off int
}

func (r *reader) errf(at int, want, format string, args ...any) error {
	return &FormatError{Offset: at, Want: want, Msg: fmt.Sprintf(format, args...)}
}

func (r *reader) remaining() int { return len(r.b) - r.off }

// integer reads dlib's variable-length integer: a control byte (bit 7 set
// for a negative value, low 4 bits the number of magnitude bytes, bits 4–6
// zero), then the magnitude in that many little-endian bytes. maxBytes is
// the width of the C++ type that was serialised (8 for long long, 2 for
// int16...).
func (r *reader) integer(want string, maxBytes int) (int64, error) {
	at := r.off
	if r.remaining() < 1 {
		return 0, r.errf(at, want, "end of file")
	}
	ctl := r.b[r.off]
	if ctl&0x70 != 0 {
		return 0, r.errf(at, want, "control byte 0x%02x is not an integer's", ctl)
	}
	n := int(ctl & 0x0f)
	if n > maxBytes {
		return 0, r.errf(at, want, "integer of %d bytes, at most %d allowed", n, maxBytes)
	}
	if r.remaining() < 1+n {
		return 0, r.errf(at, want, "end of file inside a %d-byte integer", n)
	}
	var mag uint64
	for i := n - 1; i >= 0; i-- {
		mag = mag<<8 | uint64(r.b[r.off+1+i])
	}
	neg := ctl&0x80 != 0
	if mag > math.MaxInt64 {
		return 0, r.errf(at, want, "integer magnitude %d overflows int64", mag)
	}
	r.off += 1 + n
	v := int64(mag)
	if neg {
		v = -v
	}
	return v, nil
}

// intIn reads an integer and checks it lies in [lo, hi].
func (r *reader) intIn(want string, maxBytes int, lo, hi int64) (int64, error) {
	at := r.off
	v, err := r.integer(want, maxBytes)
	if err != nil {
		return 0, err
	}
	if v < lo || v > hi {
		if lo == hi {
			return 0, r.errf(at, want, "found %d, expected %d", v, lo)
		}
		return 0, r.errf(at, want, "found %d, expected %d..%d", v, lo, hi)
	}
	return v, nil
}

// boolean reads an ASCII '1' or '0'.
func (r *reader) boolean(want string) (bool, error) {
	at := r.off
	if r.remaining() < 1 {
		return false, r.errf(at, want, "end of file")
	}
	c := r.b[r.off]
	if c != '0' && c != '1' {
		return false, r.errf(at, want, "byte 0x%02x is not a bool ('0' or '1')", c)
	}
	r.off++
	return c == '1', nil
}

// str reads a length-prefixed string of at most maxLen bytes.
func (r *reader) str(want string, maxLen int) (string, error) {
	at := r.off
	n, err := r.integer(want+" (string length)", 8)
	if err != nil {
		return "", err
	}
	if n < 0 || n > int64(maxLen) {
		return "", r.errf(at, want, "string length %d, at most %d allowed", n, maxLen)
	}
	if int64(r.remaining()) < n {
		return "", r.errf(at, want, "string of %d bytes runs past the end of file", n)
	}
	s := string(r.b[r.off : r.off+int(n)])
	r.off += int(n)
	return s, nil
}

// version reads a layer's version string and checks it is one of allowed.
func (r *reader) version(want string, allowed ...string) (string, error) {
	at := r.off
	s, err := r.str(want, 64)
	if err != nil {
		return "", err
	}
	for _, a := range allowed {
		if s == a {
			return s, nil
		}
	}
	return "", r.errf(at, want, "found version string %q, expected one of %q", s, allowed)
}

// float reads a dlib float: integer mantissa (int64) then integer exponent
// (int16); the value is mantissa·2^exponent, with exponents 32000, 32001 and
// 32002 meaning +Inf, −Inf and NaN.
func (r *reader) float(want string) (float64, error) {
	m, err := r.integer(want+" (mantissa)", 8)
	if err != nil {
		return 0, err
	}
	e, err := r.integer(want+" (exponent)", 2)
	if err != nil {
		return 0, err
	}
	switch e {
	case 32000:
		return math.Inf(1), nil
	case 32001:
		return math.Inf(-1), nil
	case 32002:
		return math.NaN(), nil
	}
	return math.Ldexp(float64(m), int(e)), nil
}

// Shape is a dlib tensor shape: samples, channels (k), rows, columns.
type Shape [4]int

// Size is the number of elements.
func (s Shape) Size() int { return s[0] * s[1] * s[2] * s[3] }

// maxDim bounds each dimension so that products cannot overflow.
const maxDim = 1 << 24

func (r *reader) shape(want string) (Shape, error) {
	var s Shape
	names := [4]string{"num_samples", "k", "nr", "nc"}
	total := int64(1)
	for i := range s {
		at := r.off
		v, err := r.integer(want+" "+names[i], 8)
		if err != nil {
			return s, err
		}
		if v < 0 || v > maxDim {
			return s, r.errf(at, want+" "+names[i], "dimension %d out of range 0..%d", v, maxDim)
		}
		s[i] = int(v)
		total *= v
		if total > math.MaxInt32 {
			return s, r.errf(at, want, "tensor of more than 2^31 elements")
		}
	}
	return s, nil
}

// tensor reads a resizable tensor (version 2, shape, float32 data). When
// keep is false the data is skipped without allocating.
func (r *reader) tensor(want string, keep bool) (Shape, []float32, error) {
	if _, err := r.intIn(want+" version", 4, 2, 2); err != nil {
		return Shape{}, nil, err
	}
	at := r.off
	s, err := r.shape(want)
	if err != nil {
		return s, nil, err
	}
	n := s.Size()
	if r.remaining()/4 < n {
		return s, nil, r.errf(at, want, "tensor %v needs %d bytes of data, %d remain", s, 4*n, r.remaining())
	}
	var data []float32
	if keep {
		data = make([]float32, n)
		for i := range data {
			data[i] = math.Float32frombits(binary.LittleEndian.Uint32(r.b[r.off+4*i:]))
		}
	}
	r.off += 4 * n
	return s, data, nil
}

// alias reads an alias tensor: version 1 and the shape only.
func (r *reader) alias(want string) (Shape, error) {
	if _, err := r.intIn(want+" version", 4, 1, 1); err != nil {
		return Shape{}, err
	}
	return r.shape(want)
}
