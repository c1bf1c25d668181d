package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	facever "github.com/facever/facever"
	"github.com/facever/facever/enroll"
	"github.com/facever/facever/internal/testmodels"
	"github.com/facever/facever/models"
)

func johns(t testing.TB, person string) [][]byte {
	files, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "johns", person, "*.jpg"))
	sort.Strings(files)
	if len(files) != 11 {
		t.Fatalf("%s: %d photos", person, len(files))
	}
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

type fixture struct {
	srv  *Server
	http *httptest.Server
	key  string
	gal  *enroll.Gallery
}

func newFixture(t testing.TB, mod func(*Config)) *fixture {
	dir := testmodels.Dir(t)
	gal, err := enroll.Open(filepath.Join(t.TempDir(), "g.db"), enroll.Options{Model: models.Feature.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := gal.CreateAPIKey("test")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Models: facever.Options{ModelsDir: dir}, Gallery: gal}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("run `make setup`: %v", err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(func() { hs.Close(); s.Close(); gal.Close() })
	return &fixture{srv: s, http: hs, key: key, gal: gal}
}

// do sends a request and decodes the JSON answer.
func (f *fixture) do(t testing.TB, method, path, ctype string, body []byte, key string) (int, map[string]any) {
	req, err := http.NewRequest(method, f.http.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := f.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s %s: status %d, body not JSON: %q", method, path, resp.StatusCode, data)
	}
	return resp.StatusCode, doc
}

func jsonBody(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func multipartBody(t testing.TB, files map[string][][]byte, fields map[string]string) (string, []byte) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for name, list := range files {
		for i, data := range list {
			fw, err := w.CreateFormFile(name, fmt.Sprintf("%s%d.jpg", name, i))
			if err != nil {
				t.Fatal(err)
			}
			fw.Write(data)
		}
	}
	for k, v := range fields {
		w.WriteField(k, v)
	}
	w.Close()
	return w.FormDataContentType(), buf.Bytes()
}

func errCode(doc map[string]any) string {
	e, _ := doc["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func TestAuth(t *testing.T) {
	f, _ := newFakeFixture(t, &fakeRecognizer{}, nil)
	if code, doc := f.do(t, "GET", "/v1/identities", "", nil, ""); code != 401 || errCode(doc) != "unauthorized" {
		t.Fatalf("no key: %d %v", code, doc)
	}
	if code, _ := f.do(t, "GET", "/v1/identities", "", nil, "fvk_wrong"); code != 401 {
		t.Fatalf("wrong key: %d", code)
	}
	if code, _ := f.do(t, "GET", "/v1/identities", "", nil, f.key); code != 200 {
		t.Fatalf("good key: %d", code)
	}
	if code, doc := f.do(t, "GET", "/healthz", "", nil, ""); code != 200 || doc["status"] != "ok" {
		t.Fatalf("healthz: %d %v", code, doc)
	}
	if code, doc := f.do(t, "GET", "/openapi.json", "", nil, ""); code != 200 || doc["openapi"] != "3.1.0" {
		t.Fatalf("openapi: %d", code)
	}
}

func TestVerifyEndpoint(t *testing.T) {
	f := newFixture(t, nil)
	simm, salley := johns(t, "John_Simm"), johns(t, "John_Salley")
	code, doc := f.do(t, "POST", "/v1/verify", "application/json", jsonBody(map[string]any{"image_a": b64(simm[0]), "image_b": b64(simm[1])}), f.key)
	if code != 200 || doc["same_person"] != true {
		t.Fatalf("JSON same: %d %v", code, doc)
	}
	ct, body := multipartBody(t, map[string][][]byte{"image_a": {simm[0]}, "image_b": {salley[0]}}, nil)
	code, doc = f.do(t, "POST", "/v1/verify", ct, body, f.key)
	if code != 200 || doc["same_person"] != false {
		t.Fatalf("multipart different: %d %v", code, doc)
	}
	// Errors: missing image, not an image, no face, bad threshold.
	cases := []struct {
		body   map[string]any
		status int
		code   string
	}{
		{map[string]any{"image_a": b64(simm[0])}, 400, "bad_request"},
		{map[string]any{"image_a": b64(simm[0]), "image_b": b64([]byte("not a photo at all"))}, 422, "not_image"},
		{map[string]any{"image_a": "!!!", "image_b": b64(simm[0])}, 400, "bad_request"},
		{map[string]any{"image_a": b64(simm[0]), "image_b": b64(simm[1]), "threshold": "high"}, 400, "bad_request"},
	}
	for _, c := range cases {
		code, doc := f.do(t, "POST", "/v1/verify", "application/json", jsonBody(c.body), f.key)
		if code != c.status || errCode(doc) != c.code {
			t.Errorf("%v: %d %v, want %d %s", c.body, code, doc, c.status, c.code)
		}
		if msg, _ := doc["error"].(map[string]any)["message"].(string); msg == "" {
			t.Errorf("error without a message: %v", doc)
		}
	}
	if code, doc := f.do(t, "POST", "/v1/verify", "text/plain", []byte("hi"), f.key); code != 415 {
		t.Errorf("text/plain: %d %v", code, doc)
	}
}

func TestLimits(t *testing.T) {
	f, _ := newFakeFixture(t, &fakeRecognizer{}, func(c *Config) { c.MaxBodyBytes = 50_000; c.MaxPixels = 10_000 })
	simm := johns(t, "John_Simm")
	code, doc := f.do(t, "POST", "/v1/verify", "application/json", jsonBody(map[string]any{"image_a": b64(simm[0]), "image_b": b64(simm[1])}), f.key)
	if code != 413 || !strings.Contains(doc["error"].(map[string]any)["message"].(string), "megapixels") {
		t.Fatalf("150×150 against a 10 000-pixel limit: %d %v", code, doc)
	}
	big := make([]byte, 60_000)
	code, doc = f.do(t, "POST", "/v1/verify", "application/json", jsonBody(map[string]any{"image_a": b64(big), "image_b": b64(big)}), f.key)
	if code != 413 || errCode(doc) != "too_large" {
		t.Fatalf("body over the limit: %d %v", code, doc)
	}
}

func TestIdentitiesLifecycle(t *testing.T) {
	f := newFixture(t, nil)
	simm, salley := johns(t, "John_Simm"), johns(t, "John_Salley")
	code, doc := f.do(t, "POST", "/v1/identities", "application/json", jsonBody(map[string]any{"name": "simm", "metadata": map[string]string{"team": "blue"}}), f.key)
	if code != 201 {
		t.Fatalf("create: %d %v", code, doc)
	}
	id := int(doc["id"].(float64))
	if code, doc := f.do(t, "POST", "/v1/identities", "application/json", jsonBody(map[string]any{"name": "simm"}), f.key); code != 409 || errCode(doc) != "exists" {
		t.Fatalf("duplicate: %d %v", code, doc)
	}
	ct, body := multipartBody(t, map[string][][]byte{"images": simm[:3]}, nil)
	code, doc = f.do(t, "POST", fmt.Sprintf("/v1/identities/%d/faces", id), ct, body, f.key)
	if code != 200 || doc["enrolled"].(float64) != 3 {
		t.Fatalf("enroll: %d %v", code, doc)
	}
	code, doc = f.do(t, "POST", "/v1/identify", "application/json", jsonBody(map[string]any{"image": b64(simm[5]), "top": 3}), f.key)
	if code != 200 || doc["unknown"] != false || doc["match"].(map[string]any)["name"] != "simm" {
		t.Fatalf("identify simm: %d %v", code, doc)
	}
	code, doc = f.do(t, "POST", "/v1/identify", "application/json", jsonBody(map[string]any{"image": b64(salley[0])}), f.key)
	if code != 200 || doc["unknown"] != true || doc["match"] != nil {
		t.Fatalf("identify stranger: %d %v", code, doc)
	}
	if code, doc = f.do(t, "GET", fmt.Sprintf("/v1/identities/%d", id), "", nil, f.key); code != 200 || len(doc["templates"].([]any)) != 3 {
		t.Fatalf("get: %d %v", code, doc)
	}
	if code, _ = f.do(t, "DELETE", fmt.Sprintf("/v1/identities/%d", id), "", nil, f.key); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	if code, doc = f.do(t, "GET", fmt.Sprintf("/v1/identities/%d", id), "", nil, f.key); code != 404 || errCode(doc) != "not_found" {
		t.Fatalf("get deleted: %d %v", code, doc)
	}
	if code, _ = f.do(t, "GET", "/v1/identities/abc", "", nil, f.key); code != 400 {
		t.Fatalf("bad id: %d", code)
	}
}

func TestMetrics(t *testing.T) {
	f := newFixture(t, nil)
	simm := johns(t, "John_Simm")
	f.do(t, "POST", "/v1/verify", "application/json", jsonBody(map[string]any{"image_a": b64(simm[0]), "image_b": b64(simm[1])}), f.key)
	req, _ := http.NewRequest("GET", f.http.URL+"/metrics", nil)
	req.Header.Set("X-API-Key", f.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`facever_http_requests_total{method="POST",route="/v1/verify",code="200"} 1`,
		`facever_http_request_duration_seconds_count{route="/v1/verify"} 1`,
		`facever_model_run_seconds_count{model="detect"} 2`,
		`facever_faces_embedded_total 2`,
	} {
		if !strings.Contains(string(data), want) {
			t.Errorf("/metrics lacks %q:\n%s", want, data)
		}
	}
}

func percentile(d []time.Duration, p float64) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[int(p*float64(len(d)-1))]
}

// TestLoad runs a bounded load on loopback at 1, 8 and 64 concurrent clients:
// each request is a verify of a known pair (same or different person) whose
// answer must match it; then 64 clients enroll at once and every identity
// and face must be in the gallery.
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test: skipped with -short")
	}
	f := newFixture(t, nil)
	simm, salley := johns(t, "John_Simm"), johns(t, "John_Salley")
	for _, clients := range []int{1, 8, 64} {
		perClient := max(2, 24/clients)
		var mu sync.Mutex
		var lat []time.Duration
		var wrong, failed int
		start := time.Now()
		var wg sync.WaitGroup
		for c := 0; c < clients; c++ {
			wg.Add(1)
			go func(c int) {
				defer wg.Done()
				for i := 0; i < perClient; i++ {
					same := (c+i)%2 == 0
					a, b := simm[(c+i)%11], simm[(c+i+3)%11]
					if !same {
						b = salley[(c+i)%11]
					}
					t0 := time.Now()
					code, doc := f.do(t, "POST", "/v1/verify", "application/json", jsonBody(map[string]any{"image_a": b64(a), "image_b": b64(b)}), f.key)
					d := time.Since(t0)
					mu.Lock()
					lat = append(lat, d)
					if code != 200 {
						failed++
					} else if doc["same_person"] != same {
						wrong++
					}
					mu.Unlock()
				}
			}(c)
		}
		wg.Wait()
		el := time.Since(start)
		n := clients * perClient
		t.Logf("%2d clients: %3d verify requests in %.2fs: %.1f req/s, p50 %v, p99 %v", clients, n, el.Seconds(), float64(n)/el.Seconds(), percentile(lat, 0.5).Round(time.Millisecond), percentile(lat, 0.99).Round(time.Millisecond))
		if wrong > 0 || failed > 0 {
			t.Fatalf("%d clients: %d wrong answers, %d failed requests", clients, wrong, failed)
		}
	}
	// 64 concurrent enrolls: nothing lost.
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for c := 0; c < 64; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			code, doc := f.do(t, "POST", "/v1/identities", "application/json", jsonBody(map[string]any{"name": fmt.Sprintf("person-%02d", c)}), f.key)
			if code != 201 {
				errs <- fmt.Sprintf("create %d: %d %v", c, code, doc)
				return
			}
			id := int(doc["id"].(float64))
			code, doc = f.do(t, "POST", fmt.Sprintf("/v1/identities/%d/faces", id), "application/json", jsonBody(map[string]any{"images": []string{b64(simm[c%11])}}), f.key)
			if code != 200 {
				errs <- fmt.Sprintf("enroll %d: %d %v", c, code, doc)
			}
		}(c)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	ids, err := f.gal.List()
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, it := range ids {
		total += it.Templates
	}
	if len(ids) != 64 || total != 64 {
		t.Fatalf("gallery holds %d identities and %d templates, want 64 and 64", len(ids), total)
	}
}

