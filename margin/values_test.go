package margin

import (
	"math"
	"strings"
	"testing"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

func near(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol*(1+math.Abs(want)) || math.IsNaN(got) {
		t.Errorf("%s = %.12g, want %.12g", what, got, want)
	}
}

// ce2 is the cross-entropy of two logits with the first one the target.
func ce2(target, other float64) float64 { return math.Log(math.Exp(target)+math.Exp(other)) - target }

// unit returns the 2-d unit vector at angle a.
func unit(a float64) []float64 { return []float64{math.Cos(a), math.Sin(a)} }

// TestHandValues compares each head's loss on one sample and two classes with
// the formula worked by hand: x along the first axis (scaled by 2, which only
// SphereFace and the unnormalised heads see), W_0 at angle θ from x and W_1
// orthogonal to x (cos θ_1 = 0).
func TestHandValues(t *testing.T) {
	mustH := mustLoss(t)
	x := [][]float64{{2, 0}}
	tests := []struct {
		name  string
		head  Loss
		theta float64
		w0    float64 // |W_0|, seen by softmax and center loss only
		want  float64
	}{
		{"softmax", NewSoftmax(), math.Pi / 3, 3, ce2(2*3*0.5, 0)},
		{"arcface", mustH(NewArcFace(4, 0.5, false)), math.Pi / 3, 1, ce2(4*math.Cos(math.Pi/3+0.5), 0)},
		{"arcface-easy", mustH(NewArcFace(4, 0.5, true)), math.Pi / 3, 1, ce2(4*math.Cos(math.Pi/3+0.5), 0)},
		// θ + m > π: insightface's fallback cos θ − m·sin(π − m).
		{"arcface-fallback", mustH(NewArcFace(4, 0.5, false)), 2.9, 1, ce2(4*(math.Cos(2.9)-0.5*math.Sin(math.Pi-0.5)), 0)},
		// θ + m ≤ π but cos θ < 0: the margin still applies...
		{"arcface-obtuse", mustH(NewArcFace(4, 0.5, false)), 2.5, 1, ce2(4*math.Cos(3.0), 0)},
		// ...unless easy_margin, which leaves cos θ alone where it is ≤ 0.
		{"arcface-easy-obtuse", mustH(NewArcFace(4, 0.5, true)), 2.5, 1, ce2(4*math.Cos(2.5), 0)},
		{"cosface", mustH(NewCosFace(4, 0.35)), math.Pi / 3, 1, ce2(4*(0.5-0.35), 0)},
		{"combined", mustH(NewCombined(4, 1.2, 0.3, 0.2)), math.Pi / 3, 1, ce2(4*(math.Cos(1.2*math.Pi/3+0.3)-0.2), 0)},
		// SphereFace m=4, λ=3 at θ = 1 (k = 1): ψ = −cos 4 − 2; f_y = ‖x‖(λc + ψ)/(1+λ).
		{"sphereface4", mustH(NewSphereFace(4, 3)), 1, 5, ce2(2*(3*math.Cos(1)+(-math.Cos(4)-2))/4, 0)},
		// m=2 at θ = 0.5 (k = 0): ψ = cos 1.
		{"sphereface2", mustH(NewSphereFace(2, 0)), 0.5, 5, ce2(2*math.Cos(1), 0)},
		// Center loss: CE on W·x plus λ/2·‖x − c_y‖² with c_0 = (2, 1).
		{"center", mustH(NewCenterLoss(0.2, [][]float64{{2, 1}, {0, 0}})), 0, 1, ce2(2, 0) + 0.1*1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w0 := unit(tc.theta)
			w0[0] *= tc.w0
			w0[1] *= tc.w0
			w := [][]float64{w0, {0, 1}}
			loss, _, _, err := Evaluate(tc.head, x, w, []int{0})
			if err != nil {
				t.Fatal(err)
			}
			near(t, "loss", loss, tc.want, 1e-12)
		})
	}
}

