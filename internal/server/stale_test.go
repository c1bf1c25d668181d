package server

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/facever/facever/enroll"
	"github.com/facever/facever/enroll/pgstore"
	"github.com/facever/facever/internal/pgtest"
	"github.com/facever/facever/schema"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestStaleNode: a server on a PostgreSQL gallery whose database goes away
// reports it in /healthz (status stale, its applied sequence), keeps
// answering identify from its last index (flagged stale, with a key it
// had checked before), refuses changes with 503 stale, and is itself again
// once the database is back. Every answer matches its schema.
func TestStaleNode(t *testing.T) {
	c, f, store := pgFixture(t, enroll.Options{Model: "fake-model-sha", Timeout: 2 * time.Second})
	key := f.key
	valid := func(what, name string, doc map[string]any) {
		t.Helper()
		data, _ := json.Marshal(doc)
		if err := schema.Validate(name, data); err != nil {
			t.Errorf("%s: %v\n%s", what, err, data)
		}
	}
	health := func() map[string]any {
		code, doc := f.do(t, "GET", "/healthz", "", nil, "")
		if code != 200 {
			t.Fatalf("healthz: %d %v", code, doc)
		}
		valid("healthz", "health-http.json", doc)
		return doc
	}
	identify := func() map[string]any {
		code, doc := f.do(t, "POST", "/v1/identify", "application/json", jsonBody(map[string]any{"image": b64(photo(t, 3, 1, 32))}), key)
		if code != 200 {
			t.Fatalf("identify: %d %v", code, doc)
		}
		valid("identify", "identify-http.json", doc)
		return doc
	}
	code, doc := f.do(t, "POST", "/v1/identities", "application/json", jsonBody(map[string]any{"name": "three"}), key)
	if code != 201 {
		t.Fatalf("create: %d %v", code, doc)
	}
	id := int(doc["id"].(float64))
	if code, doc := f.do(t, "POST", fmt.Sprintf("/v1/identities/%d/faces", id), "application/json", jsonBody(map[string]any{"images": []string{b64(photo(t, 3, 1, 32))}}), key); code != 201 && code != 200 {
		t.Fatalf("add face: %d %v", code, doc)
	}
	h := health()
	for end := time.Now().Add(2 * time.Second); uint64(h["sequence"].(float64)) < store.Version() && time.Now().Before(end); h = health() {
		time.Sleep(5 * time.Millisecond) // the follower applies the writes within milliseconds
	}
	if h["status"] != "ok" || h["stale"] != false || uint64(h["sequence"].(float64)) != store.Version() || store.Version() == 0 {
		t.Fatalf("healthz of a fresh node: %v (store at %d)", h, store.Version())
	}
	if d := identify(); d["unknown"] != false || d["stale"] != nil {
		t.Fatalf("identify: %v", d)
	}

	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for h = health(); h["status"] != "stale"; h = health() {
		if time.Now().After(deadline) {
			t.Fatalf("healthz with the database stopped: %v", h)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if h["stale"] != true || h["error"] == nil || uint64(h["sequence"].(float64)) != store.Version() {
		t.Fatalf("stale healthz: %v", h)
	}
	t.Logf("stale healthz: %v", h)
	start := time.Now()
	if d := identify(); d["unknown"] != false || d["stale"] != true || d["match"].(map[string]any)["name"] != "three" {
		t.Fatalf("identify on a stale node: %v", d)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("identify on a stale node took %v", d)
	}
	code, doc = f.do(t, "POST", "/v1/identities", "application/json", jsonBody(map[string]any{"name": "four"}), key)
	if code != 503 || errCode(doc) != "stale" {
		t.Fatalf("a write on a stale node: %d %v", code, doc)
	}
	valid("stale write", "defs.json#/$defs/error_document", doc)
	if code, doc := f.do(t, "DELETE", fmt.Sprintf("/v1/identities/%d", id), "", nil, key); code != 503 || errCode(doc) != "stale" {
		t.Fatalf("a delete on a stale node: %d %v", code, doc)
	}
	// A key the node never checked cannot be checked now: 503, not 401.
	if code, doc := f.do(t, "POST", "/v1/identify", "application/json", jsonBody(map[string]any{"image": b64(photo(t, 3, 1, 32))}), enroll.APIKeyPrefix+"0123456789abcdef0123456789abcdef"); code != 503 || errCode(doc) != "unavailable" {
		t.Fatalf("an unchecked key on a stale node: %d %v", code, doc)
	}

	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for h = health(); h["status"] != "ok"; h = health() {
		if time.Now().After(deadline) {
			t.Fatalf("healthz after the database came back: %v", h)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d := identify(); d["stale"] != nil {
		t.Fatalf("identify after the database came back: %v", d)
	}
	if code, doc := f.do(t, "POST", "/v1/identities", "application/json", jsonBody(map[string]any{"name": "four"}), key); code != 201 {
		t.Fatalf("a write after the database came back: %d %v", code, doc)
	}
}

// pgFixture serves a fake recognizer over a PostgreSQL gallery in a
// private cluster (internal/pgtest), with one admin key; everything is
// closed when the test ends. c is the cluster, for tests that stop it.
func pgFixture(t *testing.T, opts enroll.Options) (c *pgtest.Cluster, f *fixture, store *pgstore.Store) {
	t.Helper()
	c = pgtest.Start(t)
	store, err := pgstore.Open(c.URL(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	key, _, err := store.CreateAPIKey("test")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Recognizer: &fakeRecognizer{}, Gallery: store, MinFace: -1})
	if err != nil {
		t.Fatal(err)
	}
	f = &fixture{srv: s, key: key}
	f.http = httptest.NewServer(s)
	t.Cleanup(func() { f.http.Close(); s.Close() })
	return c, f, store
}
