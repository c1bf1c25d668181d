package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/facever/facever/facehead"
	"github.com/facever/facever/facehead/train"
	"github.com/facever/facever/internal/pipeline"
	"github.com/facever/facever/internal/progress"
	"github.com/facever/facever/margin"
	"github.com/facever/facever/models"
	"github.com/facever/facever/verify"
)

// lossFlags are the training flags: --loss, one flag per hyper-parameter
// role of margin's registry (a role several losses share, such as --margin,
// shows each loss's default), and the training settings.
func lossFlags() []cli.Flag {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "loss", Value: "arcface", Usage: "training loss: " + strings.Join(margin.Names(), ", ")},
	}
	for _, lf := range lossParamFlags() {
		flags = append(flags, lf.flag())
	}
	return append(flags,
		&cli.IntFlag{Name: "per-identity", Value: train.DefaultPerIdentity, Usage: "pair losses (" + strings.Join(margin.NamesOf(margin.Pair), ", ") + "): photos per person in a batch, K; a batch holds batch-size/K people"},
		&cli.IntFlag{Name: "out-dim", Usage: "embedding size of the head", DefaultText: "the backbone's, 512"},
		&cli.BoolFlag{Name: "batch-norm", Usage: "a BatchNorm layer after the projection (folded into it after training)"},
		&cli.IntFlag{Name: "epochs", Value: train.DefaultEpochs, Usage: "passes over the training photos"},
		&cli.IntFlag{Name: "batch-size", Value: train.DefaultBatchSize, Usage: "mini-batch size"},
		&cli.Float64Flag{Name: "lr", Value: train.DefaultLR, Usage: "AdamW learning rate (cosine-decayed)"},
		&cli.Float64Flag{Name: "weight-decay", Value: train.DefaultWeightDecay, Usage: "AdamW weight decay"},
		&cli.Float64Flag{Name: "proxy-lr-scale", Value: 1, Usage: "multiplies the learning rate of the class weights and proxies (Proxy Anchor's paper uses 100)"},
		&cli.Int64Flag{Name: "seed", Value: 1, Usage: "random seed: the same data, flags and seed give the same head"},
		&cli.StringSliceFlag{Name: "augment", Usage: "add altered copies of each training photo: flip, jitter, blur (repeatable)"},
	)
}

// lossParamFlag is one command-line flag and the losses' hyper-parameters
// it sets.
type lossParamFlag struct {
	name  string
	uses  []lossParamUse // in the registry's order
	param margin.Param   // the first use's, for the flag's type
}

type lossParamUse struct {
	loss  string
	param margin.Param
}

// lossParamFlags groups the registry's hyper-parameters by flag, in the
// order they first appear.
func lossParamFlags() []lossParamFlag {
	var out []lossParamFlag
	at := map[string]int{}
	for _, s := range margin.Specs() {
		for _, p := range s.Params {
			if p.Flag == "" {
				continue
			}
			i, ok := at[p.Flag]
			if !ok {
				i = len(out)
				at[p.Flag] = i
				out = append(out, lossParamFlag{name: p.Flag, param: p})
			}
			out[i].uses = append(out[i].uses, lossParamUse{loss: s.Name, param: p})
		}
	}
	return out
}

// flag returns the cli flag: its usage and default from the registry, one
// default per loss where the losses that share it differ.
func (lf lossParamFlag) flag() cli.Flag {
	usage := lf.param.Usage
	if len(lf.uses) > 1 {
		usage = grouped(lf.uses, func(p margin.Param) string { return p.Usage }, ": ", "; ")
	}
	same := true
	for _, u := range lf.uses {
		same = same && u.param.Default == lf.param.Default
	}
	text := ""
	if !same {
		text = grouped(lf.uses, margin.Param.DefaultString, " ", ", ")
	}
	p := lf.param
	switch {
	case len(p.Choices) > 0:
		return &cli.StringFlag{Name: lf.name, Value: p.DefaultString(), Usage: usage, DefaultText: text}
	case p.Bool:
		return &cli.BoolFlag{Name: lf.name, Usage: usage}
	case p.Int:
		if !same {
			return &cli.IntFlag{Name: lf.name, Usage: usage, DefaultText: text}
		}
		return &cli.IntFlag{Name: lf.name, Value: int(p.Default), Usage: usage}
	}
	if !same {
		return &cli.Float64Flag{Name: lf.name, Usage: usage, DefaultText: text}
	}
	return &cli.Float64Flag{Name: lf.name, Value: p.Default, Usage: usage}
}

