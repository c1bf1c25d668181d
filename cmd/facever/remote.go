package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/facever/facever/enroll"
)

// The gallery and apikey commands work on a gallery file, or with --server
// on a running `facever serve` over its REST API: the same text and the
// same --json documents either way (one vocabulary), the same exit codes.
// The remote versions live here; gallery.go and serve.go keep the local
// ones, and withServer joins them.

// Environment variables that stand for --server and --key.
const (
	envServer = "FACEVER_SERVER"
	envKey    = "FACEVER_KEY"
)

// remoteTimeout bounds one request of a remote command.
const remoteTimeout = 60 * time.Second

// remote is a client of a running facever serve.
type remote struct {
	base string // scheme://host[:port], no trailing slash
	key  string
	hc   *http.Client
}

// remoteError is an answer of the server that is not a success: its
// status and the API's stable error code.
type remoteError struct {
	status  int
	code    string
	message string
}

func (e *remoteError) Error() string { return e.message }

// newRemote checks --server's URL; the key is checked by the server.
func newRemote(base, key string) (*remote, error) {
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("--server %q: want the server's URL, such as http://127.0.0.1:8080", base)
	}
	if key == "" {
		return nil, fmt.Errorf("--server %s needs an API key: pass --key KEY or set $%s (make one with `facever apikey create`)", u, envKey)
	}
	return &remote{base: u.Scheme + "://" + u.Host, key: key, hc: &http.Client{Timeout: remoteTimeout}}, nil
}

// do sends a request with a JSON body (nil: none) and decodes a 2xx
// answer into out (nil: discarded). Any other answer is a *remoteError
// worded for a person: who refused what, and what to do.
func (r *remote) do(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, r.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+r.key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return r.unreachable(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return r.refusal(resp.StatusCode, data)
	}
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: the answer of %s is not the API's JSON: %w", method, path, r.base, err)
	}
	return nil
}

// unreachable words a transport error.
func (r *remote) unreachable(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("cannot reach facever serve at %s: connection refused (is it running, on this address? start it with `facever serve --gallery FILE --addr HOST:PORT`)", r.base)
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("facever serve at %s did not answer within %v", r.base, remoteTimeout)
	}
	return fmt.Errorf("cannot reach facever serve at %s: %w", r.base, err)
}

// refusal words an error answer: 401 (the key), 403 (its scopes), 404
// and the others with the server's own message and code.
func (r *remote) refusal(status int, data []byte) error {
	var doc struct {
		Error struct{ Code, Message string }
	}
	_ = json.Unmarshal(data, &doc)
	e := &remoteError{status: status, code: doc.Error.Code, message: doc.Error.Message}
	if e.message == "" {
		e.message = strings.TrimSpace(string(data))
		if len(e.message) > 200 || e.message == "" {
			e.message = http.StatusText(status)
		}
	}
	switch status {
	case http.StatusUnauthorized:
		e.message = fmt.Sprintf("%s refused the API key (401 %s): pass a key of this server with --key or $%s", r.base, e.message, envKey)
	case http.StatusForbidden:
		e.message = fmt.Sprintf("%s: not allowed (403): %s", r.base, e.message)
	default:
		e.message = fmt.Sprintf("%s: %s (%d %s)", r.base, e.message, status, e.code)
	}
	return e
}

func isStatus(err error, status int) bool {
	var re *remoteError
	return errors.As(err, &re) && re.status == status
}

// remoteOf returns the client of --server (or $FACEVER_SERVER), nil when
// the command is to work on --gallery. --gallery on the command line wins
// over $FACEVER_SERVER; --gallery with --server is an error.
func remoteOf(c *cli.Context) (*remote, error) {
	server, fromFlag := c.String("server"), c.IsSet("server")
	if !fromFlag {
		server = os.Getenv(envServer)
	}
	gallery := c.String("gallery")
	if gallery == "" && !fromFlag {
		gallery = os.Getenv(envGallery) // --server wins over $FACEVER_GALLERY
	}
	switch {
	case fromFlag && gallery != "":
		return nil, cli.Exit("give --gallery FILE or --server URL, not both", exitError)
	case gallery != "":
		return nil, nil
	case server == "":
		return nil, cli.Exit(fmt.Sprintf("say which gallery: --gallery FILE or postgres://USER@HOST:PORT/DB (or $%s), or --server URL of a running facever serve (or $%s)", envGallery, envServer), exitError)
	}
	key := c.String("key")
	if !c.IsSet("key") {
		key = os.Getenv(envKey)
	}
	rm, err := newRemote(server, key)
	if err != nil {
		return nil, fail(err)
	}
	return rm, nil
}

