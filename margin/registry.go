package margin

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
)

// Params are a loss's hyper-parameters by key (Param.Key: "s", "m",
// "mining", ...). A key left out takes the loss's default; a key the loss
// does not have is an error. Integers, switches (0 or 1) and choices (the
// index into Param.Choices, e.g. float64(MineHard)) are given as float64
// too, as Loss.Params reports them.
type Params map[string]float64

// Kind is the family a loss belongs to, which decides how it is trained.
type Kind int

// Loss families.
const (
	// Classification losses score each sample against one weight row per
	// class (softmax and the margin losses).
	Classification Kind = iota
	// Pair losses compare the batch's samples with one another and read no
	// class weights; they need batches of P identities × K photos.
	Pair
	// Proxy losses compare each sample with learned proxies, one or K per
	// class.
	Proxy
)

// String returns "classification", "pair" or "proxy".
func (k Kind) String() string {
	switch k {
	case Classification:
		return "classification"
	case Pair:
		return "pair"
	case Proxy:
		return "proxy"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Param describes one hyper-parameter of a loss.
type Param struct {
	// Key names it in Params and in Loss.Params.
	Key string
	// Flag is its command-line name, shared by the losses that use it for
	// the same role ("margin" is ArcFace's m and the triplet loss's
	// margin); empty for one that has no flag.
	Flag string
	// Default is its value when Params leaves it out.
	Default float64
	// Int marks an integer; Bool a switch (0 or 1).
	Int, Bool bool
	// Choices name the values 0, 1, … of a choice ("all", "hard",
	// "semi-hard"); Parse reads them.
	Choices []string
	// Usage says what it is, for help texts.
	Usage string

	parse func(string) (float64, error) // reads a choice by name
}

// Parse reads a choice by name ("hard", "ovo"); for other parameters it
// reads a number.
func (p Param) Parse(s string) (float64, error) {
	if p.parse != nil {
		return p.parse(s)
	}
	var v float64
	if _, err := fmt.Sscan(s, &v); err != nil {
		return 0, fmt.Errorf("margin: %s %q is not a number", p.Key, s)
	}
	return v, nil
}

// DefaultString returns the default as a command line would spell it: the
// choice's name, "true"/"false" for a switch, else the number.
func (p Param) DefaultString() string {
	switch {
	case len(p.Choices) > 0:
		return p.Choices[int(p.Default)]
	case p.Bool:
		return fmt.Sprint(p.Default != 0)
	}
	return fmt.Sprint(p.Default)
}

// Spec is one loss of the registry: its name, family, hyper-parameters and
// how to build it.
type Spec struct {
	// Name is the loss's short name, as Loss.Name returns it.
	Name string
	// Kind is its family.
	Kind Kind
	// Params are its hyper-parameters, with their defaults (the papers'
	// where there is one).
	Params []Param
	// WeightNorm is the norm a trainer gives the initial class-weight rows
	// (class means, normalised): 1 for the losses on normalised weights, 10
	// for those on raw logits W·x (softmax, Center loss), so that their
	// initial logits span about ±10. 0 for the pair losses, which have none.
	WeightNorm float64
	// Paper cites where the loss comes from.
	Paper string

	build func(p Params) (Loss, error)
}

// Param returns the hyper-parameter with the given key.
func (s Spec) Param(key string) (Param, bool) {
	for _, p := range s.Params {
		if p.Key == key {
			return p, true
		}
	}
	return Param{}, false
}

// Defaults returns every hyper-parameter at its default.
func (s Spec) Defaults() Params {
	out := make(Params, len(s.Params))
	for _, p := range s.Params {
		out[p.Key] = p.Default
	}
	return out
}

// resolve fills the defaults into a copy of p and checks its keys and the
// integers, switches and choices; ranges are the constructors' to check.
func (s Spec) resolve(p Params) (Params, error) {
	out := s.Defaults()
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := p[k]
		d, ok := s.Param(k)
		if !ok {
			known := make([]string, len(s.Params))
			for i, q := range s.Params {
				known[i] = q.Key
			}
			if len(known) == 0 {
				return nil, fmt.Errorf("margin: %s has no hyper-parameter %q (it has none)", s.Name, k)
			}
			return nil, fmt.Errorf("margin: %s has no hyper-parameter %q (it has %s)", s.Name, k, strings.Join(known, ", "))
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("margin: %s: %s = %v is not finite", s.Name, k, v)
		}
		switch {
		case len(d.Choices) > 0:
			if v != math.Trunc(v) || v < 0 || int(v) >= len(d.Choices) {
				return nil, fmt.Errorf("margin: %s: %s %v: want %s (%s)", s.Name, k, v, indexList(len(d.Choices)), orList(d.Choices))
			}
		case d.Bool:
			if v != 0 && v != 1 {
				return nil, fmt.Errorf("margin: %s: %s %v: want 0 or 1", s.Name, k, v)
			}
		case d.Int:
			if v != math.Trunc(v) || math.Abs(v) > 1<<30 {
				return nil, fmt.Errorf("margin: %s: %s %v is not an integer", s.Name, k, v)
			}
		}
		out[k] = v
	}
	return out, nil
}

// New builds the loss name with hyper-parameters p (nil: every default).
// Unknown names and keys, values out of range and non-integers where an
// integer is due are errors that say what is accepted.
//
// Losses built here are ready to train: SphereFace anneals λ with its
// schedule and Center loss moves its centres, both through Stepper; Center
// loss takes its initial centres through ClassInitializer.
func New(name string, p Params) (Loss, error) {
	s, ok := Lookup(name)
	if !ok {
		return nil, fmt.Errorf("margin: unknown loss %q (want one of %s)", name, strings.Join(Names(), ", "))
	}
	full, err := s.resolve(p)
	if err != nil {
		return nil, err
	}
	return s.build(full)
}

// Lookup returns the registry's entry for a loss name.
func Lookup(name string) (Spec, bool) {
	i := slices.IndexFunc(registry, func(s Spec) bool { return s.Name == name })
	if i < 0 {
		return Spec{}, false
	}
	return registry[i], true
}

// Specs returns every loss of the registry: the classification losses in
// the order the papers came out (softmax first as the baseline), then the
// pair losses, then the proxy losses.
func Specs() []Spec { return slices.Clone(registry) }

// Names returns the losses' names, in the order of Specs.
func Names() []string {
	out := make([]string, len(registry))
	for i, s := range registry {
		out[i] = s.Name
	}
	return out
}

// NamesOf returns the names of the losses of one family, in the order of
// Specs.
func NamesOf(k Kind) []string {
	var out []string
	for _, s := range registry {
		if s.Kind == k {
			out = append(out, s.Name)
		}
	}
	return out
}

// ClassInitializer is implemented by losses that start from the mean
// embedding of each class: Center loss takes them as its centres. A trainer
// calls it once, before building the graph.
type ClassInitializer interface {
	InitClasses(means [][]float64) error
}

// Stepper is implemented by losses that change between training steps:
// SphereFace sets λ from its annealing schedule before each step, Center
// loss moves its centres after each (Wen et al.'s α rule). A trainer calls
// BeforeStep(iter) before running step iter (0-based) and AfterStep after
// the optimiser's update.
type Stepper interface {
	BeforeStep(iter int) error
	AfterStep() error
}

func orList(s []string) string {
	if len(s) == 1 {
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

func indexList(n int) string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprint(i)
	}
	return orList(s)
}

// choice returns a choice parameter whose names parse reads.
func choice(key, flag string, def int, choices []string, usage string, parse func(string) (float64, error)) Param {
	return Param{Key: key, Flag: flag, Default: float64(def), Choices: choices, Usage: usage, parse: parse}
}

// Defaults of the training-ready losses that are not the papers' own.
const (
	// DefaultTrainSoftTripleK is SoftTriple's centres per class when
	// training face heads: a face identity is one mode; the paper's 10
	// (DefaultSoftTripleK) suits fine-grained categories.
	DefaultTrainSoftTripleK = 2
	// DefaultCombinedM1, M2, M3 are the combined margin's (1, 0.3, 0.2),
	// the "CM1" row of the ArcFace paper's Table 1.
	DefaultCombinedM1, DefaultCombinedM2, DefaultCombinedM3 = 1.0, 0.3, 0.2
)

var registry = []Spec{
	{Name: "softmax", Kind: Classification, WeightNorm: 10, Paper: "plain softmax cross-entropy on W·x, the margin papers' baseline",
		build: func(Params) (Loss, error) { return NewSoftmax(), nil }},
	{Name: "center", Kind: Classification, WeightNorm: 10, Paper: "Wen et al., ECCV 2016",
		Params: []Param{
			{Key: "lambda", Flag: "center-lambda", Default: DefaultCenterLambda, Usage: "Center loss weight λ"},
			{Key: "alpha", Flag: "center-alpha", Default: DefaultCenterAlpha, Usage: "Center loss centre learning rate α, in [0, 1]"},
		},
		build: func(p Params) (Loss, error) { return newTrainCenter(p["lambda"], p["alpha"]) }},
	{Name: "sphereface", Kind: Classification, WeightNorm: 1, Paper: "Liu et al., CVPR 2017",
		Params: []Param{
			{Key: "m", Flag: "sphere-m", Default: DefaultSphereFaceM, Int: true, Usage: "SphereFace's m (1–4)"},
			{Key: "anneal_base", Default: DefaultAnneal().Base, Usage: "SphereFace's λ at step 0"},
			{Key: "anneal_gamma", Default: DefaultAnneal().Gamma, Usage: "SphereFace's λ decay rate γ"},
			{Key: "anneal_power", Default: DefaultAnneal().Power, Usage: "SphereFace's λ decay exponent"},
			{Key: "anneal_min", Default: DefaultAnneal().Min, Usage: "SphereFace's floor λ_min"},
		},
		build: func(p Params) (Loss, error) {
			return newAnnealedSphereFace(int(p["m"]), Anneal{Base: p["anneal_base"], Gamma: p["anneal_gamma"], Power: p["anneal_power"], Min: p["anneal_min"]})
		}},
	{Name: "cosface", Kind: Classification, WeightNorm: 1, Paper: "Wang et al., CVPR 2018",
		Params: []Param{
			{Key: "s", Flag: "scale", Default: DefaultScale, Usage: "scale s"},
			{Key: "m", Flag: "margin", Default: DefaultCosFaceMargin, Usage: "cosine margin m"},
		},
		build: func(p Params) (Loss, error) { return NewCosFace(p["s"], p["m"]) }},
	{Name: "arcface", Kind: Classification, WeightNorm: 1, Paper: "Deng et al., CVPR 2019",
		Params: []Param{
			{Key: "s", Flag: "scale", Default: DefaultScale, Usage: "scale s"},
			{Key: "m", Flag: "margin", Default: DefaultArcFaceMargin, Usage: "additive angular margin m"},
			{Key: "easy_margin", Flag: "easy-margin", Bool: true, Usage: "ArcFace's easy_margin variant"},
		},
		build: func(p Params) (Loss, error) { return NewArcFace(p["s"], p["m"], p["easy_margin"] == 1) }},
	{Name: "combined", Kind: Classification, WeightNorm: 1, Paper: "Deng et al., CVPR 2019, eq. 4",
		Params: []Param{
			{Key: "s", Flag: "scale", Default: DefaultScale, Usage: "scale s"},
			{Key: "m1", Flag: "m1", Default: DefaultCombinedM1, Usage: "combined margin m1 (cos(m1·θ + m2) − m3)"},
			{Key: "m2", Flag: "m2", Default: DefaultCombinedM2, Usage: "combined margin m2"},
			{Key: "m3", Flag: "m3", Default: DefaultCombinedM3, Usage: "combined margin m3"},
		},
		build: func(p Params) (Loss, error) { return NewCombined(p["s"], p["m1"], p["m2"], p["m3"]) }},

	{Name: "contrastive", Kind: Pair, Paper: "Hadsell et al., CVPR 2006",
		Params: []Param{
			{Key: "pos_margin", Flag: "pos-margin", Default: DefaultContrastivePosMargin, Usage: "contrastive: positives more similar than this cosine cost nothing"},
			{Key: "neg_margin", Flag: "neg-margin", Default: DefaultContrastiveNegMargin, Usage: "contrastive: negatives less similar than this cosine cost nothing"},
		},
		build: func(p Params) (Loss, error) { return NewContrastive(p["pos_margin"], p["neg_margin"]) }},
	{Name: "triplet", Kind: Pair, Paper: "Hoffer and Ailon 2015; Schroff et al., CVPR 2015; Hermans et al. 2017",
		Params: []Param{
			{Key: "margin", Flag: "margin", Default: DefaultTripletMargin, Usage: "margin m on cosines"},
			choice("mining", "mining", int(MineSemiHard), []string{"all", "hard", "semi-hard"},
				"triplet mining: all, hard (batch hard) or semi-hard (FaceNet)",
				func(s string) (float64, error) { m, err := ParseMining(s); return float64(m), err }),
		},
		build: func(p Params) (Loss, error) { return NewTriplet(p["margin"], Mining(p["mining"])) }},
	{Name: "npair", Kind: Pair, Paper: "Sohn, NeurIPS 2016",
		Params: []Param{
			choice("variant", "npair", int(NPairMC), []string{"mc", "ovo"},
				"N-pair variant: mc (multi-class) or ovo (one-vs-one)",
				func(s string) (float64, error) { v, err := ParseNPairVariant(s); return float64(v), err }),
		},
		build: func(p Params) (Loss, error) { return NewNPair(NPairVariant(p["variant"])) }},
	{Name: "lifted", Kind: Pair, Paper: "Song et al., CVPR 2016",
		Params: []Param{
			{Key: "margin", Flag: "margin", Default: DefaultLiftedMargin, Usage: "margin α"},
		},
		build: func(p Params) (Loss, error) { return NewLiftedStructure(p["margin"]) }},
	{Name: "multisimilarity", Kind: Pair, Paper: "Wang et al., CVPR 2019",
		Params: []Param{
			{Key: "alpha", Flag: "alpha", Default: DefaultMSAlpha, Usage: "α, the positives' scale"},
			{Key: "beta", Flag: "beta", Default: DefaultMSBeta, Usage: "β of multisimilarity, the negatives' scale"},
			{Key: "margin", Flag: "margin", Default: DefaultMSMargin, Usage: "λ, the similarity margin"},
			{Key: "mining", Flag: "ms-mining", Usage: "multisimilarity: mine informative pairs with margin ε (the paper's 0.1); 0 uses every pair"},
		},
		build: func(p Params) (Loss, error) {
			h, err := NewMultiSimilarity(p["alpha"], p["beta"], p["margin"])
			if err != nil || p["mining"] == 0 {
				return h, err
			}
			return h.WithMining(p["mining"])
		}},

	{Name: "proxynca", Kind: Proxy, WeightNorm: 1, Paper: "Movshovitz-Attias et al., ICCV 2017",
		Params: []Param{
			{Key: "scale", Flag: "scale", Default: DefaultProxyNCAScale, Usage: "squared norm of the scaled features and proxies"},
		},
		build: func(p Params) (Loss, error) { return NewProxyNCA(p["scale"]) }},
	{Name: "proxyanchor", Kind: Proxy, WeightNorm: 1, Paper: "Kim et al., CVPR 2020",
		Params: []Param{
			{Key: "alpha", Flag: "alpha", Default: DefaultProxyAnchorAlpha, Usage: "scale α"},
			{Key: "margin", Flag: "margin", Default: DefaultProxyAnchorMargin, Usage: "margin δ"},
		},
		build: func(p Params) (Loss, error) { return NewProxyAnchor(p["alpha"], p["margin"]) }},
	{Name: "softtriple", Kind: Proxy, WeightNorm: 1, Paper: "Qian et al., ICCV 2019",
		Params: []Param{
			{Key: "k", Flag: "softtriple-k", Default: DefaultTrainSoftTripleK, Int: true, Usage: "SoftTriple centres per class"},
			{Key: "gamma", Flag: "softtriple-gamma", Default: DefaultSoftTripleGamma, Usage: "SoftTriple entropy temperature γ"},
			{Key: "lambda", Flag: "softtriple-lambda", Default: DefaultSoftTripleLambda, Usage: "SoftTriple scale λ"},
			{Key: "delta", Flag: "softtriple-delta", Default: DefaultSoftTripleDelta, Usage: "SoftTriple margin δ"},
			{Key: "tau", Flag: "softtriple-tau", Default: DefaultSoftTripleTau, Usage: "SoftTriple centre regulariser weight τ"},
		},
		build: func(p Params) (Loss, error) {
			return NewSoftTriple(int(p["k"]), p["gamma"], p["lambda"], p["delta"], p["tau"])
		}},
}