// grouped writes "a, b<sep>v1<join>c<sep>v2": the losses that share a value
// of key, in order of first appearance.
func grouped(uses []lossParamUse, key func(margin.Param) string, sep, join string) string {
	var vals []string
	losses := map[string][]string{}
	for _, u := range uses {
		v := key(u.param)
		if _, ok := losses[v]; !ok {
			vals = append(vals, v)
		}
		losses[v] = append(losses[v], u.loss)
	}
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = strings.Join(losses[v], ", ") + sep + v
	}
	return strings.Join(parts, join)
}

// lossParams reads the flags of the chosen loss's hyper-parameters; those
// not given take the registry's defaults.
func lossParams(c *cli.Context, spec margin.Spec) (margin.Params, error) {
	out := margin.Params{}
	for _, p := range spec.Params {
		if p.Flag == "" || !c.IsSet(p.Flag) {
			continue
		}
		switch {
		case len(p.Choices) > 0:
			v, err := p.Parse(c.String(p.Flag))
			if err != nil {
				return nil, fmt.Errorf("--%s: %w", p.Flag, err)
			}
			out[p.Key] = v
		case p.Bool:
			out[p.Key] = 0
			if c.Bool(p.Flag) {
				out[p.Key] = 1
			}
		case p.Int:
			out[p.Key] = float64(c.Int(p.Flag))
		default:
			out[p.Key] = c.Float64(p.Flag)
		}
	}
	return out, nil
}

// trainConfig reads the loss flags.
func trainConfig(c *cli.Context) (train.Config, error) {
	loss := c.String("loss")
	spec, ok := margin.Lookup(loss)
	if !ok {
		return train.Config{}, fmt.Errorf("--loss %q: choose one of %s", loss, strings.Join(margin.Names(), ", "))
	}
	params, err := lossParams(c, spec)
	if err != nil {
		return train.Config{}, err
	}
	// Build the loss once here, so that a bad value is refused before any
	// photo is read.
	if _, err := margin.New(loss, params); err != nil {
		return train.Config{}, err
	}
	cfg := train.Config{
		Loss: loss, LossParams: params, PerIdentity: c.Int("per-identity"), ProxyLRScale: c.Float64("proxy-lr-scale"),
		OutDim: c.Int("out-dim"), BatchNorm: c.Bool("batch-norm"), Epochs: c.Int("epochs"), BatchSize: c.Int("batch-size"),
		LR: c.Float64("lr"), WeightDecay: c.Float64("weight-decay"), Seed: c.Int64("seed"),
	}
	m, err := models.BackboneIn(c.String("models"), c.String("model"))
	if err != nil {
		return train.Config{}, err
	}
	cfg.BackboneSHA256 = m.SHA256
	return cfg, nil
}

// labelled is a set of photos with identity labels.
type labelled struct {
	paths  []string
	labels []int
}

