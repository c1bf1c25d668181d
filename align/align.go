// Package align finds faces in photos and crops each one to the 112×112 RGB
// chip the ArcFace family of embedders expects.
//
// The pipeline (docs/alignment.md): decode with GoCV; detect faces with the
// UltraFace detector on a 320×240 copy (score threshold, then greedy
// non-maximum suppression); regress 68 landmarks on each face box at full
// resolution; reduce them to five points (eye centres, nose tip, mouth
// corners); fit the least-squares similarity transform onto the ArcFace
// template (Umeyama, in Go); warp with GoCV's WarpAffine.
package align

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"gocv.io/x/gocv"

	"github.com/facever/facever/infer"
	"github.com/facever/facever/models"
)

// ChipSize is the side of an aligned face in pixels.
const ChipSize = 112

// Template is the ArcFace 112×112 five-point template: left eye, right eye,
// nose tip, left mouth corner, right mouth corner (insightface, arcface_torch;
// docs/alignment.md).
var Template = [5]Point{
	{38.2946, 51.6963}, {73.5318, 51.5014}, {56.0252, 71.7366}, {41.5493, 92.3655}, {70.7299, 92.2041},
}

// Sentinel errors callers branch on.
var (
	// ErrNoFace: the detector found no face above the score threshold.
	ErrNoFace = errors.New("no face found")
	// ErrMultipleFaces: several faces where exactly one was required.
	ErrMultipleFaces = errors.New("several faces found")
)

// Options tune detection.
type Options struct {
	// Score is the minimum detector score (default 0.65).
	Score float32
	// NMS is the IoU above which a lower-scored box is suppressed (default 0.4).
	NMS float64
	// MinFace is the smallest face side in pixels kept (default 0: all).
	MinFace int
	// SmallestFace is the smallest face side in photo pixels the image
	// pyramid searches for (default DefaultSmallestFace, 40). Smaller values
	// cost more tiles on large photos.
	SmallestFace int
	// NoRotate turns off the search over quarter turns (rotate.go): faces
	// are then landmarked as they stand in the photo, rolled up to ±45°.
	NoRotate bool
	// legacy runs the single-pass recipe facever used before the image
	// pyramid (the photo squashed to 320×240, landmarks once per face, no
	// rotation search, no quality), kept for the side-by-side benchmark of
	// detection cost (LegacyOptions in export_test.go).
	legacy bool
}

// DefaultOptions are the detection thresholds of docs/alignment.md.
var DefaultOptions = Options{Score: 0.65, NMS: 0.4}

// Face is one detected face, in the pixel coordinates of the original photo.
type Face struct {
	// Box is the detector's box: X1, Y1, X2, Y2.
	Box [4]float64
	// Score is the detector's face probability.
	Score float32
	// Landmarks are the five points: left eye, right eye, nose, mouth left, mouth right.
	Landmarks [5]Point
	// Points68 are the 68 landmarks the five come from.
	Points68 [68]Point
	// Rotation is the quarter turn, in degrees clockwise (0, 90, 180 or
	// 270), by which the face stands turned in the photo (rotate.go): 180
	// for an upside-down photo, 90 for a photo turned a quarter clockwise.
	// It is Roll rounded to the nearest quarter.
	Rotation int
	// Roll is the face's in-plane angle in the photo in degrees, (−180,
	// 180], clockwise: the angle of the line from the first to the second
	// eye of Landmarks.
	Roll float64
	// Quality is the face's quality score and its parts (quality.go).
	Quality Quality
	// tiled: found only in the tiles of a fine pyramid level.
	tiled bool
	// upright and tracking are uprightness's parts for the landmarks kept;
	// tracked says tracking was measured (or need not be: see track), and
	// theta is the angle the landmarks were finally read at. faceLike is
	// the face-likeness classifier's log-odds on the reading's chip
	// (Quality.FaceLike).
	upright, tracking float64
	faceLike          float64
	tracked           bool
	theta             float64
}

// sure says f's reading is taken as upright as it stands: its chip
// correlates with the mean upright face at least uprightSure, or the
// face-likeness classifier finds it a real upright face with log-odds of
// at least faceLikeSure (rotate.go). A sure reading needs no tracking
// error, no half-turn check, and keeps its photo from the turn search.
func (f *Face) sure() bool { return f.upright >= uprightSure || f.faceLike >= faceLikeSure }

