package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	fv "github.com/facever/facever"
	"github.com/facever/facever/internal/onnxproto"
	"github.com/facever/facever/internal/onnxrt"
	"github.com/facever/facever/internal/testmodels"
	"github.com/facever/facever/models"
)

// userModelsDir makes ROOT/models (links to the real models) and
// ROOT/testdata/johns (a link to the johns photos, the default check
// photos), and returns ROOT/models.
func userModelsDir(t *testing.T) string {
	t.Helper()
	src := testmodels.Dir(t, "fr_detect", "fr_landmark", "fr_feature", "dlib_resnet_v1")
	root := t.TempDir()
	dir := filepath.Join(root, "models")
	if err := os.MkdirAll(filepath.Join(root, "testdata"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, m := range models.All {
		if err := os.Symlink(filepath.Join(src, m.File), filepath.Join(dir, m.File)); err != nil {
			t.Fatal(err)
		}
	}
	johns, err := filepath.Abs("../../testdata/johns")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(johns, filepath.Join(root, "testdata", "johns")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func verifySimilarity(t *testing.T, dir, model, a, b string) (float64, float64) {
	t.Helper()
	code, out, errs := facever(t, "--models", dir, "verify", "--model", model, "--json", a, b)
	if code != exitOK && code != exitNegative {
		t.Fatalf("verify --model %s: exit %d, %s", model, code, errs)
	}
	var v struct{ Similarity, Threshold float64 }
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("verify --json: %v: %s", err, out)
	}
	return v.Similarity, v.Threshold
}

// TestModelAddDlibAsUser registers the dlib backbone's ONNX under another
// name as a user would bring it: its recipe and normalisation are inferred
// (input 150×150, the converter's metadata), verify with it gives exactly the
// similarity of the built-in entry, a gallery enrolled with it is searched
// by the built-in one (same sha256), calibrate sets its threshold, and
// remove takes it away.
func TestModelAddDlibAsUser(t *testing.T) {
	dir := userModelsDir(t)
	dlibFile := filepath.Join(dir, models.Dlib.File)
	code, out, errs := facever(t, "--models", dir, "model", "add", dlibFile, "--name", "mydlib", "--json")
	if code != exitOK {
		t.Fatalf("model add: exit %d, %s", code, errs)
	}
	var added struct {
		Model struct {
			Chip         string            `json:"chip"`
			Mean         float32           `json:"mean"`
			Scale        float32           `json:"scale"`
			Outputs      []string          `json:"outputs"`
			OutputShapes [][]int           `json:"output_shapes"`
			SHA256       string            `json:"sha256"`
			Metadata     map[string]string `json:"metadata"`
			Threshold    float64           `json:"threshold"`
		} `json:"entry"`
		Check struct {
			Norm         string
			Same         float64
			MaxDifferent float64 `json:"max_different"`
		}
	}
	if err := json.Unmarshal([]byte(out), &added); err != nil {
		t.Fatal(err)
	}
	m := added.Model
	if m.Chip != "dlib150" || m.Mean != 0 || m.Scale != 1 || m.Outputs[0] != "descriptor" || m.OutputShapes[0][1] != 128 ||
		m.SHA256 != models.Dlib.SHA256 || added.Check.Norm != "raw" || m.Metadata["converter"] == "" {
		t.Errorf("registered entry: %+v, check %+v", m, added.Check)
	}
	if added.Check.Same-added.Check.MaxDifferent < checkMargin {
		t.Errorf("check margin %.4f", added.Check.Same-added.Check.MaxDifferent)
	}
	got, err := models.BackboneIn(dir, "mydlib")
	if err != nil || got.SHA256 != models.Dlib.SHA256 {
		t.Fatalf("BackboneIn: %+v, %v", got, err)
	}
	if _, err := models.BackboneIn(t.TempDir(), "mydlib"); err == nil {
		t.Error("another models directory knows mydlib")
	}

	s1, thr1 := verifySimilarity(t, dir, "mydlib", simmA, simmB)
	s2, _ := verifySimilarity(t, dir, "dlib_resnet_v1", simmA, simmB)
	if s1 != s2 || thr1 != m.Threshold {
		t.Errorf("mydlib similarity %v (threshold %v), dlib_resnet_v1 %v (registered threshold %v)", s1, thr1, s2, m.Threshold)
	}
	d1, _ := verifySimilarity(t, dir, "mydlib", salleyA, simmA)
	if d1 >= s1-0.05 {
		t.Errorf("mydlib: different people %.4f, same person %.4f", d1, s1)
	}

	// a gallery made with mydlib is a dlib_resnet_v1 gallery (same sha256)
	gal := filepath.Join(t.TempDir(), "g.db")
	if code, _, errs := facever(t, "--models", dir, "enroll", "--model", "mydlib", "--gallery", gal, "--name", "simm", simmA); code != exitOK {
		t.Fatalf("enroll --model mydlib: exit %d, %s", code, errs)
	}
	code, out, errs = facever(t, "--models", dir, "identify", "--model", "dlib_resnet_v1", "--gallery", gal, "--threshold", "0.9", simmB)
	if code != exitOK || !strings.Contains(out, "simm") {
		t.Errorf("identify with the built-in entry: exit %d, %s %s", code, out, errs)
	}
	code, _, errs = facever(t, "--models", dir, "identify", "--gallery", gal, simmB)
	if code != exitError {
		t.Errorf("identify of a mydlib gallery with fr_feature: exit %d, %s", code, errs)
	}

	// calibrate stores the threshold, verify uses it
	var pairs strings.Builder
	people := johnsByPerson(t)
	var names []string
	for n := range people {
		names = append(names, n)
	}
	for i, n := range names {
		ps := people[n]
		for j := 0; j+1 < len(ps) && j < 4; j++ {
			fmt.Fprintf(&pairs, "%s,%s,1\n", ps[j], ps[j+1])
			o := people[names[(i+1)%len(names)]]
			fmt.Fprintf(&pairs, "%s,%s,0\n", ps[j], o[j])
		}
	}
	csv := writeFile(t, "pairs.csv", []byte(pairs.String()))
	code, out, errs = facever(t, "--models", dir, "calibrate", "--model", "mydlib", "--pairs", csv, "--far", "0.1", "--json")
	if code != exitOK {
		t.Fatalf("calibrate: exit %d, %s", code, errs)
	}
	var cal struct {
		Calibration struct{ Threshold float64 }
		Saved       string `json:"saved_for_model"`
	}
	if err := json.Unmarshal([]byte(out), &cal); err != nil || cal.Saved != "mydlib" {
		t.Fatalf("calibrate --json: %v %s", err, out)
	}
	if _, thr := verifySimilarity(t, dir, "mydlib", simmA, simmB); thr != cal.Calibration.Threshold || thr == m.Threshold {
		t.Errorf("verify threshold %v after calibrate to %v (registered %v)", thr, cal.Calibration.Threshold, m.Threshold)
	}
	// the library (what serve opens, with serveModels' options) finds it
	// in the models directory in use and takes the stored threshold
	r, err := fv.Open(fv.Options{ModelsDir: dir, Model: "mydlib", Workers: 1})
	if err != nil {
		t.Fatalf("facever.Open mydlib: %v", err)
	}
	dec, err := r.VerifyFiles(simmA, simmB)
	r.Close()
	if err != nil || r.Backbone().Chip != "dlib150" || r.Threshold() != cal.Calibration.Threshold || math.Abs(dec.Similarity-s2) > 5e-4 {
		t.Errorf("facever.Open mydlib: %+v, %v; backbone %+v, threshold %v", dec, err, r.Backbone(), r.Threshold())
	}
	// a built-in model's threshold is not stored
	if code, out, _ := facever(t, "--models", dir, "calibrate", "--model", "dlib_resnet_v1", "--pairs", csv, "--far", "0.1", "--json"); code != exitOK || strings.Contains(out, `"saved_for_model"`) {
		t.Errorf("calibrate of a built-in: exit %d, %s", code, out)
	}

	code, out, _ = facever(t, "--models", dir, "model", "list")
	if code != exitOK || !strings.Contains(out, "mydlib") || !strings.Contains(out, "user") || !strings.Contains(out, "dlib_resnet_v1  built-in") {
		t.Errorf("model list: exit %d\n%s", code, out)
	}
	code, _, errs = facever(t, "--models", dir, "model", "add", dlibFile, "--name", "mydlib")
	if code != exitError || !strings.Contains(errs, "already registered") {
		t.Errorf("second add: exit %d, %s", code, errs)
	}
	if code, _, errs := facever(t, "--models", dir, "model", "remove", "mydlib"); code != exitOK {
		t.Fatalf("remove: exit %d, %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "mydlib.onnx")); !os.IsNotExist(err) {
		t.Errorf("mydlib.onnx still there: %v", err)
	}
	code, _, errs = facever(t, "--models", dir, "verify", "--model", "mydlib", simmA, simmB)
	if code != exitError || !strings.Contains(errs, `unknown model "mydlib"`) {
		t.Errorf("verify after remove: exit %d, %s", code, errs)
	}
	if _, err := os.Stat(dlibFile); err != nil {
		t.Errorf("the source file went with remove: %v", err)
	}
}

// TestModelAddRefusesWrongNorm: fr_feature with raw 0..255 pixels does not
// separate the johns photos clearly; the refusal names the normalisations
// that do, and nothing is registered or left in the models directory.
func TestModelAddRefusesWrongNorm(t *testing.T) {
	dir := userModelsDir(t)
	code, _, errs := facever(t, "--models", dir, "model", "add", filepath.Join(dir, models.Feature.File), "--name", "fea", "--norm", "raw")
	if code != exitError || !strings.Contains(errs, "does not tell the faces apart") || !strings.Contains(errs, "try --norm arcface") {
		t.Errorf("wrong norm: exit %d, %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "fea.onnx")); !os.IsNotExist(err) {
		t.Errorf("fea.onnx left behind: %v", err)
	}
	// without --norm the best one is chosen
	code, out, errs := facever(t, "--models", dir, "model", "add", filepath.Join(dir, models.Feature.File), "--name", "fea")
	if code != exitOK || !strings.Contains(out, "chip arcface112") || !strings.Contains(out, "normalisation arcface") {
		t.Fatalf("add fea: exit %d, %s %s", code, out, errs)
	}
	m, err := models.BackboneIn(dir, "fea")
	if err != nil || m.Mean != 127.5 || m.Chip != "arcface112" {
		t.Errorf("fea: %+v %v", m, err)
	}
}

// onnxOf writes y = Relu(x) with x and y declared of the given shape.
func onnxOf(t *testing.T, shape ...int64) string {
	t.Helper()
	var dims []onnxproto.Dim
	for _, d := range shape {
		dims = append(dims, onnxproto.Dim{Value: d})
	}
	m := &onnxproto.Model{IRVersion: 7, Opset: 13, Graph: onnxproto.Graph{
		Name:    "relu",
		Nodes:   []onnxproto.Node{{Name: "relu", OpType: "Relu", Inputs: []string{"x"}, Outputs: []string{"y"}}},
		Inputs:  []onnxproto.ValueInfo{{Name: "x", ElemType: onnxproto.Float, Dims: dims}},
		Outputs: []onnxproto.ValueInfo{{Name: "y", ElemType: onnxproto.Float, Dims: dims}},
	}}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "m.onnx", b)
}

// TestModelAddBadInput: every refusal is exit 2 with a message that says
// what is wrong, and leaves the catalogue untouched.
func TestModelAddBadInput(t *testing.T) {
	dir := userModelsDir(t)
	dlibFile := filepath.Join(dir, models.Dlib.File)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"not onnx", []string{writeFile(t, "x.onnx", []byte("this is not a model\n")), "--name", "x"}, "is not an ONNX model"},
		{"missing file", []string{filepath.Join(dir, "nope.onnx"), "--name", "x"}, "no such file"},
		{"rank 2 input", []string{onnxOf(t, 1, 512), "--name", "x"}, "rank 4"},
		{"odd size", []string{onnxOf(t, 1, 3, 96, 96), "--name", "x"}, "112×112 (arcface112) or 150×150"},
		{"chip and size disagree", []string{dlibFile, "--name", "x", "--chip", "arcface112"}, "makes 112×112 chips"},
		{"unknown chip", []string{dlibFile, "--name", "x", "--chip", "square"}, "choose arcface112"},
		{"output not a vector", []string{onnxOf(t, 1, 3, 112, 112), "--name", "x"}, "is a vector"},
		{"unknown output", []string{dlibFile, "--name", "x", "--output", "logits"}, `no output "logits"`},
		{"built-in name", []string{dlibFile, "--name", "fr_feature"}, "clashes with a built-in"},
		{"alias", []string{dlibFile, "--name", "dlib"}, "clashes with a built-in"},
		{"bad name", []string{dlibFile, "--name", "../x"}, "use 1–64 letters"},
		{"no name", []string{dlibFile}, "needs --name"},
		{"bad norm", []string{dlibFile, "--name", "x", "--norm", "z-score"}, "choose arcface"},
		{"too few check photos", []string{dlibFile, "--name", "x", "--check", simmA, "--check", simmB}, "at least three photos"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := facever(t, append([]string{"--models", dir, "model", "add"}, tc.args...)...)
			if code != exitError || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, errs, tc.want)
			}
		})
	}
	if ms, err := models.UserModels(dir); err != nil || len(ms) != 0 {
		t.Errorf("user catalogue after refusals: %v %v", ms, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.onnx")); !os.IsNotExist(err) {
		t.Errorf("x.onnx left behind: %v", err)
	}
	code, _, errs := facever(t, "--models", dir, "model", "remove", "fr_feature")
	if code != exitError || !strings.Contains(errs, "built-in") {
		t.Errorf("remove built-in: exit %d, %s", code, errs)
	}
	code, _, errs = facever(t, "--models", dir, "model", "remove", "ghost")
	if code != exitError || !strings.Contains(errs, "unknown model") {
		t.Errorf("remove unknown: exit %d, %s", code, errs)
	}
	// a garbled catalogue is a clear error, not a silent empty one
	if err := os.WriteFile(models.UserPath(dir), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs = facever(t, "--models", dir, "verify", "--model", "x", simmA, simmB)
	if code != exitError || !strings.Contains(errs, "fix or delete the file") {
		t.Errorf("garbled catalogue: exit %d, %s", code, errs)
	}
}

// insightfaceOps is the operator set of insightface's IResNet (arcface_torch
// iresnet*) and MobileFaceNet exports as PyTorch's exporter writes them
// (Flatten or the Shape/Gather/Unsqueeze/Concat/Reshape of a dynamic batch,
// Linear as Gemm or MatMul+Add, BatchNorm1d as BatchNormalization, input
// Sub/Mul in the converted mxnet models), which the README says the engine
// runs.
var insightfaceOps = []string{"Conv", "BatchNormalization", "PRelu", "Relu", "Add", "Sub", "Mul", "Flatten", "Reshape",
	"Shape", "Gather", "Unsqueeze", "Concat", "Gemm", "MatMul", "Dropout", "Identity", "Constant", "MaxPool", "AveragePool",
	"GlobalAveragePool", "LpNormalization", "Transpose"}

func TestEngineRunsInsightfaceOps(t *testing.T) {
	have := map[string]bool{}
	for _, op := range onnxrt.SupportedOps() {
		have[op] = true
	}
	for _, op := range insightfaceOps {
		if !have[op] {
			t.Errorf("the engine lacks %s, which the README says it runs", op)
		}
	}
}
