package onnxproto

// Writing. Output is deterministic: fields are written in a fixed order,
// lists in the order given, repeated numbers unpacked (onnx.proto is
// proto2), tensor values as little-endian raw_data. The same Model always
// gives the same bytes.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// Element types (TensorProto.DataType) used by this package.
const (
	// Float is TensorProto.FLOAT.
	Float int32 = 1
	// Int64 is TensorProto.INT64.
	Int64 int32 = 7
)

// Model is an ONNX ModelProto.
type Model struct {
	// IRVersion is ModelProto.ir_version (6 goes with opset 11).
	IRVersion int64
	// Opset is the version of the default ("ai.onnx") operator set.
	Opset int64
	// ProducerName and ProducerVersion identify the writer.
	ProducerName, ProducerVersion string
	// Domain and ModelVersion are ModelProto.domain and model_version.
	Domain       string
	ModelVersion int64
	// Doc is ModelProto.doc_string.
	Doc string
	// Graph is the computation.
	Graph Graph
	// Metadata become metadata_props, in this order.
	Metadata []KV
}

// KV is one metadata_props entry.
type KV struct{ Key, Value string }

// Graph is an ONNX GraphProto.
type Graph struct {
	Name         string
	Nodes        []Node
	Initializers []Tensor
	Inputs       []ValueInfo
	Outputs      []ValueInfo
}

// Node is an ONNX NodeProto. Scan leaves Attrs empty.
type Node struct {
	Name    string
	OpType  string
	Domain  string // empty (or "ai.onnx") for the default operator set
	Inputs  []string
	Outputs []string
	Attrs   []Attr
}

// AttrType is AttributeProto.AttributeType.
type AttrType int32

// The attribute types this package writes.
const (
	AttrFloat   AttrType = 1
	AttrInt     AttrType = 2
	AttrString  AttrType = 3
	AttrFloats  AttrType = 6
	AttrInts    AttrType = 7
	AttrStrings AttrType = 8
)

// Attr is an ONNX AttributeProto; Type says which value field is used.
type Attr struct {
	Name   string
	Type   AttrType
	F      float32
	I      int64
	S      string
	Floats []float32
	Ints   []int64
}

// Int returns an INT attribute.
func Int(name string, v int64) Attr { return Attr{Name: name, Type: AttrInt, I: v} }

// Ints returns an INTS attribute.
func Ints(name string, v ...int64) Attr { return Attr{Name: name, Type: AttrInts, Ints: v} }

// FloatAttr returns a FLOAT attribute.
func FloatAttr(name string, v float32) Attr { return Attr{Name: name, Type: AttrFloat, F: v} }

// String returns a STRING attribute.
func String(name, v string) Attr { return Attr{Name: name, Type: AttrString, S: v} }

// Tensor is an initializer: a float32 or int64 tensor stored as raw_data.
// Scan fills Name, Dims and Type only.
type Tensor struct {
	Name string
	Dims []int64
	// Type is Float or Int64; Floats or Int64s holds the values.
	Type   int32
	Floats []float32
	Int64s []int64
}

// FloatTensor returns a float32 initializer.
func FloatTensor(name string, data []float32, dims ...int64) Tensor {
	return Tensor{Name: name, Dims: dims, Type: Float, Floats: data}
}

// Int64Tensor returns an int64 initializer.
func Int64Tensor(name string, data []int64, dims ...int64) Tensor {
	return Tensor{Name: name, Dims: dims, Type: Int64, Int64s: data}
}

// Dim is one dimension of a ValueInfo: a fixed Value, or a symbolic Param
// (such as "N") when Param is not empty. Value is -1 for a dimension that
// is symbolic or not given (Scan; Marshal writes such a dimension empty).
type Dim struct {
	Value int64
	Param string
}

// ValueInfo is a graph input or output: a tensor of ElemType and shape
// Dims. Scan leaves Dims nil when the file declares no shape.
type ValueInfo struct {
	Name     string
	ElemType int32
	Dims     []Dim
}

// Marshal encodes m as an ONNX ModelProto after checking that every tensor
// holds as many values as its dims say and that names are set.
func (m *Model) Marshal() ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	var b []byte
	b = appendInt(b, 1, m.IRVersion)
	b = appendString(b, 2, m.ProducerName)
	b = appendString(b, 3, m.ProducerVersion)
	b = appendString(b, 4, m.Domain)
	b = appendInt(b, 5, m.ModelVersion)
	b = appendString(b, 6, m.Doc)
	b = appendMsg(b, 7, m.Graph.marshal())
	// OperatorSetIdProto: domain = 1 (empty: ai.onnx), version = 2.
	b = appendMsg(b, 8, protowire.AppendVarint(protowire.AppendTag(nil, 2, protowire.VarintType), uint64(m.Opset)))
	for _, kv := range m.Metadata {
		var e []byte
		e = appendString(e, 1, kv.Key)
		e = appendString(e, 2, kv.Value)
		b = appendMsg(b, 14, e)
	}
	return b, nil
}

