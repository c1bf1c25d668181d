package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"math/rand"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pngHeader is a PNG whose header says w×h RGB pixels, with one tiny
// IDAT: what a decompression bomb looks like to a header check.
func pngHeader(w, h uint32) []byte {
	var b bytes.Buffer
	b.Write([]byte{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'})
	chunk := func(typ string, data []byte) {
		binary.Write(&b, binary.BigEndian, uint32(len(data)))
		c := append([]byte(typ), data...)
		b.Write(c)
		binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(c))
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr, w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	chunk("IHDR", ihdr)
	chunk("IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})
	chunk("IEND", nil)
	return b.Bytes()
}

// TestPixelLimitFromHeader: an image whose header is over the server's
// pixel limit is refused (413) from its header, before it is decoded or
// reaches the detector; the message names the header's size.
func TestPixelLimitFromHeader(t *testing.T) {
	rec := &fakeRecognizer{}
	f, _ := newFakeFixture(t, rec, func(c *Config) { c.MaxPixels = 1_000_000 })
	// 10000×9999 is under align's own 100-megapixel cap: only the server's
	// limit, read from the header, stops it.
	code, doc := f.do(t, "POST", "/v1/identify", "application/json", jsonBody(map[string]any{"image": b64(pngHeader(10000, 9999))}), f.key)
	if code != 413 || errCode(doc) != "too_large" || !strings.Contains(doc["error"].(map[string]any)["message"].(string), "header says 10000×9999") {
		t.Fatalf("bomb header: %d %v", code, doc)
	}
	if n := rec.detects.Load(); n != 0 {
		t.Fatalf("the detector ran %d times on a refused image", n)
	}
	if u := f.srv.decode.inUse(); u != 0 {
		t.Fatalf("decode budget holds %d bytes after the request", u)
	}
	// A baseline JPEG over the limit is read reduced (align.DecodeWith) and
	// answered; a PNG of the same size is refused from its header.
	big := image.NewNRGBA(image.Rect(0, 0, 3400, 2000))
	for i := 0; i < len(big.Pix); i += 4 {
		big.Pix[i], big.Pix[i+1], big.Pix[i+2], big.Pix[i+3] = 3, 40, 7, 255
	}
	var jb, pb bytes.Buffer
	if err := jpeg.Encode(&jb, big, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(&pb, big); err != nil {
		t.Fatal(err)
	}
	f2, _ := newFakeFixture(t, &fakeRecognizer{}, func(c *Config) { c.MaxPixels = 2_000_000 })
	if code, doc := f2.do(t, "POST", "/v1/identify", "application/json", jsonBody(map[string]any{"image": b64(jb.Bytes())}), f2.key); code != 200 || doc["face_count"].(float64) != 1 || doc["scale"] != 0.5 {
		t.Fatalf("6.8-megapixel baseline JPEG against a 2-megapixel limit: %d %v", code, doc)
	}
	if code, doc := f2.do(t, "POST", "/v1/identify", "application/json", jsonBody(map[string]any{"image": b64(pb.Bytes())}), f2.key); code != 413 || !strings.Contains(doc["error"].(map[string]any)["message"].(string), "header says 3400×2000") {
		t.Fatalf("6.8-megapixel PNG against a 2-megapixel limit: %d %v", code, doc)
	}
	if u := f2.srv.decode.inUse(); u != 0 {
		t.Fatalf("decode budget holds %d bytes after the requests", u)
	}
	// Just under the limit is decoded (and then found corrupt: 422).
	code, doc = f.do(t, "POST", "/v1/identify", "application/json", jsonBody(map[string]any{"image": b64(pngHeader(1000, 1000))}), f.key)
	if code != 422 || errCode(doc) != "not_image" {
		t.Fatalf("header under the limit, corrupt data: %d %v", code, doc)
	}
}

// TestDecodeBudgetBoundsDecodedImages: with a budget for two decoded
// images, no more than two photos are decoded and in the detector at once,
// however many requests arrive together.
func TestDecodeBudgetBoundsDecodedImages(t *testing.T) {
	// Detect holds every photo at the gate until two are in it at once, so
	// that the lower bound does not depend on the machine's load.
	rec := &fakeRecognizer{gate: make(chan struct{})}
	const side = 64
	f, _ := newFakeFixture(t, rec, func(c *Config) {
		c.MaxPixels = side * side
		c.DecodeBudget = 2 * imageCost(side*side)
	})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			code, doc := f.do(t, "POST", "/v1/verify", "application/json", jsonBody(map[string]any{"image_a": b64(photo(t, uint8(i), 1, side)), "image_b": b64(photo(t, uint8(i), 1, side))}), f.key)
			if code != 200 || doc["same_person"] != true {
				t.Errorf("verify %d: %d %v", i, code, doc)
			}
		}(i)
	}
	waitFor(t, "two photos in the detector at once", func() bool { return rec.inDetect.Load() == 2 })
	time.Sleep(10 * time.Millisecond) // room for a third to get in wrongly (the upper bound)
	close(rec.gate)
	wg.Wait()
	if m := rec.maxDetect.Load(); m > 2 {
		t.Fatalf("%d images decoded and in the detector at once; the budget holds 2", m)
	}
	if m := rec.maxDetect.Load(); m < 2 {
		t.Fatalf("at most %d at once: the budget should let 2 run together", m)
	}
}

// TestBudget races acquirers of random sizes over many rounds: the bytes
// held never exceed the budget, everything is returned, and a waiter
// whose context ends leaves the queue without holding anything.
func TestBudget(t *testing.T) {
	const size = 1000
	b := newBudget(size, 0)
	var held, peak atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(g)))
			for i := 0; i < 300; i++ {
				n := int64(1 + rng.Intn(size))
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.Intn(200))*time.Microsecond)
				if err := b.acquire(ctx, n, rng.Intn(2) == 0); err != nil {
					cancel()
					continue
				}
				cancel()
				h := held.Add(n)
				for {
					p := peak.Load()
					if h <= p || peak.CompareAndSwap(p, h) {
						break
					}
				}
				if h > size {
					t.Errorf("held %d of %d", h, size)
				}
				time.Sleep(time.Duration(rng.Intn(50)) * time.Microsecond)
				held.Add(-n)
				b.release(n)
			}
		}(g)
	}
	wg.Wait()
	if u := b.inUse(); u != 0 || len(b.waiters) != 0 {
		t.Fatalf("after the race: %d bytes held, %d waiters", u, len(b.waiters))
	}
	if peak.Load() == 0 {
		t.Fatal("nothing was ever acquired")
	}
}

