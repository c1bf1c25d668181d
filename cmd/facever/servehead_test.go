package main

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/facever/facever/facehead"
	"github.com/facever/facever/internal/testmodels"
	"github.com/facever/facever/models"
)

// TestServeHeadThresholds: `serve --head H` answers /v1/verify and
// /v1/identify with the head file's own calibrated 1:1 and 1:N thresholds
// (head format v2), as verify --head and identify --head do; a threshold
// flag wins over the head's; without a head the backbone's are used.
func TestServeHeadThresholds(t *testing.T) {
	testmodels.Dir(t)
	dir := t.TempDir()
	// An identity projection of fr_feature's 512-d features, with its own
	// thresholds, distinct from the backbone's 0.38 and 0.495.
	const dim = 512
	w := make([]float32, dim*dim)
	for i := 0; i < dim; i++ {
		w[i*dim+i] = 1
	}
	h, err := facehead.NewHead(dim, dim, w, make([]float32, dim), facehead.HeadMeta{BackboneSHA256: models.Feature.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	const headVerify, headIdentify = 0.4125, 0.6375
	if err := h.SetThresholds(facehead.HeadThresholds{Verify: headVerify, VerifyFAR: 1e-3, Identify: headIdentify, IdentifyFalseAlarm: 0.01, Identities: 2}); err != nil {
		t.Fatal(err)
	}
	head := filepath.Join(dir, "h.fvh")
	if err := h.Save(head); err != nil {
		t.Fatal(err)
	}
	photo, err := os.ReadFile(simmA)
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		what          string
		args          []string
		verify, ident float64
	}{
		{"--head", []string{"--head", head}, headVerify, headIdentify},
		{"--head with --threshold", []string{"--head", head, "--threshold", "0.3"}, 0.3, headIdentify},
		{"--head with --identify-threshold", []string{"--head", head, "--identify-threshold", "0.7"}, headVerify, 0.7},
		{"no head", nil, models.Feature.Threshold, models.Feature.IdentifyThreshold},
	} {
		gal := filepath.Join(dir, "g"+string(rune('0'+i))+".db")
		code, key, errs := facever(t, "apikey", "create", "--gallery", gal, "--name", "ci")
		key = strings.TrimSpace(key)
		if code != exitOK || key == "" {
			t.Fatalf("apikey create: %d %q", code, errs)
		}
		addr, stop := serveInProcess(t, append([]string{"serve", "--gallery", gal, "--addr", "127.0.0.1:0"}, tc.args...))
		post := func(path string, body map[string]any) map[string]any {
			b, _ := json.Marshal(body)
			req, _ := http.NewRequest("POST", "http://"+addr+path, bytes.NewReader(b))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			data, _ := io.ReadAll(resp.Body)
			var doc map[string]any
			if err := json.Unmarshal(data, &doc); err != nil || resp.StatusCode != 200 {
				t.Fatalf("%s %s: %d %s", tc.what, path, resp.StatusCode, data)
			}
			return doc
		}
		v := post("/v1/verify", map[string]any{"image_a": photo, "image_b": photo})
		id := post("/v1/identify", map[string]any{"image": photo})
		stop()
		if got := v["threshold"].(float64); math.Abs(got-tc.verify) > 1e-6 {
			t.Errorf("%s: /v1/verify threshold %v, want %v", tc.what, got, tc.verify)
		}
		if got := id["threshold"].(float64); math.Abs(got-tc.ident) > 1e-6 {
			t.Errorf("%s: /v1/identify threshold %v, want %v", tc.what, got, tc.ident)
		}
	}
}

// serveInProcess runs `facever serve` in the test's process until stop, which
// sends SIGTERM and waits for exit 0.
func serveInProcess(t *testing.T, args []string) (addr string, stop func()) {
	t.Helper()
	var errb lockedBuffer
	done := make(chan int, 1)
	go func() { done <- run(append([]string{"facever"}, args...), io.Discard, &errb) }()
	addrRe := regexp.MustCompile(`serving http://(\S+) `)
	for deadline := time.Now().Add(60 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case c := <-done:
			t.Fatalf("serve %v exited %d: %s", args, c, errb.String())
		default:
		}
		if m := addrRe.FindStringSubmatch(errb.String()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		t.Fatalf("serve did not start: %s", errb.String())
	}
	return addr, func() {
		syscall.Kill(os.Getpid(), syscall.SIGTERM)
		select {
		case c := <-done:
			if c != exitOK {
				t.Fatalf("serve exited %d after SIGTERM: %s", c, errb.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatal("serve did not stop on SIGTERM")
		}
	}
}
