package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/facever/facever/internal/testmodels"
)

// leaf is a command that runs (no subcommands), with its path from the app.
type leaf struct {
	path []string
	cmd  *cli.Command
}

func leaves(cmds []*cli.Command, path []string) []leaf {
	var out []leaf
	for _, c := range cmds {
		p := append(append([]string(nil), path...), c.Name)
		if len(c.Subcommands) > 0 {
			out = append(out, leaves(c.Subcommands, p)...)
		} else {
			out = append(out, leaf{p, c})
		}
	}
	return out
}

// flagArgs is a flag as typed, with a value that parses for its type.
func flagArgs(f cli.Flag) []string {
	name := "--" + f.Names()[0]
	switch f.(type) {
	case *cli.BoolFlag:
		return []string{name}
	case *cli.IntFlag, *cli.Int64Flag, *cli.UintFlag, *cli.Uint64Flag:
		return []string{name, "3"}
	case *cli.Float64Flag:
		return []string{name, "0.5"}
	case *cli.DurationFlag:
		return []string{name, "2s"}
	}
	return []string{name, "some-value"}
}

// recorded is what a command's action saw.
type recorded struct {
	args  []string
	isSet bool
	model string
}

// TestFlagsAnywhere: for every command and every one of its flags, the flag
// before, between and after the arguments, and the global --model after the
// command, reach the command: urfave/cli parses the reordered line into the
// same arguments and flags. The actions are replaced by recorders, so this
// runs no model.
func TestFlagsAnywhere(t *testing.T) {
	app := newApp(io.Discard, io.Discard)
	all := leaves(app.Commands, nil)
	if len(all) < 15 {
		t.Fatalf("only %d commands found", len(all))
	}
	tested := 0
	for _, l := range all {
		if l.cmd.SkipFlagParsing {
			continue
		}
		for _, f := range l.cmd.Flags {
			fa := flagArgs(f)
			var req []string // required flags other than f, given first
			for _, g := range l.cmd.Flags {
				if r, ok := g.(cli.RequiredFlag); ok && r.IsRequired() && g.Names()[0] != f.Names()[0] {
					req = append(req, flagArgs(g)...)
				}
			}
			pos := []string{"a.jpg", "b.jpg"}
			lines := map[string][]string{
				"before":                   concat(l.path, req, fa, pos),
				"between":                  concat(l.path, req, pos[:1], fa, pos[1:]),
				"after":                    concat(l.path, req, pos, fa),
				"global after the command": concat(l.path, req, pos[:1], []string{"--model", "dlib"}, pos[1:], fa),
			}
			for where, line := range lines {
				var got recorded
				app := newApp(io.Discard, io.Discard)
				cmd := findLeaf(app, l.path)
				name := f.Names()[0]
				cmd.Action = func(c *cli.Context) error {
					got = recorded{args: c.Args().Slice(), isSet: c.IsSet(name), model: c.String("model")}
					return nil
				}
				cmd.Before, cmd.After = nil, nil
				argv := prepare(app, append([]string{"facever"}, line...))
				if err := app.Run(argv); err != nil {
					t.Errorf("%s %s %s: %v (ran %q)", strings.Join(l.path, " "), name, where, err, argv)
					continue
				}
				if !reflect.DeepEqual(got.args, pos) || !got.isSet {
					t.Errorf("%s --%s %s: the command saw arguments %q, flag set %v (ran %q)", strings.Join(l.path, " "), name, where, got.args, got.isSet, argv)
				}
				wantModel := "fr_feature"
				if strings.HasPrefix(where, "global") {
					wantModel = "dlib"
				}
				if got.model != wantModel && name != "model" {
					t.Errorf("%s --%s %s: --model is %q, want %q (ran %q)", strings.Join(l.path, " "), name, where, got.model, wantModel, argv)
				}
			}
			tested++
		}
	}
	t.Logf("%d commands, %d flags, 4 positions each", len(all), tested)
}

func concat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func findLeaf(app *cli.App, path []string) *cli.Command {
	cmd := app.Command(path[0])
	for _, p := range path[1:] {
		cmd = cmd.Command(p)
	}
	return cmd
}

