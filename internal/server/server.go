// Package server is facever's HTTP API: verification, enrollment and
// identification over JSON, with API keys, limits, an access log, metrics
// and graceful shutdown. `facever serve` runs it; openapi.json documents it.
//
// The server runs on a Recognizer (the models) and an enroll.Gallery. It
// bounds each request's work and memory: photos and faces per request,
// pixels (checked from the image header before anything is decoded), a
// memory budget for decoded images shared by all requests, a bound on
// requests that carry photos at once, metadata size and page size; it cuts
// a request's faces into backbone batches so that other requests run in
// between; and it stops a request's work when the client goes away or the
// request's time is up, committing nothing.
package server

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"

	facever "github.com/facever/facever"
	"github.com/facever/facever/align"
	"github.com/facever/facever/enroll"
	"github.com/facever/facever/facehead"
	"github.com/facever/facever/internal/fanout"
	"github.com/facever/facever/verify"
)

// OpenAPI is the API's OpenAPI 3 document, served at /openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

var errShuttingDown = errors.New("server is shutting down")

// Defaults of the limits in Config.
const (
	DefaultMaxBodyBytes     = 16 << 20
	DefaultMaxPixels        = 40_000_000
	DefaultMaxPhotos        = 32
	DefaultMaxFaces         = 256
	DefaultMaxMetadataBytes = 4 << 10
	DefaultMaxMetadataKeys  = 64
	DefaultDecodeBudget     = 512 << 20
	DefaultMaxConcurrent    = 16
	DefaultPageSize         = 100
	DefaultMaxPageSize      = enroll.MaxPage
	// DefaultMaxBatch is one face per backbone run. Measured with
	// BenchmarkThroughput on the CPU runtimes: a run of several faces costs
	// more per face than single runs (the engine's fr_feature: 7.6 against
	// 6.7 ms of CPU a face at 16), and a batch of a new size recompiles the
	// pure-Go engine's plan (it keeps one per model), so the batches of
	// varying size that concurrent requests make doubled the backbone's
	// time per face (70 against 35 ms under load) and held the server at
	// about 60 % of the library's throughput at 8 clients. Larger batches
	// are for a runtime that gains from them.
	DefaultMaxBatch = 1
)

// Config configures a Server. Zero limits take the Default* values.
type Config struct {
	// Recognizer runs the models. Nil: New opens them with facever.Open
	// and Models, and Close releases them.
	Recognizer Recognizer
	// Models selects models, runtime, head and workers (when Recognizer is
	// nil).
	Models facever.Options
	// Gallery is the open gallery (its API keys guard the API).
	Gallery enroll.Store
	// Threshold is the default verification threshold (0: the model's).
	Threshold float64
	// IdentifyThreshold is the default identification threshold (0: the
	// model's 1:N threshold, higher than its 1:1 one).
	IdentifyThreshold float64
	// MinThreshold is the lowest threshold a client may ask for (400
	// threshold_too_low below it). Zero means 0: a negative threshold, which
	// accepts nearly any face, is refused; set -1 to allow every threshold.
	MinThreshold float64
	// MinFace is the enroll policy's smallest face, the shorter side of its
	// box in pixels (0: facever.DefaultMinFace, the CLI's; negative: none).
	MinFace int
	// MaxBodyBytes bounds a request body (413 too_large above it).
	MaxBodyBytes int64
	// MaxPixels bounds an uploaded image's width×height, read from the
	// image's header before it is decoded (413 too_large above it).
	MaxPixels int
	// MaxPhotos bounds the photos of one request (413 too_many_photos).
	MaxPhotos int
	// MaxFaces bounds the faces the detector may report over one request's
	// photos (422 too_many_faces).
	MaxFaces int
	// MaxMetadataBytes bounds an identity's metadata, keys and values
	// together; MaxMetadataKeys its number of keys (413
	// metadata_too_large).
	MaxMetadataBytes int
	// MaxMetadataKeys bounds the number of metadata keys.
	MaxMetadataKeys int
	// DecodeBudget is the memory, in bytes, that decoded images of all
	// requests together may hold, with the detector's copies (9.75 bytes
	// per pixel plus 1 MiB each: a 40-megapixel photo counts 373 MiB); a
	// photo waits for its share before it is decoded.
	DecodeBudget int64
	// MaxConcurrent bounds the requests that carry a body (verify, enroll,
	// identify, create) being read and worked on at once; others wait for a
	// turn. With MaxBodyBytes it bounds the memory bodies hold.
	MaxConcurrent int
	// Detectors is how many photos are in the recognizer's detector at
	// once (default: Models.Workers, else the number of CPUs); photos of
	// verify and identify are let in before those of enrolls.
	Detectors int
	// PageSize is the default and MaxPageSize the largest page of a list.
	PageSize int
	// MaxPageSize is the largest page a client may ask for.
	MaxPageSize int
	// RequestTimeout, when positive, ends a request's work after this long
	// (503 timeout; an enroll cut short commits nothing). Set it below the
	// HTTP server's write timeout so that a client always gets an answer.
	RequestTimeout time.Duration
	// BatchWindow is how long a face waits for others to share a backbone
	// run (with MaxBatch above 1).
	BatchWindow time.Duration
	// MaxBatch is the most faces of one backbone run (default
	// DefaultMaxBatch; at most facehead.MaxBatch). Requests of a face or
	// two still go ahead of the chunks of large enrolls.
	MaxBatch int
	// NoCrops enrolls faces without their aligned crops: by default each
	// template keeps the 112×112 face it was made from as a JPEG of 3–6
	// KiB (GET /v1/identities/{id}/faces/{face_id}/crop, the web page's
	// person screen); with NoCrops the gallery holds no face images.
	NoCrops bool
	// NoAuth disables API keys (tests, trusted loopback use only).
	NoAuth bool
	// AccessLog, when not nil, receives one JSON line per request
	// (AccessEntry).
	AccessLog io.Writer
	// Shard is the part of the gallery this node's index holds (the
	// Gallery must be opened with the same enroll.Options.Shard; the zero
	// Shard: all of it).
	Shard enroll.Shard
	// Shards, when set, makes identify search every shard of the gallery
	// through POST /v1/shard/search: the base URL of one node per shard, in
	// shard order, "self" (or any URL) at this node's own shard, which is
	// searched in process. Required when Shard splits the gallery.
	Shards []string
	// ShardTimeout bounds each shard's answer (0: fanout.DefaultTimeout).
	ShardTimeout time.Duration
}