// Width and Height of the face box.
func (f Face) Width() float64 { return f.Box[2] - f.Box[0] }

// Height of the face box.
func (f Face) Height() float64 { return f.Box[3] - f.Box[1] }

// Area of the face box.
func (f Face) Area() float64 { return f.Width() * f.Height() }

// Chip is an aligned face: Size×Size pixels, RGB, row-major, 3 bytes per
// pixel. The default backbone's chips are ChipSize (112) pixels across.
type Chip struct {
	Size int
	Pix  []uint8
}

// RGBA converts the chip to a Go image (to write it as PNG).
func (c Chip) RGBA() *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, c.Size, c.Size))
	for i := 0; i < c.Size*c.Size; i++ {
		img.Pix[4*i], img.Pix[4*i+1], img.Pix[4*i+2], img.Pix[4*i+3] = c.Pix[3*i], c.Pix[3*i+1], c.Pix[3*i+2], 255
	}
	return img
}

// ChipFromImage reads an already aligned face (any size is resized to
// ChipSize×ChipSize) into a Chip, for datasets that ship aligned faces.
func ChipFromImage(im *Image) Chip { return ChipFromImageSize(im, ChipSize) }

// ChipFromImageSize is ChipFromImage for a chip of size×size pixels.
func ChipFromImageSize(im *Image, size int) Chip {
	m := im.Mat
	var resized gocv.Mat
	if m.Cols() != size || m.Rows() != size {
		resized = gocv.NewMat()
		defer resized.Close()
		gocv.Resize(m, &resized, image.Pt(size, size), 0, 0, gocv.InterpolationArea)
		m = resized
	}
	return chipFromBGR(m)
}

// chipFromBGR copies a square BGR Mat into an RGB chip.
func chipFromBGR(m gocv.Mat) Chip {
	b := m.ToBytes()
	pix := make([]uint8, len(b))
	for i := 0; i+2 < len(b); i += 3 {
		pix[i], pix[i+1], pix[i+2] = b[i+2], b[i+1], b[i]
	}
	return Chip{Size: m.Cols(), Pix: pix}
}

// Aligner detects faces and aligns them. It holds the detector and landmark
// sessions; it is safe for concurrent use when the sessions are.
type Aligner struct {
	det, lmk infer.Session
	opt      Options
	// concurrent: the landmark session runs crops from several goroutines
	// at once (concurrentSession); inflight counts the Detect calls in
	// progress (see spareCores).
	concurrent bool
	inflight   atomic.Int32
	// clock, when set (BenchmarkDetectStages only, by one goroutine),
	// adds the time of each of Detect's steps up; nil otherwise.
	clock *stageClock
}

// stageClock adds up the time Detect spends in each step (lap). Steps
// that run at once on several goroutines (readTurns) share it:
// the time since the last lap goes to whichever step laps next.
type stageClock struct {
	mu    sync.Mutex
	now   func() time.Duration
	last  time.Duration
	ctx   string // prefixed to the steps' names: which reading they belong to
	spent map[string]time.Duration
	count map[string]int
}

// lap charges the time since the previous lap to stage (with the
// clock's context); it does nothing without a clock.
func (a *Aligner) lap(stage string) {
	c := a.clock
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.now()
	c.spent[c.ctx+stage] += t - c.last
	c.count[c.ctx+stage]++
	c.last = t
}

// lapContext sets the stage clock's context (see lap).
func (a *Aligner) lapContext(ctx string) {
	if c := a.clock; c != nil {
		c.mu.Lock()
		c.ctx = ctx
		c.mu.Unlock()
	}
}

// New returns an Aligner over a detector session (models.Detect) and a
// landmark session (models.Landmark).
func New(det, lmk infer.Session, opt Options) *Aligner {
	if opt.Score == 0 {
		opt.Score = DefaultOptions.Score
	}
	if opt.NMS == 0 {
		opt.NMS = DefaultOptions.NMS
	}
	a := &Aligner{det: det, lmk: lmk, opt: opt}
	if c, ok := lmk.(concurrentSession); ok {
		a.concurrent = c.Concurrent()
	}
	return a
}

