package pipeline

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/facever/facever/align"
	"github.com/facever/facever/verify"
)

// readRefEmbeddings reads the 55×512 float32 .npy file of the reference
// pipeline (format version 1.0, little-endian, C order).
func readRefEmbeddings(t *testing.T, path string) [][]float32 {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 10 || string(data[1:6]) != "NUMPY" {
		t.Fatalf("%s is not a .npy file", path)
	}
	hl := int(binary.LittleEndian.Uint16(data[8:10]))
	header := string(data[10 : 10+hl])
	if !strings.Contains(header, "'<f4'") || !strings.Contains(header, "(55, 512)") {
		t.Fatalf("unexpected header %q", header)
	}
	body := data[10+hl:]
	out := make([][]float32, 55)
	for i := range out {
		out[i] = make([]float32, 512)
		for j := range out[i] {
			out[i][j] = math.Float32frombits(binary.LittleEndian.Uint32(body[4*(i*512+j):]))
		}
	}
	return out
}

// TestMatchesReferencePipeline compares facever's aligned crops and
// embeddings with the Python/OpenCV reference pipeline's, photo by photo
// (testdata/reference/README.md says how those were made).
func TestMatchesReferencePipeline(t *testing.T) {
	p := openTest(t)
	ref := readRefEmbeddings(t, "../../testdata/reference/johns_embeddings.npy")
	f, err := os.Open("../../testdata/reference/johns_paths.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var paths []string
	for sc := bufio.NewScanner(f); sc.Scan(); {
		paths = append(paths, filepath.Join("..", "..", "testdata", sc.Text()))
	}
	if len(paths) != len(ref) {
		t.Fatalf("%d paths, %d reference embeddings", len(paths), len(ref))
	}
	worst := 1.0
	for i, path := range paths {
		ph, err := p.Face(path, false)
		if err != nil {
			t.Fatal(err)
		}
		e, err := p.Embedder.Embed([]align.Chip{ph.Chip})
		if err != nil {
			t.Fatal(err)
		}
		c := verify.Cosine(e[0], ref[i])
		worst = min(worst, c)
		if c < 0.99999 {
			t.Errorf("%s: cosine to the reference embedding %.5f, want ≥ 0.99999", path, c)
		}
		if i%11 == 0 {
			cf, err := os.Open(fmt.Sprintf("../../testdata/reference/johns_crop_%03d.png", i))
			if err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(cf)
			cf.Close()
			if err != nil {
				t.Fatal(err)
			}
			var sum float64
			for y := 0; y < align.ChipSize; y++ {
				for x := 0; x < align.ChipSize; x++ {
					r, g, b, _ := img.At(x, y).RGBA()
					o := 3 * (y*align.ChipSize + x)
					sum += math.Abs(float64(r>>8)-float64(ph.Chip.Pix[o])) + math.Abs(float64(g>>8)-float64(ph.Chip.Pix[o+1])) + math.Abs(float64(b>>8)-float64(ph.Chip.Pix[o+2]))
				}
			}
			mad := sum / (3 * align.ChipSize * align.ChipSize)
			if mad > 0.5 {
				t.Errorf("%s: crop differs from the reference crop by %.2f grey levels on average", path, mad)
			}
			t.Logf("%s: crop mean abs difference %.3f, embedding cosine %.6f", filepath.Base(path), mad, c)
		}
	}
	t.Logf("lowest cosine to the reference embeddings over %d photos: %.6f", len(paths), worst)
}
