package pgstore

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/facever/facever/enroll"
	"github.com/jackc/pgx/v5"
	"golang.org/x/text/unicode/norm"
)

const identityCols = "id, name, metadata, created, templates"

// templateCols are the columns of a template, read FROM templateFrom: has
// a crop or not by a probe of template_crops' primary key (the image is
// not read).
const templateCols = "t.id, t.identity_id, t.embedding, t.source, t.photo_sha256, t.created, " +
	"EXISTS (SELECT 1 FROM facever.template_crops c WHERE c.template_id = t.id)"

// templateFrom is the table templateCols are read from.
const templateFrom = " FROM facever.templates t "

// scanIdentity reads one identities row (identityCols).
func scanIdentity(row pgx.Row) (enroll.Identity, error) {
	var it enroll.Identity
	var id int64
	var md []byte
	if err := row.Scan(&id, &it.Name, &md, &it.Created, &it.Templates); err != nil {
		return it, err
	}
	it.ID = uint64(id)
	it.Created = it.Created.UTC()
	if len(md) > 0 {
		if err := json.Unmarshal(md, &it.Metadata); err != nil {
			return it, fmt.Errorf("%w: identity %d: metadata: %v", enroll.ErrCorrupt, id, err)
		}
		if len(it.Metadata) == 0 {
			it.Metadata = nil
		}
	}
	return it, nil
}

// encodeMetadata is the json column's value (NULL for none).
func encodeMetadata(md map[string]string) ([]byte, error) {
	if len(md) == 0 {
		return nil, nil
	}
	return json.Marshal(md)
}

// scanTemplate reads one templates row (templateCols).
func scanTemplate(row pgx.Row) (enroll.Template, error) {
	var t enroll.Template
	var id, iid int64
	var emb []byte
	var sha *string
	if err := row.Scan(&id, &iid, &emb, &t.Source, &sha, &t.Created, &t.HasCrop); err != nil {
		return t, err
	}
	t.ID, t.IdentityID, t.Created = uint64(id), uint64(iid), t.Created.UTC()
	if sha != nil {
		t.PhotoSHA256 = *sha
	}
	if len(emb)%4 != 0 {
		return t, fmt.Errorf("%w: template %d of identity %d: embedding of %d bytes", enroll.ErrCorrupt, id, iid, len(emb))
	}
	t.Embedding = make([]float32, len(emb)/4)
	decodeEmbedding(emb, t.Embedding)
	return t, nil
}

