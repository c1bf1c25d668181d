package pgstore

import (
	"context"
	"encoding/hex"
	"fmt"
	"math"
	"time"

	"github.com/facever/facever/enroll"
	"github.com/jackc/pgx/v5"
)

var _ enroll.Importer = (*Store)(nil)

// checkEmbedding refuses an empty, non-finite or zero embedding (template
// i), as AddTemplates does.
func checkEmbedding(e []float32, i int) error {
	if len(e) == 0 {
		return fmt.Errorf("%w: template %d has an empty embedding", enroll.ErrInvalid, i)
	}
	var sq float64
	for _, x := range e {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return fmt.Errorf("%w: template %d has a non-finite value", enroll.ErrInvalid, i)
		}
		sq += float64(x) * float64(x)
	}
	if sq == 0 {
		return fmt.Errorf("%w: template %d is a zero vector", enroll.ErrInvalid, i)
	}
	return nil
}

// ImportIdentity stores it and its templates as given (ids, created times,
// embeddings bit for bit, crops; see enroll.Importer), in one write transaction
// that logs add_identity and add_template changes like an Enroll. Later ids
// stay above the imported ones.
func (s *Store) ImportIdentity(it enroll.Identity, ts []enroll.Template) error {
	if s.opts.Model == "" && len(ts) > 0 {
		return enroll.ErrNoModel
	}
	if it.ID == 0 || it.ID > math.MaxInt64 {
		return fmt.Errorf("%w: identity id %d", enroll.ErrInvalid, it.ID)
	}
	name, err := enroll.NormalizeName(it.Name)
	if err != nil {
		return err
	}
	if err := enroll.CheckMetadata(it.Metadata, s.opts); err != nil {
		return fmt.Errorf("identity %q: %w", name, err)
	}
	if it.Created.IsZero() {
		return fmt.Errorf("%w: identity %q has no created time", enroll.ErrInvalid, name)
	}
	md, err := encodeMetadata(it.Metadata)
	if err != nil {
		return err
	}
	if err := checkCrops(ts); err != nil {
		return fmt.Errorf("identity %q: %w", name, err)
	}
	return s.write("import identity", func(w *wtx) error {
		var idTaken, nameTaken bool
		if err := w.QueryRow(w.ctx, `SELECT EXISTS (SELECT 1 FROM facever.identities WHERE id = $1),
			EXISTS (SELECT 1 FROM facever.identities WHERE name = $2)`, int64(it.ID), name).Scan(&idTaken, &nameTaken); err != nil {
			return err
		}
		if idTaken {
			return fmt.Errorf("%w: id %d", enroll.ErrExists, it.ID)
		}
		if nameTaken {
			return fmt.Errorf("%w: %q", enroll.ErrExists, name)
		}
		if _, err := w.Exec(w.ctx, `INSERT INTO facever.identities (id, name, metadata, created, templates)
			OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5)`, int64(it.ID), name, md, it.Created.UTC(), len(ts)); err != nil {
			return err
		}
		w.log(KindAddIdentity, it.ID, 0)
		var dim int
		if err := w.QueryRow(w.ctx, "SELECT dim FROM facever.meta").Scan(&dim); err != nil {
			return err
		}
		var maxTID int64
		tids := make([]int64, len(ts))
		embs := make([][]byte, len(ts))
		sources := make([]string, len(ts))
		shas := make([]*string, len(ts))
		created := make([]time.Time, len(ts))
		for i, t := range ts {
			if t.IdentityID != it.ID {
				return fmt.Errorf("%w: template %d belongs to identity %d, not %d", enroll.ErrInvalid, t.ID, t.IdentityID, it.ID)
			}
			if t.ID == 0 || t.ID > math.MaxInt64 || t.Created.IsZero() {
				return fmt.Errorf("%w: template %d of identity %d: id or created time missing", enroll.ErrInvalid, t.ID, it.ID)
			}
			if err := checkEmbedding(t.Embedding, i); err != nil {
				return err
			}
			if dim == 0 {
				dim = len(t.Embedding)
				if _, err := w.Exec(w.ctx, "UPDATE facever.meta SET dim = $1", dim); err != nil {
					return err
				}
				w.dimSet = true
			}
			if len(t.Embedding) != dim {
				return fmt.Errorf("%w: template %d has %d values, the gallery %d", enroll.ErrDimension, t.ID, len(t.Embedding), dim)
			}
			if t.PhotoSHA256 != "" {
				h, err := checkSHA(t.PhotoSHA256)
				if err != nil {
					return fmt.Errorf("template %d: %w", t.ID, err)
				}
				shas[i] = &h
			}
			tids[i], embs[i], sources[i], created[i] = int64(t.ID), encodeEmbedding(make([]byte, 0, 4*dim), t.Embedding), cleanSource(t.Source), t.Created.UTC()
			maxTID = max(maxTID, int64(t.ID))
			w.log(KindAddTemplate, it.ID, t.ID)
		}
		if len(ts) > 0 {
			rows, err := w.Query(w.ctx, `INSERT INTO facever.templates (id, identity_id, embedding, source, photo_sha256, created)
				OVERRIDING SYSTEM VALUE SELECT u.id, $2, u.embedding, u.source, u.sha, u.created
				FROM unnest($1::int8[], $3::bytea[], $4::text[], $5::text[], $6::timestamptz[]) AS u(id, embedding, source, sha, created)
				ON CONFLICT (id) DO NOTHING RETURNING id`, tids, int64(it.ID), embs, sources, shas, created)
			if err != nil {
				return err
			}
			done, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			if err != nil {
				return err
			}
			if len(done) != len(ts) {
				// The first id that did not go in: taken, or given twice.
				in := map[int64]int{}
				for _, id := range done {
					in[id]++
				}
				for _, id := range tids {
					if in[id] == 0 {
						return fmt.Errorf("%w: template %d", enroll.ErrExists, id)
					}
					in[id]--
				}
				return fmt.Errorf("%w: a template id is taken", enroll.ErrExists)
			}
			if err := writeCrops(w, tids, ts); err != nil {
				return err
			}
		}
		// Later ids above the imported ones.
		for _, q := range []struct {
			table string
			id    int64
		}{{"facever.identities", int64(it.ID)}, {"facever.templates", maxTID}} {
			if q.id == 0 {
				continue
			}
			if _, err := w.Exec(w.ctx, fmt.Sprintf(`SELECT setval(pg_get_serial_sequence('%s', 'id'),
				greatest($1::bigint, (SELECT coalesce(max(id), 0) FROM %s), 1))`, q.table, q.table), q.id); err != nil {
				return fmt.Errorf("raise the id sequence of %s: %w", q.table, err)
			}
		}
		return nil
	})
}

