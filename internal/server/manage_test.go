package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/facever/facever/schema"
)

// enrollFake enrolls photos of person (fake recognizer) into identity id.
func enrollFake(t *testing.T, f *fixture, id int, person uint8, n int) map[string]any {
	t.Helper()
	var ims []any
	for i := 0; i < n; i++ {
		ims = append(ims, b64(photo(t, person, 1, 40+i)))
	}
	code, doc := f.do(t, "POST", fmt.Sprintf("/v1/identities/%d/faces", id), "application/json", jsonBody(map[string]any{"images": ims}), f.key)
	if code != 200 {
		t.Fatalf("enroll: %d %v", code, doc)
	}
	return doc
}

func createFake(t *testing.T, f *fixture, name string, md map[string]string) int {
	t.Helper()
	code, doc := f.do(t, "POST", "/v1/identities", "application/json", jsonBody(map[string]any{"name": name, "metadata": md}), f.key)
	if code != 201 {
		t.Fatalf("create %q: %d %v", name, code, doc)
	}
	return int(doc["id"].(float64))
}

func TestPatchIdentity(t *testing.T) {
	f, _ := newFakeFixture(t, &fakeRecognizer{}, func(c *Config) { c.MaxMetadataKeys = 3 })
	ann := createFake(t, f, "Ann", map[string]string{"team": "x", "desk": "4"})
	createFake(t, f, "Bob", nil)
	path := fmt.Sprintf("/v1/identities/%d", ann)
	code, doc := f.do(t, "PATCH", path, "application/json", []byte(`{"name":"Jose\u0301","metadata":{"team":"y","desk":null,"new":"1"}}`), f.key)
	if code != 200 || doc["name"] != "Jos\u00e9" {
		t.Fatalf("patch: %d %v", code, doc)
	}
	md := doc["metadata"].(map[string]any)
	if len(md) != 2 || md["team"] != "y" || md["new"] != "1" {
		t.Fatalf("metadata: %v", md)
	}
	if _, doc := f.do(t, "GET", path, "", nil, f.key); doc["identity"].(map[string]any)["name"] != "Jos\u00e9" {
		t.Fatalf("get after patch: %v", doc)
	}
	// Metadata alone.
	if code, doc := f.do(t, "PATCH", path, "application/json", []byte(`{"metadata":{"new":null}}`), f.key); code != 200 || len(doc["metadata"].(map[string]any)) != 1 {
		t.Fatalf("metadata only: %d %v", code, doc)
	}
	for _, c := range []struct {
		body   string
		status int
		code   string
	}{
		{`{"name":"Bob"}`, 409, "exists"},
		{`{}`, 400, "bad_request"},
		{`{"name":""}`, 400, "bad_request"},
		{`{"name":"a\u200bb"}`, 400, "bad_request"},
		{`{"nom":"x"}`, 400, "bad_request"},
		{`{"name":`, 400, "bad_request"},
		{`{"metadata":{"a":"1","b":"2","c":"3","d":"4"}}`, 413, "metadata_too_large"},
		{`{"metadata":{"a":"1","b":"2","c":"3"}}`, 413, "metadata_too_large"}, // merged: 4 keys
	} {
		code, doc := f.do(t, "PATCH", path, "application/json", []byte(c.body), f.key)
		if code != c.status || errCode(doc) != c.code {
			t.Errorf("%s: %d %v, want %d %s", c.body, code, doc, c.status, c.code)
		}
	}
	if code, doc := f.do(t, "PATCH", "/v1/identities/999", "application/json", []byte(`{"name":"Z"}`), f.key); code != 404 || errCode(doc) != "not_found" {
		t.Errorf("missing: %d %v", code, doc)
	}
	if code, _ := f.do(t, "PATCH", "/v1/identities/x", "application/json", []byte(`{"name":"Z"}`), f.key); code != 400 {
		t.Errorf("bad id: %d", code)
	}
	if code, _ := f.do(t, "PATCH", path, "application/json", []byte(`{"name":"Z"}`), ""); code != 401 {
		t.Errorf("no key: %d", code)
	}
	// Nothing failed changed anything.
	if _, doc := f.do(t, "GET", path, "", nil, f.key); doc["identity"].(map[string]any)["name"] != "Jos\u00e9" || len(doc["identity"].(map[string]any)["metadata"].(map[string]any)) != 1 {
		t.Fatalf("after failures: %v", doc)
	}
}

