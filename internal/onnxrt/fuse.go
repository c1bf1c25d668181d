package onnxrt

import "math"

// noFuse switches the graph rewrites off (tests compare both ways).
var noFuse = false

// Graph rewrites done once at Load, before any shape is known:
//
//   - BatchNormalization after a Conv with constant weights is folded into
//     the Conv (W' = W·γ/√(σ²+ε), B' = (B−μ)·γ/√(σ²+ε) + β; Ioffe and
//     Szegedy 2015, inference form);
//   - an Add of the Conv's output with another value becomes a residual
//     added in the Conv epilogue;
//   - a following Relu, LeakyRelu, Clip or per-channel PRelu is fused into
//     the Conv epilogue.
//
// Each step applies only when the Conv's output has exactly one consumer
// and is not a graph output.
func (m *Model) optimize() error {
	if noFuse {
		return nil
	}
	consumers := make([][]int, len(m.values))
	for i, n := range m.nodes {
		for _, id := range n.in {
			if id >= 0 {
				consumers[id] = append(consumers[id], i)
			}
		}
	}
	isOut := make([]bool, len(m.values))
	for _, id := range m.outIDs {
		isOut[id] = true
	}
	konst := func(id int) *tensor {
		if id < 0 {
			return nil
		}
		return m.values[id].konst
	}
	// single returns the one consumer node of value id, or nil.
	single := func(id int) *node {
		if isOut[id] || len(consumers[id]) != 1 {
			return nil
		}
		n := m.nodes[consumers[id][0]]
		if n.dead {
			return nil
		}
		return n
	}
	absorb := func(ci int, next *node) {
		conv := m.nodes[ci]
		next.dead = true
		conv.out = next.out
		for _, id := range next.out {
			m.values[id].producer = ci // now produced by the fused conv
		}
	}
	for ci, n := range m.nodes {
		if n.dead || n.op != "Conv" || len(n.in) < 2 || len(n.out) != 1 {
			continue
		}
		w := konst(n.in[1])
		if w == nil || w.dt != dtFloat || len(w.shape) < 3 {
			continue
		}
		M := w.shape[0]
		var bias *tensor
		if len(n.in) > 2 {
			if bias = konst(n.in[2]); bias == nil && n.in[2] >= 0 {
				continue
			}
		}
		// BatchNormalization
		if bn := single(n.out[0]); bn != nil && bn.op == "BatchNormalization" && len(bn.out) == 1 && len(bn.in) == 5 && bn.in[0] == n.out[0] &&
			bn.attrs.int("training_mode", 0) == 0 && (m.opset >= 9 || bn.attrs.int("spatial", 1) == 1) {
			sc, b, mu, vr := konst(bn.in[1]), konst(bn.in[2]), konst(bn.in[3]), konst(bn.in[4])
			ok := sc != nil && b != nil && mu != nil && vr != nil
			for _, t := range []*tensor{sc, b, mu, vr} {
				if ok && (t.dt != dtFloat || t.size() != M) {
					ok = false
				}
			}
			if ok {
				eps := float64(bn.attrs.float("epsilon", 1e-5))
				per := w.size() / M
				nw := &tensor{shape: append([]int{}, w.shape...), f: make([]float32, w.size()), konst: true}
				nb := &tensor{shape: []int{M}, f: make([]float32, M), konst: true}
				for o := 0; o < M; o++ {
					s := float64(sc.f[o]) / math.Sqrt(float64(vr.f[o])+eps)
					for j := 0; j < per; j++ {
						nw.f[o*per+j] = float32(float64(w.f[o*per+j]) * s)
					}
					b0 := 0.0
					if bias != nil {
						b0 = float64(bias.f[o])
					}
					nb.f[o] = float32((b0-float64(mu.f[o]))*s + float64(b.f[o]))
				}
				wid, bid := len(m.values), len(m.values)+1
				m.values = append(m.values, value{name: n.name + "/W_bn", konst: nw, producer: -1},
					value{name: n.name + "/B_bn", konst: nb, producer: -1})
				consumers = append(consumers, nil, nil)
				isOut = append(isOut, false, false)
				n.in = []int{n.in[0], wid, bid}
				absorb(ci, bn)
			}
		}
		f := &fusion{residual: -1}
		// residual Add
		if add := single(n.out[0]); add != nil && add.op == "Add" && len(add.in) == 2 && add.in[0] != add.in[1] && m.opset >= 7 {
			other := add.in[1]
			if add.in[1] == n.out[0] {
				other = add.in[0]
			}
			if p := m.values[other].producer; p >= ci {
				// computed after the conv: leave the Add alone
				goto activation
			}
			f.residual = other
			for len(n.in) < 3 {
				n.in = append(n.in, -1)
			}
			n.in = append(n.in, other)
			absorb(ci, add)
		}
	activation:
		// activation
		if act := single(n.out[0]); act != nil && act.in[0] == n.out[0] && len(act.out) == 1 {
			switch act.op {
			case "Relu":
				f.kind = actRelu
			case "LeakyRelu":
				f.kind, f.alpha = actLeaky, act.attrs.float("alpha", 0.01)
			case "Clip":
				lo, hi := float32(math.Inf(-1)), float32(math.Inf(1))
				ok := true
				if m.opset < 11 {
					lo, hi = act.attrs.float("min", lo), act.attrs.float("max", hi)
				} else {
					for k, p := range []*float32{&lo, &hi} {
						if k+1 >= len(act.in) || act.in[k+1] < 0 {
							continue
						}
						t := konst(act.in[k+1])
						if t == nil || t.dt != dtFloat || t.size() != 1 {
							ok = false
							continue
						}
						*p = t.f[0]
					}
				}
				if ok {
					f.kind, f.lo, f.hi = actClip, lo, hi
				}
			case "PRelu":
				if len(act.in) == 2 {
					if s := konst(act.in[1]); s != nil && s.dt == dtFloat && channelVector(s.shape, M, len(w.shape)) {
						f.kind, f.slope = actPRelu, append([]float32{}, s.f...)
					}
				}
			}
			if f.kind != actNone {
				absorb(ci, act)
			}
		}
		if f.kind != actNone || f.residual >= 0 {
			n.fuse = f
		}
	}
	// drop dead nodes
	live := m.nodes[:0]
	for _, n := range m.nodes {
		if !n.dead {
			live = append(live, n)
		}
	}
	m.nodes = live
	return nil
}

// channelVector reports whether a PRelu slope of shape s applies one value
// per channel (or one for all) to a Conv output of the given rank with M
// channels under unidirectional broadcasting.
func channelVector(s []int, M, rank int) bool {
	n := prod(s)
	if n == 1 {
		return len(s) <= rank
	}
	if n != M || len(s) > rank {
		return false
	}
	// right-aligned: the channel axis of the output is rank-1-1 from the
	// right edge index rank-1; in s it is len(s)-(rank-1)
	ax := len(s) - (rank - 1)
	if ax < 0 {
		return false
	}
	for i, d := range s {
		if i == ax {
			if d != M {
				return false
			}
		} else if d != 1 {
			return false
		}
	}
	return true
}
