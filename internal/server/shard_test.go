package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	facever "github.com/facever/facever"
	"github.com/facever/facever/enroll"
	"github.com/facever/facever/internal/fanout"
	"github.com/facever/facever/internal/testmodels"
	"github.com/facever/facever/models"
	"github.com/facever/facever/schema"
)

// syntheticFaces enrolls n synthetic identities of 1–3 templates each into
// g, with embeddings shaped like a face model's: a direction shared by all
// faces (strangers' cosine similarity about 0.1–0.3, as for real models), a
// centre per person and noise per photo (same-person similarity about
// 0.6–0.8). Every 97th identity is a twin: its first template is a copy of
// the previous identity's, so that equal scores occur, within a shard and
// across shards.
func syntheticFaces(t testing.TB, g enroll.Store, n, dim int, seed uint64) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	unit := func() []float32 {
		v := make([]float32, dim)
		var sq float64
		for i := range v {
			v[i] = float32(r.NormFloat64())
			sq += float64(v[i]) * float64(v[i])
		}
		for i := range v {
			v[i] /= float32(math.Sqrt(sq))
		}
		return v
	}
	common := unit()
	var items []enroll.BatchItem
	var prev []float32
	for p := range n {
		centre := unit()
		for i := range centre {
			centre[i] = 0.45*common[i] + centre[i]
		}
		for k := range 1 + p%3 {
			noise := unit()
			e := make([]float32, dim)
			for i := range e {
				e[i] = centre[i] + 0.7*noise[i]
			}
			if k == 0 && p%97 == 1 && prev != nil {
				copy(e, prev)
			}
			if k == 0 {
				prev = e
			}
			items = append(items, enroll.BatchItem{Name: fmt.Sprintf("synthetic %05d", p), Template: enroll.Template{Embedding: e, Source: "synthetic"}})
		}
		if len(items) >= 2000 || p == n-1 {
			if _, err := g.EnrollBatch(items, true); err != nil {
				t.Fatal(err)
			}
			items = items[:0]
		}
	}
}

// shardCluster is n shard nodes (in-process servers on real loopback
// listeners), each with its own copy of a gallery and its part of the index,
// every one of them fanning identify out to the others.
type shardCluster struct {
	urls  []string
	srvs  []*Server
	https []*http.Server
	lns   []net.Listener
}

func startShards(t testing.TB, src *enroll.Gallery, n int, rec Recognizer, model string, mod func(*Config)) *shardCluster {
	t.Helper()
	c := &shardCluster{}
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		c.lns = append(c.lns, ln)
		c.urls = append(c.urls, "http://"+ln.Addr().String())
	}
	for i := range n {
		path := filepath.Join(t.TempDir(), fmt.Sprintf("shard%d.db", i))
		if _, err := src.Backup(path); err != nil {
			t.Fatal(err)
		}
		sh := enroll.Shard{Index: i, Count: n}
		g, err := enroll.Open(path, enroll.Options{Model: model, Shard: sh})
		if err != nil {
			t.Fatal(err)
		}
		cfg := Config{Recognizer: rec, Gallery: g, Shard: sh, Shards: c.urls, ShardTimeout: 2 * time.Second}
		if mod != nil {
			mod(&cfg)
		}
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		hs := &http.Server{Handler: s}
		go hs.Serve(c.lns[i])
		c.srvs, c.https = append(c.srvs, s), append(c.https, hs)
		t.Cleanup(func() { hs.Close(); s.Close(); g.Close() })
	}
	return c
}

// do sends a request to node i and decodes the JSON answer.
func (c *shardCluster) do(t testing.TB, i int, method, path string, body []byte, key string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, c.urls[i]+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatalf("%s %s on node %d: status %d, body not JSON: %v", method, path, i, resp.StatusCode, err)
	}
	return resp.StatusCode, doc
}