// TestCombinedMatchesArcFaceAndCosFace checks the combined margin's special
// cases against the dedicated heads away from ArcFace's fallback region.
func TestCombinedMatchesArcFaceAndCosFace(t *testing.T) {
	x := [][]float64{{1, 0.2, -0.3}, {0.1, 1, 0.4}, {-0.5, 0.3, 1}}
	w := [][]float64{{1, 0.1, 0}, {0.2, 0.9, 0.1}, {0, 0.3, 1.1}}
	labels := []int{0, 1, 2}
	arc, _ := NewArcFace(16, 0.5, false)
	cmbArc, _ := NewCombined(16, 1, 0.5, 0)
	cos, _ := NewCosFace(16, 0.35)
	cmbCos, _ := NewCombined(16, 1, 0, 0.35)
	for _, p := range [][2]Loss{{arc, cmbArc}, {cos, cmbCos}} {
		l1, gx1, gw1, err := Evaluate(p[0], x, w, labels)
		if err != nil {
			t.Fatal(err)
		}
		l2, gx2, gw2, err := Evaluate(p[1], x, w, labels)
		if err != nil {
			t.Fatal(err)
		}
		near(t, p[0].Name()+" loss", l2, l1, 1e-9)
		for i := range gx1 {
			for j := range gx1[i] {
				near(t, "gx", gx2[i][j], gx1[i][j], 1e-6)
				near(t, "gw", gw2[i][j], gw1[i][j], 1e-6)
			}
		}
	}
}

// TestArcFaceFallbackRegion checks the target cosine around θ + m = π: the
// fallback keeps it decreasing in θ (monotone), where cos(θ+m) would turn back
// up, and both branches meet at the threshold.
func TestArcFaceFallbackRegion(t *testing.T) {
	m := 0.5
	th := math.Cos(math.Pi - m)
	prev := math.Inf(1)
	for theta := 0.0; theta <= math.Pi; theta += 0.001 {
		phi, dphi := ArcFacePhi(math.Cos(theta), m, false)
		if phi > prev+1e-12 {
			t.Fatalf("target cosine rises at θ=%.3f: %v after %v", theta, phi, prev)
		}
		if math.IsNaN(dphi) || math.IsInf(dphi, 0) {
			t.Fatalf("derivative %v at θ=%.3f", dphi, theta)
		}
		prev = phi
	}
	above, _ := ArcFacePhi(th+1e-9, m, false)
	below, _ := ArcFacePhi(th-1e-9, m, false)
	near(t, "cos(θ+m) at the threshold", above, -1, 1e-6)
	near(t, "fallback at the threshold", below, th-m*math.Sin(math.Pi-m), 1e-8)
	// Deep in the region the fallback is exactly cos θ − m·sin(π − m).
	phi, dphi := ArcFacePhi(math.Cos(3.0), m, false)
	near(t, "fallback", phi, math.Cos(3.0)-m*math.Sin(m), 1e-15)
	near(t, "fallback slope", dphi, 1, 0)
	// Without the fallback (easy margin off, plain formula) it would rise.
	if math.Cos(3.0+m) < math.Cos(2.9+m) {
		t.Fatal("cos(θ+m) expected to rise past π")
	}
	// Gradients stay finite at θ = 0 and θ = π exactly.
	for _, c := range []float64{1, -1, 1 + 1e-9, -1 - 1e-9} {
		for _, easy := range []bool{false, true} {
			p, d := ArcFacePhi(c, m, easy)
			if math.IsNaN(p) || math.IsNaN(d) || math.IsInf(d, 0) {
				t.Errorf("ArcFacePhi(%v, easy=%v) = %v, %v", c, easy, p, d)
			}
		}
	}
}

