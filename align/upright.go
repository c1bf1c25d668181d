package align

import (
	"image"
	"math"

	"gocv.io/x/gocv"
)

// The face-likeness check: a small neural network (one hidden layer of
// faceHidden tanh units, a linear output) on features of the aligned chip,
// in grey, reduced to faceChipSide×faceChipSide (area averaging). The
// features (faceChipZ) are the chip normalised to mean 0 and unit variance
// and averaged over facePool×facePool blocks, and a histogram of signed
// gradient orientations (8 directions, each gradient shared between the
// two directions either side of it) over a grid of faceCell×faceCell
// cells, each cell's histogram divided by the root mean square of its own
// and its neighbours' (a HOG-like descriptor: the way the grey level
// changes, light to dark or dark to light, tells an upright face from one
// upside down, and the layout of edges a face from part of one). Its
// weights (upright_weights.go) were fitted by gradient descent to tell the
// chips of real upright faces (johns, LFW) from the chips of constructed
// bad faces: photos turned upside down and aligned upside down, crops of
// the forehead and eyes, of the eyes, of the mouth, of half a face.
// Quality.FaceLike is its output, the log-odds of a good face; the score's
// FaceGate its ramp. It is pure Go arithmetic on the 56×56 chip (no
// threads, no BLAS), so the same chip gives the same FaceLike everywhere.

// faceChipSide is the side of the classifier's input chip (the 112 chip / 2).
const faceChipSide = 56

// The features: pooled pixels over facePool×facePool blocks, orientation
// histograms over faceCell×faceCell cells of faceBins directions.
const (
	facePool     = 4
	faceCell     = 7
	faceBins     = 8
	facePoolSide = faceChipSide / facePool
	faceCellSide = faceChipSide / faceCell
	// faceFeatures is the length of faceChipZ's vector.
	faceFeatures = facePoolSide*facePoolSide + faceCellSide*faceCellSide*faceBins
)

// faceChipPix returns the 112×112 grey chip reduced to faceChipSide² grey
// levels (area averaging).
func faceChipPix(grey gocv.Mat) []uint8 {
	small := gocv.NewMat()
	defer small.Close()
	gocv.Resize(grey, &small, image.Pt(faceChipSide, faceChipSide), 0, 0, gocv.InterpolationArea)
	return small.ToBytes()
}

// faceLikeOf is the face-likeness classifier's log-odds that grey, a
// 112×112 grey aligned chip (greyChip), is the chip of a real upright face.
func faceLikeOf(grey gocv.Mat) float64 {
	return faceLogit(faceChipZ(faceChipPix(grey)))
}

// faceChipZ returns the classifier's features of pix (faceChipPix): the
// pooled normalised pixels, then the orientation histograms, cell by cell
// in rows, direction by direction.
func faceChipZ(pix []uint8) []float64 {
	const n = faceChipSide
	z := make([]float64, len(pix))
	for i, p := range pix {
		z[i] = float64(p)
	}
	z = standardise(z)
	out := make([]float64, 0, faceFeatures)
	for by := 0; by < facePoolSide; by++ {
		for bx := 0; bx < facePoolSide; bx++ {
			var s float64
			for y := by * facePool; y < (by+1)*facePool; y++ {
				for x := bx * facePool; x < (bx+1)*facePool; x++ {
					s += z[y*n+x]
				}
			}
			out = append(out, s/(facePool*facePool))
		}
	}
	const m = faceCellSide
	var h [m * m * faceBins]float64
	for y := 0; y < m*faceCell; y++ {
		for x := 0; x < m*faceCell; x++ {
			gx := z[y*n+min(x+1, n-1)] - z[y*n+max(x-1, 0)]
			gy := z[min(y+1, n-1)*n+x] - z[max(y-1, 0)*n+x]
			k, a, b := octant(gx, gy)
			c := ((y/faceCell)*m + x/faceCell) * faceBins
			h[c+k] += a
			h[c+(k+1)%faceBins] += b
		}
	}
	var e [m * m]float64
	for i := range e {
		for _, v := range h[i*faceBins : (i+1)*faceBins] {
			e[i] += v * v
		}
	}
	for cy := 0; cy < m; cy++ {
		for cx := 0; cx < m; cx++ {
			var s float64
			var k int
			for yy := max(cy-1, 0); yy <= min(cy+1, m-1); yy++ {
				for xx := max(cx-1, 0); xx <= min(cx+1, m-1); xx++ {
					s += e[yy*m+xx]
					k++
				}
			}
			r := math.Sqrt(s/float64(k)) + 1e-3
			for _, v := range h[(cy*m+cx)*faceBins : (cy*m+cx+1)*faceBins] {
				out = append(out, v/r)
			}
		}
	}
	return out
}

// octant splits the gradient (gx, gy) between the two of the faceBins
// directions (45° apart from +x, 0°, through +y, 90°: down the chip) either
// side of it: (gx, gy) = a·dₖ + b·dₖ₊₁ with a, b ≥ 0, dₖ the unit vector at
// k·45° (d₈ = d₀).
func octant(gx, gy float64) (k int, a, b float64) {
	switch {
	case gy >= 0 && gx >= gy:
		return 0, gx - gy, math.Sqrt2 * gy
	case gx >= 0 && gy >= 0:
		return 1, math.Sqrt2 * gx, gy - gx
	case gy >= -gx && gy >= 0:
		return 2, gy + gx, -math.Sqrt2 * gx
	case gy >= 0:
		return 3, math.Sqrt2 * gy, -gx - gy
	case gx <= gy:
		return 4, gy - gx, -math.Sqrt2 * gy
	case gx <= 0:
		return 5, -math.Sqrt2 * gx, gx - gy
	case gx <= -gy:
		return 6, -gy - gx, math.Sqrt2 * gx
	default:
		return 7, -math.Sqrt2 * gy, gx + gy
	}
}

// faceLogit is the classifier's log-odds that x (faceChipZ) is the chip of
// a real upright face: faceOut + Σₖ faceOutW[k]·tanh(faceHiddenB[k] +
// faceHiddenW[k]·x).
func faceLogit(x []float64) float64 {
	s := float64(faceOut)
	for k := range faceHiddenW {
		a := float64(faceHiddenB[k])
		for j, w := range faceHiddenW[k] {
			a += float64(w) * x[j]
		}
		s += float64(faceOutW[k]) * math.Tanh(a)
	}
	return s
}
