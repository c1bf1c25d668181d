package main

import (
	"errors"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	fv "github.com/facever/facever"
	"github.com/facever/facever/align"
	"github.com/facever/facever/internal/session"
	"github.com/facever/facever/verify"
)

func defaultRuntime() string { return session.Default }

func runtimeChoices() string { return strings.Join(session.Runtimes, " or ") }

var jsonFlag = &cli.BoolFlag{Name: "json", Usage: "print one JSON document on stdout instead of text"}

var alignedFlag = &cli.BoolFlag{Name: "aligned", Usage: "the photos are already aligned 112×112 faces: no detection, no warp"}

var scoreFlag = &cli.Float64Flag{Name: "min-score", Value: float64(align.DefaultOptions.Score), Usage: "detector score below which a box is not a face"}

// openRecognizer loads the models named by the global flags and the
// command's --head, --aligned and --min-score.
func openRecognizer(c *cli.Context) (*fv.Recognizer, error) {
	cfg := pipelineConfig(c)
	return fv.Open(fv.Options{
		ModelsDir: cfg.ModelsDir, Runtime: cfg.Runtime, Model: cfg.Model, Detect: cfg.Detect,
		Head: c.String("head"), Aligned: c.Bool("aligned"),
		Workers: 1, // the commands handle one photo at a time
	})
}

// photoError is a photo's entry in a batch's results when the photo could not
// be used: {"path": ..., "error": {"code": ..., "message": ...}} in --json, the
// line "PATH: error CODE: MESSAGE" on stdout, in order with the good results,
// in text mode. The codes are fv.PhotoErrorCode's.
type photoError struct {
	Path  string    `json:"path"`
	Error errorBody `json:"error"`
}

// errorBody is the error object of a photo entry (the server's too).
type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// batch collects the per-photo failures of a command over several photos.
type batch struct {
	c      *cli.Context
	failed int
}

// photoFailed returns the entry for a photo that failed with err, counts it
// and prints its line in text mode; ok is false when err is not the photo's
// fault (a model failure...), which must stop the command.
func (b *batch) photoFailed(path string, err error, loading bool) (e photoError, ok bool) {
	e, ok = newPhotoError(path, err, loading)
	if ok {
		b.add(e)
	}
	return e, ok
}

// add counts a failed photo and prints its line in text mode.
func (b *batch) add(e photoError) {
	b.failed++
	if !b.c.Bool("json") {
		fmt.Fprintln(b.c.App.Writer, e.String())
	}
}

// String is the text-mode line: "PATH: error CODE: MESSAGE".
func (e photoError) String() string {
	return fmt.Sprintf("%s: error %s: %s", e.Path, e.Error.Code, e.Error.Message)
}

// newPhotoError is the entry of a photo that failed with err; ok is false
// when err is not the photo's fault. With loading (err came from reading
// the file), an error of unknown kind is the photo's (unreadable).
func newPhotoError(path string, err error, loading bool) (e photoError, ok bool) {
	code := fv.PhotoErrorCode(err)
	if st, serr := os.Stat(path); code == "" && serr == nil && st.IsDir() {
		code = fv.CodeUnreadable
	}
	if code == "" {
		if !loading {
			return photoError{}, false
		}
		code = fv.CodeUnreadable
	}
	msg := strings.TrimPrefix(err.Error(), path+": ")
	if code == fv.CodeNoFace {
		msg += ": try a photo where the face is larger, frontal and lit, or lower --min-score"
	}
	return photoError{Path: path, Error: errorBody{Code: code, Message: msg}}, true
}

// end returns the command's outcome: exit 2 when a photo failed, else ok.
func (b *batch) end(ok error) error {
	if b.failed > 0 {
		return cli.Exit(fmt.Sprintf("%d of %d photo(s) could not be used (see their error entries)", b.failed, b.c.NArg()), exitError)
	}
	return ok
}

// faceError turns a pipeline error into an exit-2 error with advice.
func faceError(err error) error {
	switch {
	case errors.Is(err, align.ErrNoFace):
		return fail(fmt.Errorf("%v: try a photo where the face is larger, frontal and lit, or lower --min-score", err))
	case errors.Is(err, os.ErrNotExist):
		return fail(err)
	}
	return fail(err)
}

