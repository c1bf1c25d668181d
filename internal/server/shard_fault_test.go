package server

import (
	"errors"
	"net"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/facever/facever/enroll"
	"github.com/facever/facever/internal/fanout"
	"github.com/facever/facever/schema"
)

// fakeShardGallery is a gallery for the fake recognizer: 600 synthetic
// identities and the fake people 1–40 (one-hot embeddings, see
// fakeRecognizer), with an admin key.
func fakeShardGallery(t testing.TB) (*enroll.Gallery, string) {
	gal, err := enroll.Open(filepath.Join(t.TempDir(), "all.db"), enroll.Options{Model: "fake-model-sha"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gal.Close() })
	key, _, err := gal.CreateAPIKey("test")
	if err != nil {
		t.Fatal(err)
	}
	syntheticFaces(t, gal, 600, fakeDim, 3)
	for p := 1; p <= 40; p++ {
		e := make([]float32, fakeDim)
		e[p%fakeDim] = 1
		if _, _, err := gal.Enroll("person "+string(rune('A'+p)), nil, []enroll.Template{{Embedding: e}}); err != nil {
			t.Fatal(err)
		}
	}
	return gal, key
}

// TestShardDownFailsClearly: a shard node that refuses connections, and one
// that accepts them but never answers (a stopped process: the kernel
// completes the handshake, nobody reads), make identify fail with 503
// shard_unavailable naming the shard, within the shard timeout; with
// partial=true the answer comes from the other shards, flagged, and equals
// their merge; a node started sharded without a node for every shard is
// refused.
func TestShardDownFailsClearly(t *testing.T) {
	gal, key := fakeShardGallery(t)
	const timeout = 400 * time.Millisecond
	c := startShards(t, gal, 3, &fakeRecognizer{}, "fake-model-sha", func(cfg *Config) { cfg.ShardTimeout = timeout; cfg.MinFace = -1 })
	body := jsonBody(map[string]any{"image": b64(photo(t, 7, 1, 64)), "top": 5})
	code, whole := c.do(t, 0, "POST", "/v1/identify", body, key)
	if code != 200 || whole["partial"] != false || whole["match"] == nil {
		t.Fatalf("all shards up: %d %v", code, whole)
	}

	// A router: no shard of its own, every shard asked over HTTP.
	router, err := New(Config{Recognizer: &fakeRecognizer{}, Gallery: gal, Shards: c.urls, ShardTimeout: timeout, MinFace: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer router.Close()
	rs := httptest.NewServer(router)
	defer rs.Close()
	rf := &fixture{http: rs}
	if code, doc := rf.do(t, "POST", "/v1/identify", "application/json", body, key); code != 200 || !equalJSON(doc, whole) {
		t.Fatalf("identify on a router: %d %v, want %v", code, doc, whole)
	}

	// Shard 2 down: connection refused.
	c.https[2].Close()
	for _, node := range []int{0, 1} {
		start := time.Now()
		code, doc := c.do(t, node, "POST", "/v1/identify", body, key)
		msg, _ := doc["error"].(map[string]any)["message"].(string)
		if code != 503 || errCode(doc) != "shard_unavailable" || !strings.Contains(msg, "shard 2/3") || !strings.Contains(msg, c.urls[2]) {
			t.Fatalf("shard 2 down, identify on node %d: %d %v", node, code, doc)
		}
		if d := time.Since(start); d > timeout {
			t.Errorf("a refused connection took %v to report", d)
		}
	}
	partial := jsonBody(map[string]any{"image": b64(photo(t, 7, 1, 64)), "top": 5, "partial": true})
	code, doc := c.do(t, 0, "POST", "/v1/identify", partial, key)
	if code != 200 || doc["partial"] != true {
		t.Fatalf("partial=true with shard 2 down: %d %v", code, doc)
	}
	if err := schema.Validate("identify-http.json", jsonBody(doc)); err != nil {
		t.Error(err)
	}
	miss := doc["missing_shards"].([]any)
	if len(miss) != 1 || miss[0].(map[string]any)["shard"] != float64(2) || miss[0].(map[string]any)["url"] != c.urls[2] {
		t.Fatalf("missing_shards: %v", miss)
	}
	// What the partial answer holds: the whole answer without shard 2's.
	var want []any
	for _, m := range whole["top"].([]any) {
		if enroll.ShardOf(uint64(m.(map[string]any)["identity_id"].(float64)), 3) != 2 {
			want = append(want, m)
		}
	}
	for i, m := range doc["top"].([]any) {
		if enroll.ShardOf(uint64(m.(map[string]any)["identity_id"].(float64)), 3) == 2 {
			t.Fatalf("partial answer holds shard 2's identity: %v", m)
		}
		if i < len(want) && !equalJSON(m, want[i]) {
			t.Fatalf("partial answer %d: %v, want %v (from %v)", i, m, want[i], whole["top"])
		}
	}

	// Shard 2 stopped: its port accepts and never answers.
	ln, err := net.Listen("tcp", strings.TrimPrefix(c.urls[2], "http://"))
	if err != nil {
		t.Fatalf("re-listen on shard 2's port: %v", err)
	}
	defer ln.Close()
	start := time.Now()
	code, doc = c.do(t, 1, "POST", "/v1/identify", body, key)
	d := time.Since(start)
	msg, _ := doc["error"].(map[string]any)["message"].(string)
	if code != 503 || errCode(doc) != "shard_unavailable" || !strings.Contains(msg, "shard 2/3") || !strings.Contains(msg, "no answer within 400ms") {
		t.Fatalf("shard 2 hung: %d %v", code, doc)
	}
	if d < timeout || d > timeout+2*time.Second {
		t.Errorf("a hung shard was reported after %v, want about its timeout %v", d, timeout)
	}
	t.Logf("hung shard: 503 after %v (timeout %v)", d, timeout)

	// Configurations that would answer from part of the gallery.
	for _, cfg := range []Config{
		{Recognizer: &fakeRecognizer{}, Gallery: gal, Shard: enroll.Shard{Index: 1, Count: 3}},
		{Recognizer: &fakeRecognizer{}, Gallery: gal, Shard: enroll.Shard{Index: 1, Count: 3}, Shards: c.urls[:2]},
		{Recognizer: &fakeRecognizer{}, Gallery: gal, Shards: []string{fanout.Self, c.urls[1]}},
		{Recognizer: &fakeRecognizer{}, Gallery: gal, Shard: enroll.Shard{Index: 1, Count: 2}, Shards: []string{"ftp://x", fanout.Self}},
	} {
		if s, err := New(cfg); err == nil {
			s.Close()
			t.Errorf("New(shard %v, shards %v) accepted", cfg.Shard, cfg.Shards)
		}
	}
}

// equalJSON compares two decoded JSON values.
func equalJSON(a, b any) bool { return string(jsonBody(a)) == string(jsonBody(b)) }

// TestShardSearchInput: the shard search refuses what it cannot search,
// with 400, and needs a key of the recognize scope.
func TestShardSearchInput(t *testing.T) {
	gal, key := fakeShardGallery(t)
	c := startShards(t, gal, 2, &fakeRecognizer{}, "fake-model-sha", nil)
	ok := make([]float32, fakeDim)
	ok[3] = 1
	for _, tc := range []struct {
		body   any
		status int
	}{
		{map[string]any{"embeddings": [][]float32{ok}, "top": 3}, 200},
		{map[string]any{"embeddings": [][]float32{}, "top": 3}, 400},
		{map[string]any{"embeddings": [][]float32{ok}, "top": 0}, 400},
		{map[string]any{"embeddings": [][]float32{ok}, "top": 101}, 400},
		{map[string]any{"embeddings": [][]float32{ok[:10]}, "top": 3}, 400},
		{map[string]any{"embeddings": [][]float32{make([]float32, fakeDim)}, "top": 3}, 400},
		{map[string]any{"embeddings": [][]float32{ok}, "top": 3, "extra": 1}, 400},
		{map[string]any{"embeddings": [][]any{{"a"}}, "top": 3}, 400},
	} {
		code, doc := c.do(t, 0, "POST", fanout.Path, jsonBody(tc.body), key)
		if code != tc.status {
			t.Errorf("%s: %d %v, want %d", jsonBody(tc.body), code, doc, tc.status)
		}
		if code == 200 && (doc["shard"] != "0/2" || len(doc["results"].([]any)) != 1) {
			t.Errorf("answer: %v", doc)
		}
		name := "shard-search-http.json"
		if code != 200 {
			name = "defs.json#/$defs/error_document"
		}
		if err := schema.Validate(name, jsonBody(doc)); err != nil {
			t.Errorf("%s: %v", jsonBody(tc.body), err)
		}
	}
	if code, _ := c.do(t, 0, "POST", fanout.Path, jsonBody(map[string]any{"embeddings": [][]float32{ok}, "top": 3}), ""); code != 401 {
		t.Errorf("no key: %d", code)
	}
	enrollKey, _, err := c.srvs[0].cfg.Gallery.CreateScopedAPIKey("enroller", []string{enroll.ScopeEnroll})
	if err != nil {
		t.Fatal(err)
	}
	if code, doc := c.do(t, 0, "POST", fanout.Path, jsonBody(map[string]any{"embeddings": [][]float32{ok}, "top": 3}), enrollKey); code != 403 {
		t.Errorf("enroll-scope key: %d %v", code, doc)
	}
}

// downStore is a gallery whose database is out of reach for key checks.
type downStore struct{ enroll.Store }

func (downStore) CheckAPIKey(string) (enroll.APIKey, error) {
	return enroll.APIKey{}, errors.New("dial tcp 127.0.0.1:5432: connection refused")
}

// TestKeyCheckUnreachable: a key that cannot be checked (the database is
// down) is 503 unavailable, to retry, not 401 unauthorized, which tells the
// client its key is wrong; an unknown key stays 401.
func TestKeyCheckUnreachable(t *testing.T) {
	f, _ := newFakeFixture(t, &fakeRecognizer{}, nil)
	s, err := New(Config{Recognizer: &fakeRecognizer{}, Gallery: downStore{f.gal}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	down := &fixture{http: httptest.NewServer(s)}
	defer down.http.Close()
	if code, doc := down.do(t, "GET", "/v1/identities", "", nil, f.key); code != 503 || errCode(doc) != "unavailable" || !strings.Contains(doc["error"].(map[string]any)["message"].(string), "connection refused") {
		t.Errorf("database down: %d %v", code, doc)
	}
	if code, doc := f.do(t, "GET", "/v1/identities", "", nil, "fv_nope"); code != 401 {
		t.Errorf("unknown key: %d %v", code, doc)
	}
}
