package enroll

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func TestScopedAPIKeys(t *testing.T) {
	g := openTest(t, filepath.Join(t.TempDir(), "g.db"), Options{})
	admin, ak, err := g.CreateAPIKey("ops")
	if err != nil || len(ak.Scopes) != 1 || ak.Scopes[0] != ScopeAdmin {
		t.Fatalf("admin key: %+v %v", ak, err)
	}
	rk, rrec, err := g.CreateScopedAPIKey("kiosk", []string{ScopeRecognize, ScopeRecognize})
	if err != nil || len(rrec.Scopes) != 1 {
		t.Fatalf("recognize key: %+v %v", rrec, err)
	}
	if _, _, err := g.CreateScopedAPIKey("x", nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no scope: %v", err)
	}
	if _, _, err := g.CreateScopedAPIKey("x", []string{"root"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown scope: %v", err)
	}
	k, err := g.CheckAPIKey(rk)
	if err != nil || !k.Allows(ScopeRecognize) || k.Allows(ScopeEnroll) || k.Allows(ScopeAdmin) {
		t.Fatalf("recognize key: %+v %v", k, err)
	}
	k, err = g.CheckAPIKey(admin)
	if err != nil || !k.Allows(ScopeRecognize) || !k.Allows(ScopeEnroll) || !k.Allows(ScopeAdmin) {
		t.Fatalf("admin key: %+v %v", k, err)
	}
	if n, err := g.RevokeAPIKey(rrec.Prefix); n != 1 || err != nil {
		t.Fatalf("revoke: %d %v", n, err)
	}
	if _, err := g.CheckAPIKey(rk); !errors.Is(err, ErrBadKey) {
		t.Fatalf("revoked key: %v", err)
	}
}

// TestMigrationKeyScopes: a key made before schema 5 (no scopes) is an admin
// key after the migration.
func TestMigrationKeyScopes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	saved := migrations
	t.Cleanup(func() { migrations = saved })
	migrations = saved[:4]
	g, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := g.CreateAPIKey("old")
	if err != nil {
		t.Fatal(err)
	}
	// Write the record as schema 4 did: without scopes.
	err = g.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAPIKeys)
		v := b.Get(keyHash(key))
		var rec map[string]any
		if err := json.Unmarshal(v, &rec); err != nil {
			return err
		}
		delete(rec, "scopes")
		nv, _ := json.Marshal(rec)
		return b.Put(keyHash(key), nv)
	})
	if err != nil {
		t.Fatal(err)
	}
	if k, _ := g.CheckAPIKey(key); k.Allows(ScopeRecognize) {
		t.Fatal("a record without scopes allows something before the migration")
	}
	g.Close()
	migrations = saved
	g = openTest(t, path, Options{})
	if g.Meta().Schema != SchemaVersion {
		t.Fatalf("schema %d", g.Meta().Schema)
	}
	k, err := g.CheckAPIKey(key)
	if err != nil || len(k.Scopes) != 1 || k.Scopes[0] != ScopeAdmin || k.Name != "old" {
		t.Fatalf("after migration: %+v %v", k, err)
	}
	if r, err := g.Check(); err != nil || !r.OK() || r.APIKeys != 1 {
		t.Fatalf("check: %+v %v", r, err)
	}
}
