package verify

import (
	"errors"
	"math"
)

// Probe is the top-1 answer of a 1:N search for one probe photo.
type Probe struct {
	// Truth is the probe's identity, "" when the person is not enrolled.
	Truth string `json:"truth"`
	// Best is the identity of the top-1 match ("" when the gallery is empty).
	Best string `json:"best"`
	// Score is the top-1 similarity.
	Score float64 `json:"score"`
}

// OpenSetResult summarises 1:N identification with unknown people at a
// threshold (open-set protocol, as in NIST FRVT 1:N): a probe is answered by
// its top-1 identity when its score is ≥ Threshold, else "unknown".
type OpenSetResult struct {
	// Threshold is the score at or above which a top-1 match is accepted.
	Threshold float64 `json:"threshold"`
	// Known and Unknown count the probes of enrolled and of not-enrolled people.
	Known int `json:"known"`
	// Unknown counts the probes of people not enrolled.
	Unknown int `json:"unknown"`
	// Rank1 is the share of known probes whose top-1 identity is right,
	// whatever the score (closed-set rank-1 rate).
	Rank1 float64 `json:"rank1"`
	// DIR (detection and identification rate) is the share of known probes
	// answered with the right identity (top-1 right and score ≥ threshold).
	DIR float64 `json:"dir"`
	// Misidentified is the share of known probes answered with a wrong
	// identity (score ≥ threshold, top-1 wrong).
	Misidentified float64 `json:"misidentified"`
	// FPIR (false positive identification rate) is the share of unknown
	// probes answered with some identity instead of "unknown".
	FPIR float64 `json:"fpir"`
}

// OpenSet scores a 1:N run at a threshold (see OpenSetResult).
func OpenSet(probes []Probe, threshold float64) (OpenSetResult, error) {
	r := OpenSetResult{Threshold: threshold}
	var rank1, dir, mis, fp int
	for _, p := range probes {
		if math.IsNaN(p.Score) {
			return OpenSetResult{}, errors.New("verify: a probe score is NaN")
		}
		accepted := p.Best != "" && p.Score >= threshold
		if p.Truth == "" {
			r.Unknown++
			if accepted {
				fp++
			}
			continue
		}
		r.Known++
		right := p.Best == p.Truth
		if right {
			rank1++
		}
		switch {
		case accepted && right:
			dir++
		case accepted:
			mis++
		}
	}
	if r.Known+r.Unknown == 0 {
		return OpenSetResult{}, ErrNoPairs
	}
	if r.Known > 0 {
		k := float64(r.Known)
		r.Rank1, r.DIR, r.Misidentified = float64(rank1)/k, float64(dir)/k, float64(mis)/k
	}
	if r.Unknown > 0 {
		r.FPIR = float64(fp) / float64(r.Unknown)
	}
	return r, nil
}