func TestFacesListAndDelete(t *testing.T) {
	f, _ := newFakeFixture(t, &fakeRecognizer{}, nil)
	ann := createFake(t, f, "Ann", nil)
	enrollFake(t, f, ann, 10, 5)
	base := fmt.Sprintf("/v1/identities/%d/faces", ann)
	var ids []int
	cursor := ""
	pages := 0
	for {
		code, doc := f.do(t, "GET", base+"?limit=2"+cursor, "", nil, f.key)
		if code != 200 {
			t.Fatalf("page: %d %v", code, doc)
		}
		pages++
		for _, it := range doc["faces"].([]any) {
			m := it.(map[string]any)
			if m["identity_id"].(float64) != float64(ann) || m["source"] == "" {
				t.Fatalf("face: %v", m)
			}
			ids = append(ids, int(m["id"].(float64)))
		}
		c, ok := doc["next_cursor"].(string)
		if !ok {
			if _, has := doc["next_cursor"]; has {
				t.Fatal("next_cursor present on the last page")
			}
			break
		}
		cursor = "&cursor=" + url.QueryEscape(c)
	}
	if pages != 3 || len(ids) != 5 {
		t.Fatalf("%d pages, faces %v", pages, ids)
	}
	code, doc := f.do(t, "DELETE", fmt.Sprintf("%s/%d", base, ids[1]), "", nil, f.key)
	if code != 200 || doc["identity"].(map[string]any)["templates"].(float64) != 4 {
		t.Fatalf("delete: %d %v", code, doc)
	}
	if code, doc := f.do(t, "DELETE", fmt.Sprintf("%s/%d", base, ids[1]), "", nil, f.key); code != 404 || errCode(doc) != "not_found" {
		t.Fatalf("delete twice: %d %v", code, doc)
	}
	if code, _ := f.do(t, "DELETE", base+"/x", "", nil, f.key); code != 400 {
		t.Fatalf("bad face id: %d", code)
	}
	if code, _ := f.do(t, "DELETE", fmt.Sprintf("/v1/identities/999/faces/%d", ids[0]), "", nil, f.key); code != 404 {
		t.Fatalf("unknown identity: %d", code)
	}
	bob := createFake(t, f, "Bob", nil)
	if code, _ := f.do(t, "DELETE", fmt.Sprintf("/v1/identities/%d/faces/%d", bob, ids[0]), "", nil, f.key); code != 404 {
		t.Fatalf("another identity's face: %d", code)
	}
	if code, doc := f.do(t, "GET", base, "", nil, f.key); code != 200 || len(doc["faces"].([]any)) != 4 {
		t.Fatalf("after delete: %d %v", code, doc)
	}
	if code, doc := f.do(t, "GET", fmt.Sprintf("/v1/identities/%d/faces", bob), "", nil, f.key); code != 200 || len(doc["faces"].([]any)) != 0 {
		t.Fatalf("no faces: %d %v", code, doc)
	}
	// Bad cursors: garbage, and a cursor of another list.
	_, page := f.do(t, "GET", "/v1/identities?limit=1", "", nil, f.key)
	if page["next_cursor"] == nil {
		t.Fatalf("identities page: %v", page)
	}
	for _, c := range []string{"!!!", "zz", url.QueryEscape(page["next_cursor"].(string))} {
		if code, doc := f.do(t, "GET", base+"?cursor="+c, "", nil, f.key); code != 400 || errCode(doc) != "bad_cursor" {
			t.Errorf("cursor %s: %d %v", c, code, doc)
		}
	}
	if code, doc := f.do(t, "GET", "/v1/identities/999/faces", "", nil, f.key); code != 404 {
		t.Fatalf("faces of a missing identity: %d %v", code, doc)
	}
	if code, _ := f.do(t, "GET", base+"?limit=0", "", nil, f.key); code != 400 {
		t.Fatalf("limit 0: %d", code)
	}
	// The removed face no longer matches in identify's search... and verify
	// still finds the others.
	ct, body := multipartBody(t, map[string][][]byte{"image": {photo(t, 10, 1, 50)}}, nil)
	if code, doc := f.do(t, "POST", fmt.Sprintf("/v1/identities/%d/verify", ann), ct, body, f.key); code != 200 || doc["same_person"] != true || int(doc["face_id"].(float64)) == ids[1] {
		t.Fatalf("verify after delete: %d %v", code, doc)
	}
}

