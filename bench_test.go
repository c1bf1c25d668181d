package facever

import (
	"testing"

	"github.com/facever/facever/align"
	"github.com/facever/facever/internal/pipeline"
)

// BenchmarkEmbed is the library's hot path on one decoded johns photo:
// detection, landmarks, alignment and the backbone, through the model pool.
func BenchmarkEmbed(b *testing.B) {
	r := openTest(b, Options{Workers: 1})
	im, err := align.Load(johns(b, 1)[0])
	if err != nil {
		b.Fatal(err)
	}
	defer im.Close()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Embed(im, Largest); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEmbedParallel runs Embed from GOMAXPROCS goroutines on a pool of
// as many model sets: the throughput concurrent callers get.
func BenchmarkEmbedParallel(b *testing.B) {
	r := openTest(b, Options{})
	path := johns(b, 1)[0]
	// Load every model set before timing: borrow them all, then return them.
	var held []*pipeline.Pipeline
	for range r.opt.Workers {
		p, err := r.get()
		if err != nil {
			b.Fatal(err)
		}
		held = append(held, p)
	}
	for _, p := range held {
		r.put(p)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		im, err := align.Load(path)
		if err != nil {
			b.Error(err)
			return
		}
		defer im.Close()
		for pb.Next() {
			if _, err := r.Embed(im, Largest); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
