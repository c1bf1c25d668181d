package server

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html"
	"html/template"
	"regexp"
	"sort"
	"strings"
)

// docsFiles are the script and style of /docs; the page itself is
// rendered from the embedded OpenAPI document when the server starts, so
// that it lists every endpoint without a script and can never disagree
// with /openapi.json. Nothing is fetched from elsewhere.
//
//go:embed docs
var docsFiles embed.FS

// loadDocs renders /docs (index.html) and reads its assets.
func loadDocs() map[string]webAsset {
	out := map[string]webAsset{}
	for _, n := range []string{"docs.js", "docs.css"} {
		b, err := docsFiles.ReadFile("docs/" + n)
		if err != nil {
			panic(err) // embedded: cannot fail
		}
		out[n] = newAsset(n, b)
	}
	page, err := renderDocs(OpenAPI)
	if err != nil {
		page = []byte("<!doctype html><title>facever API</title><p>The API document does not render: " + html.EscapeString(err.Error()) + ". See /openapi.json.")
	}
	out["index.html"] = newAsset("index.html", page)
	return out
}

// apiDoc is the part of an OpenAPI document the page shows.
type apiDoc struct {
	Info struct {
		Title       string `json:"title"`
		Version     string `json:"version"`
		Summary     string `json:"summary"`
		Description string `json:"description"`
	} `json:"info"`
	OpenAPI    string                               `json:"openapi"`
	Paths      map[string]map[string]apiOp          `json:"paths"`
	Tags       []struct{ Name, Description string } `json:"tags"`
	Components struct {
		Schemas   map[string]map[string]any `json:"schemas"`
		Responses map[string]struct {
			Description string `json:"description"`
		} `json:"responses"`
	} `json:"components"`
}

type apiOp struct {
	OperationID string                    `json:"operationId"`
	Summary     string                    `json:"summary"`
	Description string                    `json:"description"`
	Tags        []string                  `json:"tags"`
	Parameters  []map[string]any          `json:"parameters"`
	RequestBody map[string]any            `json:"requestBody"`
	Responses   map[string]map[string]any `json:"responses"`
	Security    *[]map[string][]string    `json:"security"`
}

// methodOrder is the order of an endpoint's operations on the page.
var methodOrder = []string{"get", "post", "put", "patch", "delete"}

var codeSpan = regexp.MustCompile("`([^`]+)`")

// prose escapes text and turns `code` into <code>code</code>.
func prose(s string) template.HTML {
	out := codeSpan.ReplaceAllString(html.EscapeString(s), "<code>$1</code>")
	return template.HTML(strings.ReplaceAll(out, "\n\n", "</p><p>"))
}

// breakable escapes a path and lets it wrap after each slash (<wbr>), so
// that a long path in the narrow navigation column wraps between its
// segments instead of running past the column's edge.
func breakable(path string) template.HTML {
	return template.HTML(strings.ReplaceAll(html.EscapeString(path), "/", "/<wbr>"))
}

// anchor is an element id made of a name.
func anchor(prefix, name string) string {
	var b strings.Builder
	b.WriteString(prefix)
	for _, r := range name {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	return b.String()
}

// typeHTML is a schema's type in a few words, with links to components.
func typeHTML(s map[string]any) string {
	if s == nil {
		return "any"
	}
	if ref, ok := s["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/components/schemas/")
		return fmt.Sprintf(`<a href="#%s">%s</a>`, anchor("schema-", name), html.EscapeString(name))
	}
	for _, k := range []string{"oneOf", "anyOf", "allOf"} {
		if list, ok := s[k].([]any); ok {
			var parts []string
			for _, x := range list {
				m, _ := x.(map[string]any)
				parts = append(parts, typeHTML(m))
			}
			sep := " or "
			if k == "allOf" {
				sep = " and "
			}
			return strings.Join(parts, sep)
		}
	}
	if c, ok := s["const"]; ok {
		b, _ := json.Marshal(c)
		return "<code>" + html.EscapeString(string(b)) + "</code>"
	}
	var t string
	switch v := s["type"].(type) {
	case string:
		t = v
	case []any:
		var parts []string
		for _, x := range v {
			parts = append(parts, fmt.Sprint(x))
		}
		t = strings.Join(parts, " or ")
	}
	if t == "array" {
		items, _ := s["items"].(map[string]any)
		t = "array of " + typeHTML(items)
	} else if t == "object" {
		if ap, ok := s["additionalProperties"].(map[string]any); ok && s["properties"] == nil {
			t = "object of " + typeHTML(ap)
		}
	} else if t == "" {
		t = "any"
	} else {
		t = html.EscapeString(t)
	}
	var notes []string
	if e, ok := s["enum"].([]any); ok {
		var vs []string
		for _, x := range e {
			b, _ := json.Marshal(x)
			vs = append(vs, "<code>"+html.EscapeString(string(b))+"</code>")
		}
		notes = append(notes, "one of "+strings.Join(vs, ", "))
	}
	for _, k := range []string{"format", "contentEncoding", "contentMediaType", "pattern"} {
		if v, ok := s[k].(string); ok {
			notes = append(notes, html.EscapeString(k+" "+v))
		}
	}
	for _, k := range []string{"minimum", "maximum", "exclusiveMinimum", "minLength", "maxLength", "minItems", "maxItems"} {
		if v, ok := s[k]; ok {
			notes = append(notes, html.EscapeString(fmt.Sprintf("%s %v", k, v)))
		}
	}
	if len(notes) > 0 {
		t += ` <span class="notes">(` + strings.Join(notes, "; ") + `)</span>`
	}
	return t
}

