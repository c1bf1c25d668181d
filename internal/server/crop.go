package server

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/facever/facever/align"
	"github.com/facever/facever/enroll"
)

// cropOf is the crop an enrolled template keeps: the aligned face as a
// JPEG (align.Chip.JPEG), or nil with Config.NoCrops. A chip that cannot be
// encoded (none the aligner makes) is enrolled without one rather than
// failing the enroll: the template is what recognition needs.
func (s *Server) cropOf(c align.Chip) []byte {
	if s.cfg.NoCrops {
		return nil
	}
	b, err := c.JPEG()
	if err != nil || len(b) > enroll.MaxCropBytes {
		return nil
	}
	return b
}

// faceIDOf reads the {face_id} of the path.
func faceIDOf(r *http.Request) (uint64, error) {
	fid, err := strconv.ParseUint(r.PathValue("face_id"), 10, 64)
	if err != nil {
		return 0, badRequest("face id %q is not a number", r.PathValue("face_id"))
	}
	return fid, nil
}

// faceCrop serves GET /v1/identities/{id}/faces/{face_id}/crop: the aligned
// 112×112 face the template was made from, as the JPEG the gallery keeps.
// The image is the same for as long as the face exists, so it carries an
// ETag of its bytes; Cache-Control private, no-cache makes a browser ask
// again each time (answered 304 when unchanged), so that a revoked key or
// a deleted face is never shown from a cache.
func (s *Server) faceCrop(w http.ResponseWriter, r *http.Request) error {
	id, err := identityID(r)
	if err != nil {
		return err
	}
	fid, err := faceIDOf(r)
	if err != nil {
		return err
	}
	b, err := s.cfg.Gallery.TemplateCrop(id, fid)
	switch {
	case errors.Is(err, enroll.ErrNoCrop):
		return &apiError{http.StatusNotFound, "no_crop", fmt.Sprintf("face %d of identity %d has no crop kept: it was imported, enrolled before crops were kept, or enrolled with --no-crops (facever enroll or facever serve)", fid, id)}
	case err != nil:
		return err
	}
	// A store hands back what it was given, checked on the way in; a crop
	// that is not a JPEG now is damage, not an image to send.
	if len(b) == 0 || enroll.CheckCrop(b) != nil {
		return fmt.Errorf("%w: the crop of face %d of identity %d is not a JPEG image", enroll.ErrCorrupt, fid, id)
	}
	sum := sha256.Sum256(b)
	etag := `"` + hex.EncodeToString(sum[:12]) + `"`
	h := w.Header()
	h.Set("Cache-Control", "private, no-cache")
	h.Set("ETag", etag)
	if etagMatches(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	h.Set("Content-Type", "image/jpeg")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Disposition", fmt.Sprintf(`inline; filename="face-%d-%d.jpg"`, id, fid))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b) // the client went away: nothing to tell it
	}
	return nil
}

// etagMatches says whether an If-None-Match header names etag (or is *).
// Ranges are not served: a crop is a few KiB, sent whole.
func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}
