package train

import (
	"bytes"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/facever/facever/facehead"
	"github.com/facever/facever/margin"
)

const testSHA = "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581"

func TestTrainDeterministic(t *testing.T) {
	feats, y := synth(3, 10, 12, 24, 8, 0.2, 0.3)
	run := func(seed int64) []byte {
		h, _, err := Train(feats, y, Config{Loss: "arcface", Epochs: 3, BatchSize: 16, Seed: seed, BatchNorm: true, BackboneSHA256: testSHA})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "h.fvh")
		if err := h.Save(path); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	a, b, c := run(5), run(5), run(6)
	if !bytes.Equal(a, b) {
		t.Error("same seed, different heads")
	}
	if bytes.Equal(a, c) {
		t.Error("different seeds, same head")
	}
}

func TestTrainPCAOutDimAndProgress(t *testing.T) {
	feats, y := synth(4, 30, 10, 32, 8, 0.15, 0.35)
	var calls, epochsDone int
	var last Progress
	h, rep, err := Train(feats, y, Config{Loss: "cosface", OutDim: 8, Epochs: 6, BatchSize: 32, LR: 1e-2,
		Progress: func(p Progress) {
			calls++
			if p.EpochDone {
				epochsDone++
			}
			last = p
		}})
	if err != nil {
		t.Fatal(err)
	}
	if h.OutDim() != 8 || h.InDim() != 32 || rep.OutDim != 8 {
		t.Fatalf("dims %d→%d", h.InDim(), h.OutDim())
	}
	if steps := 300 / 32; calls != 6*steps || epochsDone != 6 || !last.TrainDone || last.StepsPerEpoch != steps || rep.Steps != 6*steps {
		t.Errorf("progress: %d calls, %d epochs, last %+v", calls, epochsDone, last)
	}
	if last.SamplesPerSec <= 0 || last.Accuracy < 0 || last.Accuracy > 1 || last.Loss <= 0 {
		t.Errorf("last progress %+v", last)
	}
	// Held-out verification beats raw cosine even with d′ = 8.
	test, ty := synth(5, 10, 8, 32, 8, 0.15, 0.35)
	raw, _ := verify(test, ty)
	if auc, _ := verify(project(h, test), ty); auc < raw+0.05 {
		t.Errorf("held-out AUC %.3f with d′ = 8, raw %.3f", auc, raw)
	}
}

func TestTrainSphereFaceAnnealsLambda(t *testing.T) {
	feats, y := synth(6, 5, 8, 16, 4, 0.2, 0.3)
	var lambdas []float64
	_, rep, err := Train(feats, y, Config{Loss: "sphereface", Epochs: 2, BatchSize: 8,
		Progress: func(p Progress) { lambdas = append(lambdas, p.Lambda) }})
	if err != nil {
		t.Fatal(err)
	}
	if lambdas[0] != 1000 || math.Abs(lambdas[1]-1000/1.12) > 1e-9 || lambdas[len(lambdas)-1] >= lambdas[1] {
		t.Errorf("λ schedule %v", lambdas)
	}
	if rep.Params["m"] != 4 || rep.Params["anneal_base"] != 1000 {
		t.Errorf("params %v", rep.Params)
	}
}