// encodeEmbedding appends emb as little-endian float32s.
func encodeEmbedding(b []byte, emb []float32) []byte {
	for _, x := range emb {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

// decodeEmbedding fills emb from len(emb) little-endian float32s.
func decodeEmbedding(b []byte, emb []float32) {
	for i := range emb {
		emb[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
}

// dbID converts an id for the database (ok false: no row can have it).
func dbID(id uint64) (int64, bool) {
	if id > math.MaxInt64 {
		return 0, false
	}
	return int64(id), true
}

// getIdentity reads identity id (ErrNotFound).
func getIdentity(ctx context.Context, q querier, id uint64) (enroll.Identity, error) {
	n, ok := dbID(id)
	if !ok {
		return enroll.Identity{}, fmt.Errorf("%w: id %d", enroll.ErrNotFound, id)
	}
	it, err := scanIdentity(q.QueryRow(ctx, "SELECT "+identityCols+" FROM facever.identities WHERE id = $1", n))
	if errors.Is(err, pgx.ErrNoRows) {
		return it, fmt.Errorf("%w: id %d", enroll.ErrNotFound, id)
	}
	return it, err
}

// byName finds the identity called name: by its normal form, else by the
// bytes as given (as the file does).
func byName(ctx context.Context, q querier, name string) (enroll.Identity, bool, error) {
	key := name
	if n, err := enroll.NormalizeName(name); err == nil {
		key = n
	}
	if key == "" || !utf8.ValidString(key) || strings.IndexByte(key, 0) >= 0 {
		return enroll.Identity{}, false, nil
	}
	it, err := scanIdentity(q.QueryRow(ctx, "SELECT "+identityCols+" FROM facever.identities WHERE name = $1", key))
	if errors.Is(err, pgx.ErrNoRows) {
		return enroll.Identity{}, false, nil
	}
	return it, err == nil, err
}

// createIdentity inserts a new identity (ErrExists when the name is taken).
func (s *Store) createIdentity(w *wtx, name string, metadata map[string]string) (enroll.Identity, error) {
	name, err := enroll.NormalizeName(name)
	if err != nil {
		return enroll.Identity{}, err
	}
	if err := enroll.CheckMetadata(metadata, s.opts); err != nil {
		return enroll.Identity{}, err
	}
	md, err := encodeMetadata(metadata)
	if err != nil {
		return enroll.Identity{}, err
	}
	it := enroll.Identity{Name: name, Metadata: metadata, Created: now()}
	var id int64
	err = w.QueryRow(w.ctx, `INSERT INTO facever.identities (name, metadata, created) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO NOTHING RETURNING id`, name, md, it.Created).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return enroll.Identity{}, fmt.Errorf("%w: %q", enroll.ErrExists, name)
	}
	if err != nil {
		return enroll.Identity{}, err
	}
	it.ID = uint64(id)
	w.log(KindAddIdentity, it.ID, 0)
	return it, nil
}

// AddIdentity creates an identity with no template. Names are unique
// (enroll.ErrExists) after normalisation (see enroll.NormalizeName);
// metadata is bounded (enroll.ErrTooLarge).
func (s *Store) AddIdentity(name string, metadata map[string]string) (enroll.Identity, error) {
	var it enroll.Identity
	err := s.write("add identity", func(w *wtx) error {
		var err error
		it, err = s.createIdentity(w, name, metadata)
		return err
	})
	return it, err
}

// AddTemplates adds templates to identity id in one transaction, and
// returns them with their ids. The store must be opened with Options.Model;
// the first template fixes the gallery's embedding dimension.
func (s *Store) AddTemplates(id uint64, ts []enroll.Template) ([]enroll.Template, error) {
	var out []enroll.Template
	err := s.write("add templates", func(w *wtx) error {
		it, err := getIdentity(w.ctx, w, id)
		if err != nil {
			return err
		}
		out, err = s.addTemplates(w, &it, ts)
		return err
	})
	return out, err
}

// Enroll adds templates to the identity called name, creating it (with
// metadata) when there is none, in one transaction: concurrent enrolls of
// one name from several nodes end in one identity. Metadata of an existing
// identity is merged (new keys win) and must fit the limits.
func (s *Store) Enroll(name string, metadata map[string]string, ts []enroll.Template) (enroll.Identity, []enroll.Template, error) {
	var it enroll.Identity
	var out []enroll.Template
	err := s.write("enroll", func(w *wtx) error {
		var err error
		var found bool
		if it, found, err = byName(w.ctx, w, name); err != nil {
			return err
		}
		if found {
			if len(metadata) > 0 {
				if it.Metadata == nil {
					it.Metadata = map[string]string{}
				}
				for k, v := range metadata {
					it.Metadata[k] = v
				}
			}
			if err := enroll.CheckMetadata(it.Metadata, s.opts); err != nil {
				return fmt.Errorf("identity %q: %w", it.Name, err)
			}
			if len(metadata) > 0 {
				md, err := encodeMetadata(it.Metadata)
				if err != nil {
					return err
				}
				if _, err := w.Exec(w.ctx, "UPDATE facever.identities SET metadata = $2 WHERE id = $1", int64(it.ID), md); err != nil {
					return err
				}
				w.log(KindUpdate, it.ID, 0)
			}
		} else if it, err = s.createIdentity(w, name, metadata); err != nil {
			return err
		}
		out, err = s.addTemplates(w, &it, ts)
		return err
	})
	if err != nil {
		return enroll.Identity{}, nil, err
	}
	return it, out, nil
}

// cleanSource is a template's source as the database keeps it: at most
// 65,535 bytes (as the file), valid UTF-8 without NUL (text's rule).
func cleanSource(src string) string {
	if len(src) > math.MaxUint16 {
		src = src[:math.MaxUint16]
	}
	if !utf8.ValidString(src) {
		src = strings.ToValidUTF8(src, "\uFFFD")
	}
	return strings.ReplaceAll(src, "\x00", "\uFFFD")
}

// checkSHA returns a photo hash in lower case, or ErrInvalid.
func checkSHA(sha string) (string, error) {
	b, err := hex.DecodeString(sha)
	if err != nil || len(b) != 32 {
		return "", fmt.Errorf("%w: photo sha256 %q is not 64 hex digits", enroll.ErrInvalid, sha)
	}
	return hex.EncodeToString(b), nil
}

// addTemplates checks and inserts templates of it (as the file does) and
// raises its count.
func (s *Store) addTemplates(w *wtx, it *enroll.Identity, ts []enroll.Template) ([]enroll.Template, error) {
	if s.opts.Model == "" {
		return nil, enroll.ErrNoModel
	}
	var dim int
	if err := w.QueryRow(w.ctx, "SELECT dim FROM facever.meta").Scan(&dim); err != nil {
		return nil, err
	}
	out := make([]enroll.Template, 0, len(ts))
	at := now()
	embs := make([][]byte, len(ts))
	sources := make([]string, len(ts))
	shas := make([]*string, len(ts))
	if err := checkCrops(ts); err != nil {
		return nil, err
	}
	for i, t := range ts {
		if len(t.Embedding) == 0 {
			return nil, fmt.Errorf("%w: template %d has an empty embedding", enroll.ErrInvalid, i)
		}
		if dim == 0 {
			dim = len(t.Embedding)
			if _, err := w.Exec(w.ctx, "UPDATE facever.meta SET dim = $1", dim); err != nil {
				return nil, err
			}
			w.dimSet = true
		}
		if len(t.Embedding) != dim {
			return nil, fmt.Errorf("%w: template %d has %d values, the gallery %d", enroll.ErrDimension, i, len(t.Embedding), dim)
		}
		var sq float64
		for _, x := range t.Embedding {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return nil, fmt.Errorf("%w: template %d has a non-finite value", enroll.ErrInvalid, i)
			}
			sq += float64(x) * float64(x)
		}
		if sq == 0 {
			return nil, fmt.Errorf("%w: template %d is a zero vector", enroll.ErrInvalid, i)
		}
		if t.PhotoSHA256 != "" {
			h, err := checkSHA(t.PhotoSHA256)
			if err != nil {
				return nil, fmt.Errorf("template %d: %w", i, err)
			}
			shas[i] = &h
		}
		embs[i] = encodeEmbedding(make([]byte, 0, 4*dim), t.Embedding)
		sources[i] = cleanSource(t.Source)
	}
	if len(ts) == 0 {
		return out, nil
	}
	// One statement for all: the rows go in in order and, under the write
	// lock, take ascending ids from the sequence, so the sorted ids are the
	// templates' in order.
	rows, err := w.Query(w.ctx, `INSERT INTO facever.templates (identity_id, embedding, source, photo_sha256, created)
		SELECT $1, u.embedding, u.source, u.sha, $5
		FROM unnest($2::bytea[], $3::text[], $4::text[]) WITH ORDINALITY AS u(embedding, source, sha, ord)
		ORDER BY u.ord RETURNING id`, int64(it.ID), embs, sources, shas, at)
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	if len(ids) != len(ts) {
		return nil, fmt.Errorf("insert of %d templates returned %d ids", len(ts), len(ids))
	}
	slices.Sort(ids)
	for i, t := range ts {
		t.ID, t.IdentityID, t.Created = uint64(ids[i]), it.ID, at
		t.Embedding = append([]float32(nil), t.Embedding...)
		t.Crop, t.HasCrop = nil, len(t.Crop) > 0
		out = append(out, t)
		w.log(KindAddTemplate, it.ID, t.ID)
	}
	if err := writeCrops(w, ids, ts); err != nil {
		return nil, err
	}
	if _, err := w.Exec(w.ctx, "UPDATE facever.identities SET templates = templates + $2 WHERE id = $1", int64(it.ID), len(ts)); err != nil {
		return nil, err
	}
	it.Templates += len(ts)
	return out, nil
}

// Update renames identity id and/or edits its metadata, in one
// transaction, and returns the identity as it now is.
func (s *Store) Update(id uint64, e enroll.Edit) (enroll.Identity, error) {
	name := ""
	if e.Name != "" {
		var err error
		if name, err = enroll.NormalizeName(e.Name); err != nil {
			return enroll.Identity{}, err
		}
	}
	var it enroll.Identity
	err := s.write("update identity", func(w *wtx) error {
		var err error
		if it, err = getIdentity(w.ctx, w, id); err != nil {
			return err
		}
		if len(e.Metadata) > 0 {
			md := e.Merged(it.Metadata)
			if err := enroll.CheckMetadata(md, s.opts); err != nil {
				return fmt.Errorf("identity %q: %w", it.Name, err)
			}
			if e.Check != nil {
				if err := e.Check(md); err != nil {
					return err
				}
			}
			it.Metadata = md
			js, err := encodeMetadata(md)
			if err != nil {
				return err
			}
			if _, err := w.Exec(w.ctx, "UPDATE facever.identities SET metadata = $2 WHERE id = $1", int64(id), js); err != nil {
				return err
			}
			w.log(KindUpdate, id, 0)
		}
		if name != "" && name != it.Name {
			if err := rename(w, id, name); err != nil {
				return err
			}
			it.Name = name
		}
		return nil
	})
	if err != nil {
		return enroll.Identity{}, err
	}
	return it, nil
}

// rename sets the name of identity id (ErrExists when taken).
func rename(w *wtx, id uint64, name string) error {
	tag, err := w.Exec(w.ctx, `UPDATE facever.identities SET name = $2 WHERE id = $1
		AND NOT EXISTS (SELECT 1 FROM facever.identities WHERE name = $2)`, int64(id), name)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %q", enroll.ErrExists, name)
	}
	w.log(KindRename, id, 0)
	return nil
}

// Rename gives identity id a new, unused name (normalised: see
// enroll.NormalizeName).
func (s *Store) Rename(id uint64, name string) error {
	name, err := enroll.NormalizeName(name)
	if err != nil {
		return err
	}
	return s.write("rename identity", func(w *wtx) error {
		it, err := getIdentity(w.ctx, w, id)
		if err != nil {
			return err
		}
		if it.Name == name {
			return nil
		}
		return rename(w, id, name)
	})
}

// Remove deletes identity id and all its templates.
func (s *Store) Remove(id uint64) error {
	return s.write("remove identity", func(w *wtx) error {
		if _, err := getIdentity(w.ctx, w, id); err != nil {
			return err
		}
		if _, err := w.Exec(w.ctx, "DELETE FROM facever.identities WHERE id = $1", int64(id)); err != nil {
			return err
		}
		w.log(KindRemoveIdentity, id, 0)
		return nil
	})
}

// RemoveTemplate deletes template tid of identity id
// (enroll.ErrTemplateNotFound when the identity has no such template) and
// returns the identity as it now is.
func (s *Store) RemoveTemplate(id, tid uint64) (enroll.Identity, error) {
	var it enroll.Identity
	err := s.write("remove template", func(w *wtx) error {
		var err error
		if it, err = getIdentity(w.ctx, w, id); err != nil {
			return err
		}
		t, ok := dbID(tid)
		var tag interface{ RowsAffected() int64 }
		if ok {
			if tag, err = w.Exec(w.ctx, "DELETE FROM facever.templates WHERE id = $1 AND identity_id = $2", t, int64(id)); err != nil {
				return err
			}
		}
		if !ok || tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: no template %d in identity %d", enroll.ErrTemplateNotFound, tid, id)
		}
		if _, err := w.Exec(w.ctx, "UPDATE facever.identities SET templates = templates - 1 WHERE id = $1", int64(id)); err != nil {
			return err
		}
		it.Templates--
		w.log(KindRemoveTemplate, id, tid)
		return nil
	})
	if err != nil {
		return enroll.Identity{}, err
	}
	return it, nil
}

