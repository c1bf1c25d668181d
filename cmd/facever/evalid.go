package main

import (
	"fmt"
	"math"
	"sort"

	"github.com/urfave/cli/v2"

	"github.com/facever/facever/dataset"
	"github.com/facever/facever/enroll"
	"github.com/facever/facever/verify"
)

// identifyEval is the outcome of the open-set 1:N protocol.
type identifyEval struct {
	Threshold float64 `json:"threshold"`
	// Enrolled people (one template each) and their other photos (probes).
	Enrolled    int `json:"enrolled"`
	MatedProbes int `json:"mated_probes"`
	// Rank1 is the share of mated probes whose best match is the right person
	// (closed set, no threshold).
	Rank1 float64 `json:"rank1"`
	// DetectIdentify is the share of mated probes identified correctly and
	// above the threshold (open set).
	DetectIdentify float64 `json:"detect_identify_rate"`
	// Strangers are photos of people not enrolled; FalseAlarm is the share of
	// them matched to someone at the threshold (should be near the FAR).
	Strangers  int     `json:"strangers"`
	FalseAlarm float64 `json:"false_alarm_rate"`
	// PhotosWithoutFace were skipped.
	PhotosWithoutFace int `json:"photos_without_face"`
	// Sweep gives both rates at a range of thresholds.
	Sweep []openSetPoint `json:"sweep"`
	// Calibrated is the threshold chosen on half of the strangers for
	// TargetFalseAlarm, and both rates measured on the other half.
	TargetFalseAlarm float64      `json:"target_false_alarm"`
	Calibrated       openSetPoint `json:"calibrated"`
}

// openSetPoint is one operating point of open-set identification.
type openSetPoint struct {
	Threshold      float64 `json:"threshold"`
	DetectIdentify float64 `json:"detect_identify_rate"`
	FalseAlarm     float64 `json:"false_alarm_rate"`
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
			people, err := photosByPerson(c, c.String("data"))
			if err != nil {
				return fail(err)
			}
			var paths []string
			for _, ph := range people {
				paths = append(paths, ph...)
			}
			res, err := features(c, paths, "embedding photos")
			if err != nil {
				return fail(err)
			}
			feat := map[string][]float32{}
			missed := 0
			for _, r := range res {
				if r.Feature != nil {
					feat[r.Path] = r.Feature
				} else {
					missed++
				}
			}
			ev := identifyEval{Threshold: c.Float64("threshold"), PhotosWithoutFace: missed}
			names := make([]string, 0, len(people))
			for n := range people {
				names = append(names, n)
			}
			sort.Strings(names)
			var ix *enroll.Index
			type probe struct {
				want uint64
				emb  []float32
			}
			var probes []probe
			var strangers [][]float32
			var strangerPerson []int
			for i, n := range names {
				var ok [][]float32
				for _, p := range people[n] {
					if f := feat[p]; f != nil {
						ok = append(ok, f)
					}
				}
				if len(people[n]) < 2 {
					for _, f := range ok {
						strangers = append(strangers, f)
						strangerPerson = append(strangerPerson, i)
					}
					continue
				}
				if len(ok) == 0 {
					continue
				}
				if ix == nil {
					ix = enroll.NewIndex(len(ok[0]), len(names))
				}
				if err := ix.Add(uint64(i+1), n, uint64(i+1), ok[0]); err != nil {
					return fail(err)
				}
				ev.Enrolled++
				for _, f := range ok[1:] {
					probes = append(probes, probe{uint64(i + 1), f})
				}
			}
			if ix == nil || len(probes) == 0 {
				return fail(fmt.Errorf("%s has no person with two or more photos with a face", c.String("data")))
			}
			s := ix.NewSearcher()
			defer s.Close()
			// Each probe's top-1 answer; strangers of even-numbered people
			// calibrate the open-set threshold, the others test it.
			var known, strange, testStrangers []verify.Probe
			for _, p := range probes {
				m, err := s.Search(p.emb, 1)
				if err != nil {
					return fail(err)
				}
				known = append(known, verify.Probe{Truth: names[p.want-1], Best: m[0].Name, Score: float64(m[0].Score)})
			}
			var calib []float64
			for i, f := range strangers {
				m, err := s.Search(f, 1)
				if err != nil {
					return fail(err)
				}
				pb := verify.Probe{Best: m[0].Name, Score: float64(m[0].Score)}
				strange = append(strange, pb)
				if strangerPerson[i]%2 == 0 {
					calib = append(calib, pb.Score)
				} else {
					testStrangers = append(testStrangers, pb)
				}
			}
			point := func(t float64, strangers []verify.Probe) (openSetPoint, verify.OpenSetResult, error) {
				r, err := verify.OpenSet(append(append([]verify.Probe(nil), known...), strangers...), t)
				return openSetPoint{Threshold: t, DetectIdentify: r.DIR, FalseAlarm: r.FPIR}, r, err
			}
			ev.MatedProbes, ev.Strangers = len(probes), len(strangers)
			at, r, err := point(ev.Threshold, strange)
			if err != nil {
				return fail(err)
			}
			ev.Rank1, ev.DetectIdentify, ev.FalseAlarm = r.Rank1, at.DetectIdentify, at.FalseAlarm
			alarms := int(math.Round(at.FalseAlarm * float64(len(strange))))
			for t := 0.30; t < 0.701; t += 0.05 {
				p, _, err := point(math.Round(t*100)/100, strange)
				if err != nil {
					return fail(err)
				}
				ev.Sweep = append(ev.Sweep, p)
			}
			ev.TargetFalseAlarm = c.Float64("false-alarm")
			if len(calib) > 0 && len(testStrangers) > 0 {
				sort.Sort(sort.Reverse(sort.Float64Slice(calib)))
				allowed := int(math.Floor(ev.TargetFalseAlarm * float64(len(calib))))
				thr := math.Nextafter(calib[min(allowed, len(calib)-1)], math.Inf(1))
				if allowed >= len(calib) {
					thr = calib[len(calib)-1]
				}
				if ev.Calibrated, _, err = point(thr, testStrangers); err != nil {
					return fail(err)
				}
			}
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
	if sum := set.Summary(); sum != "" {
		w := c.App.ErrWriter
		fmt.Fprintf(w, "%s: %s\n", dir, sum)
		for i, k := range set.Skipped {
			if i == 10 {
				fmt.Fprintf(w, "  ... and %d more\n", len(set.Skipped)-10)
				break
			}
			fmt.Fprintln(w, "  "+k.String())
		}
	}
	return set, nil
}
