package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"image"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/facever/facever/align"
	"github.com/facever/facever/enroll"
	"github.com/facever/facever/internal/testmodels"
	"github.com/facever/facever/models"
)

// EnvRSS, set to 1, runs TestLargePhotoRSS (about a minute on two cores;
// not in `make test`).
const EnvRSS = "FACEVER_RSS"

// phonePhoto makes a real JPEG of w×h pixels from a johns photo, as a
// phone takes one: the photo stretched over the frame, and the face again,
// large (a third of the frame's height), in the middle.
func phonePhoto(t testing.TB, src []byte, w, h int) []byte {
	m, err := gocv.IMDecode(src, gocv.IMReadColor)
	if err != nil || m.Empty() {
		t.Fatalf("decode: %v", err)
	}
	defer m.Close()
	frame := gocv.NewMat()
	defer frame.Close()
	gocv.Resize(m, &frame, image.Pt(w, h), 0, 0, gocv.InterpolationLinear)
	side := h / 3
	face := gocv.NewMat()
	defer face.Close()
	gocv.Resize(m, &face, image.Pt(side, side), 0, 0, gocv.InterpolationCubic)
	roi := frame.Region(image.Rect((w-side)/2, (h-side)/2, (w+side)/2, (h+side)/2))
	face.CopyTo(&roi)
	roi.Close()
	// A sensor's noise: a phone's 48-megapixel JPEG is 8 to 15 MB, not
	// the 2 MB of a smooth upscale.
	noise := gocv.NewMatWithSize(h, w, gocv.MatTypeCV8UC3)
	defer noise.Close()
	gocv.RandN(&noise, gocv.NewScalar(12, 12, 12, 0), gocv.NewScalar(6, 6, 6, 0))
	gocv.AddWeighted(frame, 1, noise, 1, -12, &frame)
	buf, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, frame, []int{gocv.IMWriteJpegQuality, 92})
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	return bytes.Clone(buf.GetBytes())
}

