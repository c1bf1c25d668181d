package align_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/facever/facever/align"
)

func benchPhotos(b *testing.B) map[string]string {
	return map[string]string{
		"chip150":   filepath.Join("..", "testdata", "johns", "John_Simm", "000288_00470387.jpg"),
		"photo1920": groupPhoto(b, 1),
	}
}

func BenchmarkDecode(b *testing.B) {
	for name, p := range benchPhotos(b) {
		data, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				im, err := align.Decode(data)
				if err != nil {
					b.Fatal(err)
				}
				im.Close()
			}
		})
	}
}

// BenchmarkDetect is detection plus landmarks for every face of a photo.
func BenchmarkDetect(b *testing.B) {
	a := newAligner(b)
	for name, p := range benchPhotos(b) {
		im, err := align.Load(p)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := a.Detect(im); err != nil {
					b.Fatal(err)
				}
			}
		})
		im.Close()
	}
}

func BenchmarkLandmarks(b *testing.B) {
	a := newAligner(b)
	im, err := align.Load(groupPhoto(b, 1))
	if err != nil {
		b.Fatal(err)
	}
	defer im.Close()
	faces, err := a.Detect(im)
	if err != nil || len(faces) == 0 {
		b.Fatal(err)
	}
	f := faces[0]
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := a.Landmarks(im, &f); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAlign is the similarity fit and the 112×112 warp of one face.
func BenchmarkAlign(b *testing.B) {
	a := newAligner(b)
	im, err := align.Load(groupPhoto(b, 1))
	if err != nil {
		b.Fatal(err)
	}
	defer im.Close()
	faces, err := a.Detect(im)
	if err != nil || len(faces) == 0 {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := align.Align(im, faces[0]); err != nil {
			b.Fatal(err)
		}
	}
}
