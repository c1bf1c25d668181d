package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/facever/facever/internal/testmodels"
	"github.com/facever/facever/models"
)

// TestTrainAndUseHead trains a head on three johns people, checks the
// report, then verifies with it; the head refuses another backbone.
func TestTrainAndUseHead(t *testing.T) {
	testmodels.Dir(t)
	dir := t.TempDir()
	head := filepath.Join(dir, "j.head")
	cache := filepath.Join(dir, "cache.db")
	code, out, errs := facever(t, "train", "--data", "../../testdata/johns", "--val", "0.4", "--epochs", "3",
		"--loss", "cosface", "--augment", "flip", "--cache", cache, "--out", head, "--json")
	if code != exitOK {
		t.Fatalf("train: exit %d\n%s", code, errs)
	}
	var doc struct {
		Report struct {
			Loss       string `json:"loss"`
			Identities int    `json:"identities"`
			Samples    int    `json:"samples"`
		} `json:"report"`
		Validation struct {
			Raw  struct{ AUC float64 } `json:"raw_backbone"`
			Head struct{ AUC float64 } `json:"head"`
		} `json:"validation"`
		Thresholds struct {
			Verify     float64 `json:"verify"`
			VerifyFAR  float64 `json:"verify_far"`
			Identities int     `json:"identities"`
		} `json:"thresholds"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// 3 of 5 people train (2 held out), 33 photos plus 33 flipped copies.
	if doc.Report.Loss != "cosface" || doc.Report.Identities != 3 || doc.Report.Samples != 66 {
		t.Fatalf("report: %+v", doc.Report)
	}
	if doc.Validation.Raw.AUC < 0.99 || doc.Validation.Head.AUC < 0.9 {
		t.Fatalf("held-out AUC: raw %.3f, head %.3f", doc.Validation.Raw.AUC, doc.Validation.Head.AUC)
	}
	code, out, errs = facever(t, "verify", "--head", head, simmA, simmB)
	if code != exitOK || !strings.Contains(out, "same person") {
		t.Fatalf("verify --head: exit %d %q %q", code, out, errs)
	}
	// The head carries thresholds calibrated on its 2 held-out people, and
	// verify --head uses them unless --threshold says otherwise.
	if th := doc.Thresholds; th.VerifyFAR != 1e-3 || th.Identities != 2 || th.Verify <= -1 || th.Verify >= 1 || th.Verify == models.Feature.Threshold {
		t.Fatalf("head thresholds: %+v", th)
	}
	for _, c := range []struct {
		args []string
		want float64
	}{
		{[]string{"verify", "--head", head, "--json", simmA, simmB}, doc.Thresholds.Verify},
		{[]string{"verify", "--head", head, "--threshold", "0.3", "--json", simmA, simmB}, 0.3},
		{[]string{"verify", "--json", simmA, simmB}, models.Feature.Threshold},
	} {
		_, out, errs := facever(t, c.args...)
		var d struct{ Threshold float64 }
		if err := json.Unmarshal([]byte(out), &d); err != nil || math.Abs(d.Threshold-c.want) > 1e-6 {
			t.Fatalf("%v: threshold %v, want %v (%v) %s", c.args, d.Threshold, c.want, err, errs)
		}
	}
	code, _, errs = facever(t, "--model", "dlib", "verify", "--head", head, simmA, simmB)
	if code != exitError || !strings.Contains(errs, "backbone") {
		t.Fatalf("a fr_feature head on dlib: exit %d %q", code, errs)
	}
	// Same seed, same head file.
	head2 := filepath.Join(dir, "j2.head")
	if code, _, errs := facever(t, "train", "--data", "../../testdata/johns", "--val", "0.4", "--epochs", "3",
		"--loss", "cosface", "--augment", "flip", "--cache", cache, "--out", head2); code != exitOK {
		t.Fatal(errs)
	}
	if fileSHA(head) != fileSHA(head2) {
		t.Fatal("two runs with the same seed wrote different heads")
	}
	if code, _, errs := facever(t, "train", "--data", "../../testdata/johns", "--loss", "magic", "--out", head2); code != exitError || !strings.Contains(errs, "choose one of") {
		t.Fatalf("unknown loss: exit %d %q", code, errs)
	}
}

// TestEvalIdentifyJohns: one photo of each of the five johns enrolled, their
// other 50 photos all identified at rank 1.
func TestEvalIdentifyJohns(t *testing.T) {
	testmodels.Dir(t)
	code, out, errs := facever(t, "eval-identify", "--data", "../../testdata/johns", "--cache", filepath.Join(t.TempDir(), "c.db"), "--json")
	if code != exitOK {
		t.Fatalf("exit %d %s", code, errs)
	}
	var ev identifyEval
	if err := json.Unmarshal([]byte(out), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Enrolled != 5 || ev.MatedProbes != 50 || ev.Strangers != 0 || ev.Rank1 != 1 || ev.DetectIdentify != 1 {
		t.Fatalf("%+v", ev)
	}
}

// TestTrainPairAndProxyLosses trains a pair loss (P×K batches) and a proxy
// loss on three johns people and verifies with each head; bad loss options
// are refused with exit 2 and a message that names the choices.
func TestTrainPairAndProxyLosses(t *testing.T) {
	testmodels.Dir(t)
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache.db")
	for _, args := range [][]string{
		{"--loss", "triplet", "--mining", "hard", "--per-identity", "4", "--batch-size", "12"},
		{"--loss", "proxyanchor"},
		{"--loss", "multisimilarity", "--ms-mining", "0.1"},
	} {
		head := filepath.Join(dir, args[1]+".head")
		code, out, errs := facever(t, append([]string{"train", "--data", "../../testdata/johns", "--val", "0.4", "--epochs", "3",
			"--cache", cache, "--out", head, "--json"}, args...)...)
		if code != exitOK {
			t.Fatalf("%v: exit %d\n%s", args, code, errs)
		}
		var doc struct {
			Report struct {
				Loss       string         `json:"loss"`
				Identities int            `json:"identities"`
				Params     map[string]any `json:"params"`
			} `json:"report"`
			Validation struct {
				Head struct{ AUC float64 } `json:"head"`
			} `json:"validation"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if doc.Report.Loss != args[1] || doc.Report.Identities != 3 || doc.Validation.Head.AUC < 0.9 {
			t.Fatalf("%v: %+v", args, doc)
		}
		if args[1] == "triplet" && (doc.Report.Params["per_identity"] != 4.0 || doc.Report.Params["mining"] != "hard") {
			t.Fatalf("triplet params %v", doc.Report.Params)
		}
		if args[1] == "multisimilarity" && doc.Report.Params["mining"] != 0.1 {
			t.Fatalf("multisimilarity params %v", doc.Report.Params)
		}
		code, out, errs = facever(t, "verify", "--head", head, simmA, simmB)
		if code != exitOK || !strings.Contains(out, "same person") {
			t.Fatalf("verify --head %s: exit %d %q %q", args[1], code, out, errs)
		}
	}
	for _, bad := range [][]string{
		{"--loss", "triplet", "--mining", "easy"},
		{"--loss", "npair", "--npair", "ovr"},
		{"--loss", "contrastive", "--per-identity", "1"},
	} {
		code, _, errs := facever(t, append([]string{"train", "--data", "../../testdata/johns", "--cache", cache, "--out", filepath.Join(dir, "x.head")}, bad...)...)
		if code != exitError || !(strings.Contains(errs, "semi-hard") || strings.Contains(errs, "mc or ovo") || strings.Contains(errs, "K ≥ 2")) {
			t.Errorf("%v: exit %d %q", bad, code, errs)
		}
	}
}