// TestPhotoAndFaceLimits: more photos than MaxPhotos is 413
// too_many_photos (multipart and JSON); photos holding more faces than
// MaxFaces is 422 too_many_faces; neither enrolls anything.
func TestPhotoAndFaceLimits(t *testing.T) {
	f, _ := newFakeFixture(t, &fakeRecognizer{}, func(c *Config) { c.MaxPhotos = 4; c.MaxFaces = 5 })
	_, doc := f.do(t, "POST", "/v1/identities", "application/json", jsonBody(map[string]any{"name": "p"}), f.key)
	id := int(doc["id"].(float64))
	path := fmt.Sprintf("/v1/identities/%d/faces", id)
	five := [][]byte{photo(t, 1, 1, 32), photo(t, 1, 1, 33), photo(t, 1, 1, 34), photo(t, 1, 1, 35), photo(t, 1, 1, 36)}
	ct, body := multipartBody(t, map[string][][]byte{"images": five}, nil)
	if code, doc := f.do(t, "POST", path, ct, body, f.key); code != 413 || errCode(doc) != "too_many_photos" {
		t.Fatalf("5 photos, multipart: %d %v", code, doc)
	}
	var list []string
	for _, p := range five {
		list = append(list, b64(p))
	}
	if code, doc := f.do(t, "POST", path, "application/json", jsonBody(map[string]any{"images": list}), f.key); code != 413 || errCode(doc) != "too_many_photos" {
		t.Fatalf("5 photos, JSON: %d %v", code, doc)
	}
	// Two photos of three faces each: 6 faces over a limit of 5.
	crowd := []string{b64(photo(t, 1, 3, 32)), b64(photo(t, 1, 3, 33))}
	if code, doc := f.do(t, "POST", path, "application/json", jsonBody(map[string]any{"images": crowd, "largest": true}), f.key); code != 422 || errCode(doc) != "too_many_faces" {
		t.Fatalf("6 faces: %d %v", code, doc)
	}
	if code, doc := f.do(t, "POST", path, "application/json", jsonBody(map[string]any{"images": list[:4]}), f.key); code != 200 || doc["enrolled"].(float64) != 4 {
		t.Fatalf("4 photos: %d %v", code, doc)
	}
	if it, _ := f.gal.Get(uint64(id)); it.Templates != 4 {
		t.Fatalf("%d templates, want the 4 of the accepted request", it.Templates)
	}
}

