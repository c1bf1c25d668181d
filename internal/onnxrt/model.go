package onnxrt

import (
	"fmt"
	"runtime"
	"sort"
	"sync"

	gtensor "gorgonia.org/tensor"

	"github.com/facever/facever/infer"
)

type gtensorT = gtensor.Tensor

// dtype is the element type of a value: the engine computes in float32 and
// keeps integer (and boolean) tensors as int64.
type dtype uint8

const (
	dtFloat dtype = iota
	dtInt
	dtBool
)

func (d dtype) String() string {
	switch d {
	case dtFloat:
		return "float32"
	case dtInt:
		return "int64"
	}
	return "bool"
}

// tensor is the engine's value: a shape and a float32 or int64 buffer.
type tensor struct {
	shape []int
	dt    dtype
	f     []float32
	i     []int64
	buf   *buffer // the plan buffer holding f or i, nil for constants
	konst bool    // value known at plan time
}

func (t *tensor) size() int { return prod(t.shape) }

func prod(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// node is one operator of the compiled graph.
type node struct {
	op, name string
	attrs    attrs
	in, out  []int // value ids; -1 for an omitted optional input
	// filled by the graph passes
	fuse *fusion
	dead bool
}

// value is one named edge of the graph.
type value struct {
	name     string
	konst    *tensor // initialiser or folded constant
	producer int     // node index, -1 for graph inputs and initialisers
}

// Model is a loaded ONNX model ready to run. Run (and RunInto) may be called
// from several goroutines: Model serialises their runs, or, after
// SetThreads(1), runs them at once on plans of their own.
type Model struct {
	opset   int
	nodes   []*node
	values  []value
	inputs  []ValueInfo
	outputs []ValueInfo
	inIDs   []int
	outIDs  []int
	counts  map[string]int
	unsup   []string

	mu       sync.Mutex
	plan     *plan
	memLimit int64
	anySize  bool // AnyInputSize: declared dimensions are not enforced
	// serial (SetThreads(1)): kernels run on the calling goroutine, and
	// concurrent runs each take a plan of their own from idle.
	serial bool
	idle   []*plan
}

// SetThreads sets how many threads one run of m uses. 0 (the default)
// splits each kernel over internal/gemm's pool (every core) and runs
// one Run at a time. 1 runs every kernel on the calling goroutine, with
// no hand-off to other threads (for small models, whose layers last a few
// microseconds, the hand-off costs more than it saves), and lets runs
// from several goroutines go on at once, each on a compiled plan of its
// own (idle plans are kept for reuse, at most GOMAXPROCS; each counts
// against the memory limit on its own). The outputs are the same bit for
// bit either way: the pool splits a kernel's outputs, never a sum.
// Other values are taken as 0. Call it before the model runs concurrently.
func (m *Model) SetThreads(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.serial = n == 1
	m.plan, m.idle = nil, nil
}

// Inputs lists the graph inputs that are not initialisers.
func (m *Model) Inputs() []ValueInfo { return cloneVI(m.inputs) }

// Outputs lists the graph outputs.
func (m *Model) Outputs() []ValueInfo { return cloneVI(m.outputs) }

// Opset is the version of the default ONNX operator set the model imports.
func (m *Model) Opset() int { return m.opset }

// OpCounts counts the nodes per operator type, as in the file.
func (m *Model) OpCounts() map[string]int {
	c := make(map[string]int, len(m.counts))
	for k, v := range m.counts {
		c[k] = v
	}
	return c
}

// Unsupported lists the operator types of the model that the engine does
// not implement (empty for a model Load accepted).
func (m *Model) Unsupported() []string { return append([]string(nil), m.unsup...) }

// Close releases the model's buffers.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.plan, m.idle = nil, nil
	return nil
}

func cloneVI(v []ValueInfo) []ValueInfo {
	out := make([]ValueInfo, len(v))
	for i, x := range v {
		out[i] = ValueInfo{Name: x.Name}
		if x.Shape != nil {
			out[i].Shape = append([]int{}, x.Shape...)
		}
	}
	return out
}