// TestSpherePsiBoundaries checks ψ at and around θ = kπ/m: continuous, equal to
// 1 − 2k at the boundary, monotone decreasing over [0, π], and ψ(0) = 1,
// ψ(π) = −2m + 1.
func TestSpherePsiBoundaries(t *testing.T) {
	for m := 1; m <= 4; m++ {
		for k := 0; k <= m; k++ {
			theta := float64(k) * math.Pi / float64(m)
			want := 1 - 2*float64(k)
			if k == m {
				want = 1 - 2*float64(m)
			}
			for _, e := range []float64{-1e-7, 0, 1e-7} {
				if theta+e < 0 || theta+e > math.Pi {
					continue
				}
				psi, _ := SpherePsi(m, math.Cos(theta+e))
				near(t, "ψ at boundary", psi, want, 1e-6)
			}
		}
		prev := math.Inf(1)
		for theta := 0.0; theta <= math.Pi; theta += 1e-3 {
			psi, dpsi := SpherePsi(m, math.Cos(theta))
			if psi > prev+1e-12 {
				t.Fatalf("m=%d: ψ rises at θ=%.3f", m, theta)
			}
			// dψ/dθ = dψ/dc · (−sin θ) ≤ 0.
			if -dpsi*math.Sin(theta) > 1e-9 {
				t.Fatalf("m=%d: dψ/dθ > 0 at θ=%.3f", m, theta)
			}
			prev = psi
		}
	}
	// m=4 on each piece: k = 0..3.
	for k, theta := range []float64{0.3, 1.0, 2.0, 2.8} {
		psi, dpsi := SpherePsi(4, math.Cos(theta))
		sign := 1.0
		if k%2 == 1 {
			sign = -1
		}
		near(t, "ψ", psi, sign*math.Cos(4*theta)-2*float64(k), 1e-12)
		c := math.Cos(theta)
		near(t, "dψ/dc", dpsi, sign*(32*c*c*c-16*c), 1e-12)
	}
}

// TestSphereFaceGradientAtBoundaries runs the gradient check with the target
// angle just inside each piece of m = 4 (k constant on either side).
func TestSphereFaceGradientAtBoundaries(t *testing.T) {
	h, err := NewSphereFace(4, 0)
	if err != nil {
		t.Fatal(err)
	}
	for k := 1; k < 4; k++ {
		for _, e := range []float64{-1e-3, 1e-3} {
			theta := float64(k)*math.Pi/4 + e
			x := [][]float64{{1.5, 0}}
			w := [][]float64{unit(theta), {0, 1}}
			_, gx, _, err := Evaluate(h, x, w, []int{0})
			if err != nil {
				t.Fatal(err)
			}
			const step = 1e-7
			x[0][0] += step
			lp, _, _, _ := Evaluate(h, x, w, []int{0})
			x[0][0] -= 2 * step
			lm, _, _, _ := Evaluate(h, x, w, []int{0})
			near(t, "dL/dx", gx[0][0], (lp-lm)/(2*step), 1e-5)
		}
	}
}

func TestAnneal(t *testing.T) {
	a := DefaultAnneal()
	near(t, "λ(0)", a.Lambda(0), 1000, 0)
	near(t, "λ(100)", a.Lambda(100), 1000/13.0, 1e-12)
	near(t, "λ(10⁶)", a.Lambda(1000000), 5, 0)
}

