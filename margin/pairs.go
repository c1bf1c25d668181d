package margin

import (
	"fmt"
	"math"

	"gorgonia.org/gorgonia"
)

// The pair losses compare the samples of a batch with one another through
// their cosine similarities S_ij = x̂_i·x̂_j; they read no class weights
// (w = nil) and need batches that hold several photos of each identity
// (P identities × K photos). Formulas as in docs/losses.md (the
// Musgrave et al. 2020 taxonomy), each from the paper cited on its type.

// Defaults of the pair and proxy losses (the cited papers' values, in
// cosine-similarity form).
const (
	DefaultContrastivePosMargin = 1.0  // m_p: positives pulled to cosine 1 (Hadsell et al. 2006, as similarities)
	DefaultContrastiveNegMargin = 0.5  // m_n: negatives pushed below cosine 0.5
	DefaultTripletMargin        = 0.1  // FaceNet's α = 0.2 on squared distances of unit vectors, ‖a−b‖² = 2 − 2S
	DefaultLiftedMargin         = 1.0  // α = 1 of Song et al. 2016
	DefaultMSAlpha              = 2.0  // α, β, λ of Wang et al. 2019
	DefaultMSBeta               = 50.0 //
	DefaultMSMargin             = 0.5  //
	DefaultProxyNCAScale        = 9.0  // unit vectors scaled to norm 3, as in Kim et al. 2020's ProxyNCA baseline
	DefaultProxyAnchorAlpha     = 32.0 // α and δ of Kim et al. 2020
	DefaultProxyAnchorMargin    = 0.1  //
	DefaultSoftTripleK          = 10   // K, γ, λ, δ, τ of Qian et al. 2019 (§5)
	DefaultSoftTripleGamma      = 0.1  //
	DefaultSoftTripleLambda     = 20.0 //
	DefaultSoftTripleDelta      = 0.01 //
	DefaultSoftTripleTau        = 0.2  //
)

// pairLoss is the shared Loss of the pair losses: f on S = x̂x̂ᵀ.
func pairLoss(name, key string, x, w *gorgonia.Node, labels *Labels, f simFunc) (*gorgonia.Node, error) {
	if err := checkPair(name, x, w, labels); err != nil {
		return nil, err
	}
	s, err := selfCosines(x)
	if err != nil {
		return nil, err
	}
	return sumLoss(simLoss(s, name, key, labels, batchLabels, f))
}

// ---- Contrastive ----

// Contrastive is the contrastive loss of Hadsell, Chopra and LeCun,
// "Dimensionality Reduction by Learning an Invariant Mapping", CVPR 2006, in
// similarity form: for every pair i < j of the batch,
// [m_p − S_ij]₊ if i and j share an identity, [S_ij − m_n]₊ otherwise,
// averaged over the N(N−1)/2 pairs. A batch of one identity only pulls
// together, a batch without a positive pair only pushes apart; both are
// defined. A single sample has no pair and is an error.
type Contrastive struct{ mp, mn float64 }

// NewContrastive returns a contrastive loss with positive margin posMargin
// (positives more similar than it cost nothing) and negative margin negMargin
// (negatives less similar than it cost nothing), both cosines in [−1, 1].
func NewContrastive(posMargin, negMargin float64) (*Contrastive, error) {
	if !finite(posMargin, negMargin) || posMargin < -1 || posMargin > 1 || negMargin < -1 || negMargin > 1 {
		return nil, fmt.Errorf("margin: contrastive needs margins in [−1, 1], got m_p=%v m_n=%v", posMargin, negMargin)
	}
	return &Contrastive{mp: posMargin, mn: negMargin}, nil
}

// Name implements Loss.
func (*Contrastive) Name() string { return "contrastive" }

// Params implements Loss.
func (h *Contrastive) Params() map[string]float64 {
	return map[string]float64{"pos_margin": h.mp, "neg_margin": h.mn}
}

func (*Contrastive) weightRows(int) int { return 0 }

// Build implements Loss; w must be nil.
func (h *Contrastive) Build(x, w *gorgonia.Node, labels *Labels) (*gorgonia.Node, error) {
	return pairLoss(h.Name(), fmt.Sprintf("%v,%v", h.mp, h.mn), x, w, labels, h.eval)
}