// SupportedOps lists the operator types the engine implements.
func SupportedOps() []string {
	var s []string
	for k := range compilers {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// fromGorgonia converts an onnx-go decoded tensor.
func fromGorgonia(t gtensor.Tensor) (*tensor, error) {
	shape := append([]int{}, t.Shape()...)
	out := &tensor{shape: shape, konst: true}
	switch d := t.Data().(type) {
	case []float32:
		out.f = append([]float32{}, d...)
	case float32:
		out.f = []float32{d}
	case []float64:
		out.f = make([]float32, len(d))
		for i, v := range d {
			out.f[i] = float32(v)
		}
	case float64:
		out.f = []float32{float32(d)}
	case []int64:
		out.dt, out.i = dtInt, append([]int64{}, d...)
	case int64:
		out.dt, out.i = dtInt, []int64{d}
	case []int32:
		out.dt, out.i = dtInt, make([]int64, len(d))
		for i, v := range d {
			out.i[i] = int64(v)
		}
	case int32:
		out.dt, out.i = dtInt, []int64{int64(d)}
	case []bool:
		out.dt, out.i = dtBool, make([]int64, len(d))
		for i, v := range d {
			if v {
				out.i[i] = 1
			}
		}
	case bool:
		out.dt = dtBool
		out.i = []int64{0}
		if d {
			out.i[0] = 1
		}
	default:
		return nil, fmt.Errorf("tensor type %v not supported", t.Dtype())
	}
	n := len(out.f) + len(out.i)
	if n == 1 && prod(shape) != 1 {
		// gorgonia reports scalars with an empty or (1) shape
		out.shape = []int{}
	}
	if prod(out.shape) != n {
		if n == 0 {
			// an empty tensor
			return out, nil
		}
		return nil, fmt.Errorf("tensor of shape %v has %d values", shape, n)
	}
	return out, nil
}

// newModel turns what onnx-go decoded into the engine's graph and checks
// every operator is supported.
func newModel(pm *protoModel, b *builder) (*Model, error) {
	if len(pm.nodes) != len(b.ops) {
		return nil, fmt.Errorf("%w: %d nodes decoded, %d in file", ErrMalformed, len(b.ops), len(pm.nodes))
	}
	m := &Model{opset: pm.opset, counts: map[string]int{}}
	ids := map[*gnode]int{}
	byName := map[string]int{}
	valueOf := func(g *gnode) int {
		if g == nil {
			return -1
		}
		if id, ok := ids[g]; ok {
			return id
		}
		if id, ok := byName[g.name]; ok && g.name != "" {
			ids[g] = id
			return id
		}
		id := len(m.values)
		m.values = append(m.values, value{name: g.name, producer: -1})
		ids[g] = id
		byName[g.name] = id
		return id
	}
	// initialisers
	for _, g := range b.nodes {
		if g.t != nil && pm.inits[g.name] {
			t, err := fromGorgonia(g.t)
			if err != nil {
				return nil, fmt.Errorf("%w: initialiser %q: %v", ErrMalformed, g.name, err)
			}
			m.values[valueOf(g)].konst = t
		}
	}
	unsup := map[string]bool{}
	var firstErr error
	for i, op := range b.ops {
		pn := pm.nodes[i]
		n := &node{op: op.op.Name, name: pn.name, attrs: attrs(op.op.Attributes)}
		if n.name == "" && len(pn.outputs) > 0 {
			n.name = pn.outputs[0]
		}
		m.counts[n.op]++
		if pn.domain != "" && pn.domain != "ai.onnx" {
			unsup[pn.domain+"."+n.op] = true
			if firstErr == nil {
				firstErr = fmt.Errorf("node %q (%s.%s): %w", n.name, pn.domain, n.op, ErrUnsupportedOp)
			}
		} else if _, ok := compilers[n.op]; !ok {
			unsup[n.op] = true
			if firstErr == nil {
				firstErr = fmt.Errorf("node %q (%s): %w", n.name, n.op, ErrUnsupportedOp)
			}
		}
		if len(pn.inputs) > 0 {
			for _, g := range op.inputs {
				n.in = append(n.in, valueOf(g))
			}
			for len(n.in) < len(pn.inputs) {
				n.in = append(n.in, -1)
			}
		}
		for _, g := range op.outputs {
			id := valueOf(g)
			if m.values[id].producer >= 0 || m.values[id].konst != nil {
				return nil, fmt.Errorf("%w: value %q produced twice", ErrMalformed, g.name)
			}
			m.values[id].producer = i
			n.out = append(n.out, id)
		}
		m.nodes = append(m.nodes, n)
	}
	for k := range unsup {
		m.unsup = append(m.unsup, k)
	}
	sort.Strings(m.unsup)
	if firstErr != nil {
		return m, firstErr
	}
	for _, vi := range pm.inputs {
		if pm.inits[vi.Name] {
			continue
		}
		id, ok := byName[vi.Name]
		if !ok {
			// an input no node uses
			id = len(m.values)
			m.values = append(m.values, value{name: vi.Name, producer: -1})
			byName[vi.Name] = id
		}
		m.inputs = append(m.inputs, vi)
		m.inIDs = append(m.inIDs, id)
	}
	for _, vi := range pm.outputs {
		id, ok := byName[vi.Name]
		if !ok || (m.values[id].producer < 0 && m.values[id].konst == nil && !isInput(m, id)) {
			return nil, fmt.Errorf("%w: output %q is not computed by the graph", ErrMalformed, vi.Name)
		}
		m.outputs = append(m.outputs, vi)
		m.outIDs = append(m.outIDs, id)
	}
	for _, n := range m.nodes {
		for _, id := range n.in {
			if id < 0 {
				continue
			}
			v := m.values[id]
			if v.producer < 0 && v.konst == nil && !isInput(m, id) {
				return nil, fmt.Errorf("%w: node %q (%s) reads %q, which nothing defines", ErrMalformed, n.name, n.op, v.name)
			}
		}
	}
	if err := m.optimize(); err != nil {
		return nil, err
	}
	return m, nil
}

func isInput(m *Model, id int) bool {
	for _, x := range m.inIDs {
		if x == id {
			return true
		}
	}
	return false
}

var _ infer.Session = (*Model)(nil)

// Run implements infer.Session: it feeds the named inputs and returns the
// named outputs (all outputs when names is empty) in new tensors.
func (m *Model) Run(inputs map[string]infer.Tensor, names []string) ([]infer.Tensor, error) {
	if len(names) == 0 {
		for _, o := range m.outputs {
			names = append(names, o.Name)
		}
	}
	outs := make([]infer.Tensor, len(names))
	if err := m.RunInto(inputs, names, outs); err != nil {
		return nil, err
	}
	return outs, nil
}

// RunInto is Run writing into outs (len(outs) == len(names)). An output
// whose Data already has the right length and whose Shape has the right
// rank is reused, so repeated calls with the same shapes allocate nothing.
func (m *Model) RunInto(inputs map[string]infer.Tensor, names []string, outs []infer.Tensor) (err error) {
	m.mu.Lock()
	if m.serial {
		return m.runSerial(inputs, names, outs) // unlocks m.mu
	}
	defer m.mu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("onnxrt: internal error: %v", r)
			m.plan = nil
		}
	}()
	if err := m.checkRun(len(names), len(outs)); err != nil {
		return err
	}
	p := m.plan
	if p == nil || !p.matches(inputs) {
		p, err = m.compile(inputs)
		if err != nil {
			return err
		}
		m.plan = p
	}
	return p.run(inputs, names, outs)
}

