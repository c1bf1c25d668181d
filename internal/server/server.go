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
	"bytes"
	"context"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"

	facever "github.com/facever/facever"
	"github.com/facever/facever/align"
	"github.com/facever/facever/enroll"
	"github.com/facever/facever/facehead"
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
	Gallery *enroll.Gallery
	// Threshold is the default verification and identification threshold
	// (0: the model's).
	Threshold float64
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
	// BatchWindow is how long a face waits for others to share a backbone run.
	BatchWindow time.Duration
	// NoAuth disables API keys (tests, trusted loopback use only).
	NoAuth bool
	// AccessLog, when not nil, receives one JSON line per request
	// (AccessEntry).
	AccessLog io.Writer
}

// Server serves the API. Create it with New; it is an http.Handler.
type Server struct {
	cfg     Config
	mux     *http.ServeMux
	rec     Recognizer
	owned   *facever.Recognizer
	batch   *batcher
	metrics *metrics
	decode  *budget
	// detectors admits photos to the recognizer's detector, verify and
	// identify first.
	detectors *budget
	slots     chan struct{}
	log       *accessLog
	model     string
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
	if s.cfg.Threshold < s.cfg.MinThreshold {
		s.Close()
		return nil, fmt.Errorf("server: the default threshold %.3f is below the minimum threshold %.3f", s.cfg.Threshold, s.cfg.MinThreshold)
	}
	s.batch = newBatcher(s.rec.EmbedChips, facehead.MaxBatch, cfg.BatchWindow, func(d time.Duration, n int) { s.metrics.model("backbone", d, n) })
	s.routes()
	return s, nil
}

// Close stops the batcher and releases the models New loaded (after
// http.Server.Shutdown).
func (s *Server) Close() {
	if s.batch != nil {
		s.batch.close()
		s.batch = nil
	}
	if s.owned != nil {
		s.owned.Close()
		s.owned = nil
	}
}

// route says how a route is served.
type route struct {
	pattern, name string
	// auth: needs an API key; heavy: takes one of MaxConcurrent slots.
	auth, heavy bool
	// maxBody overrides MaxBodyBytes when smaller (0: MaxBodyBytes).
	maxBody int64
}

