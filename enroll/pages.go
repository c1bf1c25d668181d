package enroll

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
)

// pageWalker checks the page structure of a bbolt file by reading it with
// bounds-checked reads of its own (no mmap, no bbolt code): every page
// reachable from the meta page (buckets, branches, leaves, overflow) and
// from the freelist exactly once, in range, of the right type, with its
// elements inside the page and its keys in order; and every page below the
// high-water mark reachable or free. It is what bbolt's tx.Check checks,
// but it cannot crash on a damaged file: tx.Check runs in a goroutine of its
// own, where bbolt's panics on such a file cannot be recovered, so Check
// runs it only once this walk has found the structure sound.
type pageWalker struct {
	f        *os.File
	pageSize int
	hwm      uint64 // pages in use (the meta's high-water mark)
	seen     map[uint64]bool
	report   func(format string, args ...any)
	bad      bool
}

const (
	pageBranch   = 0x01
	pageLeaf     = 0x02
	pageMeta     = 0x04
	pageFreelist = 0x10
	leafBucket   = 0x01
	pageHeader   = 16
	elemSize     = 16
	maxDepth     = 64
)

func (w *pageWalker) fail(format string, args ...any) {
	w.bad = true
	w.report(format, args...)
}

// read returns page id with its overflow pages, after checking its header.
func (w *pageWalker) read(id uint64, from string) []byte {
	if id < 2 || id >= w.hwm {
		w.fail("page %d (from %s): out of range [2, %d)", id, from, w.hwm)
		return nil
	}
	first := make([]byte, w.pageSize)
	if _, err := w.f.ReadAt(first, int64(id)*int64(w.pageSize)); err != nil {
		w.fail("page %d: %v", id, err)
		return nil
	}
	hdr := first[:pageHeader]
	overflow := uint64(binary.LittleEndian.Uint32(hdr[12:]))
	if got := binary.LittleEndian.Uint64(hdr); got != id {
		w.fail("page %d (from %s) says it is page %d", id, from, got)
		return nil
	}
	if id+overflow >= w.hwm {
		w.fail("page %d: %d overflow pages run past the end (%d)", id, overflow, w.hwm)
		return nil
	}
	for i := id; i <= id+overflow; i++ {
		if w.seen[i] {
			w.fail("page %d (from %s): reached twice", i, from)
			return nil
		}
		w.seen[i] = true
	}
	if overflow == 0 {
		return first
	}
	p := make([]byte, int(1+overflow)*w.pageSize)
	copy(p, first)
	if _, err := w.f.ReadAt(p[w.pageSize:], int64(id+1)*int64(w.pageSize)); err != nil {
		w.fail("page %d: %v", id, err)
		return nil
	}
	return p
}

// elements returns the count of a branch or leaf page, checked against the
// page's size.
func (w *pageWalker) elements(p []byte, name string) (int, bool) {
	n := int(binary.LittleEndian.Uint16(p[10:]))
	if pageHeader+n*elemSize > len(p) {
		w.fail("%s: %d elements do not fit in %d bytes", name, n, len(p))
		return 0, false
	}
	return n, true
}

// span returns p[off:off+n] or reports it out of bounds.
func (w *pageWalker) span(p []byte, off, n uint64, name string) ([]byte, bool) {
	if off > uint64(len(p)) || n > uint64(len(p))-off {
		w.fail("%s: element out of the page", name)
		return nil, false
	}
	return p[off : off+n], true
}