func TestVerifyIdentity(t *testing.T) {
	f, _ := newFakeFixture(t, &fakeRecognizer{}, nil)
	ann := createFake(t, f, "Ann", nil)
	enrollFake(t, f, ann, 10, 2)
	empty := createFake(t, f, "Empty", nil)
	path := fmt.Sprintf("/v1/identities/%d/verify", ann)
	ct, body := multipartBody(t, map[string][][]byte{"image": {photo(t, 10, 1, 64)}}, nil)
	code, doc := f.do(t, "POST", path, ct, body, f.key)
	if code != 200 || doc["same_person"] != true || doc["similarity"].(float64) < 0.999 || doc["threshold"].(float64) != 0.5 || doc["model"] != "fake" {
		t.Fatalf("same person: %d %v", code, doc)
	}
	if doc["identity"].(map[string]any)["name"] != "Ann" || doc["face_id"].(float64) == 0 || doc["face_count"].(float64) != 1 {
		t.Fatalf("identity: %v", doc)
	}
	// Like /v1/verify: the largest face of a group photo, and how many there are.
	if code, doc := f.do(t, "POST", path, "application/json", jsonBody(map[string]any{"image": b64(photo(t, 10, 2, 64))}), f.key); code != 200 || doc["face_count"].(float64) != 2 || doc["same_person"] != true {
		t.Fatalf("two faces: %d %v", code, doc)
	}
	code, doc = f.do(t, "POST", path, "application/json", jsonBody(map[string]any{"image": b64(photo(t, 11, 1, 64)), "threshold": 0.3}), f.key)
	if code != 200 || doc["same_person"] != false || doc["similarity"].(float64) > 0.001 || doc["threshold"].(float64) != 0.3 {
		t.Fatalf("another person: %d %v", code, doc)
	}
	for _, c := range []struct {
		path   string
		ctype  string
		body   []byte
		status int
		code   string
	}{
		{fmt.Sprintf("/v1/identities/%d/verify", empty), "application/json", jsonBody(map[string]any{"image": b64(photo(t, 10, 1, 64))}), 422, "no_templates"},
		{"/v1/identities/999/verify", "application/json", jsonBody(map[string]any{"image": b64(photo(t, 10, 1, 64))}), 404, "not_found"},
		{path, "application/json", jsonBody(map[string]any{"image": b64(photo(t, 10, 0, 64))}), 422, "no_face"},
		{path, "application/json", jsonBody(map[string]any{"image": b64([]byte("not a photo"))}), 422, "not_image"},
		{path, "application/json", jsonBody(map[string]any{"image": b64(photo(t, 10, 1, 64)), "threshold": 2}), 400, "bad_request"},
		{path, "application/json", jsonBody(map[string]any{"image": b64(photo(t, 10, 1, 64)), "threshold": -0.5}), 400, "threshold_too_low"},
		{path, "application/json", jsonBody(map[string]any{"images": []string{}}), 400, "bad_request"},
		{path, "application/json", jsonBody(map[string]any{}), 400, "bad_request"},
		{path, "text/plain", []byte("x"), 415, "unsupported_media_type"},
	} {
		code, doc := f.do(t, "POST", c.path, c.ctype, c.body, f.key)
		if code != c.status || errCode(doc) != c.code {
			t.Errorf("%s %s: %d %v, want %d %s", c.path, c.body[:min(40, len(c.body))], code, doc, c.status, c.code)
		}
	}
}