// Server serves the API. Create it with New; it is an http.Handler.
type Server struct {
	cfg     Config
	mux     *http.ServeMux
	rec     Recognizer
	owned   *facever.Recognizer
	batch   *batcher // MaxBatch above 1
	inline  *inline  // MaxBatch 1: the backbone on the request's goroutine
	metrics *metrics
	decode  *budget
	// detectors admits photos to the recognizer's detector, verify and
	// identify first.
	detectors *budget
	slots     chan struct{}
	log       *accessLog
	model     string
	fan       *fanout.Client // nil: the index is whole, searched here
	searchers searcherPool
	keys      keyCache // API keys accepted lately (see checkKey)
	// patterns are the mux's patterns in the order registered (the
	// OpenAPI test checks each against openapi.json).
	patterns []string
}

// New returns a server, loading the models unless cfg.Recognizer is set.
func New(cfg Config) (*Server, error) {
	if cfg.Gallery == nil {
		return nil, errors.New("server: no gallery")
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.DecodeBudget <= 0 {
		cfg.DecodeBudget = DefaultDecodeBudget
	}
	def(&cfg.MaxPixels, DefaultMaxPixels)
	def(&cfg.MaxPhotos, DefaultMaxPhotos)
	def(&cfg.MaxFaces, DefaultMaxFaces)
	def(&cfg.MaxMetadataBytes, DefaultMaxMetadataBytes)
	def(&cfg.MaxMetadataKeys, DefaultMaxMetadataKeys)
	def(&cfg.MaxConcurrent, DefaultMaxConcurrent)
	def(&cfg.Detectors, cfg.Models.Workers)
	def(&cfg.Detectors, runtime.NumCPU())
	def(&cfg.MaxPageSize, DefaultMaxPageSize)
	def(&cfg.MaxBatch, DefaultMaxBatch)
	cfg.MaxBatch = min(cfg.MaxBatch, facehead.MaxBatch)
	cfg.MaxPageSize = min(cfg.MaxPageSize, enroll.MaxPage)
	def(&cfg.PageSize, min(DefaultPageSize, cfg.MaxPageSize))
	if cfg.BatchWindow <= 0 {
		cfg.BatchWindow = 2 * time.Millisecond
	}
	if math.IsNaN(cfg.MinThreshold) || math.IsInf(cfg.MinThreshold, 0) || math.IsNaN(cfg.Threshold) || math.IsInf(cfg.Threshold, 0) {
		return nil, errors.New("server: thresholds must be finite numbers")
	}
	if cost := imageCost(cfg.MaxPixels); cost > cfg.DecodeBudget-min(cfg.DecodeBudget/8, 64<<20) {
		return nil, fmt.Errorf("server: the decode budget (%d MiB, of which %d MiB are kept for verify and identify) cannot hold one image of the pixel limit (%d pixels need %d MiB)", cfg.DecodeBudget>>20, min(cfg.DecodeBudget/8, 64<<20)>>20, cfg.MaxPixels, cost>>20)
	}
	// One detector and an eighth of the decode budget (at most 64 MiB) are
	// kept for urgent photos when there is room for it.
	detectReserve := int64(0)
	if cfg.Detectors >= 2 {
		detectReserve = 1
	}
	decodeReserve := min(cfg.DecodeBudget/8, 64<<20)
	s := &Server{cfg: cfg, mux: http.NewServeMux(), metrics: newMetrics(),
		decode: newBudget(cfg.DecodeBudget, decodeReserve), detectors: newBudget(int64(cfg.Detectors), detectReserve),
		slots: make(chan struct{}, cfg.MaxConcurrent)}
	if cfg.AccessLog != nil {
		s.log = &accessLog{w: cfg.AccessLog}
	}
	if err := s.setupShards(); err != nil {
		return nil, err
	}
	s.rec = cfg.Recognizer
	if s.rec == nil {
		r, err := facever.Open(cfg.Models)
		if err != nil {
			return nil, err
		}
		s.rec, s.owned = r, r
	}
	s.model = s.rec.Model()
	if cfg.Threshold == 0 {
		s.cfg.Threshold = s.rec.Threshold()
	}
	if cfg.IdentifyThreshold == 0 {
		s.cfg.IdentifyThreshold = s.rec.IdentifyThreshold()
	}
	if s.cfg.Threshold < s.cfg.MinThreshold {
		s.Close()
		return nil, fmt.Errorf("server: the default threshold %.3f is below the minimum threshold %.3f", s.cfg.Threshold, s.cfg.MinThreshold)
	}
	observe := func(d time.Duration, n int) { s.metrics.model("backbone", d, n) }
	if cfg.MaxBatch > 1 {
		s.batch = newBatcher(s.rec.EmbedChips, cfg.MaxBatch, cfg.BatchWindow, observe)
	} else {
		s.inline = newInline(s.rec.EmbedChips, s.detectors, observe)
	}
	s.routes()
	return s, nil
}

// Close stops the backbone's runs (those running finish first) and
// releases the models New loaded (after http.Server.Shutdown).
func (s *Server) Close() {
	if s.batch != nil {
		s.batch.close()
		s.batch = nil
	}
	if s.inline != nil {
		s.inline.close()
	}
	if s.owned != nil {
		s.owned.Close()
		s.owned = nil
	}
	if s.fan != nil {
		s.fan.Close()
	}
}

// route says how a route is served.
type route struct {
	pattern, name string
	// auth: needs an API key; heavy: takes one of MaxConcurrent slots.
	auth, heavy bool
	// scope is what the key must allow (enroll.Scope*; "": any key).
	scope string
	// maxBody overrides MaxBodyBytes when smaller (0: MaxBodyBytes).
	maxBody int64
}

func (s *Server) routes() {
	s.handle(route{pattern: "GET /healthz", name: "/healthz"}, s.healthz)
	s.handle(route{pattern: "GET /openapi.json", name: "/openapi.json"}, func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "application/json")
		_, err := w.Write(OpenAPI)
		return err
	})
	s.handle(route{pattern: "GET /metrics", name: "/metrics", auth: true}, s.serveMetrics)
	metaBody := int64(2*s.cfg.MaxMetadataBytes + 16<<10)
	s.handle(route{pattern: "POST /v1/verify", name: "/v1/verify", auth: true, scope: enroll.ScopeRecognize, heavy: true}, s.verify)
	s.handle(route{pattern: "POST /v1/identities", name: "/v1/identities", auth: true, scope: enroll.ScopeEnroll, heavy: true, maxBody: metaBody}, s.createIdentity)
	s.handle(route{pattern: "GET /v1/identities", name: "/v1/identities", auth: true, scope: enroll.ScopeEnroll}, s.listIdentities)
	s.handle(route{pattern: "GET /v1/identities/{id}", name: "/v1/identities/{id}", auth: true, scope: enroll.ScopeEnroll}, s.getIdentity)
	s.handle(route{pattern: "DELETE /v1/identities/{id}", name: "/v1/identities/{id}", auth: true, scope: enroll.ScopeAdmin}, s.deleteIdentity)
	s.handle(route{pattern: "PATCH /v1/identities/{id}", name: "/v1/identities/{id}", auth: true, scope: enroll.ScopeAdmin, maxBody: metaBody}, s.patchIdentity)
	s.handle(route{pattern: "POST /v1/identities/{id}/faces", name: "/v1/identities/{id}/faces", auth: true, scope: enroll.ScopeEnroll, heavy: true}, s.addFaces)
	s.handle(route{pattern: "GET /v1/identities/{id}/faces", name: "/v1/identities/{id}/faces", auth: true, scope: enroll.ScopeEnroll}, s.listFaces)
	s.handle(route{pattern: "DELETE /v1/identities/{id}/faces/{face_id}", name: "/v1/identities/{id}/faces/{face_id}", auth: true, scope: enroll.ScopeAdmin}, s.deleteFace)
	s.handle(route{pattern: "GET /v1/identities/{id}/faces/{face_id}/crop", name: "/v1/identities/{id}/faces/{face_id}/crop", auth: true, scope: enroll.ScopeEnroll}, s.faceCrop)
	s.handle(route{pattern: "POST /v1/identities/{id}/verify", name: "/v1/identities/{id}/verify", auth: true, scope: enroll.ScopeRecognize, heavy: true}, s.verifyIdentity)
	s.handle(route{pattern: "POST /v1/identify", name: "/v1/identify", auth: true, scope: enroll.ScopeRecognize, heavy: true}, s.identify)
	s.handle(route{pattern: "POST /v1/detect", name: "/v1/detect", auth: true, scope: enroll.ScopeRecognize, heavy: true}, s.detectPhoto)
	s.shardRoutes()
	s.handle(route{pattern: "POST /v1/embed", name: "/v1/embed", auth: true, scope: enroll.ScopeRecognize, heavy: true}, s.embedPhoto)
	keyBody := int64(16 << 10)
	s.handle(route{pattern: "POST /v1/keys", name: "/v1/keys", auth: true, scope: enroll.ScopeAdmin, maxBody: keyBody}, s.createKey)
	s.handle(route{pattern: "GET /v1/keys", name: "/v1/keys", auth: true, scope: enroll.ScopeAdmin}, s.listKeys)
	s.handle(route{pattern: "DELETE /v1/keys/{id}", name: "/v1/keys/{id}", auth: true, scope: enroll.ScopeAdmin}, s.deleteKey)
	s.handle(route{pattern: "GET /v1/backup", name: "/v1/backup", auth: true, scope: enroll.ScopeAdmin}, s.backup)
	web := loadWeb()
	s.register("GET /{$}", serveWeb(web, "index.html"))
	s.register("GET /web/{file}", serveWeb(web, ""))
	docs := loadDocs()
	s.register("GET /docs", serveWeb(docs, "index.html"))
	s.register("GET /docs/{file}", serveWeb(docs, ""))
	s.register("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{http.StatusNotFound, "not_found", fmt.Sprintf("no endpoint %s %s; see /docs or /openapi.json", r.Method, r.URL.Path)})
	})
}