// checkRun refuses a run with nOuts output slots for nNames names, and any
// run of a model with unsupported operators.
func (m *Model) checkRun(nNames, nOuts int) error {
	if nOuts != nNames {
		return fmt.Errorf("onnxrt: %d output slots for %d names", nOuts, nNames)
	}
	if len(m.unsup) > 0 {
		return fmt.Errorf("onnxrt: model uses %v: %w", m.unsup, ErrUnsupportedOp)
	}
	return nil
}

// Concurrent reports whether runs of m from several goroutines go on at
// once (SetThreads(1)) rather than one after another.
func (m *Model) Concurrent() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.serial
}

// runSerial is RunInto for SetThreads(1), called with m.mu held: it takes
// an idle plan for the inputs' shapes (or compiles one), runs it without
// the lock, and puts it back.
func (m *Model) runSerial(inputs map[string]infer.Tensor, names []string, outs []infer.Tensor) (err error) {
	p, err := m.idlePlan(inputs, len(names), len(outs))
	m.mu.Unlock()
	if err != nil {
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("onnxrt: internal error: %v", r)
			return // the plan is dropped
		}
		m.mu.Lock()
		if m.serial { // not reset by SetThreads or Close meanwhile
			if len(m.idle) >= runtime.GOMAXPROCS(0) {
				m.idle = m.idle[1:]
			}
			m.idle = append(m.idle, p)
		}
		m.mu.Unlock()
	}()
	return p.run(inputs, names, outs)
}

// idlePlan takes an idle plan for the inputs' shapes out of m.idle, or
// compiles one (m.mu held).
func (m *Model) idlePlan(inputs map[string]infer.Tensor, nNames, nOuts int) (p *plan, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("onnxrt: internal error: %v", r)
		}
	}()
	if err := m.checkRun(nNames, nOuts); err != nil {
		return nil, err
	}
	for i := len(m.idle) - 1; i >= 0; i-- {
		if m.idle[i].matches(inputs) {
			p = m.idle[i]
			m.idle = append(m.idle[:i], m.idle[i+1:]...)
			return p, nil
		}
	}
	return m.compile(inputs)
}
