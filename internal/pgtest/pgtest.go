// Package pgtest runs a private PostgreSQL cluster for tests: initdb in a
// temporary folder, the server on a free loopback port (and a unix socket in
// that folder), no system service. One cluster is shared by the tests of a
// test binary (started on first use by URL, stopped by Main); each test gets
// a database of its own. Fault tests can start a cluster of their own (Start)
// and restart, stop, pause and resume it.
//
// The binaries are looked up under /usr/lib/postgresql/*/bin (Debian's
// postgresql package), then on PATH. When the process runs as root (CI does)
// the cluster runs as the user postgres, since initdb and postgres refuse
// root. The server is made to die with the test binary (Pdeathsig), even on a
// panic or a test timeout, and each cluster's folder is removed when it stops
// (or, after a crash, by the next cluster started on the machine).
//
// Without PostgreSQL the tests that need it are skipped, with a message
// saying how to install it; with FACEVER_REQUIRE_POSTGRES=1 they fail.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// RequireEnv names the variable that turns a missing PostgreSQL from a skip
// into a failure.
const RequireEnv = "FACEVER_REQUIRE_POSTGRES"

// User is the superuser of a test cluster (trust authentication, loopback
// only).
const User = "postgres"

// dirPrefix starts the name of every cluster folder in os.TempDir().
const dirPrefix = "facever-pgtest-"

var (
	sharedOnce sync.Once
	shared     *Cluster
	sharedErr  error
)

// Main runs the tests of m and stops the shared cluster, if one was started,
// before exiting: call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if shared != nil {
		if err := shared.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stopping the cluster: %v\n", err)
		}
	}
	os.Exit(code)
}

// Shared returns the test binary's shared cluster, starting it on first use;
// it skips t when PostgreSQL is not installed (fails it when
// FACEVER_REQUIRE_POSTGRES=1). Do not restart or pause the shared cluster:
// other tests use it; start a private one with Start.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	sharedOnce.Do(func() { shared, sharedErr = start() })
	if sharedErr != nil {
		unavailable(t, sharedErr)
	}
	return shared
}

// URL returns the URL of a new, empty database of the shared cluster, for t
// alone (dropped when t ends).
func URL(t testing.TB) string {
	t.Helper()
	return Shared(t).URL(t)
}

// Start starts a private cluster for t, stopped when t ends: for tests that
// restart or pause the server.
func Start(t testing.TB) *Cluster {
	t.Helper()
	c, err := start()
	if err != nil {
		unavailable(t, err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("pgtest: stopping the cluster: %v", err)
		}
	})
	return c
}

// errMissing marks the absence of PostgreSQL (a skip, not a failure).
var errMissing = errors.New("PostgreSQL is not installed")

func unavailable(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, errMissing) && os.Getenv(RequireEnv) != "1" {
		t.Skipf("pgtest: %v (install it with scripts/setup.sh, or Debian's postgresql package; set %s=1 to fail instead of skipping)", err, RequireEnv)
	}
	t.Fatalf("pgtest: %v", err)
}

// Cluster is a running test cluster.
type Cluster struct {
	bin  string // folder of initdb and postgres
	dir  string // the cluster's folder: data/ and the socket
	port int
	cred *syscall.Credential // nil: run as this process's user

	mu     sync.Mutex
	proc   *exec.Cmd
	exited chan struct{} // closed when proc has exited
	paused bool
	closed bool
	dbs    atomic.Int64
}

// Port is the server's TCP port on 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// Dir is the cluster's folder (data directory in Dir()/data).
func (c *Cluster) Dir() string { return c.dir }

// DatabaseURL is the URL of database db of the cluster.
func (c *Cluster) DatabaseURL(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", User, c.port, db)
}

// URL creates a new, empty database for t and returns its URL; the database
// is dropped when t ends (with its connections).
func (c *Cluster) URL(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%s", c.dbs.Add(1), sanitize(t.Name()))
	if err := c.CreateDatabase(name); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		c.mu.Lock()
		up := c.proc != nil && !c.paused
		c.mu.Unlock()
		if up {
			_ = c.exec(fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", pgx.Identifier{name}.Sanitize()))
		}
	})
	return c.DatabaseURL(name)
}