func (*Contrastive) checkBatch(y []int) error {
	if len(y) < 2 {
		return degenerate("contrastive", "a batch of one sample has no pair")
	}
	return nil
}

func (h *Contrastive) eval(s []float64, n, _ int, y, _ []int, grad []float64) (float64, int, error) {
	if err := h.checkBatch(y); err != nil {
		return 0, 0, err
	}
	pairs := float64(n*(n-1)) / 2
	var loss float64
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			v := s[i*n+j]
			if y[i] == y[j] {
				if d := h.mp - v; d > 0 {
					loss += d
					grad[i*n+j] = -1 / pairs
				}
			} else if d := v - h.mn; d > 0 {
				loss += d
				grad[i*n+j] = 1 / pairs
			}
		}
	}
	return loss / pairs, nearestCorrect(s, n, y), nil
}

// ---- Triplet ----

// Mining selects the triplets a Triplet loss averages over.
type Mining int

// Triplet mining strategies.
const (
	// MineAll averages [S_an − S_ap + m]₊ over every triplet of the batch
	// (Hoffer and Ailon 2015).
	MineAll Mining = iota
	// MineHard takes, for each anchor, its least similar positive and its
	// most similar negative: "batch hard" of Hermans, Beyer and Leibe, "In
	// Defense of the Triplet Loss for Person Re-Identification", 2017.
	MineHard
	// MineSemiHard takes, for each anchor–positive pair, the most similar
	// negative that is still less similar than the positive (FaceNet's
	// semi-hard negatives, Schroff et al., CVPR 2015); where there is none,
	// the least similar negative (as TensorFlow Addons'
	// triplet_semihard_loss does).
	MineSemiHard
)

// ParseMining reads "all", "hard" or "semi-hard".
func ParseMining(s string) (Mining, error) {
	switch s {
	case "all":
		return MineAll, nil
	case "hard":
		return MineHard, nil
	case "semi-hard", "semihard":
		return MineSemiHard, nil
	}
	return 0, fmt.Errorf("margin: triplet mining %q: want all, hard or semi-hard", s)
}

// String returns "all", "hard" or "semi-hard".
func (m Mining) String() string {
	switch m {
	case MineAll:
		return "all"
	case MineHard:
		return "hard"
	case MineSemiHard:
		return "semi-hard"
	}
	return fmt.Sprintf("Mining(%d)", int(m))
}

// Triplet is the triplet loss of Hoffer and Ailon, "Deep Metric Learning
// Using Triplet Network", SIMBAD 2015 (and Schroff et al., "FaceNet", CVPR
// 2015), in similarity form: [S_an − S_ap + m]₊ for an anchor a, a positive p
// of its identity and a negative n of another, averaged over the triplets its
// Mining selects. A batch without a triplet (no positive pair, or a single
// identity) is an error wrapping ErrDegenerateBatch.
type Triplet struct {
	m      float64
	mining Mining
}

// NewTriplet returns a triplet loss with margin m ∈ [0, 2] and the given
// mining.
func NewTriplet(m float64, mining Mining) (*Triplet, error) {
	if !finite(m) || m < 0 || m > 2 {
		return nil, fmt.Errorf("margin: triplet needs a margin in [0, 2], got %v", m)
	}
	if mining < MineAll || mining > MineSemiHard {
		return nil, fmt.Errorf("margin: unknown triplet mining %d", int(mining))
	}
	return &Triplet{m: m, mining: mining}, nil
}

// Name implements Loss.
func (*Triplet) Name() string { return "triplet" }

// Params implements Loss; mining is 0 (all), 1 (hard) or 2 (semi-hard).
func (h *Triplet) Params() map[string]float64 {
	return map[string]float64{"margin": h.m, "mining": float64(h.mining)}
}

func (*Triplet) weightRows(int) int { return 0 }

// Build implements Loss; w must be nil.
func (h *Triplet) Build(x, w *gorgonia.Node, labels *Labels) (*gorgonia.Node, error) {
	return pairLoss(h.Name(), fmt.Sprintf("%v,%v", h.m, h.mining), x, w, labels, h.eval)
}

