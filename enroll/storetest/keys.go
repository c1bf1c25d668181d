package storetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/facever/facever/enroll"
)

// testAPIKeys: create, scopes, check, list, revoke; keys survive a reopen
// and are never kept in clear.
func testAPIKeys(t *testing.T, b Backend) {
	s := open(t, b, enroll.Options{})
	admin, ak, err := s.CreateAPIKey("ops")
	if err != nil || len(ak.Scopes) != 1 || ak.Scopes[0] != enroll.ScopeAdmin || ak.Name != "ops" || ak.Created.IsZero() || !strings.HasPrefix(admin, ak.Prefix) || len(ak.Prefix) >= len(admin)/2 {
		t.Fatalf("admin key: %q %+v %v", admin, ak, err)
	}
	rk, rrec, err := s.CreateScopedAPIKey("kiosk", []string{enroll.ScopeRecognize, enroll.ScopeRecognize})
	if err != nil || len(rrec.Scopes) != 1 || rrec.Scopes[0] != enroll.ScopeRecognize {
		t.Fatalf("recognize key: %+v %v", rrec, err)
	}
	ek, erec, err := s.CreateScopedAPIKey("Jose\u0301", []string{enroll.ScopeRecognize, enroll.ScopeEnroll})
	if err != nil || fmt.Sprint(erec.Scopes) != "[enroll recognize]" || erec.Name != "Jos\u00e9" {
		t.Fatalf("enroll key: %+v %v", erec, err)
	}
	if admin == rk || admin == ek || ak.Prefix == rrec.Prefix {
		t.Fatal("two keys alike")
	}
	_, _, err = s.CreateScopedAPIKey("x", nil)
	is(t, "key without a scope", err, enroll.ErrInvalid)
	_, _, err = s.CreateScopedAPIKey("x", []string{"root"})
	is(t, "key with an unknown scope", err, enroll.ErrInvalid)
	_, _, err = s.CreateAPIKey("")
	is(t, "key without a name", err, enroll.ErrInvalid)

	check := func(s enroll.Store) {
		t.Helper()
		k, err := s.CheckAPIKey(rk)
		if err != nil || !k.Allows(enroll.ScopeRecognize) || k.Allows(enroll.ScopeEnroll) || k.Allows(enroll.ScopeAdmin) || k.Name != "kiosk" || k.Prefix != rrec.Prefix {
			t.Errorf("recognize key: %+v %v", k, err)
		}
		k, err = s.CheckAPIKey(ek)
		if err != nil || !k.Allows(enroll.ScopeRecognize) || !k.Allows(enroll.ScopeEnroll) || k.Allows(enroll.ScopeAdmin) {
			t.Errorf("enroll key: %+v %v", k, err)
		}
		k, err = s.CheckAPIKey(admin)
		if err != nil || !k.Allows(enroll.ScopeRecognize) || !k.Allows(enroll.ScopeEnroll) || !k.Allows(enroll.ScopeAdmin) || !sameTime(k.Created, ak.Created) {
			t.Errorf("admin key: %+v %v", k, err)
		}
		for _, bad := range []string{"", "fvk_", admin[:len(admin)-1], admin + "x", strings.ToUpper(admin), "fvk_" + strings.Repeat("A", 43), strings.TrimPrefix(admin, "fvk_"), "fvk_" + strings.Repeat("x", 10000), ak.Prefix} {
			_, err := s.CheckAPIKey(bad)
			is(t, fmt.Sprintf("CheckAPIKey(%.20q…)", bad), err, enroll.ErrBadKey)
		}
	}
	check(s)
	s = reopen(t, b, s, enroll.Options{})
	check(s)
	list := must(s.APIKeys())
	if len(list) != 3 {
		t.Fatalf("APIKeys: %+v", list)
	}
	js, _ := json.Marshal(list)
	for _, key := range []string{admin, rk, ek} {
		if bytes.Contains(js, []byte(key)) || bytes.Contains(js, []byte(key[len(key)-20:])) {
			t.Errorf("APIKeys shows a key: %s", js)
		}
	}
	names := map[string]bool{}
	for _, k := range list {
		names[k.Name+" "+k.Prefix] = true
	}
	if !names["ops "+ak.Prefix] || !names["kiosk "+rrec.Prefix] || !names["Jos\u00e9 "+erec.Prefix] {
		t.Errorf("APIKeys: %+v", list)
	}
	if im, ok := unwrap(s).(enroll.Importer); ok {
		recs := must(im.APIKeyRecords())
		hashes := map[string]string{}
		for _, r := range recs {
			hashes[r.Prefix] = r.Hash
		}
		for _, key := range []string{admin, rk, ek} {
			if h := hashes[key[:len(ak.Prefix)]]; h != enroll.HashAPIKey(key) {
				t.Errorf("APIKeyRecords: hash %q for key %s…, want its sha256 %s", h, key[:10], enroll.HashAPIKey(key))
			}
		}
	}
	if b.Raw != nil {
		raw, err := b.Raw()
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{admin, rk, ek} {
			if bytes.Contains(raw, []byte(key)) || bytes.Contains(raw, []byte(strings.TrimPrefix(key, "fvk_"))) {
				t.Errorf("the store keeps key %s… in clear", key[:10])
			}
		}
		if !bytes.Contains(raw, []byte(enroll.HashAPIKey(admin))) && !bytes.Contains(raw, []byte(ak.Prefix)) {
			t.Errorf("Raw holds neither the hash nor the prefix of a key: it does not return what the store keeps")
		}
	}
	// Revoke.
	if n, err := s.RevokeAPIKey(rrec.Prefix); n != 1 || err != nil {
		t.Fatalf("revoke: %d %v", n, err)
	}
	_, err = s.CheckAPIKey(rk)
	is(t, "revoked key", err, enroll.ErrBadKey)
	if n, err := s.RevokeAPIKey(rrec.Prefix); n != 0 || err != nil {
		t.Errorf("revoke twice: %d %v", n, err)
	}
	if n, err := s.RevokeAPIKey("fvk_"); n != 0 || err != nil {
		t.Errorf("revoke by a partial prefix: %d %v (want 0: prefixes match whole)", n, err)
	}
	if _, err := s.CheckAPIKey(admin); err != nil {
		t.Errorf("revoking one key broke another: %v", err)
	}
	s = reopen(t, b, s, enroll.Options{})
	_, err = s.CheckAPIKey(rk)
	is(t, "revoked key after reopen", err, enroll.ErrBadKey)
	if n := len(must(s.APIKeys())); n != 2 {
		t.Errorf("%d keys after revoke, want 2", n)
	}
}

