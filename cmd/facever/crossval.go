package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/facever/facever/facehead/train"
	"github.com/facever/facever/internal/progress"
	"github.com/facever/facever/verify"
)

// crossvalResult is one row of the cross-validated comparison.
type crossvalResult struct {
	Method string  `json:"method"`
	Mean   float64 `json:"mean_accuracy"`
	Std    float64 `json:"std_accuracy"`
	AUC    float64 `json:"auc"`
	TAR3   float64 `json:"tar_at_far_1e-3"`
	// SamplesPerSec is the median training speed over the folds.
	SamplesPerSec float64 `json:"train_samples_per_sec,omitempty"`
}

func crossvalCommand() *cli.Command {
	return &cli.Command{
		Name:  "crossval",
		Usage: "compare trained heads with the raw backbone on LFW-style folds of unseen people",
		Description: `For a pairs file whose folds are identity-disjoint (LFW View 2's ten folds are),
for each fold a head is trained on every photo (in --root/<person>/) of the people of
the other folds, and that fold's pairs are scored with it: every score comes from a
head that never saw those people. The usual protocol then runs on these scores (each
fold's threshold chosen on the other folds). The raw backbone runs the same protocol.

Example (the README's LFW table):
   facever crossval --pairs lfw/pairs.txt --root lfw/images --loss softmax,arcface,cosface`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "pairs", Required: true, Usage: "pairs file with identity-disjoint folds (LFW pairs.txt)"},
			&cli.StringFlag{Name: "root", Usage: "folder per person holding every photo (default: beside the pairs file)"},
			&cli.BoolFlag{Name: "markdown", Usage: "print the result as a Markdown table"},
			alignedFlag, cacheFlag, jsonFlag,
		}, lossFlags()...),
		Action: func(c *cli.Context) error {
			ps, err := verify.ReadPairsFile(c.String("pairs"), c.String("root"))
			if err != nil {
				return fail(err)
			}
			foldPeople, err := verify.FoldPeople(ps)
			if err != nil {
				return fail(err)
			}
			root := c.String("root")
			if root == "" {
				root = filepath.Dir(filepath.Dir(ps.Pairs[0].A))
			}
			// Every photo of every person in the pairs.
			photos, err := photosByPerson(c, root)
			if err != nil {
				return fail(fmt.Errorf("%w (is --root the folder per person?)", err))
			}
			var all []string
			for _, names := range foldPeople {
				for _, n := range names {
					ps, ok := photos[n]
					if !ok {
						return fail(fmt.Errorf("%s has no photos of %s (is --root the folder per person?)", root, n))
					}
					all = append(all, ps...)
				}
			}
			all = append(all, ps.Paths()...)
			sort.Strings(all)
			all = slices.Compact(all)
			res, err := features(c, all, "embedding photos")
			if err != nil {
				return fail(err)
			}
			feats := verify.Features{ByPath: make(map[string][]float32, len(res)), Photos: photos}
			for _, r := range res {
				if r.Feature != nil {
					feats.ByPath[r.Path] = r.Feature
				}
			}
			summarise := func(method string, ev *verify.Evaluation) crossvalResult {
				r := crossvalResult{Method: method, Mean: ev.KFold.Mean, Std: ev.KFold.Std, AUC: ev.ROC.AUC}
				for _, op := range ev.TARAtFAR {
					if op.TargetFAR == 1e-3 {
						r.TAR3 = op.TAR
					}
				}
				return r
			}
			rawEv, err := verify.Evaluate(verify.ScorePairs(ps, func(p string) []float32 { return feats.ByPath[p] }), ps.Labels(), ps.FoldIndices(), ps.Folds)
			if err != nil {
				return fail(err)
			}
			rows := []crossvalResult{summarise("raw backbone", rawEv)}
			for _, loss := range strings.Split(c.String("loss"), ",") {
				if err := c.Set("loss", strings.TrimSpace(loss)); err != nil {
					return fail(err)
				}
				cfg, err := trainConfig(c)
				if err != nil {
					return fail(err)
				}
				var speeds []float64
				bar := progress.New(c.App.ErrWriter, "crossval "+cfg.Loss, ps.Folds).HideRate()
				cv, err := verify.CrossValidate(ps, feats, func(k int, tf [][]float32, tl []int) (verify.Projection, error) {
					head, rep, err := train.Train(tf, tl, cfg)
					if err != nil {
						return nil, fmt.Errorf("%s: %w", cfg.Loss, err)
					}
					speeds = append(speeds, rep.SamplesPerSec)
					bar.Set(k+1, fmt.Sprintf("fold %d: %d photos of %d people, %.0f samples/s", k+1, len(tf), rep.Identities, rep.SamplesPerSec))
					return head, nil
				})
				bar.Done()
				if err != nil {
					return fail(err)
				}
				row := summarise(cfg.Loss, cv.Evaluation)
				sort.Float64s(speeds)
				row.SamplesPerSec = speeds[len(speeds)/2]
				rows = append(rows, row)
			}
			if c.Bool("json") {
				return writeJSONOrFail(c, map[string]any{"folds": ps.Folds, "pairs": len(ps.Pairs), "results": rows})
			}
			w := c.App.Writer
			if c.Bool("markdown") {
				fmt.Fprintln(w, "| method | 10-fold accuracy | AUC | TAR@FAR=1e-3 | training samples/s |")
				fmt.Fprintln(w, "|---|---|---|---|---|")
				for _, r := range rows {
					sp := ""
					if r.SamplesPerSec > 0 {
						sp = fmt.Sprintf("%.0f", r.SamplesPerSec)
					}
					fmt.Fprintf(w, "| %s | %.2f %% ± %.2f | %.4f | %.2f %% | %s |\n", r.Method, 100*r.Mean, 100*r.Std, r.AUC, 100*r.TAR3, sp)
				}
				return nil
			}
			for _, r := range rows {
				fmt.Fprintf(w, "%-14s %.2f%% ± %.2f  AUC %.4f  TAR@FAR=1e-3 %.2f%%\n", r.Method, 100*r.Mean, 100*r.Std, r.AUC, 100*r.TAR3)
			}
			return nil
		},
	}
}
