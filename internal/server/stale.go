package server

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/facever/facever/enroll"
)

// healthier is a store that knows whether it is in touch with the database
// it shares with other nodes (enroll/pgstore's Store): applied is the
// change sequence its index reflects; stale means it has lost the
// database, err says why.
type healthier interface {
	Health() (applied uint64, stale bool, err error)
}

// health reports the sequence the gallery's index reflects (a store without
// Health: its Version, the bbolt transaction id) and whether the node is
// stale.
func (s *Server) health() (seq uint64, stale bool, err error) {
	if h, ok := s.cfg.Gallery.(healthier); ok {
		return h.Health()
	}
	return s.cfg.Gallery.Version(), false, nil
}

// healthz answers GET /healthz: the model, the applied sequence and, for a
// node that has lost its database, status "stale" and why (still 200: the
// node is alive and answers identify from its last index).
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	seq, stale, err := s.health()
	out := map[string]any{"status": "ok", "model": s.model, "sequence": seq, "stale": stale}
	if stale {
		out["status"] = "stale"
		if err != nil {
			out["error"] = err.Error()
		}
	}
	return writeJSON(w, http.StatusOK, out)
}

// writes reports whether route rt changes the gallery (refused by a stale
// node): every route but the reads (GET) and the recognize routes.
func (rt route) writes() bool {
	return !strings.HasPrefix(rt.pattern, "GET ") && rt.scope != enroll.ScopeRecognize
}

// refuseStale fails a write on a stale node with 503 "stale".
func (s *Server) refuseStale() error {
	if _, stale, err := s.health(); stale {
		msg := "this node has lost the gallery's database: it answers identify from its last index but refuses changes until the database is back; retry later or on another node"
		if err != nil {
			msg += " (" + err.Error() + ")"
		}
		return &apiError{http.StatusServiceUnavailable, "stale", msg}
	}
	return nil
}

// markStale adds "stale": true to a read answered from the index of a
// stale node.
func (s *Server) markStale(out map[string]any) {
	if _, stale, _ := s.health(); stale {
		out["stale"] = true
	}
}

// keyCache remembers the API keys the gallery accepted lately (by hash,
// never in clear), so that a node that has lost its database still lets
// them read from its index. Bounded: at most keyCacheMax keys, each for
// keyCacheTTL after its last check against the database.
type keyCache struct {
	mu sync.Mutex
	m  map[string]cachedKey
}

type cachedKey struct {
	key enroll.APIKey
	at  time.Time
}

const (
	keyCacheMax = 4096
	keyCacheTTL = 15 * time.Minute
)

func (c *keyCache) get(hash string) (enroll.APIKey, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[hash]
	if !ok || time.Since(e.at) > keyCacheTTL {
		return enroll.APIKey{}, false
	}
	return e.key, true
}

func (c *keyCache) put(hash string, k enroll.APIKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]cachedKey{}
	}
	if _, ok := c.m[hash]; !ok && len(c.m) >= keyCacheMax {
		for h := range c.m { // drop one, any
			delete(c.m, h)
			break
		}
	}
	c.m[hash] = cachedKey{k, time.Now()}
}

func (c *keyCache) drop(hash string) {
	c.mu.Lock()
	delete(c.m, hash)
	c.mu.Unlock()
}

// checkKey checks key against the gallery; on a stale node, a key the
// gallery accepted within keyCacheTTL is accepted without asking it (a
// revocation made meanwhile through another node is seen once the
// database is back).
func (s *Server) checkKey(key string) (enroll.APIKey, error) {
	hash := enroll.HashAPIKey(key)
	if _, stale, _ := s.health(); stale {
		if k, ok := s.keys.get(hash); ok {
			return k, nil
		}
	}
	k, err := s.cfg.Gallery.CheckAPIKey(key)
	switch {
	case err == nil:
		s.keys.put(hash, k)
	case errors.Is(err, enroll.ErrBadKey):
		s.keys.drop(hash)
	}
	return k, err
}
