package server

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/facever/facever/align"
	"github.com/facever/facever/enroll"
	"github.com/facever/facever/verify"
)

// Cursors of the lists are opaque to clients: a kind byte (which list) and
// the position, base64url. 'i': after identity id; 'n': after a name (the
// prefix search); 't': after template id.
func encodeCursor(kind byte, pos string) string {
	return base64.RawURLEncoding.EncodeToString(append([]byte{kind}, pos...))
}

func decodeCursor(c string, kind byte) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) < 2 || b[0] != kind || len(b) > 2*enroll.MaxName {
		return "", &apiError{http.StatusBadRequest, "bad_cursor", fmt.Sprintf("cursor %.40q is not a next_cursor of this list: pass the next_cursor of the previous page unchanged", c)}
	}
	return string(b[1:]), nil
}

func idCursor(kind byte, id uint64) string { return encodeCursor(kind, strconv.FormatUint(id, 10)) }

func decodeIDCursor(c string, kind byte) (uint64, error) {
	s, err := decodeCursor(c, kind)
	if err != nil {
		return 0, err
	}
	id, perr := strconv.ParseUint(s, 10, 64)
	if perr != nil {
		return 0, &apiError{http.StatusBadRequest, "bad_cursor", fmt.Sprintf("cursor %.40q is not a next_cursor of this list", c)}
	}
	return id, nil
}

// limitOf reads ?limit=.
func (s *Server) limitOf(r *http.Request) (int, error) {
	limit := s.cfg.PageSize
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > s.cfg.MaxPageSize {
			return 0, badRequest("limit must be a whole number from 1 to %d, not %q", s.cfg.MaxPageSize, v)
		}
		limit = n
	}
	return limit, nil
}

// idPage reads ?limit= and the position of an id-ordered list: ?cursor=
// (kind kind) or the older ?after=ID.
func (s *Server) idPage(r *http.Request, kind byte) (after uint64, limit int, err error) {
	if limit, err = s.limitOf(r); err != nil {
		return 0, 0, err
	}
	q := r.URL.Query()
	if c := q.Get("cursor"); c != "" {
		if q.Get("after") != "" {
			return 0, 0, badRequest("send cursor or after, not both")
		}
		after, err = decodeIDCursor(c, kind)
		return after, limit, err
	}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, badRequest("after must be an id, not %q", v)
		}
		after = n
	}
	return after, limit, nil
}

// identityID reads the {id} of the path.
func identityID(r *http.Request) (uint64, error) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		return 0, badRequest("identity id %q is not a number", r.PathValue("id"))
	}
	touched(r.Context(), id)
	return id, nil
}

// patchIdentity renames an identity and/or edits its metadata.
func (s *Server) patchIdentity(w http.ResponseWriter, r *http.Request) error {
	id, err := identityID(r)
	if err != nil {
		return err
	}
	var body struct {
		Name     *string            `json:"name"`
		Metadata map[string]*string `json:"metadata"`
	}
	data, err := readBody(r)
	if err != nil {
		return err
	}
	if err := decodeStrict(data, &body); err != nil {
		return badRequest("%v; send {\"name\": ..., \"metadata\": {\"key\": \"value\" or null to remove it}}", err)
	}
	if body.Name == nil && len(body.Metadata) == 0 {
		return badRequest("nothing to change: send a name, metadata, or both")
	}
	e := enroll.Edit{Metadata: body.Metadata}
	if body.Name != nil {
		if *body.Name == "" {
			return badRequest("name cannot be empty")
		}
		e.Name = *body.Name
	}
	e.Check = s.checkMetadata // on the merged metadata, in the transaction
	if err := r.Context().Err(); err != nil {
		return err
	}
	it, err := s.cfg.Gallery.Update(id, e)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, it)
}

// faceItem is one enrolled face (a template) in GET .../faces.
type faceItem struct {
	ID          uint64 `json:"id"`
	IdentityID  uint64 `json:"identity_id"`
	Source      string `json:"source"`
	PhotoSHA256 string `json:"photo_sha256,omitempty"`
	Created     string `json:"created"`
	// HasCrop says whether GET .../faces/{face_id}/crop has an image.
	HasCrop bool `json:"has_crop"`
}

func (s *Server) listFaces(w http.ResponseWriter, r *http.Request) error {
	id, err := identityID(r)
	if err != nil {
		return err
	}
	after, limit, err := s.idPage(r, 't')
	if err != nil {
		return err
	}
	ts, next, err := s.cfg.Gallery.TemplatesPage(id, after, limit)
	if err != nil {
		return err
	}
	items := make([]faceItem, len(ts))
	for i, t := range ts {
		items[i] = faceItem{ID: t.ID, IdentityID: t.IdentityID, Source: t.Source, PhotoSHA256: t.PhotoSHA256, Created: t.Created.Format("2006-01-02T15:04:05.999999999Z07:00"), HasCrop: t.HasCrop}
	}
	tail := map[string]any{}
	if next != 0 {
		tail["next_cursor"] = idCursor('t', next)
	}
	return streamList(w, "faces", items, tail)
}