// walk checks a page of a bucket's tree (or an inline bucket's page, id 0)
// and everything below it.
func (w *pageWalker) walk(p []byte, id uint64, depth int, bucket string) {
	name := fmt.Sprintf("page %d of bucket %q", id, bucket)
	if depth > maxDepth {
		w.fail("%s: tree deeper than %d", name, maxDepth)
		return
	}
	if len(p) < pageHeader {
		w.fail("%s: shorter than a page header", name)
		return
	}
	n, ok := w.elements(p, name)
	if !ok {
		return
	}
	var prev []byte
	ordered := func(k []byte, i int) bool {
		if i > 0 && bytes.Compare(prev, k) >= 0 {
			w.fail("%s: keys out of order at element %d", name, i)
			return false
		}
		prev = k
		return true
	}
	switch flags := binary.LittleEndian.Uint16(p[8:]); flags {
	case pageBranch:
		if n == 0 {
			w.fail("%s: empty branch", name)
			return
		}
		for i := range n {
			e := p[pageHeader+i*elemSize:]
			pos, ksize, child := uint64(binary.LittleEndian.Uint32(e)), uint64(binary.LittleEndian.Uint32(e[4:])), binary.LittleEndian.Uint64(e[8:])
			k, ok := w.span(p, uint64(pageHeader+i*elemSize)+pos, ksize, name)
			if !ok || !ordered(k, i) {
				return
			}
			cp := w.read(child, name)
			if cp == nil {
				return
			}
			w.walk(cp, child, depth+1, bucket)
			if w.bad {
				return
			}
		}
	case pageLeaf:
		for i := range n {
			e := p[pageHeader+i*elemSize:]
			fl, pos := binary.LittleEndian.Uint32(e), uint64(binary.LittleEndian.Uint32(e[4:]))
			ksize, vsize := uint64(binary.LittleEndian.Uint32(e[8:])), uint64(binary.LittleEndian.Uint32(e[12:]))
			k, ok := w.span(p, uint64(pageHeader+i*elemSize)+pos, ksize, name)
			if !ok || !ordered(k, i) {
				return
			}
			v, ok := w.span(p, uint64(pageHeader+i*elemSize)+pos+ksize, vsize, name)
			if !ok {
				return
			}
			if fl&leafBucket != 0 {
				w.bucket(v, string(k), depth+1)
				if w.bad {
					return
				}
			}
		}
	default:
		w.fail("%s: unexpected page type %#x", name, flags)
	}
}

// bucket checks a bucket value: its root page, or its inline page.
func (w *pageWalker) bucket(v []byte, name string, depth int) {
	if len(v) < 16 {
		w.fail("bucket %q: header of %d bytes", name, len(v))
		return
	}
	root := binary.LittleEndian.Uint64(v)
	if root == 0 {
		w.walk(v[16:], 0, depth, name)
		return
	}
	if p := w.read(root, "bucket "+name); p != nil {
		w.walk(p, root, depth, name)
	}
}

// checkPages runs the walk on a file, from the meta page of transaction
// txid, reporting problems; it returns whether the structure is sound.
func checkPages(path string, txid uint64, report func(format string, args ...any)) bool {
	f, err := os.Open(path)
	if err != nil {
		report("pages: %v", err)
		return false
	}
	defer f.Close()
	fm, err := readFileMeta(path)
	if err != nil {
		report("pages: %v", err)
		return false
	}
	// The meta page of txid: page txid%2 as bbolt commits, but either in a
	// copy made by tx.WriteTo (both pages hold the same tree there).
	meta := make([]byte, metaSumEnd+8)
	var hwm uint64
	found := false
	for _, pg := range []uint64{txid % 2, 1 - txid%2} {
		if _, err := f.ReadAt(meta, int64(pg)*int64(fm.pageSize)); err != nil {
			report("pages: meta page: %v", err)
			return false
		}
		var mtx uint64
		if _, hwm, mtx, err = parseMeta(meta); err == nil && mtx == txid {
			found = true
			break
		}
	}
	if !found {
		// A commit rewrote that meta page meanwhile: report nothing.
		return false
	}
	w := &pageWalker{f: f, pageSize: fm.pageSize, hwm: hwm, seen: map[uint64]bool{0: true, 1: true}, report: report}
	le := binary.LittleEndian
	rootBucket := make([]byte, 16)
	le.PutUint64(rootBucket, le.Uint64(meta[metaOffset+16:]))
	w.bucket(rootBucket, "(root)", 0)
	free := map[uint64]bool{}
	if fl := le.Uint64(meta[metaOffset+32:]); !w.bad && fl != ^uint64(0) {
		p := w.read(fl, "meta")
		if p != nil && le.Uint16(p[8:]) != pageFreelist {
			w.fail("freelist page %d has type %#x", fl, le.Uint16(p[8:]))
		} else if p != nil {
			n, ids := uint64(le.Uint16(p[10:])), p[pageHeader:]
			if n == 0xFFFF {
				n, ids = le.Uint64(ids), ids[8:]
			}
			if n > uint64(len(ids)/8) {
				w.fail("freelist page %d: %d ids do not fit", fl, n)
			}
			for i := uint64(0); i < n && !w.bad; i++ {
				id := le.Uint64(ids[8*i:])
				switch {
				case id < 2 || id >= hwm:
					w.fail("freelist: page %d out of range", id)
				case free[id]:
					w.fail("freelist: page %d freed twice", id)
				case w.seen[id]:
					w.fail("page %d is both in use and free", id)
				}
				free[id] = true
			}
		}
	}
	for id := uint64(2); id < hwm && !w.bad; id++ {
		if !w.seen[id] && !free[id] {
			w.fail("page %d: unreachable and not free", id)
		}
	}
	return !w.bad
}
