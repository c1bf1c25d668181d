package server

import (
	"bytes"
	"fmt"
	"image/jpeg"
	"math"
	"testing"

	facever "github.com/facever/facever"
	"github.com/facever/facever/align"
	"github.com/facever/facever/internal/testmodels"
	"github.com/facever/facever/verify"
)

// minEnrolledCropCosine is the least cosine similarity between an
// enrolled template and its crop, decoded and embedded again: the crop is
// the chip the template was made from, less JPEG's loss at quality 90. The
// CLI's test measured 0.9895–0.9979 (median 0.9960) over the 54 faces of
// the johns gallery (cmd/facever minCropCosine); 0.985 sits under that
// minimum. Each crop must also be nearer to its own template than to any
// other enrolled face.
const minEnrolledCropCosine = 0.985

// TestEnrolledCropsReal: photos of John Simm enrolled over HTTP by the
// real models (multipart and JSON) keep their crops; each face's crop
// from GET .../faces/{face_id}/crop is the stored JPEG, 112×112, of a
// sane size, and embedded again through the library it is its own
// template's face; the ETag answers 304 (also weak, also in a list) and
// differs between faces.
func TestEnrolledCropsReal(t *testing.T) {
	f := newFixture(t, nil)
	r, err := facever.Open(facever.Options{ModelsDir: testmodels.Dir(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	simm := johns(t, "John_Simm")
	code, doc := f.do(t, "POST", "/v1/identities", "application/json", jsonBody(map[string]any{"name": "John Simm"}), f.key)
	if code != 201 {
		t.Fatalf("create: %d %v", code, doc)
	}
	id := int(doc["id"].(float64))
	ct, body := multipartBody(t, map[string][][]byte{"images": simm[:4]}, nil)
	if code, doc := f.do(t, "POST", fmt.Sprintf("/v1/identities/%d/faces", id), ct, body, f.key); code != 200 || doc["enrolled"].(float64) != 4 {
		t.Fatalf("enroll (multipart): %d %v", code, doc)
	}
	if code, doc := f.do(t, "POST", fmt.Sprintf("/v1/identities/%d/faces", id), "application/json", jsonBody(map[string]any{"images": []string{b64(simm[4]), b64(simm[5])}}), f.key); code != 200 || doc["enrolled"].(float64) != 2 {
		t.Fatalf("enroll (JSON): %d %v", code, doc)
	}
	fids, hasCrop := faceList(t, f, id)
	if len(fids) != 6 {
		t.Fatalf("%d faces, want 6", len(fids))
	}
	ts, err := f.gal.Templates(uint64(id))
	if err != nil || len(ts) != 6 {
		t.Fatalf("templates: %d %v", len(ts), err)
	}
	etags := map[string]int{}
	chips := make([]align.Chip, len(fids))
	for i, fid := range fids {
		if !hasCrop[i] || ts[i].ID != uint64(fid) {
			t.Fatalf("face %d: has_crop %v (template %d)", fid, hasCrop[i], ts[i].ID)
		}
		path := fmt.Sprintf("/v1/identities/%d/faces/%d/crop", id, fid)
		code, h, b := getCrop(t, f, path, f.key, "")
		if code != 200 || h.Get("Content-Type") != "image/jpeg" || h.Get("Content-Length") != fmt.Sprint(len(b)) {
			t.Fatalf("crop of face %d: %d %v", fid, code, h)
		}
		if len(b) < 1<<10 || len(b) > 16<<10 {
			t.Errorf("crop of face %d: %d bytes; a 112×112 face at quality %d is a few KiB", fid, len(b), align.ChipJPEGQuality)
		}
		stored, err := f.gal.TemplateCrop(uint64(id), uint64(fid))
		if err != nil || !bytes.Equal(stored, b) {
			t.Fatalf("crop of face %d: the answer (%d bytes) is not the stored crop (%d bytes, %v)", fid, len(b), len(stored), err)
		}
		im, err := jpeg.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("crop of face %d is not a JPEG: %v", fid, err)
		}
		if bd := im.Bounds(); bd.Dx() != 112 || bd.Dy() != 112 {
			t.Fatalf("crop of face %d is %v, want 112×112", fid, bd)
		}
		c := align.Chip{Size: 112, Pix: make([]uint8, 3*112*112)}
		for y := 0; y < 112; y++ {
			for x := 0; x < 112; x++ {
				cr, cg, cb, _ := im.At(x, y).RGBA()
				k := 3 * (y*112 + x)
				c.Pix[k], c.Pix[k+1], c.Pix[k+2] = uint8(cr>>8), uint8(cg>>8), uint8(cb>>8)
			}
		}
		chips[i] = c

		// ETag: 304 for it (plain, weak, in a list), the image for another.
		etag := h.Get("ETag")
		if etag == "" || h.Get("Cache-Control") != "private, no-cache" {
			t.Fatalf("crop of face %d: ETag %q, Cache-Control %q", fid, etag, h.Get("Cache-Control"))
		}
		if j, dup := etags[etag]; dup {
			t.Errorf("faces %d and %d have the same ETag %s", fids[j], fid, etag)
		}
		etags[etag] = i
		for _, inm := range []string{etag, "W/" + etag, `"x", ` + etag} {
			if code, h2, b2 := getCrop(t, f, path, f.key, inm); code != 304 || len(b2) != 0 || h2.Get("ETag") != etag {
				t.Errorf("face %d, If-None-Match %s: %d, %d bytes, ETag %q; want 304 without a body", fid, inm, code, len(b2), h2.Get("ETag"))
			}
		}
		if code, _, b2 := getCrop(t, f, path, f.key, `"`+fmt.Sprint(fid)+`"`); code != 200 || !bytes.Equal(b2, b) {
			t.Errorf("face %d, another ETag: %d, %d bytes", fid, code, len(b2))
		}
	}
	embs, err := r.EmbedChips(chips)
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := 1.0, 0.0
	for i, e := range embs {
		own := verify.Cosine(e, ts[i].Embedding)
		best := -1.0
		for j := range ts {
			if j != i {
				best = math.Max(best, verify.Cosine(e, ts[j].Embedding))
			}
		}
		if !(own >= minEnrolledCropCosine) || own <= best {
			t.Errorf("face %d (%s): its crop embeds at cosine %.4f from its template (want ≥ %.3f), %.4f from another face's", fids[i], ts[i].Source, own, minEnrolledCropCosine, best)
		}
		lo, hi = math.Min(lo, own), math.Max(hi, own)
	}
	t.Logf("6 crops over HTTP: cosine to their template %.4f–%.4f", lo, hi)
}
