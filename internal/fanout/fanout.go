// Package fanout searches an index split across nodes (`facever serve
// --shard i/n`): it sends the query embeddings to one node of every shard
// at once (POST /v1/shard/search), waits for all of them within a time
// limit, and merges their top k into the exact top k of the whole gallery.
//
// Exact because the shards partition the identities (enroll.ShardOf): every
// identity, with all its templates, is in exactly one shard, each shard
// returns its own best k, and the best k of the union of those lists are the
// best k of the gallery. Equal scores rank by identity id, lowest first, as
// in one enroll.Index.
package fanout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/facever/facever/enroll"
)

// Path is the endpoint of a node's shard search.
const Path = "/v1/shard/search"

// Self, as a shard's URL, is the calling node itself (searched in process).
const Self = "self"

// DefaultTimeout bounds a shard's answer when Client.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// maxAnswer bounds the bytes read of one shard's answer.
const maxAnswer = 32 << 20

// Request is the body of POST /v1/shard/search.
type Request struct {
	// Embeddings are the queries (one per face), searched in one pass.
	Embeddings [][]float32 `json:"embeddings"`
	// Top is k, the matches wanted per query.
	Top int `json:"top"`
}

// Answer is a shard's reply: per query, its own best Top matches.
type Answer struct {
	// Shard is the part of the gallery the node holds ("i/n"; "" for all,
	// left out of the JSON: no empty strings in the vocabulary).
	Shard string `json:"shard,omitempty"`
	// Version is the store version of the index searched.
	Version uint64 `json:"version"`
	// Identities and Templates are the index's size.
	Identities int `json:"identities"`
	Templates  int `json:"templates"`
	// Results holds, per query, the shard's best matches, best first.
	Results [][]enroll.Match `json:"results"`
}

// Local searches this node's own index (for the Self shard).
type Local func(ctx context.Context, queries [][]float32, k int) ([][]enroll.Match, error)

// Client fans a search out to the shards. Its zero value is not usable;
// build it with New.
type Client struct {
	urls    []string
	timeout time.Duration
	http    *http.Client
}

// New returns a client for the shards' base URLs, one per shard, in shard
// order (Self for the calling node). timeout bounds each search (zero:
// DefaultTimeout).
func New(urls []string, timeout time.Duration) (*Client, error) {
	if len(urls) < 1 || len(urls) > enroll.MaxShards {
		return nil, fmt.Errorf("fanout: %d shard URLs, want 1 to %d", len(urls), enroll.MaxShards)
	}
	clean := make([]string, len(urls))
	for i, u := range urls {
		u = strings.TrimRight(strings.TrimSpace(u), "/")
		if u != Self {
			p, err := url.Parse(u)
			if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" || (p.Path != "" && p.Path != "/") {
				return nil, fmt.Errorf("fanout: shard %d: %q is not a node's base URL (want http://host:port, or %q for this node)", i, urls[i], Self)
			}
		}
		clean[i] = u
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return &Client{urls: clean, timeout: timeout, http: &http.Client{Transport: tr}}, nil
}

// Shards is the number of shards.
func (c *Client) Shards() int { return len(c.urls) }

// URL is shard i's base URL (or Self).
func (c *Client) URL(i int) string { return c.urls[i] }

// Timeout is the bound on each shard's answer.
func (c *Client) Timeout() time.Duration { return c.timeout }

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// ShardError is why one shard gave no answer.
type ShardError struct {
	// Shard is the shard's number, URL its node.
	Shard int    `json:"shard"`
	URL   string `json:"url"`
	// Err is what went wrong.
	Err error `json:"-"`
	// Message is Err's text (for JSON).
	Message string `json:"error"`
	// Count is the number of shards.
	Count int `json:"-"`
}

func (e *ShardError) Error() string {
	return fmt.Sprintf("shard %d/%d (%s) gave no answer: %v", e.Shard, e.Count, e.URL, e.Err)
}

func (e *ShardError) Unwrap() error { return e.Err }

// Search sends the queries to every shard at once (local for the Self
// shard), with header's credentials, and merges their answers: per query,
// the exact top k over all shards. Shards that failed are returned in
// missing, in shard order; the merge then covers only the others. err is
// set only when the request itself is wrong (no shard could be asked, or ctx
// ended).
func (c *Client) Search(ctx context.Context, header http.Header, local Local, queries [][]float32, k int) (merged [][]enroll.Match, missing []*ShardError, err error) {
	body, err := json.Marshal(Request{Embeddings: queries, Top: k})
	if err != nil {
		return nil, nil, fmt.Errorf("fanout: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	answers := make([][][]enroll.Match, len(c.urls))
	errs := make([]error, len(c.urls))
	var wg sync.WaitGroup
	for i, u := range c.urls {
		wg.Go(func() {
			if u == Self {
				if local == nil {
					errs[i] = errors.New("this node holds no index")
					return
				}
				answers[i], errs[i] = local(ctx, queries, k)
				return
			}
			answers[i], errs[i] = c.ask(ctx, u, header, body, len(queries))
		})
	}
	wg.Wait()
	lists := make([][]enroll.Match, 0, len(c.urls))
	merged = make([][]enroll.Match, len(queries))
	for i, e := range errs {
		if e != nil {
			if ctx.Err() != nil && errors.Is(e, context.DeadlineExceeded) {
				e = fmt.Errorf("no answer within %v", c.timeout)
			}
			missing = append(missing, &ShardError{Shard: i, URL: c.urls[i], Err: e, Message: e.Error(), Count: len(c.urls)})
		}
	}
	for q := range queries {
		lists = lists[:0]
		for i := range c.urls {
			if errs[i] == nil {
				lists = append(lists, answers[i][q])
			}
		}
		merged[q] = Merge(nil, lists, k)
	}
	return merged, missing, nil
}

// ask runs one shard's search.
func (c *Client) ask(ctx context.Context, base string, header http.Header, body []byte, queries int) ([][]enroll.Match, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+Path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for _, h := range []string{"Authorization", "X-API-Key"} {
		if v := header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	if len(data) > maxAnswer {
		return nil, fmt.Errorf("answer over %d bytes", maxAnswer)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error.Code != "" {
			return nil, fmt.Errorf("HTTP %d %s: %s", resp.StatusCode, e.Error.Code, e.Error.Message)
		}
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	var a Answer
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("answer is not a shard search answer: %w", err)
	}
	if len(a.Results) != queries {
		return nil, fmt.Errorf("answered %d queries of %d", len(a.Results), queries)
	}
	return a.Results, nil
}

// Before reports whether a ranks before b: higher score, then lower
// identity id (the order of one enroll.Index).
func Before(a, b enroll.Match) bool {
	return a.Score > b.Score || a.Score == b.Score && a.IdentityID < b.IdentityID
}

// Merge appends to dst the best k matches of lists (each sorted best first,
// as Before ranks them, and holding distinct identities) and returns it.
func Merge(dst []enroll.Match, lists [][]enroll.Match, k int) []enroll.Match {
	// k-way merge: at most k steps over a handful of lists.
	var pos [16]int
	at := pos[:0]
	if len(lists) > len(pos) {
		at = make([]int, 0, len(lists))
	}
	at = at[:len(lists)]
	for len(dst) < k || k < 0 {
		best := -1
		for i, l := range lists {
			if at[i] < len(l) && (best < 0 || Before(l[at[i]], lists[best][at[best]])) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		dst = append(dst, lists[best][at[best]])
		at[best]++
	}
	return dst
}
