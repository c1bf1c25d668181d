// Package onnxrt is facever's own ONNX runtime: a backend for onnx-go
// (github.com/owulveryck/onnx-go) that receives the decoded graph, compiles
// it into an execution plan (constant folding, BatchNormalization folded
// into Conv, activations fused into Conv, buffers reused between values)
// and runs it with its own kernels in pure Go plus Go assembly.
//
// onnx-go decodes the protobuf, the initialisers and the attributes and
// hands the graph to this package through its onnx.Backend interface
// (OperationCarrier + gonum graph.DirectedWeightedBuilder). The project's
// wire-format reader (internal/onnxproto, kept in proto.go) adds what
// onnx-go does not pass on: the opset, node names and symbolic dimensions.
package onnxrt

import (
	"errors"
	"fmt"
	"sort"

	onnx "github.com/owulveryck/onnx-go"
	"gonum.org/v1/gonum/graph"
	"gonum.org/v1/gonum/graph/iterator"
	"gonum.org/v1/gonum/graph/simple"
	gtensor "gorgonia.org/tensor"

	"github.com/facever/facever/internal/onnxproto"
)

// ErrUnsupportedOp is wrapped by the error Load returns for a model that
// uses an operator (or an operator form) the engine does not implement.
var ErrUnsupportedOp = errors.New("unsupported operator")

// ErrMalformed is wrapped by the error Load returns for bytes that are not a
// well-formed ONNX model (it is onnxproto.ErrMalformed).
var ErrMalformed = onnxproto.ErrMalformed

// ValueInfo names a graph input or output and its shape; a dynamic
// dimension is -1. Shape is nil when the model does not declare one.
type ValueInfo struct {
	Name  string `json:"name"`
	Shape []int  `json:"shape"`
}

// gnode is a node of the onnx-go graph as this backend receives it: a named
// value, possibly carrying a constant tensor.
type gnode struct {
	id   int64
	name string
	t    gtensor.Tensor
}

func (n *gnode) ID() int64                        { return n.id }
func (n *gnode) SetName(s string)                 { n.name = s }
func (n *gnode) GetName() string                  { return n.name }
func (n *gnode) SetTensor(t gtensor.Tensor) error { n.t = t; return nil }
func (n *gnode) GetTensor() gtensor.Tensor        { return n.t }

type gop struct {
	op      onnx.Operation
	outputs []*gnode
	inputs  []*gnode // in input order; nil where absent
}

// builder implements onnx.Backend. Unlike a gonum simple graph it keeps
// every edge, so an operator that takes the same value twice (Mul(x, x))
// keeps both inputs.
type builder struct {
	nodes []*gnode
	edges map[int64][]simple.WeightedEdge // from output node
	ops   []gop
}

var _ onnx.Backend = (*builder)(nil)

func (b *builder) NewNode() graph.Node { return &gnode{id: int64(len(b.nodes))} }
func (b *builder) AddNode(n graph.Node) {
	gn, ok := n.(*gnode)
	if !ok || gn.id != int64(len(b.nodes)) {
		panic("onnxrt: foreign node")
	}
	b.nodes = append(b.nodes, gn)
}
func (b *builder) NewWeightedEdge(from, to graph.Node, w float64) graph.WeightedEdge {
	return simple.WeightedEdge{F: from, T: to, W: w}
}
func (b *builder) SetWeightedEdge(e graph.WeightedEdge) {
	if b.edges == nil {
		b.edges = map[int64][]simple.WeightedEdge{}
	}
	id := e.From().ID()
	b.edges[id] = append(b.edges[id], simple.WeightedEdge{F: e.From(), T: e.To(), W: e.Weight()})
}
func (b *builder) Node(id int64) graph.Node {
	if id < 0 || id >= int64(len(b.nodes)) {
		return nil
	}
	return b.nodes[id]
}
func (b *builder) Nodes() graph.Nodes {
	ns := make([]graph.Node, len(b.nodes))
	for i, n := range b.nodes {
		ns[i] = n
	}
	return iterator.NewOrderedNodes(ns)
}
func (b *builder) From(id int64) graph.Nodes {
	var ns []graph.Node
	for _, e := range b.edges[id] {
		ns = append(ns, e.T)
	}
	return iterator.NewOrderedNodes(ns)
}
func (b *builder) To(id int64) graph.Nodes {
	var ns []graph.Node
	for _, es := range b.edges {
		for _, e := range es {
			if e.T.ID() == id {
				ns = append(ns, e.F)
			}
		}
	}
	return iterator.NewOrderedNodes(ns)
}
func (b *builder) HasEdgeBetween(x, y int64) bool {
	return b.HasEdgeFromTo(x, y) || b.HasEdgeFromTo(y, x)
}
func (b *builder) HasEdgeFromTo(u, v int64) bool {
	for _, e := range b.edges[u] {
		if e.T.ID() == v {
			return true
		}
	}
	return false
}
func (b *builder) Edge(u, v int64) graph.Edge {
	for _, e := range b.edges[u] {
		if e.T.ID() == v {
			return e
		}
	}
	return nil
}