// Get returns identity id (enroll.ErrNotFound).
func (s *Store) Get(id uint64) (enroll.Identity, error) {
	var it enroll.Identity
	err := s.read("get identity", func(ctx context.Context, tx pgx.Tx) error {
		var err error
		it, err = getIdentity(ctx, tx, id)
		return err
	})
	return it, err
}

// GetByName returns the identity called name (enroll.ErrNotFound).
func (s *Store) GetByName(name string) (enroll.Identity, error) {
	var it enroll.Identity
	err := s.read("get identity", func(ctx context.Context, tx pgx.Tx) error {
		var ok bool
		var err error
		if it, ok, err = byName(ctx, tx, name); err == nil && !ok {
			err = fmt.Errorf("%w: %q", enroll.ErrNotFound, name)
		}
		return err
	})
	return it, err
}

// Resolve finds an identity by name, or else by its decimal id (optionally
// written "#12").
func (s *Store) Resolve(ref string) (enroll.Identity, error) {
	it, err := s.GetByName(ref)
	if err == nil || !errors.Is(err, enroll.ErrNotFound) {
		return it, err
	}
	if id, perr := strconv.ParseUint(strings.TrimPrefix(ref, "#"), 10, 64); perr == nil {
		return s.Get(id)
	}
	return enroll.Identity{}, err
}

