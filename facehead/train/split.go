package train

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
)

// SplitIdentities splits samples by identity for validation: about heldOut
// (0 < heldOut < 1) of the distinct labels, drawn with seed, go to test with
// all their samples; the rest to train. Both hold sample indices in
// increasing order; each side keeps at least one identity when there are two
// or more.
func SplitIdentities(labels []int, heldOut float64, seed int64) (train, test []int) {
	ids := slices.Clone(labels)
	sort.Ints(ids)
	ids = slices.Compact(ids)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x5eed))
	rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	k := int(math.Round(heldOut * float64(len(ids))))
	if len(ids) >= 2 {
		k = max(1, min(k, len(ids)-1))
	} else {
		k = 0
	}
	held := make(map[int]bool, k)
	for _, id := range ids[:k] {
		held[id] = true
	}
	for i, l := range labels {
		if held[l] {
			test = append(test, i)
		} else {
			train = append(train, i)
		}
	}
	return train, test
}