func (s *Server) routes() {
	s.handle(route{pattern: "GET /healthz", name: "/healthz"}, func(w http.ResponseWriter, r *http.Request) error {
		return writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "model": s.model})
	})
	s.handle(route{pattern: "GET /openapi.json", name: "/openapi.json"}, func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "application/json")
		_, err := w.Write(OpenAPI)
		return err
	})
	s.handle(route{pattern: "GET /metrics", name: "/metrics", auth: true}, s.serveMetrics)
	metaBody := int64(2*s.cfg.MaxMetadataBytes + 16<<10)
	s.handle(route{pattern: "POST /v1/verify", name: "/v1/verify", auth: true, heavy: true}, s.verify)
	s.handle(route{pattern: "POST /v1/identities", name: "/v1/identities", auth: true, heavy: true, maxBody: metaBody}, s.createIdentity)
	s.handle(route{pattern: "GET /v1/identities", name: "/v1/identities", auth: true}, s.listIdentities)
	s.handle(route{pattern: "GET /v1/identities/{id}", name: "/v1/identities/{id}", auth: true}, s.getIdentity)
	s.handle(route{pattern: "DELETE /v1/identities/{id}", name: "/v1/identities/{id}", auth: true}, s.deleteIdentity)
	s.handle(route{pattern: "POST /v1/identities/{id}/faces", name: "/v1/identities/{id}/faces", auth: true, heavy: true}, s.addFaces)
	s.handle(route{pattern: "POST /v1/identify", name: "/v1/identify", auth: true, heavy: true}, s.identify)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{http.StatusNotFound, "not_found", fmt.Sprintf("no endpoint %s %s; see /openapi.json", r.Method, r.URL.Path)})
	})
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
	s.mux.HandleFunc(rt.pattern, func(w http.ResponseWriter, r *http.Request) {
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
	k, err := s.cfg.Gallery.CheckAPIKey(key)
	if err != nil {
		return enroll.APIKey{}, &apiError{http.StatusUnauthorized, "unauthorized", "unknown API key"}
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
	case errors.Is(err, align.ErrNotImage), errors.Is(err, align.ErrTooSmall):
		return &apiError{http.StatusUnprocessableEntity, "not_image", err.Error()}
	case errors.Is(err, align.ErrNoFace):
		return &apiError{http.StatusUnprocessableEntity, "no_face", err.Error()}
	case errors.Is(err, align.ErrMultipleFaces):
		return &apiError{http.StatusUnprocessableEntity, "multiple_faces", err.Error()}
	case errors.Is(err, facever.ErrFaceTooSmall):
		return &apiError{http.StatusUnprocessableEntity, "face_too_small", err.Error()}
	case errors.Is(err, enroll.ErrNotFound):
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

// request is a parsed request: images by field name, and the other fields.
type request struct {
	images map[string][][]byte
	fields map[string]json.RawMessage
	form   map[string]string
}

func (q *request) image(name string) ([]byte, error) {
	v := q.images[name]
	if len(v) == 0 {
		return nil, badRequest("missing image %q: send it as a multipart file field or as base64 in a JSON field", name)
	}
	if len(v) > 1 {
		return nil, badRequest("%q holds %d images; send one", name, len(v))
	}
	return v[0], nil
}

func (q *request) float(name string, def float64) (float64, error) {
	if raw, ok := q.fields[name]; ok {
		var f float64
		if err := json.Unmarshal(raw, &f); err != nil {
			return 0, badRequest("%s must be a number", name)
		}
		return f, nil
	}
	if v, ok := q.form[name]; ok && v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, badRequest("%s must be a finite number, not %q", name, v)
		}
		return f, nil
	}
	return def, nil
}

// threshold reads the client's threshold: a finite number in [-1, 1], not
// below the server's minimum.
func (s *Server) threshold(q *request) (float64, error) {
	thr, err := q.float("threshold", s.cfg.Threshold)
	if err != nil {
		return 0, err
	}
	if thr < -1 || thr > 1 {
		return 0, badRequest("threshold %g is not a cosine similarity (-1 to 1)", thr)
	}
	if thr < s.cfg.MinThreshold {
		return 0, &apiError{http.StatusBadRequest, "threshold_too_low", fmt.Sprintf("threshold %g is below this server's minimum %g (it would accept faces of other people)", thr, s.cfg.MinThreshold)}
	}
	return thr, nil
}

func (q *request) bool(name string) (bool, error) {
	if raw, ok := q.fields[name]; ok {
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return false, badRequest("%s must be true or false", name)
		}
		return b, nil
	}
	v, ok := q.form[name]
	if !ok || v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, badRequest("%s must be true or false, not %q", name, v)
	}
	return b, nil
}

// fields says what a request may hold: which fields are images and which
// are other values. Anything else is refused.
type fields struct {
	images []string
	values []string
}

func (f fields) has(list []string, name string) bool {
	for _, n := range list {
		if n == name {
			return true
		}
	}
	return false
}

func (f fields) unknown(name string) error {
	return badRequest("unknown field %q: this endpoint takes %s", name, strings.Join(append(append([]string{}, f.images...), f.values...), ", "))
}

// maxFormValue bounds a non-file multipart field (a number or a flag).
const maxFormValue = 1 << 10

func tooManyPhotos(n, max int) error {
	return &apiError{http.StatusRequestEntityTooLarge, "too_many_photos", fmt.Sprintf("%d or more photos in one request; this server takes at most %d (send the rest in further requests)", n, max)}
}

