package server

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"image"
	"image/jpeg"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	facever "github.com/facever/facever"
	"github.com/facever/facever/enroll"
	"github.com/facever/facever/internal/testmodels"
	"github.com/facever/facever/models"
)

// The abuse mix of issue 13, run against a server on loopback: a huge
// enroll of many small faces, decompression-bomb PNGs (one refused from its
// header, one under the pixel limit that is really decoded), many slow
// readers of big lists, huge metadata, and honest enrolls of the most
// photos a request may hold; meanwhile one normal client identifies a photo
// again and again and its latencies are kept.
//
// TestAbuse runs it with the real models against `facever serve`'s
// defaults in a child process (this test binary re-run as the server), and
// samples the child's RSS: run it with
//
//	FACEVER_ABUSE=1 go test ./internal/server -run 'TestAbuse$' -v -timeout 10m
//
// (FACEVER_ABUSE_SECONDS sets the length, default 60). TestAbuseSmall runs
// a short version with the fake recognizer in the normal suite.

// abusePayloads are the bodies the abusive clients send.
type abusePayloads struct {
	manySmall  []byte // multipart: thousands of small face photos
	manyCT     string
	bomb       []byte // PNG whose header is over the pixel limit
	decodeBomb []byte // PNG under the limit: decoded, no face
	metadata   []byte // JSON: name and a huge metadata map
	enroll     []byte // JSON: the most photos a request may hold
	identify   []byte // JSON: the normal client's photo
}

// abuseCounts is what one kind of client saw.
type abuseCounts struct {
	mu       sync.Mutex
	statuses map[string]int // "413 too_many_photos", "conn closed", ...
}

func (c *abuseCounts) add(k string) {
	c.mu.Lock()
	if c.statuses == nil {
		c.statuses = map[string]int{}
	}
	c.statuses[k]++
	c.mu.Unlock()
}

func (c *abuseCounts) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ks []string
	for k, v := range c.statuses {
		ks = append(ks, fmt.Sprintf("%s×%d", k, v))
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}

// abuseMix says how many clients of each kind run.
type abuseMix struct {
	manySmall, bombs, decodeBombs, slowReaders, metadata, enrolls int
	// readDelay is the slow readers' pause per 4 KiB read.
	readDelay time.Duration
}

type abuseResult struct {
	kinds     map[string]*abuseCounts
	normal    []time.Duration
	normalBad int
	elapsed   time.Duration
}

// post sends one request and classifies its outcome by status and code.
func abusePost(client *http.Client, url, key, ctype string, body []byte) string {
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("X-API-Key", key)
	resp, err := client.Do(req)
	if err != nil {
		return "conn closed early"
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var doc struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(data, &doc)
	return strings.TrimSpace(fmt.Sprintf("%d %s", resp.StatusCode, doc.Error.Code))
}

// runAbuse runs mix against base for d, with one normal identify client.
func runAbuse(base, key, identityPath string, p *abusePayloads, mix abuseMix, d time.Duration) *abuseResult {
	res := &abuseResult{kinds: map[string]*abuseCounts{}}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	loop := func(kind string, n int, fn func() string) {
		c := &abuseCounts{}
		res.kinds[kind] = c
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					c.add(fn())
				}
			}()
		}
	}
	loop("huge enroll of small faces", mix.manySmall, func() string {
		return abusePost(client, base+identityPath, key, p.manyCT, p.manySmall)
	})
	loop("bomb over the pixel limit", mix.bombs, func() string {
		return abusePost(client, base+"/v1/identify", key, "application/json", p.bomb)
	})
	loop("bomb under the pixel limit", mix.decodeBombs, func() string {
		return abusePost(client, base+"/v1/identify", key, "application/json", p.decodeBomb)
	})
	loop("huge metadata", mix.metadata, func() string {
		return abusePost(client, base+"/v1/identities", key, "application/json", p.metadata)
	})
	loop("full enroll", mix.enrolls, func() string {
		return abusePost(client, base+identityPath, key, "application/json", p.enroll)
	})
	loop("slow reader of lists", mix.slowReaders, func() string {
		req, _ := http.NewRequest("GET", base+"/v1/identities?limit=1000", nil)
		req.Header.Set("X-API-Key", key)
		resp, err := client.Do(req)
		if err != nil {
			return "error " + err.Error()
		}
		defer resp.Body.Close()
		buf := make([]byte, 4096)
		for {
			select {
			case <-stop:
				return fmt.Sprintf("%d (stopped mid-read)", resp.StatusCode)
			case <-time.After(mix.readDelay):
			}
			if _, err := resp.Body.Read(buf); err != nil {
				if err == io.EOF {
					return fmt.Sprint(resp.StatusCode)
				}
				return "read error"
			}
		}
	})
	var normalMu sync.Mutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			t0 := time.Now()
			out := abusePost(client, base+"/v1/identify", key, "application/json", p.identify)
			normalMu.Lock()
			res.normal = append(res.normal, time.Since(t0))
			if out != "200" {
				res.normalBad++
			}
			normalMu.Unlock()
		}
	}()
	start := time.Now()
	time.Sleep(d)
	close(stop)
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(q*float64(len(s)-1))]
}

