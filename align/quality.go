package align

import (
	"image"
	"image/color"
	"math"

	"gocv.io/x/gocv"
)

// Quality says how usable a detected face is for recognition: one 0–1
// score and the parts it is made of. Every part is 0–1 (1 is good) except
// the measured values it comes from (FacePixels, Yaw, Pitch, Roll, ...).
//
// The score is
//
//	Score = Inside · Mouth · (1 − UpsideDown) · Tiny · FaceGate · (Detector · Landmarks² · Sharpness · Exposure · Size · Pose)^(1/7)
//
// The first five gate the score: a face whose central region (eyes to
// chin) or whose mouth and chin lie partly outside the photo (a crop of
// the forehead and eyes, a face cut by the border), a face aligned upside
// down, a face too small to recognise, or a chip that does not look like
// a real upright face, gives a chip the backbone cannot use, whatever its
// sharpness. The other parts are combined by their geometric mean, the
// landmark plausibility counted twice, each with a floor of 0.05, so that
// one weak part lowers the score without zeroing it (on LFW, real faces
// reach every part's worst value; the landmark and pose estimates are
// rough). The parts:
//
//   - Inside: the share of the chip's central face region that lies inside
//     the photo, ramping from 0 at 0.55 to 1 at 0.8 (LFW's real faces go
//     down to 0.59, forehead-and-eyes crops mostly lie between 0.57 and 0.85).
//   - Mouth: the share of the chip's mouth and chin region inside the
//     photo, ramping from 0 at 0.6 to 1 at 0.69 (LFW's lowest is 0.691;
//     most forehead-and-eyes crops are below 0.6).
//   - UpsideDown: when a face's uprightness (below) is under 0.2, its box
//     is read once more turned by 180° (rotate.go). The face is taken for
//     one aligned upside down when all three readings agree: the turned
//     reading is clearly more upright (HalfTurn ramping from 0.2 to 0.3),
//     its landmarks track the face better (Tracking − TurnedTracking
//     ramping from 0 to 0.05: the landmark model sees a face only that
//     way), and it looks upright itself (its uprightness ramping from 0 to
//     0.1). Measured: 56 of the 63 johns photos turned upside down and
//     aligned upside down meet all three, none of LFW's 13,233 photos does
//     (the nearest, a real face, reads 0.135 more upright turned; eleven
//     LFW faces meet the first two but read implausibly turned as well).
//   - Tiny: the face box's shorter side ramps from 0 at 24 pixels to 1 at
//     32 (too small to hold a recognisable face; the detector's false
//     boxes on a forehead crop are 21–25 pixels).
//   - FaceGate: the face-likeness classifier's log-odds (FaceLike, a
//     network of 16 tanh units on pooled pixels and gradient-orientation
//     histograms of the 56×56 grey chip: upright.go) ramps from 0 at −6
//     to 1 at −4. The classifier was fitted on the quality experiment's fit
//     half (TestFaceLikeFit: every 4th LFW person's bad crops, every photo
//     of LFW's people A–M) to tell real faces from the bad faces the other
//     gates let through. The ramp lies below every real face of LFW: of the
//     held-out people's (N–Z) 3,878 photos the lowest reads −3.65, of the
//     fit half's 9,410 −3.1.
//   - Detector: the detector's score (at least Options.Score, 0.65 by default).
//   - Landmarks: uprightness, Upright − Tracking: the correlation of the
//     aligned chip (28×28 grey, normalised) with the mean aligned face of the
//     johns photos (meanface.go), less the landmark model's tracking error
//     (how far its points move when the box moves by a tenth: rotate.go);
//     it ramps from 0 at −1 to 1 at 0.3.
//   - Sharpness: 1 − exp(−v/40), v the variance of the Laplacian of the grey
//     112×112 chip's central region (a small face, scaled up to the chip,
//     counts as blurred).
//   - Exposure: the central region's mean grey level ramps from 0 at 20 to
//     1 at 60 and back to 0 from 200 to 245, times its standard deviation
//     ramping from 0 at 6 to 1 at 20 (contrast).
//   - Size: the face box's shorter side ramps from 0 at 20 pixels to 1 at
//     64.
//   - Pose: 1 while |yaw| ≤ 30° and |pitch| ≤ 25°, falling linearly to 0 at
//     90° and 80° (their product). Yaw, pitch and roll are rough estimates
//     from the 68 landmarks (see estimatePose), not a 3-D fit.
type Quality struct {
	// Score is the combined quality, 0–1.
	Score float64 `json:"score"`
	// Detector is the detector's score.
	Detector float64 `json:"detector"`
	// Landmarks is the landmark plausibility, from Upright − Tracking.
	Landmarks float64 `json:"landmarks"`
	// Sharpness is 0–1 from the Laplacian variance.
	Sharpness float64 `json:"sharpness"`
	// Exposure is 0–1 from the face's brightness and contrast.
	Exposure float64 `json:"exposure"`
	// Size is 0–1 from FacePixels.
	Size float64 `json:"size"`
	// Pose is 0–1 from Yaw and Pitch.
	Pose float64 `json:"pose"`
	// FacePixels is the face box's shorter side in the pixels the photo
	// was read at (Image.Scale).
	FacePixels float64 `json:"face_pixels"`
	// Yaw, Pitch and Roll are the head pose in degrees: yaw positive when
	// the face turns towards the image's right, pitch positive when it
	// looks down, roll the eye line's angle (clockwise).
	Yaw   float64 `json:"yaw"`
	Pitch float64 `json:"pitch"`
	Roll  float64 `json:"roll"`
	// Upright is the chip's correlation with the mean upright face (−1…1).
	Upright float64 `json:"upright"`
	// Tracking is the landmark model's tracking error (rotate.go), 0 when
	// not measured: Upright at or above 0.6 is taken as conclusive.
	Tracking float64 `json:"tracking"`
	// Inside is the share of the chip's face region inside the photo (the
	// raw share; the score uses its ramp).
	Inside float64 `json:"inside"`
	// MouthInside is the share of the chip's mouth and chin region inside
	// the photo.
	MouthInside float64 `json:"mouth_inside"`
	// HalfTurn is how much more upright the face reads turned by 180°
	// (uprightness of that reading less this one's), measured when this
	// one's uprightness is below 0.2; 0 otherwise.
	HalfTurn float64 `json:"half_turn"`
	// TurnedUpright and TurnedTracking are the upright correlation and
	// the tracking error of that half-turn reading (0 when not measured).
	TurnedUpright  float64 `json:"turned_upright"`
	TurnedTracking float64 `json:"turned_tracking"`
	// FaceLike is the face-likeness classifier's log-odds that the
	// aligned chip is a real upright face (upright.go).
	FaceLike float64 `json:"face_like"`
	// BoxInside is the share of the detector's box inside the photo
	// (reported, not part of the score).
	BoxInside float64 `json:"box_inside"`
	// Laplacian is the variance of the chip's Laplacian.
	Laplacian float64 `json:"laplacian"`
	// Brightness and Contrast are the mean and standard deviation of the
	// chip's grey levels in its face region.
	Brightness float64 `json:"brightness"`
	Contrast   float64 `json:"contrast"`
}