// TestCenterUpdate checks one step of Wen et al.'s rule by hand: two samples
// of class 0 at (1, 0) and (3, 0), centre 0 at the origin, α = 0.5:
// Δc = ((0 − 1) + (0 − 3)) / (1 + 2) = −4/3, c ← 0 − 0.5·(−4/3) = 2/3.
// Class 1 is absent and stays put.
func TestCenterUpdate(t *testing.T) {
	centers := [][]float64{{0, 0}, {5, 5}}
	if err := UpdateCenters(centers, []float32{1, 0, 3, 0}, []int{0, 0}, 0.5); err != nil {
		t.Fatal(err)
	}
	near(t, "c0x", centers[0][0], 2.0/3, 1e-15)
	near(t, "c0y", centers[0][1], 0, 0)
	near(t, "c1", centers[1][0]+centers[1][1], 10, 0)
	// The head reads the moved centres on its next run.
	h, err := NewCenterLoss(2, centers)
	if err != nil {
		t.Fatal(err)
	}
	x, w := [][]float64{{1, 0}}, [][]float64{{0, 0}, {0, 0}}
	l1, _, _, _ := Evaluate(h, x, w, []int{0})
	if err := UpdateCenters(h.Centers(), []float64{1, 0}, []int{0}, 1); err != nil {
		t.Fatal(err)
	}
	l2, _, _, _ := Evaluate(h, x, w, []int{0})
	near(t, "before", l1, math.Log(2)+1*(1.0/3)*(1.0/3), 1e-12)
	// α = 1, one sample: c ← c − (c − x)/2, halfway to x.
	near(t, "after", l2, math.Log(2)+1*(1.0/6)*(1.0/6), 1e-12)
	for _, bad := range []func() error{
		func() error { return UpdateCenters(centers, []float64{1, 0}, []int{2}, 0.5) },
		func() error { return UpdateCenters(centers, []float64{1}, []int{0}, 0.5) },
		func() error { return UpdateCenters(centers, []float64{1, 0}, []int{0}, 1.5) },
		func() error { return UpdateCenters(centers, []float64{}, []int{}, 0.5) },
	} {
		if bad() == nil {
			t.Error("bad update accepted")
		}
	}
}

// TestArccosOp checks the custom op's values and gradient at and past ±1.
func TestArccosOp(t *testing.T) {
	in := []float64{1 + 1e-9, 1, 0.5, 0, -0.5, -1, -1 - 1e-9}
	g := gorgonia.NewGraph()
	x := gorgonia.NewVector(g, tensor.Float64, gorgonia.WithShape(len(in)), gorgonia.WithName("x"),
		gorgonia.WithValue(tensor.New(tensor.WithBacking(append([]float64(nil), in...)))))
	y, err := Arccos(x)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gorgonia.Sum(y)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gorgonia.Grad(s, x); err != nil {
		t.Fatal(err)
	}
	vm := gorgonia.NewTapeMachine(g, gorgonia.BindDualValues(x))
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	ys := y.Value().Data().([]float64)
	gv, _ := x.Grad()
	gs := gv.Data().([]float64)
	for i, v := range in {
		near(t, "acos", ys[i], math.Acos(max(-1, min(1, v))), 1e-15)
		if math.IsNaN(gs[i]) || math.IsInf(gs[i], 0) || gs[i] >= 0 || gs[i] < -1e6-1 {
			t.Errorf("d acos(%v) = %v", v, gs[i])
		}
	}
	near(t, "d acos(0.5)", gs[2], -1/math.Sqrt(0.75), 1e-12)
	// Combined margin with x exactly on W_y: loss and gradients finite.
	h, _ := NewCombined(64, 1, 0.5, 0)
	loss, gx, gw, err := Evaluate(h, [][]float64{{1, 0}}, [][]float64{{3, 0}, {0, 1}}, []int{0})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range append(append([]float64{loss}, gx[0]...), gw[0]...) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Fatalf("non-finite loss or gradient at θ = 0: %v %v %v", loss, gx, gw)
		}
	}
}

