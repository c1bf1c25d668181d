package align

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"gocv.io/x/gocv"

	"github.com/facever/facever/infer"
	"github.com/facever/facever/models"
)

// Faces rolled in the photo, and photos turned by a quarter or half turn
// (a scan, a phone photo whose EXIF orientation was lost):
//
//   - Roll: the landmark model is run on the face box at angle 0 first (as it
//     always was); when the eye line says the face is rolled by more than
//     rollRefine degrees, the box is read again turned by that angle, so the
//     model sees an upright face, and the points are mapped back (twice at
//     most). The similarity fit onto the template then undoes any roll.
//   - Quarter turns: the landmark model has no notion of "upside down": on
//     a face turned by 180° it returns an upright-looking set of points and
//     the chip comes out upside down. Each reading is scored for
//     uprightness: the aligned chip's correlation with a mean upright face
//     (meanface.go) and, when that is not conclusive, whether the points
//     stay on the face when the box moves (tracking). When a photo's faces
//     do not look upright, their boxes are read again at 90°, 180° and
//     270° and the turn with the most upright faces is kept.
//   - When the detector finds no face at all, the photo is searched again
//     turned by 90°, 180° and 270° (exact pixel rotations), and the turn
//     whose faces look most plausible is kept.
//
// Face.Rotation says which quarter turn was used, Face.Roll the face's
// in-plane angle in the photo.
const (
	// rollRefine is the roll in degrees above which landmarks are taken
	// again on the box turned upright.
	rollRefine = 15.0
	// uprightMin is the mean uprightness of a photo's faces below which
	// the other quarter turns are tried.
	uprightMin = 0.1
	// uprightGain is how much more uprightness, per face, another quarter
	// turn must give to replace the first.
	uprightGain = 0.35
	// halfTurnCheck is the uprightness below which the quality compares a
	// face's reading with its reading turned by 180° (Quality.HalfTurn).
	halfTurnCheck = 0.2
	// uprightSure is the chip correlation with the mean upright face from
	// which a reading is taken as upright without measuring its tracking
	// error: above the highest of the bad readings measured (crops of the
	// forehead and eyes 0.541, faces aligned upside down 0.542, johns
	// photos); about a third of LFW's faces and half of the johns' reach it.
	uprightSure = 0.6
	// faceLikeSure is the face-likeness log-odds (upright.go) from which a
	// reading is taken as upright as it stands (Face.sure): above the
	// highest log-odds of the faces aligned upside down of the quality
	// experiment (5.37 in the fit half, 4.25 held out, every 4th LFW
	// person), with a margin (TestFaceLikeSure); real faces' median is
	// about 9.4.
	faceLikeSure = 6.5
	// turnedUpright is the least uprightness of a face found in a turned
	// copy of a photo in which the photo as it stands showed none.
	turnedUpright = 0.0
)

// landmarkCrop is one input of the landmark model: the grey side×side
// crop and the map from the model's box-relative output to photo pixels.
type landmarkCrop struct {
	pix     []byte
	toPhoto func(px, py float64) Point
}

