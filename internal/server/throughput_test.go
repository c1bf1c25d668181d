package server

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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
// The two alternate in rounds of 4 calls per client, in the order library,
// server, server, library, so that both see the same load of a shared
// machine. Each sub-benchmark reports the server's req/s, p50_ms, p99_ms
// and cpu_ms (the process's CPU time per request, the HTTP client's with
// it), the library's lib_req/s, lib_p50_ms, lib_p99_ms and lib_cpu_ms, and
// of_library, the server's req/s over the library's; it logs the ratio of
// each group of four rounds (of_library_rounds), so that the spread shows.
//
//	FACEVER_REQUIRE_MODELS=1 go test ./internal/server -run '^$' -bench Throughput -benchtime 256x -count 3
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
	for _, op := range ops {
		for _, clients := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("%s/clients=%d", op.name, clients), func(b *testing.B) {
				before := modelRuns(f.srv)
				lib, srv, rounds := runPaired(b, clients, op.library, op.overHTTP)
				after := modelRuns(f.srv)
				for _, m := range []string{"detect", "backbone"} {
					if n, sec := after[m][0]-before[m][0], after[m][1]-before[m][1]; n > 0 {
						b.Logf("server's %s: %.0f runs, %.1f ms each", m, n, 1000*sec/n)
					}
				}
				rs := make([]string, len(rounds))
				for i, r := range rounds {
					rs[i] = fmt.Sprintf("%.2f", r)
				}
				b.Logf("of_library_rounds: %s", strings.Join(rs, " "))
				b.ReportMetric(lib.rate(), "lib_req/s")
				b.ReportMetric(lib.cpuMs(), "lib_cpu_ms")
				b.ReportMetric(lib.quantile(0.5), "lib_p50_ms")
				b.ReportMetric(lib.quantile(0.99), "lib_p99_ms")
				b.ReportMetric(srv.rate(), "req/s")
				b.ReportMetric(srv.quantile(0.5), "p50_ms")
				b.ReportMetric(srv.quantile(0.99), "p99_ms")
				b.ReportMetric(srv.cpuMs(), "cpu_ms")
				b.ReportMetric(srv.rate()/lib.rate(), "of_library")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// side is what one side of a paired run measured.
type side struct {
	lat     []time.Duration
	elapsed time.Duration
	cpu     time.Duration // the process's CPU time during the side's rounds
}

func (s *side) rate() float64 { return float64(len(s.lat)) / s.elapsed.Seconds() }

// cpuMs is the process's CPU time per call, in ms (for the server's side
// it includes the HTTP client's, which runs in the same process).
func (s *side) cpuMs() float64 { return float64(s.cpu) / 1e6 / float64(len(s.lat)) }

func (s *side) quantile(p float64) float64 {
	l := append([]time.Duration(nil), s.lat...)
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	return float64(l[min(len(l)-1, int(p*float64(len(l))))]) / 1e6
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runPaired runs b.N calls of lib and b.N of srv, each from clients
// goroutines, in rounds of a few calls per client, in the order lib, srv,
// srv, lib, then again (so that a load rising or falling through the run
// weighs on both sides alike); each side's rate is its calls over the time
// of its own rounds. rounds are the server's rate over the library's in
// each group of four rounds (one, lib then srv, at the end when the calls
// run out sooner).
func runPaired(b *testing.B, clients int, lib, srv func(i int) error) (l, s side, rounds []float64) {
	// Warm up, untimed: one call per client at once on each side, so that
	// the model sets the concurrency needs are loaded (the library and the
	// server load them on demand) and the connections are open.
	for _, fn := range []func(int) error{lib, srv} {
		if _, err := runClients(clients, 0, clients, fn); err != nil {
			b.Fatal(err)
		}
	}
	round := 4 * clients
	sides := [2]*side{&l, &s}
	fns := [2]func(int) error{lib, srv}
	var done [2]int
	b.ResetTimer()
	for done[0] < b.N || done[1] < b.N {
		var calls [2]int
		var took [2]time.Duration
		for _, k := range []int{0, 1, 1, 0} {
			n := min(round, b.N-done[k])
			if n <= 0 {
				continue
			}
			t0, c0 := time.Now(), cpuTime()
			lat, err := runClients(clients, done[k], n, fns[k])
			if err != nil {
				b.Fatal(err)
			}
			d := time.Since(t0)
			sides[k].elapsed += d
			sides[k].cpu += cpuTime() - c0
			sides[k].lat = append(sides[k].lat, lat...)
			done[k] += n
			calls[k] += n
			took[k] += d
		}
		if calls[0] > 0 && calls[1] > 0 {
			rounds = append(rounds, (float64(calls[1])/took[1].Seconds())/(float64(calls[0])/took[0].Seconds()))
		}
	}
	b.StopTimer()
	return l, s, rounds
}

// runClients runs calls first..first+n-1 of fn from clients goroutines
// (each takes the next index until all are done) and returns their
// latencies.
func runClients(clients, first, n int, fn func(i int) error) ([]time.Duration, error) {
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || failed.Load() != nil {
					return
				}
				t0 := time.Now()
				if err := fn(first + i); err != nil {
					failed.Store(err)
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		return nil, err
	}
	return lat, nil
}

// modelRuns reads the server's model-run counts and seconds (/metrics).
func modelRuns(s *Server) map[string][2]float64 {
	var buf bytes.Buffer
	s.metrics.write(&buf, 0, 0)
	out := map[string][2]float64{}
	for _, l := range strings.Split(buf.String(), "\n") {
		for _, m := range []string{"detect", "backbone"} {
			var v float64
			if _, err := fmt.Sscanf(l, "facever_model_run_seconds_count{model=\""+m+"\"} %g", &v); err == nil {
				x := out[m]
				x[0] = v
				out[m] = x
			}
			if _, err := fmt.Sscanf(l, "facever_model_run_seconds_sum{model=\""+m+"\"} %g", &v); err == nil {
				x := out[m]
				x[1] = v
				out[m] = x
			}
		}
	}
	return out
}
