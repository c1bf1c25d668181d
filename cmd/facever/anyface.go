package main

import (
	fv "github.com/facever/facever"
	"github.com/facever/facever/verify"
)

// bestPair is the pair of faces, one of a and one of b, with the highest
// cosine similarity (indices into Faces, largest first; the first pair
// wins ties). With one face each it is [0, 0].
func bestPair(a, b *fv.Photo) [2]int {
	best, pick := -2.0, [2]int{}
	for i, fa := range a.Faces {
		for j, fb := range b.Faces {
			if s := verify.Cosine(fa.Embedding, fb.Embedding); s > best {
				best, pick = s, [2]int{i, j}
			}
		}
	}
	return pick
}