// cropAt reads box of m turned by theta degrees (clockwise, y down) about
// its centre into the landmark model's input. theta 0 is the axis-aligned
// crop facever always used (pixel region, bilinear resize), so that upright
// faces keep their landmarks bit for bit.
func cropAt(m gocv.Mat, box [4]float64, theta float64) (landmarkCrop, error) {
	side := models.Landmark.Shape[3]
	small := gocv.NewMat()
	defer small.Close()
	var c landmarkCrop
	if theta == 0 {
		x1, y1 := max(int(box[0]), 0), max(int(box[1]), 0)
		x2, y2 := min(int(box[2]), m.Cols()), min(int(box[3]), m.Rows())
		if x2-x1 < 2 || y2-y1 < 2 {
			return c, fmt.Errorf("face box %v is outside the image", box)
		}
		crop := m.Region(image.Rect(x1, y1, x2, y2))
		gocv.Resize(crop, &small, image.Pt(side, side), 0, 0, gocv.InterpolationLinear)
		crop.Close()
		bw, bh := float64(x2-x1), float64(y2-y1)
		c.toPhoto = func(px, py float64) Point { return Point{px*bw + float64(x1), py*bh + float64(y1)} }
	} else {
		bw, bh := box[2]-box[0], box[3]-box[1]
		rad := theta * math.Pi / 180
		cos, sin := math.Cos(rad), math.Sin(rad)
		if math.Abs(sin) > math.Abs(cos) { // a quarter turn: the box's sides swap
			bw, bh = bh, bw
		}
		if bw < 2 || bh < 2 {
			return c, fmt.Errorf("face box %v is too small", box)
		}
		cx, cy := (box[0]+box[2])/2, (box[1]+box[3])/2
		// Crop pixel (u, v) samples the photo at c + R·(((u+½)/side − ½)·bw,
		// ((v+½)/side − ½)·bh), in pixel-corner coordinates; OpenCV's pixel
		// centres are those minus ½.
		kx, ky := bw/float64(side), bh/float64(side)
		ox, oy := -bw/2+kx/2, -bh/2+ky/2
		mt := gocv.NewMatWithSize(2, 3, gocv.MatTypeCV64F)
		mt.SetDoubleAt(0, 0, cos*kx)
		mt.SetDoubleAt(0, 1, -sin*ky)
		mt.SetDoubleAt(0, 2, cx-0.5+cos*ox-sin*oy)
		mt.SetDoubleAt(1, 0, sin*kx)
		mt.SetDoubleAt(1, 1, cos*ky)
		mt.SetDoubleAt(1, 2, cy-0.5+sin*ox+cos*oy)
		gocv.WarpAffineWithParams(m, &small, mt, image.Pt(side, side), gocv.InterpolationLinear|gocv.WarpInverseMap, gocv.BorderConstant, color.RGBA{})
		mt.Close()
		c.toPhoto = func(px, py float64) Point {
			lx, ly := (px-0.5)*bw, (py-0.5)*bh
			return Point{cx + cos*lx - sin*ly, cy + sin*lx + cos*ly}
		}
	}
	grey := gocv.NewMat()
	defer grey.Close()
	gocv.CvtColor(small, &grey, gocv.ColorBGRToGray)
	c.pix = grey.ToBytes()
	return c, nil
}

// runLandmarks runs the landmark model on crops in one batch and returns
// each crop's 68 points in photo pixels.
func (a *Aligner) runLandmarks(crops []landmarkCrop) ([][68]Point, error) {
	side := models.Landmark.Shape[3]
	x := infer.NewTensor(len(crops), 1, side, side)
	for k, c := range crops {
		d := x.Data[k*side*side : (k+1)*side*side]
		for i, v := range c.pix {
			d[i] = (float32(v) - models.Landmark.Mean) * models.Landmark.Scale
		}
	}
	outs, err := a.lmk.Run(map[string]infer.Tensor{models.Landmark.Input: x}, models.Landmark.Outputs)
	if err != nil {
		return nil, fmt.Errorf("landmarks: %w", err)
	}
	p := outs[0].Data
	if len(p) != 136*len(crops) {
		return nil, fmt.Errorf("landmarks: model gave %d values for %d faces, want 136 each", len(p), len(crops))
	}
	out := make([][68]Point, len(crops))
	for k, c := range crops {
		q := p[136*k:]
		for i := 0; i < 68; i++ {
			out[k][i] = c.toPhoto(float64(q[2*i]), float64(q[2*i+1]))
		}
	}
	return out, nil
}

// landmarksAt fills f.Points68 and f.Landmarks from the landmark model run
// on f's box turned by theta degrees.
func (a *Aligner) landmarksAt(m gocv.Mat, f *Face, theta float64) error {
	c, err := cropAt(m, f.Box, theta)
	if err != nil {
		return err
	}
	a.lap("landmark crop")
	pts, err := a.runLandmarks([]landmarkCrop{c})
	if err != nil {
		return err
	}
	a.lap("landmarks")
	f.Points68 = pts[0]
	f.Landmarks = FivePoints(&f.Points68)
	return nil
}

