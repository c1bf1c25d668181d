package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	fv "github.com/facever/facever"
	"github.com/facever/facever/enroll"
	"github.com/facever/facever/internal/server"
	"github.com/facever/facever/models"
	"github.com/facever/facever/verify"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the HTTP API: verify, enroll and identify over JSON",
		Description: `Serves /v1/verify, /v1/identities, /v1/identities/{id}/faces, /v1/identify, and
/openapi.json, /healthz, /metrics. Every /v1 endpoint and /metrics need an API key
made with 'facever apikey create' (stored hashed in the gallery); --metrics-addr serves
/metrics without a key on a listener of its own. It listens on 127.0.0.1 only unless
--addr says otherwise. Every request is one JSON line of the access log (--access-log:
stderr by default): time, key prefix and name, route, status, identity ids touched,
latency; never images, templates or keys. SIGINT or SIGTERM stop it gracefully:
requests in flight finish, then the gallery is closed.

Limits (413 or 422 with a stable error code above them): --max-body, --max-pixels
(read from the image header before decoding), --max-photos and --max-faces per request,
--max-metadata-bytes and --max-metadata-keys; --decode-budget bounds the memory of
decoded images of all requests together, --max-concurrent the requests with a body
worked on at once, --request-timeout the time of one request's work (an enroll cut
short commits nothing).

Several nodes: --shard i/n keeps only part i of n of the gallery in this node's index
(identities whose FNV-1a hash of the id, mod n, is i) and --shards names one node per
shard, in shard order ("self" for this one): identify embeds the photo once, asks every
shard at once (POST /v1/shard/search) and merges the top k exactly; a shard that does not
answer within --shard-timeout makes it 503 shard_unavailable unless the client sends
partial=true. See the README's "Running several nodes".

Example:
   facever apikey create --gallery team.db --name my-app
   facever serve --gallery team.db --addr 127.0.0.1:8080 --access-log access.jsonl`,
		Flags: []cli.Flag{
			galleryFlag,
			&cli.StringFlag{Name: "addr", Value: "127.0.0.1:8080", Usage: "address to listen on"},
			&cli.StringFlag{Name: "tls-cert", Usage: "serve HTTPS with this certificate (PEM)"},
			&cli.StringFlag{Name: "tls-key", Usage: "the certificate's private key (PEM)"},
			&cli.Float64Flag{Name: "threshold", Value: verify.DefaultThreshold, Usage: "default threshold of verify (default: the --head's own calibrated 1:1 threshold, else the model's)"},
			&cli.Float64Flag{Name: "identify-threshold", Value: models.Feature.IdentifyThreshold, Usage: "default threshold of identify (default: the --head's own calibrated 1:N threshold, else the model's)"},
			&cli.Float64Flag{Name: "min-threshold", Value: 0, Usage: "lowest threshold a client may send (400 threshold_too_low below it)"},
			headFlag,
			&cli.IntFlag{Name: "min-face", Value: fv.DefaultMinFace, Usage: "smallest face enrolled, the shorter side of its box in pixels (as enroll's --min-face)"},
			&cli.Int64Flag{Name: "max-body", Value: server.DefaultMaxBodyBytes, Usage: "largest request body in bytes (413 too_large above)"},
			&cli.IntFlag{Name: "max-pixels", Value: server.DefaultMaxPixels, Usage: "largest image, width×height, read from its header before decoding (413 too_large above)"},
			&cli.IntFlag{Name: "max-photos", Value: server.DefaultMaxPhotos, Usage: "most photos in one request (413 too_many_photos above)"},
			&cli.IntFlag{Name: "max-faces", Value: server.DefaultMaxFaces, Usage: "most faces the photos of one request may hold (422 too_many_faces above)"},
			&cli.IntFlag{Name: "max-metadata-bytes", Value: server.DefaultMaxMetadataBytes, Usage: "largest identity metadata, keys and values together (413 metadata_too_large above)"},
			&cli.IntFlag{Name: "max-metadata-keys", Value: server.DefaultMaxMetadataKeys, Usage: "most metadata keys of an identity (413 metadata_too_large above)"},
			&cli.Int64Flag{Name: "decode-budget", Value: server.DefaultDecodeBudget >> 20, Usage: "MiB that decoded images of all requests may hold together, with the detector's copies (9.75 bytes a pixel)"},
			&cli.IntFlag{Name: "max-concurrent", Value: server.DefaultMaxConcurrent, Usage: "requests with a body read and worked on at once (the others wait their turn)"},
			&cli.BoolFlag{Name: "no-crops", Usage: "enroll faces without their aligned 112×112 crops (kept by default, 3–6 KiB a face, for the web page's person screen and GET /v1/identities/{id}/faces/{face_id}/crop): the gallery then holds no face images"},
			&cli.IntFlag{Name: "max-batch", Value: server.DefaultMaxBatch, Usage: "most faces of one backbone run (1 is fastest on the CPU runtimes: see the README's Throughput)"},
			&cli.DurationFlag{Name: "request-timeout", Value: 50 * time.Second, Usage: "longest work of one request (503 timeout; keep it under --write-timeout)"},
			&cli.StringFlag{Name: "access-log", Value: "-", Usage: "file the JSON-lines access log is appended to (\"-\": stderr)"},
			&cli.StringFlag{Name: "metrics-addr", Usage: "serve /metrics without a key on this address too (say 127.0.0.1:9090)"},
			&cli.DurationFlag{Name: "read-timeout", Value: 30 * time.Second, Usage: "time to read a whole request"},
			&cli.DurationFlag{Name: "write-timeout", Value: 60 * time.Second, Usage: "time to write a response"},
			&cli.DurationFlag{Name: "shutdown-timeout", Value: 30 * time.Second, Usage: "how long requests in flight may take to finish at shutdown"},
			&cli.StringFlag{Name: "shard", Usage: "keep only part i of n of the gallery in this node's index (i/n, say 0/3: identities whose FNV-1a hash of the id mod n is i); needs --shards"},
			&cli.StringFlag{Name: "shards", Usage: "identify searches every shard: one node's base URL per shard, comma-separated, in shard order (\"self\" for this node's own), say http://10.0.0.1:8080,self,http://10.0.0.3:8080"},
			&cli.DurationFlag{Name: "shard-timeout", Value: 5 * time.Second, Usage: "longest wait for a shard's answer (then 503 shard_unavailable, or a partial answer when the client sends partial=true)"},
		},
		Action: func(c *cli.Context) error {
			if (c.String("tls-cert") == "") != (c.String("tls-key") == "") {
				return cli.Exit("--tls-cert and --tls-key go together", exitError)
			}
			backbone, err := models.BackboneIn(c.String("models"), c.String("model"))
			if err != nil {
				return fail(err)
			}
			hid, err := headID(c)
			if err != nil {
				return fail(err)
			}
			shard, shards, err := shardFlags(c)
			if err != nil {
				return cli.Exit(err.Error(), exitError)
			}
			g, err := openSpec(c, enroll.Options{Model: backbone.SHA256, Head: hid, MaxMetadataKeys: c.Int("max-metadata-keys"), MaxMetadataBytes: c.Int("max-metadata-bytes"), Shard: shard})
			if err != nil {
				return fail(err)
			}
			defer g.Close()
			keys, err := g.APIKeys()
			if err != nil {
				return fail(err)
			}
			if len(keys) == 0 {
				return fail(fmt.Errorf("gallery %s has no API key, so no client could call the API: make one with `facever apikey create --gallery %s --name NAME`", galleryName(c), galleryName(c)))
			}
			// Signals are caught from here on, before the listener opens,
			// so that a client that got an answer can stop the server
			// gracefully.
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
			defer signal.Stop(sig)
			if c.Duration("request-timeout") >= c.Duration("write-timeout") {
				return cli.Exit("--request-timeout must be shorter than --write-timeout, so that a request out of time still gets its answer", exitError)
			}
			var accessLog io.Writer = c.App.ErrWriter
			if p := c.String("access-log"); p != "-" {
				f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
				if err != nil {
					return fail(fmt.Errorf("access log: %w", err))
				}
				defer f.Close()
				accessLog = f
			}
			// Thresholds not given are 0: the Recognizer's, the --head's
			// own calibrated thresholds when it has them, else the backbone's.
			srv, err := server.New(server.Config{
				Models:            serveModels(c),
				Gallery:           g,
				Threshold:         flagOrZero(c, "threshold"),
				IdentifyThreshold: flagOrZero(c, "identify-threshold"),
				MinThreshold:      c.Float64("min-threshold"),
				MinFace:           c.Int("min-face"),
				MaxBodyBytes:      c.Int64("max-body"),
				MaxPixels:         c.Int("max-pixels"),
				MaxPhotos:         c.Int("max-photos"),
				MaxFaces:          c.Int("max-faces"),
				MaxMetadataBytes:  c.Int("max-metadata-bytes"),
				MaxMetadataKeys:   c.Int("max-metadata-keys"),
				DecodeBudget:      c.Int64("decode-budget") << 20,
				MaxConcurrent:     c.Int("max-concurrent"),
				RequestTimeout:    c.Duration("request-timeout"),
				MaxBatch:          c.Int("max-batch"),
				NoCrops:           c.Bool("no-crops"),
				AccessLog:         accessLog,
				Shard:             shard,
				Shards:            shards,
				ShardTimeout:      c.Duration("shard-timeout"),
			})
			if err != nil {
				return fail(err)
			}
			defer srv.Close()
			if addr := c.String("metrics-addr"); addr != "" {
				mln, err := net.Listen("tcp", addr)
				if err != nil {
					return fail(fmt.Errorf("--metrics-addr: %w", err))
				}
				ms := &http.Server{Handler: srv.MetricsHandler(), ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
				go ms.Serve(mln)
				defer ms.Close()
				fmt.Fprintf(c.App.ErrWriter, "facever: metrics on http://%s/metrics (no key)\n", mln.Addr())
			}
			hs := &http.Server{
				Handler:           srv,
				ReadTimeout:       c.Duration("read-timeout"),
				ReadHeaderTimeout: 10 * time.Second,
				WriteTimeout:      c.Duration("write-timeout"),
				IdleTimeout:       2 * time.Minute,
				MaxHeaderBytes:    64 << 10,
			}
			ln, err := net.Listen("tcp", c.String("addr"))
			if err != nil {
				return fail(err)
			}
			scheme := "http"
			if c.String("tls-cert") != "" {
				scheme = "https"
			}
			// GALLERY.serve tells local commands where the server holding
			// the gallery listens (remote_served.go).
			unannounce, err := announceServed(gallerySpec(c), scheme, ln.Addr())
			if err != nil {
				fmt.Fprintf(c.App.ErrWriter, "facever: %v (local commands will not know where this server is)\n", err)
			} else {
				defer unannounce()
			}
			fmt.Fprintf(c.App.ErrWriter, "facever: serving %s://%s (gallery %s, %d API key(s)); Ctrl-C stops\n", scheme, ln.Addr(), galleryName(c), len(keys))
			if shard.Sharded() {
				fmt.Fprintf(c.App.ErrWriter, "facever: this node indexes shard %s; identify asks %s\n", shard, strings.Join(shards, ", "))
			}
			errc := make(chan error, 1)
			go func() {
				if scheme == "https" {
					errc <- hs.ServeTLS(ln, c.String("tls-cert"), c.String("tls-key"))
				} else {
					errc <- hs.Serve(ln)
				}
			}()
			select {
			case err := <-errc:
				if !errors.Is(err, http.ErrServerClosed) {
					return fail(err)
				}
			case s := <-sig:
				fmt.Fprintf(c.App.ErrWriter, "facever: %v: finishing requests in flight\n", s)
				ctx, cancel := context.WithTimeout(context.Background(), c.Duration("shutdown-timeout"))
				defer cancel()
				if err := hs.Shutdown(ctx); err != nil {
					return fail(fmt.Errorf("shutdown: %w", err))
				}
			}
			return nil
		},
	}
}

