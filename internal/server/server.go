// Package server is facever's HTTP API: verification, enrollment and
// identification over JSON, with API keys, limits, metrics and graceful
// shutdown. `facever serve` runs it; openapi.json documents it.
package server

import (
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
	"sync"
	"time"

	"github.com/facever/facever/align"
	"github.com/facever/facever/enroll"
	"github.com/facever/facever/facehead"
	"github.com/facever/facever/internal/pipeline"
	"github.com/facever/facever/verify"
)

// OpenAPI is the API's OpenAPI 3 document, served at /openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

var errShuttingDown = errors.New("server is shutting down")

// Config configures a Server.
type Config struct {
	// Pipeline selects models and runtime.
	Pipeline pipeline.Config
	// Gallery is the open gallery (its API keys guard the API).
	Gallery *enroll.Gallery
	// Threshold is the default verification and identification threshold.
	Threshold float64
	// MaxBodyBytes bounds a request body (413 above it).
	MaxBodyBytes int64
	// MaxPixels bounds an uploaded image's width×height (413 above it).
	MaxPixels int
	// Workers is the number of photos aligned at once (default: cores).
	Workers int
	// BatchWindow is how long a face waits for others to share a backbone run.
	BatchWindow time.Duration
	// NoAuth disables API keys (tests, trusted loopback use only).
	NoAuth bool
	// Head, when not empty, is a head file whose projection the embeddings use.
	Head string
}

// Server serves the API. Create it with New; it is an http.Handler.
type Server struct {
	cfg      Config
	mux      *http.ServeMux
	aligners chan *pipeline.Pipeline
	embedP   *pipeline.Pipeline
	batch    *batcher
	metrics  *metrics
	model    string
	// enrollMu serialises identity creation by name within the process.
	enrollMu sync.Mutex
}

// New loads the models and returns a server.
func New(cfg Config) (*Server, error) {
	if cfg.Gallery == nil {
		return nil, errors.New("server: no gallery")
	}

	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 16 << 20
	}
	if cfg.MaxPixels <= 0 {
		cfg.MaxPixels = 40_000_000
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.NumCPU()
	}
	if cfg.BatchWindow <= 0 {
		cfg.BatchWindow = 2 * time.Millisecond
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux(), aligners: make(chan *pipeline.Pipeline, cfg.Workers), metrics: newMetrics()}
	for i := 0; i < cfg.Workers; i++ {
		p, err := pipeline.Open(cfg.Pipeline, false)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.aligners <- p
	}
	p, err := pipeline.Open(cfg.Pipeline, true)
	if err != nil {
		s.Close()
		return nil, err
	}
	s.embedP = p
	s.model = p.Backbone.Name
	if cfg.Threshold == 0 {
		s.cfg.Threshold = p.Backbone.Threshold
	}
	if cfg.Head != "" {
		h, err := facehead.LoadHead(cfg.Head, p.Backbone.SHA256)
		if err != nil {
			s.Close()
			return nil, err
		}
		p.SetHead(h)
	}
	s.batch = newBatcher(p.Embedder, cfg.BatchWindow, func(d time.Duration, n int) { s.metrics.model("backbone", d, n) })
	s.routes()
	return s, nil
}

// Close stops the batcher and releases the models (after http.Server.Shutdown).
func (s *Server) Close() {
	if s.batch != nil {
		s.batch.close()
	}
	close(s.aligners)
	for p := range s.aligners {
		p.Close()
	}
	if s.embedP != nil {
		s.embedP.Close()
	}
}

