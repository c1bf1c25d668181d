package onnxrt

import (
	"errors"
	"fmt"
)

// This file holds a minimal reader of the protobuf wire format
// (https://protobuf.dev/programming-guides/encoding/) for the few fields of
// an ONNX ModelProto that onnx-go's decoder does not pass to its backend:
// the opset imports, the node names and domains, and the symbolic (dynamic)
// dimensions of the graph inputs and outputs. Tensors, attributes and the
// graph topology still come from onnx-go.

var errWire = errors.New("malformed protobuf")

type wireField struct {
	num  int
	typ  int // 0 varint, 1 fixed64, 2 bytes, 5 fixed32
	v    uint64
	data []byte
}

// wireFields splits one protobuf message into its fields.
func wireFields(b []byte, fn func(f wireField) error) error {
	for len(b) > 0 {
		key, n := uvarint(b)
		if n <= 0 {
			return errWire
		}
		b = b[n:]
		f := wireField{num: int(key >> 3), typ: int(key & 7)}
		switch f.typ {
		case 0:
			v, n := uvarint(b)
			if n <= 0 {
				return errWire
			}
			f.v = v
			b = b[n:]
		case 1:
			if len(b) < 8 {
				return errWire
			}
			b = b[8:]
		case 5:
			if len(b) < 4 {
				return errWire
			}
			b = b[4:]
		case 2:
			l, n := uvarint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return errWire
			}
			f.data = b[n : n+int(l)]
			b = b[n+int(l):]
		default:
			return errWire
		}
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
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

// protoNode is what the wire reader keeps of a NodeProto.
type protoNode struct {
	name, op, domain string
	inputs, outputs  []string
}

// protoModel is what the wire reader keeps of a ModelProto.
type protoModel struct {
	opset   int // version of the default ("" or "ai.onnx") domain
	nodes   []protoNode
	inputs  []ValueInfo
	outputs []ValueInfo
	inits   map[string]bool
}

func scanModel(b []byte) (*protoModel, error) {
	pm := &protoModel{inits: map[string]bool{}}
	var graph []byte
	err := wireFields(b, func(f wireField) error {
		switch {
		case f.num == 7 && f.typ == 2:
			graph = f.data
		case f.num == 8 && f.typ == 2:
			var dom string
			var ver int
			if err := wireFields(f.data, func(g wireField) error {
				if g.num == 1 && g.typ == 2 {
					dom = string(g.data)
				}
				if g.num == 2 && g.typ == 0 {
					ver = int(int64(g.v))
				}
				return nil
			}); err != nil {
				return err
			}
			if dom == "" || dom == "ai.onnx" {
				pm.opset = ver
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if graph == nil {
		return nil, fmt.Errorf("model has no graph")
	}
	err = wireFields(graph, func(f wireField) error {
		if f.typ != 2 {
			return nil
		}
		switch f.num {
		case 1:
			var n protoNode
			if err := wireFields(f.data, func(g wireField) error {
				if g.typ != 2 {
					return nil
				}
				switch g.num {
				case 1:
					n.inputs = append(n.inputs, string(g.data))
				case 2:
					n.outputs = append(n.outputs, string(g.data))
				case 3:
					n.name = string(g.data)
				case 4:
					n.op = string(g.data)
				case 7:
					n.domain = string(g.data)
				}
				return nil
			}); err != nil {
				return err
			}
			pm.nodes = append(pm.nodes, n)
		case 5:
			return wireFields(f.data, func(g wireField) error {
				if g.num == 8 && g.typ == 2 {
					pm.inits[string(g.data)] = true
				}
				return nil
			})
		case 11, 12:
			vi, err := scanValueInfo(f.data)
			if err != nil {
				return err
			}
			if f.num == 11 {
				pm.inputs = append(pm.inputs, vi)
			} else {
				pm.outputs = append(pm.outputs, vi)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if pm.opset == 0 {
		pm.opset = 1
	}
	return pm, nil
}

// scanValueInfo reads name and shape of a ValueInfoProto; a dimension
// without a value (symbolic or absent) is -1.
func scanValueInfo(b []byte) (ValueInfo, error) {
	var vi ValueInfo
	err := wireFields(b, func(f wireField) error {
		if f.typ != 2 {
			return nil
		}
		switch f.num {
		case 1:
			vi.Name = string(f.data)
		case 2: // TypeProto
			return wireFields(f.data, func(g wireField) error {
				if g.num != 1 || g.typ != 2 { // tensor_type
					return nil
				}
				return wireFields(g.data, func(h wireField) error {
					if h.num != 2 || h.typ != 2 { // shape
						return nil
					}
					vi.Shape = []int{}
					return wireFields(h.data, func(d wireField) error {
						if d.num != 1 || d.typ != 2 {
							return nil
						}
						dim := -1
						if err := wireFields(d.data, func(e wireField) error {
							if e.num == 1 && e.typ == 0 && int64(e.v) >= 0 {
								dim = int(int64(e.v))
							}
							return nil
						}); err != nil {
							return err
						}
						vi.Shape = append(vi.Shape, dim)
						return nil
					})
				})
			})
		}
		return nil
	})
	return vi, err
}

// CheckWire reports whether data is a well-formed ONNX ModelProto on the
// wire (every field intact, a graph with at least one node), without
// decoding tensors or checking operators. Runtimes that abort on malformed
// files (OpenCV DNN) call it before loading; errors wrap ErrMalformed.
func CheckWire(data []byte) error {
	if len(data) == 0 {
		return fmt.Errorf("%w: empty file", ErrMalformed)
	}
	pm, err := scanModel(data)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(pm.nodes) == 0 {
		return fmt.Errorf("%w: the graph has no nodes", ErrMalformed)
	}
	return nil
}