func TestPrefixSearch(t *testing.T) {
	f, _ := newFakeFixture(t, &fakeRecognizer{}, nil)
	for _, n := range []string{"Ann", "Anna", "Annabel", "Bob", "An", "Annz", "José"} {
		createFake(t, f, n, nil)
	}
	var names []string
	cursor := ""
	for {
		code, doc := f.do(t, "GET", "/v1/identities?prefix=Ann&limit=3"+cursor, "", nil, f.key)
		if code != 200 {
			t.Fatalf("%d %v", code, doc)
		}
		for _, it := range doc["identities"].([]any) {
			names = append(names, it.(map[string]any)["name"].(string))
		}
		c, ok := doc["next_cursor"].(string)
		if !ok {
			break
		}
		cursor = "&cursor=" + url.QueryEscape(c)
	}
	if fmt.Sprint(names) != "[Ann Anna Annabel Annz]" {
		t.Fatalf("names: %v", names)
	}
	if _, doc := f.do(t, "GET", "/v1/identities?prefix="+url.QueryEscape("Jose\u0301"), "", nil, f.key); len(doc["identities"].([]any)) != 1 {
		t.Fatalf("NFC prefix: %v", doc)
	}
	if _, doc := f.do(t, "GET", "/v1/identities?prefix=zz", "", nil, f.key); len(doc["identities"].([]any)) != 0 {
		t.Fatalf("no match: %v", doc)
	}
	if code, doc := f.do(t, "GET", "/v1/identities?prefix=A&after=3", "", nil, f.key); code != 400 {
		t.Fatalf("prefix with after: %d %v", code, doc)
	}
	_, byID := f.do(t, "GET", "/v1/identities?limit=1", "", nil, f.key)
	if code, doc := f.do(t, "GET", "/v1/identities?prefix=A&cursor="+url.QueryEscape(byID["next_cursor"].(string)), "", nil, f.key); code != 400 || errCode(doc) != "bad_cursor" {
		t.Fatalf("an id cursor in a prefix search: %d %v", code, doc)
	}
}

// TestPaginationWithConcurrentInserts pages through 1,000 identities while
// other clients add more: every identity that was there before the walk is
// seen exactly once, none twice, in increasing ids.
func TestPaginationWithConcurrentInserts(t *testing.T) {
	f, _ := newFakeFixture(t, &fakeRecognizer{}, nil)
	const before, during = 1000, 200
	for j := 0; j < before; j++ {
		if _, err := f.gal.AddIdentity(fmt.Sprintf("before %04d", j), nil); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	var inserted atomic.Int64
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			defer inserted.Add(during) // wake the walker if this one fails
			for j := 0; j < during/4; j++ {
				code, doc := f.do(t, "POST", "/v1/identities", "application/json", jsonBody(map[string]any{"name": fmt.Sprintf("during %d-%d", w, j)}), f.key)
				if code != 201 {
					t.Errorf("insert: %d %v", code, doc)
					return
				}
				inserted.Add(1)
			}
		}(w)
	}
	seen := map[string]int{}
	last := 0.0
	cursor := ""
	for pages := 1; ; pages++ {
		// Inserts land between the pages (two per page until all are in).
		for inserted.Load() < int64(min(2*pages, during)) {
			runtime.Gosched()
		}
		code, doc := f.do(t, "GET", "/v1/identities?limit=37"+cursor, "", nil, f.key)
		if code != 200 {
			t.Fatalf("page: %d %v", code, doc)
		}
		for _, it := range doc["identities"].([]any) {
			m := it.(map[string]any)
			if id := m["id"].(float64); id <= last {
				t.Fatalf("id %v after %v", id, last)
			} else {
				last = id
			}
			seen[m["name"].(string)]++
		}
		c, ok := doc["next_cursor"].(string)
		if !ok {
			break
		}
		cursor = "&cursor=" + url.QueryEscape(c)
	}
	wg.Wait()
	for j := 0; j < before; j++ {
		if n := seen[fmt.Sprintf("before %04d", j)]; n != 1 {
			t.Fatalf("before %04d seen %d times", j, n)
		}
	}
	for n, c := range seen {
		if c != 1 {
			t.Fatalf("%q seen %d times", n, c)
		}
	}
	if len(seen) < before+40 {
		t.Fatalf("%d seen: the inserts did not interleave with the walk", len(seen))
	}
	t.Logf("%d identities seen (%d inserted during the walk)", len(seen), len(seen)-before)
}