// trainFeatures embeds the photos (and their augmented copies) and returns
// the features with labels; photos without a face are dropped.
func trainFeatures(c *cli.Context, data labelled, label string, augment []string) ([][]float32, []int, int, error) {
	var feats [][]float32
	var labels []int
	missed := 0
	variants := append([]string{""}, augment...)
	for _, v := range variants {
		if v != "" {
			found := false
			for _, a := range facehead.Augmentations {
				found = found || a == v
			}
			if !found {
				return nil, nil, 0, fmt.Errorf("--augment %q: choose from %s", v, strings.Join(facehead.Augmentations, ", "))
			}
		}
		l := label
		if v != "" {
			l += " (" + v + ")"
		}
		bar := progress.New(c.App.ErrWriter, l, len(data.paths))
		res, err := pipeline.Features(pipelineConfig(c), data.paths, pipeline.BatchOptions{
			Aligned: c.Bool("aligned"), Augment: v, Seed: uint64(c.Int64("seed")), CachePath: cachePath(c),
			Progress: func(done, total int) { bar.Set(done, "photos") },
		})
		bar.Done()
		if err != nil {
			return nil, nil, 0, err
		}
		for i, r := range res {
			if r.Feature == nil {
				if v == "" {
					missed++
				}
				continue
			}
			feats = append(feats, r.Feature)
			labels = append(labels, data.labels[i])
		}
	}
	return feats, labels, missed, nil
}

// splitIdentities holds out a fraction of the identities (with two or more
// photos) for validation, chosen by seed: train.Split over the people sorted
// by name.
func splitIdentities(people map[string][]string, frac float64, seed int64) (trainSet, val labelled, names []string) {
	for n := range people {
		names = append(names, n)
	}
	sort.Strings(names)
	photos := make([]int, len(names))
	for i, n := range names {
		photos[i] = len(people[n])
	}
	held := train.Split(photos, train.SplitOptions{HeldOut: frac, Seed: seed, MinPhotos: 2})
	for i, n := range names {
		dst := &trainSet
		if held[i] {
			dst = &val
		}
		for _, p := range people[n] {
			dst.paths = append(dst.paths, p)
			dst.labels = append(dst.labels, i)
		}
	}
	return trainSet, val, names
}