func (s *Server) routes() {
	s.handle("GET /healthz", "/healthz", false, func(w http.ResponseWriter, r *http.Request) error {
		return writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "model": s.model})
	})
	s.handle("GET /openapi.json", "/openapi.json", false, func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "application/json")
		_, err := w.Write(OpenAPI)
		return err
	})
	s.handle("GET /metrics", "/metrics", false, func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		s.metrics.write(w)
		return nil
	})
	s.handle("POST /v1/verify", "/v1/verify", true, s.verify)
	s.handle("POST /v1/identities", "/v1/identities", true, s.createIdentity)
	s.handle("GET /v1/identities", "/v1/identities", true, s.listIdentities)
	s.handle("GET /v1/identities/{id}", "/v1/identities/{id}", true, s.getIdentity)
	s.handle("DELETE /v1/identities/{id}", "/v1/identities/{id}", true, s.deleteIdentity)
	s.handle("POST /v1/identities/{id}/faces", "/v1/identities/{id}/faces", true, s.addFaces)
	s.handle("POST /v1/identify", "/v1/identify", true, s.identify)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{http.StatusNotFound, "not_found", fmt.Sprintf("no endpoint %s %s; see /openapi.json", r.Method, r.URL.Path)})
	})
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

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

func (s *Server) handle(pattern, route string, auth bool, fn func(http.ResponseWriter, *http.Request) error) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		defer func() { s.metrics.request(r.Method, route, sw.code, time.Since(start)) }()
		if auth && !s.cfg.NoAuth {
			if err := s.authorize(r); err != nil {
				writeError(sw, err)
				return
			}
		}
		r.Body = http.MaxBytesReader(sw, r.Body, s.cfg.MaxBodyBytes)
		if err := fn(sw, r); err != nil {
			writeError(sw, err)
		}
	})
}

func (s *Server) authorize(r *http.Request) error {
	key := r.Header.Get("X-API-Key")
	if a := r.Header.Get("Authorization"); key == "" && strings.HasPrefix(a, "Bearer ") {
		key = strings.TrimPrefix(a, "Bearer ")
	}
	if key == "" {
		return &apiError{http.StatusUnauthorized, "unauthorized", "missing API key: send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY' (make one with `facever apikey create`)"}
	}
	if _, err := s.cfg.Gallery.CheckAPIKey(key); err != nil {
		return &apiError{http.StatusUnauthorized, "unauthorized", "unknown API key"}
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// writeError maps an error to its status and writes {"error":{code,message}}.
func writeError(w http.ResponseWriter, err error) {
	var ae *apiError
	var mb *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &mb):
		ae = &apiError{http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body over the %d-byte limit", mb.Limit)}
	case errors.Is(err, align.ErrTooLarge):
		ae = &apiError{http.StatusRequestEntityTooLarge, "too_large", err.Error()}
	case errors.Is(err, align.ErrNotImage), errors.Is(err, align.ErrTooSmall):
		ae = &apiError{http.StatusUnprocessableEntity, "not_image", err.Error()}
	case errors.Is(err, align.ErrNoFace):
		ae = &apiError{http.StatusUnprocessableEntity, "no_face", err.Error()}
	case errors.Is(err, align.ErrMultipleFaces):
		ae = &apiError{http.StatusUnprocessableEntity, "multiple_faces", err.Error()}
	case errors.Is(err, enroll.ErrNotFound):
		ae = &apiError{http.StatusNotFound, "not_found", err.Error()}
	case errors.Is(err, enroll.ErrExists):
		ae = &apiError{http.StatusConflict, "exists", err.Error()}
	case errors.Is(err, enroll.ErrInvalid):
		ae = &apiError{http.StatusBadRequest, "bad_request", err.Error()}
	case errors.Is(err, errShuttingDown):
		ae = &apiError{http.StatusServiceUnavailable, "unavailable", err.Error()}
	default:
		ae = &apiError{http.StatusInternalServerError, "internal", err.Error()}
	}
	_ = writeJSON(w, ae.status, map[string]any{"error": map[string]string{"code": ae.code, "message": ae.message}})
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
	return v[0], nil
}

func (q *request) float(name string, def float64) (float64, error) {
	if raw, ok := q.fields[name]; ok {
		var f float64
		if err := json.Unmarshal(raw, &f); err != nil || math.IsNaN(f) {
			return 0, badRequest("%s must be a number", name)
		}
		return f, nil
	}
	if v, ok := q.form[name]; ok && v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) {
			return 0, badRequest("%s must be a number", name)
		}
		return f, nil
	}
	return def, nil
}