func TestTrainBadArguments(t *testing.T) {
	feats, y := synth(7, 3, 4, 8, 4, 0.2, 0.3)
	nanFeats := [][]float32{{1, 0}, {float32(math.NaN()), 1}}
	cases := map[string]func() error{
		"unknown loss": func() error { _, _, err := Train(feats, y, Config{Loss: "circle"}); return err },
		"no features":  func() error { _, _, err := Train(nil, nil, Config{Loss: "arcface"}); return err },
		"labels count": func() error { _, _, err := Train(feats, y[1:], Config{Loss: "arcface"}); return err },
		"ragged": func() error {
			_, _, err := Train([][]float32{{1, 0}, {1}}, []int{0, 1}, Config{Loss: "arcface"})
			return err
		},
		"NaN":          func() error { _, _, err := Train(nanFeats, []int{0, 1}, Config{Loss: "arcface"}); return err },
		"one identity": func() error { _, _, err := Train(feats[:4], y[:4], Config{Loss: "arcface"}); return err },
		"out dim":      func() error { _, _, err := Train(feats, y, Config{Loss: "arcface", OutDim: 9}); return err },
		"margin": func() error {
			_, _, err := Train(feats, y, Config{Loss: "arcface", LossParams: margin.Params{"m": 4}})
			return err
		},
		"sphere m": func() error {
			_, _, err := Train(feats, y, Config{Loss: "sphereface", LossParams: margin.Params{"m": 5}})
			return err
		},
		"negative lr": func() error { _, _, err := Train(feats, y, Config{Loss: "cosface", LR: -1}); return err },
		"alpha": func() error {
			_, _, err := Train(feats, y, Config{Loss: "center", LossParams: margin.Params{"alpha": 2}})
			return err
		},
		"epochs": func() error { _, _, err := Train(feats, y, Config{Loss: "center", Epochs: -1}); return err },
		"proxy lr scale": func() error {
			_, _, err := Train(feats, y, Config{Loss: "proxyanchor", ProxyLRScale: -1})
			return err
		},
		"bn batch 1": func() error {
			_, _, err := Train(feats, y, Config{Loss: "center", BatchSize: 1, BatchNorm: true})
			return err
		},
	}
	for name, f := range cases {
		if f() == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestBatchNormGradient checks the BatchNorm op's gradients against central
// differences in float64.
func TestBatchNormGradient(t *testing.T) {
	const n, d = 5, 3
	r := rand.New(rand.NewPCG(1, 1))
	vals := func(k int) []float64 {
		v := make([]float64, k)
		for i := range v {
			v[i] = r.NormFloat64()
		}
		return v
	}
	z0, g0, b0, wts := vals(n*d), vals(d), vals(d), vals(n*d)
	// loss = Σ wts ⊙ BN(z)², a non-trivial function of every input.
	eval := func(z, gm, bt []float64) (float64, [][]float64) {
		g := gorgonia.NewGraph()
		zN := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(n, d), gorgonia.WithName("z"),
			gorgonia.WithValue(tensor.New(tensor.WithShape(n, d), tensor.WithBacking(append([]float64(nil), z...)))))
		gN := gorgonia.NewVector(g, tensor.Float64, gorgonia.WithShape(d), gorgonia.WithName("g"),
			gorgonia.WithValue(tensor.New(tensor.WithShape(d), tensor.WithBacking(append([]float64(nil), gm...)))))
		bN := gorgonia.NewVector(g, tensor.Float64, gorgonia.WithShape(d), gorgonia.WithName("b"),
			gorgonia.WithValue(tensor.New(tensor.WithShape(d), tensor.WithBacking(append([]float64(nil), bt...)))))
		wN := gorgonia.NewConstant(tensor.New(tensor.WithShape(n, d), tensor.WithBacking(append([]float64(nil), wts...))))
		y, err := batchNorm(zN, gN, bN)
		if err != nil {
			t.Fatal(err)
		}
		sq := gorgonia.Must(gorgonia.Square(y))
		cost := gorgonia.Must(gorgonia.Sum(gorgonia.Must(gorgonia.HadamardProd(sq, wN))))
		if _, err := gorgonia.Grad(cost, zN, gN, bN); err != nil {
			t.Fatal(err)
		}
		vm := gorgonia.NewTapeMachine(g, gorgonia.BindDualValues(zN, gN, bN))
		defer vm.Close()
		if err := vm.RunAll(); err != nil {
			t.Fatal(err)
		}
		var grads [][]float64
		for _, node := range []*gorgonia.Node{zN, gN, bN} {
			gv, _ := node.Grad()
			grads = append(grads, append([]float64(nil), gv.Data().([]float64)...))
		}
		return cost.Value().Data().(float64), grads
	}
	_, grads := eval(z0, g0, b0)
	for k, v := range [][]float64{z0, g0, b0} {
		for i := range v {
			orig := v[i]
			v[i] = orig + 1e-6
			lp, _ := eval(z0, g0, b0)
			v[i] = orig - 1e-6
			lm, _ := eval(z0, g0, b0)
			v[i] = orig
			num := (lp - lm) / 2e-6
			if math.Abs(num-grads[k][i]) > 1e-5*(1+math.Abs(num)) {
				t.Errorf("input %d[%d]: analytic %v numeric %v", k, i, grads[k][i], num)
			}
		}
	}
}

// TestFoldBatchNorm checks that the folded head equals the projection
// followed by BatchNorm with the training population's statistics.
func TestFoldBatchNorm(t *testing.T) {
	feats, _ := synth(8, 4, 5, 6, 3, 0.2, 0.3)
	const dOut = 4
	r := rand.New(rand.NewPCG(2, 2))
	proj := make([]float32, dOut*7)
	for i := range proj {
		proj[i] = float32(r.NormFloat64())
	}
	gamma, beta := []float32{1, 2, 0.5, -1}, []float32{0.1, -0.2, 0.3, 0}
	want := embedAll(feats, proj, dOut, gamma, beta)
	h, err := fold(feats, proj, dOut, gamma, beta, facehead.HeadMeta{})
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]float32, dOut)
	for i, f := range feats {
		h.Project(dst, f)
		var n float64
		for _, v := range want[i] {
			n += v * v
		}
		for j := range dst {
			if math.Abs(float64(dst[j])-want[i][j]/math.Sqrt(n)) > 1e-5 {
				t.Fatalf("sample %d: %v, want %v", i, dst, want[i])
			}
		}
	}
}

