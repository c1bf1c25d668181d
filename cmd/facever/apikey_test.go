package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/facever/facever/enroll"
)

// TestAPIKeyScopes: `apikey create` makes an admin key unless --scope says
// otherwise; an unknown scope is refused.
func TestAPIKeyScopes(t *testing.T) {
	gal := filepath.Join(t.TempDir(), "g.db")
	code, admin, errs := facever(t, "apikey", "create", "--gallery", gal, "--name", "ops")
	if code != exitOK || !strings.Contains(errs, "scopes admin") {
		t.Fatalf("admin: %d %q", code, errs)
	}
	code, kiosk, errs := facever(t, "apikey", "create", "--gallery", gal, "--name", "kiosk", "--scope", "recognize")
	if code != exitOK {
		t.Fatalf("recognize: %d %q", code, errs)
	}
	if code, _, errs := facever(t, "apikey", "create", "--gallery", gal, "--name", "x", "--scope", "root"); code != exitError || !strings.Contains(errs, "unknown scope") {
		t.Fatalf("unknown scope: %d %q", code, errs)
	}
	code, list, _ := facever(t, "apikey", "list", "--gallery", gal)
	if code != exitOK || !strings.Contains(list, "ops  [admin]") || !strings.Contains(list, "kiosk  [recognize]") {
		t.Fatalf("list: %d %q", code, list)
	}
	g, err := enroll.Open(gal, enroll.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if k, err := g.CheckAPIKey(strings.TrimSpace(admin)); err != nil || !k.Allows(enroll.ScopeAdmin) {
		t.Fatalf("admin key: %+v %v", k, err)
	}
	if k, err := g.CheckAPIKey(strings.TrimSpace(kiosk)); err != nil || k.Allows(enroll.ScopeEnroll) || !k.Allows(enroll.ScopeRecognize) {
		t.Fatalf("recognize key: %+v %v", k, err)
	}
}