// register adds a pattern to the mux; every route goes through it, so that
// s.patterns lists them all.
func (s *Server) register(pattern string, h http.HandlerFunc) {
	s.patterns = append(s.patterns, pattern)
	s.mux.HandleFunc(pattern, h)
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// MetricsHandler serves /metrics without a key, for a listener of its own
// (`facever serve --metrics-addr`) that only the monitoring can reach.
func (s *Server) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			writeError(w, &apiError{http.StatusNotFound, "not_found", "this listener serves /metrics only"})
			return
		}
		_ = s.serveMetrics(w, r)
	})
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	s.metrics.write(w, s.decode.inUse(), len(s.slots))
	return nil
}

// apiError is an error with its HTTP status and a stable code.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.message }

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(c int) { w.code = c; w.ResponseWriter.WriteHeader(c) }

func (s *Server) handle(rt route, fn func(http.ResponseWriter, *http.Request) error) {
	s.register(rt.pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		e := &AccessEntry{Time: start.UTC(), Method: r.Method, Route: rt.name, Remote: r.RemoteAddr}
		ctx := context.WithValue(r.Context(), entryKey{}, e)
		if s.cfg.RequestTimeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, s.cfg.RequestTimeout)
			defer cancel()
		}
		r = r.WithContext(ctx)
		defer func() {
			d := time.Since(start)
			e.Status = sw.code
			if e.Code == "cancelled" {
				e.Status = 499 // the client went away; what was written did not reach it
			}
			e.LatencyMS = float64(d.Microseconds()) / 1000
			s.metrics.request(r.Method, rt.name, sw.code, d)
			s.log.write(e)
		}()
		fail := func(err error) { e.Code = writeError(sw, err) }
		if rt.auth && !s.cfg.NoAuth {
			k, err := s.authorize(r)
			if err != nil {
				fail(err)
				return
			}
			e.Key, e.KeyName = k.Prefix, k.Name
			if rt.scope != "" && !k.Allows(rt.scope) {
				fail(forbidden(k, rt.scope))
				return
			}
		}
		if rt.writes() {
			if err := s.refuseStale(); err != nil {
				fail(err)
				return
			}
		}
		if rt.heavy {
			select {
			case s.slots <- struct{}{}:
				defer func() { <-s.slots }()
			case <-ctx.Done():
				fail(ctx.Err())
				return
			}
		}
		limit := s.cfg.MaxBodyBytes
		if rt.maxBody > 0 && rt.maxBody < limit {
			limit = rt.maxBody
		}
		r.Body = http.MaxBytesReader(sw, r.Body, limit)
		if err := fn(sw, r); err != nil {
			fail(err)
		}
	})
}

