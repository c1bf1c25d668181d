package verify

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"os"
	"slices"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Curve is one ROC curve to plot, with its legend label.
type Curve struct {
	// Label names the curve in the legend (its AUC and EER are appended).
	Label string
	// ROC is the curve's data.
	ROC *ROC
}

// PlotOptions configure PlotROC. The zero value gives a 960×720 plot of FAR
// 1e-4..1 on a log scale.
type PlotOptions struct {
	// Width and Height in pixels (defaults 960×720, minimum 320×240).
	Width, Height int
	// Title is drawn above the plot (optional).
	Title string
	// MinFAR is the left end of the log-scale FAR axis (default 1e-4); the
	// right end is 1.
	MinFAR float64
	// MinTAR is the bottom of the TAR axis. Zero picks it from the curves
	// (the lowest plotted TAR rounded down to 0.1).
	MinTAR float64
	// FullTAR draws the whole TAR axis, 0..1.
	FullTAR bool
}

// Palette holds the curve colours, in order (a colour-blind-safe set).
var Palette = []color.RGBA{
	{0x00, 0x72, 0xb2, 0xff}, // blue
	{0xd5, 0x5e, 0x00, 0xff}, // vermillion
	{0x00, 0x9e, 0x73, 0xff}, // green
	{0xcc, 0x79, 0xa7, 0xff}, // purple
	{0xe6, 0x9f, 0x00, 0xff}, // orange
	{0x56, 0xb4, 0xe9, 0xff}, // sky
	{0x00, 0x00, 0x00, 0xff}, // black
}

var (
	colBG    = color.RGBA{0xff, 0xff, 0xff, 0xff}
	colAxis  = color.RGBA{0x20, 0x20, 0x20, 0xff}
	colGrid  = color.RGBA{0xdd, 0xdd, 0xdd, 0xff}
	colGrid2 = color.RGBA{0xf0, 0xf0, 0xf0, 0xff}
	colShade = color.RGBA{0xf4, 0xf4, 0xf4, 0xff}
	colText  = color.RGBA{0x10, 0x10, 0x10, 0xff}
	colNote  = color.RGBA{0x80, 0x80, 0x80, 0xff}
)

// WriteROCPNG renders the curves (see RenderROC) into a PNG file.
func WriteROCPNG(path string, curves []Curve, opts PlotOptions) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("roc plot: %w", err)
	}
	if err := PlotROC(f, curves, opts); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("roc plot: %w", err)
	}
	return nil
}

// PlotROC renders the curves (see RenderROC) as a PNG to w.
func PlotROC(w io.Writer, curves []Curve, opts PlotOptions) error {
	img, err := RenderROC(curves, opts)
	if err != nil {
		return err
	}
	if err := png.Encode(w, img); err != nil {
		return fmt.Errorf("roc plot: %w", err)
	}
	return nil
}

// RenderROC draws TAR against FAR (log scale, MinFAR..1) for each curve:
// axes, decade ticks with labels, grid, axis titles, a legend giving each
// curve's AUC and EER, and a shaded band where FAR is below 1/impostors
// (not measurable with the pairs at hand). Each curve is the attainable TAR
// at FAR ≤ x (a staircase where impostors are sparse).
func RenderROC(curves []Curve, opts PlotOptions) (*image.RGBA, error) {
	if len(curves) == 0 {
		return nil, errors.New("roc plot: no curve")
	}
	for i, c := range curves {
		if c.ROC == nil || len(c.ROC.Points) == 0 {
			return nil, fmt.Errorf("roc plot: curve %d (%q) is empty", i, c.Label)
		}
	}
	W, H := opts.Width, opts.Height
	if W == 0 {
		W = 960
	}
	if H == 0 {
		H = 720
	}
	if W < 320 || H < 240 || W > 8000 || H > 8000 {
		return nil, fmt.Errorf("roc plot: size %d×%d outside 320×240..8000×8000", W, H)
	}
	minFAR := opts.MinFAR
	if minFAR == 0 {
		minFAR = 1e-4
	}
	if !(minFAR > 0 && minFAR < 1) {
		return nil, fmt.Errorf("roc plot: MinFAR %g not in (0, 1)", minFAR)
	}
	scale := 1 // text scale
	if W >= 640 && H >= 480 {
		scale = 2
	}
	minTAR := opts.MinTAR
	if opts.FullTAR {
		minTAR = 0
	} else if minTAR == 0 {
		lo := 1.0
		for _, c := range curves {
			lo = math.Min(lo, tarAt(c.ROC, minFAR))
		}
		minTAR = math.Min(math.Floor(lo*10)/10, 0.9)
	}
	if !(minTAR >= 0 && minTAR < 1) {
		return nil, fmt.Errorf("roc plot: MinTAR %g not in [0, 1)", minTAR)
	}
	sw := 24 * scale // legend swatch
	pad := 6 * scale
	lh := 13*scale + 4*scale
	labels := make([]string, len(curves))
	lw := 0
	for i, c := range curves {
		labels[i] = fmt.Sprintf("%s  AUC %.4f  EER %.2f%%", c.Label, c.ROC.AUC, 100*c.ROC.EER)
		lw = max(lw, textWidth(labels[i], scale))
	}
	legend := image.Pt(pad*3+sw+lw, pad*2+lh*len(curves)-4*scale)
	g := geometry{W: W, H: H, scale: scale, minFAR: minFAR, minTAR: minTAR, labels: labels, legend: legend, sw: sw, pad: pad, lh: lh}
	img, err := g.render(curves, opts, false)
	if errors.Is(err, errLegendHides) {
		img, err = g.render(curves, opts, true)
	}
	return img, err
}

