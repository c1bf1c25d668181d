package verify

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps: verify measures and decides on features; it must not link the
// embedder, the training code or gorgonia (a verification protocol takes the
// features, and the fitting when there is one, from its caller), nor OpenCV
// (its folder walker, dataset, sniffs photos with internal/imageformat, not
// with align's decoder).
func TestDeps(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to list the import graph: %v", err)
	}
	list := func(pkg string) []string {
		out, err := exec.Command(goTool, "list", "-deps", "-f", "{{.ImportPath}}", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		return strings.Fields(string(out))
	}
	forbidden := func(d string) bool {
		return strings.HasPrefix(d, "github.com/facever/facever/facehead") || strings.HasPrefix(d, "gorgonia.org/") ||
			d == "github.com/facever/facever/margin" || d == "github.com/facever/facever/enroll" ||
			strings.HasPrefix(d, "gocv.io/") || d == "github.com/facever/facever/align"
	}
	var bad []string
	for _, d := range list("github.com/facever/facever/verify") {
		if forbidden(d) {
			bad = append(bad, d)
		}
	}
	if len(bad) > 0 {
		t.Errorf("verify links %v", bad)
	}
	// The check sees them where they are.
	seen := false
	for _, d := range list("github.com/facever/facever/facehead/train") {
		seen = seen || strings.HasPrefix(d, "gorgonia.org/gorgonia")
	}
	if !seen {
		t.Error("the check does not see gorgonia in facehead/train")
	}
	seen = false
	for _, d := range list("github.com/facever/facever/align") {
		seen = seen || strings.HasPrefix(d, "gocv.io/")
	}
	if !seen {
		t.Error("the check does not see gocv in align")
	}
}