// ApplyOperation implements onnx.OperationCarrier: it records the operator
// with its outputs; the inputs are the edges onnx-go set from the first
// output just before, ordered by their weight (the input index).
func (b *builder) ApplyOperation(op onnx.Operation, outs ...graph.Node) error {
	g := gop{op: op}
	for _, o := range outs {
		gn, ok := o.(*gnode)
		if !ok {
			return fmt.Errorf("foreign node")
		}
		g.outputs = append(g.outputs, gn)
	}
	if len(outs) > 0 {
		es := b.edges[outs[0].ID()]
		sort.SliceStable(es, func(i, j int) bool { return es[i].W < es[j].W })
		for _, e := range es {
			idx := int(e.W)
			for len(g.inputs) <= idx {
				g.inputs = append(g.inputs, nil)
			}
			gn := e.T.(*gnode)
			if gn.name == "" {
				gn = nil // an omitted optional input
			}
			g.inputs[idx] = gn
		}
	}
	b.ops = append(b.ops, g)
	return nil
}

// Load decodes an ONNX model with onnx-go and prepares it for Run. It never
// panics: a malformed file gives an error wrapping ErrMalformed, and an
// unsupported operator an error naming the node and wrapping
// ErrUnsupportedOp.
func Load(data []byte) (m *Model, err error) {
	defer func() {
		if r := recover(); r != nil {
			m = nil
			err = fmt.Errorf("%w: decoder panic: %v", ErrMalformed, r)
		}
	}()
	pm, err := scanModel(data)
	if err != nil {
		return nil, err
	}
	if m, err := checkOps(pm); err != nil {
		return m, err
	}
	// onnx-go allocates a tensor of every declared input, output and
	// value_info shape: hand it the file without them (scanModel read them)
	stripped, err := onnxproto.StripShapes(data)
	if err != nil {
		return nil, err
	}
	b := &builder{}
	om := onnx.NewModel(b)
	if err := om.UnmarshalBinary(stripped); err != nil {
		msg := err.Error()
		if len(msg) > 300 {
			msg = msg[:300] + "…"
		}
		return nil, fmt.Errorf("%w: %s", ErrMalformed, msg)
	}
	return newModel(pm, b)
}

// checkOps reports unsupported operators before onnx-go decodes the graph
// (it rejects some, such as If and Loop, with long messages of its own): the
// Model it returns then describes the file without being runnable.
func checkOps(pm *protoModel) (*Model, error) {
	m := &Model{opset: pm.opset, counts: map[string]int{}}
	unsup := map[string]bool{}
	var firstErr error
	for _, n := range pm.nodes {
		m.counts[n.op]++
		name := n.name
		if name == "" && len(n.outputs) > 0 {
			name = n.outputs[0]
		}
		op := n.op
		if n.domain != "" && n.domain != "ai.onnx" {
			op = n.domain + "." + n.op
		} else if _, ok := compilers[n.op]; ok {
			continue
		}
		unsup[op] = true
		if firstErr == nil {
			firstErr = fmt.Errorf("node %q (%s): %w", name, op, ErrUnsupportedOp)
		}
	}
	if firstErr == nil {
		return nil, nil
	}
	for k := range unsup {
		m.unsup = append(m.unsup, k)
	}
	sort.Strings(m.unsup)
	for _, vi := range pm.inputs {
		if !pm.inits[vi.Name] {
			m.inputs = append(m.inputs, vi)
		}
	}
	m.outputs = pm.outputs
	return m, firstErr
}
