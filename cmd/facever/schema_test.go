package main

import (
	"encoding/json"
	"image"
	"image/draw"
	"image/jpeg"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/facever/facever/internal/testmodels"
	"github.com/facever/facever/models"
	"github.com/facever/facever/schema"
)

// TestJSONSchema runs every command with --json on the johns photos and
// validates each document against its file in schema/: the vocabulary is
// what the commands print, not what someone hoped they print.
func TestJSONSchema(t *testing.T) {
	testmodels.Dir(t)
	tmp := t.TempDir()
	gal := filepath.Join(tmp, "g.db")
	cache := filepath.Join(tmp, "c.db")
	johns := "../../testdata/johns/"
	pairs := filepath.Join(tmp, "pairs.csv")
	writeJohnsPairs(t, johns, pairs)
	bad := filepath.Join(tmp, "notes.jpg") // a batch's bad photo: an error entry
	os.WriteFile(bad, []byte("not a photo\n"), 0o644)
	runs := []struct {
		schema string
		args   []string
	}{
		{"detect.json", []string{"detect", "--json", simmA, bad, salleyA}},
		{"embed.json", []string{"embed", "--json", simmA, bad}},
		{"align.json", []string{"align", "--json", "--out", filepath.Join(tmp, "aligned2"), bad, simmA}},
		{"verify.json", []string{"verify", "--json", simmA, simmB}},
		{"verify.json", []string{"verify", "--json", salleyA, simmA}},
		{"detect.json", []string{"detect", "--json", simmA, salleyA}},
		{"embed.json", []string{"embed", "--json", simmA}},
		{"align.json", []string{"align", "--json", "--out", filepath.Join(tmp, "aligned"), simmA}},
		{"enroll.json", []string{"enroll", "--json", "--gallery", gal, "--name", "John Simm", simmA, simmB}},
		{"enroll.json", []string{"enroll", "--json", "--gallery", gal, "--name", "John Salley", salleyA}},
		{"identify.json", []string{"identify", "--json", "--gallery", gal, "--top", "2", salleyA, johns + "John_Savage/000264_01099001.jpg"}},
		{"identify.json", []string{"identify", "--json", "--gallery", gal, bad, simmB}},
		{"enroll.json", []string{"enroll", "--json", "--gallery", gal, "--name", "John Savage", bad, johns + "John_Savage/000274_01099061.jpg"}},
		{"enroll.json", []string{"enroll", "--json", "--gallery", filepath.Join(tmp, "bulk.db"), "--data", johns}},
		{"gallery-list.json", []string{"gallery", "list", "--json", "--gallery", gal}},
		{"gallery-show.json", []string{"gallery", "show", "--json", "--gallery", gal, "John Simm"}},
		{"eval.json", []string{"eval", "--json", "--pairs", pairs, "--root", johns, "--cache", cache}},
		{"calibrate.json", []string{"calibrate", "--json", "--pairs", pairs, "--root", johns, "--cache", cache}},
		{"eval-identify.json", []string{"eval-identify", "--json", "--data", johns, "--cache", cache}},
		{"removed.json", []string{"gallery", "remove", "--json", "--gallery", gal, "John Salley"}},
	}
	for _, r := range runs {
		code, out, errs := facever(t, r.args...)
		if code == exitError && !slices.Contains(r.args, bad) {
			t.Fatalf("%v: exit %d: %s", r.args, code, errs)
		}
		if slices.Contains(r.args, bad) && (code != exitError || !strings.Contains(out, `"code": "not_image"`)) {
			t.Errorf("%v: exit %d, want 2 with a not_image entry:\n%s", r.args, code, out)
		}
		if err := schema.Validate(r.schema, []byte(out)); err != nil {
			t.Errorf("%v: %v\n%s", r.args, err, out)
		}
	}
}