func (s *Server) authorize(r *http.Request) (enroll.APIKey, error) {
	key := r.Header.Get("X-API-Key")
	if a := r.Header.Get("Authorization"); key == "" && strings.HasPrefix(a, "Bearer ") {
		key = strings.TrimPrefix(a, "Bearer ")
	}
	if key == "" {
		return enroll.APIKey{}, &apiError{http.StatusUnauthorized, "unauthorized", "missing API key: send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY' (make one with `facever apikey create`)"}
	}
	k, err := s.checkKey(key)
	if errors.Is(err, enroll.ErrBadKey) {
		return enroll.APIKey{}, &apiError{http.StatusUnauthorized, "unauthorized", "unknown API key"}
	}
	if err != nil {
		// The gallery could not be asked (a database out of reach): the
		// key may be good, so 503 (retry), not 401 (give up).
		return enroll.APIKey{}, &apiError{http.StatusServiceUnavailable, "unavailable", fmt.Sprintf("cannot check the API key now: %v", err)}
	}
	return k, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// asAPIError maps an error to its status and stable code.
func asAPIError(err error) *apiError {
	var ae *apiError
	var mb *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &mb):
		return &apiError{http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body over the %d-byte limit of this endpoint", mb.Limit)}
	case errors.Is(err, align.ErrTooLarge):
		return &apiError{http.StatusRequestEntityTooLarge, "too_large", err.Error()}
	case errors.Is(err, align.ErrUnsupported):
		// A format facever recognises but does not decode (HEIC, AVIF,
		// animated WebP, BigTIFF): the CLI's code, with how to convert it.
		return &apiError{http.StatusUnprocessableEntity, facever.CodeUnsupportedFormat, err.Error()}
	case errors.Is(err, align.ErrNotImage), errors.Is(err, align.ErrTooSmall):
		return &apiError{http.StatusUnprocessableEntity, facever.CodeNotImage, err.Error()}
	case errors.Is(err, align.ErrNoFace):
		return &apiError{http.StatusUnprocessableEntity, "no_face", err.Error()}
	case errors.Is(err, align.ErrMultipleFaces):
		return &apiError{http.StatusUnprocessableEntity, "multiple_faces", err.Error()}
	case errors.Is(err, facever.ErrFaceTooSmall):
		return &apiError{http.StatusUnprocessableEntity, "face_too_small", err.Error()}
	case errors.Is(err, align.ErrDegenerate):
		return &apiError{http.StatusUnprocessableEntity, facever.CodeBadLandmarks, err.Error()}
	case errors.Is(err, enroll.ErrNotFound), errors.Is(err, enroll.ErrTemplateNotFound):
		return &apiError{http.StatusNotFound, "not_found", err.Error()}
	case errors.Is(err, enroll.ErrExists):
		return &apiError{http.StatusConflict, "exists", err.Error()}
	case errors.Is(err, enroll.ErrTooLarge):
		return &apiError{http.StatusRequestEntityTooLarge, "metadata_too_large", err.Error()}
	case errors.Is(err, enroll.ErrCorrupt):
		return &apiError{http.StatusInternalServerError, "gallery_damaged", err.Error() + " (the operator should run `facever gallery check`)"}
	case errors.Is(err, enroll.ErrInvalid):
		return &apiError{http.StatusBadRequest, "bad_request", err.Error()}
	case errors.Is(err, errShuttingDown):
		return &apiError{http.StatusServiceUnavailable, "unavailable", err.Error()}
	case errors.Is(err, context.DeadlineExceeded):
		return &apiError{http.StatusServiceUnavailable, "timeout", "the request ran out of time; nothing was changed"}
	case errors.Is(err, context.Canceled):
		return &apiError{http.StatusServiceUnavailable, "cancelled", "the request was cancelled; nothing was changed"}
	default:
		return &apiError{http.StatusInternalServerError, "internal", err.Error()}
	}
}

