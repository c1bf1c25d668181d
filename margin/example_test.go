package margin_test

import (
	"fmt"

	"github.com/facever/facever/margin"
)

// Evaluate runs a head's training graph in float64 and returns the mean loss
// and its gradients: here ArcFace (s = 64, m = 0.5) on two samples and three
// classes.
func ExampleEvaluate() {
	h, err := margin.NewArcFace(margin.DefaultScale, margin.DefaultArcFaceMargin, false)
	if err != nil {
		fmt.Println(err)
		return
	}
	x := [][]float64{{1, 0.1}, {0.2, 1}}
	w := [][]float64{{1, 0}, {0, 1}, {-1, -1}}
	loss, gradX, gradW, err := margin.Evaluate(h, x, w, []int{0, 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("loss %.3e, %d×%d gradient for x, %d×%d for w\n", loss, len(gradX), len(gradX[0]), len(gradW), len(gradW[0]))
	// Output: loss 6.995e-17, 2×2 gradient for x, 3×2 for w
}
