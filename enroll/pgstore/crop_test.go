package pgstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"image"
	"image/jpeg"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/facever/facever/enroll"
	"github.com/facever/facever/internal/pgtest"
)

// photoCrops returns n JPEG crops (112×112, quality 90, as align.Chip.JPEG
// makes them) cut from the johns photos.
func photoCrops(t testing.TB, n int) [][]byte {
	t.Helper()
	files, err := filepath.Glob("../../testdata/johns/*/*.jpg")
	if err != nil || len(files) < n {
		t.Fatalf("%d johns photos (%v), want %d", len(files), err, n)
	}
	out := make([][]byte, n)
	for i := range out {
		f, err := os.Open(files[i])
		if err != nil {
			t.Fatal(err)
		}
		img, err := jpeg.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", files[i], err)
		}
		b := img.Bounds()
		c := b.Min.Add(image.Pt(b.Dx()/2-56, b.Dy()/2-56))
		sub := img.(interface {
			SubImage(image.Rectangle) image.Image
		}).SubImage(image.Rectangle{c, c.Add(image.Pt(112, 112))})
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, sub, &jpeg.Options{Quality: 90}); err != nil {
			t.Fatal(err)
		}
		out[i] = buf.Bytes()
	}
	return out
}

// shaOf is a photo hash for the tests.
func shaOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// wantCrop checks what TemplateCrop answers for template tid of id: the
// crop want, or (want nil) ErrNoCrop.
func wantCrop(t *testing.T, s *Store, id, tid uint64, want []byte) {
	t.Helper()
	got, err := s.TemplateCrop(id, tid)
	if want == nil {
		if !errors.Is(err, enroll.ErrNoCrop) || got != nil {
			t.Fatalf("crop of %d/%d: %d bytes, %v; want ErrNoCrop", id, tid, len(got), err)
		}
		return
	}
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("crop of %d/%d: %d bytes, %v; want the %d written", id, tid, len(got), err, len(want))
	}
}

// hasCrops is the HasCrop of each template.
func hasCrops(ts []enroll.Template) []bool {
	out := make([]bool, len(ts))
	for i, t := range ts {
		out[i] = t.HasCrop
		if t.Crop != nil {
			out[i] = false // a list must not carry the image
		}
	}
	return out
}

