package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	fv "github.com/facever/facever"
	"github.com/facever/facever/align"
	"github.com/facever/facever/enroll"
	"github.com/facever/facever/internal/testmodels"
	"github.com/facever/facever/verify"
)

// minCropCosine is the least cosine similarity between a stored template
// and the embedding of its stored crop (the JPEG decoded and embedded
// again). The crop is the very chip the template was made from, less
// JPEG's loss at quality 90 (align.ChipJPEGQuality, what facever serve
// keeps too). Measured on the 54 faces of the johns gallery
// (FACEVER_CROP_BYTES=1 go test -run TestCropBytesJohns): 0.9895–0.9979,
// median 0.9960; one face (John_Shimkus 000385_03227766.jpg) is below
// 0.99. 0.985 sits 0.0045 under that minimum. It is not what tells a
// face's own crop from others (near-identical photos of one person reach
// 0.987 there): cropStats checks that too, each crop being nearer to its
// own template than to any other of the gallery.
const minCropCosine = 0.985

// chipOfJPEG decodes a stored crop into the chip the backbone takes,
// checking that it is a size×size JPEG.
func chipOfJPEG(t *testing.T, b []byte, size int) align.Chip {
	t.Helper()
	im, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("the crop (%d bytes) is not a JPEG: %v", len(b), err)
	}
	if r := im.Bounds(); r.Dx() != size || r.Dy() != size {
		t.Fatalf("crop of %v, want %d×%d", r, size, size)
	}
	c := align.Chip{Size: size, Pix: make([]uint8, 3*size*size)}
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			r, g, b, _ := im.At(x, y).RGBA()
			i := 3 * (y*size + x)
			c.Pix[i], c.Pix[i+1], c.Pix[i+2] = uint8(r>>8), uint8(g>>8), uint8(b>>8)
		}
	}
	return c
}