func (q *request) bool(name string) bool {
	if raw, ok := q.fields[name]; ok {
		var b bool
		_ = json.Unmarshal(raw, &b)
		return b
	}
	b, _ := strconv.ParseBool(q.form[name])
	return b
}

// parse reads a multipart or JSON body. In JSON, a string field holding an
// image is base64 (standard or URL alphabet; a data: URL prefix is allowed),
// and a list of strings is several images; which fields are images is given.
func parse(r *http.Request, imageFields ...string) (*request, error) {
	q := &request{images: map[string][][]byte{}, fields: map[string]json.RawMessage{}, form: map[string]string{}}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
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
				var mb *http.MaxBytesError
				if errors.As(err, &mb) {
					return nil, err
				}
				return nil, badRequest("multipart body: %v", err)
			}
			data, err := io.ReadAll(part)
			if err != nil {
				return nil, err
			}
			if part.FileName() != "" {
				q.images[part.FormName()] = append(q.images[part.FormName()], data)
			} else {
				q.form[part.FormName()] = string(data)
			}
		}
	case "application/json", "":
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		if len(body) == 0 {
			return q, nil
		}
		if err := json.Unmarshal(body, &q.fields); err != nil {
			return nil, badRequest("JSON body: %v", err)
		}
		for _, f := range imageFields {
			raw, ok := q.fields[f]
			if !ok {
				continue
			}
			var one string
			var many []string
			if json.Unmarshal(raw, &one) == nil {
				many = []string{one}
			} else if json.Unmarshal(raw, &many) != nil {
				return nil, badRequest("%s must be a base64 string or a list of them", f)
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
	faces []align.Face
	chip  align.Chip
}

// detect decodes an image and aligns its largest face (or, with single,
// refuses several faces).
func (s *Server) detect(data []byte, single bool) (*face, error) {
	im, err := align.Decode(data)
	if err != nil {
		return nil, err
	}
	defer im.Close()
	if im.Width()*im.Height() > s.cfg.MaxPixels {
		return nil, fmt.Errorf("%w: %d×%d pixels, this server accepts at most %d megapixels", align.ErrTooLarge, im.Width(), im.Height(), s.cfg.MaxPixels/1_000_000)
	}
	p, ok := <-s.aligners
	if !ok {
		return nil, errShuttingDown
	}
	start := time.Now()
	faces, err := p.Aligner.Detect(im)
	s.aligners <- p
	s.metrics.model("detect", time.Since(start), 0)
	if err != nil {
		return nil, err
	}
	if len(faces) == 0 {
		return nil, align.ErrNoFace
	}
	if single && len(faces) > 1 {
		return nil, fmt.Errorf("%w: %d faces; send a photo of one person, or set largest", align.ErrMultipleFaces, len(faces))
	}
	chip, err := s.embedP.Align(im, faces[0])
	if err != nil {
		return nil, err
	}
	return &face{faces: faces, chip: chip}, nil
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
}

func (s *Server) verify(w http.ResponseWriter, r *http.Request) error {
	q, err := parse(r, "image_a", "image_b")
	if err != nil {
		return err
	}
	thr, err := q.float("threshold", s.cfg.Threshold)
	if err != nil {
		return err
	}
	var fs [2]*face
	for i, name := range []string{"image_a", "image_b"} {
		data, err := q.image(name)
		if err != nil {
			return err
		}
		if fs[i], err = s.detect(data, false); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	embs, err := s.batch.embed([]align.Chip{fs[0].chip, fs[1].chip})
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
		out.Photos[i] = photoJSON{Faces: len(f.faces), Face: faceJSON(f.faces[0])}
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) createIdentity(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Name     string            `json:"name"`
		Metadata map[string]string `json:"metadata"`
	}
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(&body); err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return err
		}
		return badRequest("JSON body {\"name\": ..., \"metadata\": {...}}: %v", err)
	}
	if body.Name == "" {
		return badRequest("name is required")
	}
	it, err := s.cfg.Gallery.AddIdentity(body.Name, body.Metadata)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, it)
}