var errLegendHides = errors.New("legend hides a curve")

// geometry is what both rendering passes share.
type geometry struct {
	W, H, scale    int
	minFAR, minTAR float64
	labels         []string
	legend         image.Point
	sw, pad, lh    int
}

// render draws the plot, with the legend inside the plot area (failing with
// errLegendHides when every place hides part of a curve) or below it.
func (g geometry) render(curves []Curve, opts PlotOptions, outside bool) (*image.RGBA, error) {
	W, H, scale, minFAR, minTAR := g.W, g.H, g.scale, g.minFAR, g.minTAR
	labels, legend, sw, pad, lh := g.labels, g.legend, g.sw, g.pad, g.lh
	lx0, lx1 := math.Log10(minFAR), 0.0
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	draw.Draw(img, img.Bounds(), &image.Uniform{colBG}, image.Point{}, draw.Src)
	ch := 13 * scale // text line height
	// Room for the rotated axis title, a gap, the widest tick label and the tick.
	left, right := 4+ch+4*scale+textWidth("0.00", scale)+5*scale+3, 14*scale
	top, bottom := 10*scale, 2*ch+14*scale
	if outside {
		bottom += legend.Y + 6*scale
	}
	if opts.Title != "" {
		top += ch + 6*scale
	}
	plot := image.Rect(left, top, W-right, H-bottom)
	px := func(lf float64) int { // log10 FAR → x
		return plot.Min.X + int(math.Round((lf-lx0)/(lx1-lx0)*float64(plot.Dx()-1)))
	}
	py := func(tar float64) int {
		return plot.Max.Y - 1 - int(math.Round((tar-minTAR)/(1-minTAR)*float64(plot.Dy()-1)))
	}

	// Shade where FAR < 1/impostors for the least resolved curve.
	minImp := math.MaxInt
	for _, c := range curves {
		minImp = min(minImp, c.ROC.Impostor)
	}
	if minImp > 0 {
		if lim := math.Log10(1 / float64(minImp)); lim > lx0 {
			x := px(math.Min(lim, lx1))
			fill(img, image.Rect(plot.Min.X, plot.Min.Y, x, plot.Max.Y), colShade)
			l1, l2 := fmt.Sprintf("FAR < 1/%d", minImp), "not measurable"
			if tw := max(textWidth(l1, 1), textWidth(l2, 1)); tw+8 < x-plot.Min.X {
				drawText(img, plot.Min.X+4, plot.Min.Y+4, l1, 1, colNote, 0, 0)
				drawText(img, plot.Min.X+4, plot.Min.Y+6+13, l2, 1, colNote, 0, 0)
			}
		}
	}
	// Grid: minor (2..9 × decade) and major decades; TAR every 0.1 / 0.05.
	for d := math.Floor(lx0); d < lx1; d++ {
		for m := 2; m <= 9; m++ {
			if l := d + math.Log10(float64(m)); l > lx0 && l < lx1 {
				vline(img, px(l), plot.Min.Y, plot.Max.Y, colGrid2)
			}
		}
	}
	step := 0.1
	if 1-minTAR <= 0.3 {
		step = 0.05
	}
	if 1-minTAR <= 0.1 {
		step = 0.01
	}
	var yticks []float64
	for k := 0; ; k++ {
		t := math.Round((minTAR+float64(k)*step)*1000) / 1000
		if t > 1+1e-9 {
			break
		}
		yticks = append(yticks, t)
		hline(img, plot.Min.X, plot.Max.X, py(t), colGrid)
	}
	var xticks []float64
	for d := math.Ceil(lx0 - 1e-9); d <= lx1+1e-9; d++ {
		xticks = append(xticks, d)
		vline(img, px(d), plot.Min.Y, plot.Max.Y, colGrid)
	}
	// Curves, clipped to the plot area.
	clip := img.SubImage(plot).(*image.RGBA)
	for i, c := range curves {
		col := Palette[i%len(Palette)]
		prevX, prevY := -1, 0
		for x := plot.Min.X; x < plot.Max.X; x++ {
			f := math.Pow(10, lx0+float64(x-plot.Min.X)/float64(plot.Dx()-1)*(lx1-lx0))
			y := py(tarAt(c.ROC, f))
			if prevX >= 0 {
				thickLine(clip, prevX, prevY, x, y, scale+1, col)
			}
			prevX, prevY = x, y
		}
	}
	// Axes, ticks, labels.
	rect(img, plot, colAxis)
	tick := 5 * scale
	for _, d := range xticks {
		x := px(d)
		vline(img, x, plot.Max.Y, plot.Max.Y+tick, colAxis)
		drawText(img, x, plot.Max.Y+tick+3, farLabel(d), scale, colText, 0.5, 0)
	}
	for _, t := range yticks {
		y := py(t)
		hline(img, plot.Min.X-tick, plot.Min.X, y, colAxis)
		lbl := fmt.Sprintf("%.1f", t)
		if step < 0.1 {
			lbl = fmt.Sprintf("%.2f", t)
		}
		drawText(img, plot.Min.X-tick-3, y, lbl, scale, colText, 1, 0.5)
	}
	drawText(img, plot.Min.X+plot.Dx()/2, plot.Max.Y+tick+3+ch+6*scale, "False accept rate (FAR, log scale)", scale, colText, 0.5, 0)
	drawTextUp(img, 4, plot.Min.Y+plot.Dy()/2, "True accept rate (TAR)", scale, colText)
	if opts.Title != "" {
		drawText(img, plot.Min.X+plot.Dx()/2, 6*scale, opts.Title, scale, colText, 0.5, 0)
	}
	// Legend: inside the plot where it hides no curve, else below the plot.
	box := image.Rectangle{Max: legend}
	if outside {
		box = box.Add(image.Pt(plot.Min.X+(plot.Dx()-legend.X)/2, H-legend.Y-4*scale))
	} else {
		var hidden int
		box, hidden = placeLegend(img, plot, legend, 8*scale)
		if hidden > 0 {
			return nil, errLegendHides
		}
	}
	fill(img, box, colBG)
	rect(img, box, colAxis)
	for i := range curves {
		y := box.Min.Y + pad + i*lh + ch/2
		thickLine(img, box.Min.X+pad, y, box.Min.X+pad+sw, y, scale+1, Palette[i%len(Palette)])
		drawText(img, box.Min.X+2*pad+sw, y, labels[i], scale, colText, 0, 0.5)
	}
	return img, nil
}

