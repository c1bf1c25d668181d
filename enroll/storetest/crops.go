package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/facever/facever/enroll"
)

// cropJPEG is a real 112×112 JPEG (what align.Chip.JPEG makes), different
// for each seed.
func cropJPEG(seed int) []byte {
	im := image.NewRGBA(image.Rect(0, 0, 112, 112))
	rng := rand.New(rand.NewPCG(uint64(seed), 3))
	for i := range im.Pix {
		im.Pix[i] = uint8(rng.IntN(256))
	}
	for y := range 112 {
		im.Set(y, y, color.RGBA{uint8(seed), 0, 0, 255})
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, im, &jpeg.Options{Quality: 90}); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// checkCrop fails the test unless template tid of identity id has crop
// want (nil: no crop, ErrNoCrop).
func checkCrop(t *testing.T, s enroll.Store, what string, id, tid uint64, want []byte) {
	t.Helper()
	got, err := s.TemplateCrop(id, tid)
	switch {
	case want == nil && !errors.Is(err, enroll.ErrNoCrop):
		t.Errorf("%s: TemplateCrop(%d, %d) of a template without a crop: %d bytes, %v; want ErrNoCrop", what, id, tid, len(got), err)
	case want != nil && err != nil:
		t.Errorf("%s: TemplateCrop(%d, %d): %v", what, id, tid, err)
	case want != nil && !bytes.Equal(got, want):
		t.Errorf("%s: TemplateCrop(%d, %d): %d bytes, not the %d enrolled", what, id, tid, len(got), len(want))
	}
}

// checkListed fails the test unless the listed templates say HasCrop as
// has says, and carry no crop (the lists never read the images).
func checkListed(t *testing.T, what string, ts []enroll.Template, has ...bool) {
	t.Helper()
	if len(ts) != len(has) {
		t.Errorf("%s: %d templates, want %d", what, len(ts), len(has))
		return
	}
	for i, tm := range ts {
		if tm.HasCrop != has[i] {
			t.Errorf("%s: template %d (id %d): HasCrop %v, want %v", what, i, tm.ID, tm.HasCrop, has[i])
		}
		if tm.Crop != nil {
			t.Errorf("%s: template %d carries its crop (%d bytes): the lists must leave Crop nil", what, i, len(tm.Crop))
		}
	}
}

// testCrops: a template's crop is kept with it, bit for bit, through every
// write that adds templates; the lists say HasCrop and read no image;
// TemplateCrop tells a missing identity, template and crop apart; removing
// a template or its identity drops the crop; crops survive a reopen and
// leave the index alone.
func testCrops(t *testing.T, b Backend) {
	s := open(t, b, opts())
	rng := rand.New(rand.NewPCG(4, 4))
	c1, c3 := cropJPEG(1), cropJPEG(3)
	in := []enroll.Template{
		{Embedding: randEmb(rng, 8), Source: "1.jpg", PhotoSHA256: sha(1), Crop: bytes.Clone(c1)},
		{Embedding: randEmb(rng, 8), Source: "2.jpg", PhotoSHA256: sha(2)},
		{Embedding: randEmb(rng, 8), Source: "3.jpg", Crop: bytes.Clone(c3)},
	}
	ann, saved := must2(s.Enroll("Ann", nil, in))
	for i, want := range []bool{true, false, true} {
		if saved[i].HasCrop != want {
			t.Errorf("Enroll's template %d: HasCrop %v, want %v", i, saved[i].HasCrop, want)
		}
	}
	// The store keeps its own copy: the caller's buffer may change.
	in[0].Crop[len(c1)/2] ^= 0xff
	bob, bobTs := must2(s.Enroll("Bob", nil, []enroll.Template{{Embedding: randEmb(rng, 8)}}))

	checkListed(t, "Templates", must(s.Templates(ann.ID)), true, false, true)
	page, _ := must2(s.TemplatesPage(ann.ID, 0, 2))
	checkListed(t, "TemplatesPage", page, true, false)
	checkListed(t, "FindPhoto of a photo with a crop", must(s.FindPhoto(sha(1))), true)
	checkListed(t, "FindPhoto of a photo without", must(s.FindPhoto(sha(2))), false)
	checkCrop(t, s, "Enroll", ann.ID, saved[0].ID, c1)
	checkCrop(t, s, "Enroll", ann.ID, saved[1].ID, nil)
	checkCrop(t, s, "Enroll", ann.ID, saved[2].ID, c3)
	checkCrop(t, s, "Enroll without crops", bob.ID, bobTs[0].ID, nil)

	// What TemplateCrop answers for what is not there.
	_, err := s.TemplateCrop(ann.ID+bob.ID+100, saved[0].ID)
	is(t, "TemplateCrop of a missing identity", err, enroll.ErrNotFound)
	_, err = s.TemplateCrop(ann.ID, saved[2].ID+1000)
	is(t, "TemplateCrop of a missing template", err, enroll.ErrTemplateNotFound)
	_, err = s.TemplateCrop(bob.ID, saved[0].ID)
	is(t, "TemplateCrop of another identity's template", err, enroll.ErrTemplateNotFound)

	// The answer is the caller's: changing it changes nothing stored.
	got := must(s.TemplateCrop(ann.ID, saved[0].ID))
	got[len(got)/2] ^= 0xff
	checkCrop(t, s, "after the caller changed an answer", ann.ID, saved[0].ID, c1)

	// AddTemplates and AddTemplatesOnce keep crops too; a replay adds none.
	c4, c5 := cropJPEG(4), cropJPEG(5)
	added := must(s.AddTemplates(bob.ID, []enroll.Template{{Embedding: randEmb(rng, 8), Crop: c4}, {Embedding: randEmb(rng, 8)}}))
	if !added[0].HasCrop || added[1].HasCrop {
		t.Errorf("AddTemplates' templates: HasCrop %v %v, want true false", added[0].HasCrop, added[1].HasCrop)
	}
	checkCrop(t, s, "AddTemplates", bob.ID, added[0].ID, c4)
	checkCrop(t, s, "AddTemplates", bob.ID, added[1].ID, nil)
	var onceID uint64
	answer := func(_ enroll.Identity, ts []enroll.Template) (int, []byte, error) {
		onceID = ts[0].ID
		if !ts[0].HasCrop {
			return 0, nil, fmt.Errorf("the answer's template says it has no crop")
		}
		return 201, []byte("{}"), nil
	}
	once := []enroll.Template{{Embedding: randEmb(rng, 8), Crop: c5}}
	if _, replay, err := s.AddTemplatesOnce(bob.ID, once, "crop-key", "d", answer); err != nil || replay {
		t.Fatalf("AddTemplatesOnce with a crop: %v %v", replay, err)
	}
	checkCrop(t, s, "AddTemplatesOnce", bob.ID, onceID, c5)
	if _, replay, err := s.AddTemplatesOnce(bob.ID, once, "crop-key", "d", answer); err != nil || !replay {
		t.Fatalf("AddTemplatesOnce retried: %v %v", replay, err)
	}
	checkListed(t, "Bob's templates", must(s.Templates(bob.ID)), false, true, false, true)

	// The index holds every template, crops or not, and finds them.
	if ix := must(s.LoadIndex()); ix.Len() != 7 {
		t.Errorf("LoadIndex: %d templates, want 7", ix.Len())
	}
	if ms := must(s.Search(in[2].Embedding, 1)); len(ms) != 1 || ms[0].TemplateID != saved[2].ID {
		t.Errorf("Search for a template with a crop: %+v", ms)
	}

	// Everything survives a reopen.
	s = reopen(t, b, s, opts())
	checkListed(t, "Templates after reopen", must(s.Templates(ann.ID)), true, false, true)
	checkCrop(t, s, "after reopen", ann.ID, saved[0].ID, c1)
	checkCrop(t, s, "after reopen", ann.ID, saved[2].ID, c3)
	checkCrop(t, s, "after reopen", bob.ID, onceID, c5)

	// Removing a template drops its crop; the others stay.
	must(s.RemoveTemplate(ann.ID, saved[0].ID))
	_, err = s.TemplateCrop(ann.ID, saved[0].ID)
	is(t, "TemplateCrop of a removed template", err, enroll.ErrTemplateNotFound)
	checkCrop(t, s, "after another template was removed", ann.ID, saved[2].ID, c3)
	checkListed(t, "Templates after RemoveTemplate", must(s.Templates(ann.ID)), false, true)
	// Removing the identity drops them all.
	if err := s.Remove(ann.ID); err != nil {
		t.Fatal(err)
	}
	_, err = s.TemplateCrop(ann.ID, saved[2].ID)
	is(t, "TemplateCrop of a removed identity", err, enroll.ErrNotFound)
	checkCrop(t, s, "another identity's after a Remove", bob.ID, added[0].ID, c4)
	if ix := must(s.LoadIndex()); ix.Len() != 4 {
		t.Errorf("LoadIndex after the removes: %d templates, want 4", ix.Len())
	}
}

// testCropsRefused: a crop over MaxCropBytes (ErrTooLarge) or one that is
// not a JPEG (ErrInvalid) fails the write that carries it, whichever it
// is, and nothing of that write is kept; a crop of exactly MaxCropBytes is
// kept whole.
func testCropsRefused(t *testing.T, b Backend) {
	s := open(t, b, opts())
	im, ok := unwrap(s).(enroll.Importer)
	if !ok {
		t.Fatalf("%T does not implement enroll.Importer", unwrap(s))
	}
	rng := rand.New(rand.NewPCG(4, 5))
	ann := must(s.AddIdentity("Ann", nil))
	must(s.AddTemplates(ann.ID, []enroll.Template{{Embedding: randEmb(rng, 8), Crop: cropJPEG(1)}}))
	limit := append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, make([]byte, enroll.MaxCropBytes-4)...)
	for i := range limit[4:] {
		limit[4+i] = byte(i * 7)
	}
	created := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, c := range []struct {
		what string
		crop []byte
		want error
	}{
		{"one byte over MaxCropBytes", append(bytes.Clone(limit), 0xD9), enroll.ErrTooLarge},
		{"a PNG", []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), enroll.ErrInvalid},
		{"JPEG bytes without their start", cropJPEG(2)[2:], enroll.ErrInvalid},
	} {
		good := enroll.Template{Embedding: randEmb(rng, 8), Crop: cropJPEG(3)}
		bad := enroll.Template{Embedding: randEmb(rng, 8), Source: "bad.jpg", PhotoSHA256: sha(40), Crop: c.crop}
		_, _, err := s.Enroll("New", nil, []enroll.Template{good, bad})
		is(t, "Enroll of "+c.what, err, c.want)
		if _, err := s.GetByName("New"); !errors.Is(err, enroll.ErrNotFound) {
			t.Errorf("a refused Enroll of %s created its identity: %v", c.what, err)
		}
		_, err = s.AddTemplates(ann.ID, []enroll.Template{good, bad})
		is(t, "AddTemplates of "+c.what, err, c.want)
		_, _, err = s.AddTemplatesOnce(ann.ID, []enroll.Template{good, bad}, "k-"+c.what, "d", func(enroll.Identity, []enroll.Template) (int, []byte, error) { return 201, nil, nil })
		is(t, "AddTemplatesOnce of "+c.what, err, c.want)
		if _, ok, _ := s.LookupOnce("k-" + c.what); ok {
			t.Errorf("a refused AddTemplatesOnce of %s remembered its key", c.what)
		}
		_, err = s.EnrollBatch([]enroll.BatchItem{{Name: "Batch", Template: good}, {Name: "Ann", Template: bad}}, false)
		is(t, "EnrollBatch of "+c.what, err, c.want)
		if _, err := s.GetByName("Batch"); !errors.Is(err, enroll.ErrNotFound) {
			t.Errorf("a refused EnrollBatch of %s created an identity: %v", c.what, err)
		}
		bad.ID, bad.IdentityID, bad.Created = 900, 800, created
		good.ID, good.IdentityID, good.Created = 899, 800, created
		err = im.ImportIdentity(enroll.Identity{ID: 800, Name: "Imported", Created: created}, []enroll.Template{good, bad})
		is(t, "ImportIdentity of "+c.what, err, c.want)
		if _, err := s.Get(800); !errors.Is(err, enroll.ErrNotFound) {
			t.Errorf("a refused ImportIdentity of %s created its identity: %v", c.what, err)
		}
		if got := must(s.Get(ann.ID)); got.Templates != 1 {
			t.Fatalf("after the refused writes of %s Ann has %d templates, want 1", c.what, got.Templates)
		}
		if f := must(s.FindPhoto(sha(40))); len(f) != 0 {
			t.Errorf("a refused write of %s left its photo: %+v", c.what, f)
		}
	}
	if ix := must(s.LoadIndex()); ix.Len() != 1 {
		t.Errorf("LoadIndex after the refused writes: %d templates, want 1", ix.Len())
	}
	// The bound itself is allowed, and kept whole.
	ts := must(s.AddTemplates(ann.ID, []enroll.Template{{Embedding: randEmb(rng, 8), Crop: limit}}))
	checkCrop(t, s, "a crop of exactly MaxCropBytes", ann.ID, ts[0].ID, limit)
	// An empty crop is no crop.
	ts = must(s.AddTemplates(ann.ID, []enroll.Template{{Embedding: randEmb(rng, 8), Crop: []byte{}}}))
	if ts[0].HasCrop {
		t.Errorf("an empty crop: HasCrop")
	}
	checkCrop(t, s, "an empty crop", ann.ID, ts[0].ID, nil)
}