// writeError writes {"error":{code,message}} and returns the code.
func writeError(w http.ResponseWriter, err error) string {
	ae := asAPIError(err)
	_ = writeJSON(w, ae.status, map[string]any{"error": map[string]string{"code": ae.code, "message": ae.message}})
	return ae.code
}

func badRequest(format string, args ...any) error {
	return &apiError{http.StatusBadRequest, "bad_request", fmt.Sprintf(format, args...)}
}

// faceJSON is a face as the API answers it: the CLI's --json vocabulary
// (box, score, landmarks, rotation, roll, quality with its parts).
func faceJSON(f align.Face) map[string]any {
	lm := make([][2]float64, 5)
	for i, p := range f.Landmarks {
		lm[i] = [2]float64{p.X, p.Y}
	}
	return map[string]any{"box": f.Box, "score": f.Score, "landmarks": lm,
		"rotation": f.Rotation, "roll": math.Round(f.Roll*100) / 100, "quality": f.Quality.Rounded()}
}

type photoJSON struct {
	Faces int            `json:"face_count"`
	Face  map[string]any `json:"face,omitempty"`
	Scale float64        `json:"scale"`
	// Crop is the aligned face the backbone saw, a data: URL of a PNG
	// (with ?crops=1 only).
	Crop string `json:"crop,omitempty"`
}