// placeLegend picks, among the corners and edge centres of the plot area,
// the place where a legend of size sz hides the fewest curve pixels
// (preferring bottom right on ties).
func placeLegend(img *image.RGBA, plot image.Rectangle, sz image.Point, margin int) (image.Rectangle, int) {
	xs := []int{plot.Max.X - sz.X - margin, plot.Min.X + margin, plot.Min.X + (plot.Dx()-sz.X)/2}
	ys := []int{plot.Max.Y - sz.Y - margin, plot.Min.Y + margin, plot.Min.Y + (plot.Dy()-sz.Y)/2}
	best, bestN := image.Rectangle{}, math.MaxInt
	for _, y := range ys {
		for _, x := range xs {
			r := image.Rectangle{image.Pt(x, y), image.Pt(x+sz.X, y+sz.Y)}
			n := 0
			for yy := r.Min.Y; yy < r.Max.Y; yy++ {
				for xx := r.Min.X; xx < r.Max.X; xx++ {
					if slices.Contains(Palette, img.RGBAAt(xx, yy)) {
						n++
					}
				}
			}
			if n < bestN {
				best, bestN = r, n
			}
		}
	}
	return best, bestN
}

// tarAt is the attainable TAR at FAR ≤ f: that of the last point within it.
func tarAt(r *ROC, f float64) float64 {
	i, _ := slices.BinarySearchFunc(r.Points, f, func(p ROCPoint, t float64) int {
		if p.FAR <= t {
			return -1
		}
		return 1
	})
	if i == 0 {
		return 0
	}
	return r.Points[i-1].TAR
}

