package align_test

import (
	"image"
	"reflect"
	"runtime"
	"testing"

	"github.com/facever/facever/align"
)

// TestTilesPipelinedAsSerial: the detector over a large photo's tiles,
// with the next tiles read on other cores, gives exactly the boxes (and in
// the same order) of running the tiles one after another, and Detect gives
// the same faces every time.
func TestTilesPipelinedAsSerial(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	}
	a := newAligner(t)
	for _, sz := range []image.Point{{1920, 1280}, {4000, 3000}} {
		im := sizedPhoto(t, sz)
		pipe, serial, n, err := align.DetectTilesBoth(a, im)
		if err != nil {
			t.Fatal(err)
		}
		if n < 2 {
			t.Fatalf("%v: %d tiles, want several", sz, n)
		}
		if len(serial) == 0 || !reflect.DeepEqual(pipe, serial) {
			t.Errorf("%v: %d tiles: pipelined boxes %v, one after another %v", sz, n, pipe, serial)
		}
		first, err := a.Detect(im)
		if err != nil {
			t.Fatal(err)
		}
		again, err := a.Detect(im)
		if err != nil {
			t.Fatal(err)
		}
		if len(first) != 3 || !reflect.DeepEqual(first, again) {
			t.Errorf("%v: %d faces, then %d (or different ones), want the same 3", sz, len(first), len(again))
		}
		t.Logf("%v: %d tiles, %d boxes, %d faces", sz, n, len(serial), len(first))
		im.Close()
	}
}