// Rounded returns q with every value rounded to 3 decimals (for printing).
func (q Quality) Rounded() Quality {
	r := func(x *float64) { *x = math.Round(*x*1000) / 1000 }
	for _, p := range []*float64{&q.Score, &q.Detector, &q.Landmarks, &q.Sharpness, &q.Exposure, &q.Size, &q.Pose,
		&q.FacePixels, &q.Yaw, &q.Pitch, &q.Roll, &q.Upright, &q.Tracking, &q.Inside, &q.MouthInside, &q.HalfTurn, &q.TurnedUpright, &q.TurnedTracking, &q.FaceLike,
		&q.BoxInside, &q.Laplacian, &q.Brightness, &q.Contrast} {
		r(p)
	}
	return q
}

// ramp is 0 below lo, 1 above hi, linear between.
func ramp(x, lo, hi float64) float64 {
	return math.Max(0, math.Min(1, (x-lo)/(hi-lo)))
}

// The chip's central face region (eyes to chin, cheek to cheek) in 112×112
// chip pixels, where sharpness, exposure and the inside share are measured.
var faceRegion = image.Rect(24, 32, 88, 108)

// quality measures f on m (photo: the photo's rectangle within m).
func quality(m gocv.Mat, photo image.Rectangle, f *Face) Quality {
	q := Quality{Detector: float64(f.Score), FacePixels: math.Min(f.Width(), f.Height()), Roll: eyeRoll(f.Landmarks)}
	q.Yaw, q.Pitch = estimatePose(f)
	t, err := Similarity(f.Landmarks[:], Template[:])
	if err != nil {
		return q // degenerate landmarks: everything that needs the chip stays 0
	}
	grey := greyChip(m, t)
	defer grey.Close()
	q.Upright, q.Tracking = f.upright, f.tracking
	q.Inside = insideShare(t, photo)
	q.MouthInside = regionInside(t, photo, mouthRegion)
	pr := [4]float64{float64(photo.Min.X), float64(photo.Min.Y), float64(photo.Max.X), float64(photo.Max.Y)}
	q.BoxInside = inside(f.Box, pr)
	region := grey.Region(faceRegion)
	defer region.Close()
	lap := gocv.NewMat()
	defer lap.Close()
	gocv.Laplacian(region, &lap, gocv.MatTypeCV64F, 1, 1, 0, gocv.BorderReflect101)
	_, q.Laplacian = meanStd(lap)
	q.Laplacian *= q.Laplacian
	q.Brightness, q.Contrast = meanStd(region)
	q.FaceLike = faceLikeOf(grey)

	q.score()
	return q
}