func (s *Server) verify(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	q, err := parse(r, fields{images: []string{"image_a", "image_b"}, values: []string{"threshold"}}, 2)
	if err != nil {
		return err
	}
	thr, err := s.threshold(q)
	if err != nil {
		return err
	}
	crops, err := queryBool(r, "crops")
	if err != nil {
		return err
	}
	fc := faceCounter{max: s.cfg.MaxFaces}
	var fs [2]*face
	for i, name := range []string{"image_a", "image_b"} {
		data, err := q.image(name)
		if err != nil {
			return err
		}
		if fs[i], err = s.detect(ctx, data, nil); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		q.images[name] = nil
		if err := fc.add(len(fs[i].faces)); err != nil {
			return err
		}
	}
	embs, err := s.embed(ctx, []align.Chip{fs[0].chip, fs[1].chip})
	if err != nil {
		return err
	}
	d := verify.Decide(embs[0], embs[1], thr)
	out := struct {
		verify.Decision
		Photos [2]photoJSON `json:"photos"`
		Model  string       `json:"model"`
	}{Decision: d, Model: s.model}
	for i, f := range fs {
		out.Photos[i] = photoJSON{Faces: len(f.faces), Face: faceJSON(f.faces[0]), Scale: f.scale}
		if crops {
			out.Photos[i].Crop = chipPNG(f.chip)
		}
	}
	return writeJSON(w, http.StatusOK, out)
}

// checkMetadata enforces the metadata limits.
func (s *Server) checkMetadata(md map[string]string) error {
	if len(md) > s.cfg.MaxMetadataKeys {
		return &apiError{http.StatusRequestEntityTooLarge, "metadata_too_large", fmt.Sprintf("metadata has %d keys; this server keeps at most %d", len(md), s.cfg.MaxMetadataKeys)}
	}
	n := 0
	for k, v := range md {
		n += len(k) + len(v)
	}
	if n > s.cfg.MaxMetadataBytes {
		return &apiError{http.StatusRequestEntityTooLarge, "metadata_too_large", fmt.Sprintf("metadata holds %d bytes of keys and values; this server keeps at most %d", n, s.cfg.MaxMetadataBytes)}
	}
	return nil
}

func (s *Server) createIdentity(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Name     string            `json:"name"`
		Metadata map[string]string `json:"metadata"`
	}
	data, err := readBody(r)
	if err != nil {
		return err
	}
	if err := decodeStrict(data, &body); err != nil {
		return badRequest("%v; send {\"name\": ..., \"metadata\": {...}}", err)
	}
	if body.Name == "" {
		return badRequest("name is required")
	}
	if err := s.checkMetadata(body.Metadata); err != nil {
		return err
	}
	if err := r.Context().Err(); err != nil {
		return err
	}
	it, err := s.cfg.Gallery.AddIdentity(body.Name, body.Metadata)
	if err != nil {
		return err
	}
	touched(r.Context(), it.ID)
	return writeJSON(w, http.StatusCreated, it)
}

// streamList writes {"<key>": [items...], <tail>} one item at a time, so
// that a page costs one item of buffer however slowly the client reads.
// tail holds next_cursor (and next_after) when more follow.
func streamList[T any](w http.ResponseWriter, key string, items []T, tail map[string]any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprintf(w, "{%q:[", key); err != nil {
		return nil // the client went away; the status is already sent
	}
	for i, it := range items {
		b, err := json.Marshal(it)
		if err != nil {
			return nil
		}
		if i > 0 {
			b = append([]byte{','}, b...)
		}
		if _, err := w.Write(b); err != nil {
			return nil
		}
	}
	if _, err := io.WriteString(w, "]"); err != nil {
		return nil
	}
	for _, k := range []string{"next_cursor", "next_after"} {
		if v, ok := tail[k]; ok {
			b, _ := json.Marshal(v)
			if _, err := fmt.Fprintf(w, ",%q:%s", k, b); err != nil {
				return nil
			}
		}
	}
	_, _ = io.WriteString(w, "}\n")
	return nil
}

