package pgtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) {
	if os.Getenv("PGTEST_CHILD") == "1" {
		// Re-executed by TestDiesWithParent: start a cluster, print its
		// postmaster's pid, then wait to be killed.
		c, err := start()
		if err != nil {
			os.Stderr.WriteString(err.Error())
			os.Exit(2)
		}
		os.Stdout.WriteString(strconv.Itoa(c.proc.Process.Pid) + " " + c.dir + "\n")
		select {}
	}
	Main(m)
}

func query(t *testing.T, url, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var s string
	if !strings.HasPrefix(sql, "SELECT") {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
		return ""
	}
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// Each test gets its own empty database, on a server that runs as a user
// other than root.
func TestURL(t *testing.T) {
	a, b := URL(t), URL(t)
	if a == b {
		t.Fatalf("two tests share %s", a)
	}
	query(t, a, "CREATE TABLE x (v int)")
	if got := query(t, b, "SELECT count(*)::text FROM pg_tables WHERE tablename = 'x'"); got != "0" {
		t.Fatalf("database b sees a's table: %s", got)
	}
	if got := query(t, a, "SELECT current_setting('server_version_num')"); got < "150000" {
		t.Logf("server version %s", got)
	}
	if os.Geteuid() == 0 {
		if got := query(t, a, "SELECT current_setting('data_directory')"); got == "" {
			t.Fatal("no data directory")
		}
		st, err := os.Stat(Shared(t).Dir())
		if err != nil || st.Sys().(*syscall.Stat_t).Uid == 0 {
			t.Fatalf("cluster folder owned by root: %v", err)
		}
	}
}

// Restart, Pause and Resume act on a private cluster: a paused server does
// not answer, a resumed one does, and a restarted one keeps its data.
func TestRestartPause(t *testing.T) {
	c := Start(t)
	url := c.URL(t)
	query(t, url, "CREATE TABLE kept (v int)")
	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	if got := query(t, url, "SELECT count(*)::text FROM pg_tables WHERE tablename = 'kept'"); got != "1" {
		t.Fatalf("table lost over a restart: %s", got)
	}
	open, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close(context.Background())
	if err := c.Pause(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err = pgx.Connect(ctx, url)
	cancel()
	if err == nil {
		t.Fatal("a paused server answered a new connection")
	}
	// A connection made before the pause does not answer either (its
	// backend is stopped too).
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	var one int
	err = open.QueryRow(ctx, "SELECT 1").Scan(&one)
	cancel()
	if err == nil {
		t.Fatal("a paused server answered on an open connection")
	}
	if err := c.Resume(); err != nil {
		t.Fatal(err)
	}
	query(t, url, "SELECT 'ok'")
	if err := c.Crash(); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	query(t, url, "SELECT 'ok'")
}

// A test binary killed with SIGKILL takes its server with it, and the next
// cluster removes the folder it left.
func TestDiesWithParent(t *testing.T) {
	Shared(t) // skips without PostgreSQL
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PGTEST_CHILD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	n, err := out.Read(buf)
	if err != nil {
		cmd.Process.Kill()
		t.Fatal(err)
	}
	fields := strings.Fields(string(buf[:n]))
	pid, _ := strconv.Atoi(fields[0])
	dir := fields[1]
	if syscall.Kill(pid, 0) != nil {
		t.Fatalf("postmaster %d not running", pid)
	}
	cmd.Process.Kill()
	cmd.Wait()
	deadline := time.Now().Add(20 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("postmaster %d outlived its parent by 20 s", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Its backends and helpers go with it (they watch the postmaster).
	for time.Now().Before(deadline) {
		if !anyProcessIn(dir) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if anyProcessIn(dir) {
		t.Fatalf("postgres processes of %s left behind", dir)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("folder %s already gone: %v", dir, err)
	}
	removeStale()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("stale folder %s not removed: %v", dir, err)
	}
}

// anyProcessIn reports whether a process runs with its working directory
// in dir (postgres runs in its data directory).
func anyProcessIn(dir string) bool {
	procs, _ := filepath.Glob("/proc/[0-9]*/cwd")
	for _, p := range procs {
		if l, err := os.Readlink(p); err == nil && strings.HasPrefix(l, dir) {
			return true
		}
	}
	return false
}