func (*Triplet) checkBatch(y []int) error {
	if !hasTriplet(y) {
		return degenerate("triplet", "the batch has no triplet (an anchor with a photo of its own identity and one of another)")
	}
	return nil
}

func (h *Triplet) eval(s []float64, n, _ int, y, _ []int, grad []float64) (float64, int, error) {
	if err := h.checkBatch(y); err != nil {
		return 0, 0, err
	}
	type term struct{ a, p, q int } // anchor, positive, negative
	var terms []term
	for a := 0; a < n; a++ {
		switch h.mining {
		case MineAll:
			for p := 0; p < n; p++ {
				if p == a || y[p] != y[a] {
					continue
				}
				for q := 0; q < n; q++ {
					if y[q] != y[a] {
						terms = append(terms, term{a, p, q})
					}
				}
			}
		case MineHard:
			p, q := -1, -1
			for j := 0; j < n; j++ {
				switch {
				case j == a:
				case y[j] == y[a]:
					if p < 0 || s[a*n+j] < s[a*n+p] {
						p = j
					}
				default:
					if q < 0 || s[a*n+j] > s[a*n+q] {
						q = j
					}
				}
			}
			if p >= 0 && q >= 0 {
				terms = append(terms, term{a, p, q})
			}
		case MineSemiHard:
			for p := 0; p < n; p++ {
				if p == a || y[p] != y[a] {
					continue
				}
				sap := s[a*n+p]
				semi, easy := -1, -1
				for q := 0; q < n; q++ {
					if y[q] == y[a] {
						continue
					}
					v := s[a*n+q]
					if v < sap && (semi < 0 || v > s[a*n+semi]) {
						semi = q
					}
					if easy < 0 || v < s[a*n+easy] {
						easy = q
					}
				}
				if semi < 0 {
					semi = easy
				}
				if semi >= 0 {
					terms = append(terms, term{a, p, semi})
				}
			}
		}
	}
	inv := 1 / float64(len(terms))
	var loss float64
	for _, t := range terms {
		if d := s[t.a*n+t.q] - s[t.a*n+t.p] + h.m; d > 0 {
			loss += d
			grad[t.a*n+t.q] += inv
			grad[t.a*n+t.p] -= inv
		}
	}
	return loss * inv, nearestCorrect(s, n, y), nil
}

// ---- N-pair ----

// NPairVariant selects the N-pair loss's form.
type NPairVariant int

// N-pair variants (Sohn 2016, §3.2).
const (
	// NPairMC is the multi-class N-pair loss: one softmax over the anchor's
	// positive and every other identity's positive.
	NPairMC NPairVariant = iota
	// NPairOVO is the one-vs-one N-pair loss: one logistic term per other
	// identity.
	NPairOVO
)

// ParseNPairVariant reads "mc" or "ovo".
func ParseNPairVariant(s string) (NPairVariant, error) {
	switch s {
	case "mc":
		return NPairMC, nil
	case "ovo":
		return NPairOVO, nil
	}
	return 0, fmt.Errorf("margin: N-pair variant %q: want mc or ovo", s)
}

// String returns "mc" or "ovo".
func (v NPairVariant) String() string {
	switch v {
	case NPairMC:
		return "mc"
	case NPairOVO:
		return "ovo"
	}
	return fmt.Sprintf("NPairVariant(%d)", int(v))
}

// NPair is the N-pair loss of Sohn, "Improved Deep Metric Learning with
// Multi-class N-pair Loss Objective", NeurIPS 2016. The batch is read as
// N-pair tuples: round r takes, from each identity with at least 2r+2 photos,
// its photos 2r and 2r+1 (in batch order) as anchor x_i and positive x_i⁺, so
// that a P×K batch gives K/2 tuples of P pairs. For each anchor,
//
//	mc:  log(1 + Σ_{j≠i} exp(S(x_i, x_j⁺) − S(x_i, x_i⁺)))
//	ovo: Σ_{j≠i} log(1 + exp(S(x_i, x_j⁺) − S(x_i, x_i⁺)))
//
// with j over the other identities of the tuple, averaged over the anchors
// of the tuples that hold two or more identities (an identity alone in its
// round has no negative and is left out). A batch where no tuple holds two
// identities is an error wrapping ErrDegenerateBatch.
type NPair struct{ variant NPairVariant }

