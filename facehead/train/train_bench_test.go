package train

import (
	"testing"

	"github.com/facever/facever/margin"
)

// BenchmarkTrain measures training speed on cached 512-d features: 8 192
// samples of 1 000 identities, batch 128, d′ = 512, one epoch per iteration
// (graph building included). The anchor (docs/design.md, Machines): gorgonia ~10k
// samples/s for ArcFace at batch 128 on 100 classes; PyTorch 1 200 samples/s
// at N = 256, C = 10 000 (see margin's benchmarks for that size).
func BenchmarkTrain(b *testing.B) {
	feats, y := synth(11, 1000, 8, 512, 64, 0.2, 0.05)
	for _, loss := range margin.Names() {
		for _, bn := range []bool{false, true} {
			name := loss
			if bn {
				name += "+bn"
			}
			b.Run(name, func(b *testing.B) {
				var sps float64
				for i := 0; i < b.N; i++ {
					_, rep, err := Train(feats, y, Config{Loss: loss, Epochs: 1, BatchSize: 128, BatchNorm: bn})
					if err != nil {
						b.Fatal(err)
					}
					sps += rep.SamplesPerSec
				}
				b.ReportMetric(sps/float64(b.N), "samples/s")
			})
		}
	}
}
