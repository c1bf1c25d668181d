package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/facever/facever/enroll"
	"github.com/facever/facever/internal/testmodels"
	"github.com/facever/facever/models"
)

// buildFacever builds the command into dir and returns the binary's path.
func buildFacever(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "facever")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freeAddrs returns n loopback addresses free a moment ago (the nodes of a
// cluster must know each other's addresses before any of them listens).
func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	var lns []net.Listener
	var out []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

// node is one `facever serve` process.
type node struct {
	t    testing.TB
	bin  string
	args []string
	addr string
	url  string
	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan struct{}
}

// startNode runs `facever serve --addr addr args...` and waits until its
// /healthz answers.
func startNode(t testing.TB, bin, addr string, args ...string) *node {
	t.Helper()
	n := &node{t: t, bin: bin, args: args, addr: addr, url: "http://" + addr}
	n.start()
	t.Cleanup(func() { n.kill() })
	return n
}

func (n *node) start() {
	n.t.Helper()
	n.log = &lockedBuffer{}
	n.cmd = exec.Command(n.bin, append([]string{"serve", "--addr", n.addr, "--access-log", os.DevNull}, n.args...)...)
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	// The node dies with the test binary, whatever happens to the test.
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(n.cmd, n.done)
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case <-n.done:
			n.t.Fatalf("serve %v exited: %s", n.args, n.log.String())
		default:
		}
		if resp, err := http.Get(n.url + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("serve %v did not answer /healthz: %s", n.args, n.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill stops the process with SIGKILL and waits for it.
func (n *node) kill() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	select {
	case <-n.done:
		return
	default:
	}
	n.cmd.Process.Signal(syscall.SIGCONT) // a stopped process dies too
	n.cmd.Process.Kill()
	<-n.done
}

func (n *node) signal(s syscall.Signal) {
	n.t.Helper()
	if err := n.cmd.Process.Signal(s); err != nil {
		n.t.Fatal(err)
	}
}

// call sends a JSON request with key and decodes the JSON answer.
func call(t testing.TB, method, url string, body any, key string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s %s: %d, not JSON: %q", method, url, resp.StatusCode, data)
	}
	return resp.StatusCode, doc
}

func errorCode(doc map[string]any) string {
	e, _ := doc["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// synthetic enrolls n identities of 1–3 templates with face-like
// embeddings (see internal/server's syntheticFaces: strangers at about
// 0.1–0.3, one person's photos at 0.6–0.8).
func synthetic(t testing.TB, g enroll.Store, n, dim int, seed uint64) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 11))
	unit := func() []float32 {
		v := make([]float32, dim)
		var sq float64
		for i := range v {
			v[i] = float32(r.NormFloat64())
			sq += float64(v[i]) * float64(v[i])
		}
		for i := range v {
			v[i] /= float32(math.Sqrt(sq))
		}
		return v
	}
	common := unit()
	var items []enroll.BatchItem
	for p := range n {
		centre := unit()
		for range 1 + p%3 {
			noise := unit()
			e := make([]float32, dim)
			for i := range e {
				e[i] = 0.45*common[i] + centre[i] + 0.7*noise[i]
			}
			items = append(items, enroll.BatchItem{Name: fmt.Sprintf("synthetic %05d", p), Template: enroll.Template{Embedding: e, Source: "synthetic"}})
		}
		if len(items) >= 2000 || p == n-1 {
			if _, err := g.EnrollBatch(items, true); err != nil {
				t.Fatal(err)
			}
			items = items[:0]
		}
	}
}

// johnsPhotos returns person's photo paths, sorted.
func johnsPhotos(t testing.TB, person string) []string {
	files, _ := filepath.Glob(filepath.Join(johnsDir, person, "*.jpg"))
	sort.Strings(files)
	if len(files) < 8 {
		t.Fatalf("%s: %d photos", person, len(files))
	}
	return files
}

