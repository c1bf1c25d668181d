package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/facever/facever/align"
	"github.com/facever/facever/facehead"
	"github.com/facever/facever/infer"
	"github.com/facever/facever/internal/onnxproto"
	"github.com/facever/facever/internal/onnxrt"
	"github.com/facever/facever/internal/pipeline"
	"github.com/facever/facever/internal/session"
	"github.com/facever/facever/models"
)

// norms are the pixel normalisations `model add --norm` knows: a pixel p
// (0..255) goes in as (p−Mean)·Scale.
var norms = []struct {
	name        string
	mean, scale float32
	what        string
}{
	{"arcface", 127.5, 1 / 127.5, "(p−127.5)/127.5, insightface's ArcFace exports"},
	{"mobilefacenet", 127, 1.0 / 128, "(p−127)/128, fr_feature"},
	{"raw", 0, 1, "0..255 as is, dlib (the graph normalises itself)"},
	{"unit", 0, 1.0 / 255, "p/255, 0..1"},
}

// checkMargin is how much more similar the two photos of one person must be
// than the most similar pair of different people for a registration to pass.
const checkMargin = 0.1

func userModelCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:      "add",
			Usage:     "register your own ArcFace-style or dlib-style backbone under a name, after checking it on real faces",
			ArgsUsage: "FILE.onnx --name NAME",
			Description: `Copies FILE.onnx into the models directory (a hard link when it can) as NAME.onnx,
records it with its sha256 in the user catalogue MODELS/user.json (MODELS: --models,
else $FACEVER_MODELS, else the checkout's models/), after which --model NAME works in
every command and in serve.

Inferred from the file: the input (N×3×H×W; H=W=112 means the ArcFace 112×112 chip,
150 dlib's 150×150 chip) and facever's own converter metadata (import-dlib's models
take raw 0..255 pixels). Checked by running it once: the photos of --check (the first
two of one person, the others of other people; default four johns photos of the
checkout) are detected, aligned by the chip recipe and embedded with the
normalisation; the two photos of one person must be more similar than every pair of
different people by 0.1, else the registration is refused and says which
normalisation passes. Without --norm every normalisation is tried; the recipe's usual
one (arcface for arcface112, raw for dlib150) is kept when it passes, else the best.

--norm: arcface (p−127.5)/127.5, mobilefacenet (p−127)/128, raw (0..255), unit (p/255),
or MEAN,SCALE for (p−MEAN)·SCALE. Input is RGB.

The default threshold is the midpoint of the check photos' similarities until
facever calibrate --model NAME --pairs FILE sets it from your labelled pairs.

Examples:
   facever model add arcface_r50.onnx --name r50 --norm arcface
   facever model add models/dlib_resnet_v1.onnx --name mydlib
   facever verify --model mydlib a.jpg b.jpg`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "name", Usage: "the name to register it under (required)"},
				&cli.StringFlag{Name: "chip", Usage: "alignment recipe: arcface112 or dlib150 (default: from the input size)"},
				&cli.StringFlag{Name: "norm", Usage: "pixel normalisation: arcface, mobilefacenet, raw, unit or MEAN,SCALE (default: from the metadata, else the best on the check photos)"},
				&cli.StringFlag{Name: "output", Usage: "the output tensor holding the embedding (default: the graph's first output)"},
				&cli.StringSliceFlag{Name: "check", Usage: "photos to check it on: two of one person, then one or more of other people (default: four johns photos)"},
				&cli.BoolFlag{Name: "json", Usage: "print the registered entry as JSON"},
			},
			Action: modelAdd,
		},
		{
			Name:  "list",
			Usage: "list the built-in and the user models",
			Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print one JSON document"}},
			Action: func(c *cli.Context) error {
				user, err := models.UserModels(c.String("models"))
				if err != nil {
					return fail(err)
				}
				type entry struct {
					models.Model
					Kind    string `json:"kind"`
					Present bool   `json:"present"`
				}
				dir := models.Dir(c.String("models"))
				var all []entry
				for _, m := range models.All {
					all = append(all, entry{Model: m, Kind: "built-in"})
				}
				for _, m := range user {
					all = append(all, entry{Model: m, Kind: "user"})
				}
				for i := range all {
					_, err := os.Stat(filepath.Join(dir, all[i].File))
					all[i].Present = err == nil
				}
				if c.Bool("json") {
					docs := make([]map[string]any, len(all))
					for i, e := range all {
						docs[i] = modelDoc(e.Model)
						docs[i]["kind"], docs[i]["present"] = e.Kind, e.Present
					}
					return writeJSONOrFail(c, map[string]any{"models_dir": dir, "user_catalogue": models.UserPath(dir), "models": docs})
				}
				tw := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tKIND\tCHIP\tINPUT\tOUTPUT\tTHRESHOLD\tSHA256\tFILE")
				for _, e := range all {
					thr, out := "-", "-"
					if e.Chip != "" {
						thr = strconv.FormatFloat(e.Threshold, 'g', 4, 64)
						if e.Kind == "user" && !e.Calibrated {
							thr += " (uncalibrated)"
						}
					}
					if len(e.OutputShapes) > 0 {
						out = shapeString(e.OutputShapes[0])
					}
					file := e.File
					if !e.Present {
						file += " (missing)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, e.Kind, orDash(e.Chip), shapeString(e.Shape), out, thr, e.SHA256[:12], file)
				}
				tw.Flush()
				fmt.Fprintf(c.App.Writer, "models directory %s; user catalogue %s\n", dir, models.UserPath(dir))
				return nil
			},
		},
		{
			Name:      "remove",
			Usage:     "remove a user model from the user catalogue (and its copy in the models directory)",
			ArgsUsage: "NAME",
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return cli.Exit("model remove needs one name: facever model remove NAME", exitError)
				}
				name := c.Args().First()
				if models.Builtin(name) {
					return cli.Exit(fmt.Sprintf("%s is a built-in model; only user models (facever model add) can be removed", name), exitError)
				}
				dir := models.Dir(c.String("models"))
				var removed models.Model
				err := models.UpdateUser(dir, func(ms []models.Model) ([]models.Model, error) {
					for i, m := range ms {
						if m.Name == name {
							removed = m
							return append(ms[:i], ms[i+1:]...), nil
						}
					}
					return nil, fmt.Errorf("%w %q in the user catalogue %s (see facever model list)", models.ErrUnknown, name, models.UserPath(dir))
				})
				if err != nil {
					return fail(err)
				}
				if err := os.Remove(filepath.Join(dir, removed.File)); err != nil && !errors.Is(err, os.ErrNotExist) {
					return fail(err)
				}
				fmt.Fprintf(c.App.Writer, "removed %s (%s)\n", name, removed.File)
				return nil
			},
		},
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// modelAdd is `facever model add`.
func modelAdd(c *cli.Context) error {
	if c.NArg() != 1 {
		return cli.Exit("model add needs one model file: facever model add FILE.onnx --name NAME", exitError)
	}
	src, name := c.Args().First(), c.String("name")
	if name == "" {
		return cli.Exit("model add needs --name NAME (the name --model will take)", exitError)
	}
	if err := models.CheckUserName(name); err != nil {
		return fail(err)
	}
	dir := models.Dir(c.String("models"))
	if ms, err := models.UserModels(dir); err != nil {
		return fail(err)
	} else {
		for _, m := range ms {
			if m.Name == name {
				return cli.Exit(fmt.Sprintf("a user model %q is already registered (%s); remove it first: facever model remove %s", name, m.Path, name), exitError)
			}
		}
	}
	m, err := describeUserModel(src, name, c.String("chip"), c.String("output"))
	if err != nil {
		return fail(err)
	}
	norm := c.String("norm")
	if norm == "" && m.Metadata[dlibConverterKey] != "" && strings.Contains(m.Metadata["input_format"], "0..255") {
		norm = "raw" // facever's dlib converter: pixels 0..255, normalised in the graph
	}
	var pinned []normChoice
	if norm != "" {
		n, err := parseNorm(norm)
		if err != nil {
			return fail(err)
		}
		pinned = []normChoice{n}
	}
	photos := c.StringSlice("check")
	if len(photos) == 0 {
		if photos, err = defaultCheckPhotos(dir); err != nil {
			return fail(err)
		}
	}
	if len(photos) < 3 {
		return cli.Exit("--check needs at least three photos: two of one person, then one or more of other people", exitError)
	}

	// the copy in the models directory, so that the session opens it as
	// it will be opened later (by path and sha256)
	dst := filepath.Join(dir, m.File)
	created, err := placeModel(src, dst, m.SHA256)
	if err != nil {
		return fail(err)
	}
	ok := false
	defer func() {
		if !ok && created {
			os.Remove(dst)
		}
	}()
	res, err := checkBackbone(c, dir, &m, photos, pinned)
	if err != nil {
		return fail(err)
	}
	m.Mean, m.Scale = res.norm.mean, res.norm.scale
	m.Threshold = math.Round((res.same+res.maxDiff)/2*1e4) / 1e4
	m.What = fmt.Sprintf("user backbone from %s: %s %d×%d RGB chip, normalisation %s → %d-d", m.Path, m.Chip, m.Shape[3], m.Shape[2], res.norm.name, m.OutputShapes[0][1])
	err = models.UpdateUser(dir, func(ms []models.Model) ([]models.Model, error) {
		for _, o := range ms {
			if o.Name == name {
				return nil, fmt.Errorf("a user model %q was registered meanwhile; remove it first", name)
			}
		}
		return append(ms, m), nil
	})
	if err != nil {
		return fail(err)
	}
	ok = true
	if c.Bool("json") {
		return writeJSONOrFail(c, map[string]any{"entry": modelDoc(m), "check": res.report(), "user_catalogue": models.UserPath(dir)})
	}
	w := c.App.Writer
	fmt.Fprintf(w, "registered %s: %s, chip %s, input %s %s, output %s %s, normalisation %s\n", name, dst, m.Chip, m.Input, shapeString(m.Shape), m.Outputs[0], shapeString(m.OutputShapes[0]), res.norm.name)
	fmt.Fprintf(w, "  check on %d photos: same person %.4f, different people at most %.4f (margin %.4f)\n", len(photos), res.same, res.maxDiff, res.same-res.maxDiff)
	for _, t := range res.tried {
		fmt.Fprintf(w, "  tried %-14s same %.4f, different ≤ %.4f\n", t.norm.name, t.same, t.maxDiff)
	}
	fmt.Fprintf(w, "  threshold %.4f (from the check photos only: set it from labelled pairs with facever calibrate --model %s --pairs FILE)\n", m.Threshold, name)
	fmt.Fprintf(w, "  user catalogue %s; use it: facever verify --model %s A B\n", models.UserPath(dir), name)
	return nil
}

