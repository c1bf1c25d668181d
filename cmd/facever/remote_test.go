package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/facever/facever/internal/testmodels"
	"github.com/facever/facever/schema"
)

// startServe runs `facever serve` on gal as a child process (the built
// binary) on a free loopback port and returns its URL; the server is
// stopped with SIGTERM at the end of the test (or by stop).
func startServe(t *testing.T, models, gal string) (url string, stop func()) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "facever")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--models", models, "serve", "--gallery", gal, "--addr", "127.0.0.1:0", "--access-log", filepath.Join(t.TempDir(), "access.jsonl"))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrRe := regexp.MustCompile(`serving (http://\S+) `)
	found := make(chan string, 1)
	var log strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if m := addrRe.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
		close(found)
	}()
	select {
	case u, ok := <-found:
		if !ok {
			cmd.Wait()
			t.Fatalf("serve exited: %s", log.String())
		}
		url = u
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatal("serve did not start within 2 minutes")
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve after SIGTERM: %v", err)
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Error("serve did not stop on SIGTERM")
		}
	}
	t.Cleanup(stop)
	return url, stop
}

// TestRemoteGallery runs the gallery and apikey commands against a real
// `facever serve` process holding the gallery: a local command says at
// once that the server holds it and names its --server URL (exit 2, no
// 30 s wait); with --server and --key (or $FACEVER_SERVER, $FACEVER_KEY)
// list, show, rename, remove and the keys work over the REST API with
// the local commands' text and JSON (validated by the same schema files);
// 401, 403, 404 and a refused connection are clear errors with exit 2.
func TestRemoteGallery(t *testing.T) {
	models := testmodels.Dir(t)
	dir := t.TempDir()
	gal := filepath.Join(dir, "g.db")
	code, admin, errs := facever(t, "apikey", "create", "--gallery", gal, "--name", "ops")
	admin = strings.TrimSpace(admin)
	if code != exitOK {
		t.Fatalf("apikey create: %d %s", code, errs)
	}
	for _, p := range []struct{ name, photo string }{{"John Simm", simmA}, {"John Salley", salleyA}} {
		if code, _, errs := facever(t, "enroll", "--gallery", gal, "--name", p.name, "--meta", "team=a", p.photo, simmB); code == exitError && p.name == "John Simm" {
			t.Fatalf("enroll %s: %s", p.name, errs)
		}
	}
	// What the local commands print, to compare with the remote ones.
	_, localShow, _ := facever(t, "gallery", "show", "--gallery", gal, "John Simm")
	_, localShowJSON, _ := facever(t, "gallery", "show", "--json", "--gallery", gal, "#1")
	_, localListJSON, _ := facever(t, "gallery", "list", "--json", "--gallery", gal)
	_, localList, _ := facever(t, "gallery", "list", "--gallery", gal)
	_, localKeys, _ := facever(t, "apikey", "list", "--gallery", gal)
	// The local key documents, by the same schema files as the remote ones.
	_, out, _ := facever(t, "apikey", "create", "--json", "--gallery", gal, "--name", "local", "--scope", "enroll")
	if err := schema.Validate("apikey-create.json", []byte(out)); err != nil {
		t.Errorf("local apikey create --json: %v\n%s", err, out)
	}
	_, out, _ = facever(t, "apikey", "list", "--json", "--gallery", gal)
	if err := schema.Validate("apikey-list.json", []byte(out)); err != nil || !strings.Contains(out, `"local"`) {
		t.Errorf("local apikey list --json: %v\n%s", err, out)
	}
	if err := schema.Validate("gallery-list.json", []byte(localListJSON)); err != nil {
		t.Errorf("local gallery list --json: %v", err)
	}
	_, localKeys, _ = facever(t, "apikey", "list", "--gallery", gal)

	url, stop := startServe(t, models, gal)

	// Local commands on the served gallery: at once, naming the server.
	for _, args := range [][]string{
		{"gallery", "list", "--gallery", gal},
		{"gallery", "rename", "--gallery", gal, "John Simm", "x"},
		{"apikey", "create", "--gallery", gal, "--name", "x"},
		{"enroll", "--gallery", gal, "--name", "x", simmA},
		{"gallery", "check", "--gallery", gal},
	} {
		start := time.Now()
		code, out, errs := facever(t, args...)
		took := time.Since(start)
		if code != exitError || !strings.Contains(errs, "held by a running facever serve") || !strings.Contains(errs, url) || took > 5*time.Second {
			t.Errorf("%v on the served gallery: exit %d after %v, stdout %q, stderr %q", args, code, took, out, errs)
		}
		if args[0] == "gallery" && args[1] != "check" && !strings.Contains(errs, "`facever "+args[0]+" "+args[1]+" --server "+url+" --key KEY`") {
			t.Errorf("%v: the message does not show the --server form: %q", args, errs)
		}
	}

	remote := func(want int, args ...string) (string, string) {
		t.Helper()
		code, out, errs := facever(t, append(args, "--server", url, "--key", admin)...)
		if code != want {
			t.Fatalf("%v --server: exit %d, want %d; stdout %q stderr %q", args, code, want, out, errs)
		}
		return out, errs
	}
	// Same text and JSON as the local commands.
	if out, _ := remote(exitOK, "gallery", "show", "John Simm"); out != localShow {
		t.Errorf("remote show:\n%s\nlocal show:\n%s", out, localShow)
	}
	out, _ = remote(exitOK, "gallery", "show", "--json", "#1")
	if out != localShowJSON {
		t.Errorf("remote show --json:\n%s\nlocal:\n%s", out, localShowJSON)
	}
	if err := schema.Validate("gallery-show.json", []byte(out)); err != nil {
		t.Error(err)
	}
	out, _ = remote(exitOK, "gallery", "list", "--json")
	if err := schema.Validate("gallery-list.json", []byte(out)); err != nil {
		t.Error(err)
	}
	var rl, ll struct {
		Identities json.RawMessage `json:"identities"`
		Server     string          `json:"server"`
	}
	json.Unmarshal([]byte(out), &rl)
	json.Unmarshal([]byte(localListJSON), &ll)
	if string(rl.Identities) != string(ll.Identities) || rl.Server != url {
		t.Errorf("remote list --json %s (server %q)\nlocal %s", rl.Identities, rl.Server, ll.Identities)
	}
	out, _ = remote(exitOK, "gallery", "list")
	if i, j := strings.Index(out, "\n"), strings.Index(localList, "\n"); out[i:] != localList[j:] || !strings.HasPrefix(out, "2 people on "+url+" (model fr_feature)") {
		t.Errorf("remote list:\n%s\nlocal:\n%s", out, localList)
	}
	if out, _ := remote(exitOK, "apikey", "list"); out != localKeys {
		t.Errorf("remote apikey list %q, local %q", out, localKeys)
	}
	// The environment stands for the flags.
	t.Setenv(envServer, url)
	t.Setenv(envKey, admin)
	if code, out, errs := facever(t, "gallery", "rename", "John Simm", "John Simm (actor)"); code != exitOK || out != "#1 John Simm is now John Simm (actor)\n" {
		t.Errorf("rename through $%s: %d %q %q", envServer, code, out, errs)
	}
	// --gallery on the command line wins over $FACEVER_SERVER: still held.
	if code, _, errs := facever(t, "gallery", "list", "--gallery", gal); code != exitError || !strings.Contains(errs, "held by") {
		t.Errorf("--gallery with $%s set: %d %q", envServer, code, errs)
	}
	if code, _, errs := facever(t, "gallery", "list", "--gallery", gal, "--server", url); code != exitError || !strings.Contains(errs, "not both") {
		t.Errorf("--gallery and --server: %d %q", code, errs)
	}
	os.Unsetenv(envServer)
	os.Unsetenv(envKey)

	// Keys: a recognize key made over the API works at once and cannot
	// manage; revoked, it is refused on the next request.
	out, errs = remote(exitOK, "apikey", "create", "--name", "kiosk", "--scope", "recognize", "--json")
	if err := schema.Validate("apikey-create.json", []byte(out)); err != nil {
		t.Errorf("%v\n%s", err, out)
	}
	var made struct{ Key, Prefix string }
	json.Unmarshal([]byte(out), &made)
	out, _ = remote(exitOK, "apikey", "list", "--json")
	if err := schema.Validate("apikey-list.json", []byte(out)); err != nil || !strings.Contains(out, `"kiosk"`) {
		t.Errorf("apikey list --json: %v\n%s", err, out)
	}
	code, _, errs = facever(t, "gallery", "list", "--server", url, "--key", made.Key)
	if code != exitError || !strings.Contains(errs, "not allowed (403)") || !strings.Contains(errs, "recognize") {
		t.Errorf("recognize key lists the gallery: %d %q", code, errs)
	}
	if out, _ := remote(exitOK, "apikey", "revoke", made.Prefix); out != "revoked 1 key(s)\n" {
		t.Errorf("revoke: %q", out)
	}
	code, _, errs = facever(t, "gallery", "list", "--server", url, "--key", made.Key)
	if code != exitError || !strings.Contains(errs, "refused the API key (401") || !strings.Contains(errs, "--key") {
		t.Errorf("revoked key: %d %q", code, errs)
	}
	if _, errs := remote(exitError, "apikey", "revoke", made.Prefix); !strings.Contains(errs, "no key with prefix") {
		t.Errorf("revoke twice: %q", errs)
	}
	// 404: nobody of that name or id.
	for _, ref := range []string{"Nobody", "#99"} {
		if _, errs := remote(exitError, "gallery", "show", ref); !strings.Contains(errs, fmt.Sprintf("no person %q on %s", ref, url)) {
			t.Errorf("show %s: %q", ref, errs)
		}
	}
	if _, errs := remote(exitError, "gallery", "rename", "John Salley", "John Simm (actor)"); !strings.Contains(errs, "409 exists") {
		t.Errorf("rename onto a taken name: %q", errs)
	}
	// Remove: the local vocabulary.
	out, _ = remote(exitOK, "gallery", "remove", "--json", "John Salley")
	if err := schema.Validate("removed.json", []byte(out)); err != nil || !strings.Contains(out, `"name": "John Salley"`) {
		t.Errorf("remove --json: %v\n%s", err, out)
	}
	if out, _ := remote(exitOK, "gallery", "list"); !strings.HasPrefix(out, "1 people on ") || !strings.Contains(out, "John Simm (actor)") {
		t.Errorf("list after remove: %q", out)
	}
	if code, _, errs := facever(t, "gallery", "list", "--server", url); code != exitError || !strings.Contains(errs, "needs an API key") {
		t.Errorf("no key: %d %q", code, errs)
	}

	// Stopped: the sidecar is gone, local commands work, --server is a
	// refused connection.
	stop()
	if _, err := os.Stat(gal + servedSuffix); !os.IsNotExist(err) {
		t.Errorf("sidecar after the server stopped: %v", err)
	}
	if code, out, errs := facever(t, "gallery", "list", "--gallery", gal); code != exitOK || !strings.Contains(out, "John Simm (actor)") {
		t.Errorf("local list after the server: %d %q %q", code, out, errs)
	}
	if _, errs := remote(exitError, "gallery", "list"); !strings.Contains(errs, "cannot reach facever serve at "+url+": connection refused") {
		t.Errorf("stopped server: %q", errs)
	}
}

// TestServedSidecarStale: a sidecar left by a killed server (its pid gone,
// or the gallery not locked) does not stop local commands.
func TestServedSidecarStale(t *testing.T) {
	gal := filepath.Join(t.TempDir(), "g.db")
	if code, _, errs := facever(t, "apikey", "create", "--gallery", gal, "--name", "ops"); code != exitOK {
		t.Fatal(errs)
	}
	// A pid that exited, then this live process (the file is not locked).
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range []int{cmd.Process.Pid, os.Getpid()} {
		os.WriteFile(gal+servedSuffix, []byte(fmt.Sprintf(`{"url":"http://127.0.0.1:1","pid":%d}`, pid)), 0o644)
		if code, out, errs := facever(t, "apikey", "list", "--gallery", gal); code != exitOK || !strings.Contains(out, "ops") {
			t.Errorf("stale sidecar (pid %d): %d %q %q", pid, code, out, errs)
		}
	}
}