// postOnce sends an enroll with an Idempotency-Key.
func postOnce(t *testing.T, f *fixture, path, key, ctype string, body []byte) (int, []byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("POST", f.http.URL+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Authorization", "Bearer "+f.key)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := f.http.Client().Do(req)
	if err != nil {
		t.Error(err)
		return 0, nil, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

func TestIdempotentEnroll(t *testing.T) {
	rec := &fakeRecognizer{}
	f, _ := newFakeFixture(t, rec, nil)
	ann := createFake(t, f, "Ann", nil)
	path := fmt.Sprintf("/v1/identities/%d/faces", ann)
	im := photo(t, 10, 1, 64)
	ct, body := multipartBody(t, map[string][][]byte{"images": {im}}, nil)
	code, first, h := postOnce(t, f, path, "retry-1", ct, body)
	if code != 200 || h.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first: %d %s", code, first)
	}
	// The same request again; then the same photo in another encoding (a
	// new multipart boundary, JSON): the first answer, nothing enrolled.
	ct2, body2 := multipartBody(t, map[string][][]byte{"images": {im}}, nil)
	for i, r := range [][2]any{{ct, body}, {ct2, body2}, {"application/json", jsonBody(map[string]any{"images": []string{b64(im)}})}} {
		code, again, h := postOnce(t, f, path, "retry-1", r[0].(string), r[1].([]byte))
		if code != 200 || !bytes.Equal(again, first) || h.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("retry %d: %d %s, first %s", i, code, again, first)
		}
	}
	if it, _ := f.gal.Get(uint64(ann)); it.Templates != 1 {
		t.Fatalf("%d templates after retries", it.Templates)
	}
	// Another photo with the key: refused, nothing enrolled.
	ct3, body3 := multipartBody(t, map[string][][]byte{"images": {photo(t, 11, 1, 64)}}, nil)
	if code, b, _ := postOnce(t, f, path, "retry-1", ct3, body3); code != 422 || !bytes.Contains(b, []byte("idempotency_mismatch")) {
		t.Fatalf("another body: %d %s", code, b)
	}
	// Another identity with the key: another request.
	bob := createFake(t, f, "Bob", nil)
	if code, b, _ := postOnce(t, f, fmt.Sprintf("/v1/identities/%d/faces", bob), "retry-1", ct, body); code != 422 {
		t.Fatalf("another identity: %d %s", code, b)
	}
	long := string(bytes.Repeat([]byte("k"), 300))
	if code, b, _ := postOnce(t, f, path, long, ct, body); code != 400 {
		t.Fatalf("long key: %d %s", code, b)
	}
	// Concurrent retries of one new request: one enroll.
	var wg sync.WaitGroup
	answers := make([][]byte, 8)
	for i := range answers {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			code, b, _ := postOnce(t, f, path, "race", ct3, body3)
			if code != 200 {
				t.Errorf("concurrent %d: %d %s", i, code, b)
			}
			answers[i] = b
		}(i)
	}
	wg.Wait()
	for i := range answers {
		if !bytes.Equal(answers[i], answers[0]) {
			t.Fatalf("answers differ: %s / %s", answers[i], answers[0])
		}
	}
	if it, _ := f.gal.Get(uint64(ann)); it.Templates != 2 {
		t.Fatalf("%d templates after concurrent retries", it.Templates)
	}
	// Without a key, each request enrolls.
	postOnce(t, f, path, "", ct, body)
	postOnce(t, f, path, "", ct, body)
	if it, _ := f.gal.Get(uint64(ann)); it.Templates != 4 {
		t.Fatalf("%d templates without keys", it.Templates)
	}
}

func TestIdentifyAllFaces(t *testing.T) {
	rec := &fakeRecognizer{}
	f, _ := newFakeFixture(t, rec, func(c *Config) { c.MaxFaces = 4 })
	ann := createFake(t, f, "Ann", nil)
	enrollFake(t, f, ann, 10, 1)
	code, doc := f.do(t, "POST", "/v1/identify", "application/json", jsonBody(map[string]any{"image": b64(photo(t, 10, 3, 64)), "all_faces": true, "top": 2}), f.key)
	if code != 200 || doc["face_count"].(float64) != 3 {
		t.Fatalf("all faces: %d %v", code, doc)
	}
	data, _ := json.Marshal(doc)
	if err := schema.Validate("identify-http.json", data); err != nil {
		t.Errorf("schema: %v\n%s", err, data)
	}
	faces := doc["faces"].([]any)
	if len(faces) != 3 {
		t.Fatalf("faces: %v", faces)
	}
	for i, fo := range faces {
		m := fo.(map[string]any)
		if m["unknown"] != false || m["match"].(map[string]any)["name"] != "Ann" || m["face"] == nil {
			t.Fatalf("face %d: %v", i, m)
		}
	}
	// One backbone run of three chips.
	if runs := rec.backboneRuns(); len(runs[len(runs)-1]) != 3 {
		t.Fatalf("backbone runs: %v", runs)
	}
	// Multipart form value too; without all_faces no "faces".
	ct, body := multipartBody(t, map[string][][]byte{"image": {photo(t, 10, 3, 64)}}, map[string]string{"all_faces": "true"})
	if code, doc := f.do(t, "POST", "/v1/identify", ct, body, f.key); code != 200 || len(doc["faces"].([]any)) != 3 {
		t.Fatalf("multipart all_faces: %d %v", code, doc)
	}
	if _, doc := f.do(t, "POST", "/v1/identify", "application/json", jsonBody(map[string]any{"image": b64(photo(t, 10, 3, 64))}), f.key); doc["faces"] != nil {
		t.Fatalf("faces without all_faces: %v", doc)
	}
	if code, doc := f.do(t, "POST", "/v1/identify", "application/json", jsonBody(map[string]any{"image": b64(photo(t, 10, 5, 64)), "all_faces": true}), f.key); code != 422 || errCode(doc) != "too_many_faces" {
		t.Fatalf("over MaxFaces: %d %v", code, doc)
	}
	if code, _ := f.do(t, "POST", "/v1/identify", "application/json", jsonBody(map[string]any{"image": b64(photo(t, 10, 1, 64)), "all_faces": "yes"}), f.key); code != 400 {
		t.Fatalf("all_faces not a boolean: %d", code)
	}
}

