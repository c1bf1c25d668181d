package main

import (
	"errors"
	"fmt"
	"math"

	"github.com/urfave/cli/v2"

	"github.com/facever/facever/dataset"
	"github.com/facever/facever/enroll"
	"github.com/facever/facever/verify"
)

// identifyEval is the outcome of the open-set 1:N protocol.
type identifyEval = verify.OpenSetEvaluation

// indexMatcher runs the protocol's searches on enroll.Index, the search
// that identify and the server run, so the figures are that code's.
type indexMatcher struct{ s *enroll.Searcher }

func newIndexMatcher(ts []verify.Template) (verify.Matcher, error) {
	ix := enroll.NewIndex(len(ts[0].Feature), len(ts))
	ids := map[string]uint64{}
	for i, t := range ts {
		id, ok := ids[t.Identity]
		if !ok {
			id = uint64(len(ids) + 1)
			ids[t.Identity] = id
		}
		if err := ix.Add(id, t.Identity, uint64(i+1), t.Feature); err != nil {
			return nil, err
		}
	}
	return indexMatcher{ix.NewSearcher()}, nil
}

func (m indexMatcher) Top1(probe []float32) (string, float64, error) {
	r, err := m.s.Search(probe, 1)
	if err != nil {
		return "", 0, err
	}
	return r[0].Name, float64(r[0].Score), nil
}

func (m indexMatcher) Close() error {
	m.s.Close()
	return nil
}

func evalIdentifyCommand() *cli.Command {
	return &cli.Command{
		Name:  "eval-identify",
		Usage: "measure 1:N identification on a folder per person (open set)",
		Description: `For each person with two or more photos, the first photo (by name) is enrolled and
the others are identified against everyone enrolled: rank-1 is the share whose best
match is right; the detect-and-identify rate also needs the score above --threshold.
Photos of people with a single photo are never enrolled: at the threshold they should
come back unknown; the false-alarm rate is the share that did not.

Example (LFW: 1,680 people enrolled, 7,484 mated probes, 4,069 strangers):
   facever eval-identify --data lfw/images --threshold 0.348`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data", Required: true, Usage: "a folder per person: DIR/<person>/<photo>"},
			&cli.Float64Flag{Name: "threshold", Value: verify.DefaultThreshold, Usage: "similarity below which a probe is unknown (e.g. from facever calibrate)"},
			&cli.Float64Flag{Name: "false-alarm", Value: 0.01, Usage: "target share of strangers matched to someone, for the calibrated threshold"},
			alignedFlag, headFlag, cacheFlag, jsonFlag,
		},
		Action: func(c *cli.Context) error {
			set, err := walkData(c, c.String("data"))
			if err != nil {
				return fail(err)
			}
			noMated := fmt.Errorf("%s has no person with two or more photos with a face", c.String("data"))
			split, err := verify.SplitPeople(set.People, 1)
			if err != nil {
				return fail(noMated)
			}
			res, err := features(c, set.Paths(), "embedding photos")
			if err != nil {
				return fail(err)
			}
			feat := make(map[string][]float32, len(res))
			for _, r := range res {
				if r.Feature != nil {
					feat[r.Path] = r.Feature
				}
			}
			ev, err := verify.EvaluateOpenSet(split, func(p string) []float32 { return feat[p] }, verify.OpenSetOptions{
				Threshold: c.Float64("threshold"), TargetFalseAlarm: c.Float64("false-alarm"), NewMatcher: newIndexMatcher,
			})
			if errors.Is(err, verify.ErrNoMatedProbes) {
				return fail(noMated)
			}
			if err != nil {
				return fail(err)
			}
			missed := ev.PhotosWithoutFace
			alarms := int(math.Round(ev.FalseAlarm * float64(ev.Strangers)))
			if c.Bool("json") {
				return writeJSONOrFail(c, ev)
			}
			w := c.App.Writer
			fmt.Fprintf(w, "enrolled %d people (one photo each); %d photos without a face skipped\n", ev.Enrolled, missed)
			fmt.Fprintf(w, "rank-1 on %d photos of enrolled people: %.2f%%\n", ev.MatedProbes, 100*ev.Rank1)
			fmt.Fprintf(w, "identified and above threshold %.3f: %.2f%%\n", ev.Threshold, 100*ev.DetectIdentify)
			fmt.Fprintf(w, "strangers (%d photos of people not enrolled) matched to someone: %.2f%% (%d)\n", ev.Strangers, 100*ev.FalseAlarm, alarms)
			fmt.Fprintf(w, "threshold  identified  strangers matched\n")
			for _, p := range ev.Sweep {
				fmt.Fprintf(w, "%9.2f  %9.2f%%  %16.2f%%\n", p.Threshold, 100*p.DetectIdentify, 100*p.FalseAlarm)
			}
			if ev.Calibrated.Threshold != 0 {
				fmt.Fprintf(w, "calibrated on half of the strangers for ≤ %.1f%% matched: threshold %.4f; on the other half %.2f%% matched, %.2f%% of enrolled people's photos identified\n",
					100*ev.TargetFalseAlarm, ev.Calibrated.Threshold, 100*ev.Calibrated.FalseAlarm, 100*ev.Calibrated.DetectIdentify)
			}
			return nil
		},
	}
}

// photosByPerson reads a folder per person (DIR/<person>/<photo>) through
// the one walker, and reports on stderr what it left out and why.
func photosByPerson(c *cli.Context, dir string) (map[string][]string, error) {
	set, err := walkData(c, dir)
	if err != nil {
		return nil, err
	}
	return set.ByName(), nil
}

// walkData walks a --data (or --root) folder and reports the skipped files on
// stderr: the summary and the first ten with their reasons.
func walkData(c *cli.Context, dir string) (*dataset.Set, error) {
	set, err := dataset.Walk(dir)
	if err != nil {
		return nil, err
	}
	set.Report(c.App.ErrWriter, 10)
	return set, nil
}
