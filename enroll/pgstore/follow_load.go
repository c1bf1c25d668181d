package pgstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	"github.com/facever/facever/enroll"
	"github.com/jackc/pgx/v5"
)

// copyTemplates streams every template in binary COPY format, by template
// id (so that an identity's rows are in template-id order, as Apply
// appends them).
const copyTemplates = "COPY (SELECT identity_id, id, embedding FROM facever.templates ORDER BY id) TO STDOUT (FORMAT binary)"

// loadCopy reads the whole gallery into a new index in one database
// snapshot (its Version is the newest change the snapshot holds): the
// names of the identities first, then the templates through a binary COPY
// parsed straight into the index's rows (no value is allocated per
// template).
func (s *Store) loadCopy(ctx context.Context) (*enroll.Index, error) {
	var ix *enroll.Index
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var seq, n, people int64
		var dim int
		if err := tx.QueryRow(ctx, `SELECT coalesce((SELECT max(seq) FROM facever.changes), 0),
			(SELECT coalesce(sum(templates), 0) FROM facever.identities), (SELECT count(*) FROM facever.identities),
			(SELECT dim FROM facever.meta)`).Scan(&seq, &n, &people, &dim); err != nil {
			return err
		}
		if n > 0 && dim <= 0 {
			return fmt.Errorf("%w: %d templates but no dimension recorded", enroll.ErrCorrupt, n)
		}
		names := make(map[uint64]string, people)
		rows, err := tx.Query(ctx, "SELECT id, name FROM facever.identities")
		if err != nil {
			return err
		}
		for rows.Next() {
			v := rows.RawValues()
			if len(v) != 2 || len(v[0]) != 8 {
				rows.Close()
				return fmt.Errorf("load index: unexpected identity row shape")
			}
			names[binary.BigEndian.Uint64(v[0])] = string(v[1])
		}
		if rows.Close(); rows.Err() != nil {
			return rows.Err()
		}
		if sh := s.opts.Shard; sh.Sharded() {
			n = n/int64(sh.Count) + n/int64(8*sh.Count) // room for this shard's part, with slack
		}
		ix = enroll.NewIndex(dim, int(n))
		ix.SetVersion(uint64(seq))
		p := &copyParser{ix: ix, names: names, dim: dim, shard: s.opts.Shard}
		if _, err := tx.Conn().PgConn().CopyTo(ctx, p, copyTemplates); err != nil {
			if p.err != nil {
				return p.err
			}
			return err
		}
		if !p.done {
			return fmt.Errorf("load index: the COPY stream ended without its trailer after %d templates", p.rows)
		}
		return nil
	})
	if err != nil {
		return nil, s.wrap("load index", err)
	}
	return ix, nil
}

// copySignature starts a binary COPY stream.
var copySignature = []byte("PGCOPY\n\xff\r\n\x00")

// copyParser is the io.Writer a binary COPY of (identity_id int8, id int8,
// embedding bytea) rows is written to: it adds each row to ix as it comes,
// whatever the cut of the stream into writes (a row split across writes
// is carried in buf, which never holds more than one row).
type copyParser struct {
	ix     *enroll.Index
	names  map[uint64]string
	dim    int
	shard  enroll.Shard // rows of identities it does not own are skipped
	buf    []byte       // an incomplete header or row
	header bool         // the header has been read
	done   bool         // the trailer has been read
	rows   int
	err    error
}

// Write parses what it can of b (and of the carried bytes).
func (p *copyParser) Write(b []byte) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	n := len(b)
	data := b
	if len(p.buf) > 0 {
		p.buf = append(p.buf, b...)
		data = p.buf
	}
	used, err := p.parse(data)
	if err != nil {
		p.err = err
		return 0, err
	}
	rest := data[used:]
	if len(p.buf) > 0 {
		p.buf = p.buf[:copy(p.buf, rest)]
	} else {
		p.buf = append(p.buf[:0], rest...)
	}
	return n, nil
}

// parse consumes the complete units (header, rows, trailer) at the start of
// b and returns how many bytes they took.
func (p *copyParser) parse(b []byte) (int, error) {
	used := 0
	if !p.header {
		if len(b) < 19 {
			return 0, nil
		}
		if !bytes.Equal(b[:11], copySignature) {
			return 0, fmt.Errorf("load index: not a binary COPY stream")
		}
		ext := int(binary.BigEndian.Uint32(b[15:19]))
		if ext > 1<<20 {
			return 0, fmt.Errorf("load index: COPY header extension of %d bytes", ext)
		}
		if len(b) < 19+ext {
			return 0, nil
		}
		used, p.header = 19+ext, true
	}
	for used < len(b) {
		if p.done {
			return 0, fmt.Errorf("load index: data after the COPY trailer")
		}
		r := b[used:]
		if len(r) < 2 {
			break
		}
		switch fields := int16(binary.BigEndian.Uint16(r)); fields {
		case -1:
			p.done = true
			used += 2
			continue
		case 3:
		default:
			return 0, fmt.Errorf("load index: a COPY row of %d fields, want 3", fields)
		}
		// identity_id, id (8 bytes each), embedding (4·dim bytes).
		const head = 2 + 4 + 8 + 4 + 8 + 4
		if len(r) < head {
			break
		}
		if l0, l1 := int32(binary.BigEndian.Uint32(r[2:])), int32(binary.BigEndian.Uint32(r[14:])); l0 != 8 || l1 != 8 {
			return 0, fmt.Errorf("load index: COPY row %d: ids of %d and %d bytes", p.rows, l0, l1)
		}
		iid, tid := binary.BigEndian.Uint64(r[6:]), binary.BigEndian.Uint64(r[18:])
		if l := int(int32(binary.BigEndian.Uint32(r[26:]))); l != 4*p.dim {
			return 0, fmt.Errorf("%w: template %d of identity %d has %d bytes, the gallery's dimension %d needs %d", enroll.ErrCorrupt, tid, iid, l, p.dim, 4*p.dim)
		}
		size := head + 4*p.dim
		if len(r) < size {
			break
		}
		if !p.shard.Owns(iid) {
			used += size
			continue
		}
		name, ok := p.names[iid]
		if !ok {
			return 0, fmt.Errorf("%w: template %d of identity %d, which the snapshot does not have", enroll.ErrCorrupt, tid, iid)
		}
		if err := p.ix.AddLE(iid, name, tid, r[head:size]); err != nil {
			return 0, fmt.Errorf("%w: %v", enroll.ErrCorrupt, err)
		}
		p.rows++
		used += size
	}
	return used, nil
}