func boxJSON(f align.Face) map[string]any {
	lm := make([][2]float64, 5)
	for i, p := range f.Landmarks {
		lm[i] = [2]float64{round2(p.X), round2(p.Y)}
	}
	return map[string]any{
		"box":       [4]float64{round2(f.Box[0]), round2(f.Box[1]), round2(f.Box[2]), round2(f.Box[3])},
		"score":     round4(float64(f.Score)),
		"landmarks": lm,
		"rotation":  f.Rotation,
		"roll":      round2(f.Roll),
		"quality":   f.Quality.Rounded(),
	}
}

func round2(x float64) float64 { return float64(int64(x*100+0.5*sign(x))) / 100 }
func round4(x float64) float64 { return float64(int64(x*1e4+0.5*sign(x))) / 1e4 }
func sign(x float64) float64 {
	if x < 0 {
		return -1
	}
	return 1
}

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "say whether two photos show the same person",
		ArgsUsage: "PHOTO_A PHOTO_B",
		Description: `Finds the face in each photo (the largest one when there are several, and
says so), embeds both and compares them by cosine similarity.

Exit status: 0 same person, 1 different person, 2 error (unreadable file, no face,
missing model...).

Examples:
   facever verify a.jpg b.jpg
   facever verify --threshold 0.5 --json a.jpg b.jpg
   facever verify --aligned face1.png face2.png`,
		Flags: []cli.Flag{
			&cli.Float64Flag{Name: "threshold", Value: verify.DefaultThreshold, Usage: "cosine similarity at or above which the faces are the same person (default: the model's; 0.38 for fr_feature)"},
			&cli.BoolFlag{Name: "any-face", Usage: "compare every face of one photo with every face of the other and decide on the best-matching pair (group photos); --json says which faces"},
			jsonFlag, alignedFlag, scoreFlag, headFlag,
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return cli.Exit("verify needs exactly two photos: facever verify PHOTO_A PHOTO_B", exitError)
			}
			r, err := openRecognizer(c)
			if err != nil {
				return fail(err)
			}
			defer r.Close()
			var photos [2]*fv.Photo
			which := fv.Largest
			if c.Bool("any-face") {
				which = fv.Every
			}
			for i := 0; i < 2; i++ {
				if photos[i], err = r.EmbedFile(c.Args().Get(i), which); err != nil {
					return faceError(err)
				}
			}
			pick := bestPair(photos[0], photos[1]) // [0, 0] without --any-face
			d := verify.Decide(photos[0].Faces[pick[0]].Embedding, photos[1].Faces[pick[1]].Embedding, verifyThreshold(c, r))
			w := c.App.Writer
			if c.Bool("json") {
				type photoJSON struct {
					Path  string         `json:"path"`
					Scale float64        `json:"scale"`
					Faces int            `json:"face_count"`
					Face  map[string]any `json:"face,omitempty"`
					Index *int           `json:"face_index,omitempty"` // --any-face: which face, 0 = the largest
				}
				out := struct {
					verify.Decision
					Photos  [2]photoJSON `json:"photos"`
					Model   string       `json:"model"`
					Head    string       `json:"head,omitempty"`
					Runtime string       `json:"runtime"`
				}{Decision: d, Model: r.Backbone().Name, Head: c.String("head"), Runtime: c.String("runtime")}
				for i, ph := range photos {
					out.Photos[i] = photoJSON{Path: ph.Path, Scale: ph.Scale, Faces: ph.Detected}
					if ph.Detected > 0 {
						out.Photos[i].Face = boxJSON(ph.Faces[pick[i]].Face)
					}
					if c.Bool("any-face") {
						out.Photos[i].Index = &pick[i]
					}
				}
				if err := writeJSON(w, out); err != nil {
					return fail(err)
				}
			} else {
				for i, ph := range photos {
					switch {
					case c.Bool("any-face") && ph.Detected > 1:
						f := ph.Faces[pick[i]]
						fmt.Fprintf(w, "%s: %d faces, best match: face %d at %.0f,%.0f,%.0f,%.0f\n", ph.Path, ph.Detected, pick[i]+1, f.Box[0], f.Box[1], f.Box[2], f.Box[3])
					case ph.Detected > 1:
						fmt.Fprintf(w, "%s: %d faces, using the largest\n", ph.Path, ph.Detected)
					}
				}
				verdict := "different person"
				if d.Same {
					verdict = "same person"
				}
				fmt.Fprintf(w, "%s (similarity %.3f, threshold %.3f)\n", verdict, d.Similarity, d.Threshold)
			}
			if !d.Same {
				return cli.Exit("", exitNegative)
			}
			return nil
		},
	}
}