// NewNPair returns an N-pair loss of the given variant.
func NewNPair(variant NPairVariant) (*NPair, error) {
	if variant != NPairMC && variant != NPairOVO {
		return nil, fmt.Errorf("margin: unknown N-pair variant %d", int(variant))
	}
	return &NPair{variant: variant}, nil
}

// Name implements Loss.
func (*NPair) Name() string { return "npair" }

// Params implements Loss; variant is 0 (mc) or 1 (ovo).
func (h *NPair) Params() map[string]float64 { return map[string]float64{"variant": float64(h.variant)} }

func (*NPair) weightRows(int) int { return 0 }

// Build implements Loss; w must be nil.
func (h *NPair) Build(x, w *gorgonia.Node, labels *Labels) (*gorgonia.Node, error) {
	return pairLoss(h.Name(), h.variant.String(), x, w, labels, h.eval)
}

// NPairTuples returns the anchor and positive indices of each round's tuple
// for batch labels y, as NPair reads them.
func NPairTuples(y []int) (anchors, positives [][]int) {
	var order []int // identities in order of first appearance
	members := map[int][]int{}
	for i, v := range y {
		if _, ok := members[v]; !ok {
			order = append(order, v)
		}
		members[v] = append(members[v], i)
	}
	for r := 0; ; r++ {
		var a, p []int
		for _, v := range order {
			if m := members[v]; len(m) >= 2*r+2 {
				a, p = append(a, m[2*r]), append(p, m[2*r+1])
			}
		}
		if len(a) == 0 {
			return anchors, positives
		}
		anchors, positives = append(anchors, a), append(positives, p)
	}
}

func (*NPair) checkBatch(y []int) error {
	anchors, _ := NPairTuples(y)
	if len(anchors) == 0 || len(anchors[0]) < 2 {
		return degenerate("npair", "no two identities have two photos each in the batch")
	}
	return nil
}

func (h *NPair) eval(s []float64, n, _ int, y, _ []int, grad []float64) (float64, int, error) {
	if err := h.checkBatch(y); err != nil {
		return 0, 0, err
	}
	anchors, positives := NPairTuples(y)
	count := 0
	for r := range anchors {
		if len(anchors[r]) >= 2 {
			count += len(anchors[r])
		}
	}
	inv := 1 / float64(count)
	var loss float64
	var z, wt []float64
	for r, as := range anchors {
		if len(as) < 2 {
			continue // one identity alone in its tuple: no negative
		}
		ps := positives[r]
		for i, a := range as {
			pos := s[a*n+ps[i]]
			z, wt = z[:0], wt[:0]
			for j, p := range ps {
				if j != i {
					z, wt = append(z, s[a*n+p]-pos), append(wt, 0)
				}
			}
			switch h.variant {
			case NPairMC:
				loss += softplusSum(z, wt)
				k := 0
				for j, p := range ps {
					if j != i {
						grad[a*n+p] += inv * wt[k]
						grad[a*n+ps[i]] -= inv * wt[k]
						k++
					}
				}
			case NPairOVO:
				k := 0
				for j, p := range ps {
					if j != i {
						loss += softplusSum(z[k:k+1], wt[k:k+1])
						grad[a*n+p] += inv * wt[k]
						grad[a*n+ps[i]] -= inv * wt[k]
						k++
					}
				}
			}
		}
	}
	return loss * inv, nearestCorrect(s, n, y), nil
}

// ---- Lifted structure ----

// LiftedStructure is the lifted structured loss of Song, Xiang, Jegelka and
// Savarese, "Deep Metric Learning via Lifted Structured Feature Embedding",
// CVPR 2016, in the per-anchor generalised form of Hermans et al. 2017 (as
// docs/losses.md writes it, with the hinge both papers apply):
//
//	[log Σ_{k∈P_i} exp(m − S_ik) + log Σ_{k∈N_i} exp(S_ik)]₊
//
// averaged over the anchors i that have both a positive (P_i) and a negative
// (N_i) in the batch. A batch without such an anchor (no positive pair, or a
// single identity) is an error wrapping ErrDegenerateBatch.
type LiftedStructure struct{ m float64 }