func trainCommand() *cli.Command {
	return &cli.Command{
		Name:  "train",
		Usage: "fine-tune a head (margin, pair or proxy loss) on your own labelled faces (frozen backbone)",
		Description: `Learns a projection of the backbone's features (Linear d→d′, optionally BatchNorm)
with a training loss, on a folder with one sub-folder of photos per person
(the layout of LFW, CASIA-WebFace, VGGFace2). The losses:
   margin heads    ` + strings.Join(margin.NamesOf(margin.Classification), ", ") + `
   pair losses     ` + strings.Join(margin.NamesOf(margin.Pair), ", ") + `
                   (batches of batch-size/K people × K photos, K = --per-identity;
                   only people with two or more photos are drawn)
   proxy losses    ` + strings.Join(margin.NamesOf(margin.Proxy), ", ") + `

Features are cached, so a second run skips the detector and backbone. A share of
the people (--val) is held out: at the end the raw backbone and the trained head
are compared on pairs of those unseen people (AUC, accuracy at the best threshold,
TAR at FAR 1e-2).

Use the head with --head on verify, embed, enroll, identify, calibrate and eval.

Examples:
   facever train --data people/ --loss arcface --out my.head
   facever train --data people/ --loss cosface --margin 0.4 --augment flip --epochs 30 --out my.head --json
   facever train --data people/ --loss triplet --mining hard --per-identity 4 --out my.head
   facever train --data people/ --loss proxyanchor --alpha 32 --margin 0.1 --out my.head
   facever verify --head my.head a.jpg b.jpg`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "data", Required: true, Usage: "a folder per person: DIR/<person>/<photo>"},
			&cli.StringFlag{Name: "out", Required: true, Usage: "the head file to write"},
			&cli.Float64Flag{Name: "val", Value: 0.2, Usage: "share of people (with two or more photos) held out for validation"},
			alignedFlag, cacheFlag, jsonFlag,
		}, lossFlags()...),
		Action: func(c *cli.Context) error {
			cfg, err := trainConfig(c)
			if err != nil {
				return fail(err)
			}
			if v := c.Float64("val"); v < 0 || v >= 1 {
				return fail(errors.New("--val must be in [0, 1)"))
			}
			people, err := photosByPerson(c, c.String("data"))
			if err != nil {
				return fail(err)
			}
			trainSet, val, _ := splitIdentities(people, c.Float64("val"), c.Int64("seed"))
			feats, labels, missed, err := trainFeatures(c, trainSet, "embedding training photos", c.StringSlice("augment"))
			if err != nil {
				return fail(err)
			}
			if len(feats) == 0 {
				return fail(fmt.Errorf("no face found in the training photos of %s", c.String("data")))
			}
			bar := progress.New(c.App.ErrWriter, "training "+cfg.Loss, 1000).HideRate()
			cfg.Progress = func(p train.Progress) {
				if p.Epochs > 0 {
					bar.Set(p.Epoch*1000/p.Epochs, fmt.Sprintf("epoch %d/%d loss %.4f acc %.3f %.0f samples/s", p.Epoch, p.Epochs, p.Loss, p.Accuracy, p.SamplesPerSec))
				}
			}
			head, rep, err := train.Train(feats, labels, cfg)
			bar.Done()
			if err != nil {
				return fail(err)
			}
			head.SetNote(fmt.Sprintf("data %s, %d photos (%d without a face), seed %d", filepath.Clean(c.String("data")), len(trainSet.paths), missed, c.Int64("seed")))
			doc := map[string]any{"head": c.String("out"), "report": reportDoc(rep), "train_photos": len(trainSet.paths), "train_identities": rep.Identities, "photos_without_face": missed}
			var raw, tuned verify.HeldOut
			haveVal := false
			if len(val.paths) > 0 {
				vfeats, vlabels, _, err := trainFeatures(c, val, "embedding held-out photos", nil)
				if err != nil {
					return fail(err)
				}
				pairs := verify.HeldOutPairs(vlabels, c.Int64("seed"), 100_000)
				if pairs.Len() > 0 {
					proj := make([][]float32, len(vfeats))
					for i, f := range vfeats {
						proj[i] = make([]float32, head.OutDim())
						head.Project(proj[i], f)
					}
					if raw, err = pairs.Measure(vfeats, 1e-2); err != nil {
						return fail(err)
					}
					if tuned, err = pairs.Measure(proj, 1e-2); err != nil {
						return fail(err)
					}
					haveVal = true
					doc["validation"] = map[string]any{"identities": countDistinct(vlabels), "photos": len(vfeats), "raw_backbone": raw, "head": tuned}
					th, err := heldOutThresholds(pairs, proj, vlabels)
					if err != nil {
						return fail(err)
					}
					if err := head.SetThresholds(th); err != nil {
						return fail(err)
					}
					doc["thresholds"] = th
				}
			}
			if err := head.Save(c.String("out")); err != nil {
				return fail(err)
			}
			if c.Bool("json") {
				return writeJSONOrFail(c, doc)
			}
			w := c.App.Writer
			fmt.Fprintf(w, "trained %s on %d photos of %d people in %s (%.0f samples/s); final loss %.4f, training accuracy %.3f\n",
				cfg.Loss, rep.Samples, rep.Identities, rep.Duration.Round(1e7), rep.SamplesPerSec, rep.FinalLoss, rep.FinalAccuracy)
			fmt.Fprintf(w, "wrote %s\n", c.String("out"))
			if haveVal {
				th, _ := head.Thresholds()
				fmt.Fprintf(w, "head's own thresholds (on the held-out people, used by --head): verify %.4f (FAR %g)", th.Verify, th.VerifyFAR)
				if th.Identify != 0 {
					fmt.Fprintf(w, ", identify %.4f (%.0f%% of strangers)", th.Identify, 100*th.IdentifyFalseAlarm)
				}
				fmt.Fprintln(w)
				fmt.Fprintf(w, "held-out people: %d photos, %d pairs\n", len(val.paths), raw.Pairs)
				fmt.Fprintf(w, "                 AUC      accuracy  TAR@FAR=1e-2\n")
				fmt.Fprintf(w, "  raw backbone   %.4f   %6.2f%%   %6.2f%%\n", raw.AUC, 100*raw.Accuracy, 100*raw.TARAt)
				fmt.Fprintf(w, "  with the head  %.4f   %6.2f%%   %6.2f%%\n", tuned.AUC, 100*tuned.Accuracy, 100*tuned.TARAt)
			} else {
				fmt.Fprintln(w, "no held-out people to validate on (--val 0, or too few people with two photos)")
			}
			return nil
		},
	}
}

