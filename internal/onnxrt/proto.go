package onnxrt

import (
	"github.com/facever/facever/internal/onnxproto"
)

// What the engine keeps of internal/onnxproto's Scan: the fields onnx-go's
// decoder does not pass to its backend (the opset, the node names and
// domains, the symbolic dimensions of the graph inputs and outputs).
// Tensors, attributes and the graph topology still come from onnx-go.

// protoNode is what the engine keeps of a NodeProto.
type protoNode struct {
	name, op, domain string
	inputs, outputs  []string
}

// protoModel is what the engine keeps of a ModelProto.
type protoModel struct {
	opset   int // version of the default ("" or "ai.onnx") domain
	nodes   []protoNode
	inputs  []ValueInfo
	outputs []ValueInfo
	inits   map[string]bool
}

// scanModel scans b; errors wrap ErrMalformed.
func scanModel(b []byte) (*protoModel, error) {
	sm, err := onnxproto.Scan(b)
	if err != nil {
		return nil, err
	}
	g := &sm.Graph
	pm := &protoModel{opset: int(sm.Opset), inits: make(map[string]bool, len(g.Initializers))}
	pm.nodes = make([]protoNode, len(g.Nodes))
	for i, n := range g.Nodes {
		pm.nodes[i] = protoNode{name: n.Name, op: n.OpType, domain: n.Domain, inputs: n.Inputs, outputs: n.Outputs}
	}
	for _, t := range g.Initializers {
		pm.inits[t.Name] = true
	}
	pm.inputs = valueInfos(g.Inputs)
	pm.outputs = valueInfos(g.Outputs)
	return pm, nil
}

// valueInfos converts declared values: a symbolic or absent dimension is -1,
// an undeclared shape nil.
func valueInfos(vs []onnxproto.ValueInfo) []ValueInfo {
	out := make([]ValueInfo, len(vs))
	for i, v := range vs {
		out[i].Name = v.Name
		if v.Dims != nil {
			out[i].Shape = make([]int, len(v.Dims))
			for j, d := range v.Dims {
				out[i].Shape[j] = int(d.Value)
				if d.Value < 0 || d.Param != "" {
					out[i].Shape[j] = -1
				}
			}
		}
	}
	return out
}
