package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	fv "github.com/facever/facever"
	"github.com/facever/facever/align"
	"github.com/facever/facever/enroll"
	"github.com/facever/facever/internal/pgtest"
	"github.com/facever/facever/schema"
)

const migrateModel = "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581"

// migrateSource is a gallery file to migrate: what it holds.
type migrateSource struct {
	path   string
	keys   []string // API keys in clear, to check on the copy
	marker float32  // a value found once in the file (to damage it)
}

// migrateCrop is the face crop of template j of person i in
// makeMigrateSource (every other template has one): a real JPEG of a
// 112×112 chip (align.Chip.JPEG, as enroll keeps), different for each.
func migrateCrop(t *testing.T, i, j int) []byte {
	t.Helper()
	if (i+j)%2 != 0 {
		return nil
	}
	c := align.Chip{Size: 112, Pix: make([]uint8, 3*112*112)}
	for k := range c.Pix {
		c.Pix[k] = uint8(k/3%112*(i+1) + k/3/112*(j+2) + k%3*40)
	}
	b, err := c.JPEG()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// makeMigrateSource writes a real bbolt gallery: people identities with 0–3
// templates of dim values each (every other one with a face crop),
// metadata, photo hashes, a removed identity (a hole in the ids) and API
// keys of each scope.
func makeMigrateSource(t *testing.T, people, dim int) migrateSource {
	t.Helper()
	src := migrateSource{path: filepath.Join(t.TempDir(), "team.db"), marker: 12345.678}
	g, err := enroll.Open(src.path, enroll.Options{Model: migrateModel, Head: "arcface-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	rng := rand.New(rand.NewPCG(4, 2))
	var items []enroll.BatchItem
	for i := range people {
		for j := range i % 4 {
			e := make([]float32, dim)
			for d := range e {
				e[d] = float32(rng.NormFloat64())
			}
			if i == 1 && j == 0 {
				e[0] = src.marker
			}
			items = append(items, enroll.BatchItem{Name: fmt.Sprintf("Person %04d", i), Template: enroll.Template{Embedding: e, Source: fmt.Sprintf("p%d-%d.jpg", i, j), PhotoSHA256: fmt.Sprintf("%064x", 1000*i+j+1), Crop: migrateCrop(t, i, j)}})
		}
	}
	if _, err := g.EnrollBatch(items, false); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < people; i += 4 { // the people without templates
		if _, err := g.AddIdentity(fmt.Sprintf("Person %04d", i), map[string]string{"desk": fmt.Sprint(i), "note": "ü \"q\""}); err != nil {
			t.Fatal(err)
		}
	}
	gone, err := g.AddIdentity("Gone", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Remove(gone.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := g.AddIdentity("José", map[string]string{"badge": "7"}); err != nil {
		t.Fatal(err)
	}
	for _, scopes := range [][]string{{enroll.ScopeAdmin}, {enroll.ScopeEnroll}, {enroll.ScopeRecognize}} {
		key, _, err := g.CreateScopedAPIKey("key-"+scopes[0], scopes)
		if err != nil {
			t.Fatal(err)
		}
		src.keys = append(src.keys, key)
	}
	return src
}

// sameStores checks that b holds exactly what a holds: ids, names,
// metadata, created times (to the microsecond), templates bit for bit,
// their crops byte for byte, API keys, tags.
func sameStores(t *testing.T, a, b enroll.Store, keys []string) {
	t.Helper()
	la, err := a.List()
	if err != nil {
		t.Fatal(err)
	}
	lb, err := b.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(la) != len(lb) {
		t.Fatalf("%d identities copied as %d", len(la), len(lb))
	}
	near := func(x, y interface{ UnixMicro() int64 }) bool { return x.UnixMicro() == y.UnixMicro() }
	for i, x := range la {
		y := lb[i]
		if x.ID != y.ID || x.Name != y.Name || x.Templates != y.Templates || fmt.Sprint(x.Metadata) != fmt.Sprint(y.Metadata) || !near(x.Created, y.Created) {
			t.Fatalf("identity %+v copied as %+v", x, y)
		}
		ta, err := a.Templates(x.ID)
		if err != nil {
			t.Fatal(err)
		}
		tb, err := b.Templates(y.ID)
		if err != nil {
			t.Fatal(err)
		}
		for j := range ta {
			p, q := ta[j], tb[j]
			same := len(p.Embedding) == len(q.Embedding)
			for d := 0; same && d < len(p.Embedding); d++ {
				same = math.Float32bits(p.Embedding[d]) == math.Float32bits(q.Embedding[d])
			}
			if !same || p.ID != q.ID || p.Source != q.Source || p.PhotoSHA256 != q.PhotoSHA256 || !near(p.Created, q.Created) || p.HasCrop != q.HasCrop {
				t.Fatalf("template %+v of %s copied as %+v", p, x.Name, q)
			}
			if p.HasCrop {
				ca, err := a.TemplateCrop(x.ID, p.ID)
				if err != nil {
					t.Fatal(err)
				}
				cb, err := b.TemplateCrop(y.ID, q.ID)
				if err != nil || !bytes.Equal(ca, cb) {
					t.Fatalf("the crop of template %d of %s (%d bytes) copied as %d bytes (%v)", p.ID, x.Name, len(ca), len(cb), err)
				}
			}
		}
	}
	for _, key := range keys {
		ka, err := a.CheckAPIKey(key)
		if err != nil {
			t.Fatal(err)
		}
		kb, err := b.CheckAPIKey(key)
		if err != nil || kb.Name != ka.Name || fmt.Sprint(kb.Scopes) != fmt.Sprint(ka.Scopes) || kb.Prefix != ka.Prefix {
			t.Fatalf("API key %+v copied as %+v (%v)", ka, kb, err)
		}
	}
	ma, mb := a.Meta(), b.Meta()
	if ma.Model != mb.Model || ma.Head != mb.Head || ma.Dim != mb.Dim {
		t.Fatalf("tags %+v copied as %+v", ma, mb)
	}
}

type migrateDoc struct {
	Identities       int     `json:"identities"`
	Templates        int     `json:"templates"`
	Crops            int     `json:"crops"`
	APIKeys          int     `json:"api_keys"`
	CopiedIdentities int     `json:"copied_identities"`
	CopiedTemplates  int     `json:"copied_templates"`
	CopiedCrops      int     `json:"copied_crops"`
	CopiedAPIKeys    int     `json:"copied_api_keys"`
	IDs              string  `json:"ids"`
	Checksum         string  `json:"checksum"`
	Model            string  `json:"model"`
	Head             string  `json:"head"`
	Dim              int     `json:"dim"`
	CopySeconds      float64 `json:"copy_seconds"`
	VerifySeconds    float64 `json:"verify_seconds"`
}

// testMigrate runs gallery migrate from a real gallery file into to (a new
// file or an empty PostgreSQL database), then the refusals and --resume.
func testMigrate(t *testing.T, to string) {
	const people, dim = 240, 32
	src := makeMigrateSource(t, people, dim)
	code, out, errs := facever(t, "gallery", "migrate", "--from", src.path, "--to", to, "--json")
	if code != exitOK {
		t.Fatalf("migrate: exit %d: %s", code, errs)
	}
	var doc migrateDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("migrate --json: %v: %s", err, out)
	}
	if err := schema.Validate("gallery-migrate.json", []byte(out)); err != nil {
		t.Errorf("migrate --json: %v\n%s", err, out)
	}
	wantTemplates, wantCrops := 0, 0
	cropsOf := map[string]int{} // by name
	for i := range people {
		wantTemplates += i % 4
		for j := range i % 4 {
			if migrateCrop(t, i, j) != nil {
				wantCrops++
				cropsOf[fmt.Sprintf("Person %04d", i)]++
			}
		}
	}
	if wantCrops == 0 || doc.Crops != wantCrops || doc.CopiedCrops != wantCrops {
		t.Fatalf("migrate report: %d crops, %d copied; want %d", doc.Crops, doc.CopiedCrops, wantCrops)
	}
	if doc.Identities != people+1 || doc.Templates != wantTemplates || doc.APIKeys != 3 || doc.CopiedIdentities != people+1 || doc.CopiedTemplates != wantTemplates ||
		doc.CopiedAPIKeys != 3 || doc.IDs != "preserved" || len(doc.Checksum) != 64 || doc.Model != migrateModel || doc.Head != "arcface-1" || doc.Dim != dim {
		t.Fatalf("migrate report: %+v", doc)
	}
	if !strings.Contains(errs, "migrating") {
		t.Errorf("no progress on stderr: %q", errs)
	}
	check := func() {
		t.Helper()
		a, err := fv.OpenGallery(src.path, enroll.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		b, err := fv.OpenGallery(to, enroll.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		sameStores(t, a, b, src.keys)
		// The copy is usable: search finds the marked template's owner.
		e := make([]float32, dim)
		ts, _ := a.Templates(mustResolve(t, a, "Person 0001").ID)
		copy(e, ts[0].Embedding)
		ms, err := b.Search(e, 1)
		if err != nil || len(ms) != 1 || ms[0].Name != "Person 0001" || ms[0].Score < 0.9999 {
			t.Fatalf("search of the copy: %+v %v", ms, err)
		}
	}
	check()

	// A second run is refused: the target is not empty.
	code, _, errs = facever(t, "gallery", "migrate", "--from", src.path, "--to", to)
	if code != exitError || !strings.Contains(errs, "--resume") || !strings.Contains(errs, "already holds") {
		t.Fatalf("second migrate: exit %d: %s", code, errs)
	}
	// With --resume it copies nothing, and verifies.
	code, out, errs = facever(t, "gallery", "migrate", "--from", src.path, "--to", to, "--resume", "--json")
	if code != exitOK {
		t.Fatalf("migrate --resume: exit %d: %s", code, errs)
	}
	var again migrateDoc
	if err := json.Unmarshal([]byte(out), &again); err != nil || again.CopiedIdentities != 0 || again.CopiedCrops != 0 || again.CopiedAPIKeys != 0 || again.Checksum != doc.Checksum || again.Identities != doc.Identities || again.Crops != wantCrops {
		t.Fatalf("migrate --resume: %+v %v", again, err)
	}
	// An interrupted migration (here: people missing from the target) is
	// finished by --resume.
	b, err := fv.OpenGallery(to, enroll.Options{Model: migrateModel, Head: "arcface-1"})
	if err != nil {
		t.Fatal(err)
	}
	list, _ := b.List()
	removed, removedCrops := 0, 0
	for i, it := range list {
		if i%7 == 3 {
			if err := b.Remove(it.ID); err != nil {
				t.Fatal(err)
			}
			removed++
			removedCrops += cropsOf[it.Name]
		}
	}
	b.Close()
	code, out, errs = facever(t, "gallery", "migrate", "--from", src.path, "--to", to, "--resume", "--json")
	if code != exitOK {
		t.Fatalf("migrate --resume after losses: exit %d: %s", code, errs)
	}
	if err := json.Unmarshal([]byte(out), &again); err != nil || again.CopiedIdentities != removed || again.CopiedCrops != removedCrops || removedCrops == 0 || again.Checksum != doc.Checksum {
		t.Fatalf("migrate --resume after losing %d (%d crops): %+v %v", removed, removedCrops, again, err)
	}
	check()
	// The verification covers the crops: a target whose person holds the
	// same templates with one crop missing fails it.
	b, err = fv.OpenGallery(to, enroll.Options{Model: migrateModel, Head: "arcface-1"})
	if err != nil {
		t.Fatal(err)
	}
	it := mustResolve(t, b, "Person 0002") // templates 0 and 1: a crop on the first
	ts, err := b.Templates(it.ID)
	if err != nil || len(ts) != 2 || !ts[0].HasCrop || ts[1].HasCrop {
		t.Fatalf("Person 0002: %+v %v", ts, err)
	}
	if err := b.Remove(it.ID); err != nil {
		t.Fatal(err)
	}
	if err := b.(enroll.Importer).ImportIdentity(it, ts); err != nil { // no Crop: none kept
		t.Fatal(err)
	}
	b.Close()
	code, _, errs = facever(t, "gallery", "migrate", "--from", src.path, "--to", to, "--resume")
	if code != exitError || !strings.Contains(errs, "verification failed") || !strings.Contains(errs, fmt.Sprintf("%d crops", wantCrops-1)) {
		t.Fatalf("migrate --resume onto a target missing a crop: exit %d: %s", code, errs)
	}
	// Put it back (with its crop) for what follows.
	b, err = fv.OpenGallery(to, enroll.Options{Model: migrateModel, Head: "arcface-1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Remove(it.ID); err != nil {
		t.Fatal(err)
	}
	ts[0].Crop = migrateCrop(t, 2, 0)
	if err := b.(enroll.Importer).ImportIdentity(it, ts); err != nil {
		t.Fatal(err)
	}
	b.Close()
	check()
	// A target changed since (a template more) fails the verification.
	b, err = fv.OpenGallery(to, enroll.Options{Model: migrateModel, Head: "arcface-1"})
	if err != nil {
		t.Fatal(err)
	}
	e := make([]float32, dim)
	e[3] = 1
	if _, _, err := b.Enroll("Person 0002", nil, []enroll.Template{{Embedding: e}}); err != nil {
		t.Fatal(err)
	}
	b.Close()
	code, _, errs = facever(t, "gallery", "migrate", "--from", src.path, "--to", to, "--resume")
	if code != exitError || !strings.Contains(errs, "verification failed") {
		t.Fatalf("migrate --resume onto a changed target: exit %d: %s", code, errs)
	}
}

func mustResolve(t *testing.T, s enroll.Store, name string) enroll.Identity {
	t.Helper()
	it, err := s.Resolve(name)
	if err != nil {
		t.Fatal(err)
	}
	return it
}

// TestGalleryMigrateFile: migrate into a new gallery file.
func TestGalleryMigrateFile(t *testing.T) {
	testMigrate(t, filepath.Join(t.TempDir(), "copy.db"))
}

// damagedCopy copies src's file with one template's embedding changed (its
// record checksum no longer matches).
func damagedCopy(t *testing.T, src migrateSource) string {
	t.Helper()
	data, err := os.ReadFile(src.path)
	if err != nil {
		t.Fatal(err)
	}
	marker := binary.LittleEndian.AppendUint32(nil, math.Float32bits(src.marker))
	if n := bytes.Count(data, marker); n != 1 {
		t.Fatalf("marker found %d times in the file", n)
	}
	damaged := filepath.Join(t.TempDir(), "damaged.db")
	bad := bytes.Replace(data, marker, binary.LittleEndian.AppendUint32(nil, math.Float32bits(src.marker+1)), 1)
	if err := os.WriteFile(damaged, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	return damaged
}

// TestGalleryMigrateRefusals: a damaged source, a source onto itself, a
// target of another model, a target holding other people.
func TestGalleryMigrateRefusals(t *testing.T) {
	src := makeMigrateSource(t, 40, 8)
	dir := t.TempDir()
	damaged := damagedCopy(t, src)
	to := filepath.Join(dir, "copy.db")
	code, _, errs := facever(t, "gallery", "migrate", "--from", damaged, "--to", to)
	if code != exitError || !strings.Contains(errs, "damaged") || !strings.Contains(errs, "nothing was copied") {
		t.Fatalf("damaged source: exit %d: %s", code, errs)
	}
	if _, err := os.Stat(to); err == nil {
		t.Errorf("a refused migration created %s", to)
	}
	code, _, errs = facever(t, "gallery", "migrate", "--from", src.path, "--to", src.path)
	if code != exitError || !strings.Contains(errs, "same gallery") {
		t.Fatalf("onto itself: exit %d: %s", code, errs)
	}
	other := filepath.Join(dir, "other.db")
	g, err := enroll.Open(other, enroll.Options{Model: strings.Repeat("0", 64)})
	if err != nil {
		t.Fatal(err)
	}
	g.Close()
	code, _, errs = facever(t, "gallery", "migrate", "--from", src.path, "--to", other, "--resume")
	if code != exitError || !strings.Contains(errs, "another model") {
		t.Fatalf("target of another model: exit %d: %s", code, errs)
	}
	// A target with other people at the source's ids.
	strangers := filepath.Join(dir, "strangers.db")
	g, err = enroll.Open(strangers, enroll.Options{Model: migrateModel, Head: "arcface-1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.AddIdentity("Somebody else", nil); err != nil {
		t.Fatal(err)
	}
	g.Close()
	code, _, errs = facever(t, "gallery", "migrate", "--from", src.path, "--to", strangers, "--resume")
	if code != exitError || !strings.Contains(errs, "not a copy of this source") {
		t.Fatalf("target with strangers: exit %d: %s", code, errs)
	}
	code, _, errs = facever(t, "gallery", "migrate", "--from", filepath.Join(dir, "missing.db"), "--to", filepath.Join(dir, "x.db"))
	if code != exitError || !strings.Contains(errs, "--from") {
		t.Fatalf("missing source: exit %d: %s", code, errs)
	}
}

// TestGalleryMigratePostgres: migrate a gallery file into a real
// PostgreSQL database (a private test cluster), the refusals and --resume
// there, then back from PostgreSQL into a new file: the same records.
func TestGalleryMigratePostgres(t *testing.T) {
	// A damaged source is refused: nothing reaches the database.
	url := pgtest.URL(t)
	damaged := damagedCopy(t, makeMigrateSource(t, 20, 8))
	code, _, errs := facever(t, "gallery", "migrate", "--from", damaged, "--to", url)
	if code != exitError || !strings.Contains(errs, "damaged") {
		t.Fatalf("damaged source into postgres://: exit %d: %s", code, errs)
	}
	// (An empty database is no gallery yet: a read-only open refuses it.)
	if code, out, errs := facever(t, "gallery", "list", "--gallery", url, "--json"); strings.Contains(out, "Person") || code == exitOK && !strings.Contains(out, `"identities":[]`) {
		t.Fatalf("a refused migration wrote into the database: exit %d %s %s", code, out, errs)
	} else {
		t.Logf("gallery list of the untouched database: exit %d %s", code, strings.TrimSpace(errs))
	}
	testMigrate(t, url)
	// The CLI works on the copy through --gallery postgres://.
	code, out, errs := facever(t, "gallery", "list", "--gallery", url, "--json")
	if code != exitOK || !strings.Contains(out, `"Person 0001"`) {
		t.Fatalf("gallery list --gallery postgres://: exit %d %s", code, errs)
	}
	// And back: PostgreSQL into a new file, the same records.
	back := filepath.Join(t.TempDir(), "back.db")
	code, _, errs = facever(t, "gallery", "migrate", "--from", url, "--to", back)
	if code != exitOK {
		t.Fatalf("migrate postgres:// to a file: exit %d %s", code, errs)
	}
	a, err := fv.OpenGallery(url, enroll.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := fv.OpenGallery(back, enroll.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	sameStores(t, a, b, nil)
}

// TestGalleryMigrateScale (FACEVER_MIGRATE_SCALE=N identities, 4 templates
// of 512 values each) times gallery migrate of a file into PostgreSQL: the
// figure in the README.
func TestGalleryMigrateScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("FACEVER_MIGRATE_SCALE"))
	if n <= 0 {
		t.Skip("set FACEVER_MIGRATE_SCALE=10000 to time a migration of that many identities into PostgreSQL")
	}
	url := pgtest.URL(t)
	path := filepath.Join(t.TempDir(), "big.db")
	g, err := enroll.Open(path, enroll.Options{Model: migrateModel})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(9, 9))
	for start := 0; start < n; start += 500 {
		var items []enroll.BatchItem
		for i := start; i < min(n, start+500); i++ {
			for j := range 4 {
				e := make([]float32, 512)
				for d := range e {
					e[d] = float32(rng.NormFloat64())
				}
				items = append(items, enroll.BatchItem{Name: fmt.Sprintf("person %06d", i), Template: enroll.Template{Embedding: e, Source: fmt.Sprint(j), PhotoSHA256: fmt.Sprintf("%064x", 4*i+j+1)}})
			}
		}
		if _, err := g.EnrollBatch(items, false); err != nil {
			t.Fatal(err)
		}
	}
	g.Close()
	st, _ := os.Stat(path)
	begin := time.Now()
	code, out, errs := facever(t, "gallery", "migrate", "--from", path, "--to", url, "--json")
	if code != exitOK {
		t.Fatalf("migrate: exit %d %s", code, errs)
	}
	var doc migrateDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil || doc.Identities != n || doc.Templates != 4*n {
		t.Fatalf("migrate: %+v %v", doc, err)
	}
	t.Logf("migrated %d identities, %d templates of 512 values (%.0f MB file) into PostgreSQL in %.1f s (copy %.1f s, verification of both sides %.1f s)", n, 4*n, float64(st.Size())/1e6, time.Since(begin).Seconds(), doc.CopySeconds, doc.VerifySeconds)
}