// trackAt sets f.tracking for f's landmarks read at theta (landmarksAt):
// the model reads the box shifted by a tenth of its size along the crop's
// axes, and tracking is the points' mean movement as a share of the box's,
// near 0 when the points stay on the face (the model sees a face the right
// way up), near 1 or more when they move with the box (it draws a face it
// does not see: a face upside down or sideways, or no face).
func (a *Aligner) trackAt(m gocv.Mat, f *Face, theta float64) error {
	rad := theta * math.Pi / 180
	box := f.Box
	dx, dy := 0.1*(box[2]-box[0]), 0.1*(box[3]-box[1])
	sx, sy := math.Cos(rad)*dx-math.Sin(rad)*dy, math.Sin(rad)*dx+math.Cos(rad)*dy
	shifted := [4]float64{box[0] + sx, box[1] + sy, box[2] + sx, box[3] + sy}
	c, err := cropAt(m, shifted, theta)
	if err != nil {
		return err
	}
	pts, err := a.runLandmarks([]landmarkCrop{c})
	if err != nil {
		return err
	}
	f.tracking = trackingError(&pts[0], &f.Points68, math.Hypot(sx, sy))
	a.lap("tracking")
	return nil
}

// trackingError is the mean distance between the points read on the
// shifted box and the reading's, as a share of the shift.
func trackingError(moved, read *[68]Point, shift float64) float64 {
	var d float64
	for i := range moved {
		d += math.Hypot(moved[i].X-read[i].X, moved[i].Y-read[i].Y)
	}
	return d / 68 / shift
}

// quarterOf is the multiple of 90° (0, 90, 180 or 270) nearest to roll.
func quarterOf(roll float64) int {
	q := int(math.Round(roll/90)) * 90
	return (q%360 + 360) % 360
}

// eyeRoll is the angle of the line from the first to the second eye of the
// five points, in degrees in (−180, 180], clockwise (y down): 0 for an
// upright face, 180 for one upside down.
func eyeRoll(l [5]Point) float64 {
	return math.Atan2(l[1].Y-l[0].Y, l[1].X-l[0].X) * 180 / math.Pi
}

// angleDiff is a − b wrapped into (−180, 180].
func angleDiff(a, b float64) float64 {
	d := math.Mod(a-b, 360)
	if d > 180 {
		d -= 360
	} else if d <= -180 {
		d += 360
	}
	return d
}

// read computes f's landmarks on m, read at the quarter turn quarter
// (degrees), then refined for roll, and the chip's correlation with the
// mean upright face (f.upright). The tracking error is not measured yet
// (f.tracking 0, f.tracked false): see track.
func (a *Aligner) read(m gocv.Mat, f *Face, quarter float64) error {
	theta := quarter
	if err := a.landmarksAt(m, f, theta); err != nil {
		return err
	}
	for i := 0; i < 2; i++ {
		roll := eyeRoll(f.Landmarks)
		if math.Abs(angleDiff(roll, theta)) <= rollRefine || a.opt.NoRotate && math.Abs(roll) > 45 {
			break
		}
		g := *f
		if err := a.landmarksAt(m, &g, roll); err != nil {
			return err
		}
		*f, theta = g, roll
	}
	f.Roll = eyeRoll(f.Landmarks)
	f.Rotation = quarterOf(f.Roll)
	f.theta = theta
	a.lap("read")
	f.upright, f.faceLike = chipScores(m, f)
	a.lap("upright")
	f.tracking, f.tracked = 0, false
	return nil
}

// track measures the tracking error of f's reading (read) on its final
// angle, once, and only when the chip's correlation with the mean upright
// face is below uprightSure (a reading that looks that upright is taken
// as it is: tracking 0). It returns f's uprightness.
func (a *Aligner) track(m gocv.Mat, f *Face) (float64, error) {
	if !f.tracked {
		if !f.sure() {
			if err := a.trackAt(m, f, f.theta); err != nil {
				return 0, err
			}
		}
		f.tracked = true
	}
	return f.upright - f.tracking, nil
}

// orient reads f at the quarter turn quarter (read) and returns its
// uprightness, the tracking error measured (track).
//
// The tracking crop is not run ahead on another goroutine beside the
// reading (as it was before the face-likeness classifier could say a
// reading is surely upright): about 97 % of real faces are sure, so the
// speculative crop was nearly always wasted (LFW: 2.76 landmark crops a
// photo with it, 1.70 without).
func (a *Aligner) orient(m gocv.Mat, f *Face, quarter float64) (float64, error) {
	if err := a.read(m, f, quarter); err != nil {
		return 0, err
	}
	return a.track(m, f)
}

// Uprightness is how much f's landmarks look like those of an upright face
// read the right way up: the chip's correlation with the mean face
// (f.upright), less the landmark model's tracking error (f.tracking, see
// trackAt). On LFW and group faces against the same photos turned by 180°,
// the correlation alone separates them with an AUC of 0.949, the
// difference with 0.978.

