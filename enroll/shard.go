package enroll

import (
	"fmt"
	"strconv"
	"strings"
)

// Shard names the part of a gallery one node keeps in its index when the
// index is split across nodes (`facever serve --shard i/n`): the identities
// whose ShardOf is Index. The zero Shard (Count 0) keeps everything.
//
// Only the in-memory index is split: the store (identities, templates, keys)
// stays whole and shared, every node may write to it, and a node reads any
// identity or template from it.
type Shard struct {
	// Index is this node's part, 0 ≤ Index < Count.
	Index int
	// Count is the number of parts (0 or 1: no sharding).
	Count int
}

// ShardOf is the part, 0 ≤ ShardOf < n, that identity id belongs to out of
// n: the 64-bit FNV-1a hash of the id's 8 big-endian bytes, mod n. It is
// stable (part of the deployment's contract: a node of shard i keeps the same
// identities after any restart, on any machine, in any language: offset
// basis 14695981039346656037, prime 1099511628211, xor each byte then
// multiply) and spreads consecutive ids evenly (see the balance test).
func ShardOf(id uint64, n int) int {
	if n <= 1 {
		return 0
	}
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 7; i >= 0; i-- {
		h ^= (id >> (8 * uint(i))) & 0xff
		h *= prime
	}
	return int(h % uint64(n))
}

// Owns reports whether identity id belongs in this shard's index (always
// for the zero Shard).
func (s Shard) Owns(id uint64) bool {
	return s.Count <= 1 || ShardOf(id, s.Count) == s.Index
}

// Sharded reports whether the shard keeps only part of the gallery.
func (s Shard) Sharded() bool { return s.Count > 1 }

// String writes the shard as ParseShard reads it ("1/3"; "" for the zero
// Shard).
func (s Shard) String() string {
	if s.Count == 0 {
		return ""
	}
	return fmt.Sprintf("%d/%d", s.Index, s.Count)
}

// MaxShards bounds a shard count.
const MaxShards = 1024

// ParseShard reads "i/n" (0 ≤ i < n ≤ MaxShards).
func ParseShard(v string) (Shard, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(v), "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil {
		return Shard{}, fmt.Errorf("%w: shard %q: want i/n, say 0/3 (part i of n, counted from 0)", ErrInvalid, v)
	}
	if n < 1 || n > MaxShards || i < 0 || i >= n {
		return Shard{}, fmt.Errorf("%w: shard %q: want 0 ≤ i < n ≤ %d", ErrInvalid, v, MaxShards)
	}
	return Shard{Index: i, Count: n}, nil
}
