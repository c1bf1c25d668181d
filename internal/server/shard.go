package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/facever/facever/enroll"
	"github.com/facever/facever/internal/fanout"
)

// maxShardTop is the largest k of a shard search (identify's top is 1–100).
const maxShardTop = 100

// setupShards checks the shard configuration and builds the fan-out
// client: a node whose index holds one shard must know a node of every
// shard (else its identify would answer from part of the gallery).
func (s *Server) setupShards() error {
	sh, urls := s.cfg.Shard, s.cfg.Shards
	if sh.Sharded() && len(urls) != sh.Count {
		return fmt.Errorf("server: this node holds shard %s, so identify needs a node of each of the %d shards (--shards with %d URLs, %q for this node's own), got %d", sh, sh.Count, sh.Count, fanout.Self, len(urls))
	}
	if len(urls) == 0 {
		return nil
	}
	for i, u := range urls {
		if u != fanout.Self {
			continue
		}
		if !sh.Sharded() || i != sh.Index {
			return fmt.Errorf("server: --shards entry %d is %q, but this node holds shard %q", i, fanout.Self, sh)
		}
	}
	if sh.Sharded() && urls[sh.Index] != fanout.Self {
		// Its own shard is searched in process anyway: no loop through
		// the network to itself.
		urls = append([]string(nil), urls...)
		urls[sh.Index] = fanout.Self
	}
	c, err := fanout.New(urls, s.cfg.ShardTimeout)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	// The index is loaded now, not by the first shard search: a load of a
	// large gallery would outlast the asking node's --shard-timeout. (A
	// router, holding no shard, never searches its own.)
	if sh.Sharded() {
		if _, err := s.cfg.Gallery.Index(); err != nil {
			c.Close()
			return fmt.Errorf("server: load the index: %w", err)
		}
	}
	s.fan = c
	return nil
}

// shardRoutes registers the shard search (not heavy: it takes no request
// slot, so that nodes fanning out to each other cannot wait on each other's
// slots).
func (s *Server) shardRoutes() {
	s.handle(route{pattern: "POST " + fanout.Path, name: fanout.Path, auth: true, scope: enroll.ScopeRecognize, maxBody: 16 << 20}, s.shardSearch)
}

// shardSearch is POST /v1/shard/search: this node's own index only (its
// shard), for a node that fans an identify out.
func (s *Server) shardSearch(w http.ResponseWriter, r *http.Request) error {
	data, err := readBody(r)
	if err != nil {
		return err
	}
	var req fanout.Request
	if err := decodeStrict(data, &req); err != nil {
		return badRequest("%v; send {\"embeddings\": [[...], ...], \"top\": k}", err)
	}
	if len(req.Embeddings) == 0 {
		return badRequest("embeddings is required: one or more arrays of numbers")
	}
	if len(req.Embeddings) > s.cfg.MaxFaces {
		return &apiError{http.StatusUnprocessableEntity, "too_many_faces", fmt.Sprintf("%d embeddings; this server searches at most %d per request", len(req.Embeddings), s.cfg.MaxFaces)}
	}
	if req.Top < 1 || req.Top > maxShardTop {
		return badRequest("top must be a whole number between 1 and %d", maxShardTop)
	}
	res, ix, err := s.searchLocal(req.Embeddings, req.Top)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, fanout.Answer{Shard: s.cfg.Shard.String(), Version: ix.Version(), Identities: ix.Identities(), Templates: ix.Len(), Results: res})
}

// searchLocal searches this node's index (one pass for all queries) and
// returns copies of the matches.
func (s *Server) searchLocal(queries [][]float32, k int) ([][]enroll.Match, *enroll.Index, error) {
	ix, err := s.cfg.Gallery.Index()
	if err != nil {
		return nil, nil, err
	}
	sr := s.searchers.get(ix)
	defer s.searchers.put(ix, sr)
	out, err := sr.SearchBatch(queries, k)
	if err != nil {
		if errors.Is(err, enroll.ErrDimension) || errors.Is(err, enroll.ErrEmptyQuery) {
			return nil, nil, badRequest("%v", err)
		}
		return nil, nil, err
	}
	n := 0
	for _, o := range out {
		n += len(o)
	}
	all := make([]enroll.Match, 0, n)
	res := make([][]enroll.Match, len(out))
	for i, o := range out {
		all = append(all, o...)
		res[i] = all[len(all)-len(o) : len(all) : len(all)]
	}
	return res, ix, nil
}

// shardReport says how an identify searched a sharded gallery.
type shardReport struct {
	shards  int
	missing []*fanout.ShardError
}

// search returns the top k matches of each query over the whole gallery:
// this node's index, or every shard's when the index is split. A shard that
// does not answer fails the search (503 shard_unavailable) unless partial is
// set, then the answer says which shards are missing.
func (s *Server) search(ctx context.Context, r *http.Request, queries [][]float32, k int, partial bool) ([][]enroll.Match, *shardReport, error) {
	if s.fan == nil {
		res, _, err := s.searchLocal(queries, k)
		return res, nil, err
	}
	local := func(ctx context.Context, qs [][]float32, k int) ([][]enroll.Match, error) {
		res, _, err := s.searchLocal(qs, k)
		return res, err
	}
	res, missing, err := s.fan.Search(ctx, r.Header, local, queries, k)
	if err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if len(missing) > 0 && !partial {
		m := missing[0]
		return nil, nil, &apiError{http.StatusServiceUnavailable, "shard_unavailable",
			fmt.Sprintf("%v; %d of %d shards did not answer, so the gallery could not be searched whole (send partial=true to accept an answer from the others, flagged as partial)", m, len(missing), s.fan.Shards())}
	}
	return res, &shardReport{shards: s.fan.Shards(), missing: missing}, nil
}

// addTo writes the report's fields into an identify answer.
func (rep *shardReport) addTo(out map[string]any) {
	if rep == nil {
		return
	}
	out["shards"] = rep.shards
	out["partial"] = len(rep.missing) > 0
	if len(rep.missing) > 0 {
		out["missing_shards"] = rep.missing
	}
}

// searcherPool keeps the Searchers of the newest index for reuse (a
// Searcher owns per-identity buffers and worker goroutines: making one per
// request is garbage on the hot path).
type searcherPool struct {
	mu   sync.Mutex
	ix   *enroll.Index
	free []*enroll.Searcher
}

// maxFreeSearchers bounds the Searchers kept.
const maxFreeSearchers = 32

func (p *searcherPool) get(ix *enroll.Index) *enroll.Searcher {
	p.mu.Lock()
	if p.ix == ix && len(p.free) > 0 {
		sr := p.free[len(p.free)-1]
		p.free = p.free[:len(p.free)-1]
		p.mu.Unlock()
		return sr
	}
	p.mu.Unlock()
	return ix.NewSearcher()
}

func (p *searcherPool) put(ix *enroll.Index, sr *enroll.Searcher) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ix != nil && p.ix != ix && ix.Version() < p.ix.Version() {
		sr.Close() // an older index's
		return
	}
	if p.ix != ix {
		// A newer index (or the first): the old one's Searchers go.
		for _, old := range p.free {
			old.Close()
		}
		p.free = p.free[:0]
		p.ix = ix
	}
	if len(p.free) < maxFreeSearchers {
		p.free = append(p.free, sr)
		return
	}
	sr.Close()
}