// NewLiftedStructure returns a lifted-structure loss with margin m ≥ 0.
func NewLiftedStructure(m float64) (*LiftedStructure, error) {
	if !finite(m) || m < 0 || m > 10 {
		return nil, fmt.Errorf("margin: lifted structure needs a margin in [0, 10], got %v", m)
	}
	return &LiftedStructure{m: m}, nil
}

// Name implements Loss.
func (*LiftedStructure) Name() string { return "lifted" }

// Params implements Loss.
func (h *LiftedStructure) Params() map[string]float64 { return map[string]float64{"margin": h.m} }

func (*LiftedStructure) weightRows(int) int { return 0 }

// Build implements Loss; w must be nil.
func (h *LiftedStructure) Build(x, w *gorgonia.Node, labels *Labels) (*gorgonia.Node, error) {
	return pairLoss(h.Name(), fmt.Sprint(h.m), x, w, labels, h.eval)
}

func (*LiftedStructure) checkBatch(y []int) error {
	if !hasTriplet(y) {
		return degenerate("lifted", "no sample has both a photo of its own identity and one of another in the batch")
	}
	return nil
}

func (h *LiftedStructure) eval(s []float64, n, _ int, y, _ []int, grad []float64) (float64, int, error) {
	if err := h.checkBatch(y); err != nil {
		return 0, 0, err
	}
	var anchors []int
	for i := 0; i < n; i++ {
		hasP, hasN := false, false
		for j := 0; j < n; j++ {
			if j != i {
				hasP = hasP || y[j] == y[i]
				hasN = hasN || y[j] != y[i]
			}
		}
		if hasP && hasN {
			anchors = append(anchors, i)
		}
	}
	inv := 1 / float64(len(anchors))
	var loss float64
	zp, wp, ip := make([]float64, 0, n), make([]float64, n), make([]int, 0, n)
	zn, wn, in := make([]float64, 0, n), make([]float64, n), make([]int, 0, n)
	for _, i := range anchors {
		zp, ip, zn, in = zp[:0], ip[:0], zn[:0], in[:0]
		for j := 0; j < n; j++ {
			switch {
			case j == i:
			case y[j] == y[i]:
				zp, ip = append(zp, h.m-s[i*n+j]), append(ip, j)
			default:
				zn, in = append(zn, s[i*n+j]), append(in, j)
			}
		}
		l := logSumExp(zp, wp[:len(zp)]) + logSumExp(zn, wn[:len(zn)])
		if l <= 0 {
			continue
		}
		loss += l
		for k, j := range ip {
			grad[i*n+j] -= inv * wp[k]
		}
		for k, j := range in {
			grad[i*n+j] += inv * wn[k]
		}
	}
	return loss * inv, nearestCorrect(s, n, y), nil
}

// ---- Multi-similarity ----

// MultiSimilarity is the multi-similarity loss of Wang, Han, Huang, Dong and
// Scott, "Multi-Similarity Loss with General Pair Weighting for Deep Metric
// Learning", CVPR 2019, eq. 6:
//
//	(1/N) Σ_i { (1/α) log(1 + Σ_{k∈P_i} exp(−α(S_ik − λ)))
//	          + (1/β) log(1 + Σ_{k∈N_i} exp(β(S_ik − λ))) }
//
// over all pairs, as docs/losses.md writes it. A sample without positives, or
// without negatives, contributes only the other term, so every batch of two
// or more samples is defined. WithMining adds the paper's hard-pair mining
// (§4.2).
type MultiSimilarity struct {
	alpha, beta, m float64
	eps            float64 // mining margin ε; 0: no mining
}

// DefaultMSMining is ε of the multi-similarity paper's pair mining (§5.1).
const DefaultMSMining = 0.1

