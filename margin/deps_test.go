package margin_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDepsOneWay checks that the loss package does not link the ONNX
// engine: margin's matrix products come from internal/gemm, which both
// build on.
func TestDepsOneWay(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/facever/facever/margin").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	found := map[string]bool{}
	for _, d := range deps {
		found[d] = true
	}
	for _, bad := range []string{"github.com/facever/facever/internal/onnxrt", "github.com/owulveryck/onnx-go"} {
		if found[bad] {
			t.Errorf("margin depends on %s", bad)
		}
	}
	if !found["github.com/facever/facever/internal/gemm"] {
		t.Errorf("margin does not depend on internal/gemm (deps: %v)", deps)
	}
}