// parse reads a multipart or JSON body, at most maxPhotos images. In JSON,
// a string field holding an image is base64 (standard or URL alphabet; a
// data: URL prefix is allowed), and a list of strings is several images.
// The JSON body is one object and nothing after it; unknown fields are
// refused. A truncated or malformed body is 400; one over the size limit,
// 413.
func parse(r *http.Request, spec fields, maxPhotos int) (*request, error) {
	q := &request{images: map[string][][]byte{}, fields: map[string]json.RawMessage{}, form: map[string]string{}}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	photos := 0
	switch ct {
	case "multipart/form-data":
		mr, err := r.MultipartReader()
		if err != nil {
			return nil, badRequest("multipart body: %v", err)
		}
		for {
			part, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, bodyError("multipart body", err)
			}
			name := part.FormName()
			if part.FileName() != "" {
				if !spec.has(spec.images, name) {
					return nil, spec.unknown(name)
				}
				if photos++; photos > maxPhotos {
					return nil, tooManyPhotos(photos, maxPhotos)
				}
				data, err := io.ReadAll(part)
				if err != nil {
					return nil, bodyError(fmt.Sprintf("multipart file %q", name), err)
				}
				q.images[name] = append(q.images[name], data)
				continue
			}
			if !spec.has(spec.values, name) {
				return nil, spec.unknown(name)
			}
			if _, dup := q.form[name]; dup {
				return nil, badRequest("field %q given twice", name)
			}
			data, err := io.ReadAll(io.LimitReader(part, maxFormValue+1))
			if err != nil {
				return nil, bodyError(fmt.Sprintf("multipart field %q", name), err)
			}
			if len(data) > maxFormValue {
				return nil, badRequest("field %q is over %d bytes", name, maxFormValue)
			}
			q.form[name] = string(data)
		}
	case "application/json", "":
		body, err := readBody(r)
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(body)) == 0 {
			return q, nil
		}
		if err := decodeStrict(body, &q.fields); err != nil {
			return nil, err
		}
		body = nil
		for name := range q.fields {
			if !spec.has(spec.images, name) && !spec.has(spec.values, name) {
				return nil, spec.unknown(name)
			}
		}
		for _, f := range spec.images {
			raw, ok := q.fields[f]
			if !ok {
				continue
			}
			delete(q.fields, f)
			var one string
			var many []string
			if json.Unmarshal(raw, &one) == nil {
				many = []string{one}
			} else if json.Unmarshal(raw, &many) != nil {
				return nil, badRequest("%s must be a base64 string or a list of them", f)
			}
			if photos += len(many); photos > maxPhotos {
				return nil, tooManyPhotos(photos, maxPhotos)
			}
			for i, s := range many {
				data, err := decodeBase64(s)
				if err != nil {
					return nil, badRequest("%s[%d] is not base64: %v", f, i, err)
				}
				q.images[f] = append(q.images[f], data)
			}
		}
	default:
		return nil, &apiError{http.StatusUnsupportedMediaType, "unsupported_media_type", "send multipart/form-data or application/json"}
	}
	return q, nil
}

// bodyError turns a failure to read the body into 413 (over the limit),
// the context's error (the client went away) or 400 (truncated, malformed).
func bodyError(what string, err error) error {
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		return err
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return badRequest("%s is truncated: the body ended before the closing boundary", what)
	}
	return badRequest("%s is malformed: %v", what, err)
}

// readBody reads the whole (size-limited) body.
func readBody(r *http.Request) ([]byte, error) {
	var buf bytes.Buffer
	if n := r.ContentLength; n > 0 && n <= 64<<20 {
		buf.Grow(int(n) + 1)
	}
	if _, err := buf.ReadFrom(r.Body); err != nil {
		return nil, bodyError("body", err)
	}
	return buf.Bytes(), nil
}

// decodeStrict decodes exactly one JSON value into v: unknown fields of a
// struct and anything after the value are refused.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("JSON body: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("JSON body: data after the JSON object (send one object)")
	}
	return nil
}

