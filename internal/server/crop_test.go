package server

import (
	"bytes"
	"fmt"
	"image/jpeg"
	"io"
	"net/http"
	"testing"

	"github.com/facever/facever/enroll"
)

// getCrop fetches a face's crop with key (and If-None-Match when etag is
// not empty): the status, headers and body.
func getCrop(t *testing.T, f *fixture, path, key, etag string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", f.http.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := f.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// faceList is GET .../faces: each face's id and has_crop.
func faceList(t *testing.T, f *fixture, id int) (ids []int, crops []bool) {
	t.Helper()
	code, doc := f.do(t, "GET", fmt.Sprintf("/v1/identities/%d/faces", id), "", nil, f.key)
	if code != 200 {
		t.Fatalf("faces of %d: %d %v", id, code, doc)
	}
	for _, it := range doc["faces"].([]any) {
		m := it.(map[string]any)
		ids = append(ids, int(m["id"].(float64)))
		hc, ok := m["has_crop"].(bool)
		if !ok {
			t.Fatalf("face without has_crop: %v", m)
		}
		crops = append(crops, hc)
	}
	return ids, crops
}

// TestFaceCrop: an enroll (plain and idempotent) keeps each face's aligned
// chip in the real bbolt gallery, and GET .../faces/{face_id}/crop answers
// it as a JPEG of 112×112 (the fake recognizer's chip is grey at the
// person's value), with an ETag and its 304, and fails with the JSON
// error shape: not_found, no_crop, bad_request, unauthorized, forbidden.
func TestFaceCrop(t *testing.T) {
	f, _ := newFakeFixture(t, &fakeRecognizer{}, nil)
	testFaceCrop(t, f, f.gal)
}

// TestFaceCropPostgres: the same on a PostgreSQL gallery (a private
// cluster of internal/pgtest).
func TestFaceCropPostgres(t *testing.T) {
	_, f, store := pgFixture(t, enroll.Options{Model: "fake-model-sha"})
	testFaceCrop(t, f, store)
}

// testFaceCrop runs TestFaceCrop's checks on f, whose gallery is store.
func testFaceCrop(t *testing.T, f *fixture, store enroll.Store) {
	ann := createFake(t, f, "Ann", nil)
	enrollFake(t, f, ann, 90, 2)
	ids, crops := faceList(t, f, ann)
	if len(ids) != 2 || !crops[0] || !crops[1] {
		t.Fatalf("faces %v, has_crop %v: want two with crops", ids, crops)
	}
	crop := func(id, fid int) string { return fmt.Sprintf("/v1/identities/%d/faces/%d/crop", id, fid) }
	code, h, body := getCrop(t, f, crop(ann, ids[0]), f.key, "")
	if code != 200 || h.Get("Content-Type") != "image/jpeg" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Cache-Control") != "private, no-cache" || h.Get("ETag") == "" {
		t.Fatalf("crop: %d %v %.100q", code, h, body)
	}
	im, err := jpeg.Decode(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("the crop is not a JPEG: %v", err)
	}
	if b := im.Bounds(); b.Dx() != 112 || b.Dy() != 112 {
		t.Fatalf("crop of %v, want 112×112", b)
	}
	if r, g, bl, _ := im.At(56, 56).RGBA(); absDiff(r>>8, 90) > 3 || absDiff(g>>8, 90) > 3 || absDiff(bl>>8, 90) > 3 {
		t.Fatalf("crop pixel %d,%d,%d: want the chip's grey 90", r>>8, g>>8, bl>>8)
	}
	// The same image again: 304 for its ETag, the image for another.
	if code, h2, b := getCrop(t, f, crop(ann, ids[0]), f.key, h.Get("ETag")); code != 304 || len(b) != 0 || h2.Get("ETag") != h.Get("ETag") {
		t.Fatalf("If-None-Match: %d %d bytes %v", code, len(b), h2)
	}
	if code, _, b := getCrop(t, f, crop(ann, ids[0]), f.key, `"other"`); code != 200 || !bytes.Equal(b, body) {
		t.Fatalf("another ETag: %d, %d bytes", code, len(b))
	}

	// An idempotent enroll keeps crops too (and a replay adds none).
	bob := createFake(t, f, "Bob", nil)
	ebody := jsonBody(map[string]any{"images": []string{b64(photo(t, 120, 1, 48))}})
	for i := 0; i < 2; i++ {
		if code, raw, _ := postOnce(t, f, fmt.Sprintf("/v1/identities/%d/faces", bob), "bob-1", "application/json", ebody); code != 200 {
			t.Fatalf("idempotent enroll %d: %d %s", i, code, raw)
		}
	}
	bids, bcrops := faceList(t, f, bob)
	if len(bids) != 1 || !bcrops[0] {
		t.Fatalf("Bob's faces %v %v", bids, bcrops)
	}
	if code, _, b := getCrop(t, f, crop(bob, bids[0]), f.key, ""); code != 200 {
		t.Fatalf("Bob's crop: %d", code)
	} else if im, err := jpeg.Decode(bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	} else if r, _, _, _ := im.At(10, 10).RGBA(); absDiff(r>>8, 120) > 3 {
		t.Fatalf("Bob's crop is not his chip: red %d", r>>8)
	}

	// A face enrolled without a crop (as imported): has_crop false, 404
	// no_crop.
	ts, err := store.AddTemplates(uint64(bob), []enroll.Template{{Embedding: unit(fakeDim, 3), Source: "imported"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, bc := faceList(t, f, bob); len(bc) != 2 || bc[1] {
		t.Fatalf("has_crop after a template without one: %v", bc)
	}
	fails := []struct {
		what, path, key string
		status          int
		code            string
	}{
		{"no crop", crop(bob, int(ts[0].ID)), f.key, 404, "no_crop"},
		{"unknown identity", crop(999, ids[0]), f.key, 404, "not_found"},
		{"unknown face", crop(ann, 999), f.key, 404, "not_found"},
		{"another identity's face", crop(bob, ids[0]), f.key, 404, "not_found"},
		{"identity id not a number", fmt.Sprintf("/v1/identities/x/faces/%d/crop", ids[0]), f.key, 400, "bad_request"},
		{"face id not a number", fmt.Sprintf("/v1/identities/%d/faces/-1/crop", ann), f.key, 400, "bad_request"},
		{"no key", crop(ann, ids[0]), "", 401, "unauthorized"},
		{"wrong key", crop(ann, ids[0]), "fvk_wrong", 401, "unauthorized"},
	}
	rkey, _, err := store.CreateScopedAPIKey("reader", []string{enroll.ScopeRecognize})
	if err != nil {
		t.Fatal(err)
	}
	fails = append(fails, struct {
		what, path, key string
		status          int
		code            string
	}{"a recognize key", crop(ann, ids[0]), rkey, 403, "forbidden"})
	for _, c := range fails {
		code, doc := f.do(t, "GET", c.path, "", nil, c.key)
		if code != c.status || errCode(doc) != c.code {
			t.Errorf("%s: %d %v, want %d %s", c.what, code, doc, c.status, c.code)
		}
	}
	// An enroll key may see crops (it may list faces).
	ekey, _, err := store.CreateScopedAPIKey("kiosk", []string{enroll.ScopeEnroll})
	if err != nil {
		t.Fatal(err)
	}
	if code, _, _ := getCrop(t, f, crop(ann, ids[0]), ekey, ""); code != 200 {
		t.Errorf("an enroll key's crop: %d", code)
	}
	// A deleted face's crop is gone with it.
	if code, doc := f.do(t, "DELETE", fmt.Sprintf("/v1/identities/%d/faces/%d", ann, ids[0]), "", nil, f.key); code != 200 {
		t.Fatalf("delete: %d %v", code, doc)
	}
	if code, doc := f.do(t, "GET", crop(ann, ids[0]), "", nil, f.key); code != 404 || errCode(doc) != "not_found" {
		t.Errorf("a deleted face's crop: %d %v", code, doc)
	}
	if code, _, _ := getCrop(t, f, crop(ann, ids[1]), f.key, ""); code != 200 {
		t.Errorf("the other face's crop after the delete: %d", code)
	}
}

// TestNoCrops: a server with NoCrops enrolls faces without crops.
func TestNoCrops(t *testing.T) {
	f, _ := newFakeFixture(t, &fakeRecognizer{}, func(c *Config) { c.NoCrops = true })
	ann := createFake(t, f, "Ann", nil)
	enrollFake(t, f, ann, 90, 1)
	ids, crops := faceList(t, f, ann)
	if len(ids) != 1 || crops[0] {
		t.Fatalf("faces %v has_crop %v, want one without", ids, crops)
	}
	if code, doc := f.do(t, "GET", fmt.Sprintf("/v1/identities/%d/faces/%d/crop", ann, ids[0]), "", nil, f.key); code != 404 || errCode(doc) != "no_crop" {
		t.Fatalf("crop with NoCrops: %d %v", code, doc)
	}
}

func absDiff(a, b uint32) uint32 {
	if a > b {
		return a - b
	}
	return b - a
}

// unit is a dim-dimensional unit vector along axis i.
func unit(dim, i int) []float32 {
	v := make([]float32, dim)
	v[i] = 1
	return v
}