// listIdentities pages through identities by id, or with ?prefix= through
// those whose names start with it, by name.
func (s *Server) listIdentities(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if q.Has("prefix") {
		limit, err := s.limitOf(r)
		if err != nil {
			return err
		}
		if q.Get("after") != "" {
			return badRequest("a prefix search pages with cursor, not after")
		}
		after := ""
		if c := q.Get("cursor"); c != "" {
			if after, err = decodeCursor(c, 'n'); err != nil {
				return err
			}
		}
		prefix := q.Get("prefix")
		if len(prefix) > enroll.MaxName {
			return badRequest("prefix is %d bytes; names have at most %d", len(prefix), enroll.MaxName)
		}
		ids, next, err := s.cfg.Gallery.ListPrefix(prefix, after, limit)
		if err != nil {
			return err
		}
		for _, it := range ids {
			touched(r.Context(), it.ID)
		}
		tail := map[string]any{}
		if next != "" {
			tail["next_cursor"] = encodeCursor('n', next)
		}
		return streamList(w, "identities", ids, tail)
	}
	after, limit, err := s.idPage(r, 'i')
	if err != nil {
		return err
	}
	ids, next, err := s.cfg.Gallery.ListPage(after, limit)
	if err != nil {
		return err
	}
	for _, it := range ids {
		touched(r.Context(), it.ID)
	}
	tail := map[string]any{}
	if next != 0 {
		tail["next_cursor"] = idCursor('i', next)
		tail["next_after"] = next
	}
	return streamList(w, "identities", ids, tail)
}

func (s *Server) identityOf(r *http.Request) (enroll.Identity, error) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		return enroll.Identity{}, badRequest("identity id %q is not a number", r.PathValue("id"))
	}
	touched(r.Context(), id)
	return s.cfg.Gallery.Get(id)
}

func (s *Server) getIdentity(w http.ResponseWriter, r *http.Request) error {
	after, limit, err := s.idPage(r, 't')
	if err != nil {
		return err
	}
	it, err := s.identityOf(r)
	if err != nil {
		return err
	}
	ts, err := s.cfg.Gallery.Templates(it.ID)
	if err != nil {
		return err
	}
	page := make([]enroll.Template, 0, min(limit, len(ts)))
	more := false
	for _, t := range ts {
		if t.ID <= after {
			continue
		}
		if len(page) == limit {
			more = true
			break
		}
		page = append(page, t)
	}
	out := map[string]any{"identity": it, "templates": page}
	if more {
		out["next_after"] = page[len(page)-1].ID
		out["next_cursor"] = idCursor('t', page[len(page)-1].ID)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) deleteIdentity(w http.ResponseWriter, r *http.Request) error {
	it, err := s.identityOf(r)
	if err != nil {
		return err
	}
	if err := r.Context().Err(); err != nil {
		return err
	}
	if err := s.cfg.Gallery.Remove(it.ID); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"removed": it})
}

// photoError is why one photo of several was not used: the shape of the
// whole-request error's "error" member, so clients read both alike.
type photoError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type faceOutcome struct {
	Index    int            `json:"index"`
	Enrolled bool           `json:"enrolled"`
	Error    *photoError    `json:"error,omitempty"`
	Faces    int            `json:"face_count"`
	Face     map[string]any `json:"face,omitempty"`
	Template uint64         `json:"template_id,omitempty"`
}

