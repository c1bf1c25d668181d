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

// New builds a loss by name from the registry; the hyper-parameters left
// out take the paper's defaults, and the registry says what each one is.
func ExampleNew() {
	l, err := margin.New("cosface", margin.Params{"m": 0.4})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(l.Name(), l.Params()["s"], l.Params()["m"])
	spec, _ := margin.Lookup("triplet")
	for _, p := range spec.Params {
		fmt.Printf("triplet %s (--%s): %s, default %s\n", p.Key, p.Flag, p.Usage, p.DefaultString())
	}
	_, err = margin.New("cosface", margin.Params{"margin": 0.4})
	fmt.Println(err)
	// Output:
	// cosface 64 0.4
	// triplet margin (--margin): margin m on cosines, default 0.1
	// triplet mining (--mining): triplet mining: all, hard (batch hard) or semi-hard (FaceNet), default semi-hard
	// margin: cosface has no hyper-parameter "margin" (it has s, m)
}
