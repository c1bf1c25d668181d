package align

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"sort"
	"sync"

	"gocv.io/x/gocv"

	"github.com/facever/facever/infer"
	"github.com/facever/facever/models"
)

// The detector runs on a fixed 320×240 input (its priors are part of the
// graph). A photo is searched over an image pyramid of that input size:
//
//   - the whole photo, letterboxed: scaled by s₀ = min(320/W, 240/H) with its
//     aspect ratio kept and the rest of the input black (never squashed);
//   - then, when faces of DefaultSmallestFace pixels would be below the
//     detector's reach at s₀, levels s = s_max, s_max/levelStep, … (s_max =
//     detectorMinFace/SmallestFace) down to s₀, each cut into 320×240 tiles
//     that overlap by tileOverlap input pixels, read straight from the photo
//     (a region resized into the tile), so memory stays one tile whatever
//     the photo's size.
//
// A face of up to tileOverlap input pixels lies whole inside some tile of a
// level; boxes that touch a tile's inner edge are dropped (they are a face
// cut by the tile, found whole elsewhere), and larger faces are found at the
// next coarser level, which starts where this one's guarantee ends
// (levelStep = tileOverlap/detectorMinFace). Boxes of every level are merged
// by greedy non-maximum suppression.
const (
	// detectorMinFace is the smallest face side, in detector input pixels,
	// the detector finds reliably: johns faces pasted into frames are found
	// 19 times in 20 at a box of 19 input pixels, 20 in 20 at 22
	// (TestDetectorReach).
	detectorMinFace = 22.0
	// tileOverlap is the overlap of neighbouring tiles in input pixels.
	tileOverlap = 64
	// levelStep is the scale ratio between pyramid levels.
	levelStep = tileOverlap / detectorMinFace
	// tileMaxFace is the largest face side, in input pixels, a tiled level
	// reports: larger faces are the coarser levels' (which see them with
	// more context), and larger boxes in a tile are mostly false (a
	// shoulder, hair, a shirt read as a face at a scale too fine for it).
	tileMaxFace = 1.25 * tileOverlap
	// tileScore is the least detector score of a face found only in tiles,
	// and tileUpright the least uprightness (rotate.go) of its landmarks:
	// at the fine scales, hair, shirts and shoulders pass the detector's
	// 0.65 (seen on the group photos at 0.68–0.97); a real face also looks
	// like one once aligned.
	tileScore   = 0.8
	tileUpright = -0.05
	// DefaultSmallestFace is the smallest face side in photo pixels the
	// pyramid searches for when Options.SmallestFace is 0.
	DefaultSmallestFace = 40
)

// DetectVersion names the detection recipe (pyramid, rotation search,
// landmark reading) and the quality score's recipe. Caches of features
// keyed by photo content include it, so that features and qualities made
// by an older recipe are not reused: change it whenever either changes
// (3: the quality's face-likeness gate; 4: readings the face-likeness
// classifier finds surely upright skip the tracking error, the half-turn
// check and the turn search; 5: face-likeness as a small network on pooled
// pixels and gradient-orientation histograms).
const DetectVersion = "pyramid-rotation-5"

// level is one scale of the pyramid; tiled is false for the whole-image
// pass and for photoPass, the photo without its padding in one tile.
type level struct {
	scale     float64
	tiled     bool
	photoPass bool
}

// squashMax is the largest anisotropy (ratio of the horizontal to the
// vertical scale, or its inverse) of the whole-photo pass of a small photo
// that is still read squashed to 320×240, as the detector was trained and
// as facever always read face crops: a padded face crop (a photo of at most
// padLimit pixels, e.g. LFW's 250×250 or the johns 150×150 chips) keeps
// its detector box, hence its landmarks and crop, bit for bit (the
// reference pipeline's parity test). Every other photo is letterboxed.
const squashMax = 1.34

// squashed reports whether the whole-photo pass of a w×h image (padded, see
// padded) is read squashed, and the scales if so.
func squashed(w, h int, small bool) (sx, sy float64, ok bool) {
	in, ih := float64(models.Detect.Shape[3]), float64(models.Detect.Shape[2])
	sx, sy = in/float64(w), ih/float64(h)
	r := sx / sy
	return sx, sy, small && r <= squashMax && r >= 1/squashMax
}