// score computes the parts' 0–1 values and the combined score from the
// measures.
func (q *Quality) score() { q.scoreGated(faceLikeLo, faceLikeHi) }

// scoreGated is score with the FaceLike gate ramping from lo to hi.
func (q *Quality) scoreGated(lo, hi float64) {
	const floor = 0.05
	soft := func(x float64) float64 { return floor + (1-floor)*x }
	q.Landmarks = soft(ramp(q.Upright-q.Tracking, -1, 0.3))
	q.Sharpness = soft(1 - math.Exp(-q.Laplacian/40))
	q.Exposure = soft(math.Min(ramp(q.Brightness, 20, 60), 1-ramp(q.Brightness, 200, 245)) * ramp(q.Contrast, 6, 20))
	q.Size = soft(ramp(q.FacePixels, 20, 64))
	q.Pose = soft((1 - ramp(math.Abs(q.Yaw), 30, 90)) * (1 - ramp(math.Abs(q.Pitch), 25, 80)))
	q.Score = ramp(q.Inside, 0.55, 0.8) * ramp(q.MouthInside, 0.6, 0.69) * (1 - q.upsideDown()) *
		ramp(q.FacePixels, 24, 32) * ramp(q.FaceLike, lo, hi) * math.Pow(q.Detector*q.Landmarks*q.Landmarks*q.Sharpness*q.Exposure*q.Size*q.Pose, 1.0/7)
}

// The FaceLike gate ramps from faceLikeLo to faceLikeHi.
const (
	faceLikeLo = -6
	faceLikeHi = -4
)

// upsideDown is the UpsideDown gate's evidence, 0–1: the half-turn reading
// is more upright, tracks the face better, and is a plausible face.
func (q *Quality) upsideDown() float64 {
	if q.HalfTurn == 0 {
		return 0 // not measured: the face looked upright enough
	}
	u := q.Upright - q.Tracking
	return ramp(q.HalfTurn, 0.2, 0.3) * ramp(q.Tracking-q.TurnedTracking, 0, 0.05) * ramp(u+q.HalfTurn, 0, 0.1)
}

// meanStd returns the mean and standard deviation of a one-channel Mat.
func meanStd(m gocv.Mat) (float64, float64) {
	mean, std := gocv.NewMat(), gocv.NewMat()
	defer mean.Close()
	defer std.Close()
	gocv.MeanStdDev(m, &mean, &std)
	return mean.GetDoubleAt(0, 0), std.GetDoubleAt(0, 0)
}

