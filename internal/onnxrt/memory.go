package onnxrt

import (
	"errors"
	"fmt"
	"strings"
)

// ErrMemoryLimit is wrapped by the error Run and PlanMemory return when a
// plan would need more memory than SetMemoryLimit allows; the message
// names the inputs, the memory needed and the limit.
var ErrMemoryLimit = errors.New("over the memory limit")

// SetMemoryLimit bounds the memory a plan may take, in bytes: the values'
// buffers, the kernels' scratch and tables (packed convolution weights
// among them), constants folded while compiling, and the outputs Run
// returns (not the caller's inputs, nor the weights Load already holds). A Run whose input shapes need more
// is refused with ErrMemoryLimit before anything is allocated. 0 (the
// default) means no limit.
func (m *Model) SetMemoryLimit(bytes int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.memLimit = max(bytes, 0)
}

// PlanMemory compiles a plan for the given input shapes (every graph
// input, by name) without allocating its buffers, and returns the bytes
// it would take, as SetMemoryLimit counts them. Constants it has to fold
// are computed (within the limit). The plan is not kept.
func (m *Model) PlanMemory(shapes map[string][]int) (bytes int64, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("onnxrt: internal error: %v", r)
		}
	}()
	if len(m.unsup) > 0 {
		return 0, fmt.Errorf("onnxrt: model uses %v: %w", m.unsup, ErrUnsupportedOp)
	}
	ins, err := m.inputTensors(shapes)
	if err != nil {
		return 0, err
	}
	p, err := m.planTensors(ins)
	if err != nil {
		return 0, err
	}
	if err := p.checkLimit(ins); err != nil {
		return p.memory(), err
	}
	return p.memory(), nil
}

func elemBytes(dt dtype) int64 {
	if dt == dtFloat {
		return 4
	}
	return 8
}

func formatShape(s []int) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(parts, "×") + "]"
}
