package facever

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/facever/facever/enroll"
	"github.com/facever/facever/models"
)

// TestIdentify enrolls two johns people from two photos each and identifies
// other photos: each person's third photo comes back as that person, and a
// third person comes back unknown at a threshold above every different-person
// score of the johns (0.38, the backbone's default, separates them).
func TestIdentify(t *testing.T) {
	r := openTest(t, Options{})
	dir := filepath.Join("testdata", "johns")
	photo := func(person string) []string {
		ps, err := filepath.Glob(filepath.Join(dir, person, "*.jpg"))
		if err != nil || len(ps) < 3 {
			t.Fatalf("%s: %d photos (%v)", person, len(ps), err)
		}
		return ps
	}
	g, err := r.OpenGallery(filepath.Join(t.TempDir(), "g.db"), enroll.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for _, person := range []string{"John_Simm", "John_Salley"} {
		var ts []enroll.Template
		for _, p := range photo(person)[:2] {
			ph, err := r.EmbedFile(p, Largest)
			if err != nil {
				t.Fatal(err)
			}
			ts = append(ts, enroll.Template{Embedding: ph.Faces[0].Embedding, Source: filepath.Base(p)})
		}
		if _, _, err := g.Enroll(person, nil, ts); err != nil {
			t.Fatal(err)
		}
	}
	for _, person := range []string{"John_Simm", "John_Salley"} {
		id, err := r.IdentifyFile(g, photo(person)[2], 2)
		if err != nil {
			t.Fatal(err)
		}
		if id.Match == nil || id.Match.Name != person || len(id.Top) != 2 || id.Top[0] != *id.Match {
			t.Errorf("%s's third photo: match %+v, top %+v", person, id.Match, id.Top)
		}
	}
	id, err := r.IdentifyFile(g, photo("John_Savage")[0], 1)
	if err != nil {
		t.Fatal(err)
	}
	if id.Match != nil || len(id.Top) != 1 || float64(id.Top[0].Score) >= r.IdentifyThreshold() {
		t.Errorf("a person not enrolled: match %+v, top %+v (threshold %.3f)", id.Match, id.Top, r.IdentifyThreshold())
	}
}

// TestOpenGalleryChecksModel: a gallery enrolled with another backbone is
// refused by OpenGallery instead of being searched with incomparable
// embeddings.
func TestOpenGalleryChecksModel(t *testing.T) {
	r := openTest(t, Options{})
	path := filepath.Join(t.TempDir(), "dlib.db")
	g, err := enroll.Open(path, enroll.Options{Model: models.Dlib.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := g.Enroll("someone", nil, []enroll.Template{{Embedding: make128()}}); err != nil {
		t.Fatal(err)
	}
	g.Close()
	if _, err := r.OpenGallery(path, enroll.Options{}); !errors.Is(err, enroll.ErrModelMismatch) {
		t.Fatalf("OpenGallery of a dlib gallery with fr_feature: %v, want ErrModelMismatch", err)
	}
}

func make128() []float32 {
	e := make([]float32, 128)
	e[0] = 1
	return e
}

// TestGallerySpec: which galleries are PostgreSQL, and names without
// passwords.
func TestGallerySpec(t *testing.T) {
	for spec, want := range map[string]bool{
		"postgres://u@h/db": true, "postgresql://u:p@h:5432/db?sslmode=disable": true, "POSTGRES://h/db": true,
		"team.db": false, "/var/lib/facever/team.db": false, "postgres.db": false, "./postgres://x": false, "": false,
	} {
		if got := IsPostgres(spec); got != want {
			t.Errorf("IsPostgres(%q) = %v", spec, got)
		}
	}
	for spec, want := range map[string]string{
		"postgres://facever:s3cret@db:5432/facever": "postgres://facever:xxxxx@db:5432/facever",
		"postgres://facever@db/facever":             "postgres://facever@db/facever",
		"team.db":                                   "team.db",
	} {
		if got := GalleryName(spec); got != want {
			t.Errorf("GalleryName(%q) = %q, want %q", spec, got, want)
		}
	}
	t.Setenv(EnvGallery, filepath.Join(t.TempDir(), "env.db"))
	s, err := OpenGallery("", enroll.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := s.(*enroll.Gallery); !ok || g.Path() != os.Getenv(EnvGallery) {
		t.Errorf("OpenGallery(\"\") with $%s: %T", EnvGallery, s)
	}
	s.Close()
	t.Setenv(EnvGallery, "")
	if _, err := OpenGallery("", enroll.Options{}); !errors.Is(err, enroll.ErrInvalid) {
		t.Errorf("OpenGallery without a gallery: %v", err)
	}
}