// pyramid lists the levels searched for faces of smallest pixels and up
// on a w×h image m holding the photo at photo (m is the photo padded in
// black when photo is smaller than m, see padded). The first level is the
// whole of m; the finer ones are cut over the photo only (tiles of black
// padding hold no face), from the scale at which smallest-pixel faces
// reach the detector down to where the previous level's reach begins. A
// fine level within 20 % of the photo's own letterboxed scale is that one
// pass: the whole photo in one tile, with no padding (a padded 640×480
// photo costs two detector runs, not seven).
func pyramid(w, h int, photo image.Rectangle, smallest float64) []level {
	in, ih := float64(models.Detect.Shape[3]), float64(models.Detect.Shape[2])
	s0 := math.Min(in/float64(w), ih/float64(h))
	ls := []level{{scale: s0}}
	sPhoto := math.Min(in/float64(photo.Dx()), ih/float64(photo.Dy()))
	sMax := detectorMinFace / smallest
	var fine []level
	// A level within 20 % of the whole-photo pass adds little: faces 20 %
	// below the detector's reach there (18 input pixels) are still found
	// 19 times in 20.
	for s := sMax; s > s0*1.2; s /= levelStep {
		if s <= sPhoto*1.2 {
			fine = append(fine, level{scale: sPhoto, photoPass: true})
			break
		}
		fine = append(fine, level{scale: s, tiled: true})
		if s/levelStep <= s0*1.2 {
			break
		}
	}
	for i := len(fine) - 1; i >= 0; i-- {
		ls = append(ls, fine[i])
	}
	return ls
}

// tileRect is a region of the image and the scale it is read at.
type tileRect struct {
	r      image.Rectangle // in image pixels, clipped to the photo
	sx, sy float64         // input pixels per image pixel
	whole  bool            // the tile is a whole-image or whole-photo pass
	photo  image.Rectangle // the photo within the image: edges inside it cut faces
}

// tiles cuts a level into tiles over a w×h image holding the photo at
// photo.
func tiles(w, h int, photo image.Rectangle, lv level, small bool) []tileRect {
	in, ih := models.Detect.Shape[3], models.Detect.Shape[2]
	all := image.Rect(0, 0, w, h)
	switch {
	case lv.photoPass:
		t := tileAt(photo, lv.scale, in, ih, true)
		t.photo = photo
		return []tileRect{t}
	case !lv.tiled:
		if sx, sy, ok := squashed(w, h, small); ok {
			return []tileRect{{r: all, sx: sx, sy: sy, whole: true, photo: all}}
		}
		t := tileAt(all, lv.scale, in, ih, true)
		t.photo = all
		return []tileRect{t}
	}
	lw, lh := float64(photo.Dx())*lv.scale, float64(photo.Dy())*lv.scale
	var out []tileRect
	for _, ty := range starts(lh, ih) {
		for _, tx := range starts(lw, in) {
			r := image.Rect(int(math.Floor(tx/lv.scale)), int(math.Floor(ty/lv.scale)),
				int(math.Ceil((tx+float64(in))/lv.scale)), int(math.Ceil((ty+float64(ih))/lv.scale))).Add(photo.Min).Intersect(photo)
			if r.Dx() < 2 || r.Dy() < 2 {
				continue
			}
			t := tileAt(r, lv.scale, in, ih, false)
			t.photo = photo
			out = append(out, t)
		}
	}
	return out
}

// starts returns tile origins along one axis of length n (level pixels) for
// tiles of size t overlapping by tileOverlap; the last tile ends at n.
func starts(n float64, t int) []float64 {
	if n <= float64(t) {
		return []float64{0}
	}
	stride := float64(t - tileOverlap)
	k := int(math.Ceil((n - float64(t)) / stride))
	out := make([]float64, k+1)
	for i := range out {
		out[i] = math.Min(float64(i)*stride, n-float64(t))
	}
	return out
}

func tileAt(r image.Rectangle, s float64, in, ih int, whole bool) tileRect {
	ow := min(max(int(math.Round(float64(r.Dx())*s)), 1), in)
	oh := min(max(int(math.Round(float64(r.Dy())*s)), 1), ih)
	return tileRect{r: r, sx: float64(ow) / float64(r.Dx()), sy: float64(oh) / float64(r.Dy()), whole: whole}
}

