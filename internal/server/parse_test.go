package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// FuzzParseBody: no request body, JSON or multipart, makes the request
// parser panic; what it rejects is an *apiError (a 4xx with a message) or
// the body-size error.
func FuzzParseBody(f *testing.F) {
	f.Add("application/json", []byte(`{"image_a":"aGVsbG8=","image_b":["aGk=","data:image/png;base64,aGk="],"threshold":0.5}`))
	f.Add("application/json", []byte(`{"image_a":12}`))
	f.Add("application/json", []byte(`[1,2`))
	f.Add("multipart/form-data; boundary=X", []byte("--X\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n\r\nabc\r\n--X--\r\n"))
	f.Add("multipart/form-data; boundary=X", []byte("--X\r\nContent-Disposition: form-data; name=\"top\"\r\n\r\n3\r\n--X"))
	f.Add("text/plain", []byte("hello"))
	f.Fuzz(func(t *testing.T, ctype string, body []byte) {
		r := httptest.NewRequest("POST", "/v1/verify", bytes.NewReader(body))
		r.Header.Set("Content-Type", ctype)
		w := httptest.NewRecorder()
		r.Body = http.MaxBytesReader(w, r.Body, 1<<16)
		q, err := parse(r, fields{images: []string{"image_a", "image_b", "image"}, values: []string{"threshold", "largest"}}, 4)
		if err != nil {
			var ae *apiError
			var mb *http.MaxBytesError
			if !errors.As(err, &ae) && !errors.As(err, &mb) {
				t.Fatalf("rejection is neither a 4xx API error nor the size limit: %v", err)
			}
			if ae != nil && (ae.status < 400 || ae.status >= 500 || ae.message == "") {
				t.Fatalf("rejection %d %q", ae.status, ae.message)
			}
			return
		}
		if _, err := q.float("threshold", 0.5); err != nil {
			var ae *apiError
			if !errors.As(err, &ae) {
				t.Fatalf("threshold error is not an API error: %v", err)
			}
		}
		if _, err := q.bool("largest"); err != nil {
			var ae *apiError
			if !errors.As(err, &ae) {
				t.Fatalf("largest error is not an API error: %v", err)
			}
		}
	})
}

// TestErrorCodesDocumented: every stable error code the server answers
// with is listed in openapi.json's Error schema, so that clients can rely
// on the document.
func TestErrorCodesDocumented(t *testing.T) {
	// The codes are schema/defs.json's error_code, the document's
	// components.schemas.error_code.
	var doc struct {
		Components struct {
			Schemas struct {
				Code struct {
					OneOf []struct {
						Const string `json:"const"`
					} `json:"oneOf"`
				} `json:"error_code"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, c := range doc.Components.Schemas.Code.OneOf {
		documented[c.Const] = true
	}
	files, _ := filepath.Glob("*.go")
	re := regexp.MustCompile(`&apiError\{http\.Status\w+, "(\w+)"`)
	found := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			found++
			if !documented[m[1]] {
				t.Errorf("%s: code %q is not in schema/defs.json's error_code: add it there with its description and x-http-status, then run go run ./internal/schemadoc and go test ./internal/server -run TestOpenAPISchemasAreSchemaFiles -update", f, m[1])
			}
		}
	}
	if found < 15 {
		t.Fatalf("found only %d error codes in the sources", found)
	}
}
