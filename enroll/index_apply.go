package enroll

import (
	"fmt"
	"slices"
)

// ChangeKind says what a Change does to an Index.
type ChangeKind uint8

const (
	// AddTemplate adds template TemplateID, Embedding, to identity
	// IdentityID, called Name (renaming it if it had another name). A
	// template already in the index is not added twice.
	AddTemplate ChangeKind = iota + 1
	// RemoveTemplate removes template TemplateID of identity IdentityID
	// (nothing when the index does not have it).
	RemoveTemplate
	// RemoveIdentity removes every template of identity IdentityID.
	RemoveIdentity
	// RenameIdentity gives identity IdentityID the name Name.
	RenameIdentity
)

// String names the kind as the PostgreSQL change log does.
func (k ChangeKind) String() string {
	switch k {
	case AddTemplate:
		return "add_template"
	case RemoveTemplate:
		return "remove_template"
	case RemoveIdentity:
		return "remove_identity"
	case RenameIdentity:
		return "rename"
	}
	return fmt.Sprintf("ChangeKind(%d)", uint8(k))
}

// Change is one edit of an Index (see Apply).
type Change struct {
	// Kind says what the change does.
	Kind ChangeKind
	// IdentityID is the identity changed.
	IdentityID uint64
	// TemplateID is the template added or removed.
	TemplateID uint64
	// Name is the identity's name (AddTemplate, RenameIdentity).
	Name string
	// Embedding is the template added (AddTemplate); it is copied.
	Embedding []float32
}

// compactMin is the fewest tombstones (or identities left without a
// template) worth a compaction; the tests lower it.
var compactMin = 4096

// Apply returns a new snapshot of the index with changes applied in order,
// tagged with version; ix itself does not change, and Searchers of ix go
// on working during and after the call. Its cost is that of the changes
// (plus a copy of the tombstone bitmap, n/8 bytes, when something is
// removed), not of the index: rows are shared with ix. When a quarter of
// the rows have become tombstones (or half the identities have no template
// left), the new snapshot is compacted: its live rows are copied once.
//
// Apply is meant to be called on the newest snapshot (the one the last
// Apply returned); called on an older one, it first copies that one (a
// compaction) so that both chains stay intact. Calls are serialised.
// An invalid embedding fails the whole call and changes nothing.
func (ix *Index) Apply(version uint64, changes []Change) (*Index, error) {
	var invs []float32
	for i, c := range changes {
		switch c.Kind {
		case AddTemplate:
			inv, err := ix.inverseNorm(c.TemplateID, c.Embedding)
			if err != nil {
				return nil, fmt.Errorf("apply change %d (%v of identity %d): %w", i, c.Kind, c.IdentityID, err)
			}
			if invs == nil {
				invs = make([]float32, len(changes))
			}
			invs[i] = inv
		case RemoveTemplate, RemoveIdentity, RenameIdentity:
		default:
			return nil, fmt.Errorf("%w: apply change %d: unknown kind %v", ErrInvalid, i, c.Kind)
		}
	}
	lin := ix.lin
	lin.mu.Lock()
	if lin.tip != ix {
		lin.mu.Unlock()
		ix = ix.Compact()
		lin = ix.lin
		lin.mu.Lock()
	}
	defer lin.mu.Unlock()
	nx := ix.derive(version)
	owned := false // nx.dead is nx's own copy
	for i, c := range changes {
		switch c.Kind {
		case AddTemplate:
			s := nx.slotFor(c.IdentityID, c.Name)
			if nx.findRow(s, c.TemplateID) >= 0 {
				continue
			}
			r, blk := nx.newRow(s, c.TemplateID)
			if nx.int8 {
				quantize(&blk.q8, &blk.scale, c.Embedding, invs[i])
			} else {
				row := growTail(&blk.data, nx.dim)
				for j, x := range c.Embedding {
					row[j] = x * invs[i]
				}
			}
			nx.linkRow(s, r)
		case RemoveTemplate:
			if s, ok := lin.slot[c.IdentityID]; ok {
				if r := nx.findRow(s, c.TemplateID); r >= 0 {
					nx.kill(r, &owned)
				}
			}
		case RemoveIdentity:
			if s, ok := lin.slot[c.IdentityID]; ok {
				for r := lin.last[s]; r >= 0; r = lin.prev[r] {
					if !nx.isDead(int(r)) {
						nx.kill(int(r), &owned)
					}
				}
			}
		case RenameIdentity:
			if s, ok := lin.slot[c.IdentityID]; ok && nx.name(s) != c.Name {
				nx.setName(s, c.Name)
			}
		}
	}
	if empty := len(nx.ids) - nx.nident; nx.ndead >= compactMin && 4*nx.ndead >= nx.n || empty >= compactMin && 2*empty >= len(nx.ids) {
		lin.tip = nil // every snapshot of this chain is now an old one
		return nx.Compact(), nil
	}
	lin.tip = nx
	return nx, nil
}

// derive returns a snapshot that shares ix's rows and may grow past them:
// its own spine of blocks and of name chunks, so that appending to its tail
// block or renaming leaves ix as it was.
func (ix *Index) derive(version uint64) *Index {
	nx := *ix
	nx.blocks = slices.Clone(ix.blocks)
	nx.names = slices.Clone(ix.names)
	nx.version, nx.hint = version, 0
	return &nx
}

// findRow returns slot s's live row holding template tid, or -1.
func (ix *Index) findRow(s int32, tid uint64) int {
	lin := ix.lin
	for r := lin.last[s]; r >= 0; r = lin.prev[r] {
		if ix.tid(int(r)) == tid && !ix.isDead(int(r)) {
			return int(r)
		}
	}
	return -1
}

// kill makes row r a tombstone, copying the bitmap on the first one of an
// Apply (*owned), since older snapshots share it.
func (ix *Index) kill(r int, owned *bool) {
	w := r >> 6
	if !*owned {
		d := make([]uint64, max(w+1, len(ix.dead)), (ix.n+63)/64+16)
		copy(d, ix.dead)
		ix.dead, *owned = d, true
	}
	for w >= len(ix.dead) {
		ix.dead = append(ix.dead, 0)
	}
	ix.dead[w] |= 1 << (r & 63)
	ix.ndead++
	s := ix.owner(r)
	if ix.lin.live[s]--; ix.lin.live[s] == 0 {
		ix.nident--
	}
}

// Compact returns a copy of the index without its tombstones and without
// identities left with no template (a new chain: Apply on it does not
// disturb ix's).
func (ix *Index) Compact() *Index {
	c := NewIndex(ix.dim, ix.Len())
	c.int8, c.version = ix.int8, ix.version
	d := ix.dim
	ix.eachLive(func(r int, s int32) {
		cs := c.slotFor(ix.ids[s], ix.name(s))
		cr, blk := c.newRow(cs, ix.tid(r))
		src := &ix.blocks[r>>blockShift]
		i := r & (blockRows - 1)
		if ix.int8 {
			copy(growTail(&blk.q8, d), src.q8[i*d:(i+1)*d])
			blk.scale = append(blk.scale, src.scale[i])
		} else {
			copy(growTail(&blk.data, d), src.data[i*d:(i+1)*d])
		}
		c.linkRow(cs, cr)
	})
	return c
}
