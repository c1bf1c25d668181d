package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/facever/facever/internal/testmodels"
)

// lockedBuffer is a bytes.Buffer that the serving goroutine writes while
// the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestServeAccessLogAndMetrics runs `facever serve` with the real models:
// the access log is a 0600 file of JSON lines without the key; /metrics
// needs the key on the API's address and not on --metrics-addr; a client
// threshold under --min-threshold is refused; SIGTERM stops it with exit 0.
func TestServeAccessLogAndMetrics(t *testing.T) {
	testmodels.Dir(t)
	dir := t.TempDir()
	gal := filepath.Join(dir, "g.db")
	code, key, errs := facever(t, "apikey", "create", "--gallery", gal, "--name", "ci")
	key = strings.TrimSpace(key)
	if code != exitOK || key == "" {
		t.Fatalf("apikey create: %d %q", code, errs)
	}
	logPath := filepath.Join(dir, "access.jsonl")
	var out, errb lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"facever", "serve", "--gallery", gal, "--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--access-log", logPath, "--min-threshold", "0.3"}, &out, &errb)
	}()
	addrRe := regexp.MustCompile(`serving http://(\S+) `)
	metricsRe := regexp.MustCompile(`metrics on http://(\S+)/metrics`)
	var addr, maddr string
	for deadline := time.Now().Add(60 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case c := <-done:
			t.Fatalf("serve exited %d: %s", c, errb.String())
		default:
		}
		if m := addrRe.FindStringSubmatch(errb.String()); m != nil {
			addr = m[1]
			maddr = metricsRe.FindStringSubmatch(errb.String())[1]
		}
	}
	if addr == "" {
		t.Fatalf("serve did not start: %s", errb.String())
	}
	// A hot backup through the running server (it holds the gallery's lock),
	// checked like any gallery file.
	backup := filepath.Join(dir, "backup.db")
	if code, out, errs := facever(t, "gallery", "backup", "--server", "http://"+addr, "--key", key, "--to", backup); code != exitOK || !strings.Contains(out, "transaction") {
		t.Fatalf("backup through the server: %d %s %s", code, out, errs)
	}
	if code, out, errs := facever(t, "gallery", "check", "-g", backup); code != exitOK {
		t.Fatalf("check of the server's backup: %d %s %s", code, out, errs)
	}
	if code, _, errs := facever(t, "gallery", "backup", "--server", "http://"+addr, "--key", "wrong", "--to", backup); code != exitError || !strings.Contains(errs, "backup from") {
		t.Fatalf("backup with a wrong key: %d %s", code, errs)
	}
	get := func(url, key string) (int, string) {
		req, _ := http.NewRequest("GET", url, nil)
		if key != "" {
			req.Header.Set("X-API-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if c, _ := get("http://"+addr+"/metrics", ""); c != 401 {
		t.Errorf("/metrics without a key: %d", c)
	}
	if c, body := get("http://"+addr+"/metrics", key); c != 200 || !strings.Contains(body, "facever_http_requests_total") {
		t.Errorf("/metrics with the key: %d", c)
	}
	if c, body := get("http://"+maddr+"/metrics", ""); c != 200 || !strings.Contains(body, "facever_http_requests_total") {
		t.Errorf("--metrics-addr without a key: %d", c)
	}
	photo, err := os.ReadFile(simmA)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"image_a": photo, "image_b": photo, "threshold": 0.1})
	req, _ := http.NewRequest("POST", "http://"+addr+"/v1/verify", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(b), "threshold_too_low") {
		t.Errorf("threshold 0.1 under --min-threshold 0.3: %d %s", resp.StatusCode, b)
	}
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case c := <-done:
		if c != exitOK {
			t.Fatalf("serve exited %d after SIGTERM: %s", c, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
	fi, err := os.Stat(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("access log is %v, want -rw-------", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(logPath)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 5 { // the two backups, the two /metrics on the API address and the verify
		t.Fatalf("%d access-log lines, want 5:\n%s", len(lines), data)
	}
	for _, l := range lines {
		var e map[string]any
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		for _, f := range []string{"time", "route", "status", "latency_ms"} {
			if _, ok := e[f]; !ok {
				t.Errorf("line lacks %q: %s", f, l)
			}
		}
	}
	if strings.Contains(string(data), key) {
		t.Fatal("the access log holds the API key")
	}
	if !strings.Contains(lines[0], `"route":"/v1/backup","status":200`) || !strings.Contains(lines[1], `"route":"/v1/backup","status":401`) {
		t.Errorf("backup lines: %s\n%s", lines[0], lines[1])
	}
	if !strings.Contains(lines[4], `"code":"threshold_too_low"`) || !strings.Contains(lines[4], `"key_name":"ci"`) {
		t.Errorf("verify line: %s", lines[4])
	}
}
