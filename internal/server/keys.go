package server

import (
	"fmt"
	"net/http"
	"sort"

	"github.com/facever/facever/enroll"
)

// API keys managed over the API by an admin key. A key is checked against
// the gallery on every request, so a new key works and a revoked one fails
// from the next request on, without a restart.

// keyJSON is a key as the API shows it: its prefix is its id.
type keyJSON struct {
	ID      string   `json:"id"`
	Name    string   `json:"name"`
	Prefix  string   `json:"prefix"`
	Scopes  []string `json:"scopes"`
	Created string   `json:"created"`
	// Key is the key itself, in the answer of its creation only.
	Key string `json:"key,omitempty"`
}

func toKeyJSON(k enroll.APIKey) keyJSON {
	return keyJSON{ID: k.Prefix, Name: k.Name, Prefix: k.Prefix, Scopes: k.Scopes, Created: k.Created.Format("2006-01-02T15:04:05.999999999Z07:00")}
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Name   string   `json:"name"`
		Scopes []string `json:"scopes"`
	}
	data, err := readBody(r)
	if err != nil {
		return err
	}
	if err := decodeStrict(data, &body); err != nil {
		return badRequest("%v; send {\"name\": ..., \"scopes\": [\"recognize\"]}", err)
	}
	if body.Name == "" {
		return badRequest("name is required: whom the key is for")
	}
	if len(body.Scopes) == 0 {
		return badRequest("scopes are required: one or more of %q", enroll.Scopes)
	}
	if err := r.Context().Err(); err != nil {
		return err
	}
	key, rec, err := s.cfg.Gallery.CreateScopedAPIKey(body.Name, body.Scopes)
	if err != nil {
		return err
	}
	out := toKeyJSON(rec)
	out.Key = key
	return writeJSON(w, http.StatusCreated, out)
}

// listKeys pages through the keys by id (prefix).
func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) error {
	limit, err := s.limitOf(r)
	if err != nil {
		return err
	}
	after := ""
	if c := r.URL.Query().Get("cursor"); c != "" {
		if after, err = decodeCursor(c, 'k'); err != nil {
			return err
		}
	}
	keys, err := s.cfg.Gallery.APIKeys()
	if err != nil {
		return err
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Prefix < keys[j].Prefix })
	out := make([]keyJSON, 0, min(limit, len(keys)))
	tail := map[string]any{}
	for _, k := range keys {
		if k.Prefix <= after {
			continue
		}
		if len(out) == limit {
			tail["next_cursor"] = encodeCursor('k', out[len(out)-1].ID)
			break
		}
		out = append(out, toKeyJSON(k))
	}
	return streamList(w, "keys", out, tail)
}

func (s *Server) deleteKey(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := r.Context().Err(); err != nil {
		return err
	}
	n, err := s.cfg.Gallery.RevokeAPIKey(id)
	if err != nil {
		return err
	}
	if n == 0 {
		return &apiError{http.StatusNotFound, "not_found", fmt.Sprintf("no API key with id %q (see GET /v1/keys)", id)}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"revoked": id})
}

// forbidden is the answer to a key without the scope a route needs.
func forbidden(k enroll.APIKey, scope string) error {
	return &apiError{http.StatusForbidden, "forbidden", fmt.Sprintf("API key %s… (%s) has scopes %q; this endpoint needs %q (or admin)", k.Prefix, k.Name, k.Scopes, scope)}
}
