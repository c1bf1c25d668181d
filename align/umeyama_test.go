package align

import (
	"math"
	"math/rand"
	"testing"
)

func TestSimilarityRecoversKnownTransforms(t *testing.T) {
	tests := []struct {
		name         string
		scale, angle float64
		tx, ty       float64
		noise        float64
	}{
		{"identity", 1, 0, 0, 0, 0},
		{"translation", 1, 0, 12.5, -7.25, 0},
		{"scale down", 0.37, 0, 3, 4, 0},
		{"rotate 30°", 1.2, math.Pi / 6, -40, 10, 0},
		{"rotate -170°", 2.5, -170 * math.Pi / 180, 100, 200, 0},
		{"rotate 90° with noise", 0.8, math.Pi / 2, 5, 5, 0.01},
	}
	rng := rand.New(rand.NewSource(1))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs, sn := tc.scale*math.Cos(tc.angle), tc.scale*math.Sin(tc.angle)
			want := Affine{{cs, -sn, tc.tx}, {sn, cs, tc.ty}}
			src := make([]Point, 5)
			dst := make([]Point, 5)
			for i := range src {
				src[i] = Point{rng.Float64() * 200, rng.Float64() * 200}
				dst[i] = want.Apply(src[i])
				dst[i].X += tc.noise * rng.NormFloat64()
				dst[i].Y += tc.noise * rng.NormFloat64()
			}
			got, err := Similarity(src, dst)
			if err != nil {
				t.Fatal(err)
			}
			tol := 1e-9 + 10*tc.noise
			for r := 0; r < 2; r++ {
				for c := 0; c < 3; c++ {
					d := math.Abs(got[r][c] - want[r][c])
					if c == 2 {
						d /= 100 // translations are in pixels
					}
					if d > tol {
						t.Errorf("entry [%d][%d] = %.9f, want %.9f", r, c, got[r][c], want[r][c])
					}
				}
			}
		})
	}
}

// TestSimilarityIsLeastSquares checks optimality on noisy points against a
// brute-force search: no nearby similarity has a lower squared error.
func TestSimilarityIsLeastSquares(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	src := make([]Point, 5)
	dst := Template[:]
	for i := range src {
		src[i] = Point{dst[i].X*1.7 + 30 + 4*rng.NormFloat64(), dst[i].Y*1.7 - 12 + 4*rng.NormFloat64()}
	}
	m, err := Similarity(src, dst)
	if err != nil {
		t.Fatal(err)
	}
	cost := func(a, b, tx, ty float64) float64 {
		var s float64
		for i := range src {
			x := a*src[i].X - b*src[i].Y + tx - dst[i].X
			y := b*src[i].X + a*src[i].Y + ty - dst[i].Y
			s += x*x + y*y
		}
		return s
	}
	best := cost(m[0][0], m[1][0], m[0][2], m[1][2])
	for i := 0; i < 2000; i++ {
		da, db := 1e-3*rng.NormFloat64(), 1e-3*rng.NormFloat64()
		dx, dy := 0.1*rng.NormFloat64(), 0.1*rng.NormFloat64()
		if c := cost(m[0][0]+da, m[1][0]+db, m[0][2]+dx, m[1][2]+dy); c < best-1e-9 {
			t.Fatalf("perturbed transform has cost %.6f < %.6f", c, best)
		}
	}
}

func TestSimilarityRejectsReflection(t *testing.T) {
	// Mirrored points: the best proper similarity must keep det > 0.
	src := Template[:]
	dst := make([]Point, 5)
	for i, p := range src {
		dst[i] = Point{-p.X, p.Y}
	}
	m, err := Similarity(src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if det := m[0][0]*m[1][1] - m[0][1]*m[1][0]; det <= 0 {
		t.Fatalf("determinant %.4f: the transform reflects", det)
	}
}

func TestSimilarityDegenerate(t *testing.T) {
	same := []Point{{5, 5}, {5, 5}, {5, 5}, {5, 5}, {5, 5}}
	if _, err := Similarity(same, Template[:]); err == nil {
		t.Fatal("coincident points: want an error")
	}
	if _, err := Similarity(same[:1], Template[:1]); err == nil {
		t.Fatal("one point: want an error")
	}
}