// TestMetadataLimits: metadata over MaxMetadataBytes or MaxMetadataKeys is
// 413 metadata_too_large; a body far over the metadata's size is refused
// as too_large without being decoded; nothing is created.
func TestMetadataLimits(t *testing.T) {
	f, _ := newFakeFixture(t, &fakeRecognizer{}, func(c *Config) { c.MaxMetadataBytes = 100; c.MaxMetadataKeys = 3 })
	if code, doc := f.do(t, "POST", "/v1/identities", "application/json", jsonBody(map[string]any{"name": "a", "metadata": map[string]string{"note": strings.Repeat("x", 101)}}), f.key); code != 413 || errCode(doc) != "metadata_too_large" {
		t.Fatalf("101 bytes: %d %v", code, doc)
	}
	if code, doc := f.do(t, "POST", "/v1/identities", "application/json", jsonBody(map[string]any{"name": "a", "metadata": map[string]string{"a": "1", "b": "2", "c": "3", "d": "4"}}), f.key); code != 413 || errCode(doc) != "metadata_too_large" {
		t.Fatalf("4 keys: %d %v", code, doc)
	}
	huge := map[string]string{}
	for i := 0; i < 20_000; i++ {
		huge[fmt.Sprint(i)] = "v"
	}
	if code, doc := f.do(t, "POST", "/v1/identities", "application/json", jsonBody(map[string]any{"name": "a", "metadata": huge}), f.key); code != 413 || errCode(doc) != "too_large" {
		t.Fatalf("20 000 keys: %d %v", code, doc)
	}
	if code, doc := f.do(t, "POST", "/v1/identities", "application/json", jsonBody(map[string]any{"name": "a", "metadata": map[string]string{"a": "1", "b": "2", "c": "3"}}), f.key); code != 201 {
		t.Fatalf("within the limits: %d %v", code, doc)
	}
	if ids, _ := f.gal.List(); len(ids) != 1 {
		t.Fatalf("%d identities, want 1", len(ids))
	}
}

// waitFor polls cond every millisecond until it holds, failing the test
// after 30 s: the tests wait on events, never on a guessed sleep.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 30 s for %s", what)
		}
	}
}