// testIdempotency: AddTemplatesOnce writes once per key; a retry replays
// the first answer, another request with the key is refused; a failed
// write remembers nothing; keys survive a reopen.
func testIdempotency(t *testing.T, b Backend) {
	s := open(t, b, opts())
	rng := rand.New(rand.NewPCG(2, 2))
	it := must(s.AddIdentity("Ann", nil))
	ts := []enroll.Template{{Embedding: randEmb(rng, 8), Source: "a.jpg"}}
	calls := 0
	answer := func(it enroll.Identity, saved []enroll.Template) (int, []byte, error) {
		calls++
		return 201, []byte(fmt.Sprintf(`{"templates":%d,"id":%d}`, it.Templates, saved[0].ID)), nil
	}
	if _, ok, err := s.LookupOnce("k1"); ok || err != nil {
		t.Fatalf("LookupOnce of an unused key: %v %v", ok, err)
	}
	rec, replay, err := s.AddTemplatesOnce(it.ID, ts, "k1", "d1", answer)
	if err != nil || replay || rec.Status != 201 || rec.Digest != "d1" || rec.Created.IsZero() || calls != 1 {
		t.Fatalf("first: %+v %v %v", rec, replay, err)
	}
	first := string(rec.Body)
	if !strings.Contains(first, `"templates":1`) {
		t.Errorf("answer saw the identity before the write: %s", first)
	}
	rec, replay, err = s.AddTemplatesOnce(it.ID, ts, "k1", "d1", answer)
	if err != nil || !replay || string(rec.Body) != first || rec.Status != 201 || calls != 1 {
		t.Fatalf("retry: %+v %v %v (calls %d)", rec, replay, err, calls)
	}
	_, _, err = s.AddTemplatesOnce(it.ID, ts, "k1", "other", answer)
	is(t, "another request with the key", err, enroll.ErrOnceMismatch)
	_, _, err = s.AddTemplatesOnce(it.ID, ts, "", "d", answer)
	is(t, "empty key", err, enroll.ErrInvalid)
	_, _, err = s.AddTemplatesOnce(it.ID, ts, strings.Repeat("k", enroll.MaxOnceKey+1), "d", answer)
	is(t, "key too long", err, enroll.ErrInvalid)
	_, _, err = s.LookupOnce("")
	is(t, "LookupOnce of an empty key", err, enroll.ErrInvalid)
	// A failed write stores no key.
	_, _, err = s.AddTemplatesOnce(it.ID, []enroll.Template{{Embedding: make([]float32, 8)}}, "k2", "d2", answer)
	is(t, "zero embedding", err, enroll.ErrInvalid)
	_, _, err = s.AddTemplatesOnce(it.ID+1000, ts, "k3", "d3", answer)
	is(t, "missing identity", err, enroll.ErrNotFound)
	boom := errors.New("answer failed")
	_, _, err = s.AddTemplatesOnce(it.ID, ts, "k4", "d4", func(enroll.Identity, []enroll.Template) (int, []byte, error) { return 0, nil, boom })
	if !errors.Is(err, boom) {
		t.Errorf("failing answer: %v", err)
	}
	for _, k := range []string{"k2", "k3", "k4"} {
		if _, ok, _ := s.LookupOnce(k); ok {
			t.Errorf("a failed write remembered its key %s", k)
		}
	}
	if got := must(s.Get(it.ID)); got.Templates != 1 {
		t.Fatalf("%d templates after the retries and failures, want 1", got.Templates)
	}
	// A key that failed can be used for a write that succeeds.
	if _, replay, err := s.AddTemplatesOnce(it.ID, ts, "k4", "d4", answer); err != nil || replay {
		t.Errorf("reuse of a failed key: %v %v", replay, err)
	}
	// The key survives a reopen.
	s = reopen(t, b, s, opts())
	rec, ok, err := s.LookupOnce("k1")
	if err != nil || !ok || string(rec.Body) != first || rec.Status != 201 || rec.Digest != "d1" {
		t.Fatalf("after reopen: %+v %v %v", rec, ok, err)
	}
	rec, replay, err = s.AddTemplatesOnce(it.ID, ts, "k1", "d1", answer)
	if err != nil || !replay || string(rec.Body) != first {
		t.Fatalf("retry after reopen: %+v %v %v", rec, replay, err)
	}
	if got := must(s.Get(it.ID)); got.Templates != 2 {
		t.Fatalf("%d templates, want 2", got.Templates)
	}
}

