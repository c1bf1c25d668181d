package main

import (
	"bytes"
	"encoding/json"
	"hash/crc32"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/facever/facever/internal/testmodels"
	"github.com/facever/facever/models"
)

const (
	simmA   = "../../testdata/johns/John_Simm/000288_00470387.jpg"
	simmB   = "../../testdata/johns/John_Simm/000297_00470170.jpg"
	salleyA = "../../testdata/johns/John_Salley/000179_02159509.jpg"
)

// facever runs the CLI in-process and returns its exit status and output.
// A run that fails for a missing catalogue model (without an explicit
// --models, which tests of that error pass) goes through testmodels: the
// test is skipped, or fails with FACEVER_REQUIRE_MODELS=1, even if it forgot
// to ask for the models first.
func facever(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"facever"}, args...), &out, &errb)
	if code == exitError && strings.Contains(errb.String(), models.ErrMissing.Error()) && !slices.Contains(args, "--models") {
		testmodels.Dir(t, "fr_detect", "fr_landmark", "fr_feature", "dlib_resnet_v1")
	}
	return code, out.String(), errb.String()
}

func TestVerifyExitCodes(t *testing.T) {
	testmodels.Dir(t)
	tests := []struct {
		name  string
		args  []string
		code  int
		inOut string
	}{
		{"same person", []string{"verify", simmA, simmB}, exitOK, "same person"},
		{"different person", []string{"verify", salleyA, simmA}, exitNegative, "different person"},
		{"strict threshold", []string{"verify", "--threshold", "0.999", simmA, simmB}, exitNegative, "different person"},
		{"dlib same person", []string{"--model", "dlib", "verify", simmA, simmB}, exitOK, "threshold 0.924"},
		{"dlib different person", []string{"--model", "dlib", "verify", salleyA, simmA}, exitNegative, "different person"},
		{"opencv runtime", []string{"--runtime", "opencv", "verify", simmA, simmB}, exitOK, "same person (similarity 0.762"},
		{"engine runtime", []string{"--runtime", "engine", "verify", simmA, simmB}, exitOK, "same person (similarity 0.762"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.args[0] == "--model" {
				testmodels.Dir(t, "dlib_resnet_v1")
			}
			code, out, errs := facever(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tc.code, out, errs)
			}
			if !strings.Contains(out, tc.inOut) {
				t.Fatalf("stdout %q lacks %q", out, tc.inOut)
			}
		})
	}
}

