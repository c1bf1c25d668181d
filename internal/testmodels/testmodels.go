// Package testmodels is the one gate of every test that needs the fetched
// models or data (the ONNX models of `make setup`, dlib's converted backbone
// of `make dlib`, the group photos of testdata/external): when they are
// absent the test is skipped with a message naming the command that fetches
// them, so that `go test ./...` on a bare clone passes honestly; with
// FACEVER_REQUIRE_MODELS=1 (set by `make test` and CI) their absence fails
// the test instead, so that CI cannot pass by skipping.
//
// A file that is present but whose sha256 does not match the catalogue is
// always a failure: that is a broken set-up, not a missing one.
package testmodels

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/facever/facever/models"
)

// EnvRequire names the environment variable that turns a skip into a
// failure when set to 1.
const EnvRequire = "FACEVER_REQUIRE_MODELS"

// Required reports whether FACEVER_REQUIRE_MODELS=1.
func Required() bool { return os.Getenv(EnvRequire) == "1" }

// Default lists the models most tests need: detector, landmarks and the
// default backbone.
var Default = []string{"fr_detect", "fr_landmark", "fr_feature"}

// Dir returns the models directory (models.Dir's resolution: $FACEVER_MODELS,
// else the checkout's models/) after checking each named catalogue model
// (Default when none is named): presence and sha256. A missing model skips
// t, or fails it when FACEVER_REQUIRE_MODELS=1.
func Dir(t testing.TB, names ...string) string {
	t.Helper()
	dir, err := Check(names...)
	if err != nil {
		absent(t, err)
	}
	return dir
}

// Check is Dir without a test: the directory, or an error wrapping
// models.ErrMissing (absent) or models.ErrChecksum (corrupt).
func Check(names ...string) (string, error) {
	if len(names) == 0 {
		names = Default
	}
	dir, err := filepath.Abs(models.Dir(""))
	if err != nil {
		return "", err
	}
	for _, name := range names {
		m, ok := models.Lookup(name)
		if !ok {
			return "", fmt.Errorf("testmodels: no model %q in the catalogue", name)
		}
		if _, err := models.Path(dir, m); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// File checks that a fetched data file (a group photo of testdata/external,
// dlib's .dat under build/) exists, and returns path. made names the command
// that makes it. A missing file skips t, or fails it when
// FACEVER_REQUIRE_MODELS=1.
func File(t testing.TB, path, made string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		absent(t, fmt.Errorf("%w: %s (run `%s`)", models.ErrMissing, path, made))
	}
	return path
}

// absent skips or fails t for err.
func absent(t testing.TB, err error) {
	t.Helper()
	if !errors.Is(err, models.ErrMissing) {
		t.Fatalf("models: %v", err)
	}
	if Required() {
		t.Fatalf("%v (%s=1: models are required)", err, EnvRequire)
	}
	t.Skipf("skipped, models absent: %v (set %s=1 to make this a failure)", err, EnvRequire)
}

// Main runs a package's tests and examples; call it from TestMain in a
// package whose Examples need the named models (Default when none is
// named). Examples cannot skip themselves, so when the models are absent
// Main prints why and skips the package's Examples (its tests still run, and
// those that need models skip through Dir); with FACEVER_REQUIRE_MODELS=1 it
// exits 1 instead. A corrupt model always exits 1.
func Main(m *testing.M, names ...string) {
	if _, err := Check(names...); err != nil {
		switch {
		case !errors.Is(err, models.ErrMissing):
			fmt.Fprintf(os.Stderr, "models: %v\n", err)
			os.Exit(1)
		case Required():
			fmt.Fprintf(os.Stderr, "%v (%s=1: models are required)\n", err, EnvRequire)
			os.Exit(1)
		}
		flag.Parse()
		skip := "^Example"
		if f := flag.Lookup("test.skip"); f != nil && f.Value.String() != "" {
			skip = f.Value.String() + "|" + skip
		}
		if err := flag.Set("test.skip", skip); err != nil {
			fmt.Fprintf(os.Stderr, "testmodels: %v\n", err)
			os.Exit(1)
		}
		fmt.Printf("skipping the Examples, models absent: %v (set %s=1 to make this a failure)\n", err, EnvRequire)
	}
	os.Exit(m.Run())
}
