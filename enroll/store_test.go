package enroll_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/facever/facever/enroll"
	"github.com/facever/facever/enroll/storetest"
)

// TestStore runs the behaviour suite every store meets on the bbolt file.
// With FACEVER_STORETEST_WRAP=dropcrops it runs it on a store that loses
// every crop (see TestStoreSuiteCatchesLostCrops).
func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		path := filepath.Join(t.TempDir(), "g.db")
		open := func(o enroll.Options) (enroll.Store, error) { return enroll.Open(path, o) }
		if os.Getenv("FACEVER_STORETEST_WRAP") == "dropcrops" {
			open = func(o enroll.Options) (enroll.Store, error) {
				g, err := enroll.Open(path, o)
				if err != nil {
					return nil, err
				}
				return dropCrops{g}, nil
			}
		}
		return storetest.Backend{
			Open:  open,
			Raw:   func() ([]byte, error) { return os.ReadFile(path) },
			Short: enroll.RaceEnabled || testing.Short(),
		}
	})
}

// dropCrops is a store that loses the crops given to it (and checks none):
// a broken back end the suite must catch.
type dropCrops struct{ *enroll.Gallery }

func strip(ts []enroll.Template) []enroll.Template {
	out := append([]enroll.Template(nil), ts...)
	for i := range out {
		out[i].Crop = nil
	}
	return out
}

func (d dropCrops) AddTemplates(id uint64, ts []enroll.Template) ([]enroll.Template, error) {
	return d.Gallery.AddTemplates(id, strip(ts))
}

func (d dropCrops) AddTemplatesOnce(id uint64, ts []enroll.Template, key, digest string, answer func(enroll.Identity, []enroll.Template) (int, []byte, error)) (enroll.OnceRecord, bool, error) {
	return d.Gallery.AddTemplatesOnce(id, strip(ts), key, digest, answer)
}

func (d dropCrops) Enroll(name string, md map[string]string, ts []enroll.Template) (enroll.Identity, []enroll.Template, error) {
	return d.Gallery.Enroll(name, md, strip(ts))
}

func (d dropCrops) EnrollBatch(items []enroll.BatchItem, dup bool) ([]enroll.BatchResult, error) {
	out := append([]enroll.BatchItem(nil), items...)
	for i := range out {
		out[i].Template.Crop = nil
	}
	return d.Gallery.EnrollBatch(out, dup)
}

func (d dropCrops) ImportIdentity(it enroll.Identity, ts []enroll.Template) error {
	return d.Gallery.ImportIdentity(it, strip(ts))
}

// TestStoreSuiteCatchesLostCrops runs the suite's crop cases on dropCrops,
// in a child process: every one of them must fail.
func TestStoreSuiteCatchesLostCrops(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run", "^TestStore$/^Crops", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "FACEVER_STORETEST_WRAP=dropcrops")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the suite passed a store that loses every crop:\n%s", out)
	}
	for _, c := range []string{"Crops", "CropsRefused", "CropsBatchImport"} {
		if !strings.Contains(string(out), "--- FAIL: TestStore/"+c+" ") {
			t.Errorf("case %s did not fail on a store that loses crops", c)
		}
	}
	if t.Failed() {
		t.Logf("%s", out)
	}
}