// TestBatchSplitInterleaves: an enroll of 96 photos runs the backbone in
// runs of at most 16 faces, and an identify sent while it runs is answered
// before the enroll's last run: it does not wait for the whole enroll.
func TestBatchSplitInterleaves(t *testing.T) {
	rec := &fakeRecognizer{embedGate: make(chan struct{})}
	f, _ := newFakeFixture(t, rec, func(c *Config) { c.MaxPhotos = 200 })
	_, doc := f.do(t, "POST", "/v1/identities", "application/json", jsonBody(map[string]any{"name": "big"}), f.key)
	id := int(doc["id"].(float64))
	var list []string
	for i := 0; i < 96; i++ {
		list = append(list, b64(photo(t, 1, 1, 20+i)))
	}
	done := make(chan int)
	go func() {
		code, _ := f.do(t, "POST", fmt.Sprintf("/v1/identities/%d/faces", id), "application/json", jsonBody(map[string]any{"images": list}), f.key)
		done <- code
	}()
	// The enroll's first run holds the backbone (at the gate) while the
	// identify is offered to the batcher; then every run is let through.
	waitFor(t, "the enroll's first backbone run", func() bool { return rec.inEmbed.Load() == 1 })
	identified := make(chan struct{})
	go func() {
		defer close(identified)
		code, doc := f.do(t, "POST", "/v1/identify", "application/json", jsonBody(map[string]any{"image": b64(photo(t, 2, 1, 24))}), f.key)
		if code != 200 {
			t.Errorf("identify: %d %v", code, doc)
		}
	}()
	waitFor(t, "the identify at the batcher", func() bool { return f.srv.batch.waitingSmall.Load() == 1 })
	openGate(t, rec.embedGate)
	<-identified
	if c := <-done; c != 200 {
		t.Fatalf("enroll: %d", c)
	}
	runs := rec.backboneRuns()
	at, last := -1, -1
	for i, r := range runs {
		if len(r) > 16 {
			t.Fatalf("run %d has %d faces, over the batch size", i, len(r))
		}
		for _, p := range r {
			if p == 2 {
				at = i
			}
			if p == 1 {
				last = i
			}
		}
	}
	if at < 0 || at >= last {
		t.Fatalf("the identify ran in backbone run %d, the enroll's last in run %d (of %d): it waited for the whole enroll", at, last, len(runs))
	}
}

// TestCancelledEnrollCommitsNothing: a client that goes away mid-enroll
// stops the work (the detector does not run on the rest of the photos) and
// nothing is committed; a request out of time answers 503 timeout and
// commits nothing either.
func TestCancelledEnrollCommitsNothing(t *testing.T) {
	rec := &fakeRecognizer{detectDelay: 10 * time.Millisecond}
	f, log := newFakeFixture(t, rec, func(c *Config) { c.MaxPhotos = 100 })
	_, doc := f.do(t, "POST", "/v1/identities", "application/json", jsonBody(map[string]any{"name": "p"}), f.key)
	id := uint64(doc["id"].(float64))
	var list []string
	for i := 0; i < 60; i++ {
		list = append(list, b64(photo(t, 1, 1, 20+i)))
	}
	body := jsonBody(map[string]any{"images": list})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", f.http.URL+fmt.Sprintf("/v1/identities/%d/faces", id), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", f.key)
	go func() {
		for rec.detects.Load() < 5 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("the cancelled request got an answer")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(log.String(), `"status":499`) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !strings.Contains(log.String(), `"status":499`) {
		t.Fatalf("the handler did not stop (access log: %s)", log.String())
	}
	if n := rec.detects.Load(); n >= 60 {
		t.Fatalf("the detector ran on all %d photos after the client left", n)
	}
	if it, _ := f.gal.Get(id); it.Templates != 0 {
		t.Fatalf("a cancelled enroll committed %d templates", it.Templates)
	}

	// Out of time.
	f2, _ := newFakeFixture(t, &fakeRecognizer{detectDelay: 10 * time.Millisecond}, func(c *Config) { c.MaxPhotos = 100; c.RequestTimeout = 100 * time.Millisecond })
	_, doc = f2.do(t, "POST", "/v1/identities", "application/json", jsonBody(map[string]any{"name": "p"}), f2.key)
	id = uint64(doc["id"].(float64))
	if code, doc := f2.do(t, "POST", fmt.Sprintf("/v1/identities/%d/faces", id), "application/json", body, f2.key); code != 503 || errCode(doc) != "timeout" {
		t.Fatalf("enroll out of time: %d %v", code, doc)
	}
	if it, _ := f2.gal.Get(id); it.Templates != 0 {
		t.Fatalf("an enroll out of time committed %d templates", it.Templates)
	}
}