// checkKeyHash refuses a hash that is not 64 lowercase hex digits.
func checkKeyHash(h string) error {
	if b, err := hex.DecodeString(h); err != nil || len(b) != 32 || hex.EncodeToString(b) != h {
		return fmt.Errorf("%w: API key hash %.70q is not 64 lowercase hex digits", enroll.ErrInvalid, h)
	}
	return nil
}

// ImportAPIKey stores an API key record by its hash (see enroll.Importer).
func (s *Store) ImportAPIKey(rec enroll.APIKeyRecord) error {
	if err := checkKeyHash(rec.Hash); err != nil {
		return err
	}
	name, err := enroll.NormalizeName(rec.Name)
	if err != nil {
		return err
	}
	scopes, err := enroll.CheckScopes(rec.Scopes)
	if err != nil {
		return err
	}
	if rec.Created.IsZero() {
		rec.Created = time.Now()
	}
	if s.opts.ReadOnly {
		return enroll.ErrReadOnly
	}
	ctx, cancel := s.ctx()
	defer cancel()
	tag, err := s.pool.Exec(ctx, `INSERT INTO facever.api_keys (hash, name, prefix, created, scopes) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (hash) DO NOTHING`, rec.Hash, name, cleanSource(rec.Prefix), rec.Created.UTC().Truncate(time.Microsecond), scopes)
	if err != nil {
		return s.wrap("import API key", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: API key %s… (%s)", enroll.ErrExists, rec.Prefix, name)
	}
	return nil
}

// APIKeyRecords lists the API key records with their hashes.
func (s *Store) APIKeyRecords() ([]enroll.APIKeyRecord, error) {
	var out []enroll.APIKeyRecord
	err := s.read("list API keys", func(ctx context.Context, tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "SELECT hash, name, prefix, created, scopes FROM facever.api_keys ORDER BY hash")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r enroll.APIKeyRecord
			if err := rows.Scan(&r.Hash, &r.Name, &r.Prefix, &r.Created, &r.Scopes); err != nil {
				return err
			}
			r.Created = r.Created.UTC()
			out = append(out, r)
		}
		return rows.Err()
	})
	return out, err
}
