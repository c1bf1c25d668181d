package align

import (
	"errors"
	"math"
)

// Point is a 2-D point in pixels.
type Point struct{ X, Y float64 }

// Affine is a 2×3 affine transform [a b tx; c d ty] mapping (x, y) to
// (a·x + b·y + tx, c·x + d·y + ty).
type Affine [2][3]float64

// Apply maps p through the transform.
func (m Affine) Apply(p Point) Point {
	return Point{m[0][0]*p.X + m[0][1]*p.Y + m[0][2], m[1][0]*p.X + m[1][1]*p.Y + m[1][2]}
}

// ErrDegenerate is returned when the source points do not determine a
// similarity transform (all points coincide).
var ErrDegenerate = errors.New("degenerate landmarks")

// Similarity returns the least-squares similarity transform (rotation,
// uniform scale, translation; no reflection) that maps src onto dst.
//
// It implements S. Umeyama, "Least-squares estimation of transformation
// parameters between two point patterns", IEEE TPAMI 13(4), 1991, eq. 40–42:
// with centred point sets, the 2×2 covariance Σ = (1/n)·Σ dᵢ·sᵢᵀ has the SVD
// U·D·Vᵀ; R = U·S·Vᵀ with S = diag(1, det(U)·det(V)), scale c = tr(D·S)/σ²ₛ,
// t = μd − c·R·μs. The 2×2 SVD is computed in closed form.
func Similarity(src, dst []Point) (Affine, error) {
	n := len(src)
	if n < 2 || n != len(dst) {
		return Affine{}, errors.New("similarity needs at least two matching point pairs")
	}
	var ms, md Point
	for i := range src {
		ms.X += src[i].X
		ms.Y += src[i].Y
		md.X += dst[i].X
		md.Y += dst[i].Y
	}
	fn := float64(n)
	ms.X, ms.Y, md.X, md.Y = ms.X/fn, ms.Y/fn, md.X/fn, md.Y/fn
	var varS float64
	var c [2][2]float64 // covariance dst × srcᵀ
	for i := range src {
		sx, sy := src[i].X-ms.X, src[i].Y-ms.Y
		dx, dy := dst[i].X-md.X, dst[i].Y-md.Y
		varS += sx*sx + sy*sy
		c[0][0] += dx * sx
		c[0][1] += dx * sy
		c[1][0] += dy * sx
		c[1][1] += dy * sy
	}
	varS /= fn
	for i := range c {
		for j := range c[i] {
			c[i][j] /= fn
		}
	}
	if varS < 1e-12 {
		return Affine{}, ErrDegenerate
	}
	// For 2×2, the optimal rotation with det R = +1 and the trace of D·S have
	// a closed form: write C = [[a, b], [c, d]]; with p = a + d and q = c − b,
	// the best proper rotation angle is atan2(q, p) and tr(D·S) = √(p² + q²).
	// (Maximising tr(Rᵀ·C) over rotations R(θ) gives p·cos θ + q·sin θ.)
	p := c[0][0] + c[1][1]
	q := c[1][0] - c[0][1]
	norm := math.Hypot(p, q)
	if norm < 1e-12 {
		return Affine{}, ErrDegenerate
	}
	cos, sin := p/norm, q/norm
	scale := norm / varS
	a, b := scale*cos, -scale*sin
	cc, d := scale*sin, scale*cos
	return Affine{
		{a, b, md.X - (a*ms.X + b*ms.Y)},
		{cc, d, md.Y - (cc*ms.X + d*ms.Y)},
	}, nil
}