// TestStrictBodies: JSON bodies are one object with known fields only;
// multipart bodies that are truncated or malformed are 400, not 500.
func TestStrictBodies(t *testing.T) {
	f, _ := newFakeFixture(t, &fakeRecognizer{}, nil)
	img := b64(photo(t, 1, 1, 32))
	cases := []struct {
		path, ctype string
		body        []byte
		status      int
		inMsg       string
	}{
		{"/v1/verify", "application/json", []byte(`{"image_a":"` + img + `","image_b":"` + img + `"} trailing`), 400, "after the JSON"},
		{"/v1/verify", "application/json", []byte(`{"image_a":"` + img + `","image_b":"` + img + `"}{"x":1}`), 400, "after the JSON"},
		{"/v1/verify", "application/json", []byte(`{"image_a":"` + img + `","image_b":"` + img + `","treshold":0.9}`), 400, `unknown field "treshold"`},
		{"/v1/identify", "application/json", []byte(`[1,2]`), 400, "JSON body"},
		{"/v1/identities", "application/json", []byte(`{"name":"a"} {"name":"b"}`), 400, "after the JSON"},
		{"/v1/identities", "application/json", []byte(`{"name":"a","metdata":{}}`), 400, `unknown field "metdata"`},
		{"/v1/identify", "multipart/form-data; boundary=X", []byte("--X\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\nabc"), 400, "truncated"},
		{"/v1/identify", "multipart/form-data; boundary=X", []byte("--X\r\nContent-Disposition: form-data; name=\"top\"\r\n\r\n3"), 400, "truncated"},
		{"/v1/identify", "multipart/form-data; boundary=X", []byte("garbage without a boundary"), 400, "multipart"},
		{"/v1/identify", "multipart/form-data", []byte("--X\r\n"), 400, "multipart"},
		{"/v1/identify", "multipart/form-data; boundary=X", []byte("--X\r\nContent-Disposition: form-data; name=\"tpo\"\r\n\r\n3\r\n--X--\r\n"), 400, `unknown field "tpo"`},
	}
	for _, c := range cases {
		code, doc := f.do(t, "POST", c.path, c.ctype, c.body, f.key)
		msg, _ := doc["error"].(map[string]any)["message"].(string)
		if code != c.status || !strings.Contains(msg, c.inMsg) {
			t.Errorf("%s %q: %d %v, want %d with %q", c.path, c.body[:min(len(c.body), 60)], code, doc, c.status, c.inMsg)
		}
	}
}

// TestThresholds: non-finite and out-of-range thresholds are 400; one
// below the server's minimum is 400 threshold_too_low; one at or above it
// is used.
func TestThresholds(t *testing.T) {
	f, _ := newFakeFixture(t, &fakeRecognizer{}, func(c *Config) { c.MinThreshold = 0.3 })
	a := photo(t, 1, 1, 32)
	for _, v := range []string{"Inf", "+Inf", "-Inf", "NaN", "1e400", "2", "-1.5"} {
		ct, body := multipartBody(t, map[string][][]byte{"image_a": {a}, "image_b": {a}}, map[string]string{"threshold": v})
		if code, doc := f.do(t, "POST", "/v1/verify", ct, body, f.key); code != 400 || errCode(doc) != "bad_request" {
			t.Errorf("threshold=%s: %d %v, want 400 bad_request", v, code, doc)
		}
	}
	for _, v := range []string{"-1", "0", "0.29"} {
		ct, body := multipartBody(t, map[string][][]byte{"image": {a}}, map[string]string{"threshold": v})
		if code, doc := f.do(t, "POST", "/v1/identify", ct, body, f.key); code != 400 || errCode(doc) != "threshold_too_low" {
			t.Errorf("threshold=%s: %d %v, want 400 threshold_too_low", v, code, doc)
		}
	}
	if code, doc := f.do(t, "POST", "/v1/verify", "application/json", []byte(`{"image_a":"`+b64(a)+`","image_b":"`+b64(a)+`","threshold":1e999}`), f.key); code != 400 {
		t.Errorf("JSON threshold 1e999: %d %v", code, doc)
	}
	code, doc := f.do(t, "POST", "/v1/verify", "application/json", jsonBody(map[string]any{"image_a": b64(a), "image_b": b64(a), "threshold": 0.3}), f.key)
	if code != 200 || doc["threshold"] != 0.3 || doc["same_person"] != true {
		t.Fatalf("threshold at the minimum: %d %v", code, doc)
	}
	if _, err := New(Config{Recognizer: &fakeRecognizer{}, Gallery: f.gal, Threshold: 0.2, MinThreshold: 0.3}); err == nil {
		t.Fatal("a default threshold below the minimum: want an error from New")
	}
}