// farLabel writes a decade tick: 1e-4, 1e-3, 0.01, 0.1, 1.
func farLabel(d float64) string {
	switch e := int(math.Round(d)); {
	case e == 0:
		return "1"
	case e >= -2:
		return fmt.Sprintf("%g", math.Pow(10, float64(e)))
	default:
		return fmt.Sprintf("1e%d", e)
	}
}

func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	draw.Draw(img, r.Intersect(img.Bounds()), &image.Uniform{c}, image.Point{}, draw.Src)
}

func vline(img *image.RGBA, x, y0, y1 int, c color.RGBA) {
	fill(img, image.Rect(x, y0, x+1, y1), c)
}

func hline(img *image.RGBA, x0, x1, y int, c color.RGBA) {
	fill(img, image.Rect(x0, y, x1, y+1), c)
}

func rect(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	hline(img, r.Min.X, r.Max.X, r.Min.Y, c)
	hline(img, r.Min.X, r.Max.X, r.Max.Y-1, c)
	vline(img, r.Min.X, r.Min.Y, r.Max.Y, c)
	vline(img, r.Max.X-1, r.Min.Y, r.Max.Y, c)
}

// thickLine draws a segment with a square brush of width w (Bresenham),
// clipped to img's bounds.
func thickLine(img *image.RGBA, x0, y0, x1, y1, w int, c color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := 1, 1
	if x0 > x1 {
		sx = -1
	}
	if y0 > y1 {
		sy = -1
	}
	e := dx + dy
	h := w / 2
	for {
		fill(img, image.Rect(x0-h, y0-h, x0-h+w, y0-h+w), c)
		if x0 == x1 && y0 == y1 {
			return
		}
		if e2 := 2 * e; e2 >= dy {
			e += dy
			x0 += sx
		} else {
			e += dx
			y0 += sy
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

var face = basicfont.Face7x13

func textWidth(s string, scale int) int {
	return font.MeasureString(face, s).Ceil() * scale
}

// textMask renders s in the 7×13 bitmap font into an alpha mask.
func textMask(s string) *image.Alpha {
	w := font.MeasureString(face, s).Ceil()
	m := image.NewAlpha(image.Rect(0, 0, max(w, 1), 13))
	d := font.Drawer{Dst: m, Src: image.Opaque, Face: face, Dot: fixed.P(0, 11)}
	d.DrawString(s)
	return m
}

// drawText draws s scaled by an integer factor, anchored at (x, y): ax and
// ay in {0, 0.5, 1} place the anchor at the left/centre/right and
// top/middle/bottom of the text.
func drawText(img *image.RGBA, x, y int, s string, scale int, c color.RGBA, ax, ay float64) {
	m := textMask(s)
	w, h := m.Rect.Dx()*scale, m.Rect.Dy()*scale
	x0 := x - int(ax*float64(w))
	y0 := y - int(ay*float64(h))
	for j := range m.Rect.Dy() {
		for i := range m.Rect.Dx() {
			if m.AlphaAt(i, j).A > 127 {
				fill(img, image.Rect(x0+i*scale, y0+j*scale, x0+(i+1)*scale, y0+(j+1)*scale), c)
			}
		}
	}
}

// drawTextUp draws s rotated a quarter turn anticlockwise (reading bottom to
// top), its top-left corner's x at x and centred vertically on y.
func drawTextUp(img *image.RGBA, x, y int, s string, scale int, c color.RGBA) {
	m := textMask(s)
	w := m.Rect.Dx() * scale
	y0 := y + w/2
	for j := range m.Rect.Dy() {
		for i := range m.Rect.Dx() {
			if m.AlphaAt(i, j).A > 127 {
				// (i, j) → (j, −i)
				fill(img, image.Rect(x+j*scale, y0-(i+1)*scale, x+(j+1)*scale, y0-i*scale), c)
			}
		}
	}
}
