package margin

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// TestRegistryDefaults pins every loss's defaults to the values the papers
// (and, where the papers' do not suit faces, the README) give, and checks
// that a loss built with them reports them in Params under the same keys.
func TestRegistryDefaults(t *testing.T) {
	want := map[string]Params{
		"softmax":         {},
		"center":          {"lambda": 0.003, "alpha": 0.5},
		"sphereface":      {"m": 4, "anneal_base": 1000, "anneal_gamma": 0.12, "anneal_power": 1, "anneal_min": 5},
		"cosface":         {"s": 64, "m": 0.35},
		"arcface":         {"s": 64, "m": 0.5, "easy_margin": 0},
		"combined":        {"s": 64, "m1": 1, "m2": 0.3, "m3": 0.2},
		"contrastive":     {"pos_margin": 1, "neg_margin": 0.5},
		"triplet":         {"margin": 0.1, "mining": float64(MineSemiHard)},
		"npair":           {"variant": float64(NPairMC)},
		"lifted":          {"margin": 1},
		"multisimilarity": {"alpha": 2, "beta": 50, "margin": 0.5, "mining": 0},
		"proxynca":        {"scale": 9},
		"proxyanchor":     {"alpha": 32, "margin": 0.1},
		"softtriple":      {"k": 2, "gamma": 0.1, "lambda": 20, "delta": 0.01, "tau": 0.2},
	}
	names := Names()
	if want := []string{"softmax", "center", "sphereface", "cosface", "arcface", "combined",
		"contrastive", "triplet", "npair", "lifted", "multisimilarity", "proxynca", "proxyanchor", "softtriple"}; !slices.Equal(names, want) {
		t.Fatalf("Names() = %v, want %v", names, want)
	}
	for _, s := range Specs() {
		w, ok := want[s.Name]
		if !ok {
			t.Errorf("%s: not pinned here", s.Name)
			continue
		}
		def := s.Defaults()
		if len(def) != len(w) {
			t.Errorf("%s: defaults %v, want %v", s.Name, def, w)
		}
		for k, v := range w {
			if def[k] != v {
				t.Errorf("%s: default %s = %v, want %v", s.Name, k, def[k], v)
			}
		}
		l, err := New(s.Name, nil)
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		if l.Name() != s.Name {
			t.Errorf("New(%q) is %q", s.Name, l.Name())
		}
		got := l.Params()
		for k, v := range w {
			if g, ok := got[k]; !ok || g != v {
				t.Errorf("%s: Params()[%s] = %v (%v), want %v", s.Name, k, g, ok, v)
			}
		}
		// The family says whether the loss reads class weights.
		if rows := WeightRows(l, 3); (s.Kind == Pair) != (rows == 0) || (s.Kind == Pair) != (s.WeightNorm == 0) {
			t.Errorf("%s: kind %v, %d weight rows for 3 classes, weight norm %v", s.Name, s.Kind, rows, s.WeightNorm)
		}
	}
	if !slices.Equal(NamesOf(Pair), []string{"contrastive", "triplet", "npair", "lifted", "multisimilarity"}) ||
		!slices.Equal(NamesOf(Proxy), []string{"proxynca", "proxyanchor", "softtriple"}) {
		t.Errorf("families: pair %v, proxy %v", NamesOf(Pair), NamesOf(Proxy))
	}
}

// TestRegistryBuildsWhatTheConstructorsBuild checks that New with given
// values computes the same loss and gradients as the constructor called
// directly, and that the values reach Params.
func TestRegistryBuildsWhatTheConstructorsBuild(t *testing.T) {
	must := mustLoss(t)
	r := rand.New(rand.NewPCG(3, 4))
	x, w := randMat(r, 8, 5, 1), randMat(r, 4, 5, 1)
	w2 := append(clone(w), randMat(r, 4, 5, 1)...) // 2 centres per class for SoftTriple
	labels := []int{0, 0, 1, 1, 2, 2, 3, 3}
	cases := []struct {
		name   string
		params Params
		direct Loss
		w      [][]float64
	}{
		{"arcface", Params{"s": 16, "m": 0.3, "easy_margin": 1}, must(NewArcFace(16, 0.3, true)), w},
		{"cosface", Params{"m": 0.2}, must(NewCosFace(64, 0.2)), w},
		{"combined", Params{"m1": 1.1, "m3": 0}, must(NewCombined(64, 1.1, 0.3, 0)), w},
		{"triplet", Params{"mining": float64(MineHard), "margin": 0.2}, must(NewTriplet(0.2, MineHard)), nil},
		{"npair", Params{"variant": float64(NPairOVO)}, must(NewNPair(NPairOVO)), nil},
		{"multisimilarity", Params{"mining": 0.1}, must(must(NewMultiSimilarity(2, 50, 0.5)).(*MultiSimilarity).WithMining(0.1)), nil},
		{"proxyanchor", Params{"alpha": 16}, must(NewProxyAnchor(16, 0.1)), w},
		{"softtriple", nil, must(NewSoftTriple(2, 0.1, 20, 0.01, 0.2)), w2},
	}
	for _, c := range cases {
		l, err := New(c.name, c.params)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for k, v := range c.params {
			if l.Params()[k] != v {
				t.Errorf("%s: Params()[%s] = %v, want %v", c.name, k, l.Params()[k], v)
			}
		}
		a, gxa, gwa, err := Evaluate(l, x, c.w, labels)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		b, gxb, gwb, err := Evaluate(c.direct, x, c.w, labels)
		if err != nil {
			t.Fatalf("%s direct: %v", c.name, err)
		}
		if a != b || !equalMat(gxa, gxb) || !equalMat(gwa, gwb) {
			t.Errorf("%s: New gives loss %v, the constructor %v (or other gradients)", c.name, a, b)
		}
	}
}

