// Package cvdnn runs ONNX models with OpenCV's DNN module through GoCV: the
// runtime "opencv" of facever, and the reference the project's own engine is
// compared against.
package cvdnn

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"

	"gocv.io/x/gocv"

	"github.com/facever/facever/internal/infer"
)

// Session is an OpenCV DNN network. It is safe for concurrent use: Run calls
// are serialised (OpenCV already uses every core inside one forward pass).
type Session struct {
	mu  sync.Mutex
	net gocv.Net
}

// ErrMalformed is returned for a file that is not a well-formed ONNX protobuf.
var ErrMalformed = errors.New("malformed ONNX file")

// Open loads an ONNX model file. OpenCV aborts the whole process on some
// malformed files, so the bytes are first checked to be a well-formed
// protobuf with a graph (see Validate).
func Open(path string) (*Session, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return OpenBytes(data)
}

// OpenBytes loads an ONNX model from memory; see Open.
func OpenBytes(data []byte) (*Session, error) {
	if err := Validate(data); err != nil {
		return nil, err
	}
	net, err := gocv.ReadNetFromONNXBytes(data)
	if err != nil {
		return nil, fmt.Errorf("opencv: %w", err)
	}
	if net.Empty() {
		return nil, fmt.Errorf("opencv could not load the model")
	}
	return &Session{net: net}, nil
}

// Run implements infer.Session.
func (s *Session) Run(inputs map[string]infer.Tensor, names []string) ([]infer.Tensor, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var blobs []gocv.Mat
	defer func() {
		for i := range blobs {
			blobs[i].Close()
		}
	}()
	for name, t := range inputs {
		if err := t.Check(); err != nil {
			return nil, fmt.Errorf("input %s: %w", name, err)
		}
		if len(t.Data) == 0 {
			return nil, fmt.Errorf("input %s is empty", name)
		}
		// Copy into OpenCV-owned memory: the network keeps the blob past
		// this call, and C must not hold Go pointers.
		blob := gocv.NewMatWithSizes(t.Shape, gocv.MatTypeCV32F)
		blobs = append(blobs, blob)
		dst, err := blob.DataPtrFloat32()
		if err != nil || len(dst) != len(t.Data) {
			return nil, fmt.Errorf("input %s: cannot fill an OpenCV blob of shape %v", name, t.Shape)
		}
		copy(dst, t.Data)
		s.net.SetInput(blob, name)
	}
	var outs []gocv.Mat
	if len(names) == 1 {
		outs = []gocv.Mat{s.net.Forward(names[0])}
	} else {
		outs = s.net.ForwardLayers(names)
	}
	res := make([]infer.Tensor, len(outs))
	for i := range outs {
		m := outs[i]
		shape := m.Size()
		data, err := m.DataPtrFloat32()
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("output %d: %w", i, err)
		}
		res[i] = infer.Tensor{Shape: shape, Data: append([]float32(nil), data...)}
		m.Close()
	}
	return res, nil
}

// Close releases the network.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.net.Close()
}

// Validate checks that data is a protobuf ModelProto with a graph whose
// nodes are well-formed, walking the wire format without registering any
// protobuf type. It rejects what makes OpenCV abort: truncated or garbage
// files, empty graphs.
func Validate(data []byte) error {
	if len(data) == 0 {
		return fmt.Errorf("%w: empty file", ErrMalformed)
	}
	graph, err := walk(data, 7) // ModelProto.graph = 7
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if graph == nil {
		return fmt.Errorf("%w: no graph", ErrMalformed)
	}
	nodes := 0
	if _, err := walkEach(graph, 1, func(b []byte) error { // GraphProto.node = 1
		nodes++
		_, err := walk(b, -1)
		return err
	}); err != nil {
		return fmt.Errorf("%w: graph: %v", ErrMalformed, err)
	}
	if nodes == 0 {
		return fmt.Errorf("%w: graph has no nodes", ErrMalformed)
	}
	if bytes.Count(data[:min(len(data), 64)], []byte{0}) == len(data[:min(len(data), 64)]) {
		return fmt.Errorf("%w: zero bytes", ErrMalformed)
	}
	return nil
}

// walk parses a protobuf message and returns the last value of the given
// length-delimited field (or nil), failing on any malformed field.
func walk(b []byte, field int) ([]byte, error) {
	var found []byte
	_, err := walkEach(b, field, func(v []byte) error { found = v; return nil })
	return found, err
}

func walkEach(b []byte, field int, fn func([]byte) error) (int, error) {
	n := 0
	for len(b) > 0 {
		key, k := uvarint(b)
		if k <= 0 {
			return n, errors.New("bad field key")
		}
		b = b[k:]
		num, typ := int(key>>3), key&7
		if num == 0 {
			return n, errors.New("field number 0")
		}
		switch typ {
		case 0:
			_, k := uvarint(b)
			if k <= 0 {
				return n, errors.New("bad varint")
			}
			b = b[k:]
		case 1:
			if len(b) < 8 {
				return n, errors.New("truncated fixed64")
			}
			b = b[8:]
		case 5:
			if len(b) < 4 {
				return n, errors.New("truncated fixed32")
			}
			b = b[4:]
		case 2:
			l, k := uvarint(b)
			if k <= 0 || l > uint64(len(b)-k) {
				return n, errors.New("truncated length-delimited field")
			}
			v := b[k : k+int(l)]
			b = b[k+int(l):]
			if num == field {
				n++
				if err := fn(v); err != nil {
					return n, err
				}
			}
		default:
			return n, fmt.Errorf("wire type %d", typ)
		}
	}
	return n, nil
}

func uvarint(b []byte) (uint64, int) {
	var x uint64
	var s uint
	for i := 0; i < len(b) && i < 10; i++ {
		c := b[i]
		if c < 0x80 {
			return x | uint64(c)<<s, i + 1
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
	return 0, 0
}