const dlibConverterKey = "converter"

// describeUserModel reads what the file tells: input, output, metadata.
func describeUserModel(src, name, chip, output string) (models.Model, error) {
	data, err := os.ReadFile(src)
	if err != nil {
		return models.Model{}, fmt.Errorf("model file: %w", err)
	}
	desc, err := onnxproto.Scan(data)
	if err != nil {
		return models.Model{}, fmt.Errorf("%s is not an ONNX model: %w", src, err)
	}
	if desc.Graph.Name == "" && len(desc.Graph.Nodes) == 0 {
		return models.Model{}, fmt.Errorf("%s is not an ONNX model: it has no graph", src)
	}
	rt, err := onnxrt.Load(data)
	if rt == nil {
		return models.Model{}, fmt.Errorf("%s: %w", src, err)
	}
	if err != nil {
		return models.Model{}, fmt.Errorf("%s: facever's engine cannot run it: %w (see facever model check %s)", src, err, src)
	}
	ins := rt.Inputs()
	if len(ins) != 1 {
		return models.Model{}, fmt.Errorf("%s has %d inputs; a backbone has one, N×3×H×W", src, len(ins))
	}
	in := ins[0]
	if len(in.Shape) != 4 || (in.Shape[1] != 3 && in.Shape[1] >= 0) {
		return models.Model{}, fmt.Errorf("%s: input %s has shape %s; a backbone's input is N×3×H×W (rank 4, RGB)", src, in.Name, shapeString(in.Shape))
	}
	h, w := in.Shape[2], in.Shape[3]
	sizes := map[string]int{"arcface112": 112, "dlib150": 150}
	if chip != "" {
		size, ok := sizes[chip]
		if !ok {
			return models.Model{}, fmt.Errorf("--chip %q: choose arcface112 (the ArcFace template, 112×112) or dlib150 (dlib's chip, 150×150)", chip)
		}
		if h < 0 {
			h = size
		}
		if w < 0 {
			w = size
		}
		if h != size || w != size {
			return models.Model{}, fmt.Errorf("%s: input %s is %d×%d but --chip %s makes %d×%d chips", src, in.Name, w, h, chip, size, size)
		}
	} else {
		switch {
		case h == 112 && w == 112:
			chip = "arcface112"
		case h == 150 && w == 150:
			chip = "dlib150"
		case h < 0 || w < 0:
			return models.Model{}, fmt.Errorf("%s: input %s has shape %s with a dynamic size; say which chip it takes with --chip arcface112 or --chip dlib150", src, in.Name, shapeString(in.Shape))
		default:
			return models.Model{}, fmt.Errorf("%s: input %s is %d×%d; facever aligns faces to 112×112 (arcface112) or 150×150 (dlib150) chips only", src, in.Name, w, h)
		}
	}
	outs := rt.Outputs()
	out := outs[0]
	if output != "" {
		found := false
		for _, o := range outs {
			if o.Name == output {
				out, found = o, true
			}
		}
		if !found {
			var names []string
			for _, o := range outs {
				names = append(names, o.Name)
			}
			return models.Model{}, fmt.Errorf("%s has no output %q (its outputs: %s)", src, output, strings.Join(names, ", "))
		}
	}
	sum, err := models.FileSHA256(src)
	if err != nil {
		return models.Model{}, err
	}
	abs, err := filepath.Abs(src)
	if err != nil {
		abs = src
	}
	meta := map[string]string{}
	for _, kv := range desc.Metadata {
		meta[kv.Key] = kv.Value
	}
	license := meta["license"]
	if license == "" {
		license = "not stated in the file"
	}
	m := models.Model{
		Name: name, File: name + ".onnx", Package: models.UserPackage, Path: abs, License: license,
		SHA256: sum, Input: in.Name, Shape: []int{1, 3, h, w}, Color: "RGB",
		Outputs: []string{out.Name}, Chip: chip, Metadata: meta,
	}
	if len(meta) == 0 {
		m.Metadata = nil
	}
	return m, nil
}

