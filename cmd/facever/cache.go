package main

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/urfave/cli/v2"

	"github.com/facever/facever/internal/featcache"
)

// cacheFileFlag names the cache file of `facever cache` (the same default
// as --cache of eval, identify-eval and crossval).
var cacheFileFlag = &cli.StringFlag{Name: "cache", Usage: "feature cache file (default: $FACEVER_CACHE, else the user cache directory's facever/features.db)"}

func cacheFile(c *cli.Context) string {
	if p := c.String("cache"); p != "" && p != "off" {
		return p
	}
	return featcache.DefaultPath()
}

func cacheCommand() *cli.Command {
	return &cli.Command{
		Name:  "cache",
		Usage: "show or delete the feature cache of eval, identify-eval and crossval",
		Description: `The feature cache keeps, for every photo that eval, identify-eval or crossval
read, the sha256 of its content and the backbone feature of its largest face
(biometric data: it identifies the people in the photos). It lives in
$FACEVER_CACHE, else the user cache directory's facever/features.db
(~/.cache/facever/features.db on Linux), readable by its owner only.

Example:
   facever cache info
   facever cache purge`,
		Subcommands: []*cli.Command{
			{
				Name:  "info",
				Usage: "where the cache is, its size and how many photos it holds",
				Flags: []cli.Flag{cacheFileFlag, jsonFlag},
				Action: func(c *cli.Context) error {
					path := cacheFile(c)
					st, err := featcache.Stat(path)
					if errors.Is(err, fs.ErrNotExist) {
						st, err = featcache.Stats{Path: path}, nil
					}
					if err != nil {
						return fail(err)
					}
					if c.Bool("json") {
						return writeJSONOrFail(c, st)
					}
					if st.Mode == "" {
						fmt.Fprintf(c.App.Writer, "%s: no cache file\n", path)
						return nil
					}
					fmt.Fprintf(c.App.Writer, "%s: %d photos' features, %d bytes, %s\n", path, st.Entries, st.Bytes, st.Mode)
					return nil
				},
			},
			{
				Name:  "purge",
				Usage: "delete the cache file and every feature in it",
				Flags: []cli.Flag{cacheFileFlag, jsonFlag},
				Action: func(c *cli.Context) error {
					path := cacheFile(c)
					st, err := featcache.Purge(path)
					if errors.Is(err, fs.ErrNotExist) {
						st, err = featcache.Stats{Path: path}, nil
					}
					if err != nil {
						return fail(err)
					}
					if c.Bool("json") {
						return writeJSONOrFail(c, map[string]any{"path": path, "removed": st.Mode != "", "entries": st.Entries, "bytes": st.Bytes})
					}
					if st.Mode == "" {
						fmt.Fprintf(c.App.Writer, "%s: no cache file, nothing to purge\n", path)
						return nil
					}
					fmt.Fprintf(c.App.Writer, "removed %s: %d photos' features, %d bytes\n", path, st.Entries, st.Bytes)
					return nil
				},
			},
		},
	}
}
