package server

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"path/filepath"
	"testing"

	facever "github.com/facever/facever"
	"github.com/facever/facever/enroll"
	"github.com/facever/facever/internal/testmodels"
	"github.com/facever/facever/models"
)

// BenchmarkIdentifyShards is identify's latency over a gallery of 30,000
// synthetic identities (60,000 templates of 512 values) held by one node,
// and split across three shard nodes on loopback (the node asked searches
// its own shard in process and the two others over HTTP, at once):
//
//   - search/shards=N: the gallery search of one face's embedding (top 10),
//     the part of identify that sharding changes;
//   - identify/shards=N: a whole POST /v1/identify of a johns photo through
//     the real models (with FACEVER_REQUIRE_MODELS or the models present).
//
// On one machine the three shards share its cores: the figure is the cost of
// the fan-out, not the speed-up of three machines.
func BenchmarkIdentifyShards(b *testing.B) {
	var rec Recognizer = &fakeRecognizer{}
	model := "fake-model-sha"
	var real *facever.Recognizer
	if dir, err := testmodels.Check(); err == nil {
		if real, err = facever.Open(facever.Options{ModelsDir: dir}); err != nil {
			b.Fatal(err)
		}
		defer real.Close()
		rec, model = real, models.Feature.SHA256
	}
	gal, err := enroll.Open(filepath.Join(b.TempDir(), "all.db"), enroll.Options{Model: model})
	if err != nil {
		b.Fatal(err)
	}
	defer gal.Close()
	key, _, err := gal.CreateAPIKey("bench")
	if err != nil {
		b.Fatal(err)
	}
	syntheticFaces(b, gal, 30000, 512, 9)
	single, err := New(Config{Recognizer: rec, Gallery: gal})
	if err != nil {
		b.Fatal(err)
	}
	defer single.Close()
	hs := httptest.NewServer(single)
	defer hs.Close()
	if _, err := gal.Index(); err != nil { // loaded before the clock runs
		b.Fatal(err)
	}
	c := startShards(b, gal, 3, rec, model, nil)
	r := rand.New(rand.NewPCG(4, 4))
	q := make([]float32, 512)
	for i := range q {
		q[i] = float32(r.NormFloat64())
	}
	queries := [][]float32{q}
	req := httptest.NewRequest("POST", "/v1/identify", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	for _, n := range []int{1, 3} {
		s := single
		if n == 3 {
			s = c.srvs[0]
		}
		b.Run(fmt.Sprintf("search/shards=%d", n), func(b *testing.B) {
			for b.Loop() {
				ms, _, err := s.search(context.Background(), req, queries, 10, false)
				if err != nil || len(ms[0]) != 10 {
					b.Fatal(err, ms)
				}
			}
		})
	}
	if real == nil {
		return
	}
	photo := b64(johns(b, "John_Simm")[6])
	body := jsonBody(map[string]any{"image": photo, "top": 10})
	one := &fixture{http: hs}
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("identify/shards=%d", n), func(b *testing.B) {
			for b.Loop() {
				var code int
				if n == 1 {
					code, _ = one.do(b, "POST", "/v1/identify", "application/json", body, key)
				} else {
					code, _ = c.do(b, 0, "POST", "/v1/identify", body, key)
				}
				if code != 200 {
					b.Fatal(code)
				}
			}
		})
	}
}
