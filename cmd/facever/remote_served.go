package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
)

// While `facever serve` holds a gallery file (bbolt's exclusive lock) it
// keeps a sidecar beside it, GALLERY.serve, saying where it listens and
// its pid. A local command that finds the gallery locked and the sidecar's
// process alive says so at once, with the server's URL, instead of
// waiting for the lock.

// servedSuffix is appended to the gallery's path to name the sidecar.
const servedSuffix = ".serve"

// servedInfo is the sidecar's content.
type servedInfo struct {
	URL     string    `json:"url"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
}

// announceServed writes the sidecar of gallery (a file) for a server
// listening on addr; the returned func removes it (if it is still this
// process's). A gallery that is not a file (a postgres:// URL) has none.
func announceServed(gallery, scheme string, addr net.Addr) (func(), error) {
	if fi, err := os.Stat(gallery); err != nil || !fi.Mode().IsRegular() {
		return func() {}, nil
	}
	info := servedInfo{URL: scheme + "://" + reachable(addr), PID: os.Getpid(), Started: time.Now().UTC()}
	data, err := json.Marshal(info)
	if err != nil {
		return nil, err
	}
	side := gallery + servedSuffix
	tmp, err := os.CreateTemp(filepath.Dir(side), filepath.Base(side)+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("sidecar %s: %w", side, err)
	}
	_, werr := tmp.Write(append(data, '\n'))
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp.Name(), 0o644)); err != nil {
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("sidecar %s: %w", side, err)
	}
	if err := os.Rename(tmp.Name(), side); err != nil {
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("sidecar %s: %w", side, err)
	}
	return func() {
		if cur, ok := readServed(gallery); ok && cur.PID == info.PID && cur.Started.Equal(info.Started) {
			os.Remove(side)
		}
	}, nil
}

// reachable is addr as a client on this machine dials it: an unspecified
// host (0.0.0.0, ::) is loopback.
func reachable(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// readServed reads gallery's sidecar.
func readServed(gallery string) (servedInfo, bool) {
	data, err := os.ReadFile(gallery + servedSuffix)
	if err != nil {
		return servedInfo{}, false
	}
	var info servedInfo
	if json.Unmarshal(data, &info) != nil || info.URL == "" || info.PID <= 0 {
		return servedInfo{}, false
	}
	return info, true
}

// alive reports whether process pid exists.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// locked reports whether another open file holds path's lock exclusively
// (a shared lock taken without waiting fails).
func locked(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// servedBy returns the server holding gallery, when one does: its sidecar
// names a live process and the file is locked. A stale sidecar (a server
// that was killed) is ignored.
func servedBy(gallery string) (servedInfo, bool) {
	info, ok := readServed(gallery)
	if !ok || !alive(info.PID) || !locked(gallery) {
		return servedInfo{}, false
	}
	return info, true
}

// servedError is the error of a local command on a gallery that a running
// server holds, naming the --server form of cmd when it has one.
func servedError(c *cli.Context) error {
	gallery, cmd := gallerySpec(c), c.Command
	if gallery == "" || strings.Contains(gallery, "://") {
		return nil
	}
	info, ok := servedBy(gallery)
	if !ok {
		return nil
	}
	msg := fmt.Sprintf("gallery %s is held by a running facever serve (pid %d) at %s", gallery, info.PID, info.URL)
	hasServer := false
	for _, f := range cmd.Flags {
		if f.Names()[0] == "server" {
			hasServer = true
		}
	}
	if hasServer {
		return fmt.Errorf("%s: reach it through the server, `facever %s --server %s --key KEY` (or $%s and $%s), or stop the server", msg, commandPath(c), info.URL, envServer, envKey)
	}
	return fmt.Errorf("%s: stop it first (kill %s), or use its REST API at %s (the gallery and apikey commands take --server %s --key KEY)", msg, strconv.Itoa(info.PID), info.URL, info.URL)
}

// guardServed makes every command with a --gallery flag, subcommands
// included, check first whether a running server holds that gallery.
func guardServed(cmds []*cli.Command) []*cli.Command {
	for _, cmd := range cmds {
		guardServed(cmd.Subcommands)
		if cmd.Action == nil || !hasGalleryFlag(cmd) {
			continue
		}
		action := cmd.Action
		cmd.Action = func(c *cli.Context) error {
			if c.IsSet("server") {
				return action(c) // --server with --gallery: the action's error
			}
			if err := servedError(c); err != nil {
				return fail(err)
			}
			return action(c)
		}
	}
	return cmds
}

// commandPath is the command's words, "gallery list".
func commandPath(c *cli.Context) string {
	var names []string
	for _, x := range c.Lineage() {
		if x.Command != nil && x.Command.Name != "" && x.Command.Name != "facever" { // the app's own context
			names = append([]string{x.Command.Name}, names...)
		}
	}
	return strings.Join(names, " ")
}

func hasGalleryFlag(cmd *cli.Command) bool {
	for _, f := range cmd.Flags {
		if f.Names()[0] == "gallery" {
			return true
		}
	}
	return false
}
