package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

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
/openapi.json, /healthz, /metrics. Every /v1 endpoint needs an API key made with
'facever apikey create' (stored hashed in the gallery). It listens on 127.0.0.1 only
unless --addr says otherwise. SIGINT or SIGTERM stop it gracefully: requests in flight
finish, then the gallery is closed.

Example:
   facever apikey create --gallery team.db --name my-app
   facever serve --gallery team.db --addr 127.0.0.1:8080`,
		Flags: []cli.Flag{
			galleryFlag,
			&cli.StringFlag{Name: "addr", Value: "127.0.0.1:8080", Usage: "address to listen on"},
			&cli.StringFlag{Name: "tls-cert", Usage: "serve HTTPS with this certificate (PEM)"},
			&cli.StringFlag{Name: "tls-key", Usage: "the certificate's private key (PEM)"},
			&cli.Float64Flag{Name: "threshold", Value: verify.DefaultThreshold, Usage: "default threshold of verify and identify (default: the model's)"},
			headFlag,
			&cli.Int64Flag{Name: "max-body", Value: 16 << 20, Usage: "largest request body in bytes (413 above)"},
			&cli.IntFlag{Name: "max-pixels", Value: 40_000_000, Usage: "largest image, width×height (413 above)"},
			&cli.DurationFlag{Name: "read-timeout", Value: 30 * time.Second, Usage: "time to read a whole request"},
			&cli.DurationFlag{Name: "write-timeout", Value: 60 * time.Second, Usage: "time to write a response"},
			&cli.DurationFlag{Name: "shutdown-timeout", Value: 30 * time.Second, Usage: "how long requests in flight may take to finish at shutdown"},
		},
		Action: func(c *cli.Context) error {
			if (c.String("tls-cert") == "") != (c.String("tls-key") == "") {
				return cli.Exit("--tls-cert and --tls-key go together", exitError)
			}
			backbone, err := models.Backbone(c.String("model"))
			if err != nil {
				return fail(err)
			}
			hid, err := headID(c)
			if err != nil {
				return fail(err)
			}
			g, err := enroll.Open(c.String("gallery"), enroll.Options{Model: backbone.SHA256, Head: hid})
			if err != nil {
				return fail(err)
			}
			defer g.Close()
			keys, err := g.APIKeys()
			if err != nil {
				return fail(err)
			}
			if len(keys) == 0 {
				return fail(fmt.Errorf("gallery %s has no API key, so no client could call the API: make one with `facever apikey create --gallery %s --name NAME`", c.String("gallery"), c.String("gallery")))
			}
			srv, err := server.New(server.Config{
				Pipeline:     pipelineConfig(c),
				Gallery:      g,
				Threshold:    threshold(c, backbone),
				Head:         c.String("head"),
				MaxBodyBytes: c.Int64("max-body"),
				MaxPixels:    c.Int("max-pixels"),
			})
			if err != nil {
				return fail(err)
			}
			defer srv.Close()
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
			fmt.Fprintf(c.App.ErrWriter, "facever: serving %s://%s (gallery %s, %d API key(s)); Ctrl-C stops\n", scheme, ln.Addr(), c.String("gallery"), len(keys))
			errc := make(chan error, 1)
			go func() {
				if scheme == "https" {
					errc <- hs.ServeTLS(ln, c.String("tls-cert"), c.String("tls-key"))
				} else {
					errc <- hs.Serve(ln)
				}
			}()
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
			defer signal.Stop(sig)
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

func apikeyCommand() *cli.Command {
	return &cli.Command{
		Name:  "apikey",
		Usage: "create, list and revoke the API keys of facever serve",
		Subcommands: []*cli.Command{
			{
				Name:  "create",
				Usage: "make a key; it is printed once and stored only as its sha256",
				Flags: []cli.Flag{galleryFlag, &cli.StringFlag{Name: "name", Required: true, Usage: "whom the key is for"}, jsonFlag},
				Action: func(c *cli.Context) error {
					g, err := enroll.Open(c.String("gallery"), enroll.Options{})
					if err != nil {
						return fail(err)
					}
					defer g.Close()
					key, rec, err := g.CreateAPIKey(c.String("name"))
					if err != nil {
						return fail(err)
					}
					if c.Bool("json") {
						return writeJSONOrFail(c, map[string]any{"key": key, "name": rec.Name, "prefix": rec.Prefix, "created": rec.Created})
					}
					fmt.Fprintln(c.App.Writer, key)
					fmt.Fprintf(c.App.ErrWriter, "API key for %s (prefix %s): keep it secret, it cannot be shown again\n", rec.Name, rec.Prefix)
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
					if c.Bool("json") {
						return writeJSONOrFail(c, map[string]any{"keys": keys})
					}
					for _, k := range keys {
						fmt.Fprintf(c.App.Writer, "%s…  %s  created %s\n", k.Prefix, k.Name, k.Created.Format("2006-01-02 15:04"))
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
					g, err := enroll.Open(c.String("gallery"), enroll.Options{})
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
