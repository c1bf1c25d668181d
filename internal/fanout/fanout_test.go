package fanout

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/facever/facever/enroll"
)

// TestMergeEqualsSort: the k-way merge of sorted, disjoint lists equals
// sorting their union (score descending, identity id ascending) and taking
// k, over many random cases with many equal scores, up to 40 lists (past
// the merge's fixed buffer).
func TestMergeEqualsSort(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 3000 {
		nl := 1 + r.IntN(5)
		if round%50 == 0 {
			nl = 17 + r.IntN(24)
		}
		lists := make([][]enroll.Match, nl)
		var all []enroll.Match
		id := uint64(0)
		for i := range lists {
			for range r.IntN(12) {
				id += 1 + uint64(r.IntN(3))
				m := enroll.Match{IdentityID: id, Score: float32(r.IntN(6)) / 5, TemplateID: id * 10}
				lists[i] = append(lists[i], m)
				all = append(all, m)
			}
			slices.SortFunc(lists[i], cmp)
		}
		slices.SortFunc(all, cmp)
		k := r.IntN(len(all) + 3)
		want := all[:min(k, len(all))]
		got := Merge(nil, lists, k)
		if len(want) == 0 {
			want = nil
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d k=%d: merged %v, want %v", round, k, got, want)
		}
	}
}

func cmp(a, b enroll.Match) int {
	switch {
	case Before(a, b):
		return -1
	case Before(b, a):
		return 1
	}
	return 0
}

func TestMergeAllocs(t *testing.T) {
	lists := [][]enroll.Match{{{IdentityID: 1, Score: 0.9}}, {{IdentityID: 2, Score: 0.8}}, {{IdentityID: 3, Score: 0.95}}}
	dst := make([]enroll.Match, 0, 3)
	if n := testing.AllocsPerRun(100, func() { dst = Merge(dst[:0], lists, 3) }); n != 0 {
		t.Errorf("Merge allocates %v times", n)
	}
	if dst[0].IdentityID != 3 || dst[2].IdentityID != 2 {
		t.Errorf("merged %v", dst)
	}
}

func TestNewRefusesBadURLs(t *testing.T) {
	for _, urls := range [][]string{nil, {"127.0.0.1:8080"}, {"http://"}, {"http://h:1/v1"}, {"ftp://h:1"}} {
		if _, err := New(urls, 0); err == nil {
			t.Errorf("New(%q) accepted", urls)
		}
	}
	c, err := New([]string{"http://127.0.0.1:1/", Self, " https://h:2"}, 0)
	if err != nil || c.URL(0) != "http://127.0.0.1:1" || c.URL(2) != "https://h:2" || c.Timeout() != DefaultTimeout || c.Shards() != 3 {
		t.Fatalf("New: %v %+v", err, c)
	}
}