// greyChip warps the face onto the 112×112 template, in grey.
func greyChip(m gocv.Mat, t Affine) gocv.Mat {
	mt := gocv.NewMatWithSize(2, 3, gocv.MatTypeCV64F)
	defer mt.Close()
	for r := 0; r < 2; r++ {
		for c := 0; c < 3; c++ {
			mt.SetDoubleAt(r, c, t[r][c])
		}
	}
	out := gocv.NewMat()
	defer out.Close()
	gocv.WarpAffineWithParams(m, &out, mt, image.Pt(ChipSize, ChipSize), gocv.InterpolationLinear, gocv.BorderConstant, color.RGBA{})
	grey := gocv.NewMat()
	gocv.CvtColor(out, &grey, gocv.ColorBGRToGray)
	return grey
}

// meanFaceSide is the side of the mean-face template (the 112 chip / 4).
const meanFaceSide = 28

// meanFaceMask is the part of the 28×28 chip correlated with the mean face
// (faceRegion / 4).
var meanFaceMask = image.Rect(faceRegion.Min.X/4, faceRegion.Min.Y/4, faceRegion.Max.X/4, faceRegion.Max.Y/4)

// meanFaceZ is meanFace over meanFaceMask, normalised to mean 0 and unit
// variance.
var meanFaceZ = normalise(meanFace[:])

// maskValues returns the values of a 28×28 grey image inside meanFaceMask.
func maskValues(pix []uint8) []float64 {
	out := make([]float64, 0, meanFaceMask.Dx()*meanFaceMask.Dy())
	for y := meanFaceMask.Min.Y; y < meanFaceMask.Max.Y; y++ {
		for x := meanFaceMask.Min.X; x < meanFaceMask.Max.X; x++ {
			out = append(out, float64(pix[y*meanFaceSide+x]))
		}
	}
	return out
}

func normalise(pix []uint8) []float64 {
	return standardise(maskValues(pix))
}

// standardise shifts and scales v in place to mean 0 and unit variance
// (a constant v is only shifted) and returns it.
func standardise(v []float64) []float64 {
	var mu, ss float64
	for _, x := range v {
		mu += x
	}
	mu /= float64(len(v))
	for _, x := range v {
		ss += (x - mu) * (x - mu)
	}
	sd := math.Sqrt(ss / float64(len(v)))
	if sd < 1e-9 {
		sd = 1
	}
	for i := range v {
		v[i] = (v[i] - mu) / sd
	}
	return v
}

// smallChip is the 112×112 grey chip reduced to 28×28 (area average).
func smallChip(grey gocv.Mat) []uint8 {
	small := gocv.NewMat()
	defer small.Close()
	gocv.Resize(grey, &small, image.Pt(meanFaceSide, meanFaceSide), 0, 0, gocv.InterpolationArea)
	return small.ToBytes()
}

// meanFaceNCC is the normalised cross-correlation of a grey 112×112 chip
// with the mean upright face over the face region.
func meanFaceNCC(grey gocv.Mat) float64 {
	z := normalise(smallChip(grey))
	var s float64
	for i, v := range z {
		s += v * meanFaceZ[i]
	}
	return s / float64(len(z))
}

// chipScores returns meanFaceNCC and faceLikeOf of f's chip on m (−1 and
// −100 for degenerate landmarks).
func chipScores(m gocv.Mat, f *Face) (upright, faceLike float64) {
	t, err := Similarity(f.Landmarks[:], Template[:])
	if err != nil {
		return -1, -100
	}
	grey := greyChip(m, t)
	defer grey.Close()
	return meanFaceNCC(grey), faceLikeOf(grey)
}

// mouthRegion is the chip's mouth and chin (112×112 chip pixels).
var mouthRegion = image.Rect(32, 84, 80, 108)

// insideShare is the share of faceRegion's chip pixels (on a 9×9 grid)
// that the inverse of t maps inside photo.
func insideShare(t Affine, photo image.Rectangle) float64 {
	return regionInside(t, photo, faceRegion)
}

