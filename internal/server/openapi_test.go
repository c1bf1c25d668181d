package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/facever/facever/enroll"
	"github.com/facever/facever/schema"
)

// The OpenAPI document (openapi.json) is checked three ways: its
// components.schemas are exactly the JSON Schemas of schema/ (one
// vocabulary for the CLI and the API); every route of the server's mux is
// one of its operations and the other way round; and every operation is
// called on a real server with the real models, good requests and bad,
// each request and each answer validated against it with kin-openapi's
// openapi3filter (OpenAPI 3.1: JSON Schema 2020-12, santhosh-tekuri's
// validator, which openapi3filter turns on for 3.1 documents).

var update = flag.Bool("update", false, "rewrite openapi.json's components.schemas from schema/")

const refPrefix = "#/components/schemas/"

// componentSchemas is what components.schemas must be: every definition of
// schema/defs.json, and every schema file the document refers to, with
// their references rewritten to the components.
func componentSchemas(t *testing.T, doc map[string]any) map[string]any {
	t.Helper()
	rewrite := func(v any) any {
		b, _ := json.Marshal(v)
		b = regexp.MustCompile(`"\$ref":"defs\.json#/\$defs/`).ReplaceAllLiteral(b, []byte(`"$ref":"`+refPrefix))
		b = regexp.MustCompile(`"\$ref":"([a-z0-9-]+)\.json"`).ReplaceAll(b, []byte(`"$$ref":"`+refPrefix+`${1}"`))
		var out any
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	out := map[string]any{}
	defs, err := schema.File("defs.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Defs map[string]any `json:"$defs"`
	}
	if err := json.Unmarshal(defs, &d); err != nil {
		t.Fatal(err)
	}
	for n, v := range d.Defs {
		out[n] = rewrite(v)
	}
	// The schema files the paths name.
	paths, _ := json.Marshal(doc["paths"])
	resps, _ := json.Marshal(doc["components"].(map[string]any)["responses"])
	names, _ := schema.Names()
	for _, m := range regexp.MustCompile(`"`+regexp.QuoteMeta(refPrefix)+`([A-Za-z0-9_.-]+)"`).FindAllStringSubmatch(string(paths)+string(resps), -1) {
		n := m[1]
		if _, ok := out[n]; ok {
			continue
		}
		if !slices.Contains(names, n+".json") {
			t.Errorf("openapi.json refers to %s%s, which is neither a definition of schema/defs.json nor a file schema/%s.json: add the schema file (and run `go test ./internal/server -run TestOpenAPISchemas -update`)", refPrefix, n, n)
			continue
		}
		b, _ := schema.File(n + ".json")
		var s map[string]any
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatal(err)
		}
		delete(s, "$schema")
		delete(s, "$id")
		out[n] = rewrite(s)
	}
	return out
}

// TestOpenAPISchemasAreSchemaFiles: components.schemas are schema/'s files,
// so the CLI's --json and the API share one vocabulary. With -update the
// test rewrites them from schema/.
func TestOpenAPISchemasAreSchemaFiles(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	want := componentSchemas(t, doc)
	comps := doc["components"].(map[string]any)
	if *update {
		comps["schemas"] = want
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile("openapi.json", b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Log("rewrote openapi.json's components.schemas from schema/; rebuild to embed it")
		return
	}
	got, _ := comps["schemas"].(map[string]any)
	var diffs []string
	for n, w := range want {
		g, ok := got[n]
		wb, _ := json.Marshal(w)
		gb, _ := json.Marshal(g)
		if !ok || !bytes.Equal(wb, gb) {
			diffs = append(diffs, n)
		}
	}
	for n := range got {
		if _, ok := want[n]; !ok {
			diffs = append(diffs, n+" (not in schema/)")
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Fatalf("openapi.json's components.schemas differ from schema/ in %v: edit the files of schema/ (never the components by hand) and run `go test ./internal/server -run TestOpenAPISchemasAreSchemaFiles -update`", diffs)
	}
}

// loadOpenAPI parses and validates the embedded document.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	l := openapi3.NewLoader()
	doc, err := l.LoadFromData(OpenAPI)
	if err != nil {
		t.Fatalf("openapi.json does not load: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI document: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() || !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		t.Fatalf("openapi.json is OpenAPI %s, want 3.1", doc.OpenAPI)
	}
	return doc
}

// muxRoute turns a mux pattern ("GET /v1/identities/{id}", "GET /{$}")
// into the document's method and path; ok is false for the catch-all "/"
// (any other path: 404 not_found, which no document can list).
func muxRoute(pattern string) (method, path string, ok bool) {
	method, path, found := strings.Cut(pattern, " ")
	if !found {
		return "", pattern, false
	}
	return method, strings.TrimSuffix(path, "{$}"), true
}

// TestOpenAPIListsEveryRoute: every route the server registers is an
// operation of openapi.json, and every operation is a route.
func TestOpenAPIListsEveryRoute(t *testing.T) {
	doc := loadOpenAPI(t)
	f, _ := newFakeFixture(t, &fakeRecognizer{}, nil)
	registered := map[string]bool{}
	for _, p := range f.srv.patterns {
		method, path, ok := muxRoute(p)
		if !ok {
			if p != "/" {
				t.Errorf("route %q has no method: register routes as \"METHOD /path\"", p)
			}
			continue
		}
		registered[method+" "+path] = true
		item := doc.Paths.Value(path)
		if item == nil || item.GetOperation(method) == nil {
			t.Errorf("openapi.json lacks %s %s, which the server registers: add \"%s\": {\"%s\": {\"operationId\", \"summary\", \"description\", \"tags\", \"parameters\", \"requestBody\", \"responses\"}} to its paths, with every status the handler answers (401/403 for a route with a key, 400, 404, 413, 415, 422, 500, 503 as they apply: see the other operations), the 2xx body as a $ref to %s<name> and the schema in schema/<name>.json; then run `go test ./internal/server -run TestOpenAPISchemasAreSchemaFiles -update` and add a good and a bad request to TestOpenAPITraffic",
				method, path, path, strings.ToLower(method), refPrefix)
		}
	}
	for _, path := range doc.Paths.InMatchingOrder() {
		for method := range doc.Paths.Value(path).Operations() {
			if !registered[method+" "+path] {
				t.Errorf("openapi.json documents %s %s, which the server does not register: remove it from openapi.json, or register the route", method, path)
			}
		}
	}
	// Every route goes through Server.register, so the list above is whole.
	files, _ := filepath.Glob("*.go")
	for _, fn := range files {
		if strings.HasSuffix(fn, "_test.go") {
			continue
		}
		b, _ := os.ReadFile(fn)
		for i, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "s.mux.Handle") && !strings.Contains(line, "s.mux.HandleFunc(pattern, h)") {
				t.Errorf("%s:%d registers a route on the mux directly: use s.register or s.handle, so that the OpenAPI tests see it", fn, i+1)
			}
		}
	}
}