// TestShardOfBalanced: the documented hash spreads consecutive ids evenly
// and is stable (pinned values: a change would move every identity of a
// running deployment to another shard).
func TestShardOfBalanced(t *testing.T) {
	for _, n := range []int{2, 3, 5, 7} {
		count := make([]int, n)
		for id := uint64(1); id <= 30000; id++ {
			count[enroll.ShardOf(id, n)]++
		}
		for i, c := range count {
			if want := 30000 / n; math.Abs(float64(c-want)) > 0.02*float64(want) {
				t.Errorf("n=%d: shard %d has %d ids, want %d ± 2%%", n, i, c, want)
			}
		}
	}
	// FNV-1a 64 of the big-endian bytes, mod n, computed by hand for id 1:
	// 0xaf63bd4c8601b7be ^ ... (Python: see the README's Running several
	// nodes section).
	for id, want := range map[uint64][3]int{1: {fnvMod(1, 2), fnvMod(1, 3), fnvMod(1, 7)}, 12345: {fnvMod(12345, 2), fnvMod(12345, 3), fnvMod(12345, 7)}} {
		got := [3]int{enroll.ShardOf(id, 2), enroll.ShardOf(id, 3), enroll.ShardOf(id, 7)}
		if got != want {
			t.Errorf("ShardOf(%d): %v, want %v", id, got, want)
		}
	}
	for _, v := range []string{"", "3", "1/0", "3/3", "-1/3", "a/b", "1/2000"} {
		if _, err := enroll.ParseShard(v); err == nil {
			t.Errorf("ParseShard(%q) accepted", v)
		}
	}
	if s, err := enroll.ParseShard(" 2/3 "); err != nil || s != (enroll.Shard{Index: 2, Count: 3}) || s.String() != "2/3" {
		t.Errorf("ParseShard(2/3): %v %v", s, err)
	}
}

// fnvMod is FNV-1a written out from its definition (hash/fnv's constants).
func fnvMod(id uint64, n int) int {
	h := uint64(0xcbf29ce484222325)
	for _, b := range []byte{byte(id >> 56), byte(id >> 48), byte(id >> 40), byte(id >> 32), byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)} {
		h = (h ^ uint64(b)) * 0x100000001b3
	}
	return int(h % uint64(n))
}