// finish fills the detected faces' landmarks, orientation and quality. m
// is the image the boxes are in; photo is the photo's rectangle within m
// (m may be padded); quarter is the turn the faces are first read at.
//
// The quarter turn is chosen for the photo as a whole (its faces nearly
// always share it): when one of the faces looks upright (uprightness at
// least uprightMin: a plausible upright face says the photo stands the
// right way up), they stay as read; otherwise every face is read at the
// other three turns too and the turn with the highest total uprightness
// wins, if it beats the first by uprightGain per face.
//
// A tracking error only lowers an uprightness, so it is measured only
// where its value can still change the outcome: not for a turn whose
// correlations alone cannot win, nor for a half-turn reading whose
// correlation alone leaves the upside-down gate shut (Quality.upsideDown
// falls as TurnedTracking grows; such a reading reports TurnedTracking 0,
// not measured). Readings the turn search made are reused by the half-turn
// check (the same box read from the same turn gives the same reading).
func (a *Aligner) finish(m gocv.Mat, photo image.Rectangle, faces []Face, quarter float64) error {
	total, most, anySure := 0.0, math.Inf(-1), false
	for i := range faces {
		u, err := a.orient(m, &faces[i], quarter)
		if err != nil {
			return err
		}
		total += u
		most = math.Max(most, u)
		anySure = anySure || faces[i].sure()
	}
	// readings[k] are the faces read from the turn quarter + 90k.
	var readings [4][]Face
	readings[0] = append([]Face(nil), faces...)
	n := float64(len(faces))
	if !a.opt.NoRotate && len(faces) > 0 && most < uprightMin && !anySure {
		a.lapContext("turn search: ")
		best, bestTotal := 0, total
		turned, errs := a.readTurns(m, readings[0], quarter)
		for k := 1; k < 4; k++ {
			alt := turned[k]
			ub := 0.0 // the total with no tracking error: an upper bound
			for i := range alt {
				if errs[k][i] != nil {
					return errs[k][i]
				}
				ub += alt[i].upright
			}
			readings[k] = alt
			wins := func(t float64) bool { return t >= bestTotal+uprightGain*n && t/n >= uprightMin }
			t := ub
			for i := 0; i < len(alt) && wins(t); i++ {
				u, err := a.track(m, &alt[i])
				if err != nil {
					return err
				}
				t += u - alt[i].upright
			}
			if wins(t) {
				best, bestTotal = k, t
			}
		}
		copy(faces, readings[best])
	}
	for i := range faces {
		a.lapContext("half-turn: ")
		f := &faces[i]
		// A face that does not look clearly upright is read once more
		// turned by a half turn: if that reading is more upright, this
		// one is likely upside down, and the quality says so.
		var turned, tu, tt float64
		if u := f.upright - f.tracking; u < halfTurnCheck && !f.sure() {
			hq := float64((quarterOf(f.Roll) + 180) % 360)
			var alt Face
			made := false
			for k, r := range readings {
				if r != nil && math.Mod(quarter+float64(90*k), 360) == hq {
					alt, made = r[i], true
				}
			}
			if !made {
				alt = *f
				if err := a.read(m, &alt, hq); err != nil {
					return err
				}
			}
			if !alt.tracked {
				open := Quality{Upright: f.upright, Tracking: f.tracking, HalfTurn: alt.upright - u, TurnedUpright: alt.upright}
				if open.upsideDown() > 0 {
					if _, err := a.track(m, &alt); err != nil {
						return err
					}
				}
			}
			turned, tu, tt = alt.upright-alt.tracking-u, alt.upright, alt.tracking
		}
		a.lapContext("")
		f.Quality = quality(m, photo, f)
		f.Quality.HalfTurn = turned
		f.Quality.TurnedUpright, f.Quality.TurnedTracking = tu, tt
		f.Quality.score()
		a.lap("quality")
	}
	return nil
}