// bombPNG writes a w×h black RGB PNG, streaming its rows through zlib: a
// file of a few hundred KB that decodes to 3·w·h bytes.
func bombPNG(t testing.TB, w, h int) []byte {
	var b bytes.Buffer
	b.Write([]byte{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'})
	chunk := func(typ string, data []byte) {
		binary.Write(&b, binary.BigEndian, uint32(len(data)))
		c := append([]byte(typ), data...)
		b.Write(c)
		binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(c))
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr, uint32(w))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(h))
	ihdr[8], ihdr[9] = 8, 2
	chunk("IHDR", ihdr)
	var z bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&z, zlib.BestCompression)
	row := make([]byte, 1+3*w)
	for y := 0; y < h; y++ {
		if _, err := zw.Write(row); err != nil {
			t.Fatal(err)
		}
	}
	zw.Close()
	chunk("IDAT", z.Bytes())
	chunk("IEND", nil)
	return b.Bytes()
}

// smallFace is a johns photo scaled down to side×side (nearest pixel).
func smallFace(t testing.TB, src []byte, side int) []byte {
	im, _, err := image.Decode(bytes.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	b := im.Bounds()
	dst := image.NewRGBA(image.Rect(0, 0, side, side))
	for y := 0; y < side; y++ {
		for x := 0; x < side; x++ {
			dst.Set(x, y, im.At(b.Min.X+x*b.Dx()/side, b.Min.Y+y*b.Dy()/side))
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, dst, &jpeg.Options{Quality: 80}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// manySmallBody is a multipart enroll of small photos up to about size bytes.
func manySmallBody(t testing.TB, face []byte, size int) (string, []byte, int) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	n := 0
	for buf.Len()+len(face)+200 < size {
		fw, err := w.CreateFormFile("images", fmt.Sprintf("f%d.jpg", n))
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(face)
		n++
	}
	w.Close()
	return w.FormDataContentType(), buf.Bytes(), n
}

func hugeMetadata(keys int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"name":"huge","metadata":{`)
	for i := 0; i < keys; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%d":"v"`, i)
	}
	b.WriteString("}}")
	return b.Bytes()
}

// TestAbuseSmall: the abuse mix for a few seconds with the fake
// recognizer: every abusive request gets its refusal (or its answer), the
// decoded images never exceed the decode budget, and the normal client's
// identifies all answer 200, within 2 s at p99 (on a loaded 2-core machine).
func TestAbuseSmall(t *testing.T) {
	rec := &fakeRecognizer{detectDelay: 2 * time.Millisecond, embedDelay: 2 * time.Millisecond}
	const maxPixels = 4_000_000
	f, _ := newFakeFixture(t, rec, func(c *Config) {
		c.MaxPixels = maxPixels
		c.DecodeBudget = 2 * imageCost(maxPixels)
		c.MaxBodyBytes = 2 << 20
	})
	_, doc := f.do(t, "POST", "/v1/identities", "application/json", jsonBody(map[string]any{"name": "normal"}), f.key)
	id := int(doc["id"].(float64))
	for i := 0; i < 300; i++ {
		if _, err := f.gal.AddIdentity(fmt.Sprintf("person %d", i), map[string]string{"note": strings.Repeat("n", 1000)}); err != nil {
			t.Fatal(err)
		}
	}
	face := photo(t, 5, 1, 24)
	ct, many, n := manySmallBody(t, face, 2<<20-1024)
	var enrollList []string
	for i := 0; i < DefaultMaxPhotos; i++ {
		enrollList = append(enrollList, b64(photo(t, 5, 1, 20+i)))
	}
	p := &abusePayloads{
		manySmall: many, manyCT: ct,
		bomb:       jsonBody(map[string]any{"image": b64(pngHeader(10000, 9999))}),
		decodeBomb: jsonBody(map[string]any{"image": b64(bombPNG(t, 1900, 1900))}),
		metadata:   hugeMetadata(100_000),
		enroll:     jsonBody(map[string]any{"images": enrollList}),
		identify:   jsonBody(map[string]any{"image": b64(photo(t, 5, 1, 32))}),
	}
	var peak atomic.Int64
	stopSample := make(chan struct{})
	go func() {
		for {
			select {
			case <-stopSample:
				return
			case <-time.After(time.Millisecond):
			}
			if u := f.srv.decode.inUse(); u > peak.Load() {
				peak.Store(u)
			}
		}
	}()
	res := runAbuse(f.http.URL, f.key, fmt.Sprintf("/v1/identities/%d/faces", id), p,
		abuseMix{manySmall: 2, bombs: 2, decodeBombs: 2, slowReaders: 6, metadata: 2, enrolls: 1, readDelay: 5 * time.Millisecond}, 2*time.Second)
	close(stopSample)
	for k, c := range res.kinds {
		t.Logf("%s: %s", k, c)
	}
	t.Logf("normal client: %d identifies, p50 %v, p99 %v, %d not 200; %d small photos per huge enroll; decode budget peak %d of %d bytes",
		len(res.normal), quantile(res.normal, 0.5), quantile(res.normal, 0.99), res.normalBad, n, peak.Load(), f.srv.cfg.DecodeBudget)
	want := map[string][]string{
		"huge enroll of small faces": {"413 too_many_photos", "conn closed early"},
		"bomb over the pixel limit":  {"413 too_large"},
		"bomb under the pixel limit": {"422 no_face"},
		"huge metadata":              {"413 too_large", "conn closed early"},
		"full enroll":                {"200"},
		"slow reader of lists":       {"200", "200 (stopped mid-read)"},
	}
	for kind, ok := range want {
		c := res.kinds[kind]
		total := 0
		for st, v := range c.statuses {
			total += v
			good := false
			for _, o := range ok {
				good = good || st == o
			}
			if !good {
				t.Errorf("%s: %d answers %q", kind, v, st)
			}
		}
		if total == 0 {
			t.Errorf("%s: no request finished", kind)
		}
	}
	if peak.Load() > f.srv.cfg.DecodeBudget {
		t.Errorf("decoded images held %d bytes, over the budget of %d", peak.Load(), f.srv.cfg.DecodeBudget)
	}
	if res.normalBad > 0 || len(res.normal) < 3 {
		t.Errorf("normal client: %d identifies, %d not answered 200", len(res.normal), res.normalBad)
	}
	if p99 := quantile(res.normal, 0.99); p99 > 2*time.Second {
		t.Errorf("normal client's p99 is %v during the abuse", p99)
	}
}

// abuseChildEnv names the gallery a re-run of this test binary serves.
const abuseChildEnv = "FACEVER_ABUSE_CHILD_GALLERY"

// TestAbuseChild is the server of TestAbuse: it runs only in the child
// process, serves the gallery with the real models and `facever serve`'s
// default limits and timeouts, prints its address, and stops when its
// stdin closes.
func TestAbuseChild(t *testing.T) {
	path := os.Getenv(abuseChildEnv)
	if path == "" {
		t.Skip("the server of TestAbuse; runs only in its child process")
	}
	gal, err := enroll.Open(path, enroll.Options{Model: models.Feature.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	defer gal.Close()
	logf, err := os.OpenFile(path+".access.jsonl", os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	s, err := New(Config{Models: facever.Options{ModelsDir: testmodels.Dir(t)}, Gallery: gal, RequestTimeout: 50 * time.Second, AccessLog: logf})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: s, ReadTimeout: 30 * time.Second, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	go hs.Serve(ln)
	fmt.Printf("ADDR %s\n", ln.Addr())
	io.Copy(io.Discard, os.Stdin)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hs.Shutdown(ctx)
}

// rss reads VmRSS and VmHWM (bytes) of process pid.
func rss(pid int) (cur, peak int64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && (f[0] == "VmRSS:" || f[0] == "VmHWM:") {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			if f[0] == "VmRSS:" {
				cur = v << 10
			} else {
				peak = v << 10
			}
		}
	}
	return cur, peak
}

// rssBound is the server's stated bound under the abuse mix, with the
// default limits: models and runtime (~0.4 GB on two cores), the decode
// budget (256 MiB), the bodies of 16 requests at once (with the JSON
// copies, ~3 × 16 × their size, mostly refused early) and a page of a list
// per slow reader.
const rssBound = 1500 << 20

// TestAbuse: the abuse mix against a real server (see the comment at the
// top of this file). The server's peak RSS stays under rssBound and the
// normal client's identifies all answer 200; their p50/p99 before and
// during the abuse are reported.
func TestAbuse(t *testing.T) {
	if os.Getenv("FACEVER_ABUSE") == "" {
		t.Skip("set FACEVER_ABUSE=1 to run the abuse mix against a real server (a minute or more)")
	}
	testmodels.Dir(t)
	dur := 60 * time.Second
	if v := os.Getenv("FACEVER_ABUSE_SECONDS"); v != "" {
		s, err := strconv.Atoi(v)
		if err != nil {
			t.Fatal(err)
		}
		dur = time.Duration(s) * time.Second
	}
	dir := t.TempDir()
	gpath := filepath.Join(dir, "abuse.db")
	gal, err := enroll.Open(gpath, enroll.Options{Model: models.Feature.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := gal.CreateAPIKey("abuse")
	if err != nil {
		t.Fatal(err)
	}
	simmIt, err := gal.AddIdentity("John Simm", nil)
	if err != nil {
		t.Fatal(err)
	}
	const listed = 3000
	for i := 0; i < listed; i++ {
		if _, err := gal.AddIdentity(fmt.Sprintf("person %05d", i), map[string]string{"note": strings.Repeat("n", 1000)}); err != nil {
			t.Fatal(err)
		}
	}
	gal.Close()

	simm := johns(t, "John_Simm")
	small := smallFace(t, simm[0], 48)
	ct, many, nSmall := manySmallBody(t, small, DefaultMaxBodyBytes-4096)
	var enrollList []string
	for i := 0; i < DefaultMaxPhotos; i++ {
		enrollList = append(enrollList, b64(simm[i%10]))
	}
	bomb := bombPNG(t, 10000, 9999)
	decodeBomb := bombPNG(t, 6000, 6000)
	meta := hugeMetadata(1_000_000)
	p := &abusePayloads{
		manySmall: many, manyCT: ct,
		bomb:       jsonBody(map[string]any{"image": b64(bomb)}),
		decodeBomb: jsonBody(map[string]any{"image": b64(decodeBomb)}),
		metadata:   meta,
		enroll:     jsonBody(map[string]any{"images": enrollList, "largest": true}),
		identify:   jsonBody(map[string]any{"image": b64(simm[10])}),
	}
	t.Logf("payloads: %d small faces in %.1f MiB; bomb %d KB (10000×9999), decoded bomb %d KB (6000×6000); metadata %.1f MiB (1M keys); full enroll %d photos",
		nSmall, float64(len(many))/(1<<20), len(bomb)>>10, len(decodeBomb)>>10, float64(len(meta))/(1<<20), len(enrollList))

	cmd := exec.Command(os.Args[0], "-test.run=^TestAbuseChild$", "-test.v")
	cmd.Env = append(os.Environ(), abuseChildEnv+"="+gpath)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopChild := func() { stdin.Close(); cmd.Wait() }
	defer func() {
		if stdin != nil {
			stopChild()
		}
	}()
	sc := bufio.NewScanner(stdout)
	addr := ""
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
			addr = a
			break
		}
	}
	if addr == "" {
		t.Fatal("the child server did not start")
	}
	go io.Copy(io.Discard, stdout)
	base := "http://" + addr
	pid := cmd.Process.Pid
	idle, _ := rss(pid)

	// The normal client alone, for comparison.
	quiet := runAbuse(base, key, "", p, abuseMix{}, 5*time.Second)
	var peak atomic.Int64
	stopSample := make(chan struct{})
	go func() {
		for {
			select {
			case <-stopSample:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if c, _ := rss(pid); c > peak.Load() {
				peak.Store(c)
			}
		}
	}()
	mix := abuseMix{manySmall: 2, bombs: 4, decodeBombs: 2, slowReaders: 12, metadata: 2, enrolls: 2, readDelay: 20 * time.Millisecond}
	res := runAbuse(base, key, fmt.Sprintf("/v1/identities/%d/faces", simmIt.ID), p, mix, dur)
	close(stopSample)
	_, hwm := rss(pid)
	if req, err := http.NewRequest("GET", base+"/metrics", nil); err == nil {
		req.Header.Set("X-API-Key", key)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, l := range strings.Split(string(data), "\n") {
				if strings.HasPrefix(l, "facever_model_run_seconds_sum") || strings.HasPrefix(l, "facever_model_run_seconds_count") || strings.HasPrefix(l, "facever_faces_embedded_total") ||
					strings.HasPrefix(l, "facever_http_request_duration_seconds_sum") || strings.HasPrefix(l, "facever_http_request_duration_seconds_count") {
					t.Logf("server %s", l)
				}
			}
		}
	}
	for k, c := range res.kinds {
		t.Logf("%s: %s", k, c)
	}
	t.Logf("server RSS: %d MiB idle after loading the models, peak %d MiB sampled during the abuse, VmHWM %d MiB (bound %d MiB)", idle>>20, peak.Load()>>20, hwm>>20, rssBound>>20)
	t.Logf("normal client alone: %d identifies, p50 %v, p99 %v", len(quiet.normal), quantile(quiet.normal, 0.5).Round(time.Millisecond), quantile(quiet.normal, 0.99).Round(time.Millisecond))
	t.Logf("normal client during %v of abuse: %d identifies, p50 %v, p99 %v, max %v, %d not 200",
		res.elapsed.Round(time.Second), len(res.normal), quantile(res.normal, 0.5).Round(time.Millisecond), quantile(res.normal, 0.99).Round(time.Millisecond), quantile(res.normal, 1).Round(time.Millisecond), res.normalBad)
	// Enrolls answered 200 are in the gallery, whole; those that ran out of
	// time (503) or were cut off left nothing.
	stopChild()
	stdin = nil
	ok := res.kinds["full enroll"].statuses["200"]
	if g, err := enroll.Open(gpath, enroll.Options{ReadOnly: true}); err != nil {
		t.Errorf("reopen the gallery: %v", err)
	} else {
		it, err := g.Get(simmIt.ID)
		g.Close()
		t.Logf("gallery: %d templates after %d enrolls answered 200 (of %d photos each)", it.Templates, ok, len(enrollList))
		if err != nil || it.Templates != ok*len(enrollList) {
			t.Errorf("%d templates for %d enrolls answered 200: an enroll that was not answered 200 committed (%v)", it.Templates, ok, err)
		}
	}
	if hwm > rssBound {
		t.Errorf("server peak RSS %d MiB over the bound of %d MiB", hwm>>20, rssBound>>20)
	}
	if res.normalBad > 0 || len(res.normal) == 0 {
		t.Errorf("normal client: %d of %d identifies not answered 200", res.normalBad, len(res.normal))
	}
}
