package testmodels

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/facever/facever/models"
)

func TestCheck(t *testing.T) {
	empty := t.TempDir()
	t.Setenv(models.EnvDir, empty)
	if _, err := Check(); !errors.Is(err, models.ErrMissing) {
		t.Fatalf("empty directory: %v, want ErrMissing", err)
	}
	if err := os.WriteFile(filepath.Join(empty, "fr_detect.onnx"), []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Check("fr_detect"); !errors.Is(err, models.ErrChecksum) {
		t.Fatalf("corrupt model: %v, want ErrChecksum", err)
	}
	if _, err := Check("no_such_model"); err == nil || errors.Is(err, models.ErrMissing) {
		t.Fatalf("unknown model: %v, want an error that is not ErrMissing", err)
	}
}

// TestDirSkipsOrFails runs TestHelperDir in a child process with the models
// directory empty: it must skip, and fail with FACEVER_REQUIRE_MODELS=1.
func TestDirSkipsOrFails(t *testing.T) {
	if os.Getenv("TESTMODELS_CHILD") == "1" {
		t.Skip("in the child")
	}
	empty := t.TempDir()
	for _, tc := range []struct {
		require string
		fail    bool
		want    string
	}{
		{"", false, "--- SKIP: TestHelperDir"},
		{"1", true, "models are required"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperDir$", "-test.v")
		cmd.Env = append(os.Environ(), "TESTMODELS_CHILD=1", models.EnvDir+"="+empty, EnvRequire+"="+tc.require)
		out, err := cmd.CombinedOutput()
		if failed := err != nil; failed != tc.fail || !strings.Contains(string(out), tc.want) {
			t.Errorf("%s=%q: failed %v (want %v), output lacks %q:\n%s", EnvRequire, tc.require, failed, tc.fail, tc.want, out)
		}
		if !strings.Contains(string(out), "make setup") {
			t.Errorf("%s=%q: the message does not name the set-up command:\n%s", EnvRequire, tc.require, out)
		}
	}
}

// TestHelperDir is the child of TestDirSkipsOrFails.
func TestHelperDir(t *testing.T) {
	if os.Getenv("TESTMODELS_CHILD") != "1" {
		t.Skip("run by TestDirSkipsOrFails")
	}
	Dir(t)
	t.Fatal("Dir returned without the models")
}