func b64file(t testing.TB, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// TestServeShards runs real `facever serve` processes on loopback: one
// holding a gallery of 2,000 synthetic identities and the five johns
// people, and three holding a shard each of copies of it (`--shard i/3
// --shards ...`). Every shard node's identify answers exactly as the whole
// node on real photos (all_faces on a group photo too). A shard node
// stopped with SIGSTOP makes identify fail with 503 shard_unavailable
// naming it within --shard-timeout; partial=true answers from the others,
// flagged; after SIGCONT the answers are whole again.
func TestServeShards(t *testing.T) {
	modelsDir := testmodels.Dir(t)
	bin := buildFacever(t)
	dir := t.TempDir()
	whole := filepath.Join(dir, "whole.db")
	g, err := enroll.Open(whole, enroll.Options{Model: models.Feature.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	synthetic(t, g, 2000, 512, 5)
	key, _, err := g.CreateScopedAPIKey("ci", []string{enroll.ScopeRecognize})
	if err != nil {
		t.Fatal(err)
	}
	g.Close()
	people := []string{"John_Simm", "John_Salley", "John_Savage", "John_Schneider", "John_Shimkus"}
	var probes []string
	for _, p := range people {
		photos := johnsPhotos(t, p)
		if code, _, errs := facever(t, "--models", modelsDir, "enroll", "-g", whole, "--name", p, photos[0], photos[1], photos[2]); code != exitOK {
			t.Fatalf("enroll %s: %s", p, errs)
		}
		probes = append(probes, photos[6])
	}
	group := filepath.Join("..", "..", "testdata", "external", "groups", "sample1.jpg")
	if _, err := os.Stat(group); err != nil {
		t.Fatalf("run `make setup` (group photos): %v", err)
	}
	probes = append(probes, group)
	g, err = enroll.Open(whole, enroll.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := g.Backup(filepath.Join(dir, fmt.Sprintf("shard%d.db", i))); err != nil {
			t.Fatal(err)
		}
	}
	g.Close()

	addrs := freeAddrs(t, 4)
	urls := []string{"http://" + addrs[1], "http://" + addrs[2], "http://" + addrs[3]}
	var nodes [4]*node
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			if i == 0 {
				nodes[0] = startNode(t, bin, addrs[0], "--models", modelsDir, "--gallery", whole)
				return
			}
			nodes[i] = startNode(t, bin, addrs[i], "--models", modelsDir, "--gallery", filepath.Join(dir, fmt.Sprintf("shard%d.db", i-1)),
				"--shard", fmt.Sprintf("%d/3", i-1), "--shards", strings.Join(urls, ","), "--shard-timeout", "1s")
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	identify := func(n *node, photo string, extra map[string]any) (int, map[string]any) {
		body := map[string]any{"image": b64file(t, photo), "top": 10, "all_faces": true}
		for k, v := range extra {
			body[k] = v
		}
		return call(t, "POST", n.url+"/v1/identify", body, key)
	}
	for pi, photo := range probes {
		code, want := identify(nodes[0], photo, nil)
		if code != 200 {
			t.Fatalf("whole node, probe %d: %d %v", pi, code, want)
		}
		if pi < len(people) && (want["match"] == nil || want["match"].(map[string]any)["name"] != people[pi]) {
			t.Errorf("probe %d (%s): %v", pi, people[pi], want["top"])
		}
		for i := 1; i <= 3; i++ {
			code, got := identify(nodes[i], photo, nil)
			if code != 200 || got["shards"] != float64(3) || got["partial"] != false {
				t.Fatalf("shard node %d, probe %d: %d %v", i-1, pi, code, got)
			}
			delete(got, "shards")
			delete(got, "partial")
			if a, b := jsonString(got), jsonString(want); a != b {
				t.Errorf("probe %d: shard node %d answered\n%s\nthe whole node\n%s", pi, i-1, a, b)
			}
		}
	}

	// SIGSTOP of shard 2's node: a clean 503 within --shard-timeout.
	nodes[3].signal(syscall.SIGSTOP)
	start := time.Now()
	code, doc := identify(nodes[1], probes[0], nil)
	d := time.Since(start)
	msg, _ := doc["error"].(map[string]any)["message"].(string)
	if code != 503 || errorCode(doc) != "shard_unavailable" || !strings.Contains(msg, "shard 2/3") || !strings.Contains(msg, urls[2]) {
		t.Fatalf("shard 2 stopped: %d %v", code, doc)
	}
	if d < time.Second || d > 5*time.Second {
		t.Errorf("stopped shard reported after %v, want about --shard-timeout 1s", d)
	}
	code, doc = identify(nodes[2], probes[0], map[string]any{"partial": true})
	if code != 200 || doc["partial"] != true || len(doc["missing_shards"].([]any)) != 1 {
		t.Fatalf("partial=true, shard 2 stopped: %d %v", code, doc)
	}
	nodes[3].signal(syscall.SIGCONT)
	code, doc = identify(nodes[1], probes[0], nil)
	if code != 200 || doc["partial"] != false {
		t.Fatalf("after SIGCONT: %d %v", code, doc)
	}
	t.Logf("SIGSTOPped shard: 503 shard_unavailable after %v", d)
}

func decodeJSON(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