func decodeBase64(s string) ([]byte, error) {
	if strings.HasPrefix(s, "data:") {
		if i := strings.Index(s, ","); i >= 0 {
			s = s[i+1:]
		}
	}
	s = strings.TrimRight(strings.TrimSpace(s), "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// face is one photo's outcome: its faces and the chip of the chosen one.
type face struct {
	faces  []align.Face
	chosen align.Face
	chip   align.Chip
	// scale is the size the photo was decoded at (1, or 1/2, 1/4, 1/8 for
	// a large JPEG read reduced); boxes are in the photo's own pixels.
	scale float64
}

// imageCost is what a decoded image of pixels may hold in memory while it
// is detected, as the decode budget counts it: 3 bytes per pixel (BGR),
// 6.75 more for the black-bordered copy the detector makes of a photo
// without a face found (1.5 times each side; small photos always get one),
// and 1 MiB for the detector's small copies and the chip.
func imageCost(pixels int) int64 { return (39*int64(pixels)+3)/4 + 1<<20 }

// urgentPixels is the largest photo of a verify or an identify that goes
// ahead of enroll photos and large photos (4 megapixels: 40 MiB decoded).
const urgentPixels = 4_000_000

// header reads an image's size from its header (align.ReadHeader: every
// format facever decodes), without decoding a pixel, and returns the most
// pixels its decoding may hold. A photo over the server's pixel limit is
// refused here, unless it is a baseline JPEG, which align.DecodeWith reads
// at 1/2, 1/4 or 1/8 of its size to fit the limit (or refuses).
func (s *Server) header(data []byte) (int, error) {
	if len(data) == 0 {
		return 0, fmt.Errorf("%w: empty file", align.ErrNotImage)
	}
	h, err := align.ReadHeader(data)
	if err != nil {
		return 0, err
	}
	px := h.Pixels()
	if px > int64(s.cfg.MaxPixels) {
		if h.Format != align.FormatJPEG || h.Progressive {
			return 0, fmt.Errorf("%w: the %s header says %d×%d pixels; this server accepts at most %d pixels (%.1f megapixels)", align.ErrTooLarge, h.Format, h.Width, h.Height, s.cfg.MaxPixels, float64(s.cfg.MaxPixels)/1e6)
		}
		px = int64(s.cfg.MaxPixels) // read reduced, at most the limit
	}
	return int(px), nil
}

// detect checks an image's header, waits for its share of the decode
// budget, decodes it and aligns its largest face. With an enroll policy,
// the photo must pass facever.CheckEnrollFaces (the CLI's enroll check:
// one face unless Largest, at least MinFace pixels).
func (s *Server) detect(ctx context.Context, data []byte, policy *facever.EnrollPolicy) (*face, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	px, err := s.header(data)
	if err != nil {
		return nil, err
	}
	cost := imageCost(px)
	// The photo of a verify or an identify of at most urgentPixels goes
	// first: a person waits for the answer, and it costs little.
	urgent := policy == nil && px <= urgentPixels
	if err := s.decode.acquire(ctx, cost, urgent); err != nil {
		return nil, err
	}
	defer s.decode.release(cost)
	im, err := align.DecodeWith(data, align.DecodeOptions{MaxPixels: s.cfg.MaxPixels})
	if err != nil {
		return nil, err
	}
	defer im.Close()
	if err := s.detectors.acquire(ctx, 1, urgent); err != nil {
		return nil, err
	}
	start := time.Now()
	faces, err := s.rec.Detect(im)
	s.metrics.model("detect", time.Since(start), 0)
	s.detectors.release(1)
	if err != nil {
		return nil, err
	}
	if len(faces) == 0 {
		return nil, align.ErrNoFace
	}
	chosen := faces[0]
	if policy != nil {
		if chosen, err = facever.CheckEnrollFaces(faces, *policy); err != nil {
			if errors.Is(err, align.ErrMultipleFaces) {
				return nil, fmt.Errorf("%w (send largest=true to enroll the largest)", err)
			}
			return nil, err
		}
	}
	chip, err := s.rec.Align(im, chosen)
	if err != nil {
		return nil, err
	}
	return &face{faces: faces, chosen: chosen, chip: chip, scale: im.Scale}, nil
}

// faceCounter enforces MaxFaces over one request.
type faceCounter struct{ n, max int }

func (c *faceCounter) add(n int) error {
	c.n += n
	if c.n > c.max {
		return &apiError{http.StatusUnprocessableEntity, "too_many_faces", fmt.Sprintf("the photos of this request hold %d or more faces; this server reports at most %d per request", c.n, c.max)}
	}
	return nil
}

func faceJSON(f align.Face) map[string]any {
	lm := make([][2]float64, 5)
	for i, p := range f.Landmarks {
		lm[i] = [2]float64{p.X, p.Y}
	}
	return map[string]any{"box": f.Box, "score": f.Score, "landmarks": lm}
}

type photoJSON struct {
	Faces int            `json:"faces"`
	Face  map[string]any `json:"face,omitempty"`
	Scale float64        `json:"scale"`
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
	embs, err := s.batch.run(ctx, []align.Chip{fs[0].chip, fs[1].chip})
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

// page reads ?limit= and ?after= of a list.
func (s *Server) page(r *http.Request) (after uint64, limit int, err error) {
	limit = s.cfg.PageSize
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > s.cfg.MaxPageSize {
			return 0, 0, badRequest("limit must be a whole number from 1 to %d, not %q", s.cfg.MaxPageSize, v)
		}
		limit = n
	}
	if v := r.URL.Query().Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, badRequest("after must be an identity id, not %q", v)
		}
		after = n
	}
	return after, limit, nil
}

