package main

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/facever/facever/verify"
)

// qualityBand is eval --by-quality's accuracy over the pairs whose lower
// face quality (the smaller of the two photos' align.Quality scores) lies
// in [Min, Max), the last band including 1; Unknown is the band of pairs
// with a photo without a face or without a quality (--aligned).
type qualityBand struct {
	Min      *float64 `json:"min,omitempty"`
	Max      *float64 `json:"max,omitempty"`
	Unknown  bool     `json:"unknown,omitempty"`
	Pairs    int      `json:"pairs"`
	Genuine  int      `json:"genuine"`
	Impostor int      `json:"impostor"`
	Correct  int      `json:"correct"`
	// Accuracy is Correct / Pairs (0 for an empty band).
	Accuracy float64 `json:"accuracy"`
}

// parseBandEdges reads --quality-bands: increasing edges strictly between
// 0 and 1.
func parseBandEdges(s string) ([]float64, error) {
	var edges []float64
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v <= 0 || v >= 1 || math.IsNaN(v) {
			return nil, fmt.Errorf("--quality-bands: %q is not a number between 0 and 1 (exclusive)", f)
		}
		if len(edges) > 0 && v <= edges[len(edges)-1] {
			return nil, fmt.Errorf("--quality-bands: the edges must increase (%g after %g)", v, edges[len(edges)-1])
		}
		edges = append(edges, v)
	}
	return edges, nil
}

// qualityBands splits the pairs by their lower face quality at edges and
// gives each band's accuracy at threshold (a pair scores at or above it:
// decided "same"; a pair without a score is decided "different", as
// eval's accuracy counts it).
func qualityBands(ps *verify.PairSet, scores []float64, quality map[string]float64, threshold float64, edges []float64) []qualityBand {
	bounds := append(append([]float64{0}, edges...), 1)
	bands := make([]qualityBand, len(bounds)) // the last one is Unknown
	for i := 0; i+1 < len(bounds); i++ {
		lo, hi := bounds[i], bounds[i+1]
		bands[i].Min, bands[i].Max = &lo, &hi
	}
	bands[len(bands)-1].Unknown = true
	for i, p := range ps.Pairs {
		qa, oka := quality[p.A]
		qb, okb := quality[p.B]
		q := math.Min(qa, qb)
		b := &bands[len(bands)-1]
		if oka && okb && !math.IsNaN(q) && !math.IsNaN(scores[i]) {
			k := sort.Search(len(edges), func(j int) bool { return edges[j] > q })
			b = &bands[k]
		}
		b.Pairs++
		if p.Same {
			b.Genuine++
		} else {
			b.Impostor++
		}
		if (scores[i] >= threshold) == p.Same { // NaN: never ≥, decided "different"
			b.Correct++
		}
	}
	for i := range bands {
		if bands[i].Pairs > 0 {
			bands[i].Accuracy = float64(bands[i].Correct) / float64(bands[i].Pairs)
		}
	}
	return bands
}

// printQualityBands writes the bands as a table.
func printQualityBands(w interface{ Write([]byte) (int, error) }, bands []qualityBand, threshold float64) {
	fmt.Fprintf(w, "accuracy by the pair's lower face quality (threshold %.4f, the folds' mean):\n", threshold)
	fmt.Fprintf(w, "  %-13s %7s %7s %9s %9s\n", "quality", "pairs", "same", "different", "accuracy")
	for _, b := range bands {
		name := "no face"
		if !b.Unknown {
			close := ")"
			if *b.Max == 1 {
				close = "]"
			}
			name = fmt.Sprintf("[%.2f, %.2f%s", *b.Min, *b.Max, close)
		}
		acc := "–"
		if b.Pairs > 0 {
			acc = fmt.Sprintf("%.2f%%", 100*b.Accuracy)
		}
		fmt.Fprintf(w, "  %-13s %7d %7d %9d %9s\n", name, b.Pairs, b.Genuine, b.Impostor, acc)
	}
}