// keyDoc is a key as the API shows it (schema/defs.json's api_key): its
// prefix is its id; key, the key itself, only when it was just made.
func keyDoc(k enroll.APIKey, key string) map[string]any {
	d := map[string]any{"id": k.Prefix, "name": k.Name, "prefix": k.Prefix, "scopes": k.Scopes, "created": k.Created}
	if key != "" {
		d["key"] = key
	}
	return d
}

// keysDoc is apikey list --json (schema/apikey-list.json).
func keysDoc(keys []enroll.APIKey) map[string]any {
	out := make([]map[string]any, len(keys))
	for i, k := range keys {
		out[i] = keyDoc(k, "")
	}
	return map[string]any{"keys": out}
}

func apikeyCommand() *cli.Command {
	return &cli.Command{
		Name:  "apikey",
		Usage: "create, list and revoke the API keys of facever serve",
		Subcommands: []*cli.Command{
			{
				Name:  "create",
				Usage: "make a key; it is printed once and stored only as its sha256",
				Flags: []cli.Flag{galleryFlag, &cli.StringFlag{Name: "name", Required: true, Usage: "whom the key is for"},
					&cli.StringSliceFlag{Name: "scope", Usage: "what the key may do: admin (everything), enroll, recognize (verify and identify only); repeatable (default admin)"}, jsonFlag},
				Action: func(c *cli.Context) error {
					g, err := openSpec(c, enroll.Options{})
					if err != nil {
						return fail(err)
					}
					defer g.Close()
					scopes := c.StringSlice("scope")
					if len(scopes) == 0 {
						scopes = []string{enroll.ScopeAdmin}
					}
					key, rec, err := g.CreateScopedAPIKey(c.String("name"), scopes)
					if err != nil {
						return fail(err)
					}
					if c.Bool("json") {
						return writeJSONOrFail(c, keyDoc(rec, key))
					}
					fmt.Fprintln(c.App.Writer, key)
					fmt.Fprintf(c.App.ErrWriter, "API key for %s (prefix %s, scopes %s): keep it secret, it cannot be shown again\n", rec.Name, rec.Prefix, strings.Join(rec.Scopes, ","))
					return nil
				},
			},
			{
				Name:  "list",
				Usage: "the keys' names and prefixes",
				Flags: []cli.Flag{galleryFlag, jsonFlag},
				Action: func(c *cli.Context) error {
					g, err := openGallery(c, nil, true)
					if err != nil {
						return fail(err)
					}
					defer g.Close()
					keys, err := g.APIKeys()
					if err != nil {
						return fail(err)
					}
					// By prefix, as GET /v1/keys lists them (apikey list --server).
					sort.Slice(keys, func(i, j int) bool { return keys[i].Prefix < keys[j].Prefix })
					if c.Bool("json") {
						return writeJSONOrFail(c, keysDoc(keys))
					}
					for _, k := range keys {
						fmt.Fprintf(c.App.Writer, "%s…  %s  [%s]  created %s\n", k.Prefix, k.Name, strings.Join(k.Scopes, ","), k.Created.Format("2006-01-02 15:04"))
					}
					return nil
				},
			},
			{
				Name:      "revoke",
				Usage:     "delete the key with this prefix",
				ArgsUsage: "PREFIX",
				Flags:     []cli.Flag{galleryFlag},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return cli.Exit("revoke needs the key's prefix (see `facever apikey list`)", exitError)
					}
					g, err := openSpec(c, enroll.Options{})
					if err != nil {
						return fail(err)
					}
					defer g.Close()
					n, err := g.RevokeAPIKey(c.Args().First())
					if err != nil {
						return fail(err)
					}
					if n == 0 {
						return fail(fmt.Errorf("no key with prefix %q", c.Args().First()))
					}
					fmt.Fprintf(c.App.Writer, "revoked %d key(s)\n", n)
					return nil
				},
			},
		},
	}
}

// flagOrZero is a threshold flag's value when given, else 0 (the
// server's default: the model's, or its head's).
func flagOrZero(c *cli.Context, name string) float64 {
	if c.IsSet(name) {
		return c.Float64(name)
	}
	return 0
}

// serveModels are the models of `serve`: the global flags, --head, and a
// worker (a set of loaded models) per core.
func serveModels(c *cli.Context) fv.Options {
	cfg := pipelineConfig(c)
	return fv.Options{ModelsDir: cfg.ModelsDir, Runtime: cfg.Runtime, Model: cfg.Model, Detect: cfg.Detect, Head: c.String("head")}
}
