package facehead

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/facever/facever/align"
)

// Augmentations lists the chip augmentations Augment knows, for training on
// small data: each adds one altered copy of every training photo.
var Augmentations = []string{"flip", "jitter", "blur"}

// Augment returns an altered copy of an aligned chip:
//   - "flip": mirrored left to right (the ArcFace template is symmetric up
//     to 0.3 px, so a mirrored aligned face is still aligned);
//   - "jitter": brightness, contrast and saturation each scaled by a factor
//     drawn uniformly in [0.75, 1.25] from seed (as torchvision's ColorJitter);
//   - "blur": a Gaussian blur with σ = 1 pixel (5-tap separable kernel).
//
// The result depends only on the chip, kind and seed.
func Augment(c align.Chip, kind string, seed uint64) (align.Chip, error) {
	n := c.Size
	if n <= 0 || len(c.Pix) != 3*n*n {
		return align.Chip{}, fmt.Errorf("augment: chip of size %d has %d bytes", n, len(c.Pix))
	}
	out := align.Chip{Size: n, Pix: make([]uint8, len(c.Pix))}
	switch kind {
	case "flip":
		for y := 0; y < n; y++ {
			for x := 0; x < n; x++ {
				s, d := 3*(y*n+x), 3*(y*n+n-1-x)
				copy(out.Pix[d:d+3], c.Pix[s:s+3])
			}
		}
	case "jitter":
		rng := rand.New(rand.NewPCG(seed, 0x6a09e667f3bcc908))
		bright := 0.75 + 0.5*rng.Float64()
		contrast := 0.75 + 0.5*rng.Float64()
		sat := 0.75 + 0.5*rng.Float64()
		var mean float64
		for i := 0; i < len(c.Pix); i += 3 {
			mean += luma(c.Pix[i], c.Pix[i+1], c.Pix[i+2])
		}
		mean = mean * bright / float64(n*n)
		for i := 0; i < len(c.Pix); i += 3 {
			r, g, b := float64(c.Pix[i])*bright, float64(c.Pix[i+1])*bright, float64(c.Pix[i+2])*bright
			grey := luma(c.Pix[i], c.Pix[i+1], c.Pix[i+2]) * bright
			for k, v := range [3]float64{r, g, b} {
				v = grey + sat*(v-grey)      // saturation: towards or away from grey
				v = mean + contrast*(v-mean) // contrast: towards or away from the mean
				out.Pix[i+k] = clampByte(v)
			}
		}
	case "blur":
		// Gaussian σ = 1 sampled at −2..2 and normalised.
		var k [5]float64
		var sum float64
		for i := range k {
			d := float64(i - 2)
			k[i] = math.Exp(-d * d / 2)
			sum += k[i]
		}
		for i := range k {
			k[i] /= sum
		}
		tmp := make([]float64, len(c.Pix))
		for y := 0; y < n; y++ {
			for x := 0; x < n; x++ {
				for ch := 0; ch < 3; ch++ {
					var v float64
					for t := -2; t <= 2; t++ {
						xx := min(max(x+t, 0), n-1)
						v += k[t+2] * float64(c.Pix[3*(y*n+xx)+ch])
					}
					tmp[3*(y*n+x)+ch] = v
				}
			}
		}
		for y := 0; y < n; y++ {
			for x := 0; x < n; x++ {
				for ch := 0; ch < 3; ch++ {
					var v float64
					for t := -2; t <= 2; t++ {
						yy := min(max(y+t, 0), n-1)
						v += k[t+2] * tmp[3*(yy*n+x)+ch]
					}
					out.Pix[3*(y*n+x)+ch] = clampByte(v)
				}
			}
		}
	default:
		return align.Chip{}, fmt.Errorf("augment: unknown augmentation %q (want one of %v)", kind, Augmentations)
	}
	return out, nil
}

// luma is the Rec. 601 luma of an RGB pixel.
func luma(r, g, b uint8) float64 { return 0.299*float64(r) + 0.587*float64(g) + 0.114*float64(b) }

func clampByte(v float64) uint8 {
	return uint8(min(max(math.Round(v), 0), 255))
}