// TestGracefulShutdown: requests in flight when Shutdown starts finish with
// their answers; new connections are refused; the gallery stays consistent.
func TestGracefulShutdown(t *testing.T) {
	gal, err := enroll.Open(filepath.Join(t.TempDir(), "g.db"), enroll.Options{Model: "fake-model-sha"})
	if err != nil {
		t.Fatal(err)
	}
	defer gal.Close()
	// Every Detect waits on gate, which opens only once Shutdown has begun:
	// the requests held there are in flight when it starts, whatever the
	// machine's load (no sleep decides it).
	fr := &fakeRecognizer{gate: make(chan struct{})}
	s, err := New(Config{Recognizer: fr, Gallery: gal, NoAuth: true, MinFace: -1})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: s}
	go hs.Serve(ln)
	url := "http://" + ln.Addr().String()
	resp, err := http.Post(url+"/v1/identities", "application/json", bytes.NewReader(jsonBody(map[string]any{"name": "simm"})))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	const inflight = 6
	results := make(chan int, inflight)
	for i := 0; i < inflight; i++ {
		go func(i int) {
			body := jsonBody(map[string]any{"images": []string{b64(photo(t, 1, 1, 32)), b64(photo(t, 1, 1, 40))}})
			resp, err := http.Post(url+"/v1/identities/1/faces", "application/json", bytes.NewReader(body))
			if err != nil {
				results <- -1
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			results <- resp.StatusCode
		}(i)
	}
	// Wait until at least one request is inside Detect (held by the gate).
	deadline := time.Now().Add(30 * time.Second)
	for fr.inDetect.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no request reached Detect in 30 s")
		}
		time.Sleep(time.Millisecond)
	}
	held := fr.inDetect.Load()
	hs.RegisterOnShutdown(func() { close(fr.gate) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := hs.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	ok := 0
	for i := 0; i < inflight; i++ {
		if c := <-results; c == 200 {
			ok++
		}
	}
	s.Close()
	it, err := gal.Get(1)
	if err != nil {
		t.Fatal(err)
	}
	if it.Templates != 2*ok {
		t.Fatalf("%d requests answered 200 but the identity holds %d templates", ok, it.Templates)
	}
	if int64(ok) < held {
		t.Fatalf("%d requests were in flight when Shutdown began but only %d finished with 200", held, ok)
	}
	if _, err := http.Get(url + "/healthz"); err == nil {
		t.Fatal("server still accepts connections after Shutdown")
	}
}
