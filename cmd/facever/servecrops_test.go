package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/facever/facever/internal/testmodels"
)

// TestServeNoCrops: `facever serve --no-crops` enrolls a face (the real
// models) without its crop: the faces list says has_crop false and the
// crop endpoint answers 404 no_crop.
func TestServeNoCrops(t *testing.T) {
	testmodels.Dir(t)
	gal := filepath.Join(t.TempDir(), "g.db")
	code, key, errs := facever(t, "apikey", "create", "--gallery", gal, "--name", "ci")
	key = strings.TrimSpace(key)
	if code != exitOK || key == "" {
		t.Fatalf("apikey create: %d %q", code, errs)
	}
	addr, stop := serveInProcess(t, []string{"serve", "--gallery", gal, "--addr", "127.0.0.1:0", "--no-crops"})
	defer stop()
	call := func(method, path string, body any) (int, map[string]any) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, "http://"+addr+path, rd)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var doc map[string]any
		raw, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s %s: %d, not JSON: %.200q", method, path, resp.StatusCode, raw)
		}
		return resp.StatusCode, doc
	}
	c, it := call("POST", "/v1/identities", map[string]any{"name": "John Simm"})
	if c != 201 {
		t.Fatalf("create: %d %v", c, it)
	}
	id := int(it["id"].(float64))
	photo, err := os.ReadFile(simmA)
	if err != nil {
		t.Fatal(err)
	}
	if c, doc := call("POST", fmt.Sprintf("/v1/identities/%d/faces", id), map[string]any{"image": photo}); c != 200 || doc["enrolled"] != 1.0 {
		t.Fatalf("enroll: %d %v", c, doc)
	}
	c, fl := call("GET", fmt.Sprintf("/v1/identities/%d/faces", id), nil)
	faces, _ := fl["faces"].([]any)
	if c != 200 || len(faces) != 1 || faces[0].(map[string]any)["has_crop"] != false {
		t.Fatalf("faces with --no-crops: %d %v", c, fl)
	}
	fid := int(faces[0].(map[string]any)["id"].(float64))
	if c, doc := call("GET", fmt.Sprintf("/v1/identities/%d/faces/%d/crop", id, fid), nil); c != 404 || doc["error"].(map[string]any)["code"] != "no_crop" {
		t.Fatalf("crop with --no-crops: %d %v", c, doc)
	}
}
