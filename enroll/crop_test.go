package enroll

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// testJPEG is a real 112×112 JPEG, different for each seed.
func testJPEG(t testing.TB, seed int) []byte {
	t.Helper()
	im := image.NewRGBA(image.Rect(0, 0, 112, 112))
	for y := range 112 {
		for x := range 112 {
			im.Set(x, y, color.RGBA{uint8(x*2 + seed), uint8(y*2 + 3*seed), uint8((x + y + seed) % 256), 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, im, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestMigrationCrops: a schema-5 gallery (no crops bucket) opens, migrates
// to schema 6 and checks out; its templates have no crop, and new ones keep
// theirs. A read-only open of the old file refuses to migrate.
func TestMigrationCrops(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	saved := migrations
	t.Cleanup(func() { migrations = saved })
	migrations = saved[:5]
	g, err := Open(path, Options{Model: testModel})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(6, 6))
	ann, old, err := g.Enroll("Ann", nil, []Template{{Embedding: randEmb(rng, 16), PhotoSHA256: strings.Repeat("ab", 32)}, {Embedding: randEmb(rng, 16)}})
	if err != nil {
		t.Fatal(err)
	}
	// A schema-5 file cannot keep a crop: the write is refused, not dropped.
	if _, err := g.AddTemplates(ann.ID, []Template{{Embedding: randEmb(rng, 16), Crop: testJPEG(t, 1)}}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a crop into a file without the crops bucket: %v", err)
	}
	g.Close()
	migrations = saved
	if _, err := Open(path, Options{ReadOnly: true}); !errors.Is(err, ErrSchema) {
		t.Errorf("read-only open of a schema-5 file: %v", err)
	}
	g = openTest(t, path, Options{Model: testModel})
	if g.Meta().Schema != 6 || SchemaVersion != 6 {
		t.Fatalf("schema %d after migration (SchemaVersion %d)", g.Meta().Schema, SchemaVersion)
	}
	if r, err := g.Check(); err != nil || !r.OK() || r.Templates != 2 || r.Crops != 0 {
		t.Fatalf("Check after migration: %+v %v", r, err)
	}
	ts, err := g.Templates(ann.ID)
	if err != nil || len(ts) != 2 || ts[0].HasCrop || ts[1].HasCrop || ts[0].ID != old[0].ID {
		t.Fatalf("templates after migration: %+v %v", ts, err)
	}
	if _, err := g.TemplateCrop(ann.ID, old[0].ID); !errors.Is(err, ErrNoCrop) {
		t.Errorf("TemplateCrop of a template enrolled before crops: %v", err)
	}
	crop := testJPEG(t, 2)
	nt, err := g.AddTemplates(ann.ID, []Template{{Embedding: randEmb(rng, 16), Crop: crop}})
	if err != nil || !nt[0].HasCrop || nt[0].Crop != nil {
		t.Fatalf("AddTemplates with a crop after migration: %+v %v", nt, err)
	}
	if got, err := g.TemplateCrop(ann.ID, nt[0].ID); err != nil || !bytes.Equal(got, crop) {
		t.Errorf("crop after migration: %d bytes, %v", len(got), err)
	}
	if r, err := g.Check(); err != nil || !r.OK() || r.Crops != 1 {
		t.Fatalf("Check: %+v %v", r, err)
	}
}

// putRaw writes a crops-bucket value as it is (a damaged one).
func putRaw(t *testing.T, path string, key, v []byte) {
	t.Helper()
	g := openTest(t, path, Options{Model: testModel})
	err := g.update(func(tx *bolt.Tx) error { return tx.Bucket(bucketCrops).Put(key, v) })
	if err != nil {
		t.Fatal(err)
	}
	g.Close()
}

// TestCropDamage: a crop value flipped on disk, cut short, re-sealed around
// something that is not a JPEG or is over the bound, or left without its
// template is named by Check, and TemplateCrop answers ErrCorrupt; the
// templates, their listing and the index are not affected (they never read
// a crop).
func TestCropDamage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	g := openTest(t, path, Options{Model: testModel})
	rng := rand.New(rand.NewPCG(7, 7))
	crop := testJPEG(t, 3)
	ann, ts, err := g.Enroll("Ann", nil, []Template{{Embedding: randEmb(rng, 16), Crop: crop}, {Embedding: randEmb(rng, 16), Crop: testJPEG(t, 4)}})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := g.Check(); err != nil || !r.OK() || r.Crops != 2 {
		t.Fatalf("Check of a sound gallery: %+v %v", r, err)
	}
	g.Close()
	key := append(u64(ann.ID), u64(ts[0].ID)...)
	name := "the crop of " + templateName(key)
	big := append([]byte{0xFF, 0xD8, 0xFF}, make([]byte, MaxCropBytes)...)
	orphan := append(u64(ann.ID), u64(999)...)
	cases := []struct {
		what   string
		damage func()
		key    []byte // whose TemplateCrop fails (nil: none)
		want   string // in Check's problems
	}{
		{"a byte of the JPEG flipped on disk", func() { flipAll(t, path, crop[len(crop)/2:len(crop)/2+32], 5) }, key, name + ": record checksum mismatch"},
		{"cut to 3 bytes", func() { putRaw(t, path, key, []byte{1, 0xFF, 0xD8}) }, key, name + ": unknown record format"},
		{"another record format", func() { putRaw(t, path, key, sealCrop(key, crop)[1:]) }, key, name + ": unknown record format"},
		{"sealed without a JPEG", func() { putRaw(t, path, key, sealCrop(key, nil)) }, key, name + " is empty"},
		{"sealed, not a JPEG", func() { putRaw(t, path, key, sealCrop(key, []byte("GIF89a..."))) }, key, "must be a JPEG"},
		{"sealed, over the bound", func() { putRaw(t, path, key, sealCrop(key, big)) }, key, "more than the"},
		{"moved under another template's key", func() { putRaw(t, path, key, sealCrop(append(u64(ann.ID), u64(ts[1].ID)...), crop)) }, key, name + ": record checksum mismatch"},
		{"a crop without its template", func() { putRaw(t, path, orphan, sealCrop(orphan, crop)) }, nil, "the crop of " + templateName(orphan) + ": no such template"},
		{"a key of 3 bytes", func() { putRaw(t, path, []byte{1, 2, 3}, sealCrop(key, crop)) }, nil, "crop key 010203 is not 16 bytes"},
	}
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			// Start each case from the sound crops.
			g := openTest(t, path, Options{Model: testModel})
			err := g.update(func(tx *bolt.Tx) error {
				if err := tx.DeleteBucket(bucketCrops); err != nil {
					return err
				}
				if _, err := tx.CreateBucket(bucketCrops); err != nil {
					return err
				}
				if err := putCrop(tx, key, crop); err != nil {
					return err
				}
				return putCrop(tx, append(u64(ann.ID), u64(ts[1].ID)...), testJPEG(t, 4))
			})
			if err != nil {
				t.Fatal(err)
			}
			g.Close()
			c.damage()
			g = openTest(t, path, Options{Model: testModel})
			r, err := g.Check()
			if err != nil || r.OK() || !strings.Contains(strings.Join(r.Problems, "\n"), c.want) {
				t.Errorf("Check: %v %v, want a problem with %q", r.Problems, err, c.want)
			}
			if c.key != nil {
				if got, err := g.TemplateCrop(ann.ID, ts[0].ID); !errors.Is(err, ErrCorrupt) || got != nil {
					t.Errorf("TemplateCrop of a damaged crop: %d bytes, %v", len(got), err)
				}
			}
			if got, err := g.TemplateCrop(ann.ID, ts[1].ID); err != nil || !bytes.Equal(got, testJPEG(t, 4)) {
				t.Errorf("the sound crop: %d bytes, %v", len(got), err)
			}
			if list, err := g.Templates(ann.ID); err != nil || len(list) != 2 || !list[0].HasCrop || !list[1].HasCrop {
				t.Errorf("Templates: %+v %v", list, err)
			}
			if ix, err := g.LoadIndex(); err != nil || ix.Len() != 2 {
				t.Errorf("LoadIndex: %v", err)
			}
			g.Close()
		})
	}
}