// concurrentSession is a session that says whether its runs from several
// goroutines go on at once (onnxrt.Model: after SetThreads(1), as
// internal/session opens the landmark model) rather than one after
// another.
type concurrentSession interface {
	Concurrent() bool
}

// padLimit: photos whose longer side is at most this many pixels are padded
// by a quarter of that side in black before detection, since such photos are
// usually tight face crops and the detector needs context around a face.
const padLimit = 640

// Detect finds the faces in im, sorted by decreasing box area, over an
// image pyramid (pyramid.go), with the search over rotations of rotate.go.
// Landmarks are computed at full resolution. Boxes and points are in the
// photo's coordinates: im's pixels, divided by im.Scale for a photo read
// reduced. Each face carries its orientation and Quality (measured on im).
func (a *Aligner) Detect(im *Image) ([]Face, error) {
	if a.clock != nil {
		a.clock.last, a.clock.ctx = a.clock.now(), ""
	}
	work, pad, err := padded(im)
	if err != nil {
		return nil, err
	}
	a.lap("pad")
	if pad > 0 {
		defer work.Close()
	}
	if a.opt.legacy {
		return a.detectLegacy(im, work, pad)
	}
	a.inflight.Add(1)
	defer a.inflight.Add(-1)
	boxes, err := a.detectPyramid(work, pad, pad > 0)
	if err != nil {
		return nil, err
	}
	if len(boxes) == 0 && pad == 0 && max(im.Width(), im.Height()) > padLimit {
		// A large photo whose face touches the border: try once with padding.
		pad = max(im.Width(), im.Height()) / 4
		big := gocv.NewMat()
		defer big.Close()
		gocv.CopyMakeBorder(im.Mat, &big, pad, pad, pad, pad, gocv.BorderConstant, color.RGBA{})
		work = big
		if boxes, err = a.detectPyramid(work, pad, false); err != nil {
			return nil, err
		}
	}
	photo := image.Rect(pad, pad, pad+im.Width(), pad+im.Height())
	faces := boxes
	if err := a.finish(work, photo, faces, 0); err != nil {
		return nil, err
	}
	if len(faces) == 0 && !a.opt.NoRotate {
		a.lapContext("turned photo: ")
		if faces, err = a.detectTurned(work, photo, pad, pad > 0 && max(im.Width(), im.Height()) <= padLimit); err != nil {
			return nil, err
		}
	}
	if pad > 0 {
		p := float64(pad)
		for i := range faces {
			f := &faces[i]
			for k := range f.Box {
				f.Box[k] -= p
			}
			for k := range f.Landmarks {
				f.Landmarks[k].X -= p
				f.Landmarks[k].Y -= p
			}
			for k := range f.Points68 {
				f.Points68[k].X -= p
				f.Points68[k].Y -= p
			}
		}
	}
	kept := faces[:0]
	for _, f := range faces {
		if !f.tiled || f.Score >= tileScore && f.upright-f.tracking >= tileUpright {
			kept = append(kept, f)
		}
	}
	faces = kept
	im.toSource(faces) // a photo read reduced reports the photo's coordinates
	if a.opt.MinFace > 0 {
		kept := faces[:0]
		for _, f := range faces {
			if math.Min(f.Width(), f.Height()) >= float64(a.opt.MinFace) {
				kept = append(kept, f)
			}
		}
		faces = kept
	}
	sort.SliceStable(faces, func(i, j int) bool { return faces[i].Area() > faces[j].Area() })
	a.lapContext("")
	a.lap("rest")
	return faces, nil
}

// padded returns the image to detect on and the padding applied.
func padded(im *Image) (gocv.Mat, int, error) {
	if im == nil || im.Mat.Empty() {
		return gocv.Mat{}, 0, fmt.Errorf("%w: empty image", ErrNotImage)
	}
	side := max(im.Width(), im.Height())
	if side > padLimit {
		return im.Mat, 0, nil
	}
	pad := side / 4
	big := gocv.NewMat()
	gocv.CopyMakeBorder(im.Mat, &big, pad, pad, pad, pad, gocv.BorderConstant, color.RGBA{})
	return big, pad, nil
}

