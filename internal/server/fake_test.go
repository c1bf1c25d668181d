package server

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/facever/facever/align"
	"github.com/facever/facever/enroll"
	"github.com/facever/facever/facehead"
)

// fakeRecognizer stands in for the models in the tests of auth, limits,
// cancellation and shutdown. A test photo (see photo) says in its colour
// who is in it and how many faces it holds: red is the person, green 40
// times the number of faces (so that a JPEG's rounding keeps the count). Each person's embedding is a unit vector of its own,
// so two photos of one person have similarity 1 and of two people 0.
type fakeRecognizer struct {
	detectDelay time.Duration
	embedDelay  time.Duration
	// gate, when not nil, is waited on by every Detect (a test closes it).
	gate chan struct{}
	// embedGate, when not nil, holds every backbone run (after it is
	// recorded) until the test sends on it.
	embedGate chan struct{}
	inEmbed   atomic.Int64

	detects   atomic.Int64
	inDetect  atomic.Int64
	maxDetect atomic.Int64

	mu   sync.Mutex
	runs [][]byte // per backbone run, the person of each chip
}

const fakeDim = 64

func (f *fakeRecognizer) Detect(im *align.Image) ([]align.Face, error) {
	f.detects.Add(1)
	n := f.inDetect.Add(1)
	defer f.inDetect.Add(-1)
	for {
		m := f.maxDetect.Load()
		if n <= m || f.maxDetect.CompareAndSwap(m, n) {
			break
		}
	}
	if f.gate != nil {
		<-f.gate
	}
	time.Sleep(f.detectDelay)
	px := im.Mat.GetVecbAt(0, 0) // B, G, R
	faces := make([]align.Face, (int(px[1])+20)/40)
	for i := range faces {
		w, h := float64(im.Width()), float64(im.Height())
		faces[i] = align.Face{Box: [4]float64{0, 0, w, h}, Score: 0.99}
	}
	return faces, nil
}

func (f *fakeRecognizer) Align(im *align.Image, _ align.Face) (align.Chip, error) {
	px := im.Mat.GetVecbAt(0, 0)
	pix := bytes.Repeat([]byte{px[2]}, align.ChipSize*align.ChipSize*3)
	return align.Chip{Size: align.ChipSize, Pix: pix}, nil
}

func (f *fakeRecognizer) EmbedChips(chips []align.Chip) ([][]float32, error) {
	time.Sleep(f.embedDelay)
	run := make([]byte, len(chips))
	out := make([][]float32, len(chips))
	for i, c := range chips {
		run[i] = c.Pix[0]
		out[i] = make([]float32, fakeDim)
		out[i][int(c.Pix[0])%fakeDim] = 1
	}
	f.mu.Lock()
	f.runs = append(f.runs, run)
	f.mu.Unlock()
	if f.embedGate != nil {
		f.inEmbed.Add(1)
		<-f.embedGate
		f.inEmbed.Add(-1)
	}
	return out, nil
}

func (f *fakeRecognizer) Model() string      { return "fake" }
func (f *fakeRecognizer) Threshold() float64 { return 0.5 }

func (f *fakeRecognizer) IdentifyThreshold() float64 { return 0.6 }

func (f *fakeRecognizer) backboneRuns() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.runs...)
}

// photo is a size×size PNG of person with faces faces (for fakeRecognizer).
func photo(t testing.TB, person, faces uint8, size int) []byte {
	im := image.NewNRGBA(image.Rect(0, 0, size, size))
	c := color.NRGBA{R: person, G: 40 * faces, B: 7, A: 255}
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			im.SetNRGBA(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, im); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// syncBuffer is a bytes.Buffer safe for the access log's writes and a
// test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newFakeFixture serves a fresh gallery with a fake recognizer and an
// access log in memory.
func newFakeFixture(t testing.TB, rec *fakeRecognizer, mod func(*Config)) (*fixture, *syncBuffer) {
	gal, err := enroll.Open(filepath.Join(t.TempDir(), "g.db"), enroll.Options{Model: "fake-model-sha"})
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := gal.CreateAPIKey("test")
	if err != nil {
		t.Fatal(err)
	}
	log := &syncBuffer{}
	// The batcher's tests batch as a runtime that gains from it does.
	cfg := Config{Recognizer: rec, Gallery: gal, AccessLog: log, MinFace: -1, MaxBatch: facehead.MaxBatch}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{srv: s, key: key, gal: gal}
	f.http = httptest.NewServer(s)
	t.Cleanup(func() { f.http.Close(); s.Close(); gal.Close() })
	return f, log
}
