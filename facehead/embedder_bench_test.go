package facehead_test

import (
	"flag"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/facever/facever/align"
	"github.com/facever/facever/facehead"
	"github.com/facever/facever/internal/session"
	"github.com/facever/facever/internal/testmodels"
	"github.com/facever/facever/models"
)

var runtimeFlag = flag.String("runtime", "opencv", "runtime for the backbone")

// modelsDir is the models directory, after checking the backbone (skipped
// without it, see internal/testmodels).
func modelsDir(tb testing.TB) string {
	tb.Helper()
	return testmodels.Dir(tb, "fr_feature")
}

func johnsChips(tb testing.TB, n int) []align.Chip {
	tb.Helper()
	paths, _ := filepath.Glob(filepath.Join("..", "testdata", "johns", "*", "*.jpg"))
	var chips []align.Chip
	for _, p := range paths[:n] {
		im, err := align.Load(p)
		if err != nil {
			tb.Fatal(err)
		}
		// A centre crop stands in for an aligned face: speed does not depend on content.
		chips = append(chips, align.ChipFromImage(im))
		im.Close()
	}
	return chips
}

// BenchmarkEmbed is the backbone on 1 and 16 faces per run; ns/op is per run.
func BenchmarkEmbed(b *testing.B) {
	s, err := session.Open(*runtimeFlag, modelsDir(b), models.Feature)
	if err != nil {
		b.Fatalf("run `make setup`: %v", err)
	}
	defer s.Close()
	e := facehead.NewEmbedder(s, models.Feature, nil)
	for _, n := range []int{1, 16} {
		chips := johnsChips(b, n)
		b.Run(fmt.Sprintf("batch%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := e.Embed(chips); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n)/1e6, "ms/face")
		})
	}
}