var (
	serverFlag = &cli.StringFlag{Name: "server", Usage: "work on a running facever serve at this URL instead of a gallery file (default: $" + envServer + ")"}
	keyFlag    = &cli.StringFlag{Name: "key", Usage: "an API key of --server (default: $" + envKey + ")"}
)

// withServer lets cmd work on --server too: its --gallery is no longer
// required, --server and --key join its flags, and its action runs remote
// when a server is named (guardServed checks the local action's gallery).
func withServer(cmd *cli.Command, remoteAction remoteActionFunc) *cli.Command {
	local := cmd.Action
	flags := make([]cli.Flag, 0, len(cmd.Flags)+2)
	for _, f := range cmd.Flags {
		if sf, ok := f.(*cli.StringFlag); ok && sf.Name == "gallery" {
			opt := *sf
			opt.Required = false
			opt.Usage = sf.Usage + "; or --server"
			f = &opt
		}
		flags = append(flags, f)
	}
	cmd.Flags = append(flags, serverFlag, keyFlag)
	cmd.Action = func(c *cli.Context) error {
		rm, err := remoteOf(c)
		if err != nil {
			return err
		}
		if rm != nil {
			return remoteAction(c, rm)
		}
		return local(c)
	}
	return cmd
}

// remoteActionFunc is a command's remote version.
type remoteActionFunc = func(c *cli.Context, rm *remote) error

// withRemote wraps the subcommands of parent named in remotes.
func withRemote(parent *cli.Command, remotes map[string]remoteActionFunc) *cli.Command {
	for _, sub := range parent.Subcommands {
		if fn, ok := remotes[sub.Name]; ok {
			withServer(sub, fn)
		}
	}
	return parent
}

// remoteGalleryCommand is the gallery command with its list, show,
// rename and remove working on --server too.
func remoteGalleryCommand() *cli.Command {
	g := withRemote(galleryCommand(), map[string]remoteActionFunc{
		"list":   remoteList,
		"show":   remoteShow,
		"rename": remoteRename,
		"remove": remoteRemove,
		"crop":   remoteCrop,
	})
	g.Description += `

list, show, rename, remove and crop work on a running facever serve too: --server URL
with --key KEY (or $FACEVER_SERVER and $FACEVER_KEY) instead of --gallery, over
its REST API, with the same output. While a server holds a gallery file, the
local commands say so at once and name its --server URL.`
	return g
}

// remoteAPIKeyCommand is the apikey command with create, list and revoke
// working on --server too (an admin key).
func remoteAPIKeyCommand() *cli.Command {
	a := withRemote(apikeyCommand(), map[string]remoteActionFunc{
		"create": remoteKeyCreate,
		"list":   remoteKeyList,
		"revoke": remoteKeyRevoke,
	})
	a.Description = `The keys live in the gallery (as their sha256). With --server URL and an admin
--key (or $FACEVER_SERVER and $FACEVER_KEY) they are made, listed and revoked on
a running facever serve, taking effect at once.

Examples:
   facever apikey create --gallery team.db --name ops
   facever apikey create --server http://127.0.0.1:8080 --key $ADMIN_KEY --name kiosk --scope recognize
   facever apikey revoke --server http://127.0.0.1:8080 --key $ADMIN_KEY fv_abcd1234`
	return a
}

// listPage is one page of a list of the API.
type listPage[T any] struct {
	Identities []T    `json:"identities"`
	Faces      []T    `json:"faces"`
	Keys       []T    `json:"keys"`
	Next       string `json:"next_cursor"`
}

