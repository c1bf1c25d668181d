package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/facever/facever/enroll"
	"github.com/facever/facever/enroll/pgstore"
	"github.com/facever/facever/internal/pgtest"
	"github.com/facever/facever/internal/testmodels"
	"github.com/facever/facever/models"
)

// pgCluster is three sharded `facever serve` nodes over one PostgreSQL
// gallery, as the README's "Running several nodes" runs them.
type pgCluster struct {
	t     *testing.T
	bin   string
	model string
	db    *pgtest.Cluster
	url   string
	key   string
	addrs []string
	urls  []string
	nodes []*node
}

func (pc *pgCluster) shardArgs(i int) []string {
	return []string{"--models", pc.model, "--gallery", pc.url, "--shard", fmt.Sprintf("%d/3", i), "--shards", strings.Join(pc.urls, ","),
		"--shard-timeout", "1s", "--request-timeout", "8s"}
}

// dbState is what the database holds: the newest change, and per identity
// name its id and template ids.
type dbState struct {
	head      uint64
	templates map[string][]uint64
	ids       map[string]uint64
}

func (pc *pgCluster) state() dbState {
	pc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pc.url)
	if err != nil {
		pc.t.Fatal(err)
	}
	defer conn.Close(ctx)
	st := dbState{templates: map[string][]uint64{}, ids: map[string]uint64{}}
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(seq), 0) FROM facever.changes").Scan(&st.head); err != nil {
		pc.t.Fatal(err)
	}
	rows, err := conn.Query(ctx, "SELECT i.name, i.id, t.id FROM facever.identities i LEFT JOIN facever.templates t ON t.identity_id = i.id ORDER BY t.id")
	if err != nil {
		pc.t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var iid uint64
		var tid *uint64
		if err := rows.Scan(&name, &iid, &tid); err != nil {
			pc.t.Fatal(err)
		}
		st.ids[name] = iid
		if tid != nil {
			st.templates[name] = append(st.templates[name], *tid)
		}
	}
	if err := rows.Err(); err != nil {
		pc.t.Fatal(err)
	}
	return st
}

