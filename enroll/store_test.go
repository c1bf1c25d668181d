package enroll_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/facever/facever/enroll"
	"github.com/facever/facever/enroll/storetest"
)

// TestStore runs the behaviour suite every store meets on the bbolt file.
func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		path := filepath.Join(t.TempDir(), "g.db")
		return storetest.Backend{
			Open:  func(o enroll.Options) (enroll.Store, error) { return enroll.Open(path, o) },
			Raw:   func() ([]byte, error) { return os.ReadFile(path) },
			Short: enroll.RaceEnabled || testing.Short(),
		}
	})
}