// readTurns reads the faces (as first read, from the turn quarter) from
// the other three turns, quarter + 90k for k = 1, 2, 3 (read), and
// returns the readings and each one's error, by k. On a landmark session
// that runs crops at once (concurrentSession), with this the only Detect in
// flight, the 3·len(faces) readings run on up to GOMAXPROCS goroutines;
// otherwise one after another, stopping at the first error (finish
// returns the first error in that order, whichever way they ran).
func (a *Aligner) readTurns(m gocv.Mat, faces []Face, quarter float64) (turned [4][]Face, errs [4][]error) {
	type job struct{ k, i int }
	var jobs []job
	for k := 1; k < 4; k++ {
		turned[k] = append([]Face(nil), faces...)
		errs[k] = make([]error, len(faces))
		for i := range faces {
			jobs = append(jobs, job{k, i})
		}
	}
	do := func(j job) error {
		err := a.read(m, &turned[j.k][j.i], math.Mod(quarter+float64(90*j.k), 360))
		errs[j.k][j.i] = err
		return err
	}
	workers := min(a.spareCores(), len(jobs))
	if workers < 2 {
		for _, j := range jobs {
			if do(j) != nil {
				break
			}
		}
		return turned, errs
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := int(next.Add(1)) - 1
				if n >= len(jobs) {
					return
				}
				do(jobs[n])
			}
		}()
	}
	wg.Wait()
	return turned, errs
}

// spareCores is how many goroutines one Detect may run landmark crops on
// at once: GOMAXPROCS when the landmark session runs crops concurrently
// (concurrentSession) and this is the only Detect of the Aligner in
// flight (a busy server spends no CPU on speculation), else 1.
func (a *Aligner) spareCores() int {
	if !a.concurrent || a.inflight.Load() != 1 {
		return 1
	}
	return runtime.GOMAXPROCS(0)
}

// turn rotates m clockwise by quarter (90, 180 or 270) degrees.
func turn(m gocv.Mat, quarter int) gocv.Mat {
	out := gocv.NewMat()
	switch quarter {
	case 90:
		gocv.Rotate(m, &out, gocv.Rotate90Clockwise)
	case 180:
		gocv.Rotate(m, &out, gocv.Rotate180Clockwise)
	default:
		gocv.Rotate(m, &out, gocv.Rotate90CounterClockwise)
	}
	return out
}

// unturn maps a point of a w×h image turned clockwise by quarter degrees
// back to the image (pixel-corner coordinates).
func unturn(p Point, quarter, w, h int) Point {
	switch quarter {
	case 90:
		return Point{p.Y, float64(h) - p.X}
	case 180:
		return Point{float64(w) - p.X, float64(h) - p.Y}
	case 270:
		return Point{float64(w) - p.Y, p.X}
	}
	return p
}

// unturnBox maps a box of the turned image back (see unturn).
func unturnBox(b [4]float64, quarter, w, h int) [4]float64 {
	p := unturn(Point{b[0], b[1]}, quarter, w, h)
	q := unturn(Point{b[2], b[3]}, quarter, w, h)
	return [4]float64{math.Min(p.X, q.X), math.Min(p.Y, q.Y), math.Max(p.X, q.X), math.Max(p.Y, q.Y)}
}

// detectTurned searches m turned by 90°, 180° and 270° and returns the
// faces of the turn whose best face is the most plausible, with boxes and
// landmarks in m's coordinates.
func (a *Aligner) detectTurned(m gocv.Mat, photo image.Rectangle, pad int, small bool) ([]Face, error) {
	var best []Face
	bestQ := -1.0
	for _, k := range [3]int{90, 180, 270} {
		t := turn(m, k)
		boxes, err := a.detectPyramid(t, pad, small)
		t.Close()
		if err != nil {
			return nil, err
		}
		if len(boxes) == 0 {
			continue
		}
		faces := make([]Face, len(boxes))
		for i, b := range boxes {
			faces[i] = Face{Score: b.Score, Box: unturnBox(b.Box, k, m.Cols(), m.Rows())}
		}
		// Upright in the photo turned clockwise by k, the faces are turned
		// by −k in the photo itself.
		if err := a.finish(m, photo, faces, float64((360-k)%360)); err != nil {
			return nil, err
		}
		// Only plausible faces count: turning a photo without a face
		// gives the detector three more chances at a false one.
		kept := faces[:0]
		for _, f := range faces {
			if f.Score >= tileScore && f.upright-f.tracking >= turnedUpright {
				kept = append(kept, f)
			}
		}
		faces = kept
		if len(faces) == 0 {
			continue
		}
		q := -1.0
		for _, f := range faces {
			q = math.Max(q, f.Quality.Score)
		}
		if q > bestQ {
			best, bestQ = faces, q
		}
	}
	return best, nil
}
