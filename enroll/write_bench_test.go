package enroll

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// BenchmarkEnroll: one enroll (a new person, one 512-value template) per
// op, committed and synced: the cost of a write, counter file included.
func BenchmarkEnroll(b *testing.B) {
	g, err := Open(filepath.Join(b.TempDir(), "g.db"), Options{Model: testModel})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	rng := rand.New(rand.NewPCG(1, 1))
	i := 0
	for b.Loop() {
		if _, _, err := g.Enroll(fmt.Sprint("p", i), nil, []Template{{Embedding: randEmb(rng, 512)}}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