// WithMining returns a copy of h that mines informative pairs before the
// loss, as Wang et al. 2019 do (§4.2, eqs. 4 and 5): a negative pair
// {i, k} is kept if S_ik > min_{positives k'} S_ik' − ε, a positive pair if
// S_ik < max_{negatives k'} S_ik' + ε; an anchor with no positive or no
// negative left contributes nothing (the authors' code skips it). ε ≥ 0;
// 0 turns mining off.
func (h *MultiSimilarity) WithMining(eps float64) (*MultiSimilarity, error) {
	if !finite(eps) || eps < 0 || eps > 2 {
		return nil, fmt.Errorf("margin: multi-similarity mining needs ε in [0, 2], got %v", eps)
	}
	c := *h
	c.eps = eps
	return &c, nil
}

// NewMultiSimilarity returns a multi-similarity loss with α > 0, β > 0 and
// margin λ ∈ [−1, 1].
func NewMultiSimilarity(alpha, beta, m float64) (*MultiSimilarity, error) {
	if !finite(alpha, beta, m) || alpha <= 0 || beta <= 0 || alpha > 1000 || beta > 1000 || m < -1 || m > 1 {
		return nil, fmt.Errorf("margin: multi-similarity needs 0 < α, β ≤ 1000 and a margin in [−1, 1], got α=%v β=%v λ=%v", alpha, beta, m)
	}
	return &MultiSimilarity{alpha: alpha, beta: beta, m: m}, nil
}

// Name implements Loss.
func (*MultiSimilarity) Name() string { return "multisimilarity" }

// Params implements Loss.
func (h *MultiSimilarity) Params() map[string]float64 {
	return map[string]float64{"alpha": h.alpha, "beta": h.beta, "margin": h.m, "mining": h.eps}
}

func (*MultiSimilarity) weightRows(int) int { return 0 }

// Build implements Loss; w must be nil.
func (h *MultiSimilarity) Build(x, w *gorgonia.Node, labels *Labels) (*gorgonia.Node, error) {
	return pairLoss(h.Name(), fmt.Sprintf("%v,%v,%v,%v", h.alpha, h.beta, h.m, h.eps), x, w, labels, h.eval)
}

func (*MultiSimilarity) checkBatch(y []int) error {
	if len(y) < 2 {
		return degenerate("multisimilarity", "a batch of one sample has no pair")
	}
	return nil
}

func (h *MultiSimilarity) eval(s []float64, n, _ int, y, _ []int, grad []float64) (float64, int, error) {
	if err := h.checkBatch(y); err != nil {
		return 0, 0, err
	}
	inv := 1 / float64(n)
	var loss float64
	zp, wp, ip := make([]float64, 0, n), make([]float64, n), make([]int, 0, n)
	zn, wn, in := make([]float64, 0, n), make([]float64, n), make([]int, 0, n)
	for i := 0; i < n; i++ {
		zp, ip, zn, in = zp[:0], ip[:0], zn[:0], in[:0]
		minPos, maxNeg := math.Inf(1), math.Inf(-1)
		if h.eps > 0 {
			for j := 0; j < n; j++ {
				switch {
				case j == i:
				case y[j] == y[i]:
					minPos = min(minPos, s[i*n+j])
				default:
					maxNeg = max(maxNeg, s[i*n+j])
				}
			}
		}
		for j := 0; j < n; j++ {
			v := s[i*n+j]
			switch {
			case j == i:
			case y[j] == y[i]:
				if h.eps == 0 || v-h.eps < maxNeg {
					zp, ip = append(zp, -h.alpha*(v-h.m)), append(ip, j)
				}
			default:
				if h.eps == 0 || v+h.eps > minPos {
					zn, in = append(zn, h.beta*(v-h.m)), append(in, j)
				}
			}
		}
		if h.eps > 0 && (len(zp) == 0 || len(zn) == 0) {
			continue
		}
		loss += softplusSum(zp, wp[:len(zp)])/h.alpha + softplusSum(zn, wn[:len(zn)])/h.beta
		// d/dS of (1/α)·softplus(−α(S − λ)) is −weight; of (1/β)·softplus(β(S − λ)), +weight.
		for k, j := range ip {
			grad[i*n+j] -= inv * wp[k]
		}
		for k, j := range in {
			grad[i*n+j] += inv * wn[k]
		}
	}
	return loss * inv, nearestCorrect(s, n, y), nil
}
