package server

import (
	"bytes"
	"encoding/base64"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

func TestWebPage(t *testing.T) {
	f, _ := newFakeFixture(t, &fakeRecognizer{}, nil)
	for _, tc := range []struct{ path, ctype, has string }{
		{"/", "text/html; charset=utf-8", `<script src="/web/app.js"`},
		{"/web/app.js", "text/javascript; charset=utf-8", "sessionStorage"},
		{"/web/style.css", "text/css; charset=utf-8", ".bar"},
	} {
		resp, err := http.Get(f.http.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		h := resp.Header
		if resp.StatusCode != 200 || h.Get("Content-Type") != tc.ctype || !strings.Contains(string(body), tc.has) {
			t.Fatalf("%s: %d %q, body has %q: %v", tc.path, resp.StatusCode, h.Get("Content-Type"), tc.has, strings.Contains(string(body), tc.has))
		}
		if h.Get("Content-Security-Policy") != webCSP || !strings.Contains(webCSP, "script-src 'self';") || h.Get("Cache-Control") != "no-cache" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("%s: headers %v", tc.path, h)
		}
		// The browser's revalidation is answered 304 without a body.
		req, _ := http.NewRequest("GET", f.http.URL+tc.path, nil)
		req.Header.Set("If-None-Match", h.Get("ETag"))
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if h.Get("ETag") == "" || resp.StatusCode != http.StatusNotModified {
			t.Fatalf("%s: ETag %q, revalidation %d", tc.path, h.Get("ETag"), resp.StatusCode)
		}
	}
	// Nothing inline: the CSP forbids it, so the page must not rely on it.
	if html := string(loadWeb()["index.html"].data); strings.Contains(html, "<script>") || strings.Contains(html, "<style") || regexp.MustCompile(`\s(style|on[a-z]+)=`).MatchString(html) {
		t.Fatal("index.html has inline script or style")
	}
	for _, p := range []string{"/web/index.html", "/web/nope.js", "/nope", "/web/../server.go"} {
		resp, err := http.Get(f.http.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("%s: %d, want 404", p, resp.StatusCode)
		}
	}
}

// verifyMultipart builds a verify request body of two photos.
func verifyMultipart(t *testing.T, a, b []byte) (string, []byte) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for name, data := range map[string][]byte{"image_a": a, "image_b": b} {
		w, err := mw.CreateFormFile(name, name+".jpg")
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
	}
	mw.Close()
	return mw.FormDataContentType(), buf.Bytes()
}

func TestVerifyCrops(t *testing.T) {
	f := newFixture(t, nil)
	simm := johns(t, "John_Simm")
	ct, body := verifyMultipart(t, simm[0], simm[1])
	code, out := f.do(t, "POST", "/v1/verify?crops=1", ct, body, f.key)
	if code != 200 || out["same_person"] != true {
		t.Fatalf("%d %v", code, out)
	}
	for i, p := range out["photos"].([]any) {
		crop, _ := p.(map[string]any)["crop"].(string)
		raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(crop, "data:image/png;base64,"))
		if err != nil || !strings.HasPrefix(crop, "data:image/png;base64,") {
			t.Fatalf("photo %d: crop %.40q: %v", i, crop, err)
		}
		im, err := png.Decode(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		// The real aligned face: 112×112, not blank (a face has contrast).
		b := im.Bounds()
		lo, hi := uint32(1<<16), uint32(0)
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				r, _, _, _ := im.At(x, y).RGBA()
				lo, hi = min(lo, r), max(hi, r)
			}
		}
		if b.Dx() != 112 || b.Dy() != 112 || hi-lo < 1<<14 {
			t.Fatalf("photo %d: crop %v, red from %d to %d", i, b, lo, hi)
		}
	}
	// Without the option the answer stays as small as before.
	ct, body = verifyMultipart(t, simm[0], simm[1])
	if code, out = f.do(t, "POST", "/v1/verify", ct, body, f.key); code != 200 || out["photos"].([]any)[0].(map[string]any)["crop"] != nil {
		t.Fatalf("%d %v", code, out)
	}
	ct, body = verifyMultipart(t, simm[0], simm[1])
	if code, out = f.do(t, "POST", "/v1/verify?crops=yes", ct, body, f.key); code != 400 || !strings.Contains(out["error"].(map[string]any)["message"].(string), "crops") {
		t.Fatalf("%d %v", code, out)
	}
}