// converged waits until every running node's index has applied the
// database's newest change and holds exactly as many identities and
// templates as its shard has in the database; full: and every one of those
// templates (nothing missing, nothing applied twice).
func (pc *pgCluster) converged(what string, full bool, nodes ...*node) {
	pc.t.Helper()
	st := pc.state()
	var wantIDs, wantTemplates [3]int
	for name, iid := range st.ids {
		if len(st.templates[name]) == 0 {
			continue // in the gallery, not in the index
		}
		s := enroll.ShardOf(iid, 3)
		wantIDs[s]++
		wantTemplates[s] += len(st.templates[name])
	}
	probe := make([]float32, 512)
	probe[0] = 1
	for _, n := range nodes {
		i := shardOfNode(pc, n)
		var last map[string]any
		deadline := time.Now().Add(10 * time.Second)
		for {
			code, doc := call(pc.t, "POST", n.url+"/v1/shard/search", map[string]any{"embeddings": [][]float32{probe}, "top": 1}, pc.key)
			last = doc
			if code == 200 && uint64(doc["version"].(float64)) >= st.head {
				if int(doc["identities"].(float64)) != wantIDs[i] || int(doc["templates"].(float64)) != wantTemplates[i] {
					pc.t.Fatalf("%s: node of shard %d holds %v identities and %v templates at change %v, the database %d and %d at %d",
						what, i, doc["identities"], doc["templates"], doc["version"], wantIDs[i], wantTemplates[i], st.head)
				}
				if full {
					pc.everyTemplateFound(what, n, i)
				}
				break
			}
			if time.Now().After(deadline) {
				pc.t.Fatalf("%s: node of shard %d did not catch up with change %d in 10 s: %d %v", what, i, st.head, code, last)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// everyTemplateFound searches node n (of shard i) for the embedding of
// every template of its shard in the database: each must come back as its
// own identity's best template, at similarity 1. With the counts equal,
// nothing is missing and nothing is there twice.
func (pc *pgCluster) everyTemplateFound(what string, n *node, i int) {
	pc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pc.url)
	if err != nil {
		pc.t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT identity_id, id, embedding FROM facever.templates ORDER BY id")
	if err != nil {
		pc.t.Fatal(err)
	}
	type row struct{ iid, tid uint64 }
	var want []row
	var embs [][]float32
	for rows.Next() {
		var r row
		var b []byte
		if err := rows.Scan(&r.iid, &r.tid, &b); err != nil {
			pc.t.Fatal(err)
		}
		if enroll.ShardOf(r.iid, 3) != i {
			continue
		}
		e := make([]float32, len(b)/4)
		for j := range e {
			e[j] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*j:]))
		}
		want, embs = append(want, r), append(embs, e)
	}
	if err := rows.Err(); err != nil {
		pc.t.Fatal(err)
	}
	for lo := 0; lo < len(embs); lo += 256 {
		hi := min(lo+256, len(embs))
		code, doc := call(pc.t, "POST", n.url+"/v1/shard/search", map[string]any{"embeddings": embs[lo:hi], "top": 1}, pc.key)
		if code != 200 {
			pc.t.Fatalf("%s: shard search on node of shard %d: %d %v", what, i, code, doc)
		}
		for j, res := range doc["results"].([]any) {
			r := want[lo+j]
			top := res.([]any)
			if len(top) != 1 {
				pc.t.Fatalf("%s: template %d of identity %d: node of shard %d found nothing", what, r.tid, r.iid, i)
			}
			m := top[0].(map[string]any)
			if uint64(m["identity_id"].(float64)) != r.iid || uint64(m["template_id"].(float64)) != r.tid || m["similarity"].(float64) < 0.9999 {
				pc.t.Fatalf("%s: template %d of identity %d: node of shard %d answers %v", what, r.tid, r.iid, i, m)
			}
		}
	}
}

func shardOfNode(pc *pgCluster, n *node) int {
	for i, m := range pc.nodes {
		if m == n {
			return i
		}
	}
	pc.t.Fatalf("not a node of the cluster: %s", n.url)
	return -1
}

// enrollOnce enrolls photo as a new identity name through node n, retrying
// through failures (a database restart, a killed node) with an
// Idempotency-Key until it is acknowledged, and returns the template id
// acknowledged. A create whose answer was lost is found by name.
func enrollOnce(t *testing.T, nodes func() *node, name, photo, key string, within time.Duration) (uint64, error) {
	deadline := time.Now().Add(within)
	img := b64file(t, photo)
	var id uint64
	var lastErr error
	for time.Now().Before(deadline) {
		n := nodes()
		if id == 0 {
			code, doc, err := try("POST", n.url+"/v1/identities", map[string]any{"name": name}, key)
			switch {
			case err != nil || code >= 500:
				retries.Add(1)
				lastErr = fmt.Errorf("create: %d %v %v", code, doc, err)
				time.Sleep(100 * time.Millisecond)
				continue
			case code == 201:
				id = uint64(doc["id"].(float64))
			case code == 409: // created by a try whose answer was lost
				code, doc, err := try("GET", n.url+"/v1/identities?prefix="+url.QueryEscape(name), nil, key)
				if err != nil || code != 200 {
					lastErr = fmt.Errorf("find: %d %v %v", code, doc, err)
					continue
				}
				for _, it := range doc["identities"].([]any) {
					if m := it.(map[string]any); m["name"] == name {
						id = uint64(m["id"].(float64))
					}
				}
				if id == 0 {
					return 0, fmt.Errorf("%s: 409 on create, and no identity of that name", name)
				}
			default:
				return 0, fmt.Errorf("create %s: %d %v", name, code, doc)
			}
		}
		req := map[string]any{"images": []string{img}}
		code, doc, err := tryWith("POST", fmt.Sprintf("%s/v1/identities/%d/faces", n.url, id), req, key, http.Header{"Idempotency-Key": {"enroll " + name}})
		if err != nil || code >= 500 {
			retries.Add(1)
			lastErr = fmt.Errorf("faces: %d %v %v", code, doc, err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if code != 200 || doc["enrolled"] != float64(1) {
			return 0, fmt.Errorf("faces of %s: %d %v", name, code, doc)
		}
		return uint64(doc["photos"].([]any)[0].(map[string]any)["template_id"].(float64)), nil
	}
	return 0, fmt.Errorf("%s not acknowledged within %v: %v", name, within, lastErr)
}

// retries counts the enroll requests that failed and were tried again.
var retries atomic.Int64

// try is call without failing the test on a transport error.
func try(method, u string, body any, key string) (int, map[string]any, error) {
	return tryWith(method, u, body, key, nil)
}

var tryClient = &http.Client{Timeout: 15 * time.Second}

func tryWith(method, u string, body any, key string, h http.Header) (int, map[string]any, error) {
	var rd *strings.Reader
	if body != nil {
		rd = strings.NewReader(jsonString(body))
	} else {
		rd = strings.NewReader("")
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := tryClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := decodeJSON(resp.Body, &doc); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("answer not JSON: %w", err)
	}
	return resp.StatusCode, doc, nil
}

// TestClusterFaults runs three sharded `facever serve` nodes (the built
// binary) over a private PostgreSQL cluster on loopback, with 1,500
// synthetic identities and enrolls of the johns photos through the nodes,
// and breaks things:
//
//   - two nodes create the same new name at once, 25 rounds: one 201 and
//     one 409 each round, one identity in the database;
//   - PostgreSQL restarted in the middle of an enroll load on two nodes:
//     every enroll is acknowledged (retried with its Idempotency-Key) and
//     present exactly once; every node's index holds exactly its shard of the
//     database at its newest change (nothing applied twice);
//   - a node SIGKILLed during enrolls and restarted: it catches up, and its
//     identify answers equal those of a fresh node holding the whole gallery;
//   - the database paused (SIGSTOP): nodes report stale on /healthz and
//     refuse writes with 503, identify still answers from the last index;
//     after SIGCONT writes go through again;
//   - a node SIGSTOPped: identify on the others fails with 503
//     shard_unavailable naming it within --shard-timeout.
func TestClusterFaults(t *testing.T) {
	modelsDir := testmodels.Dir(t)
	db := pgtest.Start(t)
	pc := &pgCluster{t: t, bin: buildFacever(t), model: modelsDir, db: db, url: db.URL(t)}
	// The gallery: tagged with the model, 1,500 synthetic people, a key.
	st, err := pgstore.Open(pc.url, enroll.Options{Model: models.Feature.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	synthetic(t, st, 1500, 512, 21)
	key, _, err := st.CreateAPIKey("ci")
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	pc.key = key
	pc.addrs = freeAddrs(t, 4)
	for _, a := range pc.addrs[:3] {
		pc.urls = append(pc.urls, "http://"+a)
	}
	pc.nodes = make([]*node, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() { pc.nodes[i] = startNode(t, pc.bin, pc.addrs[i], pc.shardArgs(i)...) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	pc.converged("start", false, pc.nodes...)

	// Two nodes create the same new name at once.
	for round := range 25 {
		name := fmt.Sprintf("twin %d", round)
		var codes [2]int
		var start sync.WaitGroup
		start.Add(1)
		var done sync.WaitGroup
		for j := range 2 {
			done.Go(func() {
				start.Wait()
				code, _, err := try("POST", pc.nodes[j].url+"/v1/identities", map[string]any{"name": name}, key)
				if err != nil {
					t.Errorf("round %d node %d: %v", round, j, err)
				}
				codes[j] = code
			})
		}
		start.Done()
		done.Wait()
		if !(codes == [2]int{201, 409} || codes == [2]int{409, 201}) {
			t.Fatalf("round %d: same new name on two nodes at once answered %v, want one 201 and one 409", round, codes)
		}
	}
	if st := pc.state(); len(st.ids) != 1500+25 {
		t.Fatalf("%d identities after the races, want %d", len(st.ids), 1525)
	}

	// Enroll load on nodes 0 and 1, PostgreSQL restarted in the middle.
	var photos []string
	for _, p := range []string{"John_Simm", "John_Salley", "John_Savage", "John_Schneider", "John_Shimkus"} {
		photos = append(photos, johnsPhotos(t, p)...)
	}
	acked := map[string]uint64{}
	var mu sync.Mutex
	var count atomic.Int64
	load := func(prefix string, base int, workers []int, ops int) { // photos base.. (each enrolled once: no equal scores)
		var lw sync.WaitGroup
		for w, ni := range workers {
			lw.Go(func() {
				for op := w; op < ops; op += len(workers) {
					name := fmt.Sprintf("%s %d", prefix, op)
					pick := func() *node { return pc.nodes[ni] }
					tid, err := enrollOnce(t, pick, name, photos[(base+op)%len(photos)], key, 60*time.Second)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					acked[name] = tid
					mu.Unlock()
					count.Add(1)
				}
			})
		}
		lw.Wait()
	}
	restarted := make(chan error, 1)
	go func() {
		for count.Load() < 6 {
			time.Sleep(10 * time.Millisecond)
		}
		restarted <- db.Restart()
	}()
	t0 := time.Now()
	load("load", 0, []int{0, 1}, 24)
	if err := <-restarted; err != nil {
		t.Fatal(err)
	}
	t.Logf("24 enrolls through a PostgreSQL restart: %v, %d requests failed and were retried", time.Since(t0).Round(time.Millisecond), retries.Load())
	if retries.Load() == 0 {
		t.Error("no enroll request failed: the restart did not happen under the load")
	}
	checkAcked := func(what string) {
		t.Helper()
		st := pc.state()
		for name, tid := range acked {
			if got := st.templates[name]; len(got) != 1 || got[0] != tid {
				t.Errorf("%s: %s was acknowledged as template %d; the database holds %v", what, name, tid, got)
			}
		}
	}
	checkAcked("after the restart")
	pc.converged("after the restart", true, pc.nodes...)

	// Node 2 SIGKILLed while node 0 enrolls, then restarted.
	killed := make(chan struct{})
	go func() {
		for count.Load() < 24+4 {
			time.Sleep(10 * time.Millisecond)
		}
		pc.nodes[2].cmd.Process.Kill()
		<-pc.nodes[2].done
		close(killed)
	}()
	before := retries.Load()
	load("after kill", 24, []int{0}, 12)
	t.Logf("12 enrolls on node 0 while node 2 was killed: %d retried", retries.Load()-before)
	<-killed
	pc.nodes[2].start()
	checkAcked("after the kill")
	pc.converged("node 2 restarted", true, pc.nodes...)
	fresh := startNode(t, pc.bin, pc.addrs[3], "--models", modelsDir, "--gallery", pc.url)
	for pi, photo := range []string{photos[3], photos[14], photos[30], photos[52]} {
		body := map[string]any{"image": b64file(t, photo), "top": 10}
		code, want := call(t, "POST", fresh.url+"/v1/identify", body, key)
		code2, got := call(t, "POST", pc.nodes[2].url+"/v1/identify", body, key)
		if code != 200 || code2 != 200 {
			t.Fatalf("identify %d: fresh %d %v, restarted %d %v", pi, code, want, code2, got)
		}
		if a, b := jsonString(got["top"]), jsonString(want["top"]); a != b {
			t.Errorf("photo %d: the restarted node answers\n%s\na fresh whole node\n%s", pi, a, b)
		}
	}
	fresh.kill()

	// The database paused: stale, writes refused; then resumed.
	if err := db.Pause(); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	for i, n := range pc.nodes {
		for {
			code, doc := call(t, "GET", n.url+"/healthz", nil, "")
			if doc["stale"] == true {
				t.Logf("database paused: node %d reports stale after %v (%v)", i, time.Since(paused).Round(time.Millisecond), doc["error"])
				break
			}
			if time.Since(paused) > 10*time.Second {
				db.Resume()
				t.Fatalf("database paused 10 s, node %d's /healthz still %d %v", i, code, doc)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	code, doc, err := try("POST", pc.nodes[1].url+"/v1/identities", map[string]any{"name": "while paused"}, key)
	if err != nil || code != 503 || errorCode(doc) != "stale" {
		db.Resume()
		t.Fatalf("a write while the database is paused: %d %v %v, want 503 stale", code, doc, err)
	}
	body := map[string]any{"image": b64file(t, photos[3]), "top": 3}
	if code, doc := call(t, "POST", pc.nodes[2].url+"/v1/identify", body, key); code != 200 || doc["stale"] != true || doc["partial"] != false {
		t.Errorf("identify while the database is paused: %d %v, want 200 flagged stale", code, doc)
	}
	if err := db.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	if _, err := enrollOnce(t, func() *node { return pc.nodes[1] }, "after the pause", photos[40], key, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("database resumed: a write acknowledged after %v", time.Since(resumed).Round(time.Millisecond))
	pc.converged("after the pause", false, pc.nodes...)

	// A node stopped: the fan-out fails cleanly within --shard-timeout.
	pc.nodes[1].signal(syscall.SIGSTOP)
	start := time.Now()
	code, doc = call(t, "POST", pc.nodes[0].url+"/v1/identify", body, key)
	d := time.Since(start)
	pc.nodes[1].signal(syscall.SIGCONT)
	if code != 503 || errorCode(doc) != "shard_unavailable" || !strings.Contains(jsonString(doc), "shard 1/3") {
		t.Fatalf("node 1 stopped: %d %v", code, doc)
	}
	if d > 4*time.Second {
		t.Errorf("stopped node reported after %v, want about --shard-timeout 1s", d)
	}
	t.Logf("node 1 SIGSTOPped: 503 shard_unavailable after %v", d.Round(time.Millisecond))
	if code, doc := call(t, "POST", pc.nodes[0].url+"/v1/identify", body, key); code != 200 {
		t.Errorf("after SIGCONT: %d %v", code, doc)
	}
}
