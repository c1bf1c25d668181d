package align_test

import (
	"fmt"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"sync"
	"testing"

	"gocv.io/x/gocv"

	"github.com/facever/facever/align"
)

// TestDetectConcurrentAsSerial: Detect gives the same faces (boxes,
// landmarks, rotations, quality) whether its landmark crops run at once
// (the engine's one-thread landmark session: the turn search's readings
// at once), one after another (the same session, said not to run crops at
// once), or from several goroutines' Detects at once (the landmark
// model's runs overlap on plans of their own); on johns photos as they
// are and turned by 90°, 180° and 270° (the turn search and the half-turn
// check run on those).
func TestDetectConcurrentAsSerial(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	}
	ahead, _, lmk := countingAligner(t, recipe{opt: align.DefaultOptions})
	if !lmk.Concurrent() && *runtimeFlag == "engine" {
		t.Fatal("the engine's landmark session does not run crops at once")
	}
	inTurn, _, lmkInTurn := countingAligner(t, recipe{opt: align.DefaultOptions, sequential: true})
	files, _ := filepath.Glob("../testdata/johns/*/*.jpg")
	sort.Strings(files)
	if len(files) > 12 {
		files = files[:12]
	}
	var ims []*align.Image
	for _, f := range files {
		im, err := align.Load(f)
		if err != nil {
			t.Fatal(err)
		}
		ims = append(ims, im)
		for _, r := range []gocv.RotateFlag{gocv.Rotate90Clockwise, gocv.Rotate180Clockwise, gocv.Rotate90CounterClockwise} {
			m := gocv.NewMat()
			gocv.Rotate(im.Mat, &m, r)
			ims = append(ims, &align.Image{Mat: m})
		}
	}
	defer func() {
		for _, im := range ims {
			im.Close()
		}
	}()
	want := make([][]align.Face, len(ims))
	turned := 0
	for i, im := range ims {
		var err error
		if want[i], err = inTurn.Detect(im); err != nil {
			t.Fatal(err)
		}
		got, err := ahead.Detect(im)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want[i]) {
			t.Errorf("photo %d: crops at once give %+v, one after another %+v", i, got, want[i])
		}
		if len(want[i]) > 0 && want[i][0].Rotation != 0 {
			turned++
		}
	}
	// Nothing is run on speculation: running the turn search's readings at
	// once runs the same crops as running them one after another.
	if a, b := lmk.images.Load(), lmkInTurn.images.Load(); a != b {
		t.Errorf("%d landmark crops with crops at once, %d one after another: crops at once should run the same ones", a, b)
	}
	if turned < len(ims)/2 {
		t.Errorf("only %d of %d photos read turned: the turn search was not exercised", turned, len(ims))
	}
	rounds := 3
	if testing.Short() {
		rounds = 1
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				for k := range ims {
					i := (k + 7*w) % len(ims)
					got, err := ahead.Detect(ims[i])
					if err == nil && !reflect.DeepEqual(got, want[i]) {
						err = fmt.Errorf("goroutine %d, round %d, photo %d: faces differ from one Detect at a time", w, r, i)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d photos (%d read turned), 4 goroutines x %d rounds", len(ims), turned, rounds)
}