// propsHTML is a table of an object schema's properties, nested objects
// inline (depth-bounded).
func propsHTML(s map[string]any, depth int) string {
	props, _ := s["properties"].(map[string]any)
	if len(props) == 0 || depth > 4 {
		return ""
	}
	req := map[string]bool{}
	if r, ok := s["required"].([]any); ok {
		for _, x := range r {
			req[fmt.Sprint(x)] = true
		}
	}
	names := make([]string, 0, len(props))
	for n := range props {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if req[names[i]] != req[names[j]] {
			return req[names[i]]
		}
		return names[i] < names[j]
	})
	var b strings.Builder
	b.WriteString(`<table class="props"><thead><tr><th scope="col">field</th><th scope="col">type</th><th scope="col">description</th></tr></thead><tbody>`)
	for _, n := range names {
		p, _ := props[n].(map[string]any)
		r := ""
		if req[n] {
			r = ` <span class="req">required</span>`
		}
		desc, _ := p["description"].(string)
		fmt.Fprintf(&b, `<tr><th scope="row"><code>%s</code>%s</th><td>%s</td><td>%s`, html.EscapeString(n), r, typeHTML(p), prose(desc))
		inner := p
		if items, ok := p["items"].(map[string]any); ok {
			inner = items
		}
		b.WriteString(propsHTML(inner, depth+1))
		b.WriteString(`</td></tr>`)
	}
	b.WriteString(`</tbody></table>`)
	return b.String()
}

// curlExample is a request to op with curl.
func curlExample(method, path string, op apiOp) string {
	p := regexp.MustCompile(`\{[a-z_]+\}`).ReplaceAllStringFunc(path, func(v string) string {
		if v == "{file}" {
			return "app.js"
		}
		return "1"
	})
	var b strings.Builder
	b.WriteString("curl")
	if method != "get" {
		b.WriteString(" -X " + strings.ToUpper(method))
	}
	if op.Security == nil || len(*op.Security) > 0 {
		b.WriteString(` -H "Authorization: Bearer $FACEVER_KEY"`)
	}
	content, _ := op.RequestBody["content"].(map[string]any)
	if mp, ok := content["multipart/form-data"].(map[string]any); ok {
		schema, _ := mp["schema"].(map[string]any)
		props, _ := schema["properties"].(map[string]any)
		req, _ := schema["required"].([]any)
		names := []string{}
		for _, x := range req {
			names = append(names, fmt.Sprint(x))
		}
		if len(names) == 0 {
			for n := range props {
				if n == "images" {
					names = append(names, n, n)
				}
			}
		}
		for i, n := range names {
			fmt.Fprintf(&b, " \\\n  -F %s=@photo%d.jpg", n, i+1)
		}
	} else if js, ok := content["application/json"].(map[string]any); ok {
		schema, _ := js["schema"].(map[string]any)
		b.WriteString(` -H "Content-Type: application/json"`)
		fmt.Fprintf(&b, " \\\n  -d '%s'", exampleJSON(schema))
	}
	fmt.Fprintf(&b, " \\\n  http://localhost:8080%s", p)
	return b.String()
}

// exampleJSON is a body with the schema's required fields (or all of them).
func exampleJSON(s map[string]any) string {
	props, _ := s["properties"].(map[string]any)
	names := []string{}
	if r, ok := s["required"].([]any); ok {
		for _, x := range r {
			names = append(names, fmt.Sprint(x))
		}
	}
	if len(names) == 0 {
		for n := range props {
			names = append(names, n)
		}
		sort.Strings(names)
	}
	ex := map[string]any{}
	for _, n := range names {
		p, _ := props[n].(map[string]any)
		switch {
		case n == "scopes":
			ex[n] = []string{"recognize"}
		case n == "name":
			ex[n] = "Ada Lovelace"
		case n == "metadata":
			ex[n] = map[string]string{"team": "research"}
		case p["type"] == "array":
			ex[n] = []string{}
		case p["type"] == "boolean":
			ex[n] = true
		default:
			ex[n] = "..."
		}
	}
	b, _ := json.Marshal(ex)
	return string(b)
}

