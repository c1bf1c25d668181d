package server

import (
	"context"
	"encoding/json"
	"io"
	"sync"
	"time"
)

// AccessEntry is one line of the access log: who called what, with which
// outcome, touching which identities. It holds no image, no template and
// no key material: a key is named by its name and its public prefix (the
// one `facever apikey list` shows and `apikey revoke` takes).
type AccessEntry struct {
	// Time is when the request arrived (UTC).
	Time time.Time `json:"time"`
	// Key is the API key's prefix ("" without authentication).
	Key string `json:"key,omitempty"`
	// KeyName is whom the key is for.
	KeyName string `json:"key_name,omitempty"`
	// Method and Route: the endpoint, as in /metrics (path parameters as
	// {id}).
	Method string `json:"method"`
	// Route is the endpoint's pattern.
	Route string `json:"route"`
	// Status is the HTTP status answered (499: the client went away).
	Status int `json:"status"`
	// Code is the error's stable code, for answers that are errors.
	Code string `json:"code,omitempty"`
	// Identities are the ids the request read, created, changed, deleted or
	// matched.
	Identities []uint64 `json:"identities,omitempty"`
	// Faces is how many faces the request enrolled.
	Faces int `json:"faces,omitempty"`
	// LatencyMS is the time from arrival to the last byte written.
	LatencyMS float64 `json:"latency_ms"`
	// Remote is the client's address.
	Remote string `json:"remote,omitempty"`
}

// accessLog writes AccessEntry values as JSON lines, one Write per line.
type accessLog struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *accessLog) write(e *AccessEntry) {
	if l == nil || l.w == nil {
		return
	}
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	b = append(b, '\n')
	l.mu.Lock()
	_, _ = l.w.Write(b)
	l.mu.Unlock()
}

type entryKey struct{}

// entryOf returns the request's access-log entry (never nil inside a
// handler).
func entryOf(ctx context.Context) *AccessEntry {
	if e, ok := ctx.Value(entryKey{}).(*AccessEntry); ok {
		return e
	}
	return &AccessEntry{}
}

// touched records identity ids in the request's entry.
func touched(ctx context.Context, ids ...uint64) {
	e := entryOf(ctx)
	e.Identities = append(e.Identities, ids...)
}
