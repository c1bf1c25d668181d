package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/facever/facever/internal/testmodels"
)

const johnsDir = "../../testdata/johns"

// bulkDoc is enroll --data --json's document.
type bulkDoc struct {
	People          int                             `json:"people"`
	Enrolled        int                             `json:"enrolled"`
	AlreadyEnrolled int                             `json:"already_enrolled"`
	Rejected        int                             `json:"rejected"`
	Photos          []map[string]json.RawMessage    `json:"photos"`
	SkippedFiles    []struct{ Path, Reason string } `json:"skipped_files"`
}

func bulk(t *testing.T, wantCode int, args ...string) bulkDoc {
	t.Helper()
	code, out, errs := facever(t, append([]string{"enroll", "--json"}, args...)...)
	if code != wantCode {
		t.Fatalf("enroll %v: exit %d, want %d\n%s\n%s", args, code, wantCode, out, errs)
	}
	var doc bulkDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return doc
}

// galleryCounts is template counts by person name, checking that no person
// holds the same photo twice.
func galleryCounts(t *testing.T, gal string) map[string]int {
	t.Helper()
	code, out, errs := facever(t, "gallery", "list", "-g", gal, "--json")
	if code != exitOK {
		t.Fatalf("list: %d %s", code, errs)
	}
	var doc struct {
		Identities []struct {
			ID        uint64
			Name      string
			Templates int
		}
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, it := range doc.Identities {
		counts[it.Name] = it.Templates
		_, out, _ := facever(t, "gallery", "show", "-g", gal, it.Name, "--json")
		var show struct {
			Templates []struct {
				PhotoSHA256 string `json:"photo_sha256"`
			}
		}
		if err := json.Unmarshal([]byte(out), &show); err != nil || len(show.Templates) != it.Templates {
			t.Fatalf("show %s: %v, %d templates listed, identity says %d", it.Name, err, len(show.Templates), it.Templates)
		}
		seen := map[string]bool{}
		for _, tp := range show.Templates {
			if tp.PhotoSHA256 == "" || seen[tp.PhotoSHA256] {
				t.Fatalf("%s holds photo %q twice (or without its hash)", it.Name, tp.PhotoSHA256)
			}
			seen[tp.PhotoSHA256] = true
		}
	}
	return counts
}

// distinctPhotos is the number of different contents among dir's files.
func distinctPhotos(t *testing.T, dir string) int {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range es {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(data)
		seen[hex.EncodeToString(s[:])] = true
	}
	return len(seen)
}

func symlink(t *testing.T, old, new string) {
	t.Helper()
	abs, err := filepath.Abs(old)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(abs, new); err != nil {
		t.Fatal(err)
	}
}

// TestBulkEnrollFolders: symlinked person folders and photos are enrolled,
// junk is skipped and named, the same photo under a second person is
// refused unless --allow-duplicates, and a rerun skips everything.
func TestBulkEnrollFolders(t *testing.T) {
	testmodels.Dir(t)
	data := t.TempDir()
	symlink(t, filepath.Join(johnsDir, "John_Simm"), filepath.Join(data, "Ada")) // a linked folder
	bob := filepath.Join(data, "Bob")
	copyPhoto := filepath.Join(data, "Copy")
	for _, d := range []string{bob, copyPhoto} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	symlink(t, salleyA, filepath.Join(bob, "linked.jpg")) // a linked photo
	for name, content := range map[string]string{
		filepath.Join(bob, "own.jpg"):        readFileT(t, filepath.Join(johnsDir, "John_Salley", "000183_02159543.jpg")),
		filepath.Join(bob, ".DS_Store"):      "\x00\x00\x00\x01Bud1",
		filepath.Join(bob, "notes.txt"):      "Bob's photos, from the party\n",
		filepath.Join(copyPhoto, "same.jpg"): readFileT(t, simmA), // Ada's photo again
	} {
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gal := filepath.Join(t.TempDir(), "g.db")
	// Four workers racing over 14 photos, committed 3 at a time, in order.
	doc := bulk(t, exitError, "-g", gal, "--data", data, "--workers", "4", "--commit-every", "3")
	ada := distinctPhotos(t, filepath.Join(johnsDir, "John_Simm"))
	var order []string
	for _, p := range doc.Photos {
		var path string
		json.Unmarshal(p["path"], &path)
		order = append(order, path)
	}
	if !slices.IsSorted(order) {
		t.Fatalf("photos not reported in the walk's order: %v", order)
	}
	if doc.People != 3 || doc.Enrolled != ada+2 || doc.Rejected != 1 || len(doc.Photos) != ada+3 {
		t.Fatalf("first run: %d people, %d enrolled (want %d), %d rejected, %d photos", doc.People, doc.Enrolled, ada+2, doc.Rejected, len(doc.Photos))
	}
	last := doc.Photos[len(doc.Photos)-1]
	var e struct{ Code, Message string }
	if err := json.Unmarshal(last["error"], &e); err != nil || e.Code != "duplicate_photo" || !strings.Contains(e.Message, `"Ada"`) || len(last) != 2 {
		t.Fatalf("the copied photo: %v %s %s", err, last["path"], last["error"])
	}
	skipped := map[string]string{}
	for _, s := range doc.SkippedFiles {
		skipped[filepath.Base(s.Path)] = s.Reason
	}
	if skipped[".DS_Store"] != "hidden" || skipped["notes.txt"] != "not a photo" {
		t.Fatalf("junk not named: %+v", doc.SkippedFiles)
	}
	if c := galleryCounts(t, gal); c["Ada"] != ada || c["Bob"] != 2 || len(c) != 2 {
		t.Fatalf("gallery: %v", c)
	}
	// With --allow-duplicates, the copy is enrolled; the rest is skipped.
	doc = bulk(t, exitOK, "-g", gal, "--data", data, "--allow-duplicates")
	if doc.Enrolled != 1 || doc.AlreadyEnrolled != ada+2 || doc.Rejected != 0 {
		t.Fatalf("--allow-duplicates: %+v", doc)
	}
	// A rerun skips everything, before embedding anything.
	doc = bulk(t, exitOK, "-g", gal, "--data", data)
	if doc.Enrolled != 0 || doc.AlreadyEnrolled != ada+3 || doc.Rejected != 0 {
		t.Fatalf("rerun: %+v", doc)
	}
	if c := galleryCounts(t, gal); c["Ada"] != ada || c["Bob"] != 2 || c["Copy"] != 1 {
		t.Fatalf("gallery after reruns: %v", c)
	}
	// Text mode: the same report, one line a photo.
	code, out, _ := facever(t, "enroll", "-g", gal, "--data", data)
	if code != exitOK || strings.Count(out, "skipped   ") != ada+3 || !strings.Contains(out, "0 enrolled, "+itoa(ada+3)+" already in the gallery, 0 rejected") {
		t.Fatalf("text rerun: %d\n%s", code, out)
	}
}

// TestBulkEnrollKilled kills a bulk enroll of the johns (the built binary,
// as a child process) with SIGKILL after some transactions committed, and
// reruns it: every person ends with each of their photos once.
func TestBulkEnrollKilled(t *testing.T) {
	models := testmodels.Dir(t)
	bin := filepath.Join(t.TempDir(), "facever")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	gal := filepath.Join(t.TempDir(), "g.db")
	cmd := exec.Command(bin, "--models", models, "enroll", "-g", gal, "--data", johnsDir, "--commit-every", "2", "--workers", "1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	before := 0 // photos reported enrolled (committed) before the kill
	for sc.Scan() && before < 6 {
		if strings.HasPrefix(sc.Text(), "enrolled  ") {
			before++
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if before < 6 {
		t.Fatalf("the child ended after %d photos", before)
	}
	doc := bulk(t, exitOK, "--models", models, "-g", gal, "--data", johnsDir)
	if doc.AlreadyEnrolled < before || doc.Enrolled == 0 {
		t.Fatalf("rerun: %d already enrolled (the child committed at least %d), %d enrolled: the kill did not interrupt the enroll", doc.AlreadyEnrolled, before, doc.Enrolled)
	}
	rejected := map[string]int{}
	for _, p := range doc.Photos {
		if _, ok := p["error"]; ok {
			var path string
			json.Unmarshal(p["path"], &path)
			rejected[filepath.Base(filepath.Dir(path))]++
		}
	}
	counts := galleryCounts(t, gal)
	people, _ := os.ReadDir(johnsDir)
	n := 0
	for _, p := range people {
		if !p.IsDir() {
			continue
		}
		n++
		if want := distinctPhotos(t, filepath.Join(johnsDir, p.Name())) - rejected[p.Name()]; counts[p.Name()] != want {
			t.Errorf("%s: %d templates, want %d (distinct photos less rejected)", p.Name(), counts[p.Name()], want)
		}
	}
	if n != 5 || len(counts) != 5 {
		t.Fatalf("%d folders, %d people in the gallery", n, len(counts))
	}
}

func readFileT(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func itoa(n int) string { return strconv.Itoa(n) }
