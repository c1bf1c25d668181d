package server

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	facever "github.com/facever/facever"
	"github.com/facever/facever/align"
	"github.com/facever/facever/enroll"
	"github.com/facever/facever/internal/testmodels"
)

// BenchmarkThroughput measures verify and identify requests per second at
// 1, 8 and 64 concurrent clients (after a warm-up call per client), through the server on loopback (real
// models, multipart uploads of johns photos, the default limits) and,
// in the same run and process, through the library (facever.Recognizer:
// decode, detect, align, embed, compare or search) on the same photos.
// Each sub-benchmark reports req/s, p50_ms and p99_ms; the server's also
// reports of_library, its req/s over the library's at the same number of
// clients (run the library's first: -bench 'Throughput/.*' does).
//
//	FACEVER_REQUIRE_MODELS=1 go test ./internal/server -run '^$' -bench Throughput -benchtime 64x -count 3
func BenchmarkThroughput(b *testing.B) {
	dir := testmodels.Dir(b)
	f := newFixture(b, nil)
	lib, err := facever.Open(facever.Options{ModelsDir: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer lib.Close()

	// The gallery: five people, three photos each; the probes are their
	// other photos.
	var pairs [][2][]byte // verify: two photos of one person, or of two
	var probes [][]byte   // identify
	people := []string{"John_Salley", "John_Savage", "John_Schneider", "John_Shimkus", "John_Simm"}
	all := make([][][]byte, len(people))
	for p, name := range people {
		photos := johns(b, name)
		all[p] = photos
		var ts []enroll.Template
		for _, data := range photos[:3] {
			im, err := align.DecodeWith(data, align.DecodeOptions{})
			if err != nil {
				b.Fatal(err)
			}
			ph, err := lib.Embed(im, facever.Largest)
			im.Close()
			if err != nil {
				b.Fatal(err)
			}
			ts = append(ts, enroll.Template{Embedding: ph.Faces[0].Embedding, Source: name})
		}
		if _, _, err := f.gal.Enroll(name, nil, ts); err != nil {
			b.Fatal(err)
		}
		probes = append(probes, photos[3:]...)
	}
	for i := 3; i < 11; i++ {
		for p := range people {
			pairs = append(pairs, [2][]byte{all[p][i], all[(p+i%2)%len(people)][(i+1)%11]})
		}
	}
	type body struct {
		ctype string
		data  []byte
	}
	verifyBodies := make([]body, len(pairs))
	for i, pr := range pairs {
		ct, data := multipartBody(b, map[string][][]byte{"image_a": {pr[0]}, "image_b": {pr[1]}}, nil)
		verifyBodies[i] = body{ct, data}
	}
	identifyBodies := make([]body, len(probes))
	for i, pr := range probes {
		ct, data := multipartBody(b, map[string][][]byte{"image": {pr}}, map[string]string{"top": "5"})
		identifyBodies[i] = body{ct, data}
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConns: 128, MaxIdleConnsPerHost: 128, IdleConnTimeout: time.Minute}}
	post := func(path string, bd body) error {
		req, err := http.NewRequest("POST", f.http.URL+path, bytes.NewReader(bd.data))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", bd.ctype)
		req.Header.Set("Authorization", "Bearer "+f.key)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			msg, _ := io.ReadAll(resp.Body)
			return fmt.Errorf("%s: %d %s", path, resp.StatusCode, msg)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	decode := func(data []byte) (*align.Image, error) {
		return align.DecodeWith(data, align.DecodeOptions{MaxPixels: DefaultMaxPixels})
	}
	ops := []struct {
		name     string
		library  func(i int) error
		overHTTP func(i int) error
	}{
		{"verify", func(i int) error {
			pr := pairs[i%len(pairs)]
			a, err := decode(pr[0])
			if err != nil {
				return err
			}
			defer a.Close()
			bi, err := decode(pr[1])
			if err != nil {
				return err
			}
			defer bi.Close()
			_, err = lib.Verify(a, bi)
			return err
		}, func(i int) error { return post("/v1/verify", verifyBodies[i%len(verifyBodies)]) }},
		{"identify", func(i int) error {
			im, err := decode(probes[i%len(probes)])
			if err != nil {
				return err
			}
			defer im.Close()
			_, err = lib.Identify(f.gal, im, 5)
			return err
		}, func(i int) error { return post("/v1/identify", identifyBodies[i%len(identifyBodies)]) }},
	}
	libRate := map[string]float64{}
	for _, op := range ops {
		for _, clients := range []int{1, 8, 64} {
			key := fmt.Sprintf("%s/clients=%d", op.name, clients)
			b.Run(op.name+"/library/clients="+fmt.Sprint(clients), func(b *testing.B) {
				libRate[key] = runClients(b, clients, op.library)
			})
			b.Run(op.name+"/server/clients="+fmt.Sprint(clients), func(b *testing.B) {
				rate := runClients(b, clients, op.overHTTP)
				if lr := libRate[key]; lr > 0 {
					b.ReportMetric(rate/lr, "of_library")
				}
			})
		}
	}
}

// runClients runs b.N calls of fn from clients goroutines (each takes the
// next index until b.N are done) and reports req/s and the p50 and p99
// latencies; it returns req/s.
func runClients(b *testing.B, clients int, fn func(i int) error) float64 {
	// Warm up, untimed: one call per client at once, so that the model
	// sets the concurrency needs are loaded (the library and the server
	// load them on demand) and the connections are open.
	var warm sync.WaitGroup
	for c := 0; c < clients; c++ {
		warm.Add(1)
		go func() {
			defer warm.Done()
			if err := fn(c); err != nil {
				b.Error(err)
			}
		}()
	}
	warm.Wait()
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= b.N || failed.Load() != nil {
					return
				}
				t0 := time.Now()
				if err := fn(i); err != nil {
					failed.Store(err)
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) float64 { return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / 1e6 }
	rate := float64(b.N) / elapsed.Seconds()
	b.ReportMetric(rate, "req/s")
	b.ReportMetric(q(0.50), "p50_ms")
	b.ReportMetric(q(0.99), "p99_ms")
	b.ReportMetric(0, "ns/op")
	return rate
}