// TestReorder pins the rewritten lines for the cases that need care.
func TestReorder(t *testing.T) {
	app := newApp(io.Discard, io.Discard)
	tests := []struct{ in, want string }{
		{"verify a.jpg b.jpg --json", "verify --json -- a.jpg b.jpg"},
		{"verify --model dlib a.jpg b.jpg", "--model dlib verify -- a.jpg b.jpg"},
		{"--runtime opencv verify a.jpg --model=dlib b.jpg", "--runtime opencv --model=dlib verify -- a.jpg b.jpg"},
		{"identify x.jpg -g g.db --top 3", "identify -g g.db --top 3 -- x.jpg"},
		{"verify --threshold -0.5 a.jpg b.jpg", "verify --threshold -0.5 -- a.jpg b.jpg"},
		{"verify a.jpg -- -b.jpg --json", "verify -- a.jpg -b.jpg --json"},
		{"verify - b.jpg", "verify -- - b.jpg"},
		{"gallery list -g g.db --json", "gallery list -g g.db --json"},
		{"gallery rename Bob Robert -g g.db", "gallery rename -g g.db -- Bob Robert"},
		{"help verify", "verify --help"},
		{"help gallery list", "gallery list --help"},
		{"help", "--help"},
		{"--version", "--version"},
		{"verify a.jpg b.jpg --nosuch", "verify --nosuch -- a.jpg b.jpg"},
		{"nosuch a b --json", "nosuch a b --json"},
		{"model check m.onnx --json", "model check m.onnx --json"},
	}
	for _, tc := range tests {
		got := strings.Join(prepare(app, append([]string{"facever"}, strings.Fields(tc.in)...))[1:], " ")
		if got != tc.want {
			t.Errorf("%s\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
}

var longFloat = regexp.MustCompile(`\d\.\d{7,}`)

// TestFloatDefaultsAsWritten: no help screen prints a float32 default in
// float64 digits.
func TestFloatDefaultsAsWritten(t *testing.T) {
	app := newApp(io.Discard, io.Discard)
	for _, l := range leaves(app.Commands, nil) {
		code, out, _ := facever(t, append([]string{"help"}, l.path...)...)
		if code != exitOK {
			t.Fatalf("help %s: exit %d", strings.Join(l.path, " "), code)
		}
		if longFloat.MatchString(out) {
			t.Errorf("help %s prints a long float:\n%s", strings.Join(l.path, " "), out)
		}
	}
	_, out, _ := facever(t, "help", "detect")
	if !strings.Contains(out, "(default: 0.65)") {
		t.Errorf("help detect does not say the --min-score default is 0.65:\n%s", out)
	}
}

// TestCommandLineErrors: an unknown command, wrong arguments and values
// out of range are exit status 2 with the usage on stderr, nothing on
// stdout.
func TestCommandLineErrors(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"nosuch"}, []string{`"nosuch" is not a command`, "verify, detect"}},
		{[]string{"help", "nosuch"}, []string{`"nosuch" is not a command`}},
		{[]string{"verify", simmA}, []string{"needs exactly two photos", "usage: facever verify [options] PHOTO_A PHOTO_B"}},
		{[]string{"verify", simmA, simmB, "--nosuch"}, []string{"flag provided but not defined: -nosuch", "usage: facever verify"}},
		{[]string{"verify", simmA, simmB, "--threshold", "1.5"}, []string{"--threshold 1.5 is outside [-1, 1]"}},
		{[]string{"verify", "--threshold=-2", simmA, simmB}, []string{"--threshold -2 is outside [-1, 1]"}},
		{[]string{"identify", simmA, "-g", "x.db", "--threshold", "7"}, []string{"outside [-1, 1]"}},
		{[]string{"detect", simmA, "--min-score", "1.2"}, []string{"--min-score 1.2 is outside [0, 1]"}},
		{[]string{"verify", simmA, simmB, "--threshold", "abc"}, []string{"invalid value", "usage: facever verify"}},
		{[]string{"gallery", "nosuch"}, []string{`"nosuch" is not a gallery command`, "list, show"}},
		{[]string{"gallery", "list", "-g", "x.db", "--nosuch"}, []string{"-nosuch", "usage: facever gallery list [options] (see 'facever help gallery list')"}},
		{[]string{"--nosuch", "verify", simmA, simmB}, []string{"-nosuch", "usage: facever [global options] COMMAND"}},
	}
	for _, tc := range tests {
		code, out, errs := facever(t, tc.args...)
		if code != exitError || out != "" {
			t.Errorf("%q: exit %d, stdout %q; want 2 and nothing", tc.args, code, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(errs, w) {
				t.Errorf("%q: stderr %q lacks %q", tc.args, errs, w)
			}
		}
	}
}

// TestHelpAndVersion: `facever help CMD` is CMD's help; --version prints
// the build's version.
func TestHelpAndVersion(t *testing.T) {
	code, out, _ := facever(t, "help", "verify")
	if code != exitOK || !strings.Contains(out, "facever verify [command options] PHOTO_A PHOTO_B") || !strings.Contains(out, "--threshold") {
		t.Fatalf("help verify: exit %d\n%s", code, out)
	}
	code, out, _ = facever(t, "help", "gallery", "rename")
	if code != exitOK || !strings.Contains(out, "NAME|#ID NEW_NAME") {
		t.Fatalf("help gallery rename: exit %d\n%s", code, out)
	}
	code, out, _ = facever(t, "--version")
	if code != exitOK || !strings.HasPrefix(out, "facever version ") || !strings.Contains(out, "go1.") {
		t.Fatalf("--version: exit %d %q", code, out)
	}
}

// TestFlagsAnywhereRuns: the issue's own command lines, run for real.
func TestFlagsAnywhereRuns(t *testing.T) {
	testmodels.Dir(t, "fr_detect", "fr_landmark", "fr_feature", "dlib_resnet_v1")
	code, out, errs := facever(t, "verify", simmA, simmB, "--json")
	var d struct {
		Same   bool `json:"same_person"`
		Photos []struct {
			Scale float64 `json:"scale"`
		} `json:"photos"`
	}
	if code != exitOK || json.Unmarshal([]byte(out), &d) != nil || !d.Same || d.Photos[0].Scale != 1 {
		t.Fatalf("verify a b --json: exit %d %q %s", code, out, errs)
	}
	code, out, errs = facever(t, "verify", "--model", "dlib", simmA, simmB)
	if code != exitOK || !strings.Contains(out, "threshold 0.924") {
		t.Fatalf("verify --model dlib a b: exit %d %q %s", code, out, errs)
	}
	// A photo whose name starts with '-' after `--`.
	dir := t.TempDir()
	data, err := os.ReadFile(simmA)
	if err != nil {
		t.Fatal(err)
	}
	dash := filepath.Join(dir, "-simm.jpg")
	os.WriteFile(dash, data, 0o644)
	models, err := filepath.Abs(filepath.Join("..", "..", "models"))
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	code, out, errs = facever(t, "--models", models, "verify", "--json", "--", "-simm.jpg", "-simm.jpg")
	if code != exitOK || !strings.Contains(out, `"similarity": 1`) {
		t.Fatalf("verify -- -simm.jpg -simm.jpg: exit %d %q %s", code, out, errs)
	}
}