func TestBadArguments(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	x := [][]float64{{1, 0}, {0, 1}}
	w := [][]float64{{1, 0}, {0, 1}, {1, 1}}
	for name, head := range allLosses(t, 3, 2) {
		cases := []struct {
			name   string
			x, w   [][]float64
			labels []int
		}{
			{"label too big", x, w, []int{0, 3}},
			{"negative label", x, w, []int{-1, 0}},
			{"empty batch", nil, w, nil},
			{"empty rows", [][]float64{{}}, w, []int{0}},
			{"no classes", x, nil, []int{0, 1}},
			{"mismatched D", [][]float64{{1, 0, 0}, {0, 1, 0}}, w, []int{0, 1}},
			{"ragged x", [][]float64{{1, 0}, {0}}, w, []int{0, 1}},
			{"labels count", x, w, []int{0}},
			{"NaN in x", [][]float64{{nan, 0}, {0, 1}}, w, []int{0, 1}},
			{"Inf in x", [][]float64{{1, 0}, {0, inf}}, w, []int{0, 1}},
			{"Inf in w", x, [][]float64{{1, 0}, {0, -inf}, {1, 1}}, []int{0, 1}},
		}
		for _, c := range cases {
			if _, _, _, err := Evaluate(head, c.x, c.w, c.labels); err == nil {
				t.Errorf("%s: %s: no error", name, c.name)
			}
		}
		if _, _, _, err := Evaluate(head, x, w, []int{0, 2}); err != nil {
			t.Errorf("%s: good arguments: %v", name, err)
		}
	}
	// Centres that do not match the classes or the dimension.
	h, _ := NewCenterLoss(0.1, [][]float64{{0, 0}, {0, 0}})
	if _, _, _, err := Evaluate(h, x, w, []int{0, 1}); err == nil || !strings.Contains(err.Error(), "centres") {
		t.Errorf("centres for 2 classes on 3: %v", err)
	}
	if _, _, _, err := Evaluate(nil, x, w, []int{0, 1}); err == nil {
		t.Error("nil loss accepted")
	}
	ctors := map[string]func() error{
		"arcface s=0":      func() error { _, err := NewArcFace(0, 0.5, false); return err },
		"arcface m<0":      func() error { _, err := NewArcFace(64, -0.1, false); return err },
		"arcface m=π":      func() error { _, err := NewArcFace(64, math.Pi, false); return err },
		"arcface NaN":      func() error { _, err := NewArcFace(nan, 0.5, false); return err },
		"cosface m>1":      func() error { _, err := NewCosFace(64, 1.5); return err },
		"cosface s<0":      func() error { _, err := NewCosFace(-1, 0.35); return err },
		"sphereface m=0":   func() error { _, err := NewSphereFace(0, 5); return err },
		"sphereface m=5":   func() error { _, err := NewSphereFace(5, 5); return err },
		"sphereface λ<0":   func() error { _, err := NewSphereFace(4, -1); return err },
		"sphereface λ=Inf": func() error { _, err := NewSphereFace(4, inf); return err },
		"center λ<0":       func() error { _, err := NewCenterLoss(-1, [][]float64{{0}}); return err },
		"center none":      func() error { _, err := NewCenterLoss(0.1, nil); return err },
		"center ragged":    func() error { _, err := NewCenterLoss(0.1, [][]float64{{0, 1}, {0}}); return err },
		"center NaN":       func() error { _, err := NewCenterLoss(0.1, [][]float64{{nan}}); return err },
		"combined m1=0":    func() error { _, err := NewCombined(64, 0, 0.5, 0); return err },
		"combined m2<0":    func() error { _, err := NewCombined(64, 1, -0.5, 0); return err },
		"combined m3 Inf":  func() error { _, err := NewCombined(64, 1, 0.5, inf); return err },
	}
	for name, f := range ctors {
		if f() == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

// TestCenterUpdateLastBatch checks that the head's own update uses the batch
// of its last run.
func TestCenterUpdateLastBatch(t *testing.T) {
	h, err := NewCenterLoss(1, [][]float64{{0, 0}, {5, 5}})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.UpdateLastBatch(0.5); err == nil {
		t.Error("update before any run accepted")
	}
	x, w := [][]float64{{1, 0}, {3, 0}}, [][]float64{{0, 0}, {0, 0}}
	if _, _, _, err := Evaluate(h, x, w, []int{0, 0}); err != nil {
		t.Fatal(err)
	}
	if err := h.UpdateLastBatch(0.5); err != nil {
		t.Fatal(err)
	}
	c := h.Centers()
	near(t, "c0x", c[0][0], 2.0/3, 1e-15)
	near(t, "c1x", c[1][0], 5, 0)
}
