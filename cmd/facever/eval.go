package main

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/urfave/cli/v2"

	fv "github.com/facever/facever"
	"github.com/facever/facever/align"
	"github.com/facever/facever/facehead"
	"github.com/facever/facever/internal/featcache"
	"github.com/facever/facever/internal/pipeline"
	"github.com/facever/facever/internal/progress"
	"github.com/facever/facever/models"
	"github.com/facever/facever/verify"
)

var cacheFlag = &cli.StringFlag{Name: "cache", Usage: "feature cache file, so a second run skips the detector and backbone (default: $FACEVER_CACHE, else the user cache directory; \"off\" disables it)"}

var pairsFlags = []cli.Flag{
	&cli.StringFlag{Name: "pairs", Usage: "pairs file: LFW's pairs.txt format, or CSV lines path_a,path_b,same"},
	&cli.StringFlag{Name: "root", Usage: "directory the pairs file's photo paths are relative to (default: beside the pairs file; LFW: its images/ folder)"},
	alignedFlag, headFlag, cacheFlag, jsonFlag,
}

// cachePath is the feature cache file named by --cache ("" when off).
func cachePath(c *cli.Context) string {
	switch p := c.String("cache"); p {
	case "off":
		return ""
	case "":
		return featcache.DefaultPath()
	default:
		return p
	}
}

// features computes (cached) backbone features of photos, projected by
// --head, with a progress bar on stderr.
func features(c *cli.Context, paths []string, label string) ([]pipeline.Result, error) {
	head, err := loadHead(c)
	if err != nil {
		return nil, err
	}
	bar := progress.New(c.App.ErrWriter, label, len(paths))
	res, err := pipeline.Features(pipelineConfig(c), paths, pipeline.BatchOptions{
		Aligned:   c.Bool("aligned"),
		CachePath: cachePath(c),
		Progress:  func(done, total int) { bar.Set(done, "photos") },
	})
	bar.Done()
	if err != nil {
		return nil, err
	}
	if head != nil {
		for i := range res {
			if res[i].Feature != nil {
				e := make([]float32, head.OutDim())
				head.Project(e, res[i].Feature)
				res[i].Feature = e
			}
		}
	}
	return res, nil
}

func pipelineConfig(c *cli.Context) pipeline.Config {
	opt := align.DefaultOptions
	if c.IsSet("min-score") {
		opt.Score = float32(c.Float64("min-score"))
	}
	return pipeline.Config{ModelsDir: c.String("models"), Runtime: c.String("runtime"), Model: c.String("model"), Detect: opt}
}

// pairScores embeds every photo of the set once and scores each pair; a
// pair whose photo has no usable face scores NaN, which the evaluation counts
// by its no-face policy (the CLI's is verify.NoFaceReject: decided "different
// person", a miss counts against accuracy rather than being dropped). The
// photos without a face are listed, and each photo's face quality given
// (NaN when unknown).
func pairScores(c *cli.Context, ps *verify.PairSet) ([]float64, map[string]float64, []string, error) {
	res, err := features(c, ps.Paths(), "embedding photos")
	if err != nil {
		return nil, nil, nil, err
	}
	feat := make(map[string][]float32, len(res))
	quality := make(map[string]float64, len(res))
	var failed []string
	for _, r := range res {
		quality[r.Path] = r.Quality
		if r.Err != nil {
			failed = append(failed, r.Err.Error())
		}
		if r.Feature != nil {
			feat[r.Path] = r.Feature
		}
	}
	return ps.Scores(func(p string) []float32 { return feat[p] }), quality, failed, nil
}

// readPairs reads --pairs, or builds every pair of --data.
func readPairs(c *cli.Context) (*verify.PairSet, error) {
	switch {
	case c.String("pairs") != "" && c.String("data") != "":
		return nil, errors.New("give --pairs or --data, not both")
	case c.String("pairs") != "":
		return verify.ReadPairsFile(c.String("pairs"), c.String("root"))
	case c.String("data") != "":
		set, err := walkData(c, c.String("data"))
		if err != nil {
			return nil, err
		}
		ps, err := verify.PairsFromPeople(set.People, c.Int("max-pairs"))
		if err != nil {
			return nil, fmt.Errorf("pairs from folders: %s: %w", c.String("data"), err)
		}
		return ps, nil
	}
	return nil, errors.New("say which pairs to use: --pairs FILE (LFW pairs.txt or CSV path_a,path_b,same) or --data DIR (one folder per person)")
}

func reportFailures(c *cli.Context, failed []string) {
	if len(failed) == 0 || c.Bool("json") {
		return
	}
	fmt.Fprintf(c.App.ErrWriter, "%d photo(s) without a usable face; their pairs score −1 (decided different):\n", len(failed))
	for i, f := range failed {
		if i == 10 {
			fmt.Fprintf(c.App.ErrWriter, "  ... and %d more\n", len(failed)-10)
			break
		}
		fmt.Fprintln(c.App.ErrWriter, "  "+f)
	}
}