func detectCommand() *cli.Command {
	return &cli.Command{
		Name:      "detect",
		Usage:     "find the faces in photos: box, score and five landmarks of each",
		ArgsUsage: "PHOTO...",
		Description: `Prints each face's box (x1 y1 x2 y2 in pixels), detector score and five
landmarks (left eye, right eye, nose, left and right mouth corner), largest face first.
A photo with no face is reported (faces: []), not an error. A photo that cannot be
read is an error entry, "PHOTO: error CODE: MESSAGE" on stdout in text mode and
{"path": ..., "error": {"code": ..., "message": ...}} in --json, in order with the
other photos, which are still processed; the exit status is then 2.

Example:
   facever detect --json group.jpg`,
		Flags: []cli.Flag{jsonFlag, scoreFlag},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return cli.Exit("detect needs at least one photo", exitError)
			}
			r, err := openRecognizer(c)
			if err != nil {
				return fail(err)
			}
			defer r.Close()
			type result struct {
				Path   string           `json:"path"`
				Width  int              `json:"width"`
				Height int              `json:"height"`
				Scale  float64          `json:"scale"` // 1, or 1/2, 1/4, 1/8: a large JPEG read reduced
				Faces  []map[string]any `json:"faces"`
			}
			var results []any
			b := &batch{c: c}
			for _, path := range c.Args().Slice() {
				im, err := align.Load(path)
				if err != nil {
					e, _ := b.photoFailed(path, err, true)
					results = append(results, e)
					continue
				}
				faces, err := r.Detect(im)
				r := result{Path: path, Scale: im.Scale, Faces: []map[string]any{}}
				r.Width, r.Height = im.SourceSize()
				im.Close()
				if err != nil {
					e, ok := b.photoFailed(path, err, false)
					if !ok {
						return fail(fmt.Errorf("%s: %w", path, err))
					}
					results = append(results, e)
					continue
				}
				for _, f := range faces {
					r.Faces = append(r.Faces, boxJSON(f))
				}
				results = append(results, r)
				if !c.Bool("json") {
					fmt.Fprintf(c.App.Writer, "%s: %d face(s)\n", path, len(faces))
					for i, f := range faces {
						fmt.Fprintf(c.App.Writer, "  face %d: box %.0f,%.0f,%.0f,%.0f score %.3f eyes (%.1f,%.1f) (%.1f,%.1f) nose (%.1f,%.1f) mouth (%.1f,%.1f) (%.1f,%.1f)\n",
							i+1, f.Box[0], f.Box[1], f.Box[2], f.Box[3], f.Score,
							f.Landmarks[0].X, f.Landmarks[0].Y, f.Landmarks[1].X, f.Landmarks[1].Y, f.Landmarks[2].X, f.Landmarks[2].Y,
							f.Landmarks[3].X, f.Landmarks[3].Y, f.Landmarks[4].X, f.Landmarks[4].Y)
					}
				}
			}
			if c.Bool("json") {
				if err := writeJSONOrFail(c, map[string]any{"photos": results}); err != nil {
					return err
				}
			}
			return b.end(nil)
		},
	}
}

func writeJSONOrFail(c *cli.Context, v any) error {
	if err := writeJSON(c.App.Writer, v); err != nil {
		return fail(err)
	}
	return nil
}