// testCropsBatchImport: EnrollBatch keeps each item's crop (and a skipped
// item does not replace the crop of the template it matched); ImportIdentity
// keeps crops bit for bit, and templates imported without one have none.
func testCropsBatchImport(t *testing.T, b Backend) {
	s := open(t, b, opts())
	rng := rand.New(rand.NewPCG(4, 6))
	var items []enroll.BatchItem
	var crops [][]byte
	for i := range 9 {
		c := cropJPEG(10 + i)
		if i%3 == 2 {
			c = nil
		}
		crops = append(crops, c)
		items = append(items, enroll.BatchItem{Name: fmt.Sprintf("p%d", i%2), Template: enroll.Template{Embedding: randEmb(rng, 8), PhotoSHA256: sha(100 + i), Crop: c}})
	}
	res := must(s.EnrollBatch(items, false))
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("item %d: %v", i, r.Err)
		}
		if r.Template.HasCrop != (crops[i] != nil) {
			t.Errorf("EnrollBatch item %d: HasCrop %v", i, r.Template.HasCrop)
		}
		checkCrop(t, s, fmt.Sprintf("EnrollBatch item %d", i), r.Identity.ID, r.Template.ID, crops[i])
	}
	// A rerun with other crops skips every item and keeps the first crops.
	again := append([]enroll.BatchItem(nil), items...)
	for i := range again {
		again[i].Template.Crop = cropJPEG(50 + i)
	}
	for i, r := range must(s.EnrollBatch(again, false)) {
		if !errors.Is(r.Err, enroll.ErrAlreadyEnrolled) || r.Template.ID != res[i].Template.ID {
			t.Fatalf("rerun item %d: %+v", i, r)
		}
		if r.Template.HasCrop != (crops[i] != nil) {
			t.Errorf("rerun item %d: the held template's HasCrop %v", i, r.Template.HasCrop)
		}
		checkCrop(t, s, fmt.Sprintf("after the rerun, item %d", i), res[i].Identity.ID, res[i].Template.ID, crops[i])
	}

	im, ok := unwrap(s).(enroll.Importer)
	if !ok {
		t.Fatalf("%T does not implement enroll.Importer", unwrap(s))
	}
	created := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	c7 := cropJPEG(7)
	ts := []enroll.Template{
		{ID: 900, IdentityID: 500, Embedding: randEmb(rng, 8), Created: created, Crop: c7},
		{ID: 901, IdentityID: 500, Embedding: randEmb(rng, 8), Created: created},
	}
	if err := im.ImportIdentity(enroll.Identity{ID: 500, Name: "Imported", Created: created}, ts); err != nil {
		t.Fatal(err)
	}
	checkListed(t, "imported templates", must(s.Templates(500)), true, false)
	checkCrop(t, s, "ImportIdentity", 500, 900, c7)
	checkCrop(t, s, "ImportIdentity", 500, 901, nil)
	s = reopen(t, b, s, opts())
	checkCrop(t, s, "ImportIdentity, after reopen", 500, 900, c7)
	if ix := must(s.LoadIndex()); ix.Len() != 11 {
		t.Errorf("LoadIndex: %d templates, want 11", ix.Len())
	}
}
