package main

import (
	"errors"
	"fmt"
	"path/filepath"
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
			if ps.Folds < 2 {
				return fail(errors.New("the pairs file defines no folds: crossval needs LFW's pairs.txt format"))
			}
			root := c.String("root")
			if root == "" {
				root = filepath.Dir(ps.Pairs[0].A)
				root = filepath.Dir(root)
			}
			// People of each fold, from the pairs' paths (root/<person>/<photo>).
			foldPeople := make([]map[string]bool, ps.Folds)
			for i := range foldPeople {
				foldPeople[i] = map[string]bool{}
			}
			for _, p := range ps.Pairs {
				for _, path := range []string{p.A, p.B} {
					foldPeople[p.Fold][filepath.Base(filepath.Dir(path))] = true
				}
			}
			for i := range foldPeople {
				for j := i + 1; j < len(foldPeople); j++ {
					for n := range foldPeople[i] {
						if foldPeople[j][n] {
							return fail(fmt.Errorf("folds %d and %d share %s: crossval needs identity-disjoint folds", i+1, j+1, n))
						}
					}
				}
			}
			// Every photo of every person in the pairs.
			photos, err := photosByPerson(c, root)
			if err != nil {
				return fail(fmt.Errorf("%w (is --root the folder per person?)", err))
			}
			var all []string
			for _, fp := range foldPeople {
				for n := range fp {
					ps, ok := photos[n]
					if !ok {
						return fail(fmt.Errorf("%s has no photos of %s (is --root the folder per person?)", root, n))
					}
					all = append(all, ps...)
				}
			}
			sort.Strings(all)
			all = append(all, ps.Paths()...)
			sort.Strings(all)
			var uniq []string
			for i, p := range all {
				if i == 0 || p != all[i-1] {
					uniq = append(uniq, p)
				}
			}
			res, err := features(c, uniq, "embedding photos")
			if err != nil {
				return fail(err)
			}
			feat := make(map[string][]float32, len(res))
			for _, r := range res {
				if r.Feature != nil {
					feat[r.Path] = r.Feature
				}
			}
			same, folds := ps.Labels(), ps.FoldIndices()
			score := func(emb func(string) []float32) []float64 {
				s := make([]float64, len(ps.Pairs))
				for i, p := range ps.Pairs {
					a, b := emb(p.A), emb(p.B)
					if a == nil || b == nil {
						s[i] = -1
						continue
					}
					s[i] = verify.Cosine(a, b)
				}
				return s
			}
			summarise := func(method string, scores []float64) (crossvalResult, error) {
				ev, err := verify.Evaluate(scores, same, folds, ps.Folds)
				if err != nil {
					return crossvalResult{}, err
				}
				r := crossvalResult{Method: method, Mean: ev.KFold.Mean, Std: ev.KFold.Std, AUC: ev.ROC.AUC}
				for _, op := range ev.TARAtFAR {
					if op.TargetFAR == 1e-3 {
						r.TAR3 = op.TAR
					}
				}
				return r, nil
			}
			var rows []crossvalResult
			raw, err := summarise("raw backbone", score(func(p string) []float32 { return feat[p] }))
			if err != nil {
				return fail(err)
			}
			rows = append(rows, raw)
			losses := strings.Split(c.String("loss"), ",")
			for _, loss := range losses {
				if err := c.Set("loss", strings.TrimSpace(loss)); err != nil {
					return fail(err)
				}
				cfg, err := trainConfig(c)
				if err != nil {
					return fail(err)
				}
				scores := make([]float64, len(ps.Pairs))
				var speeds []float64
				bar := progress.New(c.App.ErrWriter, "crossval "+cfg.Loss, ps.Folds).HideRate()
				for k := 0; k < ps.Folds; k++ {
					var tf [][]float32
					var tl []int
					label := 0
					for j, fp := range foldPeople {
						if j == k {
							continue
						}
						names := make([]string, 0, len(fp))
						for n := range fp {
							names = append(names, n)
						}
						sort.Strings(names)
						for _, n := range names {
							for _, p := range photos[n] {
								if f := feat[p]; f != nil {
									tf = append(tf, f)
									tl = append(tl, label)
								}
							}
							label++
						}
					}
					head, rep, err := train.Train(tf, tl, cfg)
					if err != nil {
						return fail(fmt.Errorf("fold %d, %s: %w", k+1, cfg.Loss, err))
					}
					speeds = append(speeds, rep.SamplesPerSec)
					cache := map[string][]float32{}
					proj := func(p string) []float32 {
						if e, ok := cache[p]; ok {
							return e
						}
						f := feat[p]
						if f == nil {
							return nil
						}
						e := make([]float32, head.OutDim())
						head.Project(e, f)
						cache[p] = e
						return e
					}
					for i, p := range ps.Pairs {
						if p.Fold != k {
							continue
						}
						a, b := proj(p.A), proj(p.B)
						if a == nil || b == nil {
							scores[i] = -1
						} else {
							scores[i] = verify.Cosine(a, b)
						}
					}
					bar.Set(k+1, fmt.Sprintf("fold %d: %d photos of %d people, %.0f samples/s", k+1, len(tf), rep.Identities, rep.SamplesPerSec))
				}
				bar.Done()
				row, err := summarise(cfg.Loss, scores)
				if err != nil {
					return fail(err)
				}
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
