// Command schemadoc writes the README's JSON reference, a table of fields
// per document, from the JSON Schema files in schema/: run
// `go run ./internal/schemadoc` from the repository root to rewrite the
// README's section between the schemadoc markers, or -check to only
// compare it (exit 1 when it differs).
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/facever/facever/schema"
)

const (
	begin = "<!-- schemadoc: begin (go run ./internal/schemadoc) -->"
	end   = "<!-- schemadoc: end -->"
)

func main() {
	readme := flag.String("readme", "README.md", "the file to rewrite")
	check := flag.Bool("check", false, "only compare; exit 1 if the README's tables differ from schema/")
	flag.Parse()
	if err := run(*readme, *check); err != nil {
		fmt.Fprintln(os.Stderr, "schemadoc:", err)
		os.Exit(1)
	}
}

func run(readme string, check bool) error {
	old, err := os.ReadFile(readme)
	if err != nil {
		return err
	}
	tables, err := Tables()
	if err != nil {
		return err
	}
	updated, err := Replace(old, tables)
	if err != nil {
		return fmt.Errorf("%s: %w", readme, err)
	}
	if bytes.Equal(old, updated) {
		return nil
	}
	if check {
		return fmt.Errorf("%s's JSON reference differs from schema/: run go run ./internal/schemadoc", readme)
	}
	return os.WriteFile(readme, updated, 0o644)
}

// Replace puts tables between the markers of doc.
func Replace(doc []byte, tables string) ([]byte, error) {
	i := bytes.Index(doc, []byte(begin))
	j := bytes.Index(doc, []byte(end))
	if i < 0 || j < i {
		return nil, fmt.Errorf("no %q ... %q section", begin, end)
	}
	var b bytes.Buffer
	b.Write(doc[:i+len(begin)])
	b.WriteString("\n\n" + tables + "\n")
	b.Write(doc[j:])
	return b.Bytes(), nil
}

type node struct {
	Ref         string           `json:"$ref"`
	Title       string           `json:"title"`
	Description string           `json:"description"`
	Type        any              `json:"type"`
	Properties  map[string]*node `json:"properties"`
	Required    []string         `json:"required"`
	Items       *node            `json:"items"`
	OneOf       []*node          `json:"oneOf"`
	Defs        map[string]*node `json:"$defs"`
	Enum        []any            `json:"enum"`
	Const       any              `json:"const"`
	// Where (CLI, HTTP or both) and HTTPStatus annotate an error code.
	Where      string `json:"x-where"`
	HTTPStatus int    `json:"x-http-status"`
}

// Tables renders every schema file as markdown: the shared definitions
// first, then one table per document.
func Tables() (string, error) {
	var b strings.Builder
	defs, err := read("defs.json")
	if err != nil {
		return "", err
	}
	b.WriteString("Shared definitions (`schema/defs.json`), used by every document below:\n\n")
	names := make([]string, 0, len(defs.Defs))
	for n := range defs.Defs {
		names = append(names, n)
	}
	sort.Strings(names)
	b.WriteString("| name | type | meaning |\n|---|---|---|\n")
	shared = defs.Defs
	for _, n := range names {
		d := defs.Defs[n]
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", n, typeOf(d), cell(d.Description))
		if d.Properties != nil {
			rows(&b, n+".", d)
		}
	}
	if codes := defs.Defs["error_code"]; codes != nil && len(codes.OneOf) > 0 {
		b.WriteString("\nError codes (`error.code`, the `error_code` list of `schema/defs.json`), the same in the CLI's per-photo entries and the HTTP API's answers:\n\n| code | where | HTTP status | meaning |\n|---|---|---|---|\n")
		for _, c := range codes.OneOf {
			st := "–"
			if c.HTTPStatus != 0 {
				st = fmt.Sprint(c.HTTPStatus)
			}
			fmt.Fprintf(&b, "| `%v` | %s | %s | %s |\n", c.Const, c.Where, st, cell(c.Description))
		}
	}
	docs, err := schema.Names()
	if err != nil {
		return "", err
	}
	for _, n := range docs {
		d, err := read(n)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "\n**%s** (`schema/%s`)\n\n| field | type | meaning |\n|---|---|---|\n", cell(d.Description), n)
		rows(&b, "", d)
	}
	return b.String(), nil
}

func read(name string) (*node, error) {
	data, err := schema.File(name)
	if err != nil {
		return nil, err
	}
	var n node
	if err := json.Unmarshal(data, &n); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &n, nil
}

// rows writes one row per property of n, descending into inline objects
// and arrays of inline objects (prefix.field, prefix[].field).
func rows(b *strings.Builder, prefix string, n *node) {
	keys := make([]string, 0, len(n.Properties))
	for k := range n.Properties {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p := n.Properties[k]
		opt := ""
		if !contains(n.Required, k) {
			opt = " (optional)"
		}
		fmt.Fprintf(b, "| `%s%s` | %s%s | %s |\n", prefix, k, typeOf(p), opt, cell(describe(p)))
		switch {
		case p.Properties != nil:
			rows(b, prefix+k+".", p)
		case p.Items != nil && p.Items.Properties != nil:
			rows(b, prefix+k+"[].", p.Items)
		case p.Items != nil && len(p.Items.OneOf) > 0:
			for _, o := range p.Items.OneOf {
				if o.Properties != nil {
					rows(b, prefix+k+"[].", o)
				}
			}
		}
	}
}

func typeOf(n *node) string {
	switch {
	case n.Ref != "":
		return "[" + n.Ref[strings.LastIndex(n.Ref, "/")+1:] + "]"
	case len(n.OneOf) > 0 && allConst(n.OneOf):
		return "string (a code of the table below)"
	case len(n.OneOf) > 0:
		var s []string
		for _, o := range n.OneOf {
			s = append(s, typeOf(o))
		}
		return strings.Join(s, " or ")
	case n.Const != nil:
		return literal(n.Const)
	case len(n.Enum) > 0:
		var s []string
		for _, e := range n.Enum {
			s = append(s, literal(e))
		}
		return strings.Join(s, " or ")
	case n.Items != nil:
		if n.Items.Properties != nil {
			return "list of objects"
		}
		return "list of " + typeOf(n.Items)
	}
	if t, ok := n.Type.(string); ok {
		return t
	}
	return "any"
}

// shared holds defs.json's definitions, for the meaning of a reference.
var shared map[string]*node

// describe is n's description, else that of the definition it refers to.
func describe(n *node) string {
	if n.Description == "" && n.Ref != "" {
		if d, ok := shared[n.Ref[strings.LastIndex(n.Ref, "/")+1:]]; ok {
			return d.Description
		}
	}
	return n.Description
}

func cell(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

// literal is a JSON value as written ("ok", 90).
func literal(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// allConst tells whether every alternative is one constant (a list of codes).
func allConst(ns []*node) bool {
	for _, n := range ns {
		if n.Const == nil {
			return false
		}
	}
	return true
}