// TestTrainHelpShowsLossDefaults checks that train's and crossval's --help
// take each loss's defaults from margin's registry: a flag that several
// losses share shows each one's default, a flag of one loss shows its own.
func TestTrainHelpShowsLossDefaults(t *testing.T) {
	for _, cmd := range []string{"train", "crossval"} {
		code, out, errs := facever(t, cmd, "--help")
		if code != exitOK {
			t.Fatalf("%s --help: exit %d %s", cmd, code, errs)
		}
		for _, want := range []string{
			"cosface 0.35", "arcface, multisimilarity 0.5", "lifted 1", // --margin
			"cosface, arcface, combined 64, proxynca 9", // --scale
			"multisimilarity 2, proxyanchor 32",         // --alpha
			`--mining value`, `(default: "semi-hard")`, `(default: "mc")`,
			"SphereFace's m (1–4) (default: 4)", "SoftTriple centres per class (default: 2)",
			"training loss: softmax, center, sphereface, cosface, arcface, combined, contrastive, triplet, npair, lifted, multisimilarity, proxynca, proxyanchor, softtriple",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("%s --help lacks %q", cmd, want)
			}
		}
	}
}

// lfwLayout copies the johns photos into an LFW-style tree
// (root/<name>/<name>_0001.jpg) and writes a two-fold pairs file whose folds
// are identity-disjoint: Salley and Savage in fold 1, the other three in fold 2.
func lfwLayout(t *testing.T, pairs string) (pairsPath, root string) {
	t.Helper()
	dir := t.TempDir()
	root = filepath.Join(dir, "images")
	ents, err := os.ReadDir("../../testdata/johns")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		photos, err := filepath.Glob(filepath.Join("../../testdata/johns", e.Name(), "*.jpg"))
		if err != nil || len(photos) == 0 {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		if err := os.MkdirAll(filepath.Join(root, e.Name()), 0o755); err != nil {
			t.Fatal(err)
		}
		for i, p := range photos {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, e.Name(), fmt.Sprintf("%s_%04d.jpg", e.Name(), i+1)), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	pairsPath = filepath.Join(dir, "pairs.txt")
	if err := os.WriteFile(pairsPath, []byte(pairs), 0o644); err != nil {
		t.Fatal(err)
	}
	return pairsPath, root
}

const twoFoldPairs = `2 2
John_Salley 1 2
John_Savage 1 2
John_Salley 3 John_Savage 3
John_Salley 4 John_Savage 4
John_Schneider 1 2
John_Simm 1 2
John_Shimkus 1 John_Simm 3
John_Schneider 3 John_Shimkus 2
`

// TestCrossvalJohns runs crossval on two identity-disjoint folds of the
// johns photos: one row for the raw backbone and one per loss (a margin and
// a pair loss), each with its training speed; the Markdown table has the
// same rows; folds that share a person and a pairs file without folds are
// refused with exit 2.
func TestCrossvalJohns(t *testing.T) {
	testmodels.Dir(t)
	pairs, root := lfwLayout(t, twoFoldPairs)
	cache := filepath.Join(t.TempDir(), "cache.db")
	args := []string{"crossval", "--pairs", pairs, "--root", root, "--epochs", "2", "--cache", cache}
	code, out, errs := facever(t, append(args, "--loss", "cosface,triplet", "--json")...)
	if code != exitOK {
		t.Fatalf("crossval: exit %d\n%s", code, errs)
	}
	var doc struct {
		Folds   int              `json:"folds"`
		Pairs   int              `json:"pairs"`
		Results []crossvalResult `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if doc.Folds != 2 || doc.Pairs != 8 || len(doc.Results) != 3 {
		t.Fatalf("%+v", doc)
	}
	for i, method := range []string{"raw backbone", "cosface", "triplet"} {
		r := doc.Results[i]
		if r.Method != method || r.Mean < 0.5 || r.Mean > 1 || r.AUC < 0.5 || r.AUC > 1 || (i > 0) != (r.SamplesPerSec > 0) {
			t.Errorf("row %d: %+v", i, r)
		}
	}
	// The raw backbone tells these eight pairs apart.
	if doc.Results[0].AUC != 1 {
		t.Errorf("raw backbone AUC %v on the johns pairs", doc.Results[0].AUC)
	}
	code, out, errs = facever(t, append(args, "--loss", "softmax", "--markdown")...)
	if code != exitOK || !strings.Contains(out, "| method | 10-fold accuracy |") || !strings.Contains(out, "| raw backbone | ") || !strings.Contains(out, "| softmax | ") {
		t.Fatalf("--markdown: exit %d\n%s\n%s", code, out, errs)
	}

	shared, sroot := lfwLayout(t, strings.Replace(twoFoldPairs, "John_Simm 1 2", "John_Salley 5 6", 1))
	code, _, errs = facever(t, "crossval", "--pairs", shared, "--root", sroot, "--cache", cache)
	if code != exitError || !strings.Contains(errs, "folds 1 and 2 share John_Salley") {
		t.Errorf("shared person: exit %d %q", code, errs)
	}
	csv := filepath.Join(t.TempDir(), "pairs.csv")
	if err := os.WriteFile(csv, []byte(simmA+","+simmB+",1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs = facever(t, "crossval", "--pairs", csv, "--cache", cache)
	if code != exitError || !strings.Contains(errs, "defines no folds") {
		t.Errorf("no folds: exit %d %q", code, errs)
	}
}