func (s *Server) listIdentities(w http.ResponseWriter, r *http.Request) error {
	ids, err := s.cfg.Gallery.List()
	if err != nil {
		return err
	}
	if ids == nil {
		ids = []enroll.Identity{}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"identities": ids})
}

func (s *Server) identityOf(r *http.Request) (enroll.Identity, error) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		return enroll.Identity{}, badRequest("identity id %q is not a number", r.PathValue("id"))
	}
	return s.cfg.Gallery.Get(id)
}

func (s *Server) getIdentity(w http.ResponseWriter, r *http.Request) error {
	it, err := s.identityOf(r)
	if err != nil {
		return err
	}
	ts, err := s.cfg.Gallery.Templates(it.ID)
	if err != nil {
		return err
	}
	if ts == nil {
		ts = []enroll.Template{}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"identity": it, "templates": ts})
}

func (s *Server) deleteIdentity(w http.ResponseWriter, r *http.Request) error {
	it, err := s.identityOf(r)
	if err != nil {
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
	Faces    int            `json:"faces"`
	Face     map[string]any `json:"face,omitempty"`
	Template uint64         `json:"template_id,omitempty"`
}

func (s *Server) addFaces(w http.ResponseWriter, r *http.Request) error {
	it, err := s.identityOf(r)
	if err != nil {
		return err
	}
	q, err := parse(r, "images", "image")
	if err != nil {
		return err
	}
	var all [][]byte
	for _, v := range q.images {
		all = append(all, v...)
	}
	if len(all) == 0 {
		return badRequest("no image: send files in multipart field \"images\", or base64 strings in JSON field \"images\"")
	}
	largest := q.bool("largest")
	outcomes := make([]faceOutcome, len(all))
	var chips []align.Chip
	var idx []int
	for i, data := range all {
		outcomes[i].Index = i
		f, err := s.detect(data, !largest)
		if err != nil {
			if errors.Is(err, errShuttingDown) {
				return err
			}
			outcomes[i].Reason = err.Error()
			continue
		}
		outcomes[i].Faces = len(f.faces)
		outcomes[i].Face = faceJSON(f.faces[0])
		chips = append(chips, f.chip)
		idx = append(idx, i)
	}
	if len(chips) > 0 {
		embs, err := s.batch.embed(chips)
		if err != nil {
			return err
		}
		ts := make([]enroll.Template, len(embs))
		for i, e := range embs {
			ts[i] = enroll.Template{Embedding: e, Source: fmt.Sprintf("upload %d", idx[i])}
		}
		saved, err := s.cfg.Gallery.AddTemplates(it.ID, ts)
		if err != nil {
			return err
		}
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
	q, err := parse(r, "image")
	if err != nil {
		return err
	}
	thr, err := q.float("threshold", s.cfg.Threshold)
	if err != nil {
		return err
	}
	topf, err := q.float("top", 1)
	if err != nil {
		return err
	}
	top := int(topf)
	if top < 1 || top > 100 {
		return badRequest("top must be between 1 and 100")
	}
	data, err := q.image("image")
	if err != nil {
		return err
	}
	f, err := s.detect(data, false)
	if err != nil {
		return err
	}
	embs, err := s.batch.embed([]align.Chip{f.chip})
	if err != nil {
		return err
	}
	ms, err := s.cfg.Gallery.Search(embs[0], top)
	if err != nil {
		return err
	}
	out := map[string]any{"threshold": thr, "faces": len(f.faces), "face": faceJSON(f.faces[0]), "top": append([]enroll.Match{}, ms...), "match": nil, "unknown": true}
	if len(ms) > 0 && float64(ms[0].Score) >= thr {
		out["match"] = ms[0]
		out["unknown"] = false
	}
	return writeJSON(w, http.StatusOK, out)
}
