package onnxrt

import (
	"fmt"
	"strings"

	"github.com/facever/facever/infer"
	"github.com/facever/facever/internal/bytesize"
	"github.com/facever/facever/internal/gemm"
)

// attrs are a node's attributes as onnx-go decodes them.
type attrs map[string]interface{}

func (a attrs) int(name string, def int) int {
	switch v := a[name].(type) {
	case int64:
		return int(v)
	}
	return def
}

func (a attrs) has(name string) bool { _, ok := a[name]; return ok }

func (a attrs) float(name string, def float32) float32 {
	switch v := a[name].(type) {
	case float32:
		return v
	}
	return def
}

func (a attrs) ints(name string) []int {
	switch v := a[name].(type) {
	case []int64:
		out := make([]int, len(v))
		for i, x := range v {
			out[i] = int(x)
		}
		return out
	case int64:
		return []int{int(v)}
	}
	return nil
}

func (a attrs) str(name, def string) string {
	if v, ok := a[name].(string); ok {
		return v
	}
	return def
}

// buffer is one block of plan memory; values whose lifetimes do not
// overlap share a buffer.
type buffer struct {
	dt   dtype
	size int
	uses int
	f    []float32
	i    []int64
}

// cctx is what an operator compiler receives and fills.
type cctx struct {
	p      *plan
	n      *node
	opset  int
	in     []*tensor // nil for an omitted input
	out    []*tensor // the compiler sets shape and dt of each
	run    func()    // the kernel; nil when the compiler computed out itself (konst)
	alias  int       // >= 0: out[0] is a view of in[alias] (no kernel)
	noFold bool
}

// input returns input i or nil when omitted.
func (c *cctx) input(i int) *tensor {
	if i < len(c.in) {
		return c.in[i]
	}
	return nil
}

func (c *cctx) errorf(format string, args ...interface{}) error {
	return fmt.Errorf("node %q (%s): %w", c.n.name, c.n.op, fmt.Errorf(format, args...))
}

// reserve counts n bytes a compiler allocates for its kernel beyond the
// plan's buffers, and refuses them when the plan is over its memory limit.
func (c *cctx) reserve(n int64) error {
	p := c.p
	p.extra += n
	if p.limit > 0 && p.folded+p.extra > p.limit {
		return c.errorf("%s of kernel memory while compiling: %w (%s)", bytesize.Format(p.folded+p.extra), ErrMemoryLimit, bytesize.Format(p.limit))
	}
	return nil
}

// setOut declares output i.
func (c *cctx) setOut(i int, dt dtype, shape []int) *tensor {
	t := &tensor{dt: dt, shape: append([]int{}, shape...)}
	c.out[i] = t
	return t
}

type compiler func(c *cctx) error

// maxElements bounds the size of one value (4 GiB of float32).
const maxElements = 1 << 30

// compilers maps operator types to their compilers; filled by init
// functions of the op files.
var compilers = map[string]compiler{}

// plan is a model compiled for one set of input shapes.
type plan struct {
	m       *Model
	vals    []*tensor
	inDT    []dtype
	steps   []func()
	bufs    []*buffer
	scratch [][]float32 // per worker
	scrSize int
	shared  []float32
	shSize  int // floats of shared scratch asked for
	bound   []*tensor
	folded  int64 // bytes of constants folded while compiling
	extra   int64 // bytes kernels allocated while compiling (packed weights, tables)
	limit   int64 // the model's memory limit; 0: none
	serial  bool  // Model.SetThreads(1): kernels run on the calling goroutine
}

// workers is the number of workers a kernel of p splits over.
func (p *plan) workers() int {
	if p.serial {
		return 1
	}
	return gemm.Workers()
}

// parallel runs fn over [0,n) as gemm.Parallel does, or on the calling
// goroutine for a serial plan.
func (p *plan) parallel(n, grain int, fn func(worker, lo, hi int)) {
	if p.serial {
		fn(0, 0, n)
		return
	}
	gemm.Parallel(n, grain, fn)
}

// sharedScratch asks for n floats of scratch memory shared by all workers
// (one kernel runs at a time); it is allocated with the buffers.
func (p *plan) sharedScratch(n int) {
	p.shSize = max(p.shSize, n)
}