// TestLargePhotoRSS sends 8 concurrent identifies of a real 8000×6000
// (48-megapixel) JPEG, twice each, to a server with `facever serve`'s
// default limits in a child process, and reads the child's VmHWM: each
// photo is read at 1/2 (4000×3000) inside the decode budget, and the peak
// stays under the models plus the budget plus the bodies.
//
//	FACEVER_RSS=1 FACEVER_REQUIRE_MODELS=1 go test ./internal/server -run TestLargePhotoRSS -v
func TestLargePhotoRSS(t *testing.T) {
	if os.Getenv(EnvRSS) != "1" {
		t.Skipf("set %s=1 to measure the server's memory with 8 concurrent 48-megapixel uploads", EnvRSS)
	}
	testmodels.Dir(t)
	gpath := filepath.Join(t.TempDir(), "g.db")
	gal, err := enroll.Open(gpath, enroll.Options{Model: models.Feature.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := gal.CreateAPIKey("rss")
	if err != nil {
		t.Fatal(err)
	}
	gal.Close()
	photo := phonePhoto(t, johns(t, "John_Simm")[0], 8000, 6000)
	ct, body := multipartBody(t, map[string][][]byte{"image": {photo}}, nil)
	t.Logf("photo: 8000×6000 JPEG, %.1f MiB", float64(len(photo))/(1<<20))

	cmd := exec.Command(os.Args[0], "-test.run=^TestAbuseChild$", "-test.v")
	cmd.Env = append(os.Environ(), abuseChildEnv+"="+gpath)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	sc := bufio.NewScanner(stdout)
	addr := ""
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
			addr = a
			break
		}
	}
	if addr == "" {
		t.Fatal("the child server did not start")
	}
	go io.Copy(io.Discard, stdout)
	pid := cmd.Process.Pid
	post := func() (int, map[string]any, time.Duration) {
		start := time.Now()
		req, _ := http.NewRequest("POST", "http://"+addr+"/v1/identify", bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return 0, nil, 0
		}
		defer resp.Body.Close()
		var doc map[string]any
		json.NewDecoder(resp.Body).Decode(&doc)
		return resp.StatusCode, doc, time.Since(start)
	}
	// One photo alone first: the models are loaded, and it is the
	// baseline.
	if code, doc, d := post(); code != 200 || doc["scale"] != 0.5 {
		t.Fatalf("one photo: %d %v", code, doc)
	} else {
		t.Logf("one photo alone: %v, scale %v, %v face(s)", d.Round(time.Millisecond), doc["scale"], doc["face_count"])
	}
	idle, hwmOne := rss(pid)

	var peak atomic.Int64
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if c, _ := rss(pid); c > peak.Load() {
				peak.Store(c)
			}
		}
	}()
	const clients, rounds = 8, 2
	var mu sync.Mutex
	var lat []time.Duration
	bad := 0
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				code, doc, d := post()
				mu.Lock()
				lat = append(lat, d)
				if code != 200 || doc["scale"] != 0.5 {
					bad++
					t.Errorf("identify: %d %v", code, doc)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stop)
	_, hwm := rss(pid)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("%d identifies of the 48-megapixel photo from %d clients in %v: p50 %v, max %v, %d not 200",
		len(lat), clients, elapsed.Round(time.Millisecond), lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond), bad)
	// The decode budget's share of one such photo and the bound: the
	// models (the baseline after one photo), the decode budget, and the
	// bodies of the requests at once with their copies (the raw body, the
	// multipart part, the decoder's input).
	share := imageCost(4000 * 3000)
	bound := hwmOne + DefaultDecodeBudget + int64(clients)*3*int64(len(body)) + 64<<20
	t.Logf("server RSS: %d MiB after one photo (VmHWM %d MiB), peak %d MiB sampled, VmHWM %d MiB after %d at once; bound %d MiB (decode budget %d MiB, %d MiB a photo read at 1/2)",
		idle>>20, hwmOne>>20, peak.Load()>>20, hwm>>20, clients, bound>>20, DefaultDecodeBudget>>20, share>>20)
	if hwm > bound {
		t.Errorf("VmHWM %d MiB over the bound %d MiB", hwm>>20, bound>>20)
	}
}

// TestReducedPixels: the decode budget charges a large JPEG at the size
// align.DecodeWith really reads it at (the least reduction that fits),
// checked against the decoder on real JPEGs.
func TestReducedPixels(t *testing.T) {
	src := johns(t, "John_Simm")[0]
	for _, tc := range []struct{ w, h, limit int }{
		{6400, 4800, 8_000_000}, // 1/2: 3200×2400
		{6400, 4800, 2_000_000}, // 1/4: 1600×1200
		{6401, 4801, 7_684_801}, // 1/2 rounds up: 3201×2401
		{12800, 1600, 320_000},  // 1/8: 1600×200
	} {
		data := phonePhoto(t, src, tc.w, tc.h)
		s := &Server{cfg: Config{MaxPixels: tc.limit}}
		px, err := s.header(data)
		if err != nil {
			t.Fatalf("%dx%d under %d: %v", tc.w, tc.h, tc.limit, err)
		}
		im, err := align.DecodeWith(data, align.DecodeOptions{MaxPixels: tc.limit})
		if err != nil {
			t.Fatalf("%dx%d under %d: decode: %v", tc.w, tc.h, tc.limit, err)
		}
		got := im.Mat.Cols() * im.Mat.Rows()
		im.Close()
		if px != got || px > tc.limit {
			t.Errorf("%dx%d under %d: charged %d pixels, decoded %d", tc.w, tc.h, tc.limit, px, got)
		}
	}
	if px := reducedPixels(100_000, 100_000, 40_000_000); px != 40_000_000 {
		t.Errorf("no reduction fits: %d", px)
	}
}
