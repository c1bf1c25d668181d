package server

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/facever/facever/enroll"
)

// getBackup downloads GET /v1/backup with key.
func getBackup(t *testing.T, f *fixture, key string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", f.http.URL+"/v1/backup", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := f.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, data
}

// TestHotBackup downloads backups while other clients create identities
// through the same server: each backup checks out and holds a prefix of the
// identities acknowledged (whole enrolls only), and a backup cut short is
// refused by SaveBackup without touching the destination.
func TestHotBackup(t *testing.T) {
	f, _ := newFakeFixture(t, &fakeRecognizer{}, nil)
	createFake(t, f, "Before", nil)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var mu sync.Mutex
	acked := 1
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			code, doc := f.do(t, "POST", "/v1/identities", "application/json", jsonBody(map[string]any{"name": fmt.Sprintf("person %d", i)}), f.key)
			if code != 201 {
				t.Errorf("create: %d %v", code, doc)
				return
			}
			mu.Lock()
			acked++
			mu.Unlock()
		}
	}()
	dir := t.TempDir()
	for round := 0; round < 8; round++ {
		mu.Lock()
		before := acked
		mu.Unlock()
		resp, data := getBackup(t, f, f.key)
		if resp.StatusCode != 200 {
			t.Fatalf("backup: %d %s", resp.StatusCode, data)
		}
		txid, err := strconv.ParseUint(resp.Trailer.Get(BackupTxidTrailer), 10, 64)
		if err != nil || txid == 0 {
			t.Fatalf("trailer %q: %v", resp.Trailer.Get(BackupTxidTrailer), err)
		}
		path := filepath.Join(dir, fmt.Sprintf("b%d.db", round))
		info, err := enroll.SaveBackup(bytes.NewReader(data), path, txid)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if info.Bytes != int64(len(data)) || info.Txid != txid {
			t.Fatalf("info %+v for %d bytes, txid %d", info, len(data), txid)
		}
		g, err := enroll.Open(path, enroll.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		ids, err := g.List()
		g.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) < before {
			t.Errorf("round %d: backup holds %d identities, %d were acknowledged before it began", round, len(ids), before)
		}
	}
	close(stop)
	wg.Wait()

	// A stream cut short is refused and leaves the destination alone.
	_, data := getBackup(t, f, f.key)
	dst := filepath.Join(dir, "b0.db")
	if _, err := enroll.SaveBackup(bytes.NewReader(data[:len(data)/2]), dst, 1); err == nil {
		t.Fatal("half a backup was saved")
	}
	if g, err := enroll.Open(dst, enroll.Options{ReadOnly: true}); err != nil {
		t.Fatalf("the earlier backup was damaged: %v", err)
	} else {
		g.Close()
	}

	// Only admin keys may copy the gallery.
	code, doc := f.do(t, "POST", "/v1/keys", "application/json", jsonBody(map[string]any{"name": "desk", "scopes": []string{"enroll"}}), f.key)
	if code != 201 {
		t.Fatalf("create key: %d %v", code, doc)
	}
	if resp, body := getBackup(t, f, doc["key"].(string)); resp.StatusCode != 403 {
		t.Errorf("enroll key: %d %s", resp.StatusCode, body)
	}
}