func (m *Model) check() error {
	if m.Opset <= 0 || m.IRVersion <= 0 {
		return errors.New("onnxproto: opset and IR version must be set")
	}
	g := &m.Graph
	if len(g.Nodes) == 0 || len(g.Inputs) == 0 || len(g.Outputs) == 0 {
		return errors.New("onnxproto: graph needs nodes, inputs and outputs")
	}
	for _, t := range g.Initializers {
		if t.Name == "" {
			return errors.New("onnxproto: initializer without a name")
		}
		n := int64(1)
		for _, d := range t.Dims {
			if d < 0 {
				return fmt.Errorf("onnxproto: initializer %s: negative dimension", t.Name)
			}
			n *= d
		}
		have := len(t.Floats)
		switch t.Type {
		case Float:
			if t.Int64s != nil {
				return fmt.Errorf("onnxproto: float initializer %s holds int64 values", t.Name)
			}
		case Int64:
			have = len(t.Int64s)
			if t.Floats != nil {
				return fmt.Errorf("onnxproto: int64 initializer %s holds float values", t.Name)
			}
		default:
			return fmt.Errorf("onnxproto: initializer %s: unsupported type %d", t.Name, t.Type)
		}
		if int64(have) != n {
			return fmt.Errorf("onnxproto: initializer %s: dims %v need %d values, have %d", t.Name, t.Dims, n, have)
		}
	}
	for _, n := range g.Nodes {
		if n.OpType == "" || len(n.Outputs) == 0 {
			return fmt.Errorf("onnxproto: node %q needs an op type and outputs", n.Name)
		}
	}
	return nil
}

func (g *Graph) marshal() []byte {
	var b []byte
	for _, n := range g.Nodes {
		b = appendMsg(b, 1, n.marshal())
	}
	b = appendString(b, 2, g.Name)
	for _, t := range g.Initializers {
		b = appendMsg(b, 5, t.marshal())
	}
	for _, v := range g.Inputs {
		b = appendMsg(b, 11, v.marshal())
	}
	for _, v := range g.Outputs {
		b = appendMsg(b, 12, v.marshal())
	}
	return b
}

func (n *Node) marshal() []byte {
	var b []byte
	for _, s := range n.Inputs {
		b = appendStringAlways(b, 1, s) // an empty name is a skipped optional input
	}
	for _, s := range n.Outputs {
		b = appendStringAlways(b, 2, s)
	}
	b = appendString(b, 3, n.Name)
	b = appendString(b, 4, n.OpType)
	for _, a := range n.Attrs {
		b = appendMsg(b, 5, a.marshal())
	}
	return appendString(b, 7, n.Domain)
}

func (a *Attr) marshal() []byte {
	var b []byte
	b = appendString(b, 1, a.Name)
	switch a.Type {
	case AttrFloat:
		b = protowire.AppendTag(b, 2, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, math.Float32bits(a.F))
	case AttrInt:
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(a.I))
	case AttrString:
		b = appendStringAlways(b, 4, a.S)
	case AttrFloats:
		for _, f := range a.Floats {
			b = protowire.AppendTag(b, 7, protowire.Fixed32Type)
			b = protowire.AppendFixed32(b, math.Float32bits(f))
		}
	case AttrInts:
		for _, v := range a.Ints {
			b = protowire.AppendTag(b, 8, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(v))
		}
	}
	b = protowire.AppendTag(b, 20, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(a.Type))
	return b
}

func (t *Tensor) marshal() []byte {
	var b []byte
	for _, d := range t.Dims {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(d))
	}
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(t.Type))
	b = appendString(b, 8, t.Name)
	var raw []byte
	if t.Type == Float {
		raw = make([]byte, 4*len(t.Floats))
		for i, f := range t.Floats {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(f))
		}
	} else {
		raw = make([]byte, 8*len(t.Int64s))
		for i, v := range t.Int64s {
			binary.LittleEndian.PutUint64(raw[8*i:], uint64(v))
		}
	}
	return appendMsg(b, 9, raw)
}

func (v *ValueInfo) marshal() []byte {
	var shape []byte
	for _, d := range v.Dims {
		var e []byte
		if d.Param != "" {
			e = appendString(e, 2, d.Param)
		} else if d.Value >= 0 {
			e = protowire.AppendTag(e, 1, protowire.VarintType)
			e = protowire.AppendVarint(e, uint64(d.Value))
		}
		shape = appendMsg(shape, 1, e)
	}
	var tensor []byte
	tensor = protowire.AppendTag(tensor, 1, protowire.VarintType)
	tensor = protowire.AppendVarint(tensor, uint64(v.ElemType))
	tensor = appendMsg(tensor, 2, shape)
	var b []byte
	b = appendString(b, 1, v.Name)
	return appendMsg(b, 2, appendMsg(nil, 1, tensor)) // TypeProto.tensor_type = 1
}

func appendMsg(b []byte, num protowire.Number, msg []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, msg)
}

// appendString writes a string field, omitting it when empty (proto3
// semantics for a singular field).
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	return appendStringAlways(b, num, s)
}

func appendStringAlways(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendInt(b []byte, num protowire.Number, v int64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(v))
}
