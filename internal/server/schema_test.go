package server

import (
	"encoding/json"
	"fmt"
	"github.com/facever/facever/align"
	"testing"

	"github.com/facever/facever/schema"
)

// TestResponsesMatchSchema sends every endpoint real requests (the real
// models, the johns photos) and validates each JSON answer, errors
// included, against its file in schema/: the HTTP API speaks the CLI's
// vocabulary.
func TestResponsesMatchSchema(t *testing.T) {
	f := newFixture(t, nil)
	simm, salley := johns(t, "John_Simm"), johns(t, "John_Salley")
	check := func(what, name string, code, want int, doc map[string]any) {
		t.Helper()
		if code != want {
			t.Fatalf("%s: status %d, want %d: %v", what, code, want, doc)
		}
		data, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		if err := schema.Validate(name, data); err != nil {
			t.Errorf("%s: %v\n%s", what, err, data)
		}
	}
	code, doc := f.do(t, "GET", "/healthz", "", nil, "")
	check("healthz", "health-http.json", code, 200, doc)
	code, doc = f.do(t, "POST", "/v1/verify", "application/json", jsonBody(map[string]any{"image_a": b64(simm[0]), "image_b": b64(simm[1])}), f.key)
	check("verify", "verify.json", code, 200, doc)
	code, doc = f.do(t, "POST", "/v1/identities", "application/json", jsonBody(map[string]any{"name": "John Simm", "metadata": map[string]string{"team": "a"}}), f.key)
	check("create identity", "defs.json#/$defs/identity", code, 201, doc)
	id := int(doc["id"].(float64))
	code, doc = f.do(t, "POST", "/v1/identities", "application/json", jsonBody(map[string]any{"name": "John Salley"}), f.key)
	check("create identity", "defs.json#/$defs/identity", code, 201, doc)
	id2 := int(doc["id"].(float64))
	blank := photo(t, 1, 0, 64) // a photo without a face: a per-photo error entry
	code, doc = f.do(t, "POST", fmt.Sprintf("/v1/identities/%d/faces", id), "application/json", jsonBody(map[string]any{"images": []string{b64(simm[0]), b64(blank), b64(simm[2])}}), f.key)
	check("add faces", "add-faces-http.json", code, 200, doc)
	if e, _ := doc["photos"].([]any)[1].(map[string]any)["error"].(map[string]any); e["code"] != "no_face" {
		t.Errorf("the faceless photo's entry: %v", doc["photos"])
	}
	code, doc = f.do(t, "POST", fmt.Sprintf("/v1/identities/%d/faces", id2), "application/json", jsonBody(map[string]any{"images": []string{b64(salley[0])}}), f.key)
	check("add faces", "add-faces-http.json", code, 200, doc)
	code, doc = f.do(t, "GET", "/v1/identities?limit=1", "", nil, f.key)
	check("list page", "identities-http.json", code, 200, doc)
	code, doc = f.do(t, "GET", fmt.Sprintf("/v1/identities/%d?limit=1", id), "", nil, f.key)
	check("show page", "gallery-show.json", code, 200, doc)
	code, doc = f.do(t, "POST", "/v1/identify", "application/json", jsonBody(map[string]any{"image": b64(simm[5]), "top": 2}), f.key)
	check("identify known", "identify-http.json", code, 200, doc)
	code, doc = f.do(t, "POST", "/v1/identify", "application/json", jsonBody(map[string]any{"image": b64(johns(t, "John_Savage")[0])}), f.key)
	check("identify stranger", "identify-http.json", code, 200, doc)
	code, doc = f.do(t, "POST", "/v1/detect", "application/json", jsonBody(map[string]any{"image": b64(simm[3])}), f.key)
	check("detect", "detect-http.json", code, 200, doc)
	// The API's faces carry the CLI's rotation and quality with its parts.
	if fa, _ := doc["faces"].([]any); len(fa) > 0 {
		face := fa[0].(map[string]any)
		q, _ := face["quality"].(map[string]any)
		if rot, ok := face["rotation"].(float64); !ok || rot != 0 || q == nil || q["score"].(float64) < align.DefaultMinQuality || q["face_pixels"].(float64) < 40 {
			t.Errorf("detect's face lacks rotation 0 or a good quality: %v", face)
		}
	}
	code, doc = f.do(t, "POST", fmt.Sprintf("/v1/identities/%d/verify", id), "application/json", jsonBody(map[string]any{"image": b64(simm[4])}), f.key)
	check("verify identity", "identity-verify-http.json", code, 200, doc)
	code, doc = f.do(t, "PATCH", fmt.Sprintf("/v1/identities/%d", id), "application/json", jsonBody(map[string]any{"name": "John Simm (actor)"}), f.key)
	check("patch identity", "defs.json#/$defs/identity", code, 200, doc)
	code, doc = f.do(t, "DELETE", fmt.Sprintf("/v1/identities/%d", id2), "", nil, f.key)
	check("remove", "removed.json", code, 200, doc)
	for _, e := range []struct {
		what         string
		method, path string
		body         []byte
		status       int
	}{
		{"no key", "GET", "/v1/identities", nil, 401},
		{"unknown identity", "GET", "/v1/identities/999", nil, 404},
		{"no face", "POST", "/v1/identify", jsonBody(map[string]any{"image": b64(blank)}), 422},
		{"not an image", "POST", "/v1/verify", jsonBody(map[string]any{"image_a": b64([]byte("text")), "image_b": b64(simm[0])}), 422},
		{"bad json", "POST", "/v1/verify", []byte("{"), 400},
	} {
		key := f.key
		if e.status == 401 {
			key = ""
		}
		code, doc := f.do(t, e.method, e.path, "application/json", e.body, key)
		check(e.what, "defs.json#/$defs/error_document", code, e.status, doc)
	}
}

// TestIdentifyDefaultThreshold: /v1/identify answers with the model's 1:N
// threshold, /v1/verify with its 1:1 one; a request's threshold wins.
func TestIdentifyDefaultThreshold(t *testing.T) {
	f, _ := newFakeFixture(t, &fakeRecognizer{}, nil)
	img := b64(photo(t, 1, 1, 64))
	_, doc := f.do(t, "POST", "/v1/identities", "application/json", jsonBody(map[string]any{"name": "p"}), f.key)
	f.do(t, "POST", fmt.Sprintf("/v1/identities/%d/faces", int(doc["id"].(float64))), "application/json", jsonBody(map[string]any{"images": []string{img}}), f.key)
	if code, doc := f.do(t, "POST", "/v1/identify", "application/json", jsonBody(map[string]any{"image": img}), f.key); code != 200 || doc["threshold"] != 0.6 {
		t.Errorf("identify: %d %v, want the 1:N threshold 0.6", code, doc)
	}
	if code, doc := f.do(t, "POST", "/v1/identify", "application/json", jsonBody(map[string]any{"image": img, "threshold": 0.7}), f.key); code != 200 || doc["threshold"] != 0.7 {
		t.Errorf("identify with a threshold: %d %v", code, doc)
	}
	if code, doc := f.do(t, "POST", "/v1/verify", "application/json", jsonBody(map[string]any{"image_a": img, "image_b": img}), f.key); code != 200 || doc["threshold"] != 0.5 {
		t.Errorf("verify: %d %v, want the 1:1 threshold 0.5", code, doc)
	}
}
