package enroll_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/facever/facever/enroll"
)

// Enroll two people and identify a probe, as the CLI does: compute the
// embeddings first, then open, write, close (the file lock is held from Open
// to Close).
func Example() {
	dir, _ := os.MkdirTemp("", "gallery")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "gallery.db")
	const backbone = "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581"

	g, err := enroll.Open(path, enroll.Options{Model: backbone})
	if err != nil {
		panic(err)
	}
	ann, _, err := g.Enroll("Ann", map[string]string{"team": "blue"}, []enroll.Template{
		{Embedding: []float32{0.9, 0.1, 0}, Source: "ann1.jpg"},
		{Embedding: []float32{0.8, 0.3, 0.1}, Source: "ann2.jpg"},
	})
	if err != nil {
		panic(err)
	}
	if _, _, err := g.Enroll("Bob", nil, []enroll.Template{{Embedding: []float32{0, 0.2, 1}, Source: "bob.jpg"}}); err != nil {
		panic(err)
	}
	fmt.Println(ann.Name, ann.Templates)
	g.Close()

	// identify: read-only, with the model checked.
	g, err = enroll.Open(path, enroll.Options{Model: backbone, ReadOnly: true})
	if err != nil {
		panic(err)
	}
	defer g.Close()
	ix, err := g.LoadIndex()
	if err != nil {
		panic(err)
	}
	s := ix.NewSearcher()
	defer s.Close()
	matches, _ := s.Search([]float32{1, 0.2, 0}, 2)
	for _, m := range matches {
		fmt.Printf("%s %.3f\n", m.Name, m.Score)
	}
	// A different head is refused.
	_, err = enroll.Open(path, enroll.Options{Model: backbone, Head: "arcface", ReadOnly: true})
	fmt.Println(err != nil)
	// Output:
	// Ann 2
	// Ann 0.996
	// Bob 0.038
	// true
}
