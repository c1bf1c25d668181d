package server

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"image/png"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"time"

	"github.com/facever/facever/align"
)

// webFiles is the web page served at / (index.html) and its assets under
// /web/: plain HTML, CSS and JavaScript, no framework, nothing fetched from
// elsewhere, so that the page works on a machine without internet.
//
//go:embed web
var webFiles embed.FS

// webCSP is the page's Content-Security-Policy: scripts and styles from the
// server only (no inline script or style), images from the server or the
// photos the page reads itself (blob:, data:), requests to the server
// only, never framed.
const webCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// webAsset is one embedded file with its content type and ETag.
type webAsset struct {
	data  []byte
	ctype string
	etag  string
}

// loadWeb reads the embedded page once.
func loadWeb() map[string]webAsset {
	out := map[string]webAsset{}
	_ = fs.WalkDir(webFiles, "web", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := webFiles.ReadFile(p)
		if err != nil {
			return err
		}
		out[path.Base(p)] = newAsset(p, b)
		return nil
	})
	return out
}

// newAsset is a file of a page, with its content type (from its name) and
// ETag (from its content).
func newAsset(name string, b []byte) webAsset {
	sum := sha256.Sum256(b)
	ct := mime.TypeByExtension(path.Ext(name))
	switch path.Ext(name) {
	case ".html":
		ct = "text/html; charset=utf-8"
	case ".js":
		ct = "text/javascript; charset=utf-8"
	case ".css":
		ct = "text/css; charset=utf-8"
	case ".svg":
		ct = "image/svg+xml"
	}
	return webAsset{data: b, ctype: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
}

// serveWeb serves the page and its assets with their content types, an
// ETag (the browser revalidates each time: Cache-Control no-cache, answered
// 304 when unchanged, so that a new binary's page is never stale) and the
// strict Content-Security-Policy.
func serveWeb(assets map[string]webAsset, name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if name == "" {
			name := r.PathValue("file")
			a, ok := assets[name]
			if !ok || name == "index.html" {
				writeError(w, &apiError{http.StatusNotFound, "not_found", "no such file of the web page: " + name})
				return
			}
			writeAsset(w, r, a)
			return
		}
		writeAsset(w, r, assets[name])
	}
}

func writeAsset(w http.ResponseWriter, r *http.Request, a webAsset) {
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	h.Set("Content-Security-Policy", webCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.data))
}

// queryBool reads an optional boolean query parameter (1, true, 0, false).
func queryBool(r *http.Request, name string) (bool, error) {
	switch v := r.URL.Query().Get(name); v {
	case "", "0", "false":
		return false, nil
	case "1", "true":
		return true, nil
	default:
		return false, badRequest("%s must be 1, true, 0 or false, not %q", name, v)
	}
}

// chipPNG encodes an aligned face as a data: URL of a PNG.
func chipPNG(c align.Chip) string {
	var b bytes.Buffer
	if err := png.Encode(&b, c.RGBA()); err != nil {
		return ""
	}
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(b.Bytes())
}
