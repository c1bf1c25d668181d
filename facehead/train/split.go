package train

import (
	"math/rand/v2"
	"slices"
	"sort"
)

// SplitOptions choose which identities Split holds out for validation.
type SplitOptions struct {
	// HeldOut is the share (0 ≤ HeldOut < 1) of the eligible identities held
	// out, rounded to the nearest whole identity.
	HeldOut float64
	// Seed draws the identities.
	Seed int64
	// MinPhotos: identities with fewer photos always train (validation pairs
	// need two photos of a person). 0 means 1.
	MinPhotos int
	// AtLeastOne keeps at least one identity on each side when two or more
	// are eligible, even where HeldOut rounds to none or all of them.
	AtLeastOne bool
}

// Split is the one identity split of facever's training: photos[i] is how
// many photos identity i has (identities in a fixed order, e.g. by name), and
// held[i] says whether identity i is held out. The eligible identities are
// shuffled with a PCG generator seeded by opt.Seed and the first
// round(HeldOut × eligible) are held out, so the same seed and the same
// people give the same split on every machine.
func Split(photos []int, opt SplitOptions) (held []bool) {
	minPhotos := max(opt.MinPhotos, 1)
	var eligible []int
	for i, n := range photos {
		if n >= minPhotos {
			eligible = append(eligible, i)
		}
	}
	rng := rand.New(rand.NewPCG(uint64(opt.Seed), 0x9e3779b97f4a7c15))
	rng.Shuffle(len(eligible), func(i, j int) { eligible[i], eligible[j] = eligible[j], eligible[i] })
	k := int(opt.HeldOut*float64(len(eligible)) + 0.5)
	if opt.AtLeastOne {
		if len(eligible) >= 2 {
			k = max(1, min(k, len(eligible)-1))
		} else {
			k = 0
		}
	}
	k = max(0, min(k, len(eligible)))
	held = make([]bool, len(photos))
	for _, i := range eligible[:k] {
		held[i] = true
	}
	return held
}

// SplitIdentities splits samples by identity for validation: about heldOut
// (0 < heldOut < 1) of the distinct labels, drawn with seed, go to test with
// all their samples; the rest to train. Both hold sample indices in
// increasing order; each side keeps at least one identity when there are two
// or more. It is Split over the distinct labels in increasing order.
func SplitIdentities(labels []int, heldOut float64, seed int64) (train, test []int) {
	ids := slices.Clone(labels)
	sort.Ints(ids)
	ids = slices.Compact(ids)
	count := make([]int, len(ids))
	for _, l := range labels {
		i, _ := slices.BinarySearch(ids, l)
		count[i]++
	}
	held := Split(count, SplitOptions{HeldOut: heldOut, Seed: seed, AtLeastOne: true})
	for i, l := range labels {
		if j, _ := slices.BinarySearch(ids, l); held[j] {
			test = append(test, i)
		} else {
			train = append(train, i)
		}
	}
	return train, test
}
