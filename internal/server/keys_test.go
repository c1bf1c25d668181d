package server

import (
	"fmt"
	"testing"
)

func TestKeyScopes(t *testing.T) {
	f, _ := newFakeFixture(t, &fakeRecognizer{}, nil)
	admin := f.key // made by CreateAPIKey: an admin key
	mk := func(name string, scopes ...string) (string, string) {
		t.Helper()
		code, doc := f.do(t, "POST", "/v1/keys", "application/json", jsonBody(map[string]any{"name": name, "scopes": scopes}), admin)
		if code != 201 {
			t.Fatalf("create %s: %d %v", name, code, doc)
		}
		k, _ := doc["key"].(string)
		if len(k) < 40 || doc["id"] != doc["prefix"] || fmt.Sprint(doc["scopes"]) != fmt.Sprint(scopes) {
			t.Fatalf("created: %v", doc)
		}
		return k, doc["id"].(string)
	}
	recog, recogID := mk("kiosk", "recognize")
	enr, _ := mk("front desk", "enroll")
	ann := createFake(t, f, "Ann", nil)
	enrollFake(t, f, ann, 10, 1)
	verifyBody := jsonBody(map[string]any{"image_a": b64(photo(t, 10, 1, 40)), "image_b": b64(photo(t, 10, 1, 41))})
	identifyBody := jsonBody(map[string]any{"image": b64(photo(t, 10, 1, 40))})
	enrollBody := jsonBody(map[string]any{"images": []string{b64(photo(t, 10, 1, 42))}})
	type call struct {
		method, path string
		body         []byte
	}
	calls := map[string]call{
		"verify":          {"POST", "/v1/verify", verifyBody},
		"identify":        {"POST", "/v1/identify", identifyBody},
		"verify identity": {"POST", fmt.Sprintf("/v1/identities/%d/verify", ann), identifyBody},
		"create":          {"POST", "/v1/identities", jsonBody(map[string]any{"name": "x"})},
		"enroll":          {"POST", fmt.Sprintf("/v1/identities/%d/faces", ann), enrollBody},
		"list":            {"GET", "/v1/identities", nil},
		"faces":           {"GET", fmt.Sprintf("/v1/identities/%d/faces", ann), nil},
		"rename":          {"PATCH", fmt.Sprintf("/v1/identities/%d", ann), jsonBody(map[string]any{"name": "Ann B"})},
		"delete face":     {"DELETE", fmt.Sprintf("/v1/identities/%d/faces/999", ann), nil},
		"keys":            {"GET", "/v1/keys", nil},
		"make key":        {"POST", "/v1/keys", jsonBody(map[string]any{"name": "y", "scopes": []string{"admin"}})},
		"revoke key":      {"DELETE", "/v1/keys/" + recogID, nil},
	}
	allowed := map[string][]string{
		"recognize": {"verify", "identify", "verify identity"},
		"enroll":    {"create", "enroll", "list", "faces"},
	}
	for scope, key := range map[string]string{"recognize": recog, "enroll": enr} {
		ok := map[string]bool{}
		for _, n := range allowed[scope] {
			ok[n] = true
		}
		for name, c := range calls {
			code, doc := f.do(t, c.method, c.path, "application/json", c.body, key)
			if ok[name] && (code == 403 || code >= 500) {
				t.Errorf("%s key, %s: %d %v", scope, name, code, doc)
			}
			if !ok[name] && (code != 403 || errCode(doc) != "forbidden") {
				t.Errorf("%s key, %s: %d %v, want 403 forbidden", scope, name, code, doc)
			}
		}
	}
	// The admin key may do everything (the revoke last).
	for _, name := range []string{"verify", "identify", "verify identity", "list", "faces", "rename", "keys", "make key"} {
		c := calls[name]
		if code, doc := f.do(t, c.method, c.path, "application/json", c.body, admin); code != 200 && code != 201 {
			t.Errorf("admin key, %s: %d %v", name, code, doc)
		}
	}
	code, doc := f.do(t, "GET", "/v1/keys", "", nil, admin)
	keys := doc["keys"].([]any)
	if code != 200 || len(keys) != 4 {
		t.Fatalf("keys: %d %v", code, doc)
	}
	for _, k := range keys {
		if m := k.(map[string]any); m["key"] != nil || m["id"] == "" || m["scopes"] == nil {
			t.Fatalf("a listed key: %v", m)
		}
	}
	// Revoked: the next request with the key fails.
	if code, _ := f.do(t, "POST", "/v1/identify", "application/json", identifyBody, recog); code != 200 {
		t.Fatalf("before revoke: %d", code)
	}
	if code, doc := f.do(t, "DELETE", "/v1/keys/"+recogID, "", nil, admin); code != 200 || doc["revoked"] != recogID {
		t.Fatalf("revoke: %d %v", code, doc)
	}
	if code, doc := f.do(t, "POST", "/v1/identify", "application/json", identifyBody, recog); code != 401 || errCode(doc) != "unauthorized" {
		t.Fatalf("after revoke: %d %v", code, doc)
	}
	if code, doc := f.do(t, "DELETE", "/v1/keys/"+recogID, "", nil, admin); code != 404 {
		t.Fatalf("revoke twice: %d %v", code, doc)
	}
	// A new key works at once.
	fresh, _ := mk("new", "recognize")
	if code, _ := f.do(t, "POST", "/v1/identify", "application/json", identifyBody, fresh); code != 200 {
		t.Fatalf("a new key: %d", code)
	}
	for _, c := range []struct {
		body string
		code int
	}{
		{`{"name":"z"}`, 400},
		{`{"name":"z","scopes":[]}`, 400},
		{`{"name":"z","scopes":["root"]}`, 400},
		{`{"scopes":["admin"]}`, 400},
		{`{"name":"z","scopes":["admin"],"x":1}`, 400},
	} {
		if code, doc := f.do(t, "POST", "/v1/keys", "application/json", []byte(c.body), admin); code != c.code {
			t.Errorf("%s: %d %v", c.body, code, doc)
		}
	}
	if code, _ := f.do(t, "GET", "/v1/keys", "", nil, ""); code != 401 {
		t.Errorf("no key: %d", code)
	}
}

func TestKeysPaged(t *testing.T) {
	f, _ := newFakeFixture(t, &fakeRecognizer{}, nil)
	for i := 0; i < 6; i++ {
		if _, _, err := f.gal.CreateScopedAPIKey(fmt.Sprintf("k%d", i), []string{"recognize"}); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	cursor := ""
	pages := 0
	for {
		code, doc := f.do(t, "GET", "/v1/keys?limit=3"+cursor, "", nil, f.key)
		if code != 200 {
			t.Fatalf("%d %v", code, doc)
		}
		pages++
		for _, k := range doc["keys"].([]any) {
			id := k.(map[string]any)["id"].(string)
			if seen[id] {
				t.Fatalf("%s twice", id)
			}
			seen[id] = true
		}
		c, ok := doc["next_cursor"].(string)
		if !ok {
			break
		}
		cursor = "&cursor=" + c
	}
	if pages != 3 || len(seen) != 7 {
		t.Fatalf("%d pages, %d keys", pages, len(seen))
	}
	if code, doc := f.do(t, "GET", "/v1/keys?cursor=zzz", "", nil, f.key); code != 400 || errCode(doc) != "bad_cursor" {
		t.Fatalf("bad cursor: %d %v", code, doc)
	}
}