// detectPyramid runs the detector over every level of m (BGR: the photo
// padded by pad pixels of black on each side) and returns the merged boxes
// in m's pixels, with no landmarks yet. small says m is a padded small
// photo (see squashMax). Boxes found only in tiles with a detector score
// below tileScore are dropped here, before any landmarks are taken.
func (a *Aligner) detectPyramid(m gocv.Mat, pad int, small bool) ([]Face, error) {
	smallest := float64(a.opt.SmallestFace)
	if smallest <= 0 {
		smallest = DefaultSmallestFace
	}
	w, h := m.Cols(), m.Rows()
	photo := image.Rect(pad, pad, w-pad, h-pad)
	var ts []tileRect
	for _, lv := range pyramid(w, h, photo, smallest) {
		ts = append(ts, tiles(w, h, photo, lv, small)...)
	}
	cand, err := a.detectTiles(m, ts)
	if err != nil {
		return nil, err
	}
	kept := nms(cand, a.opt.NMS)
	out := kept[:0]
	for _, f := range kept {
		if !f.tiled || f.Score >= tileScore {
			out = append(out, f)
		}
	}
	a.lap("nms")
	return out, nil
}

// detectTile runs the detector on one tile: the region t.r of m resized by
// (t.sx, t.sy) into the top-left corner of a black 320×240 input.
func (a *Aligner) detectTile(m gocv.Mat, t tileRect) ([]Face, error) {
	x, err := tileInput(m, t)
	if err != nil {
		return nil, err
	}
	defer putInput(x)
	a.lap("detector input")
	c, err := a.runTile(x, t)
	a.lap("detector")
	return c, err
}

// tileInput reads tile t of m into a detector input tensor (from
// inputPool; putInput gives it back).
func tileInput(m gocv.Mat, t tileRect) (infer.Tensor, error) {
	in, ih := models.Detect.Shape[3], models.Detect.Shape[2]
	ow, oh := int(math.Round(float64(t.r.Dx())*t.sx)), int(math.Round(float64(t.r.Dy())*t.sy))
	if ow < 1 || oh < 1 || ow > in || oh > ih {
		return infer.Tensor{}, fmt.Errorf("detector: tile %v at scale %.3g×%.3g does not fit the %d×%d input", t.r, t.sx, t.sy, in, ih)
	}
	src := m
	if !t.whole || t.r != image.Rect(0, 0, m.Cols(), m.Rows()) {
		src = m.Region(t.r)
		defer src.Close()
	}
	small := gocv.NewMat()
	defer small.Close()
	interp := gocv.InterpolationLinear
	if t.r.Dx() >= 2*ow || t.r.Dy() >= 2*oh {
		interp = gocv.InterpolationArea // a downscaled copy without aliasing
	}
	gocv.Resize(src, &small, image.Pt(ow, oh), 0, 0, interp)
	if ow != in || oh != ih {
		canvas := gocv.NewMat()
		defer canvas.Close()
		gocv.CopyMakeBorder(small, &canvas, 0, ih-oh, 0, in-ow, gocv.BorderConstant, color.RGBA{})
		small, canvas = canvas, small
	}
	x := getInput()
	bgrToCHW(small.ToBytes(), x.Data, in*ih, models.Detect.Mean, models.Detect.Scale)
	return x, nil
}

// inputPool holds detector input tensors for reuse (each 3×240×320
// floats, fully overwritten by tileInput): a large photo's tiles, and
// photo after photo, need no new one.
var inputPool sync.Pool

func getInput() infer.Tensor {
	if x, ok := inputPool.Get().(*infer.Tensor); ok {
		return *x
	}
	return infer.NewTensor(1, 3, models.Detect.Shape[2], models.Detect.Shape[3])
}

func putInput(x infer.Tensor) { inputPool.Put(&x) }