// pages reads every page of the list at path (which has a query), key
// naming the list's member.
func pages[T any](rm *remote, path string) ([]T, error) {
	var all []T
	cursor := ""
	for {
		p := path
		if cursor != "" {
			p += "&cursor=" + url.QueryEscape(cursor)
		}
		var page listPage[T]
		if err := rm.do("GET", p, nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Identities...)
		all = append(all, page.Faces...)
		all = append(all, page.Keys...)
		if page.Next == "" {
			return all, nil
		}
		if page.Next == cursor {
			return nil, fmt.Errorf("%s: the list's next_cursor did not move", rm.base)
		}
		cursor = page.Next
	}
}

// model asks /healthz for the server's model.
func (rm *remote) model() string {
	var h struct{ Model string }
	if err := rm.do("GET", "/healthz", nil, &h); err != nil || h.Model == "" {
		return "unknown"
	}
	return h.Model
}

func remoteList(c *cli.Context, rm *remote) error {
	ids, err := pages[enroll.Identity](rm, "/v1/identities?limit="+strconv.Itoa(enroll.MaxPage))
	if err != nil {
		return fail(err)
	}
	if ids == nil {
		ids = []enroll.Identity{}
	}
	if c.Bool("json") {
		return writeJSONOrFail(c, map[string]any{"server": rm.base, "identities": ids})
	}
	fmt.Fprintf(c.App.Writer, "%d people on %s (model %s)\n", len(ids), rm.base, rm.model())
	for _, it := range ids {
		fmt.Fprintf(c.App.Writer, "  #%-5d %-30s %3d template(s)  enrolled %s\n", it.ID, it.Name, it.Templates, it.Created.Format("2006-01-02 15:04"))
	}
	return nil
}

// resolve finds the person NAME|#ID of the first argument on the server,
// as Gallery.Resolve does: by name first, else by id.
func (rm *remote) resolve(c *cli.Context) (enroll.Identity, error) {
	if c.NArg() < 1 {
		return enroll.Identity{}, cli.Exit("name the person (NAME or #ID)", exitError)
	}
	ref := c.Args().First()
	var page listPage[enroll.Identity]
	if err := rm.do("GET", "/v1/identities?limit=1&prefix="+url.QueryEscape(ref), nil, &page); err != nil {
		return enroll.Identity{}, fail(err)
	}
	if len(page.Identities) == 1 && page.Identities[0].Name == ref {
		return page.Identities[0], nil
	}
	notFound := fail(fmt.Errorf("no person %q on %s (see `facever gallery list --server %s`)", ref, rm.base, rm.base))
	id, perr := strconv.ParseUint(strings.TrimPrefix(ref, "#"), 10, 64)
	if perr != nil {
		return enroll.Identity{}, notFound
	}
	var doc struct {
		Identity enroll.Identity `json:"identity"`
	}
	if err := rm.do("GET", "/v1/identities/"+strconv.FormatUint(id, 10)+"?limit=1", nil, &doc); err != nil {
		if isStatus(err, http.StatusNotFound) {
			return enroll.Identity{}, notFound
		}
		return enroll.Identity{}, fail(err)
	}
	return doc.Identity, nil
}

func remoteShow(c *cli.Context, rm *remote) error {
	it, err := rm.resolve(c)
	if err != nil {
		return err
	}
	base := "/v1/identities/" + strconv.FormatUint(it.ID, 10) + "?limit=" + strconv.Itoa(enroll.MaxPage)
	var ts []enroll.Template
	cursor := ""
	for {
		var doc struct {
			Identity  enroll.Identity   `json:"identity"`
			Templates []enroll.Template `json:"templates"`
			Next      string            `json:"next_cursor"`
		}
		p := base
		if cursor != "" {
			p += "&cursor=" + url.QueryEscape(cursor)
		}
		if err := rm.do("GET", p, nil, &doc); err != nil {
			return fail(err)
		}
		it = doc.Identity
		ts = append(ts, doc.Templates...)
		if doc.Next == "" || doc.Next == cursor {
			break
		}
		cursor = doc.Next
	}
	if ts == nil {
		ts = []enroll.Template{}
	}
	return printIdentity(c, it, ts)
}

