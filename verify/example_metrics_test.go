package verify_test

import (
	"fmt"
	"strings"

	"github.com/facever/facever/verify"
)

// Evaluate a pairs file: parse it, score each pair (here: made-up scores),
// and compute the LFW protocol's figures.
func ExamplePairSet_Evaluate() {
	pairs := "2 2\nAnn 1 2\nBob 1 2\nAnn 1 Bob 1\nAnn 2 Bob 2\n" +
		"Cy 1 2\nDi 1 2\nCy 1 Di 1\nCy 2 Di 1\n"
	ps, err := verify.ParsePairs(strings.NewReader(pairs), "/data/lfw/images")
	if err != nil {
		panic(err)
	}
	fmt.Println(ps.Pairs[0].A, ps.Pairs[0].Same, ps.Pairs[4].Fold)
	scores := []float64{0.8, 0.7, 0.1, 0.3, 0.9, 0.2, 0.25, 0.0} // cosine of each pair
	e, err := ps.Evaluate(scores, verify.PairsOptions{NoFace: verify.NoFaceSkip})
	if err != nil {
		panic(err)
	}
	fmt.Printf("AUC %.3f, EER %.3f, %d-fold accuracy %.3f ± %.3f\n", e.ROC.AUC, e.ROC.EER, len(e.KFold.Folds), e.KFold.Mean, e.KFold.Std)
	c, _ := ps.Calibrate(scores, 0.25, verify.NoFaceReject)
	fmt.Printf("threshold %.2f at FAR %.2f (%d impostors), warning: %v\n", c.Threshold, c.FAR, c.Impostor, c.Warning != "")
	// Output:
	// /data/lfw/images/Ann/Ann_0001.jpg true 1
	// AUC 0.875, EER 0.250, 2-fold accuracy 0.875 ± 0.125
	// threshold 0.30 at FAR 0.25 (4 impostors), warning: true
}
