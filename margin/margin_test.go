package margin

import (
	"math"
	"math/rand/v2"
	"testing"
)

func randMat(r *rand.Rand, n, d int, scale float64) [][]float64 {
	m := make([][]float64, n)
	for i := range m {
		m[i] = make([]float64, d)
		for j := range m[i] {
			m[i][j] = scale * r.NormFloat64()
		}
	}
	return m
}

func allLosses(t testing.TB, c, d int) map[string]Loss {
	t.Helper()
	must := mustLoss(t)
	r := rand.New(rand.NewPCG(7, 7))
	return map[string]Loss{
		"softmax":      NewSoftmax(),
		"arcface":      must(NewArcFace(8, 0.5, false)),
		"arcface-easy": must(NewArcFace(8, 0.5, true)),
		"cosface":      must(NewCosFace(8, 0.35)),
		"sphereface1":  must(NewSphereFace(1, 3)),
		"sphereface2":  must(NewSphereFace(2, 3)),
		"sphereface3":  must(NewSphereFace(3, 3)),
		"sphereface4":  must(NewSphereFace(4, 3)),
		"center":       must(NewCenterLoss(0.1, randMat(r, c, d, 1))),
		"combined":     must(NewCombined(8, 1.2, 0.3, 0.2)),
	}
}

func clone(m [][]float64) [][]float64 {
	out := make([][]float64, len(m))
	for i := range m {
		out[i] = append([]float64(nil), m[i]...)
	}
	return out
}

// TestGradientFiniteDifference checks every head's analytic gradients with
// respect to x and w against central differences of its float64 loss.
func TestGradientFiniteDifference(t *testing.T) {
	const n, d, c = 6, 5, 4
	for name, head := range allLosses(t, c, d) {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			x, w := randMat(r, n, d, 1), randMat(r, c, d, 1)
			labels := []int{0, 1, 2, 3, 1, 2}
			loss, gx, gw, err := Evaluate(head, x, w, labels)
			if err != nil {
				t.Fatal(err)
			}
			if math.IsNaN(loss) || loss <= 0 {
				t.Fatalf("loss %v", loss)
			}
			checkFiniteDifferences(t, head, x, w, labels, gx, gw)
		})
	}
}

// TestParallelRowsMatchSerial runs a batch big enough for the kernels to
// split rows across goroutines and compares the loss with the mean of the
// single-sample losses (which run serially).
func TestParallelRowsMatchSerial(t *testing.T) {
	const n, d, c = 40, 4, 2000
	r := rand.New(rand.NewPCG(5, 6))
	x, w := randMat(r, n, d, 1), randMat(r, c, d, 1)
	labels := make([]int, n)
	for i := range labels {
		labels[i] = r.IntN(c)
	}
	h, _ := NewArcFace(16, 0.5, false)
	loss, _, _, err := Evaluate(h, x, w, labels)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for i := range x {
		l, _, _, err := Evaluate(h, x[i:i+1], w, labels[i:i+1])
		if err != nil {
			t.Fatal(err)
		}
		sum += l
	}
	if math.Abs(loss-sum/n) > 1e-12*(1+math.Abs(loss)) {
		t.Errorf("batch loss %v, mean of single losses %v", loss, sum/n)
	}
}

// checkFiniteDifferences compares the analytic gradients gx and gw (nil for
// the pair losses) of head's loss with central differences (step 10⁻⁶,
// tolerance 10⁻⁵ relative) and returns how many gradient entries are
// non-zero.
func checkFiniteDifferences(t *testing.T, head Loss, x, w [][]float64, labels []int, gx, gw [][]float64) int {
	t.Helper()
	const h = 1e-6
	nonzero := 0
	check := func(which string, m [][]float64, grad [][]float64) {
		for i := range m {
			for j := range m[i] {
				orig := m[i][j]
				m[i][j] = orig + h
				lp, _, _, err := Evaluate(head, x, w, labels)
				if err != nil {
					t.Fatal(err)
				}
				m[i][j] = orig - h
				lm, _, _, err := Evaluate(head, x, w, labels)
				if err != nil {
					t.Fatal(err)
				}
				m[i][j] = orig
				num := (lp - lm) / (2 * h)
				if diff := math.Abs(num - grad[i][j]); diff > 1e-5*(1+math.Abs(num)) {
					t.Errorf("d/d%s[%d][%d]: analytic %.9g, numeric %.9g", which, i, j, grad[i][j], num)
				}
				if grad[i][j] != 0 {
					nonzero++
				}
			}
		}
	}
	check("x", x, gx)
	if w != nil {
		check("w", w, gw)
	}
	return nonzero
}

// mustLoss returns a function that unwraps a constructor's (Loss, error),
// failing tb on an error.
func mustLoss(tb testing.TB) func(Loss, error) Loss {
	return func(h Loss, err error) Loss {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
		return h
	}
}