func (s *Server) addFaces(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	it, err := s.identityOf(r)
	if err != nil {
		return err
	}
	q, err := parse(r, fields{images: []string{"images", "image"}, values: []string{"largest"}}, s.cfg.MaxPhotos)
	if err != nil {
		return err
	}
	var all [][]byte
	for _, f := range []string{"images", "image"} {
		all = append(all, q.images[f]...)
	}
	q.images = nil
	if len(all) == 0 {
		return badRequest("no image: send files in multipart field \"images\", or base64 strings in JSON field \"images\"")
	}
	largest, err := q.bool("largest")
	if err != nil {
		return err
	}
	// Idempotency-Key: a retried request gets the first answer and enrolls
	// nothing more (the key is kept with the enroll, in the gallery).
	onceKey, digest := r.Header.Get("Idempotency-Key"), ""
	if onceKey != "" {
		digest = enrollDigest(it.ID, all, largest)
		rec, ok, err := s.cfg.Gallery.LookupOnce(onceKey)
		if err != nil {
			return onceError(err)
		}
		if ok && rec.Digest != digest {
			return onceError(fmt.Errorf("%w (key %q)", enroll.ErrOnceMismatch, onceKey))
		}
		if ok {
			return replay(w, rec)
		}
	}
	fc := faceCounter{max: s.cfg.MaxFaces}
	outcomes := make([]faceOutcome, len(all))
	var chips []align.Chip
	var idx []int
	for i, data := range all {
		outcomes[i].Index = i
		f, err := s.detect(ctx, data, &facever.EnrollPolicy{Largest: largest, MinFace: s.cfg.MinFace})
		all[i] = nil
		if err != nil {
			if errors.Is(err, errShuttingDown) || ctx.Err() != nil {
				return err
			}
			outcomes[i].Error = &photoError{Code: asAPIError(err).code, Message: err.Error()}
			continue
		}
		if err := fc.add(len(f.faces)); err != nil {
			return err
		}
		outcomes[i].Faces = len(f.faces)
		outcomes[i].Face = faceJSON(f.chosen)
		chips = append(chips, f.chip)
		idx = append(idx, i)
	}
	if len(chips) > 0 {
		embs, err := s.embed(ctx, chips)
		if err != nil {
			return err
		}
		ts := make([]enroll.Template, len(embs))
		for i, e := range embs {
			ts[i] = enroll.Template{Embedding: e, Source: fmt.Sprintf("upload %d", idx[i]), Crop: s.cropOf(chips[i])}
		}
		// The last point of return: a client that went away (or a request
		// out of time) commits nothing.
		if err := ctx.Err(); err != nil {
			return err
		}
		if onceKey != "" {
			rec, replayed, err := s.cfg.Gallery.AddTemplatesOnce(it.ID, ts, onceKey, digest, func(nit enroll.Identity, saved []enroll.Template) (int, []byte, error) {
				for i, t := range saved {
					outcomes[idx[i]].Enrolled = true
					outcomes[idx[i]].Template = t.ID
				}
				b, err := json.Marshal(map[string]any{"identity": nit, "photos": outcomes, "enrolled": len(saved)})
				return http.StatusOK, append(b, '\n'), err
			})
			if err != nil {
				return onceError(err)
			}
			if !replayed {
				entryOf(ctx).Faces = len(ts)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(rec.Status)
				_, err = w.Write(rec.Body)
				return err
			}
			return replay(w, rec)
		}
		saved, err := s.cfg.Gallery.AddTemplates(it.ID, ts)
		if err != nil {
			return err
		}
		entryOf(ctx).Faces = len(saved)
		for i, t := range saved {
			outcomes[idx[i]].Enrolled = true
			outcomes[idx[i]].Template = t.ID
		}
		if it, err = s.cfg.Gallery.Get(it.ID); err != nil {
			return err
		}
	}
	status := http.StatusOK
	if len(chips) == 0 {
		status = http.StatusUnprocessableEntity
	}
	return writeJSON(w, status, map[string]any{"identity": it, "photos": outcomes, "enrolled": len(chips)})
}

func (s *Server) identify(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	q, err := parse(r, fields{images: []string{"image"}, values: []string{"threshold", "top", "all_faces", "partial"}}, 1)
	if err != nil {
		return err
	}
	allFaces, err := q.bool("all_faces")
	if err != nil {
		return err
	}
	partial, err := q.bool("partial")
	if err != nil {
		return err
	}
	thr, err := s.thresholdOr(q, s.cfg.IdentifyThreshold)
	if err != nil {
		return err
	}
	topf, err := q.float("top", 1)
	if err != nil {
		return err
	}
	if topf < 1 || topf > 100 || topf != math.Trunc(topf) {
		return badRequest("top must be a whole number between 1 and 100")
	}
	top := int(topf)
	data, err := q.image("image")
	if err != nil {
		return err
	}
	var f *face
	if allFaces {
		f, err = s.detectAll(ctx, data)
	} else {
		f, err = s.detect(ctx, data, nil)
	}
	if err != nil {
		return err
	}
	fc := faceCounter{max: s.cfg.MaxFaces}
	if err := fc.add(len(f.faces)); err != nil {
		return err
	}
	chips := []align.Chip{f.chip}
	if allFaces {
		chips = f.chips
	}
	embs, err := s.embed(ctx, chips)
	if err != nil {
		return err
	}
	// One pass over the index (every shard's, when it is split) for all
	// the faces.
	found, rep, err := s.search(ctx, r, embs, top, partial)
	if err != nil {
		return err
	}
	var each []map[string]any
	if allFaces {
		// Every face, largest first, with its own matches.
		each = make([]map[string]any, len(embs))
		for i := range embs {
			ms := found[i]
			fo := map[string]any{"face": faceJSON(f.faces[i]), "top": append([]enroll.Match{}, ms...), "match": nil, "unknown": true}
			if len(ms) > 0 && float64(ms[0].Score) >= thr {
				fo["match"], fo["unknown"] = ms[0], false
			}
			for _, m := range ms {
				touched(ctx, m.IdentityID)
			}
			each[i] = fo
		}
	}
	ms := found[0]
	for _, m := range ms {
		touched(ctx, m.IdentityID)
	}
	out := map[string]any{"threshold": thr, "face_count": len(f.faces), "face": faceJSON(f.faces[0]), "scale": f.scale, "top": append([]enroll.Match{}, ms...), "match": nil, "unknown": true}
	if len(ms) > 0 && float64(ms[0].Score) >= thr {
		out["match"] = ms[0]
		out["unknown"] = false
	}
	if allFaces {
		out["faces"] = each
	}
	rep.addTo(out)
	s.markStale(out)
	return writeJSON(w, http.StatusOK, out)
}
