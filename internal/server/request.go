package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

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
	return s.thresholdOr(q, s.cfg.Threshold)
}

// thresholdOr is the request's threshold, else def, checked alike.
func (s *Server) thresholdOr(q *request, def float64) (float64, error) {
	thr, err := q.float("threshold", def)
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