// scratchSize asks for n floats of per-worker scratch memory.
func (p *plan) scratchSize(n int) {
	if n > p.scrSize {
		p.scrSize = n
	}
}

func (p *plan) matches(inputs map[string]infer.Tensor) bool {
	if len(inputs) != len(p.m.inIDs) {
		return false
	}
	for k, id := range p.m.inIDs {
		t, ok := inputs[p.m.values[id].name]
		if !ok || p.inDT[k] != dtFloat || !sameShape(t.Shape, p.vals[id].shape) || len(t.Data) != len(p.vals[id].f) {
			return false
		}
	}
	return true
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// compile builds a plan for the shapes of inputs.
func (m *Model) compile(inputs map[string]infer.Tensor) (*plan, error) {
	shapes := make(map[string][]int, len(inputs))
	for name, t := range inputs {
		if err := t.Check(); err != nil {
			return nil, fmt.Errorf("onnxrt: input %q: %w", name, err)
		}
		shapes[name] = t.Shape
	}
	ins, err := m.inputTensors(shapes)
	if err != nil {
		return nil, err
	}
	return m.compileTensors(ins)
}

// inputTensors checks shapes against the graph inputs and returns their
// (unallocated) tensors in graph order.
func (m *Model) inputTensors(shapes map[string][]int) ([]*tensor, error) {
	ins := make([]*tensor, len(m.inIDs))
	for k, id := range m.inIDs {
		name := m.values[id].name
		shape, ok := shapes[name]
		if !ok {
			return nil, fmt.Errorf("onnxrt: input %q missing", name)
		}
		n := 1
		for _, d := range shape {
			if d < 0 {
				return nil, fmt.Errorf("onnxrt: input %q: negative dimension in shape %v", name, shape)
			}
			if d > 0 && n > maxElements/d {
				return nil, fmt.Errorf("onnxrt: input %q: shape %v has more than %d elements", name, shape, maxElements)
			}
			n *= d
		}
		// the declared shape must match, except the first (batch) dimension
		if decl := m.inputs[k].Shape; decl != nil {
			ok := len(decl) == len(shape)
			for i := 1; ok && !m.anySize && i < len(decl); i++ {
				ok = decl[i] < 0 || decl[i] == shape[i]
			}
			if !ok {
				return nil, fmt.Errorf("onnxrt: input %q has shape %v, the model wants %v", name, shape, decl)
			}
		}
		ins[k] = &tensor{dt: dtFloat, shape: append([]int{}, shape...)}
	}
	for name := range shapes {
		found := false
		for _, id := range m.inIDs {
			if m.values[id].name == name {
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("onnxrt: model has no input %q", name)
		}
	}
	return ins, nil
}

// compileTensors plans for ins, checks the plan's memory against the
// model's limit, and allocates it.
func (m *Model) compileTensors(ins []*tensor) (*plan, error) {
	p, err := m.planTensors(ins)
	if err != nil {
		return nil, err
	}
	if err := p.checkLimit(ins); err != nil {
		return nil, err
	}
	p.allocate()
	return p, nil
}

// checkLimit refuses a plan that needs more memory than the model's limit.
func (p *plan) checkLimit(ins []*tensor) error {
	if mem := p.memory(); p.limit > 0 && mem > p.limit {
		var desc []string
		for k, id := range p.m.inIDs {
			desc = append(desc, fmt.Sprintf("%s %s", p.m.values[id].name, formatShape(ins[k].shape)))
		}
		return fmt.Errorf("onnxrt: running the model on inputs %s needs %s: %w (%s)",
			strings.Join(desc, ", "), bytesize.Format(mem), ErrMemoryLimit, bytesize.Format(p.limit))
	}
	return nil
}

// planTensors compiles a plan for ins (shapes, types, kernels, buffer
// sizes) without allocating its buffers.
func (m *Model) planTensors(ins []*tensor) (*plan, error) {
	p := &plan{m: m, vals: make([]*tensor, len(m.values)), limit: m.memLimit, serial: m.serial}
	uses := make([]int, len(m.values))
	for _, n := range m.nodes {
		if n.dead {
			continue
		}
		for _, id := range n.in {
			if id >= 0 {
				uses[id]++
			}
		}
	}
	const forever = 1 << 40
	for _, id := range m.outIDs {
		uses[id] += forever
	}
	for id, v := range m.values {
		if v.konst != nil {
			p.vals[id] = v.konst
		}
	}
	var free []*buffer
	alloc := func(t *tensor, u int) {
		n := t.size()
		best := -1
		for i, b := range free {
			if b.dt != t.dt {
				continue
			}
			if best < 0 {
				best = i
				continue
			}
			bb := free[best]
			if (b.size >= n && (bb.size < n || b.size < bb.size)) || (bb.size < n && b.size > bb.size) {
				best = i
			}
		}
		var b *buffer
		if best >= 0 {
			b = free[best]
			free = append(free[:best], free[best+1:]...)
			if b.size < n {
				b.size = n
			}
		} else {
			b = &buffer{dt: t.dt, size: n}
			p.bufs = append(p.bufs, b)
		}
		b.uses = u
		t.buf = b
		p.bound = append(p.bound, t)
	}
	release := func(t *tensor) {
		if t == nil || t.konst || t.buf == nil {
			return
		}
		t.buf.uses--
		if t.buf.uses == 0 {
			free = append(free, t.buf)
		}
	}
	for k, id := range m.inIDs {
		t := ins[k]
		p.inDT = append(p.inDT, t.dt)
		if t.konst {
			p.vals[id] = t
			continue
		}
		alloc(t, uses[id])
		p.vals[id] = t
	}
	for _, n := range m.nodes {
		if n.dead {
			continue
		}
		c := &cctx{p: p, n: n, opset: m.opset, alias: -1, in: make([]*tensor, len(n.in)), out: make([]*tensor, len(n.out))}
		allConst := true
		for i, id := range n.in {
			if id < 0 {
				continue
			}
			t := p.vals[id]
			if t == nil {
				return nil, fmt.Errorf("node %q (%s): input %q is not computed before it (graph not sorted)", n.name, n.op, m.values[id].name)
			}
			c.in[i] = t
			if !t.konst {
				allConst = false
			}
		}
		if err := compilers[n.op](c); err != nil {
			return nil, err
		}
		for i, t := range c.out {
			if t == nil {
				return nil, fmt.Errorf("node %q (%s): output %d not produced", n.name, n.op, i)
			}
			total := 1
			for _, d := range t.shape {
				if d < 0 {
					return nil, fmt.Errorf("node %q (%s): negative dimension in output shape %v", n.name, n.op, t.shape)
				}
				if d > 0 && total > maxElements/d {
					return nil, fmt.Errorf("node %q (%s): output shape %v is too large", n.name, n.op, t.shape)
				}
				total *= d
			}
		}
		switch {
		case c.run == nil && c.alias < 0:
			// the compiler computed constant outputs
			for _, t := range c.out {
				t.konst = true
			}
		case allConst && !c.noFold:
			// constant folding: run the kernel now
			for _, t := range c.out {
				p.folded += int64(t.size()) * elemBytes(t.dt)
			}
			if p.limit > 0 && p.folded+p.extra > p.limit {
				return nil, fmt.Errorf("node %q (%s): constants of %s folded while compiling: %w (%s)",
					n.name, n.op, bytesize.Format(p.folded), ErrMemoryLimit, bytesize.Format(p.limit))
			}
			for _, t := range c.out {
				t.konst = true
				if t.dt == dtFloat {
					t.f = make([]float32, t.size())
				} else {
					t.i = make([]int64, t.size())
				}
			}
			if c.alias >= 0 {
				src := c.in[c.alias]
				c.out[0].f, c.out[0].i = src.f, src.i
			} else {
				if p.scrSize > 0 && len(p.scratch) == 0 {
					p.allocScratch()
				} else if len(p.scratch) > 0 && len(p.scratch[0]) < p.scrSize {
					p.allocScratch()
				}
				if len(p.shared) < p.shSize {
					p.folded += int64(p.shSize-len(p.shared)) * 4
					p.shared = make([]float32, p.shSize)
				}
				c.run()
			}
		case c.alias >= 0:
			src := c.in[c.alias]
			o := c.out[0]
			if src.dt != o.dt || src.size() != o.size() {
				return nil, fmt.Errorf("node %q (%s): bad view", n.name, n.op)
			}
			o.buf = src.buf
			if src.buf != nil {
				src.buf.uses += uses[n.out[0]]
				p.bound = append(p.bound, o)
			} else {
				o.f, o.i = src.f, src.i
			}
		default:
			for i, t := range c.out {
				alloc(t, uses[n.out[i]])
			}
			p.steps = append(p.steps, c.run)
		}
		for i, t := range c.out {
			p.vals[n.out[i]] = t
			if uses[n.out[i]] == 0 && t.buf != nil && c.alias < 0 {
				// unused output: free at once
				t.buf.uses = 0
				free = append(free, t.buf)
			}
		}
		for _, t := range c.in {
			release(t)
		}
	}
	return p, nil
}

// memory is the number of bytes the plan holds once allocated (buffers,
// scratch, folded constants) plus the outputs Run returns (float32).
func (p *plan) memory() int64 {
	total := p.folded + p.extra + int64(max(p.shSize, len(p.shared)))*4 + int64(p.workers())*int64(p.scrSize)*4
	for _, b := range p.bufs {
		total += int64(b.size) * elemBytes(b.dt)
	}
	for _, id := range p.m.outIDs {
		if t := p.vals[id]; t != nil {
			total += int64(t.size()) * 4
		}
	}
	return total
}

// allocate gives the plan its memory.
func (p *plan) allocate() {
	if len(p.shared) < p.shSize {
		p.shared = make([]float32, p.shSize)
	}
	for _, b := range p.bufs {
		if b.dt == dtFloat {
			b.f = make([]float32, b.size)
		} else {
			b.i = make([]int64, b.size)
		}
	}
	for _, t := range p.bound {
		if t.dt == dtFloat {
			t.f = t.buf.f[:t.size()]
		} else {
			t.i = t.buf.i[:t.size()]
		}
	}
	p.allocScratch()
}

func (p *plan) allocScratch() {
	p.scratch = make([][]float32, p.workers())
	for i := range p.scratch {
		p.scratch[i] = make([]float32, p.scrSize)
	}
}

// exec copies the inputs in and runs every step.
func (p *plan) run(inputs map[string]infer.Tensor, names []string, outs []infer.Tensor) error {
	m := p.m
	for _, id := range m.inIDs {
		t := inputs[m.values[id].name]
		copy(p.vals[id].f, t.Data)
	}
	for _, s := range p.steps {
		s()
	}
	for k, name := range names {
		var t *tensor
		for _, id := range m.outIDs {
			if m.values[id].name == name {
				t = p.vals[id]
				break
			}
		}
		if t == nil {
			return fmt.Errorf("onnxrt: model has no output %q", name)
		}
		o := &outs[k]
		if len(o.Shape) != len(t.shape) {
			o.Shape = make([]int, len(t.shape))
		}
		copy(o.Shape, t.shape)
		n := t.size()
		if len(o.Data) != n {
			o.Data = make([]float32, n)
		}
		if t.dt == dtFloat {
			copy(o.Data, t.f)
		} else {
			for i, v := range t.i {
				o.Data[i] = float32(v)
			}
		}
	}
	return nil
}

// runTensors compiles a plan for ins (in graph input order) and runs it
// once, returning copies of the graph outputs. The conformance tests use it
// for inputs of any type.
func (m *Model) runTensors(ins []*tensor) (outs []*tensor, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("onnxrt: internal error: %v", r)
		}
	}()
	if len(ins) != len(m.inIDs) {
		return nil, fmt.Errorf("onnxrt: %d inputs for %d", len(ins), len(m.inIDs))
	}
	shaped := make([]*tensor, len(ins))
	for k, t := range ins {
		shaped[k] = &tensor{dt: t.dt, shape: t.shape}
		if t.dt != dtFloat {
			// integer inputs (shapes, axes, indices) are plan-time constants
			shaped[k] = t
			t.konst = true
		}
	}
	p, err := m.compileTensors(shaped)
	if err != nil {
		return nil, err
	}
	for k, id := range m.inIDs {
		if !ins[k].konst {
			copyTensor(p.vals[id], ins[k])
		}
	}
	for _, s := range p.steps {
		s()
	}
	for _, id := range m.outIDs {
		t := p.vals[id]
		o := &tensor{dt: t.dt, shape: append([]int{}, t.shape...)}
		o.f = append([]float32(nil), t.f...)
		o.i = append([]int64(nil), t.i...)
		outs = append(outs, o)
	}
	return outs, nil
}