// Landmarks recomputes the 68 and five landmarks of f on im (f in the
// photo's coordinates, as Detect gives them).
func (a *Aligner) Landmarks(im *Image, f *Face) error {
	g := im.fromSource(*f)
	if err := a.landmarks(im.Mat, &g); err != nil {
		return err
	}
	fs := []Face{g}
	im.toSource(fs)
	*f = fs[0]
	return nil
}

// landmarks fills f.Points68 and f.Landmarks from the landmark model run on
// the face box of m.
func (a *Aligner) landmarks(m gocv.Mat, f *Face) error {
	return a.landmarksAt(m, f, 0)
}

func mean(pts *[68]Point, idx ...int) Point {
	var p Point
	for _, i := range idx {
		p.X += pts[i].X
		p.Y += pts[i].Y
	}
	return Point{p.X / float64(len(idx)), p.Y / float64(len(idx))}
}

// FivePoints reduces 68 landmarks (iBUG 300-W order, 0-based) to the five of
// the ArcFace template: left eye = mean of 37, 38, 40, 41; right eye = mean of
// 43, 44, 46, 47; nose = 30; mouth left = mean of 48 and 60; mouth right =
// mean of 54 and 64 (docs/alignment.md).
func FivePoints(p *[68]Point) [5]Point {
	return [5]Point{
		mean(p, 37, 38, 40, 41),
		mean(p, 43, 44, 46, 47),
		p[30],
		mean(p, 48, 60),
		mean(p, 54, 64),
	}
}

// Align warps the face of im onto the ArcFace template and returns the
// 112×112 RGB chip.
func Align(im *Image, f Face) (Chip, error) {
	f = im.fromSource(f)
	t, err := Similarity(f.Landmarks[:], Template[:])
	if err != nil {
		return Chip{}, fmt.Errorf("align: %w", err)
	}
	mt := gocv.NewMatWithSize(2, 3, gocv.MatTypeCV64F)
	defer mt.Close()
	for r := 0; r < 2; r++ {
		for c := 0; c < 3; c++ {
			mt.SetDoubleAt(r, c, t[r][c])
		}
	}
	out := gocv.NewMat()
	defer out.Close()
	gocv.WarpAffineWithParams(im.Mat, &out, mt, image.Pt(ChipSize, ChipSize), gocv.InterpolationLinear, gocv.BorderConstant, color.RGBA{})
	return chipFromBGR(out), nil
}

// bgrToCHW converts interleaved BGR bytes to planar RGB floats (p−mean)·scale.
func bgrToCHW(b []byte, dst []float32, plane int, mean, scale float32) {
	r, g, bl := dst[:plane], dst[plane:2*plane], dst[2*plane:3*plane]
	for i := 0; i < plane; i++ {
		bl[i] = (float32(b[3*i]) - mean) * scale
		g[i] = (float32(b[3*i+1]) - mean) * scale
		r[i] = (float32(b[3*i+2]) - mean) * scale
	}
}

// detectLegacy is Detect's recipe before the image pyramid (Options.legacy):
// one detector pass on work squashed to 320×240, landmarks once per face.
func (a *Aligner) detectLegacy(im *Image, work gocv.Mat, pad int) ([]Face, error) {
	in, ih := models.Detect.Shape[3], models.Detect.Shape[2]
	w, h := work.Cols(), work.Rows()
	t := tileRect{r: image.Rect(0, 0, w, h), sx: float64(in) / float64(w), sy: float64(ih) / float64(h), whole: true, photo: image.Rect(0, 0, w, h)}
	cand, err := a.detectTile(work, t)
	if err != nil {
		return nil, err
	}
	faces := nms(cand, a.opt.NMS)
	a.lap("nms")
	for i := range faces {
		if err := a.landmarks(work, &faces[i]); err != nil {
			return nil, err
		}
	}
	p := float64(pad)
	for i := range faces {
		f := &faces[i]
		for k := range f.Box {
			f.Box[k] -= p
		}
		for k := range f.Landmarks {
			f.Landmarks[k].X -= p
			f.Landmarks[k].Y -= p
		}
		for k := range f.Points68 {
			f.Points68[k].X -= p
			f.Points68[k].Y -= p
		}
	}
	im.toSource(faces)
	sort.SliceStable(faces, func(i, j int) bool { return faces[i].Area() > faces[j].Area() })
	a.lap("rest")
	return faces, nil
}
