package train_test

import (
	"fmt"
	"math/rand/v2"

	"github.com/facever/facever/facehead"
	"github.com/facever/facever/facehead/train"
	"github.com/facever/facever/margin"
)

// Train learns a head from cached backbone features and their identity
// labels, with any loss of margin's registry; the head projects new features
// and saves to a head file (Save, once the backbone's sha256 is set).
func ExampleTrain() {
	r := rand.New(rand.NewPCG(1, 2))
	var feats [][]float32
	var labels []int
	for id := 0; id < 10; id++ {
		centre := make([]float32, 16)
		for j := range centre {
			centre[j] = float32(r.NormFloat64())
		}
		for k := 0; k < 12; k++ {
			f := make([]float32, 16)
			for j := range f {
				f[j] = centre[j] + float32(0.3*r.NormFloat64())
			}
			if err := facehead.Normalize(f); err != nil {
				fmt.Println(err)
				return
			}
			feats, labels = append(feats, f), append(labels, id)
		}
	}
	head, rep, err := train.Train(feats, labels, train.Config{
		Loss: "cosface", LossParams: margin.Params{"m": 0.4}, OutDim: 8, Epochs: 5, BatchSize: 32, Seed: 1,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	emb := make([]float32, head.OutDim())
	head.Project(emb, feats[0])
	fmt.Printf("%s head %d→%d on %d photos of %d people, %d steps; m = %v\n",
		rep.Loss, head.InDim(), head.OutDim(), rep.Samples, rep.Identities, rep.Steps, head.Meta().Params["m"])
	// Output: cosface head 16→8 on 120 photos of 10 people, 15 steps; m = 0.4
}