// identities runs a query of identities.
func identities(ctx context.Context, tx pgx.Tx, sql string, args ...any) ([]enroll.Identity, error) {
	return query(ctx, tx, scanIdentity, sql, args...)
}

// templates runs a query of templates.
func templates(ctx context.Context, tx pgx.Tx, sql string, args ...any) ([]enroll.Template, error) {
	return query(ctx, tx, scanTemplate, sql, args...)
}

// query runs sql and scans every row with scan.
func query[T any](ctx context.Context, tx pgx.Tx, scan func(pgx.Row) (T, error), sql string, args ...any) ([]T, error) {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// List returns every identity, by id.
func (s *Store) List() ([]enroll.Identity, error) {
	var out []enroll.Identity
	err := s.read("list identities", func(ctx context.Context, tx pgx.Tx) error {
		var err error
		out, err = identities(ctx, tx, "SELECT "+identityCols+" FROM facever.identities ORDER BY id")
		return err
	})
	return out, err
}

// pageLimit is the file's rule: 1..MaxPage, other values MaxPage.
func pageLimit(limit int) int {
	if limit <= 0 || limit > enroll.MaxPage {
		return enroll.MaxPage
	}
	return limit
}

// ListPage returns up to limit identities whose ids come after after, by
// id, and the cursor of the next page (0 on the last).
func (s *Store) ListPage(after uint64, limit int) (page []enroll.Identity, next uint64, err error) {
	limit = pageLimit(limit)
	a, ok := dbID(after)
	if !ok {
		return nil, 0, nil
	}
	err = s.read("list identities", func(ctx context.Context, tx pgx.Tx) error {
		var err error
		page, err = identities(ctx, tx, "SELECT "+identityCols+" FROM facever.identities WHERE id > $1 ORDER BY id LIMIT $2", a, limit+1)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	if len(page) > limit {
		page = page[:limit]
		next = page[limit-1].ID
	}
	return page, next, nil
}

// likePrefix escapes s for a LIKE pattern that matches what starts with it.
func likePrefix(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s) + "%"
}

// ListPrefix returns up to limit identities whose names start with prefix
// (in normal form C, byte for byte), in the order of their names' bytes,
// after the name after, and the next page's cursor ("" on the last).
func (s *Store) ListPrefix(prefix, after string, limit int) (page []enroll.Identity, next string, err error) {
	limit = pageLimit(limit)
	prefix = norm.NFC.String(prefix)
	if !utf8.ValidString(prefix) || strings.IndexByte(prefix, 0) >= 0 {
		return nil, "", nil // no name holds such bytes
	}
	start := prefix
	if after > prefix {
		start = after
	}
	if !utf8.ValidString(start) || strings.IndexByte(start, 0) >= 0 {
		start = strings.ToValidUTF8(strings.ReplaceAll(start, "\x00", ""), "")
	}
	skip := after
	if !utf8.ValidString(skip) || strings.IndexByte(skip, 0) >= 0 {
		skip = ""
	}
	err = s.read("list identities", func(ctx context.Context, tx pgx.Tx) error {
		var err error
		page, err = identities(ctx, tx, "SELECT "+identityCols+` FROM facever.identities
			WHERE name LIKE $1 AND name >= $2 AND ($3 = '' OR name <> $3) ORDER BY name LIMIT $4`,
			likePrefix(prefix), start, skip, limit+1)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	if len(page) > limit {
		page = page[:limit]
		next = page[limit-1].Name
	}
	return page, next, nil
}

// Templates returns the templates of identity id, in enrolment order.
func (s *Store) Templates(id uint64) ([]enroll.Template, error) {
	var out []enroll.Template
	err := s.read("templates", func(ctx context.Context, tx pgx.Tx) error {
		if _, err := getIdentity(ctx, tx, id); err != nil {
			return err
		}
		var err error
		out, err = templates(ctx, tx, "SELECT "+templateCols+templateFrom+"WHERE t.identity_id = $1 ORDER BY t.id", int64(id))
		return err
	})
	return out, err
}

// TemplatesPage returns up to limit templates of identity id whose ids
// come after after, in enrolment order, and the next page's cursor (0 on
// the last).
func (s *Store) TemplatesPage(id, after uint64, limit int) (page []enroll.Template, next uint64, err error) {
	limit = pageLimit(limit)
	err = s.read("templates", func(ctx context.Context, tx pgx.Tx) error {
		if _, err := getIdentity(ctx, tx, id); err != nil {
			return err
		}
		a, ok := dbID(after)
		if !ok {
			return nil
		}
		var err error
		page, err = templates(ctx, tx, "SELECT "+templateCols+templateFrom+"WHERE t.identity_id = $1 AND t.id > $2 ORDER BY t.id LIMIT $3", int64(id), a, limit+1)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	if len(page) > limit {
		page = page[:limit]
		next = page[limit-1].ID
	}
	return page, next, nil
}

// FindPhoto returns the templates enrolled from the photo whose sha256
// (hex) is given, in any identity, by identity and template id.
func (s *Store) FindPhoto(sha256hex string) ([]enroll.Template, error) {
	sha, err := checkSHA(sha256hex)
	if err != nil {
		return nil, err
	}
	var out []enroll.Template
	err = s.read("find photo", func(ctx context.Context, tx pgx.Tx) error {
		var err error
		out, err = templates(ctx, tx, "SELECT "+templateCols+templateFrom+"WHERE t.photo_sha256 = $1 ORDER BY t.identity_id, t.id", sha)
		return err
	})
	return out, err
}
