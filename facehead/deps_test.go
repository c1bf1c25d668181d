package facehead

import (
	"os/exec"
	"strings"
	"testing"
)

// trainingDeps returns the packages in the import graph of roots (as
// `go list -deps` lists it) that belong to training: facehead/train, margin
// and gorgonia (gorgonia.org/gorgonia and gorgonia.org/cu). gorgonia.org/tensor, a
// separate n-dimensional array module, does not count: the ONNX reader
// onnx-go that internal/onnxrt uses links it; it holds no autodiff and no
// graph machine.
func trainingDeps(t *testing.T, roots ...string) []string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to list the import graph: %v", err)
	}
	out, err := exec.Command(goTool, append([]string{"list", "-deps", "-f", "{{.ImportPath}}"}, roots...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < len(roots) {
		t.Fatalf("go list -deps listed %d packages: %q", len(deps), out)
	}
	var bad []string
	for _, d := range deps {
		if strings.HasPrefix(d, "gorgonia.org/gorgonia") || strings.HasPrefix(d, "gorgonia.org/cu") ||
			d == "github.com/facever/facever/facehead/train" || d == "github.com/facever/facever/margin" {
			bad = append(bad, d)
		}
	}
	return bad
}

// TestInferencePathLinksNoTraining checks the import graph: the root package
// that library users import, the runtime contract, the embedder and head
// file, the pipeline and the HTTP server must not link the training
// code or gorgonia, so that a verifier or a server built on them carries none
// of it. The check itself must see training where it is: in facehead/train.
func TestInferencePathLinksNoTraining(t *testing.T) {
	if bad := trainingDeps(t,
		"github.com/facever/facever",
		"github.com/facever/facever/infer",
		"github.com/facever/facever/facehead",
		"github.com/facever/facever/internal/pipeline",
		"github.com/facever/facever/internal/server",
	); len(bad) > 0 {
		t.Errorf("the inference path links %v", bad)
	}
	bad := trainingDeps(t, "github.com/facever/facever/facehead/train")
	found := map[string]bool{}
	for _, d := range bad {
		found[d] = true
	}
	if !found["gorgonia.org/gorgonia"] || !found["github.com/facever/facever/margin"] || !found["github.com/facever/facever/facehead/train"] {
		t.Errorf("the check does not see training in facehead/train: %v", bad)
	}
}
