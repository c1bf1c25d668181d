package main

import (
	"runtime"
	"strings"
	"testing"

	"github.com/facever/facever/internal/npy"
)

// TestModelMemoryCap: `model check` and `model run` compute a run's memory
// from the shapes and refuse it above --max-memory (default 4 GiB) with a
// clear error, before allocating it.
func TestModelMemoryCap(t *testing.T) {
	allocated := func(f func()) uint64 {
		var a, b runtime.MemStats
		runtime.ReadMemStats(&a)
		f()
		runtime.ReadMemStats(&b)
		return b.TotalAlloc - a.TotalAlloc
	}
	// a tiny file declaring 1×3×16384×16384 (3 GiB a tensor, ~12 GiB a run)
	huge := onnxOf(t, 1, 3, 16384, 16384)
	var code int
	var stderr string
	if n := allocated(func() { code, _, stderr = facever(t, "model", "check", huge) }); n > 64<<20 {
		t.Errorf("model check allocated %d MiB", n>>20)
	}
	if code != exitError || !strings.Contains(stderr, "x [1×3×16384×16384]") || !strings.Contains(stderr, "memory limit of 4.0 GiB") ||
		!strings.Contains(stderr, "--max-memory") {
		t.Errorf("huge model check: exit %d, stderr %q", code, stderr)
	}
	// dimensions whose product overflows
	code, _, stderr = facever(t, "model", "check", onnxOf(t, 1, 3, 1<<31, 1<<31))
	if code != exitError || !strings.Contains(stderr, "over the memory limit") {
		t.Errorf("overflowing model check: exit %d, stderr %q", code, stderr)
	}

	// 1×3×256×256 (768 KiB a tensor): runs by default, refused under 2 MiB
	small := onnxOf(t, 1, 3, 256, 256)
	code, stdout, stderr := facever(t, "model", "check", small)
	if code != 0 || !strings.Contains(stdout, "memory  3.0 MiB") {
		t.Errorf("small model check: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	code, _, stderr = facever(t, "model", "check", small, "--max-memory", "2MiB")
	if code != exitError || !strings.Contains(stderr, "needs more than the memory limit of 2.0 MiB") {
		t.Errorf("small model check under 2 MiB: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = facever(t, "model", "check", small, "--max-memory", "lots")
	if code != exitError || !strings.Contains(stderr, `"lots" is not a size`) {
		t.Errorf("bad --max-memory: exit %d, stderr %q", code, stderr)
	}

	x := writeFile(t, "x.npy", nil)
	if err := npy.WriteFile(x, []int{1, 3, 256, 256}, make([]float32, 3*256*256)); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	code, _, stderr = facever(t, "model", "run", small, "--in", x, "--out", out, "--max-memory", "1MiB")
	if code != exitError || !strings.Contains(stderr, "needs more than the memory limit of 1.0 MiB") {
		t.Errorf("model run under 1 MiB: exit %d, stderr %q", code, stderr)
	}
	code, stdout, stderr = facever(t, "model", "run", small, "--in", x, "--out", out)
	if code != 0 || !strings.Contains(stdout, "y.npy [1×3×256×256]") {
		t.Errorf("model run: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}
