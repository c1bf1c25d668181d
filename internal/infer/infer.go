// Package infer defines the small interface every model runtime of facever
// implements: OpenCV DNN (runtime "opencv") and the project's own pure-Go
// onnx-go backend (runtime "engine").
package infer

import "fmt"

// Tensor is a dense float32 tensor in C (row-major) order.
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

// Session runs one loaded model. Implementations are safe for use by one
// goroutine at a time; callers that share a Session serialise Run.
type Session interface {
	// Run feeds the named inputs and returns the named outputs, in the
	// order of names. Returned tensors are owned by the caller.
	Run(inputs map[string]Tensor, names []string) ([]Tensor, error)
	// Close releases the model.
	Close() error
}
