package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/facever/facever/enroll"
	"github.com/facever/facever/internal/pgtest"
	"github.com/facever/facever/internal/testmodels"
)

// TestGalleryFromEnv: $FACEVER_GALLERY names the gallery of every command
// when --gallery is not given; --gallery wins over it.
func TestGalleryFromEnv(t *testing.T) {
	dir := t.TempDir()
	env, flag := filepath.Join(dir, "env.db"), filepath.Join(dir, "flag.db")
	t.Setenv(envGallery, env)
	code, key, errs := facever(t, "apikey", "create", "--name", "ops")
	if code != exitOK || !strings.HasPrefix(key, "fvk_") {
		t.Fatalf("apikey create from $%s: exit %d %s", envGallery, code, errs)
	}
	g, err := enroll.Open(env, enroll.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.CheckAPIKey(strings.TrimSpace(key)); err != nil {
		t.Fatalf("the key is not in $%s's gallery: %v", envGallery, err)
	}
	if _, err := g.AddIdentity("Ann", nil); err != nil {
		t.Fatal(err)
	}
	g.Close()
	code, out, errs := facever(t, "gallery", "list", "--json")
	if code != exitOK || !strings.Contains(out, `"Ann"`) {
		t.Fatalf("gallery list from $%s: exit %d %s %s", envGallery, code, out, errs)
	}
	code, out, errs = facever(t, "apikey", "list", "--json")
	if code != exitOK || !strings.Contains(out, `"ops"`) {
		t.Fatalf("apikey list from $%s: exit %d %s %s", envGallery, code, out, errs)
	}
	code, out, errs = facever(t, "gallery", "show", "Ann", "--json")
	if code != exitOK || !strings.Contains(out, `"Ann"`) {
		t.Fatalf("gallery show from $%s: exit %d %s %s", envGallery, code, out, errs)
	}
	code, out, errs = facever(t, "gallery", "check")
	if code != exitOK || !strings.Contains(out, "sound") {
		t.Fatalf("gallery check from $%s: exit %d %s %s", envGallery, code, out, errs)
	}
	// --gallery wins.
	code, _, errs = facever(t, "apikey", "create", "--gallery", flag, "--name", "other")
	if code != exitOK {
		t.Fatalf("apikey create --gallery: exit %d %s", code, errs)
	}
	code, out, _ = facever(t, "apikey", "list", "--gallery", flag, "--json")
	var doc struct{ Keys []enroll.APIKey }
	if code != exitOK || json.Unmarshal([]byte(out), &doc) != nil || len(doc.Keys) != 1 || doc.Keys[0].Name != "other" {
		t.Fatalf("apikey list --gallery: %s", out)
	}
	// Neither: a message that says how to name one.
	t.Setenv(envGallery, "")
	for _, args := range [][]string{{"gallery", "list"}, {"apikey", "list"}, {"gallery", "check"}, {"apikey", "create", "--name", "x"}} {
		code, _, errs := facever(t, args...)
		if code != exitError || !strings.Contains(errs, "$"+envGallery) || !strings.Contains(errs, "postgres://") {
			t.Errorf("%v without a gallery: exit %d: %s", args, code, errs)
		}
	}
}

// TestGalleryFileOnlyCommands: check, backup and restore work on a file;
// given a PostgreSQL gallery they say so (exit 2), without showing its
// password.
func TestGalleryFileOnlyCommands(t *testing.T) {
	url := "postgres://facever:s3cret@127.0.0.1:1/facever"
	backup := filepath.Join(t.TempDir(), "b.db")
	for _, args := range [][]string{
		{"gallery", "check", "--gallery", url},
		{"gallery", "backup", "--gallery", url, "--to", backup},
		{"gallery", "restore", "--gallery", url, "--from", backup},
	} {
		code, out, errs := facever(t, args...)
		if code != exitError || !strings.Contains(errs, "needs a gallery file") || !strings.Contains(errs, "PostgreSQL database") || !strings.Contains(errs, "pg_") {
			t.Errorf("%v: exit %d: %s%s", args[:2], code, out, errs)
		}
		if strings.Contains(out+errs, "s3cret") {
			t.Errorf("%v shows the password: %s", args[:2], errs)
		}
	}
	t.Setenv(envGallery, url)
	code, _, errs := facever(t, "gallery", "check")
	if code != exitError || !strings.Contains(errs, "needs a gallery file") || strings.Contains(errs, "s3cret") {
		t.Errorf("gallery check of $%s=postgres://: exit %d: %s", envGallery, code, errs)
	}
}

// TestEnrollIdentifyPostgres: enroll and identify with real models and
// photos in a PostgreSQL gallery named by $FACEVER_GALLERY, as with a
// file: every other photo of the enrolled is identified as them, a person
// never enrolled comes back unknown (exit 1).
func TestEnrollIdentifyPostgres(t *testing.T) {
	testmodels.Dir(t)
	url := pgtest.URL(t)
	t.Setenv(envGallery, url)
	people := johnsByPerson(t)
	for _, name := range []string{"John_Salley", "John_Shimkus"} {
		code, _, errs := facever(t, append([]string{"enroll", "--name", name}, people[name][:3]...)...)
		if code != exitOK {
			t.Fatalf("enroll %s into postgres://: exit %d %s", name, code, errs)
		}
	}
	bulk := t.TempDir()
	savage, err := filepath.Abs(filepath.Dir(people["John_Savage"][0]))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(savage, filepath.Join(bulk, "John_Savage")); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := facever(t, "enroll", "--data", bulk); code != exitOK {
		t.Fatalf("bulk enroll into postgres://: exit %d %s", code, errs)
	}
	for _, name := range []string{"John_Salley", "John_Shimkus"} {
		code, out, errs := facever(t, append([]string{"identify"}, people[name][3:]...)...)
		if code != exitOK || strings.Count(out, ": "+name+" (similarity") != 8 {
			t.Fatalf("identify %s from postgres://: exit %d %s\n%s", name, code, errs, out)
		}
	}
	code, out, _ := facever(t, append([]string{"identify"}, people["John_Simm"]...)...)
	if code != exitNegative || strings.Count(out, "unknown") != 11 {
		t.Fatalf("the unenrolled person: exit %d, want 1 and 11 unknowns\n%s", code, out)
	}
	code, out, errs := facever(t, "gallery", "list", "--json")
	var doc struct {
		Identities []enroll.Identity `json:"identities"`
	}
	if code != exitOK || json.Unmarshal([]byte(out), &doc) != nil || len(doc.Identities) != 3 || doc.Identities[2].Name != "John_Savage" || doc.Identities[2].Templates != 11 {
		t.Fatalf("gallery list: exit %d %s %s", code, out, errs)
	}
}

// TestServePostgres: facever serve on a PostgreSQL gallery, with the real
// models: it identifies who was enrolled by the CLI, enrolls through the API
// and identifies that person at once, answers a backup request with a
// clear refusal (the gallery is not a file), and stops on SIGTERM.
func TestServePostgres(t *testing.T) {
	testmodels.Dir(t)
	url := pgtest.URL(t)
	people := johnsByPerson(t)
	if code, _, errs := facever(t, append([]string{"enroll", "--gallery", url, "--name", "John_Salley"}, people["John_Salley"][:3]...)...); code != exitOK {
		t.Fatalf("enroll: exit %d %s", code, errs)
	}
	code, key, errs := facever(t, "apikey", "create", "--gallery", url, "--name", "ci")
	key = strings.TrimSpace(key)
	if code != exitOK || key == "" {
		t.Fatalf("apikey create: %d %s", code, errs)
	}
	var out, errb lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"facever", "serve", "--gallery", url, "--addr", "127.0.0.1:0"}, &out, &errb)
	}()
	addrRe := regexp.MustCompile(`serving http://(\S+) \(gallery (\S+),`)
	var addr string
	for deadline := time.Now().Add(60 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case c := <-done:
			t.Fatalf("serve exited %d: %s", c, errb.String())
		default:
		}
		if m := addrRe.FindStringSubmatch(errb.String()); m != nil {
			addr = m[1]
			if !strings.HasPrefix(m[2], "postgres://") {
				t.Errorf("serve names its gallery %q", m[2])
			}
		}
	}
	if addr == "" {
		t.Fatalf("serve did not start: %s", errb.String())
	}
	defer func() {
		syscall.Kill(os.Getpid(), syscall.SIGTERM)
		select {
		case c := <-done:
			if c != exitOK {
				t.Errorf("serve exited %d after SIGTERM: %s", c, errb.String())
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop on SIGTERM")
		}
	}()
	call := func(method, path string, body any) (int, string) {
		t.Helper()
		data, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, "http://"+addr+path, bytes.NewReader(data))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	photo := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if c, body := call("POST", "/v1/identify", map[string]any{"image": photo(people["John_Salley"][5])}); c != 200 || !strings.Contains(body, `"name":"John_Salley"`) {
		t.Fatalf("identify John_Salley: %d %s", c, body)
	}
	c, body := call("POST", "/v1/identities", map[string]any{"name": "John_Shimkus"})
	var created struct {
		ID uint64 `json:"id"`
	}
	if c != 201 && c != 200 || json.Unmarshal([]byte(body), &created) != nil || created.ID == 0 {
		t.Fatalf("create identity: %d %s", c, body)
	}
	images := [][]byte{photo(people["John_Shimkus"][0]), photo(people["John_Shimkus"][1])}
	if c, body := call("POST", fmt.Sprintf("/v1/identities/%d/faces", created.ID), map[string]any{"images": images}); c/100 != 2 {
		t.Fatalf("enroll through the API: %d %s", c, body)
	}
	if c, body := call("POST", "/v1/identify", map[string]any{"image": photo(people["John_Shimkus"][6])}); c != 200 || !strings.Contains(body, `"name":"John_Shimkus"`) {
		t.Fatalf("identify right after the API's enroll: %d %s", c, body)
	}
	code, _, errs = facever(t, "gallery", "backup", "--server", "http://"+addr, "--key", key, "--to", filepath.Join(t.TempDir(), "b.db"))
	if code != exitError || !strings.Contains(errs, "501") && !strings.Contains(errs, "not_implemented") && !strings.Contains(errs, "not a file") {
		t.Errorf("backup of a PostgreSQL gallery through the server: exit %d %s", code, errs)
	}
	t.Logf("backup through a server on PostgreSQL: exit %d: %s", code, strings.TrimSpace(errs))
}