type docsOp struct {
	ID, Method, Path, Summary string
	Description               template.HTML
	Auth                      string
	Params                    template.HTML
	Body                      template.HTML
	Responses                 template.HTML
	Curl                      string
}

type docsSchema struct {
	ID, Name    string
	Description template.HTML
	Type        template.HTML
	Props       template.HTML
}

type docsTag struct {
	Name, Description string
	Ops               []docsOp
}

// renderDocs renders the page of an OpenAPI document.
func renderDocs(doc []byte) ([]byte, error) {
	var d apiDoc
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	byTag := map[string]*docsTag{}
	var tags []*docsTag
	for _, t := range d.Tags {
		dt := &docsTag{Name: t.Name, Description: t.Description}
		byTag[t.Name] = dt
		tags = append(tags, dt)
	}
	paths := make([]string, 0, len(d.Paths))
	for p := range d.Paths {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		for _, m := range methodOrder {
			op, ok := d.Paths[p][m]
			if !ok {
				continue
			}
			o := docsOp{ID: anchor("op-", op.OperationID), Method: strings.ToUpper(m), Path: p, Summary: op.Summary, Description: prose(op.Description), Curl: curlExample(m, p, op)}
			if op.OperationID == "" {
				o.ID = anchor("op-", m+p)
			}
			if op.Security != nil && len(*op.Security) == 0 {
				o.Auth = "No API key needed."
			}
			if len(op.Parameters) > 0 {
				var b strings.Builder
				b.WriteString(`<table class="props"><thead><tr><th scope="col">name</th><th scope="col">in</th><th scope="col">type</th><th scope="col">description</th></tr></thead><tbody>`)
				for _, pr := range op.Parameters {
					sch, _ := pr["schema"].(map[string]any)
					desc, _ := pr["description"].(string)
					r := ""
					if req, _ := pr["required"].(bool); req {
						r = ` <span class="req">required</span>`
					}
					fmt.Fprintf(&b, `<tr><th scope="row"><code>%s</code>%s</th><td>%s</td><td>%s</td><td>%s</td></tr>`, html.EscapeString(fmt.Sprint(pr["name"])), r, html.EscapeString(fmt.Sprint(pr["in"])), typeHTML(sch), prose(desc))
				}
				b.WriteString(`</tbody></table>`)
				o.Params = template.HTML(b.String())
			}
			if op.RequestBody != nil {
				var b strings.Builder
				if desc, _ := op.RequestBody["description"].(string); desc != "" {
					fmt.Fprintf(&b, "<p>%s</p>", prose(desc))
				}
				content, _ := op.RequestBody["content"].(map[string]any)
				cts := make([]string, 0, len(content))
				for ct := range content {
					cts = append(cts, ct)
				}
				sort.Strings(cts)
				for _, ct := range cts {
					mt, _ := content[ct].(map[string]any)
					sch, _ := mt["schema"].(map[string]any)
					fmt.Fprintf(&b, `<h5><code>%s</code></h5>%s`, html.EscapeString(ct), propsHTML(sch, 0))
				}
				o.Body = template.HTML(b.String())
			}
			codes := make([]string, 0, len(op.Responses))
			for c := range op.Responses {
				codes = append(codes, c)
			}
			sort.Strings(codes)
			var b strings.Builder
			b.WriteString(`<table class="responses"><thead><tr><th scope="col">status</th><th scope="col">meaning</th><th scope="col">body</th></tr></thead><tbody>`)
			for _, c := range codes {
				r := op.Responses[c]
				desc, _ := r["description"].(string)
				body := ""
				if ref, ok := r["$ref"].(string); ok {
					name := strings.TrimPrefix(ref, "#/components/responses/")
					desc = d.Components.Responses[name].Description
					body = typeHTML(map[string]any{"$ref": "#/components/schemas/error_document"})
				}
				if content, ok := r["content"].(map[string]any); ok {
					var parts []string
					for ct, v := range content {
						mt, _ := v.(map[string]any)
						sch, _ := mt["schema"].(map[string]any)
						parts = append(parts, "<code>"+html.EscapeString(ct)+"</code> "+typeHTML(sch))
					}
					sort.Strings(parts)
					body = strings.Join(parts, "<br>")
				}
				fmt.Fprintf(&b, `<tr><th scope="row">%s</th><td>%s</td><td>%s</td></tr>`, html.EscapeString(c), prose(desc), body)
			}
			b.WriteString(`</tbody></table>`)
			o.Responses = template.HTML(b.String())
			tag := "other"
			if len(op.Tags) > 0 {
				tag = op.Tags[0]
			}
			dt := byTag[tag]
			if dt == nil {
				dt = &docsTag{Name: tag}
				byTag[tag] = dt
				tags = append(tags, dt)
			}
			dt.Ops = append(dt.Ops, o)
		}
	}
	names := make([]string, 0, len(d.Components.Schemas))
	for n := range d.Components.Schemas {
		names = append(names, n)
	}
	sort.Strings(names)
	var schemas []docsSchema
	for _, n := range names {
		s := d.Components.Schemas[n]
		desc, _ := s["description"].(string)
		ds := docsSchema{ID: anchor("schema-", n), Name: n, Description: prose(desc), Type: template.HTML(typeHTML(s)), Props: template.HTML(propsHTML(s, 0))}
		if _, ok := s["$ref"]; ok {
			ds.Type = template.HTML("the same as " + typeHTML(s))
		}
		if all, ok := s["allOf"].([]any); ok {
			var props strings.Builder
			for _, x := range all {
				m, _ := x.(map[string]any)
				props.WriteString(propsHTML(m, 0))
			}
			ds.Props = template.HTML(props.String())
		}
		schemas = append(schemas, ds)
	}
	var out bytes.Buffer
	err := docsPage.Execute(&out, map[string]any{"Doc": d, "Description": prose(d.Info.Description), "Tags": tags, "Schemas": schemas})
	return out.Bytes(), err
}