func TestProjectNoAllocAndUnit(t *testing.T) {
	feats, y := synth(9, 4, 6, 512, 32, 0.2, 0.1)
	h, _, err := Train(feats, y, Config{Loss: "arcface", Epochs: 1, BatchSize: 24})
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]float32, h.OutDim())
	if a := testing.AllocsPerRun(100, func() { h.Project(dst, feats[0]) }); a != 0 {
		t.Errorf("Project allocates %v times", a)
	}
	var n float64
	for _, v := range dst {
		n += float64(v) * float64(v)
	}
	if math.Abs(n-1) > 1e-5 {
		t.Errorf("|embedding|² = %v", n)
	}
}

// TestTrainedHeadRecord checks the training record a trained head carries
// through its file: loss, BatchNorm, counts, the loss's and the trainer's
// parameters, note and backbone, and that the loaded head projects as the
// trained one.
func TestTrainedHeadRecord(t *testing.T) {
	feats, y := synth(10, 4, 6, 16, 8, 0.2, 0.1)
	h, _, err := Train(feats, y, Config{Loss: "center", Epochs: 2, BatchSize: 8, BatchNorm: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "head.fvh")
	if err := h.Save(path); err == nil {
		t.Fatal("saved without a backbone sha256")
	}
	h.SetBackbone(strings.ToUpper(testSHA))
	h.SetNote("synthetic")
	if err := h.Save(path); err != nil {
		t.Fatal(err)
	}
	g, err := facehead.LoadHead(path, testSHA)
	if err != nil {
		t.Fatal(err)
	}
	m := g.Meta()
	if m.Loss != "center" || !m.BatchNorm || m.Identities != 4 || m.Samples != 24 || m.Note != "synthetic" ||
		m.Params["lambda"] != 0.003 || m.Params["alpha"] != 0.5 || m.BackboneSHA256 != testSHA {
		t.Errorf("meta %+v", m)
	}
	a, b := make([]float32, h.OutDim()), make([]float32, g.OutDim())
	h.Project(a, feats[3])
	g.Project(b, feats[3])
	if !slices.Equal(a, b) {
		t.Errorf("loaded head projects %v, saved %v", b, a)
	}
}

func TestSplitIdentities(t *testing.T) {
	labels := []int{5, 5, 7, 7, 7, 9, 1, 1, 3, 3}
	tr, te := SplitIdentities(labels, 0.4, 1)
	tr2, te2 := SplitIdentities(labels, 0.4, 1)
	if len(tr)+len(te) != len(labels) || !slices.Equal(tr, tr2) || !slices.Equal(te, te2) {
		t.Fatalf("split %v %v, again %v %v", tr, te, tr2, te2)
	}
	inTest := map[int]bool{}
	for _, i := range te {
		inTest[labels[i]] = true
	}
	if len(inTest) != 2 {
		t.Errorf("%d identities held out, want 2 of 5", len(inTest))
	}
	for _, i := range tr {
		if inTest[labels[i]] {
			t.Errorf("identity %d on both sides", labels[i])
		}
	}
	if _, te := SplitIdentities([]int{1, 2}, 0.01, 1); len(te) != 1 {
		t.Errorf("two identities: %v held out", te)
	}
}