func calibrateCommand() *cli.Command {
	return &cli.Command{
		Name:  "calibrate",
		Usage: "choose the threshold at a target false-accept rate on your own labelled pairs",
		Description: `Embeds every photo of the pairs, scores each pair by cosine similarity and picks
the lowest threshold whose false-accept rate on your different-person pairs does not
exceed --far. Prints the counts it rests on, and warns when there are too few
different-person pairs for that rate (FAR 1e-3 needs about 10,000 for ten false accepts).

Pairs files: LFW's pairs.txt, or CSV lines "path_a,path_b,same" (same: 1/0,
true/false, same/different; a header line is allowed).

Examples:
   facever calibrate --pairs mypairs.csv --far 1e-3
   facever calibrate --pairs lfw/pairs.txt --far 1e-3 --json
   facever verify --threshold 0.41 a.jpg b.jpg      (use the result)`,
		Flags: append([]cli.Flag{
			&cli.Float64Flag{Name: "far", Value: 1e-3, Usage: "target false-accept rate"},
		}, pairsFlags...),
		Action: func(c *cli.Context) error {
			if c.String("pairs") == "" {
				return cli.Exit("calibrate needs --pairs FILE", exitError)
			}
			ps, err := verify.ReadPairsFile(c.String("pairs"), c.String("root"))
			if err != nil {
				return fail(err)
			}
			scores, _, failed, err := pairScores(c, ps)
			if err != nil {
				return fail(err)
			}
			cal, err := ps.Calibrate(scores, c.Float64("far"), verify.NoFaceReject)
			if err != nil {
				return fail(err)
			}
			reportFailures(c, failed)
			// a user model (facever model add) keeps it as its default
			saved := ""
			if m, err := models.BackboneIn(c.String("models"), c.String("model")); err == nil && m.Package == models.UserPackage {
				if err := models.SetUserThreshold(c.String("models"), m.Name, cal.Threshold); err != nil {
					return fail(err)
				}
				saved = m.Name
			}
			if c.Bool("json") {
				doc := map[string]any{"calibration": cal, "photos_without_face": len(failed), "pairs": len(ps.Pairs)}
				if saved != "" {
					doc["saved_for_model"] = saved
				}
				return writeJSONOrFail(c, doc)
			}
			w := c.App.Writer
			fmt.Fprintf(w, "threshold %.4f for FAR ≤ %g\n", cal.Threshold, cal.TargetFAR)
			if saved != "" {
				fmt.Fprintf(w, "  saved as the default threshold of %s in %s\n", saved, models.UserPath(c.String("models")))
			}
			fmt.Fprintf(w, "  on these pairs: FAR %.5f (%d of %d different-person pairs accepted), TAR %.4f (%d of %d same-person pairs accepted)\n",
				cal.FAR, cal.FalseAccepts, cal.Impostor, cal.TAR, cal.TrueAccepts, cal.Genuine)
			if cal.Warning != "" {
				fmt.Fprintln(c.App.ErrWriter, "warning:", cal.Warning)
			}
			fmt.Fprintf(w, "use it: facever verify --threshold %.4f A B\n", cal.Threshold)
			return nil
		},
	}
}

func evalCommand() *cli.Command {
	return &cli.Command{
		Name:  "eval",
		Usage: "measure verification accuracy on labelled pairs: k-fold accuracy, AUC, EER, TAR@FAR, ROC plot",
		Description: `The protocol of LFW: the pairs are split into folds (LFW's own ten folds for
pairs.txt; stratified folds otherwise); for each fold the threshold that maximises
accuracy on the other folds is applied to it; the result is mean ± std accuracy over
folds. Also: AUC, equal error rate, true-accept rate at FAR 1e-2, 1e-3 and 1e-4 where
the number of different-person pairs allows, and the ROC curve as a PNG.

--data DIR builds every pair from a folder per person (DIR/<person>/<photo>).

Examples:
   facever eval --pairs lfw/pairs.txt --root lfw/images --roc roc.png
   facever eval --data myteam/ --json
   facever eval --pairs pairs.csv --head my.head
   facever eval --pairs lfw/pairs.txt --root lfw/images --by-quality`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "data", Usage: "a folder per person: score every pair of their photos"},
			&cli.IntFlag{Name: "max-pairs", Value: 2_000_000, Usage: "with --data, refuse layouts that would give more pairs than this"},
			&cli.IntFlag{Name: "folds", Value: 10, Usage: "number of folds"},
			&cli.StringFlag{Name: "roc", Usage: "write the ROC curve (TAR against log-scale FAR) to this PNG file"},
			&cli.BoolFlag{Name: "by-quality", Usage: "also report accuracy by band of the pair's lower face quality (see detect --json), at the folds' mean threshold"},
			&cli.StringFlag{Name: "quality-bands", Value: "0.5,0.8,0.95", Usage: "with --by-quality, the band edges between 0 and 1"},
		}, pairsFlags...),
		Action: func(c *cli.Context) error {
			edges, err := parseBandEdges(c.String("quality-bands"))
			if err != nil {
				return fail(err)
			}
			ps, err := readPairs(c)
			if err != nil {
				return fail(err)
			}
			scores, quality, failed, err := pairScores(c, ps)
			if err != nil {
				return fail(err)
			}
			opt := verify.PairsOptions{NoFace: verify.NoFaceReject} // the set's own folds, else 10
			if c.IsSet("folds") {
				opt.Folds = c.Int("folds")
			}
			ev, err := ps.Evaluate(scores, opt)
			if err != nil {
				return fail(err)
			}
			reportFailures(c, failed)
			if p := c.String("roc"); p != "" {
				if err := writeROC(p, ev.ROC, rocLabel(c)); err != nil {
					return fail(err)
				}
			}
			var bands []qualityBand
			if c.Bool("by-quality") {
				bands = qualityBands(ps, scores, quality, ev.KFold.MeanThreshold, edges)
			}
			if c.Bool("json") {
				doc := evalDoc(ev, len(failed), ps.Format, c.String("roc"))
				if bands != nil {
					doc["by_quality"] = bands
				}
				return writeJSONOrFail(c, doc)
			}
			printEvaluation(c, ev, len(failed))
			if bands != nil {
				printQualityBands(c.App.Writer, bands, ev.KFold.MeanThreshold)
			}
			return nil
		},
	}
}