// TestDocsListsEveryPath: /docs, rendered from the embedded document, names
// every path and operation, with its parameters and status codes, and
// loads nothing from elsewhere.
func TestDocsListsEveryPath(t *testing.T) {
	doc := loadOpenAPI(t)
	f, _ := newFakeFixture(t, &fakeRecognizer{}, nil)
	get := func(path string) (*http.Response, string) {
		resp, err := http.Get(f.http.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, page := get("/docs")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("/docs: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, path := range doc.Paths.InMatchingOrder() {
		for method, op := range doc.Paths.Value(path).Operations() {
			h := fmt.Sprintf(`<span class="method m-%s">%s</span> <code class="path">%s</code>`, method, method, htmlEscape(path))
			if !strings.Contains(page, h) {
				t.Errorf("/docs lacks the heading of %s %s", method, path)
			}
			id := `id="op-` + op.OperationID + `"`
			i := strings.Index(page, id)
			if op.OperationID == "" || i < 0 {
				t.Errorf("/docs has no section %s for %s %s", id, method, path)
				continue
			}
			section := page[i:]
			if j := strings.Index(section[1:], `<article class="op"`); j > 0 {
				section = section[:j]
			}
			for code := range op.Responses.Map() {
				if !strings.Contains(section, `<th scope="row">`+code+`</th>`) {
					t.Errorf("/docs: %s %s lacks its status %s", method, path, code)
				}
			}
			for _, p := range op.Parameters {
				if !strings.Contains(section, "<code>"+htmlEscape(p.Value.Name)+"</code>") {
					t.Errorf("/docs: %s %s lacks its parameter %s", method, path, p.Value.Name)
				}
			}
			if !strings.Contains(section, "curl") {
				t.Errorf("/docs: %s %s has no curl example", method, path)
			}
		}
	}
	for name := range doc.Components.Schemas {
		if !strings.Contains(page, `id="schema-`+name+`"`) {
			t.Errorf("/docs lacks the schema %s", name)
		}
	}
	// Offline: no URL of another origin, scripts and styles from /docs/.
	if m := regexp.MustCompile(`(?i)(src|href)="(https?:)?//`).FindString(page); m != "" {
		t.Errorf("/docs loads something from elsewhere: %s", m)
	}
	for _, a := range []string{"/docs/docs.js", "/docs/docs.css"} {
		if !strings.Contains(page, `"`+a+`"`) {
			t.Errorf("/docs does not use %s", a)
		}
		if r, body := get(a); r.StatusCode != 200 || len(body) < 100 || strings.Contains(body, "http://") || strings.Contains(body, "https://") {
			t.Errorf("%s: %d, %d bytes", a, r.StatusCode, len(body))
		}
	}
	if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Errorf("/docs CSP: %q", resp.Header.Get("Content-Security-Policy"))
	}
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}

// apiCall is one request of TestOpenAPITraffic.
type apiCall struct {
	what         string
	method, path string
	ctype        string
	body         []byte
	key          string
	header       map[string]string
	status       int
	// invalid: the request breaks the document (a missing or malformed
	// field, no key), so the validator must refuse it; others (an unknown
	// id, a photo without a face) are valid requests that fail.
	invalid bool
}

// trafficChecker sends calls to a real server and validates them.
type trafficChecker struct {
	t      *testing.T
	f      *fixture
	doc    *openapi3.T
	router routers.Router
	// seen records the statuses each operation answered.
	seen map[string]map[int]bool
	// files are the schema files answers were validated against.
	files map[string]bool
}

func init() {
	for _, ct := range []string{"text/html", "text/javascript", "text/css", "image/svg+xml"} {
		openapi3filter.RegisterBodyDecoder(ct, openapi3filter.PlainBodyDecoder)
	}
	for _, ct := range []string{"image/jpeg", "image/png"} {
		openapi3filter.RegisterBodyDecoder(ct, openapi3filter.FileBodyDecoder)
	}
}

// authenticate is the document's security, checked: a bearer scheme needs
// an Authorization: Bearer header, an apiKey one its header.
func authenticate(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	h := in.RequestValidationInput.Request.Header
	switch in.SecurityScheme.Type {
	case "http":
		if strings.HasPrefix(h.Get("Authorization"), "Bearer ") && len(h.Get("Authorization")) > 7 {
			return nil
		}
	case "apiKey":
		if h.Get(in.SecurityScheme.Name) != "" {
			return nil
		}
	}
	return errors.New("no API key")
}

func (c *trafficChecker) do(a apiCall) (int, map[string]any, http.Header) {
	t := c.t
	t.Helper()
	newReq := func() *http.Request {
		req, err := http.NewRequest(a.method, c.f.http.URL+a.path, bytes.NewReader(a.body))
		if err != nil {
			t.Fatal(err)
		}
		if a.ctype != "" {
			req.Header.Set("Content-Type", a.ctype)
		}
		if a.key != "" {
			req.Header.Set("Authorization", "Bearer "+a.key)
		}
		for k, v := range a.header {
			req.Header.Set(k, v)
		}
		return req
	}
	resp, err := c.f.http.Client().Do(newReq())
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var doc map[string]any
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Errorf("%s: %s %s answered JSON that does not parse: %v", a.what, a.method, a.path, err)
		}
	}
	if resp.StatusCode != a.status {
		t.Errorf("%s: %s %s answered %d, want %d: %.300s", a.what, a.method, a.path, resp.StatusCode, a.status, raw)
	}
	req := newReq()
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		if a.status == 404 && doc != nil {
			// A path no operation has: the catch-all's 404, an error
			// document.
			if err := schema.Validate("defs.json#/$defs/error_document", raw); err != nil {
				t.Errorf("%s: %v", a.what, err)
			}
			return resp.StatusCode, doc, resp.Header
		}
		t.Errorf("%s: openapi.json has no operation for %s %s (%v): add it to its paths", a.what, a.method, a.path, err)
		return resp.StatusCode, doc, resp.Header
	}
	key := route.Method + " " + route.Path
	if c.seen[key] == nil {
		c.seen[key] = map[int]bool{}
	}
	c.seen[key][resp.StatusCode] = true
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: authenticate}}
	reqErr := openapi3filter.ValidateRequest(context.Background(), in)
	switch {
	case a.invalid && reqErr == nil:
		t.Errorf("%s: the document accepts the bad request %s %s (%.200s), which the server refuses with %d: make openapi.json describe what the server accepts", a.what, a.method, a.path, a.body, resp.StatusCode)
	case !a.invalid && reqErr != nil:
		t.Errorf("%s: the document refuses the request %s %s that the server takes: %v", a.what, a.method, a.path, reqErr)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(raw)), Options: &openapi3filter.Options{IncludeResponseStatus: true}}
	// The same answer against its file of schema/, with the schema package
	// itself (the CLI's tests use it too).
	if r := route.Operation.Responses.Status(resp.StatusCode); r != nil && r.Value != nil && doc != nil {
		if mt := r.Value.Content.Get("application/json"); mt != nil && mt.Schema != nil && strings.HasPrefix(mt.Schema.Ref, refPrefix) {
			name := strings.TrimPrefix(mt.Schema.Ref, refPrefix)
			file := "defs.json#/$defs/" + name
			if names, _ := schema.Names(); slices.Contains(names, name+".json") {
				file = name + ".json"
			}
			if err := schema.Validate(file, raw); err != nil {
				t.Errorf("%s: %v\n%.400s", a.what, err, raw)
			}
			c.files[file] = true
		}
	}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("%s: openapi.json does not describe the real answer of %s %s, status %d: %v\nbody: %.400s\n(list the status under the operation's responses; a 2xx body's schema lives in schema/: edit it there and run `go test ./internal/server -run TestOpenAPISchemasAreSchemaFiles -update`)", a.what, route.Method, route.Path, resp.StatusCode, err, raw)
	}
	return resp.StatusCode, doc, resp.Header
}

