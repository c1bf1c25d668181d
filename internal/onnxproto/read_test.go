package onnxproto_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/facever/facever/internal/onnxproto"
)

// TestScanRoundTrip: what Marshal writes, Scan reads back (everything but
// attributes and tensor values), including symbolic and unknown dims and
// a node domain.
func TestScanRoundTrip(t *testing.T) {
	m := tiny()
	m.Graph.Nodes[2].Domain = "ai.onnx"
	m.Graph.Inputs[0].Dims[0] = onnxproto.Dim{Value: -1, Param: "N"}
	m.Graph.Outputs[0].Dims[0] = onnxproto.Dim{Value: -1} // unknown
	m.Graph.Outputs[0].Dims[1].Param = ""
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := onnxproto.Scan(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.IRVersion != 6 || got.Opset != 11 || got.ProducerName != "test" || got.Graph.Name != "tiny" {
		t.Errorf("header: %+v", got)
	}
	if !reflect.DeepEqual(got.Metadata, m.Metadata) {
		t.Errorf("metadata %v, want %v", got.Metadata, m.Metadata)
	}
	if len(got.Graph.Nodes) != 3 {
		t.Fatalf("%d nodes", len(got.Graph.Nodes))
	}
	for i, n := range got.Graph.Nodes {
		w := m.Graph.Nodes[i]
		w.Attrs = nil
		if !reflect.DeepEqual(n, w) {
			t.Errorf("node %d: %+v, want %+v", i, n, w)
		}
	}
	for i, init := range got.Graph.Initializers {
		w := m.Graph.Initializers[i]
		if init.Name != w.Name || init.Type != w.Type || !reflect.DeepEqual(init.Dims, w.Dims) || init.Floats != nil || init.Int64s != nil {
			t.Errorf("initializer %d: %+v, want %s %v type %d without values", i, init, w.Name, w.Dims, w.Type)
		}
	}
	wantIn := []onnxproto.Dim{{Value: -1, Param: "N"}, {Value: 1}, {Value: 3}, {Value: 3}}
	wantOut := []onnxproto.Dim{{Value: -1}, {Value: 1}, {Value: 3}, {Value: 3}}
	if in := got.Graph.Inputs; len(in) != 1 || in[0].Name != "x" || in[0].ElemType != onnxproto.Float || !reflect.DeepEqual(in[0].Dims, wantIn) {
		t.Errorf("inputs %+v, want x %v", in, wantIn)
	}
	if out := got.Graph.Outputs; len(out) != 1 || out[0].Name != "y" || !reflect.DeepEqual(out[0].Dims, wantOut) {
		t.Errorf("outputs %+v, want y %v", out, wantOut)
	}
}

// TestCheckWire: ONNX's own files pass; empty, garbage, truncated and
// node-less files are refused with ErrMalformed.
func TestCheckWire(t *testing.T) {
	good, err := tiny().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := onnxproto.CheckWire(good); err != nil {
		t.Fatalf("good file: %v", err)
	}
	// ONNX's own test files (Debian's libonnx-testdata) where installed
	files, _ := filepath.Glob("/usr/share/libonnx-testdata/data/node/test_*/model.onnx")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := onnxproto.CheckWire(b); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	t.Logf("%d files of libonnx-testdata pass", len(files))
	noGraph := []byte{0x08, 0x06} // ir_version 6 only
	for name, data := range map[string][]byte{
		"empty":     nil,
		"garbage":   []byte("this is not an ONNX file at all"),
		"truncated": good[:len(good)/2],
		"no graph":  noGraph,
		"no nodes":  {0x08, 0x06, 0x3a, 0x00},
	} {
		if err := onnxproto.CheckWire(data); !errors.Is(err, onnxproto.ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

// FuzzScan: arbitrary bytes give a model or an error wrapping
// ErrMalformed, never a panic; CheckWire agrees with Scan, and what scans
// strips and scans again with the same nodes and initializers.
func FuzzScan(f *testing.F) {
	b, err := tiny().Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{})
	f.Add([]byte{0x3a, 0x02, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := onnxproto.Scan(data)
		if err != nil {
			if !errors.Is(err, onnxproto.ErrMalformed) {
				t.Fatalf("error not wrapping ErrMalformed: %v", err)
			}
			return
		}
		if cw := onnxproto.CheckWire(data); cw != nil && len(m.Graph.Nodes) > 0 {
			t.Fatalf("Scan ok with nodes but CheckWire: %v", cw)
		}
		s, err := onnxproto.StripShapes(data)
		if err != nil {
			t.Fatalf("Scan ok but StripShapes: %v", err)
		}
		m2, err := onnxproto.Scan(s)
		if err != nil || len(m2.Graph.Nodes) != len(m.Graph.Nodes) || len(m2.Graph.Initializers) != len(m.Graph.Initializers) {
			t.Fatalf("stripped file: %v", err)
		}
	})
}

// TestStripShapes: the stripped file keeps nodes, initializers and element
// types, loses the declared shapes and value_info, and is re-encoded
// field for field otherwise.
func TestStripShapes(t *testing.T) {
	b, err := tiny().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// a value_info entry (graph field 13), as exporters write them
	vi := onnxproto.ValueInfo{Name: "p", ElemType: onnxproto.Float, Dims: []onnxproto.Dim{{Value: 1}, {Value: 1}, {Value: 4}, {Value: 4}}}
	withVI := tiny()
	withVI.Graph.Outputs = append(withVI.Graph.Outputs, vi)
	bv, err := withVI.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s, err := onnxproto.StripShapes(bv)
	if err != nil {
		t.Fatal(err)
	}
	got, err := onnxproto.Scan(s)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := onnxproto.Scan(bv)
	if !reflect.DeepEqual(got.Graph.Nodes, want.Graph.Nodes) || !reflect.DeepEqual(got.Graph.Initializers, want.Graph.Initializers) ||
		!reflect.DeepEqual(got.Metadata, want.Metadata) || got.Opset != want.Opset {
		t.Errorf("stripping changed more than shapes")
	}
	for _, v := range append(got.Graph.Inputs, got.Graph.Outputs...) {
		if v.Dims != nil || v.ElemType != onnxproto.Float {
			t.Errorf("%s: dims %v, type %d after stripping", v.Name, v.Dims, v.ElemType)
		}
	}
	if len(s) >= len(bv) {
		t.Errorf("stripped %d bytes, original %d", len(s), len(bv))
	}
	if _, err := onnxproto.StripShapes(b[:len(b)-3]); !errors.Is(err, onnxproto.ErrMalformed) {
		t.Errorf("truncated: %v", err)
	}
}