// testIdempotencyConcurrent: the same key sent by many goroutines at once
// writes once; every other call replays that answer.
func testIdempotencyConcurrent(t *testing.T, b Backend) {
	s := open(t, b, opts())
	it := must(s.AddIdentity("Ann", nil))
	rounds, workers := 20, 8
	if b.Short {
		rounds = 8
	}
	rng := rand.New(rand.NewPCG(5, 5))
	for round := range rounds {
		key := fmt.Sprintf("key-%d", round)
		ts := []enroll.Template{{Embedding: randEmb(rng, 8)}}
		var wg sync.WaitGroup
		bodies := make([]string, workers)
		replays := make([]bool, workers)
		errs := make([]error, workers)
		start := make(chan struct{})
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				rec, replay, err := s.AddTemplatesOnce(it.ID, ts, key, "digest", func(it enroll.Identity, saved []enroll.Template) (int, []byte, error) {
					return 200, []byte(fmt.Sprint(saved[0].ID)), nil
				})
				bodies[w], replays[w], errs[w] = string(rec.Body), replay, err
			}()
		}
		close(start)
		wg.Wait()
		writes := 0
		for w := range workers {
			if errs[w] != nil {
				t.Fatalf("round %d worker %d: %v", round, w, errs[w])
			}
			if !replays[w] {
				writes++
			}
			if bodies[w] != bodies[0] {
				t.Fatalf("round %d: answers %q and %q for one key", round, bodies[0], bodies[w])
			}
		}
		if writes != 1 {
			t.Fatalf("round %d: %d of %d concurrent calls wrote, want 1", round, writes, workers)
		}
	}
	if got := must(s.Get(it.ID)); got.Templates != rounds {
		t.Errorf("%d templates after %d keys, want %d", got.Templates, rounds, rounds)
	}
}