// writeJohnsPairs writes a CSV pairs file of the johns photos, enough for
// ten folds: the first three photos of each person paired with each other
// (15 genuine pairs) and each person's first photo with every other
// person's (10 impostor pairs).
func writeJohnsPairs(t *testing.T, johns, out string) {
	t.Helper()
	people, _ := filepath.Glob(filepath.Join(johns, "John_*"))
	var first []string
	var lines []string
	for _, p := range people {
		photos, _ := filepath.Glob(filepath.Join(p, "*.jpg"))
		if len(photos) < 3 {
			t.Fatalf("%s: %d photos", p, len(photos))
		}
		rel := func(i int) string { return filepath.Base(p) + "/" + filepath.Base(photos[i]) }
		lines = append(lines, rel(0)+","+rel(1)+",1", rel(0)+","+rel(2)+",1", rel(1)+","+rel(2)+",1")
		first = append(first, rel(0))
	}
	for i := range first {
		for j := i + 1; j < len(first); j++ {
			lines = append(lines, first[i]+","+first[j]+",0")
		}
	}
	if err := os.WriteFile(out, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestIdentifyThresholdDefault: identify decides with the backbone's 1:N
// threshold (measured on LFW's open set), not the 1:1 one; --threshold wins.
func TestIdentifyThresholdDefault(t *testing.T) {
	testmodels.Dir(t)
	gal := filepath.Join(t.TempDir(), "g.db")
	if code, _, errs := facever(t, "enroll", "--gallery", gal, "--name", "John Simm", simmA); code != exitOK {
		t.Fatalf("enroll: %d %s", code, errs)
	}
	for _, tc := range []struct {
		args []string
		want float64
	}{
		{nil, models.Feature.IdentifyThreshold},
		{[]string{"--threshold", "0.3"}, 0.3},
	} {
		_, out, errs := facever(t, append(append([]string{"identify", "--json", "--gallery", gal}, tc.args...), simmB)...)
		var doc struct{ Threshold float64 }
		if err := json.Unmarshal([]byte(out), &doc); err != nil || doc.Threshold != tc.want {
			t.Errorf("identify %v: threshold %v (%v), want %v; %s", tc.args, doc.Threshold, err, tc.want, errs)
		}
	}
	if models.Feature.IdentifyThreshold <= models.Feature.Threshold {
		t.Errorf("fr_feature's 1:N threshold %v is not above its 1:1 one %v", models.Feature.IdentifyThreshold, models.Feature.Threshold)
	}
}

// TestIdentifyAllFaces: a group photo made of two johns photos side by side
// (John Simm left, John Salley right; other photos of both enrolled) is
// identified face by face with --all-faces, each face with its box in its
// half; without the flag only the largest face is searched.
func TestIdentifyAllFaces(t *testing.T) {
	testmodels.Dir(t)
	tmp := t.TempDir()
	gal := filepath.Join(tmp, "g.db")
	for name, photo := range map[string]string{"John Simm": simmB, "John Salley": "../../testdata/johns/John_Salley/000183_02159543.jpg"} {
		if code, _, errs := facever(t, "enroll", "--gallery", gal, "--name", name, photo); code != exitOK {
			t.Fatalf("enroll %s: %d %s", name, code, errs)
		}
	}
	group := filepath.Join(tmp, "group.png")
	sideBySide(t, group, simmA, salleyA)
	code, out, errs := facever(t, "identify", "--json", "--all-faces", "--gallery", gal, group)
	if code != exitOK {
		t.Fatalf("exit %d: %s\n%s", code, errs, out)
	}
	if err := schema.Validate("identify.json", []byte(out)); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Photos []struct {
			FaceCount int `json:"face_count"`
			Faces     []struct {
				Box   [4]float64
				Match *struct{ Name string }
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Photos) != 1 || len(doc.Photos[0].Faces) != 2 || doc.Photos[0].FaceCount != 2 {
		t.Fatalf("want one photo with two faces: %v\n%s", err, out)
	}
	names := map[string]bool{}
	for _, f := range doc.Photos[0].Faces {
		if f.Match == nil {
			t.Fatalf("a face came back unknown: %s", out)
		}
		cx := (f.Box[0] + f.Box[2]) / 2
		want := "John Simm"
		if cx >= 150 {
			want = "John Salley"
		}
		if f.Match.Name != want {
			t.Errorf("face at x %.0f identified as %s, want %s", cx, f.Match.Name, want)
		}
		names[f.Match.Name] = true
	}
	if len(names) != 2 {
		t.Errorf("both faces are %v", names)
	}
	if _, out, _ := facever(t, "identify", "--json", "--gallery", gal, group); !strings.Contains(out, `"face_count": 2`) || strings.Contains(out, `"faces"`) {
		t.Errorf("without --all-faces: %s", out)
	}
}

// sideBySide writes a PNG of photos a and b next to each other.
func sideBySide(t *testing.T, out, a, b string) {
	t.Helper()
	var ims []image.Image
	for _, p := range []string{a, b} {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		im, err := jpeg.Decode(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		ims = append(ims, im)
	}
	w, h := ims[0].Bounds().Dx()+ims[1].Bounds().Dx(), max(ims[0].Bounds().Dy(), ims[1].Bounds().Dy())
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(dst, ims[0].Bounds(), ims[0], ims[0].Bounds().Min, draw.Src)
	r := ims[1].Bounds().Sub(ims[1].Bounds().Min).Add(image.Pt(ims[0].Bounds().Dx(), 0))
	draw.Draw(dst, r, ims[1], ims[1].Bounds().Min, draw.Src)
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, dst); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyAnyFace: verify --any-face finds the matching face of a group
// photo (John Simm left, John Salley right) for a photo of either man, and
// says which face it compared.
func TestVerifyAnyFace(t *testing.T) {
	testmodels.Dir(t)
	group := filepath.Join(t.TempDir(), "group.png")
	sideBySide(t, group, simmA, salleyA)
	for _, tc := range []struct {
		other string
		right bool // the matching face is the right-hand one
	}{
		{simmB, false},
		{"../../testdata/johns/John_Salley/000183_02159543.jpg", true},
	} {
		code, out, errs := facever(t, "verify", "--json", "--any-face", group, tc.other)
		if code != exitOK {
			t.Fatalf("%s: exit %d %s\n%s", tc.other, code, errs, out)
		}
		if err := schema.Validate("verify.json", []byte(out)); err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Photos []struct {
				FaceCount int  `json:"face_count"`
				Index     *int `json:"face_index"`
				Face      struct{ Box [4]float64 }
			}
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil || doc.Photos[0].FaceCount != 2 || doc.Photos[0].Index == nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if cx := (doc.Photos[0].Face.Box[0] + doc.Photos[0].Face.Box[2]) / 2; (cx >= 150) != tc.right {
			t.Errorf("%s: compared the face at x %.0f", tc.other, cx)
		}
	}
}

// jsonCommands lists every command of the app that takes --json, by its
// full name ("gallery list").
func jsonCommands(cmds []*cli.Command, prefix string) []string {
	var out []string
	for _, c := range cmds {
		name := strings.TrimSpace(prefix + " " + c.Name)
		for _, f := range c.Flags {
			if slices.Contains(f.Names(), "json") {
				out = append(out, name)
				break
			}
		}
		out = append(out, jsonCommands(c.Subcommands, name)...)
	}
	return out
}

// TestEveryJSONCommandMatchesSchema runs every command that takes --json
// (found by walking the app, so that a new one cannot be missed) on real
// photos and models, and validates its document against its file in
// schema/; a command without a run here fails the test.
func TestEveryJSONCommandMatchesSchema(t *testing.T) {
	testmodels.Dir(t)
	tmp := t.TempDir()
	gal := filepath.Join(tmp, "g.db")
	cache := filepath.Join(tmp, "c.db")
	johns := "../../testdata/johns/"
	lfwPairs, lfwRoot := lfwLayout(t, twoFoldPairs)
	pairs := filepath.Join(tmp, "pairs.csv")
	writeJohnsPairs(t, johns, pairs)
	dir := userModelsDir(t)
	dat := filepath.Join("..", "..", "build", "dlib", "dlib_face_recognition_resnet_model_v1.dat")
	if _, err := os.Stat(dat); err != nil {
		if os.Getenv(testmodels.EnvRequire) == "1" {
			t.Fatalf("%s: %v (make dlib fetches it)", dat, err)
		}
		t.Skipf("%s: %v (make dlib fetches it)", dat, err)
	}
	runs := []struct {
		command, schema string
		args            []string
	}{
		{"verify", "verify.json", []string{"verify", "--json", simmA, simmB}},
		{"detect", "detect.json", []string{"detect", "--json", simmA, salleyA}},
		{"align", "align.json", []string{"align", "--json", "--out", filepath.Join(tmp, "aligned"), simmA}},
		{"embed", "embed.json", []string{"embed", "--json", simmA}},
		{"enroll", "enroll.json", []string{"enroll", "--json", "--gallery", gal, "--name", "John Simm", simmA, simmB}},
		{"enroll", "enroll.json", []string{"enroll", "--json", "--gallery", gal, "--name", "John Salley", salleyA}},
		{"identify", "identify.json", []string{"identify", "--json", "--gallery", gal, "--top", "2", simmB}},
		{"gallery list", "gallery-list.json", []string{"gallery", "list", "--json", "--gallery", gal}},
		{"gallery show", "gallery-show.json", []string{"gallery", "show", "--json", "--gallery", gal, "John Simm"}},
		{"gallery rename", "gallery-rename.json", []string{"gallery", "rename", "--json", "--gallery", gal, "John Simm", "John Simm II"}},
		{"gallery check", "gallery-check.json", []string{"gallery", "check", "--json", "--gallery", gal}},
		{"gallery backup", "gallery-backup.json", []string{"gallery", "backup", "--json", "--gallery", gal, "--to", filepath.Join(tmp, "b.db")}},
		{"gallery restore", "gallery-backup.json", []string{"gallery", "restore", "--json", "--gallery", filepath.Join(tmp, "r.db"), "--from", filepath.Join(tmp, "b.db")}},
		{"gallery migrate", "gallery-migrate.json", []string{"gallery", "migrate", "--json", "--from", gal, "--to", filepath.Join(tmp, "m.db")}},
		{"gallery remove", "removed.json", []string{"gallery", "remove", "--json", "--gallery", gal, "John Salley"}},
		{"apikey create", "apikey-create.json", []string{"apikey", "create", "--json", "--gallery", gal, "--name", "kiosk", "--scope", "recognize"}},
		{"apikey list", "apikey-list.json", []string{"apikey", "list", "--json", "--gallery", gal}},
		{"eval", "eval.json", []string{"eval", "--json", "--pairs", pairs, "--root", johns, "--cache", cache}},
		{"calibrate", "calibrate.json", []string{"calibrate", "--json", "--pairs", pairs, "--root", johns, "--cache", cache}},
		{"eval-identify", "eval-identify.json", []string{"eval-identify", "--json", "--data", johns, "--cache", cache}},
		{"train", "train.json", []string{"train", "--json", "--data", johns, "--val", "0.4", "--epochs", "2", "--loss", "arcface", "--cache", cache, "--out", filepath.Join(tmp, "h.fvh")}},
		{"train", "train.json", []string{"train", "--json", "--data", johns, "--val", "0.4", "--epochs", "1", "--loss", "triplet", "--cache", cache, "--out", filepath.Join(tmp, "h2.fvh")}},
		{"crossval", "crossval.json", []string{"crossval", "--json", "--pairs", lfwPairs, "--root", lfwRoot, "--epochs", "1", "--loss", "cosface", "--cache", cache}},
		{"cache info", "cache-info.json", []string{"cache", "info", "--json", "--cache", cache}},
		{"model check", "model-check.json", []string{"model", "check", filepath.Join(dir, models.Feature.File), "--json"}},
		{"model import-dlib", "import-dlib.json", []string{"model", "import-dlib", dat, "--out", filepath.Join(tmp, "d.onnx"), "--json"}},
		{"model add", "model-add.json", []string{"--models", dir, "model", "add", filepath.Join(dir, models.Dlib.File), "--name", "mydlib", "--json"}},
		{"model list", "model-list.json", []string{"--models", dir, "model", "list", "--json"}},
		{"cache purge", "cache-purge.json", []string{"cache", "purge", "--json", "--cache", cache}},
	}
	ran := map[string]bool{}
	for _, r := range runs {
		code, out, errs := facever(t, r.args...)
		if code == exitError {
			t.Errorf("%v: exit %d: %s", r.args, code, errs)
			continue
		}
		if err := schema.Validate(r.schema, []byte(out)); err != nil {
			t.Errorf("%v: %v\n%s", r.args, err, out)
		}
		ran[r.command] = true
	}
	all := jsonCommands(newApp(io.Discard, io.Discard).Commands, "")
	if len(all) < 25 || !slices.Contains(all, "gallery list") || !slices.Contains(all, "model import-dlib") {
		t.Fatalf("the walk of the app found %d --json commands: %v", len(all), all)
	}
	for _, c := range all {
		if !ran[c] {
			t.Errorf("`facever %s` takes --json but no run of it is validated: add one to TestEveryJSONCommandMatchesSchema, with its schema in schema/ (see the others)", c)
		}
	}
}