// TestOpenAPITraffic runs every endpoint of a real server (the real models,
// the johns photos) with good and bad requests, validates each request and
// each answer against openapi.json, and checks that every operation was
// run, with a success and, where it has them, a failure.
func TestOpenAPITraffic(t *testing.T) {
	doc := loadOpenAPI(t)
	f := newFixture(t, nil)
	// The document's server is "/", this one; the router matches full URLs.
	doc.Servers = openapi3.Servers{{URL: f.http.URL}}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	c := &trafficChecker{t: t, f: f, doc: doc, router: router, seen: map[string]map[int]bool{}, files: map[string]bool{}}
	simm, salley := johns(t, "John_Simm"), johns(t, "John_Salley")
	blank := photo(t, 1, 0, 64) // no face
	heic := []byte("\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic\x00\x00\x00\x00meta")
	js := "application/json"
	key := f.key
	mp := func(files map[string][][]byte, fields map[string]string) (string, []byte) {
		return multipartBody(t, files, fields)
	}
	idOf := func(doc map[string]any) int {
		v, ok := doc["id"].(float64)
		if !ok {
			t.Fatalf("no id in %v", doc)
		}
		return int(v)
	}

	// Public routes.
	c.do(apiCall{what: "health", method: "GET", path: "/healthz", status: 200})
	c.do(apiCall{what: "document", method: "GET", path: "/openapi.json", status: 200})
	_, _, h := c.do(apiCall{what: "docs", method: "GET", path: "/docs", status: 200})
	c.do(apiCall{what: "docs unchanged", method: "GET", path: "/docs", header: map[string]string{"If-None-Match": h.Get("ETag")}, status: 304})
	c.do(apiCall{what: "docs script", method: "GET", path: "/docs/docs.js", status: 200})
	c.do(apiCall{what: "docs style", method: "GET", path: "/docs/docs.css", status: 200})
	c.do(apiCall{what: "docs no such file", method: "GET", path: "/docs/nothing.js", status: 404})
	_, _, h = c.do(apiCall{what: "web page", method: "GET", path: "/", status: 200})
	c.do(apiCall{what: "web page unchanged", method: "GET", path: "/", header: map[string]string{"If-None-Match": h.Get("ETag")}, status: 304})
	c.do(apiCall{what: "web script", method: "GET", path: "/web/app.js", status: 200})
	c.do(apiCall{what: "web style", method: "GET", path: "/web/style.css", status: 200})
	c.do(apiCall{what: "web no such file", method: "GET", path: "/web/nothing.js", status: 404})
	c.do(apiCall{what: "no such endpoint", method: "GET", path: "/v1/nothing", key: key, status: 404})
	c.do(apiCall{what: "metrics", method: "GET", path: "/metrics", key: key, status: 200})
	c.do(apiCall{what: "metrics without a key", method: "GET", path: "/metrics", status: 401, invalid: true})

	// Keys first: a recognize key for the 403s.
	_, kd, _ := c.do(apiCall{what: "create a recognize key", method: "POST", path: "/v1/keys", ctype: js, body: jsonBody(map[string]any{"name": "app", "scopes": []string{"recognize"}}), key: key, status: 201})
	rkey, _ := kd["key"].(string)
	rid, _ := kd["id"].(string)
	_, kd, _ = c.do(apiCall{what: "create an enroll key", method: "POST", path: "/v1/keys", ctype: js, body: jsonBody(map[string]any{"name": "kiosk", "scopes": []string{"enroll", "recognize"}}), key: key, status: 201})
	ekey, eid := kd["key"].(string), kd["id"].(string)
	c.do(apiCall{what: "key with an unknown scope", method: "POST", path: "/v1/keys", ctype: js, body: jsonBody(map[string]any{"name": "x", "scopes": []string{"root"}}), key: key, status: 400, invalid: true})
	c.do(apiCall{what: "key without scopes", method: "POST", path: "/v1/keys", ctype: js, body: jsonBody(map[string]any{"name": "x"}), key: key, status: 400, invalid: true})
	c.do(apiCall{what: "key by a recognize key", method: "POST", path: "/v1/keys", ctype: js, body: jsonBody(map[string]any{"name": "x", "scopes": []string{"admin"}}), key: rkey, status: 403})
	_, kl, _ := c.do(apiCall{what: "list keys", method: "GET", path: "/v1/keys?limit=1", key: key, status: 200})
	if cur, ok := kl["next_cursor"].(string); ok {
		c.do(apiCall{what: "list keys, next page", method: "GET", path: "/v1/keys?limit=1&cursor=" + cur, key: key, status: 200})
	} else {
		t.Errorf("three keys in pages of one: no next_cursor: %v", kl)
	}
	c.do(apiCall{what: "list keys, bad cursor", method: "GET", path: "/v1/keys?cursor=bm9wZQ", key: key, status: 400})
	c.do(apiCall{what: "list keys, limit 0", method: "GET", path: "/v1/keys?limit=0", key: key, status: 400, invalid: true})

	// Recognition.
	c.do(apiCall{what: "verify (JSON)", method: "POST", path: "/v1/verify", ctype: js, body: jsonBody(map[string]any{"image_a": b64(simm[0]), "image_b": b64(simm[1])}), key: rkey, status: 200})
	ct, body := mp(map[string][][]byte{"image_a": {simm[0]}, "image_b": {salley[0]}}, map[string]string{"threshold": "0.5"})
	c.do(apiCall{what: "verify (multipart, threshold)", method: "POST", path: "/v1/verify?crops=1", ctype: ct, body: body, key: rkey, status: 200})
	c.do(apiCall{what: "verify, malformed JSON", method: "POST", path: "/v1/verify", ctype: js, body: []byte("{"), key: rkey, status: 400, invalid: true})
	c.do(apiCall{what: "verify, unknown field", method: "POST", path: "/v1/verify", ctype: js, body: jsonBody(map[string]any{"image_a": b64(simm[0]), "image_b": b64(simm[1]), "mode": "fast"}), key: rkey, status: 400, invalid: true})
	c.do(apiCall{what: "verify, one photo", method: "POST", path: "/v1/verify", ctype: js, body: jsonBody(map[string]any{"image_a": b64(simm[0])}), key: rkey, status: 400, invalid: true})
	c.do(apiCall{what: "verify, threshold 2", method: "POST", path: "/v1/verify", ctype: js, body: jsonBody(map[string]any{"image_a": b64(simm[0]), "image_b": b64(simm[1]), "threshold": 2}), key: rkey, status: 400, invalid: true})
	c.do(apiCall{what: "verify, crops=yes", method: "POST", path: "/v1/verify?crops=yes", ctype: js, body: jsonBody(map[string]any{"image_a": b64(simm[0]), "image_b": b64(simm[1])}), key: rkey, status: 400, invalid: true})
	c.do(apiCall{what: "verify, not an image", method: "POST", path: "/v1/verify", ctype: js, body: jsonBody(map[string]any{"image_a": b64([]byte("text")), "image_b": b64(simm[0])}), key: rkey, status: 422})
	c.do(apiCall{what: "verify, text/plain", method: "POST", path: "/v1/verify", ctype: "text/plain", body: []byte("hello"), key: rkey, status: 415, invalid: true})
	c.do(apiCall{what: "verify without a key", method: "POST", path: "/v1/verify", ctype: js, body: jsonBody(map[string]any{"image_a": b64(simm[0]), "image_b": b64(simm[1])}), status: 401, invalid: true})
	c.do(apiCall{what: "verify with a wrong key", method: "POST", path: "/v1/verify", ctype: js, body: jsonBody(map[string]any{"image_a": b64(simm[0]), "image_b": b64(simm[1])}), key: "fv_wrong", status: 401})
	_, dd, _ := c.do(apiCall{what: "detect", method: "POST", path: "/v1/detect", ctype: js, body: jsonBody(map[string]any{"image": b64(simm[3])}), key: rkey, status: 200})
	if n, _ := dd["face_count"].(float64); n < 1 {
		t.Errorf("detect found no face: %v", dd)
	}
	_, dd, _ = c.do(apiCall{what: "detect, HEIC", method: "POST", path: "/v1/detect", ctype: js, body: jsonBody(map[string]any{"image": b64(heic)}), key: rkey, status: 422})
	if e, _ := dd["error"].(map[string]any); e["code"] != "unsupported_format" || !strings.Contains(fmt.Sprint(e["message"]), "heif-convert") {
		t.Errorf("a HEIC photo: %v, want unsupported_format (the CLI's code) with how to convert it", dd)
	}
	c.do(apiCall{what: "detect, no image", method: "POST", path: "/v1/detect", ctype: js, body: []byte(`{}`), key: rkey, status: 400, invalid: true})
	c.do(apiCall{what: "detect by an enroll-only key", method: "POST", path: "/v1/detect", ctype: js, body: jsonBody(map[string]any{"image": b64(simm[3])}), key: ekey, status: 200})
	ct, body = mp(map[string][][]byte{"image": {simm[4]}}, nil)
	_, ed, _ := c.do(apiCall{what: "embed (multipart)", method: "POST", path: "/v1/embed", ctype: ct, body: body, key: rkey, status: 200})
	if n, _ := ed["dim"].(float64); n != 512 {
		t.Errorf("embed: dim %v, want 512", ed["dim"])
	}
	c.do(apiCall{what: "embed, no face", method: "POST", path: "/v1/embed", ctype: js, body: jsonBody(map[string]any{"image": b64(blank)}), key: rkey, status: 422})

	// Identities.
	_, id1doc, _ := c.do(apiCall{what: "create identity", method: "POST", path: "/v1/identities", ctype: js, body: jsonBody(map[string]any{"name": "John Simm", "metadata": map[string]string{"team": "a"}}), key: key, status: 201})
	id1 := idOf(id1doc)
	_, id2doc, _ := c.do(apiCall{what: "create identity (enroll key)", method: "POST", path: "/v1/identities", ctype: js, body: jsonBody(map[string]any{"name": "John Salley"}), key: ekey, status: 201})
	id2 := idOf(id2doc)
	_, id3doc, _ := c.do(apiCall{what: "create identity without faces", method: "POST", path: "/v1/identities", ctype: js, body: jsonBody(map[string]any{"name": "Nobody"}), key: key, status: 201})
	id3 := idOf(id3doc)
	c.do(apiCall{what: "create identity, no name", method: "POST", path: "/v1/identities", ctype: js, body: jsonBody(map[string]any{"metadata": map[string]string{}}), key: key, status: 400, invalid: true})
	big := map[string]string{}
	for i := range DefaultMaxMetadataKeys + 1 {
		big[fmt.Sprint("k", i)] = "v"
	}
	c.do(apiCall{what: "create identity, too much metadata", method: "POST", path: "/v1/identities", ctype: js, body: jsonBody(map[string]any{"name": "x", "metadata": big}), key: key, status: 413})
	c.do(apiCall{what: "create identity by a recognize key", method: "POST", path: "/v1/identities", ctype: js, body: jsonBody(map[string]any{"name": "x"}), key: rkey, status: 403})
	faces := func(id int) string { return fmt.Sprintf("/v1/identities/%d/faces", id) }
	_, ad, _ := c.do(apiCall{what: "enroll three photos, one without a face", method: "POST", path: faces(id1), ctype: js, body: jsonBody(map[string]any{"images": []string{b64(simm[0]), b64(blank), b64(simm[2])}}), key: key, status: 200})
	if n, _ := ad["enrolled"].(float64); n != 2 {
		t.Errorf("enrolled %v, want 2: %v", ad["enrolled"], ad)
	}
	ct, body = mp(map[string][][]byte{"images": {salley[0], salley[1]}}, map[string]string{"largest": "true"})
	once := map[string]string{"Idempotency-Key": "retry-1"}
	c.do(apiCall{what: "enroll (multipart, Idempotency-Key)", method: "POST", path: faces(id2), ctype: ct, body: body, key: ekey, header: once, status: 200})
	_, _, h = c.do(apiCall{what: "enroll, retried", method: "POST", path: faces(id2), ctype: ct, body: body, key: ekey, header: once, status: 200})
	if h.Get("Idempotent-Replayed") != "true" {
		t.Errorf("the retried enroll was not a replay: %v", h)
	}
	c.do(apiCall{what: "enroll, the key of another request", method: "POST", path: faces(id2), ctype: js, body: jsonBody(map[string]any{"images": []string{b64(salley[3])}}), key: ekey, header: once, status: 422})
	c.do(apiCall{what: "enroll, no face at all", method: "POST", path: faces(id3), ctype: js, body: jsonBody(map[string]any{"image": b64(blank)}), key: key, status: 422})
	c.do(apiCall{what: "enroll, unknown identity", method: "POST", path: faces(999), ctype: js, body: jsonBody(map[string]any{"image": b64(simm[3])}), key: key, status: 404})
	c.do(apiCall{what: "enroll, identity id not a number", method: "POST", path: "/v1/identities/abc/faces", ctype: js, body: jsonBody(map[string]any{"image": b64(simm[3])}), key: key, status: 400, invalid: true})
	c.do(apiCall{what: "enroll, largest not a boolean", method: "POST", path: faces(id1), ctype: js, body: jsonBody(map[string]any{"image": b64(simm[3]), "largest": "yes"}), key: key, status: 400, invalid: true})
	_, ld, _ := c.do(apiCall{what: "list identities", method: "GET", path: "/v1/identities?limit=1", key: key, status: 200})
	if cur, ok := ld["next_cursor"].(string); ok {
		c.do(apiCall{what: "list identities, next page", method: "GET", path: "/v1/identities?limit=1&cursor=" + cur, key: key, status: 200})
	} else {
		t.Errorf("three identities in pages of one: no next_cursor: %v", ld)
	}
	c.do(apiCall{what: "list identities, after", method: "GET", path: fmt.Sprintf("/v1/identities?after=%d", id1), key: ekey, status: 200})
	c.do(apiCall{what: "search identities by prefix", method: "GET", path: "/v1/identities?prefix=John&limit=5", key: key, status: 200})
	c.do(apiCall{what: "list identities, bad cursor", method: "GET", path: "/v1/identities?cursor=%21%21", key: key, status: 400})
	c.do(apiCall{what: "list identities, limit 0", method: "GET", path: "/v1/identities?limit=0", key: key, status: 400, invalid: true})
	c.do(apiCall{what: "list identities by a recognize key", method: "GET", path: "/v1/identities", key: rkey, status: 403})
	c.do(apiCall{what: "show identity", method: "GET", path: fmt.Sprintf("/v1/identities/%d?limit=1", id1), key: key, status: 200})
	c.do(apiCall{what: "show unknown identity", method: "GET", path: "/v1/identities/999", key: key, status: 404})
	_, fd, _ := c.do(apiCall{what: "list faces", method: "GET", path: faces(id1) + "?limit=1", key: key, status: 200})
	fl, _ := fd["faces"].([]any)
	if len(fl) != 1 {
		t.Fatalf("faces: %v", fd)
	}
	faceID := int(fl[0].(map[string]any)["id"].(float64))
	if cur, ok := fd["next_cursor"].(string); ok {
		c.do(apiCall{what: "list faces, next page", method: "GET", path: faces(id1) + "?limit=1&cursor=" + cur, key: key, status: 200})
	} else {
		t.Errorf("two faces in pages of one: no next_cursor: %v", fd)
	}
	c.do(apiCall{what: "list faces, unknown identity", method: "GET", path: faces(999), key: key, status: 404})
	// The face's crop: the aligned 112×112 face, kept at enroll.
	cpath := fmt.Sprintf("%s/%d/crop", faces(id1), faceID)
	_, _, h = c.do(apiCall{what: "face crop", method: "GET", path: cpath, key: ekey, status: 200})
	c.do(apiCall{what: "face crop unchanged", method: "GET", path: cpath, key: key, header: map[string]string{"If-None-Match": h.Get("ETag")}, status: 304})
	if h.Get("Content-Type") != "image/jpeg" || h.Get("ETag") == "" {
		t.Errorf("face crop headers: %v", h)
	}
	c.do(apiCall{what: "face crop, unknown face", method: "GET", path: faces(id1) + "/999999/crop", key: key, status: 404})
	c.do(apiCall{what: "face crop, unknown identity", method: "GET", path: fmt.Sprintf("%s/%d/crop", faces(999), faceID), key: key, status: 404})
	c.do(apiCall{what: "face crop, face id not a number", method: "GET", path: faces(id1) + "/x/crop", key: key, status: 400, invalid: true})
	c.do(apiCall{what: "face crop by a recognize key", method: "GET", path: cpath, key: rkey, status: 403})
	c.do(apiCall{what: "face crop without a key", method: "GET", path: cpath, status: 401, invalid: true})
	// A face kept without a crop (as imported): 404 no_crop.
	imp, err := f.gal.AddIdentity("Imported", nil)
	if err != nil {
		t.Fatal(err)
	}
	// (an axis of the embedding space: no one's face, so that it matches
	// nobody in the identify calls below)
	its, err := f.gal.AddTemplates(imp.ID, []enroll.Template{{Embedding: unit(len(ed["embedding"].([]any)), 0), Source: "imported"}})
	if err != nil {
		t.Fatal(err)
	}
	_, nd, _ := c.do(apiCall{what: "face crop, none kept", method: "GET", path: fmt.Sprintf("/v1/identities/%d/faces/%d/crop", imp.ID, its[0].ID), key: key, status: 404})
	if errCode(nd) != "no_crop" {
		t.Errorf("a face without a crop: %v, want no_crop", nd)
	}
	c.do(apiCall{what: "list faces, limit 5000", method: "GET", path: faces(id1) + "?limit=5000", key: key, status: 400, invalid: true})
	iv := func(id int) string { return fmt.Sprintf("/v1/identities/%d/verify", id) }
	_, vd, _ := c.do(apiCall{what: "verify against an identity", method: "POST", path: iv(id1), ctype: js, body: jsonBody(map[string]any{"image": b64(simm[5])}), key: rkey, status: 200})
	if vd["same_person"] != true {
		t.Errorf("John Simm against his identity: %v", vd)
	}
	ct, body = mp(map[string][][]byte{"image": {simm[6]}}, map[string]string{"threshold": "0.4"})
	c.do(apiCall{what: "verify against an identity (multipart)", method: "POST", path: iv(id2), ctype: ct, body: body, key: rkey, status: 200})
	c.do(apiCall{what: "verify against an identity without faces", method: "POST", path: iv(id3), ctype: js, body: jsonBody(map[string]any{"image": b64(simm[5])}), key: rkey, status: 422})
	c.do(apiCall{what: "verify against an unknown identity", method: "POST", path: iv(999), ctype: js, body: jsonBody(map[string]any{"image": b64(simm[5])}), key: rkey, status: 404})
	_, idd, _ := c.do(apiCall{what: "identify", method: "POST", path: "/v1/identify", ctype: js, body: jsonBody(map[string]any{"image": b64(simm[7]), "top": 2, "partial": false}), key: rkey, status: 200})
	if m, _ := idd["match"].(map[string]any); m == nil || int(m["identity_id"].(float64)) != id1 {
		t.Errorf("identify John Simm: %v", idd)
	}
	ct, body = mp(map[string][][]byte{"image": {salley[5]}}, map[string]string{"all_faces": "true", "top": "3", "threshold": "0.5"})
	c.do(apiCall{what: "identify every face (multipart)", method: "POST", path: "/v1/identify", ctype: ct, body: body, key: rkey, status: 200})
	c.do(apiCall{what: "identify a stranger", method: "POST", path: "/v1/identify", ctype: js, body: jsonBody(map[string]any{"image": b64(johns(t, "John_Savage")[0])}), key: rkey, status: 200})
	c.do(apiCall{what: "identify, no face", method: "POST", path: "/v1/identify", ctype: js, body: jsonBody(map[string]any{"image": b64(blank)}), key: rkey, status: 422})
	c.do(apiCall{what: "identify, top 0", method: "POST", path: "/v1/identify", ctype: js, body: jsonBody(map[string]any{"image": b64(simm[7]), "top": 0}), key: rkey, status: 400, invalid: true})
	c.do(apiCall{what: "identify, two photos", method: "POST", path: "/v1/identify", ctype: js, body: jsonBody(map[string]any{"image": []string{b64(simm[7]), b64(simm[8])}}), key: rkey, status: 413, invalid: true})
	emb, _ := ed["embedding"].([]any)
	_, sd, _ := c.do(apiCall{what: "shard search", method: "POST", path: "/v1/shard/search", ctype: js, body: jsonBody(map[string]any{"embeddings": []any{emb}, "top": 3}), key: rkey, status: 200})
	if r, _ := sd["results"].([]any); len(r) != 1 {
		t.Errorf("shard search: %v", sd)
	}
	c.do(apiCall{what: "shard search, wrong dimension", method: "POST", path: "/v1/shard/search", ctype: js, body: jsonBody(map[string]any{"embeddings": [][]float64{{1, 2}}, "top": 3}), key: rkey, status: 400})
	c.do(apiCall{what: "shard search, no embeddings", method: "POST", path: "/v1/shard/search", ctype: js, body: jsonBody(map[string]any{"embeddings": [][]float64{}, "top": 3}), key: rkey, status: 400, invalid: true})
	c.do(apiCall{what: "shard search, top 0", method: "POST", path: "/v1/shard/search", ctype: js, body: jsonBody(map[string]any{"embeddings": []any{emb}, "top": 0}), key: rkey, status: 400, invalid: true})
	c.do(apiCall{what: "shard search without a key", method: "POST", path: "/v1/shard/search", ctype: js, body: jsonBody(map[string]any{"embeddings": []any{emb}, "top": 3}), status: 401, invalid: true})
	one := func(id int) string { return fmt.Sprintf("/v1/identities/%d", id) }
	c.do(apiCall{what: "rename", method: "PATCH", path: one(id1), ctype: js, body: jsonBody(map[string]any{"name": "John Simm (actor)"}), key: key, status: 200})
	c.do(apiCall{what: "edit metadata", method: "PATCH", path: one(id1), ctype: js, body: []byte(`{"metadata": {"team": null, "role": "lead"}}`), key: key, status: 200})
	c.do(apiCall{what: "patch nothing", method: "PATCH", path: one(id1), ctype: js, body: []byte(`{}`), key: key, status: 400, invalid: true})
	c.do(apiCall{what: "patch an empty name", method: "PATCH", path: one(id1), ctype: js, body: []byte(`{"name": ""}`), key: key, status: 400, invalid: true})
	c.do(apiCall{what: "patch unknown identity", method: "PATCH", path: one(999), ctype: js, body: []byte(`{"name": "x"}`), key: key, status: 404})
	c.do(apiCall{what: "patch by an enroll key", method: "PATCH", path: one(id1), ctype: js, body: []byte(`{"name": "x"}`), key: ekey, status: 403})
	fpath := fmt.Sprintf("%s/%d", faces(id1), faceID)
	c.do(apiCall{what: "delete a face", method: "DELETE", path: fpath, key: key, status: 200})
	c.do(apiCall{what: "delete the face again", method: "DELETE", path: fpath, key: key, status: 404})
	c.do(apiCall{what: "delete a face, id not a number", method: "DELETE", path: faces(id1) + "/x", key: key, status: 400, invalid: true})
	c.do(apiCall{what: "delete identity", method: "DELETE", path: one(id2), key: key, status: 200})
	c.do(apiCall{what: "delete identity again", method: "DELETE", path: one(id2), key: key, status: 404})
	c.do(apiCall{what: "delete identity by a recognize key", method: "DELETE", path: one(id1), key: rkey, status: 403})

	// Operations.
	c.do(apiCall{what: "backup", method: "GET", path: "/v1/backup", key: key, status: 200})
	c.do(apiCall{what: "backup by an enroll key", method: "GET", path: "/v1/backup", key: ekey, status: 403})
	c.do(apiCall{what: "revoke a key", method: "DELETE", path: "/v1/keys/" + eid, key: key, status: 200})
	c.do(apiCall{what: "revoke it again", method: "DELETE", path: "/v1/keys/" + eid, key: key, status: 404})
	c.do(apiCall{what: "use the revoked key", method: "GET", path: "/v1/identities", key: ekey, status: 401})
	c.do(apiCall{what: "revoke by a recognize key", method: "DELETE", path: "/v1/keys/" + rid, key: rkey, status: 403})

	// Every operation was run, with a success and (with a key) a failure.
	var missing []string
	var statuses []string
	for _, path := range doc.Paths.InMatchingOrder() {
		for method, op := range doc.Paths.Value(path).Operations() {
			k := method + " " + path
			seen := c.seen[k]
			ok2, bad := false, false
			for s := range seen {
				ok2 = ok2 || s < 300
				bad = bad || s >= 400
			}
			needBad := op.Security == nil || len(*op.Security) > 0
			if !ok2 || (needBad && !bad) {
				missing = append(missing, fmt.Sprintf("%s (seen %v)", k, keys(seen)))
			}
			var never []string
			for code := range op.Responses.Map() {
				var n int
				fmt.Sscan(code, &n)
				if !seen[n] {
					never = append(never, code)
				}
			}
			sort.Strings(never)
			statuses = append(statuses, fmt.Sprintf("%s: ran %v; not provoked %v", k, keys(seen), never))
		}
	}
	if len(missing) > 0 {
		t.Errorf("operations without a successful and a failing request in TestOpenAPITraffic: %v: add them", missing)
	}
	sort.Strings(statuses)
	t.Logf("statuses:\n%s", strings.Join(statuses, "\n"))
	t.Logf("answers validated against %d schema files: %v", len(c.files), slices.Sorted(maps.Keys(c.files)))
}

func keys(m map[int]bool) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}
