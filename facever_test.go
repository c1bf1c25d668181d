package facever

import (
	"errors"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"

	"github.com/facever/facever/align"
	"github.com/facever/facever/internal/testmodels"
	"github.com/facever/facever/verify"
)

func TestMain(m *testing.M) { testmodels.Main(m) }

func openTest(t testing.TB, opt Options) *Recognizer {
	t.Helper()
	opt.ModelsDir = testmodels.Dir(t)
	r, err := Open(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// johns returns n photos of testdata/johns, taken across the five people.
func johns(t testing.TB, n int) []string {
	t.Helper()
	all, err := filepath.Glob(filepath.Join("testdata", "johns", "*", "*.jpg"))
	if err != nil || len(all) != 55 {
		t.Fatalf("found %d johns photos (%v), want 55", len(all), err)
	}
	sort.Strings(all)
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, all[(i*11+i/5)%len(all)])
	}
	return out
}

// TestConcurrentUse races goroutines over one Recognizer on real photos:
// every concurrent embedding must equal, bit for bit, the one computed alone,
// with more goroutines than workers so that callers also wait for models.
// Run it under -race.
func TestConcurrentUse(t *testing.T) {
	r := openTest(t, Options{Workers: 3})
	photos := johns(t, 6)
	want := make([][]float32, len(photos))
	for i, p := range photos {
		ph, err := r.EmbedFile(p, Largest)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = ph.Faces[0].Embedding
	}
	wantD, err := r.VerifyFiles(photos[0], photos[1])
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, rounds = 8, 2
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*rounds*len(photos))
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for round := 0; round < rounds; round++ {
				for k := range photos {
					i := (k + g) % len(photos)
					switch (g + round) % 3 {
					case 0:
						ph, err := r.EmbedFile(photos[i], Largest)
						if err != nil {
							errs <- err
						} else if !slices.Equal(ph.Faces[0].Embedding, want[i]) {
							errs <- errors.New(photos[i] + ": concurrent embedding differs from the one computed alone")
						}
					case 1:
						faces, err := r.DetectFile(photos[i])
						if err != nil || len(faces) == 0 {
							errs <- errors.Join(err, errors.New(photos[i]+": no face found concurrently"))
						}
					case 2:
						d, err := r.VerifyFiles(photos[0], photos[1])
						if err != nil {
							errs <- err
						} else if d != wantD {
							errs <- errors.New("concurrent VerifyFiles differs from the one computed alone")
						}
					}
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if r.loaded > 3 {
		t.Errorf("%d model sets loaded, Workers is 3", r.loaded)
	}
}

// TestCloseWhileBusy closes the Recognizer while goroutines use it: each call
// either completes or fails with ErrClosed, and every model set is released.
func TestCloseWhileBusy(t *testing.T) {
	r := openTest(t, Options{Workers: 2})
	photo := johns(t, 1)[0]
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, 8)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for k := 0; k < 2; k++ {
				if _, err := r.EmbedFile(photo, Largest); err != nil && !errors.Is(err, ErrClosed) {
					errs <- err
				}
			}
		}()
	}
	close(start)
	r.Close()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if _, err := r.EmbedFile(photo, Largest); !errors.Is(err, ErrClosed) {
		t.Errorf("EmbedFile after Close: %v, want ErrClosed", err)
	}
	if r.loaded != 0 {
		t.Errorf("%d model sets still loaded after Close and the calls' return", r.loaded)
	}
	r.Close() // idempotent
}

// TestEmbedEvery: a group photo yields one embedding per detected face,
// largest first, the first equal to Largest's.
func TestEmbedEvery(t *testing.T) {
	r := openTest(t, Options{})
	path := testmodels.File(t, filepath.Join("testdata", "external", "groups", "sample1.jpg"), "make setup")
	all, err := r.EmbedFile(path, Every)
	if err != nil {
		t.Fatal(err)
	}
	one, err := r.EmbedFile(path, Largest)
	if err != nil {
		t.Fatal(err)
	}
	if all.Detected < 2 || len(all.Faces) != all.Detected || len(one.Faces) != 1 || one.Detected != all.Detected {
		t.Fatalf("Every: %d of %d faces; Largest: %d of %d", len(all.Faces), all.Detected, len(one.Faces), one.Detected)
	}
	for i := 1; i < len(all.Faces); i++ {
		if all.Faces[i].Area() > all.Faces[i-1].Area() {
			t.Errorf("face %d is larger than face %d", i, i-1)
		}
		if s := verify.Cosine(all.Faces[i].Embedding, all.Faces[0].Embedding); s > 0.9 {
			t.Errorf("faces %d and 0 of a group photo have similarity %.3f: the same face twice?", i, s)
		}
	}
	if s := verify.Cosine(all.Faces[0].Embedding, one.Faces[0].Embedding); s < 0.9999 {
		t.Errorf("largest face: Every and Largest embeddings have similarity %.5f", s)
	}
}

// TestNoFace: a photo without a face is align.ErrNoFace naming the file.
func TestNoFace(t *testing.T) {
	r := openTest(t, Options{})
	path := filepath.Join(t.TempDir(), "grey.png")
	writeGrey(t, path)
	_, err := r.EmbedFile(path, Largest)
	if !errors.Is(err, align.ErrNoFace) {
		t.Fatalf("EmbedFile of a grey image: %v, want ErrNoFace", err)
	}
	if _, err := r.VerifyFiles(path, path); !errors.Is(err, align.ErrNoFace) {
		t.Fatalf("VerifyFiles of a grey image: %v, want ErrNoFace", err)
	}
	faces, err := r.DetectFile(path)
	if err != nil || len(faces) != 0 {
		t.Fatalf("DetectFile of a grey image: %d faces, %v", len(faces), err)
	}
}

func writeGrey(t *testing.T, path string) {
	t.Helper()
	im := image.NewGray(image.Rect(0, 0, 200, 200))
	for i := range im.Pix {
		im.Pix[i] = 128
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, im); err != nil {
		t.Fatal(err)
	}
}