func TestVerifyJSON(t *testing.T) {
	testmodels.Dir(t)
	code, out, _ := facever(t, "verify", "--json", simmA, simmB)
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	var v struct {
		Similarity float64 `json:"similarity"`
		Threshold  float64 `json:"threshold"`
		Same       bool    `json:"same_person"`
		Photos     []struct {
			Path  string `json:"path"`
			Faces int    `json:"face_count"`
		} `json:"photos"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if !v.Same || v.Similarity < v.Threshold || len(v.Photos) != 2 || v.Photos[0].Faces != 1 {
		t.Fatalf("unexpected document: %+v", v)
	}
}

func writeFile(t *testing.T, name string, data []byte) string {
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func pngOf(t *testing.T, w, h int) []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func hugePNG(t *testing.T) []byte {
	b := pngOf(t, 16, 16)[:33]
	w := 30000
	for _, off := range []int{16, 20} {
		b[off], b[off+1], b[off+2], b[off+3] = byte(w>>24), byte(w>>16), byte(w>>8), byte(w)
	}
	c := crc32.ChecksumIEEE(b[12:29])
	b[29], b[30], b[31], b[32] = byte(c>>24), byte(c>>16), byte(c>>8), byte(c)
	return b
}

// TestBadInputs: every bad input is exit 2 with a message a person
// understands, never a panic or an abort.
func TestBadInputs(t *testing.T) {
	testmodels.Dir(t)
	jpg, err := os.ReadFile(simmA)
	if err != nil {
		t.Fatal(err)
	}
	// A real photo region with no face: a flat grey picture of sky.
	tests := []struct {
		name string
		file string
		want string
	}{
		{"not an image", writeFile(t, "notes.jpg", []byte("hello, these are my notes\n")), "not a readable image"},
		{"truncated JPEG", writeFile(t, "half.jpg", jpg[:len(jpg)/2]), "truncated"},
		{"1×1 image", writeFile(t, "dot.png", pngOf(t, 1, 1)), "too small"},
		{"huge PNG header", writeFile(t, "huge.png", hugePNG(t)), "too large"},
		{"no face", writeFile(t, "grey.png", pngOf(t, 300, 200)), "no face found"},
		{"missing file", filepath.Join(t.TempDir(), "nope.jpg"), "no such file"},
		{"a directory", t.TempDir(), "directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := facever(t, "verify", simmA, tc.file)
			if code != exitError {
				t.Fatalf("exit %d, want 2; stdout %q stderr %q", code, out, errs)
			}
			if !strings.Contains(errs, tc.want) {
				t.Fatalf("stderr %q lacks %q", errs, tc.want)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"verify"}, {"verify", simmA}, {"detect"}, {"embed"}, {"align"}} {
		code, _, errs := facever(t, args...)
		if code != exitError || errs == "" {
			t.Errorf("%v: exit %d stderr %q, want exit 2 and a message", args, code, errs)
		}
	}
}

func TestMissingModels(t *testing.T) {
	code, _, errs := facever(t, "--models", t.TempDir(), "verify", simmA, simmB)
	if code != exitError || !strings.Contains(errs, "make setup") {
		t.Fatalf("exit %d stderr %q: want exit 2 naming `make setup`", code, errs)
	}
	bad := t.TempDir()
	for _, f := range []string{"fr_detect.onnx", "fr_landmark.onnx", "fr_feature.onnx"} {
		os.WriteFile(filepath.Join(bad, f), []byte("not a model"), 0o644)
	}
	code, _, errs = facever(t, "--models", bad, "verify", simmA, simmB)
	if code != exitError || !strings.Contains(errs, "checksum") {
		t.Fatalf("exit %d stderr %q: want a checksum error", code, errs)
	}
}

func TestDetectAlignEmbed(t *testing.T) {
	testmodels.Dir(t)
	code, out, errs := facever(t, "detect", "--json", simmA)
	if code != exitOK {
		t.Fatalf("detect: exit %d %s", code, errs)
	}
	var d struct {
		Photos []struct {
			Faces []struct {
				Box       [4]float64   `json:"box"`
				Score     float64      `json:"score"`
				Landmarks [][2]float64 `json:"landmarks"`
			} `json:"faces"`
		} `json:"photos"`
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil || len(d.Photos) != 1 || len(d.Photos[0].Faces) != 1 || len(d.Photos[0].Faces[0].Landmarks) != 5 {
		t.Fatalf("detect JSON %v: %s", err, out)
	}
	dir := t.TempDir()
	if code, _, errs := facever(t, "align", "--out", dir, simmA); code != exitOK {
		t.Fatalf("align: exit %d %s", code, errs)
	}
	chip := filepath.Join(dir, "000288_00470387_1.png")
	f, err := os.Open(chip)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil || img.Bounds().Dx() != 112 || img.Bounds().Dy() != 112 {
		t.Fatalf("aligned chip: %v %v", err, img.Bounds())
	}
	// The aligned chip, verified with --aligned against the original photo's
	// own chip, is the same person.
	code, out, errs = facever(t, "verify", "--aligned", chip, chip)
	if code != exitOK || !strings.Contains(out, "similarity 1.000") {
		t.Fatalf("verify --aligned: exit %d %q %q", code, out, errs)
	}
	code, out, _ = facever(t, "embed", "--json", simmA)
	var e struct {
		Dim    int `json:"dim"`
		Photos []struct {
			Embedding []float64 `json:"embedding"`
		} `json:"photos"`
	}
	if err := json.Unmarshal([]byte(out), &e); err != nil || code != exitOK || e.Dim != 512 || len(e.Photos[0].Embedding) != 512 {
		t.Fatalf("embed: exit %d %v", code, err)
	}
	var n float64
	for _, v := range e.Photos[0].Embedding {
		n += v * v
	}
	if n < 0.999 || n > 1.001 {
		t.Fatalf("embedding squared norm %.4f, want 1", n)
	}
}

func TestHelpTeaches(t *testing.T) {
	code, out, _ := facever(t, "verify", "--help")
	if code != exitOK || !strings.Contains(out, "Exit status") || !strings.Contains(out, "--threshold") {
		t.Fatalf("verify --help: exit %d\n%s", code, out)
	}
}