// Every write path keeps the crops it is given, in the template's
// transaction; the lists say HasCrop without carrying the image;
// TemplateCrop reads one, with ErrNotFound, ErrTemplateNotFound and
// ErrNoCrop for what is not there; removing a template or a person removes
// their crops; and another node (a second Store) reads a crop at once.
func TestCrops(t *testing.T) {
	url := pgtest.URL(t)
	s := open(t, url)
	other := open(t, url) // another node
	c := connect(t, url)
	r := rand.New(rand.NewPCG(4, 4))
	crops := photoCrops(t, 8)

	// Enroll: crops on the first and third templates.
	a, ts, err := s.Enroll("ann", nil, []enroll.Template{
		{Embedding: vec(r, 8), Crop: crops[0], PhotoSHA256: shaOf("p0")},
		{Embedding: vec(r, 8)},
		{Embedding: vec(r, 8), Crop: crops[1]},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := hasCrops(ts); !slices.Equal(got, []bool{true, false, true}) {
		t.Fatalf("enroll returned HasCrop %v (or a Crop)", got)
	}
	wantCrop(t, s, a.ID, ts[0].ID, crops[0])
	wantCrop(t, s, a.ID, ts[1].ID, nil)
	wantCrop(t, other, a.ID, ts[2].ID, crops[1]) // the other node reads it too

	// AddTemplates, AddTemplatesOnce.
	more, err := s.AddTemplates(a.ID, []enroll.Template{{Embedding: vec(r, 8), Crop: crops[2]}})
	if err != nil {
		t.Fatal(err)
	}
	_, replay, err := s.AddTemplatesOnce(a.ID, []enroll.Template{{Embedding: vec(r, 8), Crop: crops[3]}}, "key-1", "d1",
		func(_ enroll.Identity, saved []enroll.Template) (int, []byte, error) {
			if len(saved) != 1 || !saved[0].HasCrop || saved[0].Crop != nil {
				t.Errorf("AddTemplatesOnce saved %+v", saved)
			}
			return 201, []byte("{}"), nil
		})
	if err != nil || replay {
		t.Fatalf("add once: replay %v, %v", replay, err)
	}
	all, err := other.Templates(a.ID)
	if err != nil || len(all) != 5 {
		t.Fatalf("templates: %d, %v", len(all), err)
	}
	if got := hasCrops(all); !slices.Equal(got, []bool{true, false, true, true, true}) {
		t.Fatalf("Templates HasCrop %v", got)
	}
	wantCrop(t, other, a.ID, more[0].ID, crops[2])
	wantCrop(t, other, a.ID, all[4].ID, crops[3])
	page, next, err := other.TemplatesPage(a.ID, all[0].ID, 2)
	if err != nil || next != all[2].ID || !slices.Equal(hasCrops(page), []bool{false, true}) {
		t.Fatalf("page: %v, next %d, %v", hasCrops(page), next, err)
	}
	found, err := other.FindPhoto(shaOf("p0"))
	if err != nil || len(found) != 1 || !found[0].HasCrop || found[0].Crop != nil {
		t.Fatalf("find photo: %+v %v", found, err)
	}

	// EnrollBatch: a new person with a crop; the photo already enrolled
	// is answered with its template, HasCrop included.
	res, err := s.EnrollBatch([]enroll.BatchItem{
		{Name: "bob", Template: enroll.Template{Embedding: vec(r, 8), Crop: crops[4], PhotoSHA256: shaOf("p1")}},
		{Name: "ann", Template: enroll.Template{Embedding: vec(r, 8), Crop: crops[5], PhotoSHA256: shaOf("p0")}},
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || !res[0].Template.HasCrop || !errors.Is(res[1].Err, enroll.ErrAlreadyEnrolled) || !res[1].Template.HasCrop {
		t.Fatalf("batch: %+v", res)
	}
	bob := res[0].Identity
	wantCrop(t, other, bob.ID, res[0].Template.ID, crops[4])

	// ImportIdentity keeps the crops (gallery migrate copies them).
	at := time.Now().UTC().Truncate(time.Microsecond)
	err = s.ImportIdentity(enroll.Identity{ID: 100, Name: "cy", Created: at}, []enroll.Template{
		{ID: 500, IdentityID: 100, Embedding: vec(r, 8), Created: at, Crop: crops[6]},
		{ID: 501, IdentityID: 100, Embedding: vec(r, 8), Created: at},
	})
	if err != nil {
		t.Fatal(err)
	}
	wantCrop(t, other, 100, 500, crops[6])
	wantCrop(t, other, 100, 501, nil)

	// What is not there.
	if _, err := s.TemplateCrop(999, 1); !errors.Is(err, enroll.ErrNotFound) {
		t.Fatalf("absent identity: %v", err)
	}
	if _, err := s.TemplateCrop(1<<63, 1); !errors.Is(err, enroll.ErrNotFound) {
		t.Fatalf("identity id beyond int64: %v", err)
	}
	for _, tid := range []uint64{res[0].Template.ID, 9999, 1 << 63} { // bob's template is not ann's
		if _, err := s.TemplateCrop(a.ID, tid); !errors.Is(err, enroll.ErrTemplateNotFound) {
			t.Fatalf("template %d of ann: %v, want ErrTemplateNotFound", tid, err)
		}
	}

	// Removing deletes the crops (the other node sees it).
	if n := count(t, c, "SELECT count(*) FROM facever.template_crops"); n != 6 { // ann 4, bob 1, cy 1 (the batch skipped ann's photo)
		t.Fatalf("%d crop rows, want 6", n)
	}
	if _, err := s.RemoveTemplate(a.ID, ts[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := other.TemplateCrop(a.ID, ts[0].ID); !errors.Is(err, enroll.ErrTemplateNotFound) {
		t.Fatalf("crop of a removed template: %v", err)
	}
	if err := s.Remove(a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := other.TemplateCrop(a.ID, ts[2].ID); !errors.Is(err, enroll.ErrNotFound) {
		t.Fatalf("crop of a removed identity: %v", err)
	}
	if n := count(t, c, "SELECT count(*) FROM facever.template_crops"); n != 2 {
		t.Fatalf("%d crop rows after the removals, want 2 (bob's, cy's)", n)
	}

	// A read-only node reads crops too.
	ro, err := Open(url, enroll.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	wantCrop(t, ro, bob.ID, res[0].Template.ID, crops[4])
}

// A crop over enroll.MaxCropBytes (ErrTooLarge) or not a JPEG
// (ErrInvalid) is refused by every write path, with nothing written: not
// the template, not the identity, not a change, not the other templates
// of the call.
func TestCropRefused(t *testing.T) {
	url := pgtest.URL(t)
	s := open(t, url)
	r := rand.New(rand.NewPCG(5, 5))
	good := photoCrops(t, 1)[0]
	a, _, err := s.Enroll("ann", nil, []enroll.Template{{Embedding: vec(r, 8), Crop: good}})
	if err != nil {
		t.Fatal(err)
	}
	big := append(append([]byte(nil), good...), make([]byte, enroll.MaxCropBytes)...)
	png := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
	at := time.Now().UTC().Truncate(time.Microsecond)
	for _, bad := range []struct {
		name string
		crop []byte
		want error
	}{{"too large", big, enroll.ErrTooLarge}, {"not a JPEG", png, enroll.ErrInvalid}, {"JPEG SOI alone", []byte{0xFF, 0xD8}, enroll.ErrInvalid}} {
		// A good template first, then the bad one: neither goes in.
		ts := []enroll.Template{{Embedding: vec(r, 8), Crop: good}, {Embedding: vec(r, 8), Crop: bad.crop}}
		before, err := dump(url)
		if err != nil {
			t.Fatal(err)
		}
		paths := map[string]func() error{
			"AddTemplates": func() error { _, err := s.AddTemplates(a.ID, ts); return err },
			"AddTemplatesOnce": func() error {
				_, _, err := s.AddTemplatesOnce(a.ID, ts, "k-"+bad.name, "d", func(enroll.Identity, []enroll.Template) (int, []byte, error) {
					return 201, nil, nil
				})
				return err
			},
			"Enroll new":      func() error { _, _, err := s.Enroll("new person", nil, ts); return err },
			"Enroll existing": func() error { _, _, err := s.Enroll("ann", map[string]string{"k": "v"}, ts); return err },
			"EnrollBatch": func() error {
				_, err := s.EnrollBatch([]enroll.BatchItem{{Name: "new person", Template: ts[0]}, {Name: "other", Template: ts[1]}}, false)
				return err
			},
			"ImportIdentity": func() error {
				return s.ImportIdentity(enroll.Identity{ID: 50, Name: "imported", Created: at}, []enroll.Template{
					{ID: 70, IdentityID: 50, Embedding: vec(r, 8), Created: at, Crop: good},
					{ID: 71, IdentityID: 50, Embedding: vec(r, 8), Created: at, Crop: bad.crop},
				})
			},
		}
		for name, write := range paths {
			if err := write(); !errors.Is(err, bad.want) {
				t.Fatalf("%s with a crop %s: %v, want %v", name, bad.name, err, bad.want)
			}
		}
		after, err := dump(url)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(before, after) {
			t.Fatalf("a refused crop (%s) changed the database", bad.name)
		}
	}
	if v := s.Version(); v != 2 { // add_identity, add_template of the first enroll
		t.Fatalf("version %d after the refusals, want 2", v)
	}
}

// A gallery at the schema before crops (2), with templates, migrates in
// place on the first open by this code: its templates are there, without
// crops (HasCrop false, ErrNoCrop), and new ones keep theirs.
func TestCropsMigration(t *testing.T) {
	url := pgtest.URL(t)
	r := rand.New(rand.NewPCG(6, 6))
	all := migrations
	migrations = all[:2] // the code of the previous release
	old, err := Open(url, enroll.Options{Model: testModel})
	if err != nil {
		migrations = all
		t.Fatal(err)
	}
	a, ts, err := old.Enroll("ann", nil, []enroll.Template{{Embedding: vec(r, 8)}, {Embedding: vec(r, 8), PhotoSHA256: shaOf("x")}})
	old.Close()
	migrations = all
	if err != nil {
		t.Fatal(err)
	}
	c := connect(t, url)
	if n := count(t, c, "SELECT count(*) FROM pg_tables WHERE schemaname = 'facever' AND tablename = 'template_crops'"); n != 0 {
		t.Fatal("the old schema has template_crops")
	}
	if _, err := Open(url, enroll.Options{ReadOnly: true}); !errors.Is(err, enroll.ErrSchema) {
		t.Fatalf("read-only open of schema 2: %v, want ErrSchema", err)
	}
	s := open(t, url)
	if m := s.Meta(); m.Schema != 3 || m.Schema != SchemaVersion() {
		t.Fatalf("schema %d after the migration", m.Schema)
	}
	got, err := s.Templates(a.ID)
	if err != nil || len(got) != 2 || got[0].HasCrop || got[1].HasCrop {
		t.Fatalf("templates after the migration: %+v %v", got, err)
	}
	for _, tt := range ts {
		wantCrop(t, s, a.ID, tt.ID, nil)
	}
	if found, err := s.FindPhoto(shaOf("x")); err != nil || len(found) != 1 || found[0].HasCrop {
		t.Fatalf("find photo after the migration: %+v %v", found, err)
	}
	crop := photoCrops(t, 1)[0]
	added, err := s.AddTemplates(a.ID, []enroll.Template{{Embedding: vec(r, 8), Crop: crop}})
	if err != nil {
		t.Fatal(err)
	}
	wantCrop(t, s, a.ID, added[0].ID, crop)
	ix, err := s.Index()
	if err != nil || ix.Len() != 3 {
		t.Fatalf("index after the migration: %v", err)
	}
}

// A crop row written around this package (too large, or not a JPEG) is
// reported as ErrCorrupt, and the oversized one is not read whole.
func TestCropCorrupt(t *testing.T) {
	url := pgtest.URL(t)
	s := open(t, url)
	r := rand.New(rand.NewPCG(7, 7))
	a, ts, err := s.Enroll("ann", nil, []enroll.Template{{Embedding: vec(r, 8)}, {Embedding: vec(r, 8)}})
	if err != nil {
		t.Fatal(err)
	}
	c := connect(t, url)
	if _, err := c.Exec(t.Context(), `INSERT INTO facever.template_crops VALUES ($1, $2), ($3, $4)`,
		int64(ts[0].ID), make([]byte, 10<<20), int64(ts[1].ID), []byte("GIF89a")); err != nil {
		t.Fatal(err)
	}
	for _, tt := range ts {
		if b, err := s.TemplateCrop(a.ID, tt.ID); !errors.Is(err, enroll.ErrCorrupt) || b != nil {
			t.Fatalf("corrupt crop of %d: %d bytes, %v", tt.ID, len(b), err)
		}
	}
}
