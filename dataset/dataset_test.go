package dataset

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

// tree writes files (path → content) under a new temporary folder.
func tree(t *testing.T, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func reasons(s *Set) map[string]Reason {
	m := map[string]Reason{}
	for _, k := range s.Skipped {
		rel, _ := filepath.Rel(s.Root, k.Path)
		m[rel] = k.Reason
	}
	return m
}

// TestWalk: real photos of several formats (some without an extension, some
// misnamed), junk beside them, symbolic links to folders and files, a link
// loop, a broken link and a FIFO.
func TestWalk(t *testing.T) {
	img := encoded(t)
	jpg, err := os.ReadFile(johnsPhoto)
	if err != nil {
		t.Fatal(err)
	}
	outside := tree(t, map[string][]byte{
		"cy/c1.jpg":     jpg,
		"shared/s.webp": img["webp"],
		"lone.png":      img["png"],
	})
	dir := tree(t, map[string][]byte{
		"ann/1.jpg":             jpg,
		"ann/2.PNG":             img["png"],
		"ann/scan":              img["tiff"], // no extension: a photo by content
		"ann/yale.subject01":    img["gif"],
		"ann/face.pgm":          img["pgm"],
		"ann/notes.txt":         []byte("not a photo\n"),
		"ann/fake.jpg":          []byte("<html>saved web page</html>"),
		"ann/empty.jpg":         nil,
		"ann/.DS_Store":         []byte("\x00\x00\x00\x01Bud1"),
		"ann/._1.jpg":           jpg, // AppleDouble: hidden
		"ann/Thumbs.db":         []byte("\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"),
		"ann/holiday/3.jpg":     jpg,
		"bob/b.bmp":             img["bmp"],
		"bob/b.heic":            img["heic"],
		"dee/readme.md":         []byte("# nothing here\n"),
		".git/config":           []byte("[core]\n"),
		"loose.jpg":             jpg,
		"__MACOSX/ann/._1.jpg":  jpg,
		"eve/photo-of-eve.avif": img["avif"],
	})
	symlink(t, filepath.Join(outside, "cy"), filepath.Join(dir, "cy"))                // person folder elsewhere
	symlink(t, filepath.Join(outside, "cy"), filepath.Join(dir, "cy-again"))          // the same folder twice
	symlink(t, filepath.Join(outside, "lone.png"), filepath.Join(dir, "bob", "lone")) // a photo elsewhere
	symlink(t, filepath.Join(outside, "shared", "s.webp"), filepath.Join(dir, "eve", "s.webp"))
	symlink(t, dir, filepath.Join(dir, "loop"))                                 // back to the root
	symlink(t, filepath.Dir(dir), filepath.Join(dir, "up"))                     // to a parent of the root
	symlink(t, filepath.Join(dir, "ann"), filepath.Join(dir, "ann", "self"))    // into itself
	symlink(t, "knot", filepath.Join(dir, "bob", "knot"))                       // a link to itself
	symlink(t, filepath.Join(dir, "gone"), filepath.Join(dir, "bob", "broken")) // to nothing
	if err := syscall.Mkfifo(filepath.Join(dir, "bob", "pipe.jpg"), 0o644); err != nil {
		t.Fatal(err)
	}

	s, err := Walk(dir)
	if err != nil {
		t.Fatal(err)
	}
	j := func(p ...string) string { return filepath.Join(append([]string{dir}, p...)...) }
	want := []Person{
		{"ann", []string{j("ann", "1.jpg"), j("ann", "2.PNG"), j("ann", "face.pgm"), j("ann", "scan"), j("ann", "yale.subject01")}},
		{"bob", []string{j("bob", "b.bmp"), j("bob", "b.heic"), j("bob", "lone")}},
		{"cy", []string{j("cy", "c1.jpg")}},
		{"eve", []string{j("eve", "photo-of-eve.avif"), j("eve", "s.webp")}},
	}
	if !reflect.DeepEqual(s.People, want) {
		t.Errorf("people:\n got %v\nwant %v", s.People, want)
	}
	wantSkips := map[string]Reason{
		".git":                 Hidden,
		"__MACOSX/ann/._1.jpg": Hidden,
		"__MACOSX/ann":         NestedFolder,
		"__MACOSX":             NoPhotos,
		"ann/.DS_Store":        Hidden,
		"ann/._1.jpg":          Hidden,
		"ann/Thumbs.db":        NotPhoto,
		"ann/empty.jpg":        EmptyFile,
		"ann/fake.jpg":         NotPhoto,
		"ann/holiday":          NestedFolder,
		"ann/notes.txt":        NotPhoto,
		"ann/self":             NestedFolder,
		"bob/broken":           BrokenLink,
		"bob/knot":             LinkLoop,
		"bob/pipe.jpg":         NotRegular,
		"cy-again":             Duplicate,
		"dee/readme.md":        NotPhoto,
		"dee":                  NoPhotos,
		"loop":                 LinkLoop,
		"loose.jpg":            LooseFile,
		"up":                   LinkLoop,
	}
	delete(wantSkips, "__MACOSX/ann/._1.jpg") // not looked into: __MACOSX/ann is a nested folder
	if got := reasons(s); !reflect.DeepEqual(got, wantSkips) {
		t.Errorf("skipped:\n got %v\nwant %v", got, wantSkips)
	}
	if got, want := s.Summary(), "20 files skipped: 4 not a photo, 3 folder inside a person folder, 3 hidden, 3 link loop, 2 folder without photos, 1 broken link, 1 empty file, 1 not a regular file, 1 not in a person folder, 1 same folder as another"; got != want {
		t.Errorf("summary\n got %q\nwant %q", got, want)
	}
	if s.Photos() != 11 || len(s.Paths()) != 11 || s.Paths()[0] != j("ann", "1.jpg") || len(s.ByName()["bob"]) != 3 {
		t.Errorf("Photos %d, Paths %v", s.Photos(), s.Paths())
	}
	var rep strings.Builder
	s.Report(&rep, 2)
	if want := dir + ": " + s.Summary() + "\n  " + j(".git") + ": hidden\n  " + j("__MACOSX", "ann") + ": folder inside a person folder\n  ... and 18 more\n"; rep.String() != want {
		t.Errorf("report\n%s\nwant\n%s", rep.String(), want)
	}
	rep.Reset()
	s.Report(&rep, -1)
	if n := strings.Count(rep.String(), "\n"); n != 21 || !strings.Contains(rep.String(), j("bob", "broken")+": broken link (to "+j("gone")+")") {
		t.Errorf("full report (%d lines):\n%s", n, rep.String())
	}
	// The same tree walked again gives the same answer.
	again, err := Walk(dir)
	if err != nil || !reflect.DeepEqual(again, s) {
		t.Errorf("second walk differs: %v", err)
	}
}

func TestWalkErrors(t *testing.T) {
	if _, err := Walk(filepath.Join(t.TempDir(), "none")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing folder: %v", err)
	}
	file := filepath.Join(t.TempDir(), "f.jpg")
	os.WriteFile(file, []byte{0xff, 0xd8, 0xff}, 0o644)
	if _, err := Walk(file); err == nil || !strings.Contains(err.Error(), "not a folder") {
		t.Errorf("a file as the folder: %v", err)
	}
	// Photos but no person folders: the message says what was found.
	dir := tree(t, map[string][]byte{"a.jpg": {0xff, 0xd8, 0xff, 0xe0}, "b.jpg": {0xff, 0xd8, 0xff, 0xe0}, "x/notes.txt": []byte("hi")})
	_, err := Walk(dir)
	if !errors.Is(err, ErrNoPeople) || !strings.Contains(err.Error(), "4 files skipped: 2 not in a person folder, 1 folder without photos, 1 not a photo") {
		t.Errorf("no people: %v", err)
	}
	if _, err := Walk(t.TempDir()); !errors.Is(err, ErrNoPeople) || strings.Contains(err.Error(), "skipped") {
		t.Errorf("empty folder: %v", err)
	}
}

// TestWalkUnreadable: a person folder that cannot be listed is skipped with
// its reason (as root, permissions do not stop a read: nothing to check).
func TestWalkUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads every folder")
	}
	dir := tree(t, map[string][]byte{"ann/1.jpg": {0xff, 0xd8, 0xff, 0xe0}, "bob/1.jpg": {0xff, 0xd8, 0xff, 0xe0}})
	if err := os.Chmod(filepath.Join(dir, "bob"), 0); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(filepath.Join(dir, "bob"), 0o755)
	s, err := Walk(dir)
	if err != nil || len(s.People) != 1 || reasons(s)["bob"] != Unreadable {
		t.Errorf("walk %+v %v", s, err)
	}
}

// TestWalkJohns: the repository's 55 photos of five people, nothing skipped
// but the provenance note.
func TestWalkJohns(t *testing.T) {
	s, err := Walk("../testdata/johns")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.People) != 5 || s.Photos() != 55 || s.Summary() != "1 file skipped: 1 not in a person folder" {
		t.Errorf("johns: %d people, %d photos, %q", len(s.People), s.Photos(), s.Summary())
	}
}

// TestWalkLFW: all of LFW (when present) is 5,749 people and 13,233 photos.
func TestWalkLFW(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "shared", "faces", "lfw", "images")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("LFW absent (%v)", err)
	}
	s, err := Walk(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.People) != 5749 || s.Photos() != 13233 || len(s.Skipped) != 0 {
		t.Errorf("LFW: %d people, %d photos, %s", len(s.People), s.Photos(), s.Summary())
	}
}

func BenchmarkWalkJohns(b *testing.B) {
	for b.Loop() {
		if _, err := Walk("../testdata/johns"); err != nil {
			b.Fatal(err)
		}
	}
}