func remoteRename(c *cli.Context, rm *remote) error {
	if c.NArg() != 2 {
		return cli.Exit("rename needs the person and the new name", exitError)
	}
	it, err := rm.resolve(c)
	if err != nil {
		return err
	}
	name := c.Args().Get(1)
	var now enroll.Identity
	if err := rm.do("PATCH", "/v1/identities/"+strconv.FormatUint(it.ID, 10), map[string]any{"name": name}, &now); err != nil {
		return fail(err)
	}
	if c.Bool("json") {
		return writeJSONOrFail(c, map[string]any{"id": it.ID, "old_name": it.Name, "name": now.Name})
	}
	fmt.Fprintf(c.App.Writer, "#%d %s is now %s\n", it.ID, it.Name, now.Name)
	return nil
}

func remoteRemove(c *cli.Context, rm *remote) error {
	it, err := rm.resolve(c)
	if err != nil {
		return err
	}
	var doc struct {
		Removed enroll.Identity `json:"removed"`
	}
	if err := rm.do("DELETE", "/v1/identities/"+strconv.FormatUint(it.ID, 10), nil, &doc); err != nil {
		return fail(err)
	}
	if c.Bool("json") {
		return writeJSONOrFail(c, map[string]any{"removed": doc.Removed})
	}
	fmt.Fprintf(c.App.Writer, "removed #%d %s and %d template(s)\n", doc.Removed.ID, doc.Removed.Name, doc.Removed.Templates)
	return nil
}

// keyHTTP is a key as the API answers it; the CLI prints enroll.APIKey's
// fields (its id is its prefix).
type keyHTTP struct {
	enroll.APIKey
	Key string `json:"key"`
}

func remoteKeyCreate(c *cli.Context, rm *remote) error {
	scopes := c.StringSlice("scope")
	if len(scopes) == 0 {
		scopes = []string{enroll.ScopeAdmin}
	}
	var k keyHTTP
	if err := rm.do("POST", "/v1/keys", map[string]any{"name": c.String("name"), "scopes": scopes}, &k); err != nil {
		return fail(err)
	}
	if c.Bool("json") {
		return writeJSONOrFail(c, keyDoc(k.APIKey, k.Key))
	}
	fmt.Fprintln(c.App.Writer, k.Key)
	fmt.Fprintf(c.App.ErrWriter, "API key for %s (prefix %s, scopes %s) on %s: keep it secret, it cannot be shown again\n", k.Name, k.Prefix, strings.Join(k.Scopes, ","), rm.base)
	return nil
}

func remoteKeyList(c *cli.Context, rm *remote) error {
	keys, err := pages[enroll.APIKey](rm, "/v1/keys?limit="+strconv.Itoa(enroll.MaxPage))
	if err != nil {
		return fail(err)
	}
	if c.Bool("json") {
		return writeJSONOrFail(c, keysDoc(keys))
	}
	for _, k := range keys {
		fmt.Fprintf(c.App.Writer, "%s…  %s  [%s]  created %s\n", k.Prefix, k.Name, strings.Join(k.Scopes, ","), k.Created.Format("2006-01-02 15:04"))
	}
	return nil
}

func remoteKeyRevoke(c *cli.Context, rm *remote) error {
	if c.NArg() != 1 {
		return cli.Exit("revoke needs the key's prefix (see `facever apikey list`)", exitError)
	}
	prefix := c.Args().First()
	if err := rm.do("DELETE", "/v1/keys/"+url.PathEscape(prefix), nil, nil); err != nil {
		if isStatus(err, http.StatusNotFound) {
			return fail(fmt.Errorf("no key with prefix %q on %s", prefix, rm.base))
		}
		return fail(err)
	}
	fmt.Fprintf(c.App.Writer, "revoked %d key(s)\n", 1)
	return nil
}
