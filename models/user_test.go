package models

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func userEntry(name string) Model {
	return Model{Name: name, File: name + ".onnx", Package: UserPackage, SHA256: "00", Input: "x", Color: "RGB", Mean: 127.5, Scale: 1 / 127.5,
		Shape: []int{1, 3, 112, 112}, Outputs: []string{"y"}, OutputShapes: [][]int{{1, 512}}, Chip: "arcface112", Threshold: 0.5}
}

func TestUserNames(t *testing.T) {
	for _, n := range []string{"fr_feature", "FR_FEATURE", "dlib", "default", "dlib_resnet_v1.onnx", "fr_detect", "x.onnx", "", "../x", "-x", strings.Repeat("a", 65)} {
		if CheckUserName(n) == nil {
			t.Errorf("%q accepted", n)
		}
	}
	for _, n := range []string{"mydlib", "r50", "arcface-r100_v2", "a.b"} {
		if err := CheckUserName(n); err != nil {
			t.Errorf("%q: %v", n, err)
		}
	}
}

// TestUserCatalogue: entries are found by BackboneIn of their directory
// only, the built-ins win, thresholds are stored, a garbled file is an error.
func TestUserCatalogue(t *testing.T) {
	dir := t.TempDir()
	if ms, err := UserModels(dir); err != nil || len(ms) != 0 {
		t.Fatalf("empty: %v %v", ms, err)
	}
	if _, err := BackboneIn(dir, "r50"); !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), "facever model add") {
		t.Errorf("unknown: %v", err)
	}
	if err := UpdateUser(dir, func(ms []Model) ([]Model, error) { return append(ms, userEntry("r50")), nil }); err != nil {
		t.Fatal(err)
	}
	m, err := BackboneIn(dir, "r50")
	if err != nil || m.Threshold != 0.5 || m.Calibrated {
		t.Fatalf("r50: %+v %v", m, err)
	}
	if m, _ := BackboneIn(dir, "dlib"); m.Name != Dlib.Name {
		t.Errorf("dlib alias gives %s", m.Name)
	}
	if _, err := BackboneIn(t.TempDir(), "r50"); err == nil {
		t.Error("r50 found in another directory")
	}
	if err := SetUserThreshold(dir, "r50", 0.31); err != nil {
		t.Fatal(err)
	}
	if m, _ := BackboneIn(dir, "r50"); m.Threshold != 0.31 || !m.Calibrated {
		t.Errorf("after SetUserThreshold: %+v", m)
	}
	if err := SetUserThreshold(dir, "ghost", 0.3); !errors.Is(err, ErrUnknown) {
		t.Errorf("ghost: %v", err)
	}
	if _, err := Path(dir, m); !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "facever model add") {
		t.Errorf("missing user file: %v", err)
	}
	if err := os.WriteFile(UserPath(dir), []byte(`{"models":[{"Name":"fr_feature"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := BackboneIn(dir, "r50"); err == nil || !strings.Contains(err.Error(), "clashes") {
		t.Errorf("catalogue naming a built-in: %v", err)
	}
}

// TestUserCatalogueConcurrent: 16 goroutines × 8 rounds add entries at once;
// none is lost (the lock and the atomic rename), and readers racing them
// always see a whole file.
func TestUserCatalogueConcurrent(t *testing.T) {
	dir := t.TempDir()
	const writers, rounds = 16, 8
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds*2)
	for w := 0; w < writers; w++ {
		wg.Add(2)
		go func(w int) {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				name := fmt.Sprintf("m%d_%d", w, r)
				if err := UpdateUser(dir, func(ms []Model) ([]Model, error) { return append(ms, userEntry(name)), nil }); err != nil {
					errs <- err
				}
			}
		}(w)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				if _, err := UserModels(dir); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	ms, err := UserModels(dir)
	if err != nil || len(ms) != writers*rounds {
		t.Fatalf("%d entries (want %d), %v", len(ms), writers*rounds, err)
	}
}

// FuzzUserCatalogue: any content of user.json gives entries that are whole
// (a 4-D input, an N×D output, a file and a sha256, a valid non-built-in
// name) or an error; never a panic.
func FuzzUserCatalogue(f *testing.F) {
	f.Add([]byte(`{"models":[{"Name":"r50","File":"r50.onnx","SHA256":"00","Shape":[1,3,112,112],"Outputs":["y"],"OutputShapes":[[1,512]],"Chip":"arcface112","Color":"RGB","Scale":1}]}`))
	f.Add([]byte(`{"models":[{"Name":"r50","File":"../r50.onnx","SHA256":"00","Shape":[1,3,112,112],"Outputs":["y"],"OutputShapes":[[1,512]],"Chip":"arcface112","Color":"RGB","Scale":1}]}`))
	f.Add([]byte(`{"models":[{"Name":"fr_feature"}]}`))
	f.Add([]byte(`{"models":[{"Name":"x","Shape":[1,3],"OutputShapes":[[]]}]}`))
	f.Add([]byte(`{`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(UserPath(dir), data, 0o644); err != nil {
			t.Fatal(err)
		}
		ms, err := UserModels(dir)
		if err != nil {
			return
		}
		for _, m := range ms {
			if CheckUserName(m.Name) != nil || len(m.Shape) != 4 || m.Shape[2] <= 0 || m.File != filepath.Base(m.File) || m.Scale == 0 || len(m.OutputShapes) == 0 || len(m.OutputShapes[0]) != 2 || len(m.Outputs) == 0 {
				t.Fatalf("accepted a broken entry %+v", m)
			}
			if _, err := BackboneIn(dir, m.Name); err != nil {
				t.Fatalf("%s listed but not found: %v", m.Name, err)
			}
		}
	})
}
