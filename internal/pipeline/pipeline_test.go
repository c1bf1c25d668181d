package pipeline

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/facever/facever/align"
	"github.com/facever/facever/internal/testmodels"
	"github.com/facever/facever/verify"
)

func openTest(t testing.TB) *Pipeline { return openModel(t, "") }

func openModel(t testing.TB, model string) *Pipeline {
	t.Helper()
	backbone := "fr_feature"
	if model != "" {
		backbone = model
	}
	dir := testmodels.Dir(t, "fr_detect", "fr_landmark", backbone)
	p, err := Open(Config{ModelsDir: dir, Model: model}, true)
	if err != nil {
		t.Fatalf("open pipeline: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

type johnsPhoto struct {
	person string
	path   string
}

func johns(t testing.TB) []johnsPhoto {
	t.Helper()
	root := filepath.Join("..", "..", "testdata", "johns")
	people, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var out []johnsPhoto
	for _, d := range people {
		if !d.IsDir() {
			continue
		}
		files, _ := filepath.Glob(filepath.Join(root, d.Name(), "*.jpg"))
		sort.Strings(files)
		for _, f := range files {
			out = append(out, johnsPhoto{d.Name(), f})
		}
	}
	if len(out) != 55 {
		t.Fatalf("found %d johns photos, want 55", len(out))
	}
	return out
}

// TestJohnsSeparation checks the whole pipeline on 55 real photos of five
// people, for each backbone: every same-person pair must score above every
// different-person pair, as the Python/OpenCV reference pipeline does
// (docs/design.md), and the model's default threshold must sit between them.
func TestJohnsSeparation(t *testing.T) {
	for _, model := range []string{"fr_feature", "dlib_resnet_v1"} {
		t.Run(model, func(t *testing.T) { johnsSeparation(t, model) })
	}
}

func johnsSeparation(t *testing.T, model string) {
	p := openModel(t, model)
	photos := johns(t)
	embs := make([][]float32, len(photos))
	for i, ph := range photos {
		f, err := p.Face(ph.path, false)
		if err != nil {
			t.Fatalf("%s: %v", ph.path, err)
		}
		es, err := p.Embedder.Embed([]align.Chip{f.Chip})
		if err != nil {
			t.Fatal(err)
		}
		embs[i] = es[0]
	}
	minSame, maxDiff := 2.0, -2.0
	var sumSame, sumDiff float64
	var nSame, nDiff int
	for i := range photos {
		for j := i + 1; j < len(photos); j++ {
			s := verify.Cosine(embs[i], embs[j])
			if photos[i].person == photos[j].person {
				minSame = min(minSame, s)
				sumSame += s
				nSame++
			} else {
				maxDiff = max(maxDiff, s)
				sumDiff += s
				nDiff++
			}
		}
	}
	t.Logf("pairs: %d same (mean %.3f, min %.3f), %d different (mean %.3f, max %.3f)", nSame, sumSame/float64(nSame), minSame, nDiff, sumDiff/float64(nDiff), maxDiff)
	if minSame <= maxDiff {
		t.Errorf("lowest same-person similarity %.3f is not above highest different-person %.3f", minSame, maxDiff)
	}
	if thr := p.Backbone.Threshold; minSame < thr || maxDiff >= thr {
		t.Errorf("default threshold %.3f does not separate johns: same min %.3f, different max %.3f", thr, minSame, maxDiff)
	}
}