// regionInside is the share of region's chip pixels (on a 9×9 grid) that
// the inverse of t maps inside photo.
func regionInside(t Affine, photo image.Rectangle, faceRegion image.Rectangle) float64 {
	inv, ok := t.invert()
	if !ok {
		return 0
	}
	const n = 9
	in := 0
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			c := Point{
				float64(faceRegion.Min.X) + (float64(j)+0.5)*float64(faceRegion.Dx())/n,
				float64(faceRegion.Min.Y) + (float64(i)+0.5)*float64(faceRegion.Dy())/n,
			}
			p := inv.Apply(c)
			if p.X >= float64(photo.Min.X) && p.X < float64(photo.Max.X) && p.Y >= float64(photo.Min.Y) && p.Y < float64(photo.Max.Y) {
				in++
			}
		}
	}
	return float64(in) / (n * n)
}

// invert returns the inverse transform, false when m is singular.
func (m Affine) invert() (Affine, bool) {
	a, b, c, d := m[0][0], m[0][1], m[1][0], m[1][1]
	det := a*d - b*c
	if math.Abs(det) < 1e-12 {
		return Affine{}, false
	}
	ia, ib, ic, id := d/det, -b/det, -c/det, a/det
	return Affine{
		{ia, ib, -(ia*m[0][2] + ib*m[1][2])},
		{ic, id, -(ic*m[0][2] + id*m[1][2])},
	}, true
}

// estimatePose returns rough yaw and pitch in degrees from the 68
// landmarks, in the face's own frame (the roll undone):
//
//   - yaw from the nose tip (30) between the jaw's ends (0 and 16): with
//     l and r its distances to them, yaw = asin((l − r)/(l + r)), the angle
//     at which a nose on a round head would sit there;
//   - pitch from the nose tip's height between the eye line and the mouth
//     line: t = (nose − eyes)/(mouth − eyes), 0.494 on the frontal ArcFace
//     template; pitch = asin(clamp(2·(t − 0.494))) (looking down moves the
//     nose tip towards the mouth).
func estimatePose(f *Face) (yaw, pitch float64) {
	p := &f.Points68
	rad := -eyeRoll(f.Landmarks) * math.Pi / 180
	cos, sin := math.Cos(rad), math.Sin(rad)
	rot := func(q Point) Point { return Point{cos*q.X - sin*q.Y, sin*q.X + cos*q.Y} }
	nose, jl, jr := rot(p[30]), rot(p[0]), rot(p[16])
	l, r := nose.X-jl.X, jr.X-nose.X
	if l+r > 1e-9 {
		yaw = math.Asin(math.Max(-1, math.Min(1, (l-r)/(l+r)))) * 180 / math.Pi
	}
	eyes := rot(Point{(f.Landmarks[0].X + f.Landmarks[1].X) / 2, (f.Landmarks[0].Y + f.Landmarks[1].Y) / 2})
	mouth := rot(Point{(f.Landmarks[3].X + f.Landmarks[4].X) / 2, (f.Landmarks[3].Y + f.Landmarks[4].Y) / 2})
	if d := mouth.Y - eyes.Y; math.Abs(d) > 1e-9 {
		t := (nose.Y - eyes.Y) / d
		pitch = math.Asin(math.Max(-1, math.Min(1, 2*(t-0.494)))) * 180 / math.Pi
	}
	return yaw, pitch
}

// DefaultMinQuality is the quality below which enroll refuses a face by
// default: 15 % below the lowest real face of the quality experiment's fit
// half (3 johns people, LFW names A–M), which is 0.298 (Debbie_Reynolds_0002,
// in TestLFWEveryPhoto with FACEVER_LFW_ALL: every other LFW photo's
// person's face scores at least 0.35). Checked on the held-out half (2
// johns people, LFW names N–Z: every person's face keeps it) by
// TestQualityExperiment and TestLFWEveryPhoto. It rejects most crops of the
// forehead and eyes and faces aligned upside down, not all; see the README
// for the counts, fit and held-out.
const DefaultMinQuality = 0.25