// cropStats checks every template of the gallery at path: HasCrop as
// want; with a crop, TemplateCrop's JPEG decodes to 112×112 and, embedded
// again by r, is within minCropCosine of the stored template and nearer
// to it than to any other template of the gallery. It returns the
// cosines to the own template, the best cosines to another, and the
// crops' sizes.
func cropStats(t *testing.T, r *fv.Recognizer, path string, want bool) (own, other []float64, sizes []int) {
	t.Helper()
	g, err := fv.OpenGallery(path, enroll.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	people, err := g.List()
	if err != nil {
		t.Fatal(err)
	}
	type face struct {
		name string
		t    enroll.Template
		emb  []float32 // of the crop
	}
	var all []face
	var chips []align.Chip
	for _, it := range people {
		ts, err := g.Templates(it.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, tp := range ts {
			if tp.HasCrop != want {
				t.Fatalf("%s template %d (%s): has_crop %v, want %v", it.Name, tp.ID, tp.Source, tp.HasCrop, want)
			}
			all = append(all, face{name: it.Name, t: tp})
			b, err := g.TemplateCrop(it.ID, tp.ID)
			if !want {
				if !errors.Is(err, enroll.ErrNoCrop) || b != nil {
					t.Fatalf("%s template %d: crop %d bytes, %v; want ErrNoCrop", it.Name, tp.ID, len(b), err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s template %d: %v", it.Name, tp.ID, err)
			}
			sizes = append(sizes, len(b))
			chips = append(chips, chipOfJPEG(t, b, 112))
		}
	}
	if !want {
		return nil, nil, nil
	}
	for i := 0; i < len(chips); i += 16 {
		embs, err := r.EmbedChips(chips[i:min(i+16, len(chips))])
		if err != nil {
			t.Fatal(err)
		}
		for k, e := range embs {
			all[i+k].emb = e
		}
	}
	for i, f := range all {
		cs := verify.Cosine(f.emb, f.t.Embedding)
		best, bestOf := -1.0, ""
		for j, o := range all {
			if j != i {
				if c := verify.Cosine(f.emb, o.t.Embedding); c > best {
					best, bestOf = c, fmt.Sprintf("%s template %d", o.name, o.t.ID)
				}
			}
		}
		if !(cs >= minCropCosine) || cs <= best {
			t.Errorf("%s template %d (%s): its crop embeds at cosine %.4f from the template (want ≥ %.2f), %.4f from %s", f.name, f.t.ID, f.t.Source, cs, minCropCosine, best, bestOf)
		}
		own, other = append(own, cs), append(other, best)
	}
	return own, other, sizes
}

// summary is "min–max (median m)" of xs.
func summary[T int | float64](xs []T, format string) string {
	s := append([]T(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return "none"
	}
	f := func(x T) string { return fmt.Sprintf(format, x) }
	return f(s[0]) + "–" + f(s[len(s)-1]) + " (median " + f(s[len(s)/2]) + ")"
}

// johnsSubset links n photos of each of the johns people named into a
// folder for a bulk enroll.
func johnsSubset(t *testing.T, n int, people ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, p := range people {
		photos, _ := filepath.Glob(filepath.Join("../../testdata/johns", p, "*.jpg"))
		sort.Strings(photos)
		if len(photos) < n {
			t.Fatalf("%s: %d photos", p, len(photos))
		}
		if err := os.Mkdir(filepath.Join(dir, p), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, ph := range photos[:n] {
			abs, _ := filepath.Abs(ph)
			if err := os.Symlink(abs, filepath.Join(dir, p, filepath.Base(ph))); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

// enrollDoc is the part of enroll --json the crop tests read.
type enrollDoc struct {
	Enrolled int `json:"enrolled"`
	Photos   []struct {
		Path     string `json:"path"`
		Enrolled bool   `json:"enrolled"`
		Template uint64 `json:"template_id"`
		HasCrop  *bool  `json:"has_crop"`
		Skipped  string `json:"skipped"`
	} `json:"photos"`
}

// runEnroll runs enroll with args and --json, wanting n photos enrolled,
// each with has_crop as want.
func runEnroll(t *testing.T, n int, want bool, args ...string) enrollDoc {
	t.Helper()
	code, out, errs := facever(t, append([]string{"enroll", "--json"}, args...)...)
	if code != exitOK {
		t.Fatalf("enroll %v: exit %d: %s", args, code, errs)
	}
	var doc enrollDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("enroll --json: %v\n%s", err, out)
	}
	if doc.Enrolled != n {
		t.Fatalf("enroll %v: %d enrolled of %d entries, want %d", args, doc.Enrolled, len(doc.Photos), n)
	}
	for _, p := range doc.Photos {
		if !p.Enrolled && p.Skipped == "already_enrolled" && p.HasCrop == nil {
			continue // the same photo twice in a folder
		}
		if !p.Enrolled || p.HasCrop == nil || *p.HasCrop != want {
			t.Fatalf("enroll %v: entry %+v (has_crop %v), want enrolled with has_crop %v", args, p, p.HasCrop, want)
		}
	}
	return doc
}

// TestEnrollKeepsCrops: enroll (one person's photos, and a bulk enroll of
// a folder) keeps each face's aligned crop: a 112×112 JPEG that, decoded
// and embedded again, is the template's own face (cosine ≥ minCropCosine);
// gallery show says so; --no-crops keeps none, in both forms.
func TestEnrollKeepsCrops(t *testing.T) {
	dir := testmodels.Dir(t)
	r, err := fv.Open(fv.Options{ModelsDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	tmp := t.TempDir()
	simm, _ := filepath.Glob("../../testdata/johns/John_Simm/*.jpg")
	sort.Strings(simm)
	single := filepath.Join(tmp, "single.db")
	runEnroll(t, 4, true, append([]string{"--gallery", single, "--name", "John Simm"}, simm[:4]...)...)
	bulk := filepath.Join(tmp, "bulk.db")
	data := johnsSubset(t, 3, "John_Salley", "John_Shimkus")
	runEnroll(t, 6, true, "--gallery", bulk, "--data", data)

	var cosines, others []float64
	var sizes []int
	for _, g := range []string{single, bulk} {
		cs, os, sz := cropStats(t, r, g, true)
		cosines, others, sizes = append(cosines, cs...), append(others, os...), append(sizes, sz...)
	}
	if len(cosines) != 10 {
		t.Fatalf("%d crops checked, want 10", len(cosines))
	}
	for _, n := range sizes {
		if n < 1<<10 || n > 16<<10 {
			t.Errorf("a crop of %d bytes: a 112×112 face at quality %d should be a few KiB", n, align.ChipJPEGQuality)
		}
	}
	t.Logf("10 crops: cosine to their template %s, to the nearest other template %s; JPEG bytes %s", summary(cosines, "%.4f"), summary(others, "%.4f"), summary(sizes, "%d"))

	// gallery show says which faces keep a crop.
	code, out, errs := facever(t, "gallery", "show", "--gallery", single, "John Simm")
	if code != exitOK || strings.Count(out, ", crop kept\n") != 4 {
		t.Fatalf("gallery show: exit %d: %s%s", code, out, errs)
	}
	code, out, _ = facever(t, "gallery", "show", "--json", "--gallery", single, "John Simm")
	if code != exitOK || strings.Count(out, `"has_crop": true`) != 4 {
		t.Fatalf("gallery show --json: exit %d: %s", code, out)
	}

	// --no-crops: templates only, in both forms; the same embeddings.
	bare := filepath.Join(tmp, "bare.db")
	runEnroll(t, 4, false, append([]string{"--gallery", bare, "--name", "John Simm", "--no-crops"}, simm[:4]...)...)
	bareBulk := filepath.Join(tmp, "bare-bulk.db")
	runEnroll(t, 6, false, "--gallery", bareBulk, "--data", data, "--no-crops")
	cropStats(t, r, bare, false)
	cropStats(t, r, bareBulk, false)
	code, out, errs = facever(t, "gallery", "show", "--gallery", bare, "John Simm")
	if code != exitOK || strings.Count(out, ", no crop kept\n") != 4 {
		t.Fatalf("gallery show of --no-crops: exit %d: %s%s", code, out, errs)
	}
	a, _ := fv.OpenGallery(single, enroll.Options{ReadOnly: true})
	b, _ := fv.OpenGallery(bare, enroll.Options{ReadOnly: true})
	ta, _ := a.Templates(1)
	tb, _ := b.Templates(1)
	a.Close()
	b.Close()
	if len(ta) != 4 || len(tb) != 4 {
		t.Fatalf("templates %d and %d", len(ta), len(tb))
	}
	for i := range ta {
		if c := verify.Cosine(ta[i].Embedding, tb[i].Embedding); !(c >= 0.999999) {
			t.Errorf("template %d: --no-crops changed the embedding (cosine %.7f)", i, c)
		}
	}
}

// TestGalleryCrop: gallery crop writes the stored crop, byte for byte, to
// a file (mode 0600) or stdout, and fails as its help says: exit 2 for a
// usage error, 1 for no such person, face or crop.
func TestGalleryCrop(t *testing.T) {
	testmodels.Dir(t)
	tmp := t.TempDir()
	gal := filepath.Join(tmp, "g.db")
	runEnroll(t, 2, true, "--gallery", gal, "--name", "John Simm", simmA, simmB)
	runEnroll(t, 1, false, "--gallery", gal, "--name", "John Salley", "--no-crops", salleyA)
	g, err := fv.OpenGallery(gal, enroll.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	simm := mustResolve(t, g, "John Simm")
	salley := mustResolve(t, g, "John Salley")
	ts, _ := g.Templates(simm.ID)
	st, _ := g.Templates(salley.ID)
	want, err := g.TemplateCrop(simm.ID, ts[1].ID)
	g.Close()
	if err != nil || len(ts) != 2 || len(st) != 1 {
		t.Fatalf("gallery: %d and %d templates, crop %v", len(ts), len(st), err)
	}
	fid := fmt.Sprint(ts[1].ID)

	out := filepath.Join(tmp, "face.jpg")
	os.WriteFile(out, []byte("old"), 0o644) // replaced
	code, stdout, errs := facever(t, "gallery", "crop", "--gallery", gal, "John Simm", fid, "--out", out)
	if code != exitOK || !strings.Contains(stdout, "112×112 JPEG") || !strings.Contains(stdout, out) {
		t.Fatalf("gallery crop: exit %d: %s%s", code, stdout, errs)
	}
	got, err := os.ReadFile(out)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the file holds %d bytes (%v), want the stored %d", len(got), err, len(want))
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o600 {
		t.Errorf("--out file mode %v, want 0600 (biometric data)", fi.Mode().Perm())
	}
	if im, _, err := image.Decode(bytes.NewReader(got)); err != nil || im.Bounds().Dx() != 112 {
		t.Fatalf("the written crop: %v", err)
	}
	// To stdout, by #ID and #FACE_ID: the bytes only.
	code, stdout, errs = facever(t, "gallery", "crop", "-g", gal, fmt.Sprintf("#%d", simm.ID), "#"+fid, "--out", "-")
	if code != exitOK || stdout != string(want) {
		t.Fatalf("gallery crop --out -: exit %d, %d bytes on stdout: %s", code, len(stdout), errs)
	}
	if files, _ := filepath.Glob(filepath.Join(tmp, ".*tmp*")); len(files) != 0 {
		t.Errorf("temporary files left: %v", files)
	}

	fails := []struct {
		what string
		args []string
		code int
		msg  string
	}{
		{"no arguments", []string{"--out", out}, exitError, "needs the person and the face"},
		{"no face id", []string{"John Simm", "--out", out}, exitError, "needs the person and the face"},
		{"an argument too many", []string{"John Simm", fid, "x", "--out", out}, exitError, "needs the person and the face"},
		{"face id not a number", []string{"John Simm", "first", "--out", out}, exitError, "is not a face's number"},
		{"face id 0", []string{"John Simm", "0", "--out", out}, exitError, "is not a face's number"},
		{"no --out", []string{"John Simm", fid}, exitError, "--out FILE, or --out - for stdout"},
		{"no such person", []string{"John Nobody", fid, "--out", out}, exitNegative, `no person "John Nobody"`},
		{"no such face", []string{"John Simm", "999", "--out", out}, exitNegative, "has no face 999"},
		{"another person's face", []string{"John Salley", fid, "--out", out}, exitNegative, "has no face " + fid},
		{"no crop kept", []string{"John Salley", fmt.Sprint(st[0].ID), "--out", out}, exitNegative, "has no crop kept"},
		{"--out in a missing folder", []string{"John Simm", fid, "--out", filepath.Join(tmp, "no", "such", "f.jpg")}, exitError, "--out"},
	}
	for _, f := range fails {
		code, stdout, errs := facever(t, append([]string{"gallery", "crop", "--gallery", gal}, f.args...)...)
		if code != f.code || !strings.Contains(errs, f.msg) || stdout != "" {
			t.Errorf("%s: exit %d, stderr %q, stdout %d bytes; want exit %d saying %q", f.what, code, errs, len(stdout), f.code, f.msg)
		}
	}
	// A failed write left the earlier file as it was.
	if got, _ := os.ReadFile(out); !bytes.Equal(got, want) {
		t.Errorf("the refused runs changed %s", out)
	}
	code, _, errs = facever(t, "gallery", "crop", "--gallery", filepath.Join(tmp, "missing.db"), "John Simm", fid, "--out", out)
	if code != exitError || !strings.Contains(errs, "does not exist") {
		t.Errorf("a missing gallery: exit %d: %s", code, errs)
	}
	// --help teaches: the arguments, the exit statuses, an example.
	code, help, _ := facever(t, "gallery", "crop", "--help")
	for _, s := range []string{"NAME|#ID FACE_ID --out FILE|-", "Exit status: 0", "1 when there is no such person", "--no-crops", "gallery crop --gallery team.db"} {
		if code != exitOK || !strings.Contains(help, s) {
			t.Errorf("gallery crop --help (exit %d) does not say %q:\n%s", code, s, help)
		}
	}
}

// johnsChip is the aligned chip of a johns photo, as enroll makes it.
func johnsChip(tb testing.TB, r *fv.Recognizer, path string) align.Chip {
	tb.Helper()
	im, err := align.Load(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer im.Close()
	faces, err := r.Detect(im)
	if err != nil || len(faces) == 0 {
		tb.Fatalf("%s: %d faces, %v", path, len(faces), err)
	}
	chip, err := r.Align(im, faces[0])
	if err != nil {
		tb.Fatal(err)
	}
	return chip
}

// BenchmarkCropJPEG: what keeping a crop costs enroll per face: encoding
// the aligned 112×112 chip of a johns photo as the JPEG the gallery keeps
// (chipCrop: align.Chip.JPEG at quality 90).
func BenchmarkCropJPEG(b *testing.B) {
	r, err := fv.Open(fv.Options{ModelsDir: testmodels.Dir(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	chip := johnsChip(b, r, simmA)
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		j, err := chip.JPEG()
		if err != nil {
			b.Fatal(err)
		}
		n = len(j)
	}
	b.ReportMetric(float64(n), "bytes/crop")
}

// TestCropBytesJohns (FACEVER_CROP_BYTES=1) bulk-enrolls the 55 johns
// photos (54 templates: one photo is there twice) twice, with crops and with --no-crops, and logs what a crop
// costs: the bytes bbolt holds for the templates and for the crops (its
// bucket statistics: bytes in use and in allocated pages), the file
// sizes, and the cosine of each crop, embedded again, to its template:
// the README's figures.
func TestCropBytesJohns(t *testing.T) {
	if os.Getenv("FACEVER_CROP_BYTES") == "" {
		t.Skip("set FACEVER_CROP_BYTES=1 to measure the crops of a johns gallery (README)")
	}
	r, err := fv.Open(fv.Options{ModelsDir: testmodels.Dir(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	tmp := t.TempDir()
	with, without := filepath.Join(tmp, "with.db"), filepath.Join(tmp, "without.db")
	runEnroll(t, 54, true, "--gallery", with, "--data", "../../testdata/johns")
	runEnroll(t, 54, false, "--gallery", without, "--data", "../../testdata/johns", "--no-crops")
	cosines, others, sizes := cropStats(t, r, with, true)
	if len(cosines) != 54 {
		t.Fatalf("%d crops", len(cosines))
	}
	total := 0
	for _, n := range sizes {
		total += n
	}
	t.Logf("54 crops: JPEG bytes %s, mean %.0f; cosine to their template %s, to the nearest other template %s", summary(sizes, "%d"), float64(total)/54, summary(cosines, "%.4f"), summary(others, "%.4f"))
	for _, path := range []string{with, without} {
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		err = db.View(func(tx *bolt.Tx) error {
			for _, name := range []string{"templates", "crops"} {
				st := tx.Bucket([]byte(name)).Stats()
				inuse := st.LeafInuse + st.BranchInuse
				alloc := st.LeafAlloc + st.BranchAlloc
				t.Logf("%s: bucket %s: %d keys, %d bytes in use (%.0f per template), %d bytes of pages (%.0f per template)",
					filepath.Base(path), name, st.KeyN, inuse, float64(inuse)/54, alloc, float64(alloc)/54)
			}
			return nil
		})
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(path)
		t.Logf("%s: file %d bytes", filepath.Base(path), fi.Size())
	}
}

// TestRemoteGalleryCrop: gallery crop --server fetches the crop from a
// running facever serve (GET .../faces/{face_id}/crop): the bytes the
// CLI's enroll stored, and exit 1 for no such person, face or crop, 2 for
// a refused key; the local command on the served gallery says where the
// server is.
func TestRemoteGalleryCrop(t *testing.T) {
	testmodels.Dir(t)
	tmp := t.TempDir()
	gal := filepath.Join(tmp, "g.db")
	runEnroll(t, 2, true, "--gallery", gal, "--name", "John Simm", simmA, simmB)
	runEnroll(t, 1, false, "--gallery", gal, "--name", "John Salley", "--no-crops", salleyA)
	code, key, errs := facever(t, "apikey", "create", "--gallery", gal, "--name", "ops")
	key = strings.TrimSpace(key)
	if code != exitOK || key == "" {
		t.Fatalf("apikey create: %d %s", code, errs)
	}
	g, err := fv.OpenGallery(gal, enroll.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	ts, _ := g.Templates(mustResolve(t, g, "John Simm").ID)
	st, _ := g.Templates(mustResolve(t, g, "John Salley").ID)
	want, err := g.TemplateCrop(ts[0].IdentityID, ts[0].ID)
	g.Close()
	if err != nil {
		t.Fatal(err)
	}
	addr, stop := serveInProcess(t, []string{"serve", "--gallery", gal, "--addr", "127.0.0.1:0"})
	defer stop()
	url := "http://" + addr
	fid := fmt.Sprint(ts[0].ID)
	out := filepath.Join(tmp, "remote.jpg")
	code, stdout, errs := facever(t, "gallery", "crop", "--server", url, "--key", key, "John Simm", fid, "--out", out)
	if got, _ := os.ReadFile(out); code != exitOK || !bytes.Equal(got, want) {
		t.Fatalf("gallery crop --server: exit %d, %d bytes (want the stored %d): %s%s", code, len(got), len(want), stdout, errs)
	}
	code, stdout, errs = facever(t, "gallery", "crop", "--server", url, "--key", key, "#1", fid, "--out", "-")
	if code != exitOK || stdout != string(want) {
		t.Fatalf("gallery crop --server --out -: exit %d, %d bytes: %s", code, len(stdout), errs)
	}
	for _, f := range []struct {
		what string
		args []string
		code int
		msg  string
	}{
		{"no such person", []string{"--key", key, "John Nobody", fid}, exitNegative, `no person "John Nobody"`},
		{"no such face", []string{"--key", key, "John Simm", "999"}, exitNegative, "has no face 999"},
		{"another person's face", []string{"--key", key, "John Salley", fid}, exitNegative, "has no face " + fid},
		{"no crop kept", []string{"--key", key, "John Salley", fmt.Sprint(st[0].ID)}, exitNegative, "has no crop kept"},
		{"a wrong key", []string{"--key", "fvk_wrong", "John Simm", fid}, exitError, "refused the API key"},
		{"face id not a number", []string{"--key", key, "John Simm", "x"}, exitError, "is not a face's number"},
	} {
		code, stdout, errs := facever(t, append([]string{"gallery", "crop", "--server", url, "--out", filepath.Join(tmp, "x.jpg")}, f.args...)...)
		if code != f.code || !strings.Contains(errs, f.msg) || stdout != "" {
			t.Errorf("--server, %s: exit %d, stderr %q; want exit %d saying %q", f.what, code, errs, f.code, f.msg)
		}
	}
	code, _, errs = facever(t, "gallery", "crop", "--gallery", gal, "John Simm", fid, "--out", out)
	if code != exitError || !strings.Contains(errs, "held by a running facever serve") || !strings.Contains(errs, url) {
		t.Errorf("local gallery crop on the served gallery: exit %d: %s", code, errs)
	}
}