// CreateDatabase creates database name (empty, UTF-8).
func (c *Cluster) CreateDatabase(name string) error {
	strategy := ""
	if version(c.bin) >= 15 {
		// Faster than 15's default (WAL_LOG) for a small template.
		strategy = " STRATEGY FILE_COPY"
	}
	return c.exec(fmt.Sprintf("CREATE DATABASE %s TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'%s", pgx.Identifier{name}.Sanitize(), strategy))
}

// exec runs one statement in the cluster's postgres database.
func (c *Cluster) exec(sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DatabaseURL("postgres"))
	if err != nil {
		return fmt.Errorf("connect to the test cluster: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() >= 40 {
			break
		}
	}
	return b.String()
}

// binDir finds the folder holding initdb and postgres: the newest
// /usr/lib/postgresql/N/bin, else initdb's folder on PATH.
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		d := filepath.Dir(p)
		if isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w: no initdb and postgres under /usr/lib/postgresql/*/bin or on PATH", errMissing)
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// start makes and starts a new cluster.
func start() (*Cluster, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	removeStale()
	c := &Cluster{bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup(User)
		if err != nil {
			return nil, fmt.Errorf("%w: running as root, and PostgreSQL refuses root, but there is no user %q to run it as (Debian's postgresql package creates it): %v", errMissing, User, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}
	}
	if c.dir, err = os.MkdirTemp(tempBase(c.cred != nil), dirPrefix); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(c.dir)
		}
	}()
	// The owner's pid, so that a later run can remove the folder of a
	// crashed one.
	if err := os.WriteFile(filepath.Join(c.dir, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return nil, err
	}
	if c.cred != nil {
		if err := os.Chown(c.dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return nil, err
		}
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", c.data(), "-U", User, "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Pdeathsig: syscall.SIGKILL}
	initdb.Dir = c.dir
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	if c.port, err = freePort(); err != nil {
		return nil, err
	}
	if err := c.Start(); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

func (c *Cluster) data() string { return filepath.Join(c.dir, "data") }

// tempBase is the folder for cluster folders: os.TempDir(), unless the
// server runs as another user (asOther) who cannot reach it (a $TMPDIR
// under root's home): then /tmp.
func tempBase(asOther bool) string {
	base := os.TempDir()
	if !asOther {
		return base
	}
	for d := base; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil || st.Mode().Perm()&0o001 == 0 {
			return "/tmp"
		}
		if d == filepath.Dir(d) {
			return base
		}
	}
}

// removeStale removes the folders of clusters whose test binary has died.
func removeStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	if os.TempDir() != "/tmp" {
		more, _ := filepath.Glob(filepath.Join("/tmp", dirPrefix+"*"))
		dirs = append(dirs, more...)
	}
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "owner"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) == nil || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			continue
		}
		os.RemoveAll(d)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start starts the server of a stopped cluster (on the same port) and waits
// until it accepts connections.
func (c *Cluster) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errors.New("pgtest: the cluster is closed")
	}
	if c.proc != nil {
		return nil
	}
	args := []string{"-D", c.data(), "-p", strconv.Itoa(c.port), "-k", c.dir,
		"-c", "listen_addresses=127.0.0.1",
		// A test cluster: no fsync (the data dies with it; a crash of
		// the server alone, see Crash, loses nothing that was
		// acknowledged: the WAL is written to the OS at each commit).
		"-c", "fsync=off", "-c", "full_page_writes=off",
		"-c", "max_connections=300", "-c", "shared_buffers=128MB",
		"-c", "log_min_messages=FATAL", "-c", "logging_collector=off"}
	cmd := exec.Command(filepath.Join(c.bin, "postgres"), args...)
	cmd.Dir = c.dir
	log, err := os.OpenFile(filepath.Join(c.dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	// SIGQUIT (immediate shutdown: the backends go too) when the thread
	// that started it ends, i.e. when this process dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Setpgid: true, Pdeathsig: syscall.SIGQUIT}
	started := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		// Pdeathsig follows the OS thread that forked the child: keep
		// this one alive, and only this goroutine on it, for as long as
		// the server runs.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			runtime.UnlockOSThread()
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(exited)
		runtime.UnlockOSThread()
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	c.proc, c.exited, c.paused = cmd, exited, false
	return c.waitReady()
}

// waitReady waits up to 60 s for the server to answer (c.mu held).
func (c *Cluster) waitReady() error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, c.DatabaseURL("postgres"))
		if err == nil {
			conn.Close(ctx)
			cancel()
			return nil
		}
		cancel()
		select {
		case <-c.exited:
			log, _ := os.ReadFile(filepath.Join(c.dir, "postgres.log"))
			c.proc = nil
			return fmt.Errorf("postgres exited at start-up: %s", tail(log))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres did not accept connections within 60 s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Stop shuts the server down (fast shutdown: open transactions are rolled
// back, clients disconnected) and waits for it to exit; the data stays,
// and Start starts it again.
func (c *Cluster) Stop() error {
	return c.stop(syscall.SIGINT)
}

// Crash kills the server at once (immediate shutdown, as after a power
// loss of the server alone: the next Start recovers from the WAL).
func (c *Cluster) Crash() error {
	return c.stop(syscall.SIGQUIT)
}

func (c *Cluster) stop(sig syscall.Signal) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc == nil {
		return nil
	}
	if c.paused {
		c.resume()
	}
	if err := c.proc.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop postgres: %w", err)
	}
	select {
	case <-c.exited:
	case <-time.After(60 * time.Second):
		// Stuck: kill its children while they are still its, then it.
		_ = syscall.Kill(c.proc.Process.Pid, syscall.SIGSTOP)
		for _, p := range children(c.proc.Process.Pid) {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		_ = syscall.Kill(c.proc.Process.Pid, syscall.SIGKILL)
		<-c.exited
	}
	c.proc = nil
	return nil
}

// Restart stops the server (fast shutdown) and starts it again on the same
// port: every client connection is cut.
func (c *Cluster) Restart() error {
	if err := c.Stop(); err != nil {
		return err
	}
	return c.Start()
}

// Pause stops the server and all its processes (SIGSTOP to the postmaster
// first, so that it forks no more, then to each of its children: the
// backends make sessions of their own, so a process group signal would
// miss them), as a network partition would look to clients: connections
// stay open and nothing answers. Resume continues it.
func (c *Cluster) Pause() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc == nil {
		return errors.New("pgtest: the server is not running")
	}
	pid := c.proc.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("pgtest: pause: %w", err)
	}
	c.paused = true
	for _, p := range children(pid) {
		_ = syscall.Kill(p, syscall.SIGSTOP)
	}
	return nil
}

// Resume continues a paused server (SIGCONT to its children, then to it).
func (c *Cluster) Resume() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc == nil {
		return errors.New("pgtest: the server is not running")
	}
	c.resume()
	return nil
}

// resume continues every process of the server (c.mu held).
func (c *Cluster) resume() {
	pid := c.proc.Process.Pid
	for _, p := range children(pid) {
		_ = syscall.Kill(p, syscall.SIGCONT)
	}
	_ = syscall.Kill(pid, syscall.SIGCONT)
	c.paused = false
}

// children lists the processes whose parent is pid (from /proc).
func children(pid int) []int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []int
	for _, st := range stats {
		b, err := os.ReadFile(st)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parens.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil && ppid == pid {
			if p, err := strconv.Atoi(filepath.Base(filepath.Dir(st))); err == nil {
				out = append(out, p)
			}
		}
	}
	return out
}

// Close stops the server and removes the cluster's folder.
func (c *Cluster) Close() error {
	err := c.Stop()
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	if rerr := os.RemoveAll(c.dir); err == nil {
		err = rerr
	}
	return err
}