// streamList writes {"<key>": [items...], "next_after": N} one item at a
// time, so that a page costs one item of buffer however slowly the client
// reads. next_after (the last id of the page) is there when more follow.
func streamList[T any](w http.ResponseWriter, key string, items []T, more bool, lastID func(T) uint64) error {
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
	tail := "]}\n"
	if more && len(items) > 0 {
		tail = fmt.Sprintf("],\"next_after\":%d}\n", lastID(items[len(items)-1]))
	}
	_, _ = io.WriteString(w, tail)
	return nil
}

func (s *Server) listIdentities(w http.ResponseWriter, r *http.Request) error {
	after, limit, err := s.page(r)
	if err != nil {
		return err
	}
	ids, next, err := s.cfg.Gallery.ListPage(after, limit)
	if err != nil {
		return err
	}
	more := next != 0
	for _, it := range ids {
		touched(r.Context(), it.ID)
	}
	return streamList(w, "identities", ids, more, func(it enroll.Identity) uint64 { return it.ID })
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
	after, limit, err := s.page(r)
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

type faceOutcome struct {
	Index    int            `json:"index"`
	Enrolled bool           `json:"enrolled"`
	Reason   string         `json:"reason,omitempty"`
	Code     string         `json:"code,omitempty"`
	Faces    int            `json:"faces"`
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
			outcomes[i].Reason = err.Error()
			outcomes[i].Code = asAPIError(err).code
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
		embs, err := s.batch.run(ctx, chips)
		if err != nil {
			return err
		}
		ts := make([]enroll.Template, len(embs))
		for i, e := range embs {
			ts[i] = enroll.Template{Embedding: e, Source: fmt.Sprintf("upload %d", idx[i])}
		}
		// The last point of return: a client that went away (or a request
		// out of time) commits nothing.
		if err := ctx.Err(); err != nil {
			return err
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
	return writeJSON(w, status, map[string]any{"identity": it, "faces": outcomes, "enrolled": len(chips)})
}

func (s *Server) identify(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	q, err := parse(r, fields{images: []string{"image"}, values: []string{"threshold", "top"}}, 1)
	if err != nil {
		return err
	}
	thr, err := s.threshold(q)
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
	f, err := s.detect(ctx, data, nil)
	if err != nil {
		return err
	}
	fc := faceCounter{max: s.cfg.MaxFaces}
	if err := fc.add(len(f.faces)); err != nil {
		return err
	}
	embs, err := s.batch.run(ctx, []align.Chip{f.chip})
	if err != nil {
		return err
	}
	ms, err := s.cfg.Gallery.Search(embs[0], top)
	if err != nil {
		return err
	}
	for _, m := range ms {
		touched(ctx, m.IdentityID)
	}
	out := map[string]any{"threshold": thr, "faces": len(f.faces), "face": faceJSON(f.faces[0]), "scale": f.scale, "top": append([]enroll.Match{}, ms...), "match": nil, "unknown": true}
	if len(ms) > 0 && float64(ms[0].Score) >= thr {
		out["match"] = ms[0]
		out["unknown"] = false
	}
	return writeJSON(w, http.StatusOK, out)
}