var docsPage = template.Must(template.New("docs").Funcs(template.FuncMap{"anchor": anchor, "breakable": breakable}).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Doc.Info.Title}} API reference</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/docs/docs.css">
<script src="/docs/docs.js" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to the endpoints</a>
<header>
<h1>{{.Doc.Info.Title}} API <span class="version">version {{.Doc.Info.Version}}, OpenAPI {{.Doc.OpenAPI}}</span></h1>
<p>{{.Doc.Info.Summary}}. The machine-readable document is <a href="/openapi.json">/openapi.json</a>; this page is rendered from it.</p>
<p>{{.Description}}</p>
</header>
<nav aria-label="endpoints">
<label for="filter">Filter endpoints</label>
<input id="filter" type="search" placeholder="e.g. identities, POST, 422" autocomplete="off">
<ul>
{{range .Tags}}{{if .Ops}}<li><a href="#{{anchor "tag-" .Name}}">{{.Name}}</a><ul>
{{range .Ops}}<li><a href="#{{.ID}}"><span class="method m-{{.Method}}">{{.Method}}</span> <code>{{breakable .Path}}</code></a></li>
{{end}}</ul></li>
{{end}}{{end}}<li><a href="#schemas">schemas</a></li>
</ul>
</nav>
<main id="main">
{{range .Tags}}{{if .Ops}}<section class="tag" id="{{anchor "tag-" .Name}}" aria-labelledby="{{anchor "h-tag-" .Name}}">
<h2 id="{{anchor "h-tag-" .Name}}">{{.Name}}</h2>
{{if .Description}}<p>{{.Description}}</p>{{end}}
{{range .Ops}}<article class="op" id="{{.ID}}" aria-labelledby="h-{{.ID}}">
<h3 id="h-{{.ID}}"><span class="method m-{{.Method}}">{{.Method}}</span> <code class="path">{{.Path}}</code> <span class="summary">{{.Summary}}</span></h3>
<p>{{.Description}}</p>
{{if .Auth}}<p class="auth">{{.Auth}}</p>{{end}}
{{if .Params}}<h4>Parameters</h4>{{.Params}}{{end}}
{{if .Body}}<h4>Request body</h4>{{.Body}}{{end}}
<h4>Responses</h4>
{{.Responses}}
<h4>Example</h4>
<div class="example"><pre><code>{{.Curl}}</code></pre><button type="button" class="copy">Copy</button></div>
</article>
{{end}}</section>
{{end}}{{end}}
<section id="schemas" aria-labelledby="h-schemas">
<h2 id="h-schemas">Schemas</h2>
<p>The objects of the answers: the JSON Schemas of the repository's <code>schema/</code> folder, the same for the CLI's <code>--json</code> and the HTTP API.</p>
{{range .Schemas}}<article class="schema" id="{{.ID}}" aria-labelledby="h-{{.ID}}">
<h3 id="h-{{.ID}}"><code>{{.Name}}</code></h3>
<p>{{.Description}}</p>
<p class="type">Type: {{.Type}}</p>
{{.Props}}
</article>
{{end}}</section>
</main>
</body>
</html>
`))
