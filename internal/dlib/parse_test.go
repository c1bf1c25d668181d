package dlib

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/facever/facever/internal/testmodels"
)

// datPath is where scripts/fetch-dlib.sh puts the model file.
var datPath = filepath.Join("..", "..", "build", "dlib", FileName)

var (
	datOnce sync.Once
	datData []byte
	datErr  error
)

// datFile returns the real model file, failing the test with the set-up
// step when it is absent.
func datFile(t testing.TB) []byte {
	t.Helper()
	testmodels.File(t, datPath, "make setup")
	datOnce.Do(func() { datData, datErr = os.ReadFile(datPath) })
	if datErr != nil {
		t.Fatalf("%s missing: run scripts/fetch-dlib.sh (or `make setup`) to get it from Debian's dlib source package: %v", datPath, datErr)
	}
	return datData
}

func TestIntegers(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		max  int
		want int64
		err  string
	}{
		{[]byte{0x00}, 8, 0, ""},
		{[]byte{0x01, 0x02}, 8, 2, ""},
		{[]byte{0x81, 0x1c}, 2, -28, ""},
		{[]byte{0x02, 0x34, 0x12}, 8, 0x1234, ""},
		{[]byte{0x03, 0x0a, 0xd7, 0xa3}, 8, 0xa3d70a, ""},
		{[]byte{0x03, 0x0a, 0xd7, 0xa3}, 2, 0, "at most 2 allowed"},
		{[]byte{0x02, 0x34}, 8, 0, "end of file inside"},
		{[]byte{0x31}, 8, 0, "not an integer's"},
		{[]byte{0x08, 0, 0, 0, 0, 0, 0, 0, 0x80}, 8, 0, "overflows"},
		{nil, 8, 0, "end of file"},
	} {
		r := &reader{b: tc.in}
		got, err := r.integer("n", tc.max)
		if tc.err != "" {
			var fe *FormatError
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.As(err, &fe) || fe.Offset != 0 {
				t.Errorf("% x: got %d, %v; want error %q at byte 0", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want || r.off != len(tc.in) {
			t.Errorf("% x: got %d, %v (offset %d); want %d", tc.in, got, err, r.off, tc.want)
		}
	}
}

func TestFloats(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want float64
	}{
		{[]byte{0x03, 0x0a, 0xd7, 0xa3, 0x81, 0x1c}, float64(float32(0.04))},
		{[]byte{0x00, 0x00}, 0},
		{[]byte{0x81, 0x03, 0x01, 0x01}, -6},
		{[]byte{0x00, 0x02, 0x00, 0x7d}, math.Inf(1)},  // 32000
		{[]byte{0x00, 0x02, 0x01, 0x7d}, math.Inf(-1)}, // 32001
	} {
		r := &reader{b: tc.in}
		got, err := r.float("f")
		if err != nil || got != tc.want {
			t.Errorf("% x: got %g, %v; want %g", tc.in, got, err, tc.want)
		}
	}
	r := &reader{b: []byte{0x00, 0x02, 0x02, 0x7d}}
	if got, err := r.float("f"); err != nil || !math.IsNaN(got) {
		t.Errorf("32002: got %g, %v; want NaN", got, err)
	}
}

// TestParseModel parses the real file: 29 convolutions, 5.6 M parameters,
// the input means of docs/dlib.md, every conv's shape consistent.
func TestParseModel(t *testing.T) {
	data := datFile(t)
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != FileSHA256 {
		t.Fatalf("%s has sha256 %s, want %s (rerun scripts/fetch-dlib.sh)", datPath, got, FileSHA256)
	}
	net, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	convs, affines := 0, 0
	for _, l := range net.Layers {
		switch l.Kind {
		case Conv:
			convs++
			if len(l.Weights) != l.Filters*l.InC*l.Size*l.Size || len(l.Bias) != l.Filters {
				t.Errorf("%s: %d weights, %d biases", l, len(l.Weights), len(l.Bias))
			}
		case Affine:
			affines++
		}
	}
	if convs != 29 || affines != 29 {
		t.Errorf("%d convolutions and %d affine layers, want 29 and 29", convs, affines)
	}
	if net.Params != 5614592 {
		t.Errorf("%d parameters, want 5614592", net.Params)
	}
	want := [3]float32{122.782, 117.001, 104.298}
	for c := range want {
		if math.Abs(float64(net.Mean[c]-want[c])) > 1e-3 {
			t.Errorf("mean %v, want %v", net.Mean, want)
		}
	}
	if net.Rows != 150 || net.Cols != 150 || net.Loss != "loss_metric_2" {
		t.Errorf("input %d×%d, loss %q", net.Rows, net.Cols, net.Loss)
	}
	last := net.Layers[len(net.Layers)-1]
	if last.Kind != FC || last.InC != 256 || last.Filters != 128 || len(last.Weights) != 256*128 {
		t.Errorf("last layer %s with %d inputs", last, last.InC)
	}
}

// TestParseTruncated: every truncation of the file is a *FormatError at an
// offset within the truncated data, never a panic. Offsets cover the whole
// header byte by byte, then points through the weights.
func TestParseTruncated(t *testing.T) {
	data := datFile(t)
	var cuts []int
	for n := 0; n < 2048; n++ {
		cuts = append(cuts, n)
	}
	for n := 2048; n < len(data); n += len(data)/97 + 1 {
		cuts = append(cuts, n)
	}
	cuts = append(cuts, len(data)-1, len(data)-2, len(data)-100)
	for _, n := range cuts {
		_, err := Parse(data[:n])
		var fe *FormatError
		if !errors.As(err, &fe) {
			t.Fatalf("truncated to %d bytes: %v, want a *FormatError", n, err)
		}
		if fe.Offset < 0 || fe.Offset > n {
			t.Fatalf("truncated to %d bytes: error at offset %d", n, fe.Offset)
		}
	}
	_, err := Parse(data[:len(data)/2])
	t.Logf("half the file: %v", err)
}

// TestParseDifferent: corrupting a version string, a hyper-parameter or
// appending bytes names the place; another dlib network is refused.
func TestParseDifferent(t *testing.T) {
	data := datFile(t)
	mutate := func(f func([]byte) []byte) []byte { return f(bytes.Clone(data)) }

	i := bytes.Index(data, []byte("con_4"))
	if i < 0 {
		t.Fatal("no con_4 in the file")
	}
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"version string", mutate(func(b []byte) []byte { b[i+4] = '9'; return b }), `found version string "con_9"`},
		{"loss", mutate(func(b []byte) []byte { b[4] = 'X'; return b }), "loss layer"},
		{"trailing bytes", append(bytes.Clone(data), 0), "1 trailing bytes"},
		{"not dlib", []byte("\x89PNG\r\n\x1a\n"), "add_loss_layer version"},
		{"empty", nil, "end of file"},
	} {
		_, err := Parse(tc.data)
		var fe *FormatError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a FormatError containing %q", tc.name, err, tc.want)
			continue
		}
		t.Logf("%s: %v", tc.name, err)
	}
	// The stem convolution's num_filters (32) follows its params tensor:
	// a network with another width is a different file.
	j := i + 5
	r := &reader{b: data, off: j}
	if _, _, err := r.tensor("params", false); err != nil {
		t.Fatal(err)
	}
	b := bytes.Clone(data)
	if b[r.off] != 0x01 || b[r.off+1] != 32 {
		t.Fatalf("unexpected bytes % x after the stem's params", b[r.off:r.off+2])
	}
	b[r.off+1] = 64
	_, err := Parse(b)
	if err == nil || !strings.Contains(err.Error(), "num_filters") || !strings.Contains(err.Error(), "found 64, expected 32") {
		t.Errorf("64 stem filters: %v", err)
	}
}

// FuzzParse: Parse never panics and only returns *FormatError.
func FuzzParse(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x01, 0x01, 0x01, 0x0d})
	f.Add([]byte("\x01\x01\x01\x0dloss_metric_2\x03\x0a\xd7\xa3\x81\x1c\x03\x9a\x99\x99\x81\x18\x01\x02"))
	if data, err := os.ReadFile(datPath); err == nil {
		f.Add(data[:4096])
		i := bytes.Index(data, []byte("input_rgb_image_sized"))
		if i > 0 {
			f.Add(data[:i+300])
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		net, err := Parse(b)
		if err == nil {
			t.Fatalf("%d bytes parsed as a network of %d layers", len(b), len(net.Layers))
		}
		var fe *FormatError
		if !errors.As(err, &fe) {
			t.Fatalf("error %v is not a *FormatError", err)
		}
	})
}
