package onnxproto

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrMalformed is wrapped by every error Scan and CheckWire return.
var ErrMalformed = errors.New("malformed ONNX model")

var errWire = errors.New("malformed protobuf")

type wireField struct {
	num  int
	typ  int    // 0 varint, 1 fixed64, 2 bytes, 5 fixed32
	v    uint64 // varint, fixed64 or fixed32 value
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
			f.v = binary.LittleEndian.Uint64(b)
			b = b[8:]
		case 5:
			if len(b) < 4 {
				return errWire
			}
			f.v = uint64(binary.LittleEndian.Uint32(b))
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

// Scan reads a ModelProto's description without decoding its tensors:
// IRVersion, Opset (of the default domain; 1 when the file names none),
// ProducerName and ProducerVersion, Doc, Metadata, and in Graph its Name,
// Nodes (without Attrs), Initializers (Name, Dims and Type, no values),
// Inputs and Outputs. Every field of the file is walked, so a truncated or
// garbled file gives an error wrapping ErrMalformed.
func Scan(data []byte) (*Model, error) {
	m, err := scan(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return m, nil
}

func scan(b []byte) (*Model, error) {
	m := &Model{}
	var graph []byte
	err := wireFields(b, func(f wireField) error {
		switch {
		case f.num == 1 && f.typ == 0:
			m.IRVersion = int64(f.v)
		case f.num == 2 && f.typ == 2:
			m.ProducerName = string(f.data)
		case f.num == 3 && f.typ == 2:
			m.ProducerVersion = string(f.data)
		case f.num == 4 && f.typ == 2:
			m.Domain = string(f.data)
		case f.num == 5 && f.typ == 0:
			m.ModelVersion = int64(f.v)
		case f.num == 6 && f.typ == 2:
			m.Doc = string(f.data)
		case f.num == 7 && f.typ == 2:
			graph = f.data
		case f.num == 8 && f.typ == 2:
			var dom string
			var ver int64
			if err := wireFields(f.data, func(g wireField) error {
				if g.num == 1 && g.typ == 2 {
					dom = string(g.data)
				}
				if g.num == 2 && g.typ == 0 {
					ver = int64(g.v)
				}
				return nil
			}); err != nil {
				return err
			}
			if dom == "" || dom == "ai.onnx" {
				m.Opset = ver
			}
		case f.num == 14 && f.typ == 2:
			var kv KV
			if err := wireFields(f.data, func(g wireField) error {
				if g.typ == 2 && g.num == 1 {
					kv.Key = string(g.data)
				}
				if g.typ == 2 && g.num == 2 {
					kv.Value = string(g.data)
				}
				return nil
			}); err != nil {
				return err
			}
			m.Metadata = append(m.Metadata, kv)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if graph == nil {
		return nil, errors.New("model has no graph")
	}
	if err := scanGraph(graph, &m.Graph); err != nil {
		return nil, err
	}
	if m.Opset == 0 {
		m.Opset = 1
	}
	return m, nil
}

func scanGraph(b []byte, g *Graph) error {
	return wireFields(b, func(f wireField) error {
		if f.typ != 2 {
			return nil
		}
		switch f.num {
		case 1:
			var n Node
			if err := wireFields(f.data, func(h wireField) error {
				if h.typ != 2 {
					return nil
				}
				switch h.num {
				case 1:
					n.Inputs = append(n.Inputs, string(h.data))
				case 2:
					n.Outputs = append(n.Outputs, string(h.data))
				case 3:
					n.Name = string(h.data)
				case 4:
					n.OpType = string(h.data)
				case 7:
					n.Domain = string(h.data)
				}
				return nil
			}); err != nil {
				return err
			}
			g.Nodes = append(g.Nodes, n)
		case 2:
			g.Name = string(f.data)
		case 5:
			t, err := scanTensor(f.data)
			if err != nil {
				return err
			}
			g.Initializers = append(g.Initializers, t)
		case 11, 12:
			vi, err := scanValueInfo(f.data)
			if err != nil {
				return err
			}
			if f.num == 11 {
				g.Inputs = append(g.Inputs, vi)
			} else {
				g.Outputs = append(g.Outputs, vi)
			}
		}
		return nil
	})
}

// scanTensor reads a TensorProto's name, dims (packed or not) and type.
func scanTensor(b []byte) (Tensor, error) {
	var t Tensor
	err := wireFields(b, func(f wireField) error {
		switch {
		case f.num == 1 && f.typ == 0:
			t.Dims = append(t.Dims, int64(f.v))
		case f.num == 1 && f.typ == 2: // packed dims
			for d := f.data; len(d) > 0; {
				v, n := uvarint(d)
				if n <= 0 {
					return errWire
				}
				t.Dims = append(t.Dims, int64(v))
				d = d[n:]
			}
		case f.num == 2 && f.typ == 0:
			t.Type = int32(f.v)
		case f.num == 8 && f.typ == 2:
			t.Name = string(f.data)
		}
		return nil
	})
	return t, err
}

// scanValueInfo reads name, element type and shape of a ValueInfoProto; a
// dimension without a value (symbolic or absent) has Value -1.
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
					if h.num == 1 && h.typ == 0 {
						vi.ElemType = int32(h.v)
					}
					if h.num != 2 || h.typ != 2 { // shape
						return nil
					}
					vi.Dims = []Dim{}
					return wireFields(h.data, func(d wireField) error {
						if d.num != 1 || d.typ != 2 {
							return nil
						}
						dim := Dim{Value: -1}
						if err := wireFields(d.data, func(e wireField) error {
							if e.num == 1 && e.typ == 0 && int64(e.v) >= 0 {
								dim.Value = int64(e.v)
							}
							if e.num == 2 && e.typ == 2 {
								dim.Param = string(e.data)
							}
							return nil
						}); err != nil {
							return err
						}
						vi.Dims = append(vi.Dims, dim)
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
// decoding tensors or checking operators. Errors wrap ErrMalformed.
func CheckWire(data []byte) error {
	if len(data) == 0 {
		return fmt.Errorf("%w: empty file", ErrMalformed)
	}
	m, err := Scan(data)
	if err != nil {
		return err
	}
	if len(m.Graph.Nodes) == 0 {
		return fmt.Errorf("%w: the graph has no nodes", ErrMalformed)
	}
	return nil
}