func equalMat(a, b [][]float64) bool {
	return slices.EqualFunc(a, b, func(x, y []float64) bool { return slices.Equal(x, y) })
}

// TestRegistryRefusals checks that New names what it accepts: unknown
// losses and keys, choices, switches and integers out of their sets, values
// the constructors refuse, NaN.
func TestRegistryRefusals(t *testing.T) {
	cases := []struct {
		name   string
		params Params
		want   string
	}{
		{"circle", nil, "want one of softmax, center,"},
		{"arcface", Params{"margin": 0.5}, "arcface has no hyper-parameter \"margin\" (it has s, m, easy_margin)"},
		{"softmax", Params{"s": 1}, "(it has none)"},
		{"triplet", Params{"mining": 3}, "want 0, 1 or 2 (all, hard or semi-hard)"},
		{"npair", Params{"variant": 0.5}, "want 0 or 1 (mc or ovo)"},
		{"arcface", Params{"easy_margin": 2}, "want 0 or 1"},
		{"sphereface", Params{"m": 2.5}, "not an integer"},
		{"sphereface", Params{"m": 5}, "m in {1, 2, 3, 4}"},
		{"sphereface", Params{"anneal_gamma": -1}, "bad annealing"},
		{"center", Params{"alpha": 2}, "centre rate α in [0, 1]"},
		{"softtriple", Params{"k": 0}, "1 ≤ K ≤ 1000"},
		{"cosface", Params{"m": math.NaN()}, "not finite"},
		{"arcface", Params{"m": 4}, "0 ≤ m < π"},
		{"multisimilarity", Params{"mining": 3}, "ε in [0, 2]"},
	}
	for _, c := range cases {
		_, err := New(c.name, c.params)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%q, %v): error %v, want one containing %q", c.name, c.params, err, c.want)
		}
	}
	spec, _ := Lookup("triplet")
	p, _ := spec.Param("mining")
	for s, want := range map[string]float64{"all": 0, "hard": 1, "semi-hard": 2, "semihard": 2} {
		if v, err := p.Parse(s); err != nil || v != want {
			t.Errorf("Parse(%q) = %v, %v; want %v", s, v, err, want)
		}
	}
	if _, err := p.Parse("easy"); err == nil || !strings.Contains(err.Error(), "want all, hard or semi-hard") {
		t.Errorf("Parse(easy): %v", err)
	}
	spec, _ = Lookup("npair")
	if p, _ = spec.Param("variant"); p.DefaultString() != "mc" {
		t.Errorf("npair variant default %q", p.DefaultString())
	}
	if _, err := p.Parse("ovr"); err == nil || !strings.Contains(err.Error(), "mc or ovo") {
		t.Errorf("Parse(ovr): %v", err)
	}
	spec, _ = Lookup("cosface")
	if p, _ = spec.Param("m"); p.DefaultString() != "0.35" {
		t.Errorf("cosface m default %q", p.DefaultString())
	}
	if v, err := p.Parse("0.4"); err != nil || v != 0.4 {
		t.Errorf("Parse(0.4) = %v, %v", v, err)
	}
	if _, err := p.Parse("lots"); err == nil {
		t.Error("Parse(lots) accepted")
	}
}

// TestRegistrySteps checks the training hooks of the losses New builds:
// SphereFace's λ follows its schedule (λ = max(min, base·(1 + γ·iter)^−power)),
// Center loss starts from the class means it is given and moves them after
// each step by Wen et al.'s rule, exactly as UpdateCenters does.
func TestRegistrySteps(t *testing.T) {
	l, err := New("sphereface", Params{"anneal_base": 100, "anneal_gamma": 1, "anneal_min": 10})
	if err != nil {
		t.Fatal(err)
	}
	sf := l.(*SphereFace)
	for iter, want := range map[int]float64{0: 100, 1: 50, 3: 25, 100: 10} {
		if err := l.(Stepper).BeforeStep(iter); err != nil || sf.Lambda() != want {
			t.Errorf("λ at step %d = %v (%v), want %v", iter, sf.Lambda(), err, want)
		}
	}
	// A SphereFace built directly keeps its λ.
	fixed := mustLoss(t)(NewSphereFace(4, 3)).(*SphereFace)
	if err := fixed.BeforeStep(7); err != nil || fixed.Lambda() != 3 {
		t.Errorf("fixed λ became %v (%v)", fixed.Lambda(), err)
	}

	l, err = New("center", Params{"lambda": 0.5, "alpha": 0.25})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	x, w := randMat(r, 4, 3, 1), randMat(r, 2, 3, 1)
	labels := []int{0, 1, 1, 0}
	if _, _, _, err := Evaluate(l, x, w, labels); err == nil || !strings.Contains(err.Error(), "InitClasses") {
		t.Errorf("center loss without centres: %v", err)
	}
	means := randMat(r, 2, 3, 1)
	if err := l.(ClassInitializer).InitClasses(means); err != nil {
		t.Fatal(err)
	}
	want := clone(means)
	if _, _, _, err := Evaluate(l, x, w, labels); err != nil {
		t.Fatal(err)
	}
	if err := l.(Stepper).AfterStep(); err != nil {
		t.Fatal(err)
	}
	var flat []float64
	for _, row := range x {
		flat = append(flat, row...)
	}
	if err := UpdateCenters(want, flat, labels, 0.25); err != nil {
		t.Fatal(err)
	}
	if !equalMat(means, want) {
		t.Errorf("centres after a step %v, want %v", means, want)
	}
	if err := l.(ClassInitializer).InitClasses([][]float64{{1, 2}, {3}}); err == nil {
		t.Error("ragged centres accepted")
	}
}