func TestDetectEndpoint(t *testing.T) {
	f, _ := newFakeFixture(t, &fakeRecognizer{}, func(c *Config) { c.MaxFaces = 4 })
	for _, n := range []uint8{0, 1, 3} {
		code, doc := f.do(t, "POST", "/v1/detect", "application/json", jsonBody(map[string]any{"image": b64(photo(t, 10, n, 64))}), f.key)
		if code != 200 || doc["face_count"].(float64) != float64(n) || len(doc["faces"].([]any)) != int(n) {
			t.Fatalf("%d faces: %d %v", n, code, doc)
		}
		if n > 0 {
			fa := doc["faces"].([]any)[0].(map[string]any)
			if len(fa["box"].([]any)) != 4 || len(fa["landmarks"].([]any)) != 5 || fa["score"].(float64) != 0.99 {
				t.Fatalf("face: %v", fa)
			}
		}
	}
	for _, c := range []struct {
		body   []byte
		status int
		code   string
	}{
		{jsonBody(map[string]any{"image": b64(photo(t, 10, 5, 64))}), 422, "too_many_faces"},
		{jsonBody(map[string]any{"image": b64([]byte("nope"))}), 422, "not_image"},
		{jsonBody(map[string]any{}), 400, "bad_request"},
		{jsonBody(map[string]any{"image": b64(photo(t, 10, 1, 64)), "top": 2}), 400, "bad_request"},
	} {
		if code, doc := f.do(t, "POST", "/v1/detect", "application/json", c.body, f.key); code != c.status || errCode(doc) != c.code {
			t.Errorf("%s: %d %v", c.body[:min(30, len(c.body))], code, doc)
		}
	}
	if code, _ := f.do(t, "POST", "/v1/detect", "application/json", jsonBody(map[string]any{"image": b64(photo(t, 10, 1, 64))}), ""); code != 401 {
		t.Errorf("no key: %d", code)
	}
}

func TestEmbedEndpoint(t *testing.T) {
	f, _ := newFakeFixture(t, &fakeRecognizer{}, nil)
	code, doc := f.do(t, "POST", "/v1/embed", "application/json", jsonBody(map[string]any{"image": b64(photo(t, 10, 1, 64))}), f.key)
	if code != 200 || doc["dim"].(float64) != fakeDim || doc["model"] != "fake" {
		t.Fatalf("embed: %d %v", code, doc)
	}
	e := doc["embedding"].([]any)
	if len(e) != fakeDim || e[10].(float64) != 1 || e[11].(float64) != 0 {
		t.Fatalf("embedding: %v", e)
	}
	if code, doc := f.do(t, "POST", "/v1/embed", "application/json", jsonBody(map[string]any{"image": b64(photo(t, 10, 0, 64))}), f.key); code != 422 || errCode(doc) != "no_face" {
		t.Fatalf("no face: %d %v", code, doc)
	}
	if code, _ := f.do(t, "POST", "/v1/embed", "application/json", jsonBody(map[string]any{}), f.key); code != 400 {
		t.Fatalf("no image: %d", code)
	}
}
