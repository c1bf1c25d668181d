package npy

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"testing"
)

// numpyF4 is what np.save writes for np.arange(6, dtype=np.float32).reshape(2, 3)
// (format 1.0: header padded with spaces to 128 bytes); built from the
// format specification, as NumPy is not installed here.
const numpyF4 = "934e554d5059010076007b276465736372273a20273c6634272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028322c2033292c207d202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a" +
	"000000000000803f0000004000004040000080400000a040"

func TestReadNumPy(t *testing.T) {
	b, _ := hex.DecodeString(numpyF4)
	shape, data, err := Read(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(shape, []int{2, 3}) || !reflect.DeepEqual(data, []float32{0, 1, 2, 3, 4, 5}) {
		t.Fatalf("got %v %v", shape, data)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, shape := range [][]int{{}, {3}, {2, 3}, {1, 3, 2, 2}, {0, 4}} {
		n := 1
		for _, d := range shape {
			n *= d
		}
		data := make([]float32, n)
		for i := range data {
			data[i] = float32(i) * 0.5
		}
		var b bytes.Buffer
		if err := Write(&b, shape, data); err != nil {
			t.Fatal(err)
		}
		if (b.Len()-n*4)%64 != 0 {
			t.Errorf("%v: header not 64-byte aligned", shape)
		}
		gs, gd, err := Read(&b)
		if err != nil {
			t.Fatalf("%v: %v", shape, err)
		}
		if !reflect.DeepEqual(gs, shape) || len(gd) != n || (n > 0 && !reflect.DeepEqual(gd, data)) {
			t.Errorf("%v: got %v %v", shape, gs, gd)
		}
	}
}

func TestReadErrors(t *testing.T) {
	good, _ := hex.DecodeString(numpyF4)
	for name, b := range map[string][]byte{
		"empty":     nil,
		"magic":     []byte("NOTNUMPY...."),
		"truncated": good[:len(good)-3],
		"int32":     bytes.Replace(good, []byte("<f4"), []byte("<i4"), 1),
		"fortran":   bytes.Replace(good, []byte("False"), []byte("True "), 1),
	} {
		if _, _, err := Read(bytes.NewReader(b)); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err = %v, want ErrFormat", name, err)
		}
	}
}

func FuzzRead(f *testing.F) {
	good, _ := hex.DecodeString(numpyF4)
	f.Add(good)
	var b bytes.Buffer
	Write(&b, []int{2, 2}, []float32{1, 2, 3, 4})
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		shape, vals, err := Read(bytes.NewReader(data))
		if err != nil {
			return
		}
		n := 1
		for _, d := range shape {
			n *= d
		}
		if n != len(vals) {
			t.Fatalf("shape %v with %d values", shape, len(vals))
		}
		var out bytes.Buffer
		if err := Write(&out, shape, vals); err != nil {
			t.Fatal(err)
		}
	})
}
