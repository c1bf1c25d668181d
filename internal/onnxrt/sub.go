package onnxrt

import "fmt"

// Sub returns a model that computes only the named values, which may be
// graph outputs or intermediate values (by their names in the file), with
// only the nodes they depend on. It shares m's weights. A value that the
// Load rewrites fused away (a Conv output consumed by its activation) is
// refused. A detector whose box decoding holds priors for one input size
// can so be cut before the decoding and run at any size (see
// AnyInputSize).
func (m *Model) Sub(outputs ...string) (*Model, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.unsup) > 0 {
		return nil, fmt.Errorf("onnxrt: model uses %v: %w", m.unsup, ErrUnsupportedOp)
	}
	if len(outputs) == 0 {
		return nil, fmt.Errorf("onnxrt: Sub needs at least one output")
	}
	produced := make([]bool, len(m.values))
	for _, n := range m.nodes {
		for _, id := range n.out {
			produced[id] = true
		}
	}
	for _, id := range m.inIDs {
		produced[id] = true
	}
	byName := make(map[string]int, len(m.values))
	for id, v := range m.values {
		if _, dup := byName[v.name]; !dup && (produced[id] || v.konst != nil) {
			byName[v.name] = id
		}
	}
	s := &Model{opset: m.opset, values: m.values, inputs: cloneVI(m.inputs), inIDs: m.inIDs,
		counts: map[string]int{}, memLimit: m.memLimit, anySize: m.anySize}
	needed := make([]bool, len(m.values))
	for _, name := range outputs {
		id, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("onnxrt: the model computes no value %q (unknown, or fused into a Conv at Load)", name)
		}
		needed[id] = true
		s.outIDs = append(s.outIDs, id)
		s.outputs = append(s.outputs, ValueInfo{Name: name})
	}
	keep := make([]bool, len(m.nodes))
	for i := len(m.nodes) - 1; i >= 0; i-- {
		n := m.nodes[i]
		for _, id := range n.out {
			keep[i] = keep[i] || needed[id]
		}
		if keep[i] {
			for _, id := range n.in {
				if id >= 0 {
					needed[id] = true
				}
			}
		}
	}
	for i, n := range m.nodes {
		if keep[i] {
			s.nodes = append(s.nodes, n)
			s.counts[n.op]++
		}
	}
	return s, nil
}

// AnyInputSize lets Run take inputs whose dimensions differ from the
// declared ones (the rank must still match), for fully convolutional
// graphs; without it only the first (batch) dimension may differ.
func (m *Model) AnyInputSize() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.anySize = true
}