// TestShardedIdentifyEqualsSingle: a gallery of 3,000 synthetic identities
// (6,000 templates, twins with equal scores among them) and five real
// people enrolled from the johns photos, split across three shard nodes on
// loopback: every node's identify (real photos through the real models,
// all_faces on group photos) answers exactly what one node holding the whole
// gallery answers, and the fan-out's merge of 600 embedding queries equals
// the single index's top 1, 10 and 100, ties included.
func TestShardedIdentifyEqualsSingle(t *testing.T) {
	dir := testmodels.Dir(t)
	rec, err := facever.Open(facever.Options{ModelsDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	gal, err := enroll.Open(filepath.Join(t.TempDir(), "all.db"), enroll.Options{Model: models.Feature.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	defer gal.Close()
	key, _, err := gal.CreateAPIKey("test")
	if err != nil {
		t.Fatal(err)
	}
	single, err := New(Config{Recognizer: rec, Gallery: gal})
	if err != nil {
		t.Fatal(err)
	}
	defer single.Close()
	hs := httptest.NewServer(single)
	defer hs.Close()
	one := &fixture{srv: single, http: hs, key: key, gal: gal}
	syntheticFaces(t, gal, 3000, 512, 1)
	people := []string{"John_Simm", "John_Salley", "John_Savage", "John_Schneider", "John_Shimkus"}
	var probes [][]byte
	for _, p := range people {
		photos := johns(t, p)
		code, doc := one.do(t, "POST", "/v1/identities", "application/json", jsonBody(map[string]any{"name": p}), key)
		if code != 201 {
			t.Fatalf("create %s: %d %v", p, code, doc)
		}
		id := int(doc["id"].(float64))
		if code, doc := one.do(t, "POST", fmt.Sprintf("/v1/identities/%d/faces", id), "application/json", jsonBody(map[string]any{"images": []string{b64(photos[0]), b64(photos[1]), b64(photos[2])}}), key); code != 200 {
			t.Fatalf("enroll %s: %d %v", p, code, doc)
		}
		probes = append(probes, photos[5], photos[8])
	}
	for _, g := range []string{"sample1.jpg", "sample4.jpg"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "external", "groups", g))
		if err != nil {
			t.Fatalf("run `make setup` (group photos): %v", err)
		}
		probes = append(probes, b)
	}
	c := startShards(t, gal, 3, rec, models.Feature.SHA256, nil)
	sizes := 0
	for i, s := range c.srvs {
		ix, err := s.cfg.Gallery.Index()
		if err != nil {
			t.Fatal(err)
		}
		if ix.Identities() < 900 || ix.Identities() > 1120 {
			t.Errorf("shard %d holds %d identities of 3005", i, ix.Identities())
		}
		sizes += ix.Identities()
	}
	if sizes != 3005 {
		t.Fatalf("the shards hold %d identities together, want 3005", sizes)
	}

	// Real photos through every node's identify.
	for pi, photo := range probes {
		body := jsonBody(map[string]any{"image": b64(photo), "top": 10, "all_faces": true})
		code, want := one.do(t, "POST", "/v1/identify", "application/json", body, key)
		if code != 200 {
			t.Fatalf("probe %d on the single node: %d %v", pi, code, want)
		}
		node := pi % 3
		code, got := c.do(t, node, "POST", "/v1/identify", body, key)
		if code != 200 || got["shards"] != float64(3) || got["partial"] != false {
			t.Fatalf("probe %d on shard node %d: %d %v", pi, node, code, got)
		}
		if err := schema.Validate("identify-http.json", jsonBody(got)); err != nil {
			t.Errorf("probe %d: %v", pi, err)
		}
		delete(got, "shards")
		delete(got, "partial")
		if !reflect.DeepEqual(got, want) {
			t.Errorf("probe %d: shard node %d answered\n%v\nthe single node\n%v", pi, node, got, want)
		}
		if pi < 10 && (want["match"] == nil || !strings.HasPrefix(want["match"].(map[string]any)["name"].(string), "John")) {
			t.Errorf("probe %d (%s) not identified: %v", pi, people[pi/2], want["top"])
		}
	}

	// Many embedding queries through the fan-out, against the single index.
	ix, err := gal.Index()
	if err != nil {
		t.Fatal(err)
	}
	sr := ix.NewSearcher()
	defer sr.Close()
	fc, err := fanout.New(c.urls, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	hdr := http.Header{"Authorization": {"Bearer " + key}}
	r := rand.New(rand.NewPCG(2, 3))
	ties := 0
	var queries [][]float32
	for q := range 600 {
		var e []float32
		switch q % 6 {
		case 0: // a twin's template: two identities score exactly alike
			e = templateOf(t, gal, uint64(97*r.IntN(30)+1))
		case 3: // a stored template
			e = templateOf(t, gal, uint64(1+r.IntN(3000)))
		default:
			e = make([]float32, 512)
			for i := range e {
				e[i] = float32(r.NormFloat64())
			}
		}
		queries = append(queries, e)
	}
	for _, k := range []int{1, 10, 100} {
		for start := 0; start < len(queries); start += 50 {
			batch := queries[start : start+50]
			got, missing, err := fc.Search(context.Background(), hdr, nil, batch, k)
			if err != nil || len(missing) > 0 {
				t.Fatalf("fan-out: %v %v", err, missing)
			}
			want, err := sr.SearchBatch(batch, k)
			if err != nil {
				t.Fatal(err)
			}
			for q := range batch {
				if !reflect.DeepEqual(got[q], want[q]) {
					t.Fatalf("k=%d query %d: merged %v\nsingle %v", k, start+q, got[q], want[q])
				}
				for i := 1; i < len(want[q]); i++ {
					if want[q][i].Score == want[q][i-1].Score {
						ties++
						if enroll.ShardOf(want[q][i].IdentityID, 3) != enroll.ShardOf(want[q][i-1].IdentityID, 3) {
							ties += 1000
						}
					}
				}
			}
		}
	}
	if ties < 1000 {
		t.Errorf("no equal scores across shards among the queries (%d within one): the tie test tested nothing", ties)
	}
}

// templateOf is the first template of identity id.
func templateOf(t testing.TB, g *enroll.Gallery, id uint64) []float32 {
	ts, err := g.Templates(id)
	if err != nil || len(ts) == 0 {
		t.Fatalf("templates of %d: %v", id, err)
	}
	return ts[0].Embedding
}