// TestMetricsNeedAKey: /metrics on the API's listener needs a key; the
// metrics handler for a separate listener serves it without one.
func TestMetricsNeedAKey(t *testing.T) {
	f, _ := newFakeFixture(t, &fakeRecognizer{}, nil)
	if code, doc := f.do(t, "GET", "/metrics", "", nil, ""); code != 401 || errCode(doc) != "unauthorized" {
		t.Fatalf("/metrics without a key: %d %v", code, doc)
	}
	req, _ := http.NewRequest("GET", "/metrics", nil)
	w := &recorder{h: http.Header{}}
	f.srv.MetricsHandler().ServeHTTP(w, req)
	if w.code != 200 || !strings.Contains(w.buf.String(), "facever_http_requests_total") {
		t.Fatalf("metrics listener: %d %q", w.code, w.buf.String())
	}
}

type recorder struct {
	h    http.Header
	code int
	buf  bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.h }
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = 200
	}
	return r.buf.Write(b)
}
func (r *recorder) WriteHeader(c int) { r.code = c }

// TestAccessLog: every request is one JSON line with time, key, route,
// status, code, identities touched and latency; no image bytes, no
// template, no key beyond its public prefix.
func TestAccessLog(t *testing.T) {
	f, log := newFakeFixture(t, &fakeRecognizer{}, nil)
	img := photo(t, 9, 1, 32)
	_, doc := f.do(t, "POST", "/v1/identities", "application/json", jsonBody(map[string]any{"name": "nine"}), f.key)
	id := uint64(doc["id"].(float64))
	f.do(t, "POST", fmt.Sprintf("/v1/identities/%d/faces", id), "application/json", jsonBody(map[string]any{"images": []string{b64(img)}}), f.key)
	f.do(t, "POST", "/v1/identify", "application/json", jsonBody(map[string]any{"image": b64(img)}), f.key)
	f.do(t, "DELETE", fmt.Sprintf("/v1/identities/%d", id), "", nil, f.key)
	f.do(t, "GET", "/v1/identities", "", nil, "fvk_wrong")
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d log lines, want 5:\n%s", len(lines), log.String())
	}
	want := []struct {
		method, route string
		status        int
		ids           bool
		code          string
	}{
		{"POST", "/v1/identities", 201, true, ""},
		{"POST", "/v1/identities/{id}/faces", 200, true, ""},
		{"POST", "/v1/identify", 200, true, ""},
		{"DELETE", "/v1/identities/{id}", 200, true, ""},
		{"GET", "/v1/identities", 401, false, "unauthorized"},
	}
	for i, l := range lines {
		var e AccessEntry
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("line %d not JSON: %q", i, l)
		}
		w := want[i]
		if e.Method != w.method || e.Route != w.route || e.Status != w.status || e.Code != w.code || e.Time.IsZero() || e.LatencyMS <= 0 {
			t.Errorf("line %d: %+v, want %+v", i, e, w)
		}
		if w.ids && (len(e.Identities) != 1 || e.Identities[0] != id) {
			t.Errorf("line %d: identities %v, want [%d]", i, e.Identities, id)
		}
		if w.status != 401 && (e.Key != f.key[:10] || e.KeyName != "test") {
			t.Errorf("line %d: key %q %q, want the prefix %q", i, e.Key, e.KeyName, f.key[:10])
		}
	}
	if strings.Contains(log.String(), f.key) || strings.Contains(log.String(), b64(img)[:40]) || strings.Contains(log.String(), "embedding") {
		t.Fatal("the access log holds key material, image data or templates")
	}
}

