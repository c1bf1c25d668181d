// Package cvdnn runs ONNX models with OpenCV's DNN module through GoCV: the
// runtime "opencv" of facever, and the reference the project's own engine is
// compared against.
package cvdnn

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"gocv.io/x/gocv"

	"github.com/facever/facever/infer"
	"github.com/facever/facever/internal/onnxproto"
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

// Validate checks that data is a well-formed ONNX protobuf with a graph of
// at least one node (onnxproto.CheckWire walks the wire format without
// registering any protobuf type). It rejects what makes OpenCV abort:
// truncated or garbage files, empty graphs.
func Validate(data []byte) error {
	if err := onnxproto.CheckWire(data); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}