// TestCropBackup: a backup holds the crops bit for bit, and the copy checks
// out with them counted.
func TestCropBackup(t *testing.T) {
	dir := t.TempDir()
	g := openTest(t, filepath.Join(dir, "g.db"), Options{Model: testModel})
	rng := rand.New(rand.NewPCG(8, 8))
	var want [][]byte
	var items []BatchItem
	for i := range 20 {
		c := testJPEG(t, i)
		if i%4 == 3 {
			c = nil
		}
		want = append(want, c)
		items = append(items, BatchItem{Name: "p" + string(rune('a'+i%5)), Template: Template{Embedding: randEmb(rng, 32), Crop: c}})
	}
	res, err := g.EnrollBatch(items, false)
	if err != nil {
		t.Fatal(err)
	}
	bk := filepath.Join(dir, "backup.db")
	if _, err := g.Backup(bk); err != nil {
		t.Fatal(err)
	}
	b := openTest(t, bk, Options{ReadOnly: true})
	if r, err := b.Check(); err != nil || !r.OK() || r.Crops != 15 {
		t.Fatalf("Check of the backup: %+v %v", r, err)
	}
	for i, r := range res {
		got, err := b.TemplateCrop(r.Identity.ID, r.Template.ID)
		switch {
		case want[i] == nil && !errors.Is(err, ErrNoCrop):
			t.Errorf("item %d without a crop: %v", i, err)
		case want[i] != nil && (err != nil || !bytes.Equal(got, want[i])):
			t.Errorf("item %d: %d bytes, %v", i, len(got), err)
		}
	}
	st, err := os.Stat(bk)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("backup of 20 templates (15 crops of about %d bytes): %d bytes", len(want[0]), st.Size())
}