// TestPagedList: identities come in pages of ?limit=, chained by
// ?after=<next_after>, and a limit over the maximum is refused.
func TestPagedList(t *testing.T) {
	f, _ := newFakeFixture(t, &fakeRecognizer{}, func(c *Config) { c.MaxPageSize = 10 })
	for i := 0; i < 23; i++ {
		f.do(t, "POST", "/v1/identities", "application/json", jsonBody(map[string]any{"name": fmt.Sprintf("p%02d", i)}), f.key)
	}
	var names []string
	after := ""
	pages := 0
	for {
		code, doc := f.do(t, "GET", "/v1/identities?limit=10"+after, "", nil, f.key)
		if code != 200 {
			t.Fatalf("page: %d %v", code, doc)
		}
		pages++
		for _, it := range doc["identities"].([]any) {
			names = append(names, it.(map[string]any)["name"].(string))
		}
		n, ok := doc["next_after"].(float64)
		if !ok {
			break
		}
		after = fmt.Sprintf("&after=%d", int(n))
	}
	if pages != 3 || len(names) != 23 || names[0] != "p00" || names[22] != "p22" {
		t.Fatalf("%d pages, %d names: %v", pages, len(names), names)
	}
	if code, _ := f.do(t, "GET", "/v1/identities?limit=11", "", nil, f.key); code != 400 {
		t.Fatalf("limit over the maximum: %d", code)
	}
	resp, err := http.Get(f.http.URL + "/v1/identities")
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// TestBudgetSmallPassesLarge: a photo that fits is not held up behind an
// earlier, larger one waiting for the budget to drain; the large one gets
// its share when it is released.
func TestBudgetSmallPassesLarge(t *testing.T) {
	b := newBudget(10, 0)
	ctx := context.Background()
	if err := b.acquire(ctx, 8, false); err != nil {
		t.Fatal(err)
	}
	large := make(chan error, 1)
	go func() { large <- b.acquire(ctx, 5, false) }()
	for {
		b.mu.Lock()
		n := len(b.waiters)
		b.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	small, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := b.acquire(small, 2, false); err != nil {
		t.Fatalf("a 2-byte share behind a waiting 5-byte one: %v", err)
	}
	b.release(2)
	select {
	case <-large:
		t.Fatal("the large share was granted while 8 of 10 bytes were held")
	default:
	}
	b.release(8)
	if err := <-large; err != nil {
		t.Fatal(err)
	}
	if u := b.inUse(); u != 5 {
		t.Fatalf("%d bytes held, want 5", u)
	}
}

// TestSmallRequestsGoFirst: with the backbone busy on one enroll's chunk
// and another enroll's chunk waiting, an identify that arrives goes into
// the very next run, ahead of the waiting chunk.
func TestSmallRequestsGoFirst(t *testing.T) {
	rec := &fakeRecognizer{embedGate: make(chan struct{})}
	f, _ := newFakeFixture(t, rec, func(c *Config) { c.MaxPhotos = 64 })
	var list []string
	for i := 0; i < 32; i++ {
		list = append(list, b64(photo(t, 1, 1, 20+i)))
	}
	body := jsonBody(map[string]any{"images": list})
	var wg sync.WaitGroup
	for _, name := range []string{"a", "b"} {
		_, doc := f.do(t, "POST", "/v1/identities", "application/json", jsonBody(map[string]any{"name": name}), f.key)
		id := int(doc["id"].(float64))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, doc := f.do(t, "POST", fmt.Sprintf("/v1/identities/%d/faces", id), "application/json", body, f.key); code != 200 {
				t.Errorf("enroll: %d %v", code, doc)
			}
		}()
	}
	// Both enrolls detected; one chunk in the backbone, the other waiting.
	waitFor(t, "one chunk in the backbone and one waiting", func() bool {
		return rec.detects.Load() >= 64 && rec.inEmbed.Load() == 1 && f.srv.batch.waitingBulk.Load() == 1
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		if code, doc := f.do(t, "POST", "/v1/identify", "application/json", jsonBody(map[string]any{"image": b64(photo(t, 2, 1, 24))}), f.key); code != 200 {
			t.Errorf("identify: %d %v", code, doc)
		}
	}()
	waitFor(t, "the identify at the batcher", func() bool { return f.srv.batch.waitingSmall.Load() == 1 })
	busy := len(rec.backboneRuns())
	go func() {
		for {
			select {
			case rec.embedGate <- struct{}{}:
			case <-time.After(5 * time.Second):
				return
			}
		}
	}()
	wg.Wait()
	runs := rec.backboneRuns()
	at := -1
	for i, r := range runs {
		for _, p := range r {
			if p == 2 {
				at = i
			}
		}
	}
	if at != busy {
		t.Fatalf("the identify ran in backbone run %d; the run after the busy one is %d (runs: %d)", at, busy, len(runs))
	}
}

// TestEnrollPolicy: the HTTP enroll applies the CLI's photo check
// (facever.CheckEnrollFaces): a face under MinFace pixels and a photo of
// several faces without largest are rejected with their codes; the rest
// are enrolled.
func TestEnrollPolicy(t *testing.T) {
	f, _ := newFakeFixture(t, &fakeRecognizer{}, func(c *Config) { c.MinFace = 40 })
	_, doc := f.do(t, "POST", "/v1/identities", "application/json", jsonBody(map[string]any{"name": "p"}), f.key)
	path := fmt.Sprintf("/v1/identities/%d/faces", int(doc["id"].(float64)))
	body := jsonBody(map[string]any{"images": []string{b64(photo(t, 1, 1, 32)), b64(photo(t, 1, 1, 64)), b64(photo(t, 1, 2, 64))}})
	code, doc := f.do(t, "POST", path, "application/json", body, f.key)
	if code != 200 || doc["enrolled"].(float64) != 1 {
		t.Fatalf("enroll: %d %v", code, doc)
	}
	photos := doc["photos"].([]any)
	for i, want := range []string{"face_too_small", "", "multiple_faces"} {
		o := photos[i].(map[string]any)
		got := ""
		if e, ok := o["error"].(map[string]any); ok {
			got, _ = e["code"].(string)
		}
		if got != want || (want == "") != (o["enrolled"] == true) {
			t.Errorf("photo %d: %v, want code %q", i, o, want)
		}
	}
	body = jsonBody(map[string]any{"images": []string{b64(photo(t, 1, 2, 64))}, "largest": true})
	if code, doc := f.do(t, "POST", path, "application/json", body, f.key); code != 200 || doc["enrolled"].(float64) != 1 {
		t.Fatalf("two faces with largest: %d %v", code, doc)
	}
}

// TestBudgetUrgentFirst: with the slot taken, an enroll's photo (not
// urgent) and then an identify's photo (urgent) wait; the identify's is
// let in first, and while it waits no later enroll photo gets in ahead.
func TestBudgetUrgentFirst(t *testing.T) {
	b := newBudget(1, 0)
	ctx := context.Background()
	if err := b.acquire(ctx, 1, false); err != nil {
		t.Fatal(err)
	}
	order := make(chan string, 2)
	waiters := func(n int) {
		for {
			b.mu.Lock()
			k := len(b.waiters)
			b.mu.Unlock()
			if k == n {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	go func() { b.acquire(ctx, 1, false); order <- "enroll"; b.release(1) }()
	waiters(1)
	go func() { b.acquire(ctx, 1, true); order <- "identify"; b.release(1) }()
	waiters(2)
	b.release(1)
	if first, second := <-order, <-order; first != "identify" || second != "enroll" {
		t.Fatalf("granted %s then %s, want identify then enroll", first, second)
	}
}

// TestBudgetReserve: the reserved unit is for urgent waiters only: with
// one of two detectors kept, a second enroll photo waits while an
// identify's photo gets in at once.
func TestBudgetReserve(t *testing.T) {
	b := newBudget(2, 1)
	ctx := context.Background()
	if err := b.acquire(ctx, 1, false); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := b.acquire(short, 1, false); err == nil {
		t.Fatal("a second enroll photo took the reserved detector")
	}
	urgent, cancel2 := context.WithTimeout(ctx, 2*time.Second)
	defer cancel2()
	if err := b.acquire(urgent, 1, true); err != nil {
		t.Fatalf("an urgent photo did not get the reserved detector: %v", err)
	}
	if u := b.inUse(); u != 2 || len(b.waiters) != 0 {
		t.Fatalf("%d held, %d waiting", u, len(b.waiters))
	}
}