// runTile runs the detector on the input x of tile t and returns the boxes
// above the score threshold in m's pixels (see detectTile).
func (a *Aligner) runTile(x infer.Tensor, t tileRect) ([]Face, error) {
	in, ih := models.Detect.Shape[3], models.Detect.Shape[2]
	ow, oh := int(math.Round(float64(t.r.Dx())*t.sx)), int(math.Round(float64(t.r.Dy())*t.sy))
	outs, err := a.det.Run(map[string]infer.Tensor{models.Detect.Input: x}, models.Detect.Outputs)
	if err != nil {
		return nil, fmt.Errorf("detector: %w", err)
	}
	if len(outs) != 2 {
		return nil, fmt.Errorf("detector: %d outputs, want 2", len(outs))
	}
	scores, boxes := outs[0], outs[1]
	n := len(scores.Data) / 2
	if len(boxes.Data) != 4*n {
		return nil, fmt.Errorf("detector: %d scores but %d box values", n, len(boxes.Data))
	}
	// An inner edge is a tile edge inside the photo: a box reaching it is
	// a face the tile cuts.
	const edge = 2.0 // input pixels
	innerL, innerT := t.r.Min.X > t.photo.Min.X, t.r.Min.Y > t.photo.Min.Y
	innerR, innerB := t.r.Max.X < t.photo.Max.X, t.r.Max.Y < t.photo.Max.Y
	var cand []Face
	for i := 0; i < n; i++ {
		s := scores.Data[2*i+1]
		if s < a.opt.Score || math.IsNaN(float64(s)) {
			continue
		}
		b := boxes.Data[4*i : 4*i+4]
		bx1, by1, bx2, by2 := float64(b[0])*float64(in), float64(b[1])*float64(ih), float64(b[2])*float64(in), float64(b[3])*float64(ih)
		if !t.whole && (innerL && bx1 < edge || innerT && by1 < edge || innerR && bx2 > float64(ow)-edge || innerB && by2 > float64(oh)-edge ||
			math.Min(bx2-bx1, by2-by1) > tileMaxFace) {
			continue
		}
		cand = append(cand, Face{Score: s, tiled: !t.whole, Box: [4]float64{
			float64(t.r.Min.X) + bx1/t.sx, float64(t.r.Min.Y) + by1/t.sy,
			float64(t.r.Min.X) + bx2/t.sx, float64(t.r.Min.Y) + by2/t.sy,
		}})
	}
	return cand, nil
}

// nms is greedy non-maximum suppression: visit boxes by decreasing score
// (the whole-photo pass's first) and keep a box unless its IoU with a kept box exceeds thr, or it lies mostly
// (containThr of its area) inside a larger kept box (the same face seen at
// a finer pyramid level, or a part of it).
func nms(c []Face, thr float64) []Face {
	// Boxes of the whole-photo pass come first: where a tile's box and a
	// whole-photo box are the same face, the one that saw the face with
	// all its context wins (a tile sees part of a large face as a face).
	sort.SliceStable(c, func(i, j int) bool {
		if c[i].tiled != c[j].tiled {
			return !c[i].tiled
		}
		return c[i].Score > c[j].Score
	})
	var kept []Face
	for _, f := range c {
		ok := true
		for i, k := range kept {
			if iou(f.Box, k.Box) > thr || k.Area() > f.Area() && inside(f.Box, k.Box) > containThr {
				ok = false
				if !f.tiled {
					kept[i].tiled = false // the whole photo saw it too
				}
				break
			}
		}
		if ok {
			kept = append(kept, f)
		}
	}
	// A kept box that a larger, later-kept box contains is dropped too.
	out := kept[:0]
	for i, f := range kept {
		ok := true
		for j, k := range kept {
			if j != i && k.Area() > f.Area() && inside(f.Box, k.Box) > containThr {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, f)
		}
	}
	return out
}

// containThr is the fraction of a box's area inside a larger box above
// which the smaller one is taken for a part of the same face.
const containThr = 0.7

// inside is the fraction of a's area that lies inside b.
func inside(a, b [4]float64) float64 {
	ix := math.Min(a[2], b[2]) - math.Max(a[0], b[0])
	iy := math.Min(a[3], b[3]) - math.Max(a[1], b[1])
	area := (a[2] - a[0]) * (a[3] - a[1])
	if ix <= 0 || iy <= 0 || area <= 0 {
		return 0
	}
	return ix * iy / area
}

func iou(a, b [4]float64) float64 {
	ix := math.Min(a[2], b[2]) - math.Max(a[0], b[0])
	iy := math.Min(a[3], b[3]) - math.Max(a[1], b[1])
	if ix <= 0 || iy <= 0 {
		return 0
	}
	inter := ix * iy
	union := (a[2]-a[0])*(a[3]-a[1]) + (b[2]-b[0])*(b[3]-b[1]) - inter
	if union <= 0 {
		return 0
	}
	return inter / union
}