func alignCommand() *cli.Command {
	return &cli.Command{
		Name:      "align",
		Usage:     "write every face of each photo as an aligned 112×112 PNG",
		ArgsUsage: "PHOTO...",
		Description: `Each face found is warped onto the ArcFace five-point template and written as
OUT/<photo name>_<n>.png (n = 1 for the largest face). A photo that cannot be read
or holds no face is an error entry ("PHOTO: error CODE: MESSAGE" on stdout, or
{"path", "error": {"code", "message"}} in --json); the others are still processed,
and the exit status is 2.

Example:
   facever align --out faces/ team.jpg`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Value: ".", Usage: "directory to write the PNG files to (created if needed)"},
			jsonFlag, scoreFlag,
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return cli.Exit("align needs at least one photo", exitError)
			}
			out := c.String("out")
			if err := os.MkdirAll(out, 0o755); err != nil {
				return fail(err)
			}
			r, err := openRecognizer(c)
			if err != nil {
				return fail(err)
			}
			defer r.Close()
			type result struct {
				Path  string           `json:"path"`
				Faces []map[string]any `json:"faces"`
			}
			var written []string
			var results []any
			b := &batch{c: c}
			for _, path := range c.Args().Slice() {
				im, err := align.Load(path)
				if err != nil {
					e, _ := b.photoFailed(path, err, true)
					results = append(results, e)
					continue
				}
				faces, err := r.Detect(im)
				if err == nil && len(faces) == 0 {
					err = align.ErrNoFace
				}
				if err != nil {
					im.Close()
					e, ok := b.photoFailed(path, err, false)
					if !ok {
						return fail(fmt.Errorf("%s: %w", path, err))
					}
					results = append(results, e)
					continue
				}
				base := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
				res := result{Path: path}
				var chips []align.Chip
				for _, f := range faces {
					var chip align.Chip
					if chip, err = r.Align(im, f); err != nil {
						break
					}
					chips = append(chips, chip)
				}
				im.Close()
				if err != nil {
					e, ok := b.photoFailed(path, err, false)
					if !ok {
						return fail(fmt.Errorf("%s: %w", path, err))
					}
					results = append(results, e)
					continue
				}
				for i, chip := range chips {
					name := filepath.Join(out, fmt.Sprintf("%s_%d.png", base, i+1))
					if err := writePNG(name, chip); err != nil {
						return fail(err)
					}
					written = append(written, name)
					fj := boxJSON(faces[i])
					fj["file"] = name
					res.Faces = append(res.Faces, fj)
					if !c.Bool("json") {
						fmt.Fprintln(c.App.Writer, name)
					}
				}
				results = append(results, res)
			}
			if c.Bool("json") {
				if err := writeJSONOrFail(c, map[string]any{"photos": results, "written": written}); err != nil {
					return err
				}
			}
			return b.end(nil)
		},
	}
}

func writePNG(name string, chip align.Chip) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := png.Encode(f, chip.RGBA()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func embedCommand() *cli.Command {
	return &cli.Command{
		Name:      "embed",
		Usage:     "print the unit-length embedding of the face in each photo",
		ArgsUsage: "PHOTO...",
		Description: `The largest face of each photo is aligned and embedded; with --head, the
embedding is the trained head's projection of the backbone feature. A photo that
cannot be read or holds no face is an error entry ("PHOTO: error CODE: MESSAGE" on
stdout, or {"path", "error": {"code", "message"}} in --json); the others are still
processed, and the exit status is 2.

Example:
   facever embed --json a.jpg b.jpg > embeddings.json`,
		Flags: []cli.Flag{jsonFlag, alignedFlag, scoreFlag, headFlag},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return cli.Exit("embed needs at least one photo", exitError)
			}
			r, err := openRecognizer(c)
			if err != nil {
				return fail(err)
			}
			defer r.Close()
			type result struct {
				Path      string    `json:"path"`
				Scale     float64   `json:"scale"`
				Faces     int       `json:"face_count"`
				Embedding []float32 `json:"embedding"`
			}
			var results []any
			b := &batch{c: c}
			for _, path := range c.Args().Slice() {
				ph, err := r.EmbedFile(path, fv.Largest)
				if err != nil {
					e, ok := b.photoFailed(path, err, false)
					if !ok {
						return fail(err)
					}
					results = append(results, e)
					continue
				}
				e := [][]float32{ph.Faces[0].Embedding}
				results = append(results, result{Path: path, Scale: ph.Scale, Faces: ph.Detected, Embedding: e[0]})
				if !c.Bool("json") {
					var sb strings.Builder
					for i, v := range e[0] {
						if i > 0 {
							sb.WriteByte(' ')
						}
						fmt.Fprintf(&sb, "%.6f", v)
					}
					fmt.Fprintf(c.App.Writer, "%s: %s\n", path, sb.String())
				}
			}
			if c.Bool("json") {
				if err := writeJSONOrFail(c, embedDoc(r.Backbone().Name, c.String("head"), r.Dim(), results)); err != nil {
					return err
				}
			}
			return b.end(nil)
		},
	}
}