// placeModel puts the file at dst in the models directory (a hard link, else
// a copy) and reports whether it created it. A file already there must have
// the same sha256.
func placeModel(src, dst, sum string) (bool, error) {
	if st, err := os.Stat(dst); err == nil && st.Mode().IsRegular() {
		have, err := models.FileSHA256(dst)
		if err != nil {
			return false, err
		}
		if have != sum {
			return false, fmt.Errorf("%s already exists with other content; choose another --name or move that file", dst)
		}
		return false, nil
	}
	// link the file itself, not a symbolic link to it (whose relative
	// target would not resolve from the models directory)
	if real, err := filepath.EvalSymlinks(src); err == nil {
		src = real
	}
	if err := os.Link(src, dst); err == nil {
		return true, nil
	}
	in, err := os.Open(src)
	if err != nil {
		return false, fmt.Errorf("model file: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return false, fmt.Errorf("copy into the models directory: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(dst)
		return false, fmt.Errorf("copy into the models directory: %w", err)
	}
	if err := out.Close(); err != nil {
		os.Remove(dst)
		return false, fmt.Errorf("copy into the models directory: %w", err)
	}
	return true, nil
}

type normChoice struct {
	name        string
	mean, scale float32
}

// parseNorm reads --norm: a known name or MEAN,SCALE.
func parseNorm(s string) (normChoice, error) {
	for _, n := range norms {
		if s == n.name {
			return normChoice{n.name, n.mean, n.scale}, nil
		}
	}
	if a, b, ok := strings.Cut(s, ","); ok {
		mean, err1 := strconv.ParseFloat(strings.TrimSpace(a), 32)
		scale, err2 := strconv.ParseFloat(strings.TrimSpace(b), 32)
		if err1 == nil && err2 == nil && scale != 0 && !math.IsInf(scale, 0) && !math.IsNaN(mean) && !math.IsNaN(scale) {
			return normChoice{s, float32(mean), float32(scale)}, nil
		}
	}
	var names []string
	for _, n := range norms {
		names = append(names, n.name+" "+n.what)
	}
	return normChoice{}, fmt.Errorf("--norm %q: choose %s, or MEAN,SCALE for (p−MEAN)·SCALE", s, strings.Join(names, "; "))
}

// defaultCheckPhotos are two photos of John Salley and two of John Savage
// from the checkout's testdata/johns (next to the models directory).
func defaultCheckPhotos(dir string) ([]string, error) {
	root := filepath.Join(dir, "..", "testdata", "johns")
	var photos []string
	for _, p := range []string{"John_Salley", "John_Savage"} {
		files, _ := filepath.Glob(filepath.Join(root, p, "*.jpg"))
		sort.Strings(files)
		if len(files) < 2 {
			return nil, fmt.Errorf("no check photos: %s has no testdata/johns/%s; give --check A.jpg,B.jpg,C.jpg (two photos of one person, then others)", filepath.Dir(root), p)
		}
		photos = append(photos, files[:2]...)
	}
	return photos, nil
}

type checkTry struct {
	norm          normChoice
	same, maxDiff float64
}

type checkResult struct {
	checkTry
	tried []checkTry
}

func (r checkResult) report() map[string]any {
	var tried []map[string]any
	for _, t := range r.tried {
		tried = append(tried, map[string]any{"norm": t.norm.name, "same": t.same, "max_different": t.maxDiff})
	}
	return map[string]any{"norm": r.norm.name, "same": r.same, "max_different": r.maxDiff, "margin": checkMargin, "tried": tried}
}

// checkBackbone runs m once on the check photos with each normalisation of
// pinned (all known ones when empty) and returns the one that separates the
// same person from different people best, or an error that says what to try.
func checkBackbone(c *cli.Context, dir string, m *models.Model, photos []string, pinned []normChoice) (checkResult, error) {
	p, err := pipeline.Open(pipeline.Config{ModelsDir: dir, Runtime: c.String("runtime")}, false)
	if err != nil {
		return checkResult{}, err
	}
	defer p.Close()
	p.Backbone = *m // the chip recipe of the new model
	chips := make([]align.Chip, len(photos))
	for i, path := range photos {
		ph, err := p.Face(path, false)
		if err != nil {
			return checkResult{}, fmt.Errorf("check photo: %w", err)
		}
		chips[i] = ph.Chip
	}
	sess, err := session.Open(c.String("runtime"), dir, *m)
	if err != nil {
		return checkResult{}, err
	}
	defer sess.Close()

	if err := vectorOutput(sess, m); err != nil {
		return checkResult{}, err
	}
	cands := pinned
	if len(cands) == 0 {
		for _, n := range norms {
			cands = append(cands, normChoice{n.name, n.mean, n.scale})
		}
	}
	var res checkResult
	best := -1
	for _, n := range cands {
		mm := *m
		mm.Mean, mm.Scale = n.mean, n.scale
		feats, err := facehead.NewEmbedder(sess, mm, nil).Features(chips)
		if err != nil {
			return checkResult{}, fmt.Errorf("running %s on the check photos: %w", m.Path, err)
		}
		t := checkTry{norm: n, same: cosine(feats[0], feats[1]), maxDiff: -1}
		for i := 2; i < len(feats); i++ {
			t.maxDiff = math.Max(t.maxDiff, math.Max(cosine(feats[0], feats[i]), cosine(feats[1], feats[i])))
		}
		res.tried = append(res.tried, t)
		if best < 0 || t.same-t.maxDiff > res.tried[best].same-res.tried[best].maxDiff {
			best = len(res.tried) - 1
		}
	}
	// unpinned: the recipe's usual normalisation when it passes, else the best
	if len(pinned) == 0 {
		usual := map[string]string{"arcface112": "arcface", "dlib150": "raw"}[m.Chip]
		for i, t := range res.tried {
			if t.norm.name == usual && t.same-t.maxDiff >= checkMargin {
				best = i
			}
		}
	}
	res.checkTry = res.tried[best]
	if res.same-res.maxDiff >= checkMargin {
		return res, nil
	}
	// refused: say what passes, when something does
	msg := fmt.Sprintf("%s does not tell the faces apart with chip %s and normalisation %s: the two photos of one person have similarity %.4f, different people up to %.4f (needs a margin of %.2f)",
		m.Path, m.Chip, res.norm.name, res.same, res.maxDiff, checkMargin)
	if len(pinned) > 0 {
		var pass []string
		for _, n := range norms {
			if n.name == pinned[0].name {
				continue
			}
			mm := *m
			mm.Mean, mm.Scale = n.mean, n.scale
			feats, err := facehead.NewEmbedder(sess, mm, nil).Features(chips)
			if err != nil {
				continue
			}
			same, diff := cosine(feats[0], feats[1]), -1.0
			for i := 2; i < len(feats); i++ {
				diff = math.Max(diff, math.Max(cosine(feats[0], feats[i]), cosine(feats[1], feats[i])))
			}
			if same-diff >= checkMargin {
				pass = append(pass, fmt.Sprintf("--norm %s (margin %.4f)", n.name, same-diff))
			}
		}
		if len(pass) > 0 {
			return res, errors.New(msg + "; try " + strings.Join(pass, " or "))
		}
	}
	other := "dlib150"
	if m.Chip == "dlib150" {
		other = "arcface112"
	}
	return res, fmt.Errorf("%s; no normalisation (arcface, mobilefacenet, raw, unit) passes: check that the model is a face embedder taking RGB faces aligned as %s (a model for %s chips needs the input size of that recipe), or give --norm MEAN,SCALE and the right --output", msg, m.Chip, other)
}

// vectorOutput runs m once on a zero face and checks that its output is
// one vector a face (N×D, or N×D×1×1); it records D in m.OutputShapes.
func vectorOutput(sess infer.Session, m *models.Model) error {
	outs, err := sess.Run(map[string]infer.Tensor{m.Input: infer.NewTensor(m.Shape...)}, m.Outputs[:1])
	if err != nil {
		return fmt.Errorf("running %s once: %w", m.Path, err)
	}
	y := outs[0]
	dim, big := 1, 0
	for _, d := range y.Shape[min(1, len(y.Shape)):] {
		dim *= d
		if d != 1 {
			big++
		}
	}
	if len(y.Shape) < 2 || y.Shape[0] != 1 || big != 1 || dim < 2 {
		return fmt.Errorf("output %s has shape %s for one face; an embedding output is a vector (1×D)", m.Outputs[0], shapeString(y.Shape))
	}
	m.OutputShapes = [][]int{{1, dim}}
	return nil
}

func cosine(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s // both unit length
}

// modelDoc is a model entry for --json, in the JSON vocabulary
// (schema/defs.json's model: snake_case names, the threshold as
// elsewhere); the catalogue file keeps models.Model's own encoding.
func modelDoc(m models.Model) map[string]any {
	d := map[string]any{"name": m.Name, "file": m.File, "package": m.Package, "version": m.Version, "path": m.Path,
		"license": m.License, "sha256": m.SHA256, "input": m.Input, "shape": m.Shape, "color": m.Color,
		"mean": m.Mean, "scale": m.Scale, "outputs": m.Outputs, "output_shapes": m.OutputShapes, "what": m.What,
		"chip": m.Chip, "threshold": m.Threshold, "identify_threshold": m.Identification(), "calibrated": m.Calibrated}
	if m.MadeBy != "" {
		d["made_by"] = m.MadeBy
	}
	if len(m.Metadata) > 0 {
		d["metadata"] = m.Metadata
	}
	return d
}