func (s *Server) deleteFace(w http.ResponseWriter, r *http.Request) error {
	id, err := identityID(r)
	if err != nil {
		return err
	}
	fid, err := faceIDOf(r)
	if err != nil {
		return err
	}
	if err := r.Context().Err(); err != nil {
		return err
	}
	it, err := s.cfg.Gallery.RemoveTemplate(id, fid)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"removed": map[string]uint64{"id": fid}, "identity": it})
}

// verifyIdentity compares a photo with an enrolled identity: the best
// similarity over its templates.
func (s *Server) verifyIdentity(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	id, err := identityID(r)
	if err != nil {
		return err
	}
	it, err := s.cfg.Gallery.Get(id)
	if err != nil {
		return err
	}
	q, err := parse(r, fields{images: []string{"image"}, values: []string{"threshold"}}, 1)
	if err != nil {
		return err
	}
	thr, err := s.threshold(q)
	if err != nil {
		return err
	}
	data, err := q.image("image")
	if err != nil {
		return err
	}
	f, err := s.detect(ctx, data, nil)
	if err != nil {
		return err
	}
	q.images = nil
	fc := faceCounter{max: s.cfg.MaxFaces}
	if err := fc.add(len(f.faces)); err != nil {
		return err
	}
	embs, err := s.embed(ctx, []align.Chip{f.chip})
	if err != nil {
		return err
	}
	ts, err := s.cfg.Gallery.Templates(id)
	if err != nil {
		return err
	}
	if len(ts) == 0 {
		return &apiError{http.StatusUnprocessableEntity, "no_templates", fmt.Sprintf("identity %d (%q) has no enrolled face to compare with: enroll a photo first", it.ID, it.Name)}
	}
	best, bestID := verify.Decision{Similarity: -2}, uint64(0)
	for _, t := range ts {
		if d := verify.Decide(embs[0], t.Embedding, thr); d.Similarity > best.Similarity {
			best, bestID = d, t.ID
		}
	}
	out := struct {
		verify.Decision
		Identity enroll.Identity `json:"identity"`
		FaceID   uint64          `json:"face_id"`
		Faces    int             `json:"face_count"`
		Face     map[string]any  `json:"face"`
		Scale    float64         `json:"scale"`
		Model    string          `json:"model"`
	}{Decision: best, Identity: it, FaceID: bestID, Faces: len(f.faces), Face: faceJSON(f.faces[0]), Scale: f.scale, Model: s.model}
	return writeJSON(w, http.StatusOK, out)
}

// enrollDigest identifies an enroll request by what it asks (its photos
// and options), not by how it is encoded: a retry that sends the same
// photos with another multipart boundary, or as JSON, is the same request.
func enrollDigest(id uint64, images [][]byte, largest bool) string {
	h := sha256.New()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], id)
	h.Write([]byte("enroll\x00"))
	h.Write(b[:])
	if largest {
		h.Write([]byte{1})
	} else {
		h.Write([]byte{0})
	}
	for _, im := range images {
		binary.BigEndian.PutUint64(b[:], uint64(len(im)))
		h.Write(b[:])
		h.Write(im)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// replay answers a retried idempotent request with the first answer.
func replay(w http.ResponseWriter, rec enroll.OnceRecord) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Idempotent-Replayed", "true")
	w.WriteHeader(rec.Status)
	_, err := w.Write(rec.Body)
	return err
}

// onceError maps the gallery's idempotency errors.
func onceError(err error) error {
	switch {
	case errors.Is(err, enroll.ErrOnceMismatch):
		return &apiError{http.StatusUnprocessableEntity, "idempotency_mismatch", err.Error() + ": use a new Idempotency-Key for a new request"}
	case errors.Is(err, enroll.ErrInvalid):
		return &apiError{http.StatusBadRequest, "bad_request", err.Error()}
	}
	return err
}

// detectPhoto reports the faces of a photo: boxes, landmarks, scores.
func (s *Server) detectPhoto(w http.ResponseWriter, r *http.Request) error {
	q, err := parse(r, fields{images: []string{"image"}}, 1)
	if err != nil {
		return err
	}
	data, err := q.image("image")
	if err != nil {
		return err
	}
	f, err := s.detectBoxes(r.Context(), data)
	if err != nil {
		return err
	}
	fc := faceCounter{max: s.cfg.MaxFaces}
	if err := fc.add(len(f.faces)); err != nil {
		return err
	}
	faces := make([]map[string]any, len(f.faces))
	for i, fa := range f.faces {
		faces[i] = faceJSON(fa)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"face_count": len(faces), "faces": faces, "scale": f.scale, "model": s.model})
}

// embedPhoto answers the embedding of a photo's largest face.
func (s *Server) embedPhoto(w http.ResponseWriter, r *http.Request) error {
	q, err := parse(r, fields{images: []string{"image"}}, 1)
	if err != nil {
		return err
	}
	data, err := q.image("image")
	if err != nil {
		return err
	}
	f, err := s.detect(r.Context(), data, nil)
	if err != nil {
		return err
	}
	fc := faceCounter{max: s.cfg.MaxFaces}
	if err := fc.add(len(f.faces)); err != nil {
		return err
	}
	embs, err := s.embed(r.Context(), []align.Chip{f.chip})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"embedding": embs[0], "dim": len(embs[0]), "face_count": len(f.faces), "face": faceJSON(f.faces[0]), "scale": f.scale, "model": s.model})
}
