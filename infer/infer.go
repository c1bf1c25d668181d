// Package infer is the runtime contract of facever: the one small interface
// that every model runtime implements, and the tensor type it speaks.
//
// facever ships two runtimes: the project's own pure-Go ONNX engine
// (runtime "engine", internal/onnxrt) and OpenCV DNN through GoCV (runtime
// "opencv", internal/cvdnn). The detector (align.New), the embedder
// (facehead.NewEmbedder) and the root package facever take an infer.Session,
// never a concrete runtime, so another runtime plugs in without touching them.
//
// # Plugging in another runtime
//
// To run the models on a GPU (for example through ONNX Runtime with its CUDA
// provider, or TensorRT), write a type with the two methods of Session:
//
//   - Run receives the model's inputs by name, as float32 tensors in C
//     (row-major) order, and returns the requested outputs in the order of
//     names. The detector feeds "data" (1x3xHxW, BGR, mean-subtracted) and
//     reads "detection_out"; the recognisers feed their input name and read
//     their embedding output (see the models package for the names and
//     shapes of each catalogue model). Returned tensors must be owned by the
//     caller: the runtime must not reuse their Data after Run returns.
//   - Close releases the model (device memory, contexts).
//
// Then hand it to align.New and facehead.NewEmbedder. A Session that is safe for use by many
// goroutines at once should say so; the callers in this module serialise Run
// on a Session they share unless they are told otherwise.
//
// The package depends on nothing but the standard library, so that a runtime
// living in another module imports only this leaf.
package infer

import "fmt"

// Tensor is a dense float32 tensor in C (row-major) order: the element at
// index (i0, i1, ..., ik) lies at Data[((i0*Shape[1]+i1)*Shape[2]+...)+ik].
// Data must hold exactly Len() values (see Check).
type Tensor struct {
	Shape []int
	Data  []float32
}

// NewTensor allocates a zeroed tensor of the given shape.
func NewTensor(shape ...int) Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return Tensor{Shape: append([]int(nil), shape...), Data: make([]float32, n)}
}

// Len is the number of elements the shape describes.
func (t Tensor) Len() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Check reports an error when Data does not hold exactly Len elements.
func (t Tensor) Check() error {
	if t.Len() != len(t.Data) {
		return fmt.Errorf("tensor of shape %v needs %d values, has %d", t.Shape, t.Len(), len(t.Data))
	}
	return nil
}

// Session runs one loaded model. It is the interface a new runtime
// implements (see the package documentation). Implementations need only be
// safe for use by one goroutine at a time; callers that share a Session
// serialise Run.
type Session interface {
	// Run feeds the named inputs and returns the named outputs, in the
	// order of names. Returned tensors are owned by the caller.
	Run(inputs map[string]Tensor, names []string) ([]Tensor, error)
	// Close releases the model.
	Close() error
}