// Targets of the thresholds a head file carries: the rates of the backbones'
// defaults (1:1 at FAR 1e-3, 1:N at 1 % of strangers matched).
const (
	headVerifyFAR          = 1e-3
	headIdentifyFalseAlarm = 0.01
)

// heldOutThresholds calibrates a head's own thresholds on its held-out
// people: the 1:1 threshold on the held-out pairs (verify.Calibrate at
// headVerifyFAR), and the 1:N threshold on an open set made of them
// (people in pairs: two enrolled with their first photo, two strangers;
// verify.EvaluateOpenSet's calibrated point at headIdentifyFalseAlarm), left
// 0 when there are too few people for it.
func heldOutThresholds(pairs verify.IndexPairs, proj [][]float32, labels []int) (facehead.HeadThresholds, error) {
	scores := make([]float64, pairs.Len())
	for k := range scores {
		scores[k] = verify.Cosine(proj[pairs.A[k]], proj[pairs.B[k]])
	}
	cal, err := verify.Calibrate(scores, pairs.Same, headVerifyFAR)
	if err != nil {
		return facehead.HeadThresholds{}, fmt.Errorf("head thresholds: %w", err)
	}
	th := facehead.HeadThresholds{Verify: cal.Threshold, VerifyFAR: headVerifyFAR, Identities: countDistinct(labels)}
	photos := map[int][]int{}
	var people []int
	for i, l := range labels {
		if photos[l] == nil {
			people = append(people, l)
		}
		photos[l] = append(photos[l], i)
	}
	sort.Ints(people)
	split := &verify.OpenSetSplit{}
	for k, l := range people {
		name := strconv.Itoa(l)
		split.People = append(split.People, name)
		for j, i := range photos[l] {
			p := verify.Photo{Path: strconv.Itoa(i), Identity: name, Person: name}
			switch {
			case k%4 >= 2: // strangers at even and odd positions: both halves of the calibration
				p.Identity = ""
				split.Unknown = append(split.Unknown, p)
			case j == 0:
				split.Gallery = append(split.Gallery, p)
			default:
				split.Known = append(split.Known, p)
			}
		}
	}
	ev, err := verify.EvaluateOpenSet(split, func(path string) []float32 {
		i, _ := strconv.Atoi(path)
		return proj[i]
	}, verify.OpenSetOptions{Threshold: th.Verify, TargetFalseAlarm: headIdentifyFalseAlarm})
	if err == nil && ev.Calibrated.Threshold != 0 {
		th.Identify, th.IdentifyFalseAlarm = ev.Calibrated.Threshold, headIdentifyFalseAlarm
	}
	return th, nil
}

func countDistinct(v []int) int {
	m := map[int]bool{}
	for _, x := range v {
		m[x] = true
	}
	return len(m)
}

// reportDoc is train's report for --json: the loss's parameters typed as
// their registry says (a switch as true/false, a choice by name, an
// integer as one), not the head file's numbers.
func reportDoc(rep train.Report) map[string]any {
	b, err := json.Marshal(rep)
	var doc map[string]any
	if err != nil || json.Unmarshal(b, &doc) != nil {
		return map[string]any{"loss": rep.Loss}
	}
	spec, ok := margin.Lookup(rep.Loss)
	params := map[string]any{}
	for k, v := range rep.Params {
		p, known := spec.Param(k)
		switch {
		case !ok || !known:
			params[k] = v
		case p.Bool:
			params[k] = v != 0
		case len(p.Choices) > 0 && v == math.Trunc(v) && v >= 0 && int(v) < len(p.Choices):
			params[k] = p.Choices[int(v)]
		case p.Int:
			params[k] = int64(v)
		default:
			params[k] = v
		}
	}
	doc["params"] = params
	return doc
}