func rocLabel(c *cli.Context) string {
	m, _ := models.BackboneIn(c.String("models"), c.String("model"))
	if h := c.String("head"); h != "" {
		return m.Name + " + head " + h
	}
	return m.Name
}

// threshold is --threshold when given, else the backbone's default.
func threshold(c *cli.Context, backbone models.Model) float64 {
	if c.IsSet("threshold") {
		return c.Float64("threshold")
	}
	return backbone.Threshold
}

// verifyThreshold is verify's: --threshold, else the Recognizer's (the
// --head's own calibrated threshold when it has one, else the backbone's).
func verifyThreshold(c *cli.Context, r *fv.Recognizer) float64 {
	if c.IsSet("threshold") {
		return c.Float64("threshold")
	}
	return r.Threshold()
}

// identifyThresholdOf is identify's: --threshold, else the Recognizer's 1:N
// threshold (the --head's own when it has one, else the backbone's).
func identifyThresholdOf(c *cli.Context, r *fv.Recognizer) float64 {
	if c.IsSet("threshold") {
		return c.Float64("threshold")
	}
	return r.IdentifyThreshold()
}

// identifyThresholdFlag is identifyThreshold read from the flag name.
func identifyThresholdFlag(c *cli.Context, name string, backbone models.Model) float64 {
	if c.IsSet(name) {
		return c.Float64(name)
	}
	return backbone.Identification()
}

func printEvaluation(c *cli.Context, ev *verify.Evaluation, missed int) {
	w := c.App.Writer
	fmt.Fprintf(w, "pairs: %d (%d same person, %d different); photos without a face: %d\n", ev.Pairs, ev.Genuine, ev.Impostor, missed)
	fmt.Fprintf(w, "%d-fold accuracy: %.2f%% ± %.2f\n", len(ev.KFold.Folds), 100*ev.KFold.Mean, 100*ev.KFold.Std)
	fmt.Fprintf(w, "best single threshold: %.4f, accuracy %.2f%%\n", ev.Best.Threshold, 100*ev.Best.Accuracy)
	fmt.Fprintf(w, "AUC %.4f, EER %.2f%% (threshold %.4f)\n", ev.ROC.AUC, 100*ev.ROC.EER, ev.ROC.EERThreshold)
	var parts []string
	for _, op := range ev.TARAtFAR {
		switch {
		case !op.Available:
			parts = append(parts, fmt.Sprintf("TAR@FAR=%g: n/a (needs ≥ %d different-person pairs)", op.TargetFAR, int(math.Ceil(1/op.TargetFAR))))
		case !op.Reliable:
			parts = append(parts, fmt.Sprintf("TAR@FAR=%g: %.2f%% (threshold %.4f; few impostor pairs, noisy)", op.TargetFAR, 100*op.TAR, op.Threshold))
		default:
			parts = append(parts, fmt.Sprintf("TAR@FAR=%g: %.2f%% (threshold %.4f)", op.TargetFAR, 100*op.TAR, op.Threshold))
		}
	}
	fmt.Fprintln(w, strings.Join(parts, "\n"))
	if p := c.String("roc"); p != "" {
		fmt.Fprintf(w, "ROC curve: %s\n", p)
	}
}

// loadHead reads --head for the default backbone (nil when not given).
func loadHead(c *cli.Context) (facehead.Projector, error) {
	if c.String("head") == "" {
		return nil, nil
	}
	m, err := models.BackboneIn(c.String("models"), c.String("model"))
	if err != nil {
		return nil, err
	}
	return facehead.LoadHead(c.String("head"), m.SHA256)
}
