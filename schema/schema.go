// Package schema holds facever's JSON vocabulary as JSON Schema (2020-12)
// files: defs.json defines the shared parts (face, box, landmarks, error,
// match, identity, ...) and every other file is one document, a command's
// --json output or an HTTP response, made of them. Validate checks a
// document against one of them; the tests of cmd/facever and
// internal/server run it on real outputs.
package schema

import (
	"bytes"
	"embed"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

//go:embed *.json
var files embed.FS

const base = "file:///facever/schema/"

var (
	once     sync.Once
	compiled map[string]*jsonschema.Schema
	loadErr  error

	mu        sync.Mutex // guards compiler and defsCache
	compiler  *jsonschema.Compiler
	defsCache = map[string]*jsonschema.Schema{}
)

func load() {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	compiler = c
	names, err := Names()
	if err != nil {
		loadErr = err
		return
	}
	for _, n := range append(names, "defs.json") {
		data, err := files.ReadFile(n)
		if err != nil {
			loadErr = err
			return
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			loadErr = fmt.Errorf("schema %s: %w", n, err)
			return
		}
		if err := c.AddResource(base+n, doc); err != nil {
			loadErr = fmt.Errorf("schema %s: %w", n, err)
			return
		}
	}
	compiled = map[string]*jsonschema.Schema{}
	for _, n := range names {
		s, err := c.Compile(base + n)
		if err != nil {
			loadErr = fmt.Errorf("schema %s: %w", n, err)
			return
		}
		compiled[n] = s
	}
}

// Names lists the document schemas (every file but defs.json), sorted.
func Names() ([]string, error) {
	ents, err := files.ReadDir(".")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if n := e.Name(); strings.HasSuffix(n, ".json") && n != "defs.json" {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// File returns the bytes of one schema file.
func File(name string) ([]byte, error) { return files.ReadFile(name) }

// Validate checks the JSON document doc against the schema file name (for
// example "verify.json", or one shared definition such as
// "defs.json#/$defs/error_document"); the error names every violation with its place.
func Validate(name string, doc []byte) error {
	once.Do(load)
	if loadErr != nil {
		return loadErr
	}
	s, ok := compiled[name]
	if !ok && strings.HasPrefix(name, "defs.json#") {
		// A shared definition on its own, e.g. "defs.json#/$defs/error".
		mu.Lock()
		s, ok = defsCache[name]
		if !ok {
			var err error
			if s, err = compiler.Compile(base + name); err != nil {
				mu.Unlock()
				return fmt.Errorf("no schema %q: %w", name, err)
			}
			defsCache[name], ok = s, true
		}
		mu.Unlock()
	}
	if !ok {
		return fmt.Errorf("no schema %q", name)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	if err := s.Validate(v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
