package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/facever/facever/enroll"
	"github.com/facever/facever/internal/server"
)

// backupFromServer downloads a running server's hot backup (GET /v1/backup)
// and saves it to path through enroll.SaveBackup, which checks it first.
func backupFromServer(base, key, path string, timeout time.Duration) (enroll.BackupInfo, error) {
	if key == "" {
		return enroll.BackupInfo{}, errors.New("--server needs an admin --key (or $FACEVER_KEY)")
	}
	u, err := url.Parse(strings.TrimRight(base, "/") + "/v1/backup")
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return enroll.BackupInfo{}, fmt.Errorf("--server %q: want a URL such as http://127.0.0.1:8080", base)
	}
	req, err := http.NewRequest("GET", u.String(), nil)
	if err != nil {
		return enroll.BackupInfo{}, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := (&http.Client{Timeout: timeout}).Do(req)
	if err != nil {
		return enroll.BackupInfo{}, fmt.Errorf("backup from %s: %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		var doc struct {
			Error struct{ Code, Message string }
		}
		if json.Unmarshal(body, &doc) == nil && doc.Error.Message != "" {
			return enroll.BackupInfo{}, fmt.Errorf("backup from %s: %s (%s)", base, doc.Error.Message, doc.Error.Code)
		}
		return enroll.BackupInfo{}, fmt.Errorf("backup from %s: %s", base, resp.Status)
	}
	// The transaction copied is a trailer: known only after the body, so the
	// body is read first (SaveBackup) and the info completed after.
	info, err := enroll.SaveBackup(resp.Body, path, 0)
	if err != nil {
		return enroll.BackupInfo{}, err
	}
	txid, err := strconv.ParseUint(resp.Trailer.Get(server.BackupTxidTrailer), 10, 64)
	if err != nil {
		return enroll.BackupInfo{}, fmt.Errorf("backup from %s: the server did not finish its copy (no %s trailer)", base, server.BackupTxidTrailer)
	}
	info.Txid = txid
	return info, nil
}
