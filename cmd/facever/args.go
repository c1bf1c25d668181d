package main

import (
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
)

// prepare readies app for one command line and returns the arguments to
// run it with. urfave/cli v2 stops parsing flags at the first positional
// argument and knows a global flag only before the command, so that
// `facever verify a.jpg b.jpg --json` and `facever verify --model dlib a b`
// fail; prepare reorders the line into the form it parses:
//
//	facever [global flags] COMMAND [SUBCOMMAND] [command flags] -- [arguments]
//
// It learns every flag from app itself (each command's Flags, the app's
// Flags, which of them take a value), so a new flag needs no change here. A
// flag is the command's own if the command has it, else global if the app
// has it; an unknown flag stays with the command, which reports it. `--`
// ends the flags: everything after it is an argument, even "-x". It also
// makes `facever help CMD [SUB]` show CMD's help, adds `--version`, refuses
// an unknown command with exit status 2 and the usage, prints the usage
// with wrong arguments or flags, checks that a --threshold is a cosine in
// [−1, 1] (and --min-score a probability), and has float defaults print as
// written (0.65, not 0.6499999761581421).
func prepare(app *cli.App, args []string) []string {
	if app.Version == "" {
		app.Version = version()
	}
	app.OnUsageError = usageError
	app.Action = unknownCommand
	for _, c := range app.Commands {
		prepareCommand(app, c, "facever "+c.Name)
	}
	prepareFlags(app.Flags)
	if len(args) < 2 {
		return args
	}
	return append([]string{args[0]}, reorder(app, args[1:])...)
}

// version is the module version and VCS revision the binary was built
// from, as Go recorded them.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = ", modified"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		v += " (commit " + rev + modified + ")"
	}
	return v + " " + bi.GoVersion
}

// prepareCommand installs the usage handlers on c and its subcommands and
// fixes their flags.
func prepareCommand(app *cli.App, c *cli.Command, path string) {
	c.OnUsageError = commandUsageError(path, c.ArgsUsage)
	prepareFlags(c.Flags)
	if act := c.Action; act != nil && len(c.Subcommands) == 0 {
		usage := "usage: " + path + " [options] " + c.ArgsUsage
		c.Action = func(ctx *cli.Context) error {
			err := act(ctx)
			if ec, ok := err.(cli.ExitCoder); ok && ec.ExitCode() == exitError && isArgumentError(err.Error()) {
				return cli.Exit(fmt.Sprintf("%s\n%s (see 'facever help %s')", err, strings.TrimSpace(usage), strings.TrimPrefix(path, "facever ")), exitError)
			}
			return err
		}
	}
	if c.Action == nil && len(c.Subcommands) > 0 {
		c.Action = unknownSubcommand(path)
	}
	for _, s := range c.Subcommands {
		prepareCommand(app, s, path+" "+s.Name)
	}
}

// unknownSubcommand is the action of a command made of subcommands
// (gallery, apikey, model): alone it shows its help, with anything else it
// is exit status 2 naming its subcommands (urfave/cli would say "No help
// topic" with status 3).
func unknownSubcommand(path string) cli.ActionFunc {
	return func(c *cli.Context) error {
		if c.NArg() == 0 {
			return cli.ShowSubcommandHelp(c)
		}
		var names []string
		for _, s := range c.Command.VisibleCommands() {
			if s.Name != "help" {
				names = append(names, s.Name)
			}
		}
		return cli.Exit(fmt.Sprintf("%q is not a %s command; they are: %s (see '%s --help')", c.Args().First(), strings.TrimPrefix(path, "facever "), strings.Join(names, ", "), path), exitError)
	}
}

// isArgumentError recognises the commands' messages about the number or
// kind of their arguments ("verify needs exactly two photos", "name the
// person ...").
func isArgumentError(msg string) bool {
	return strings.Contains(msg, " needs ") || strings.HasPrefix(msg, "name the ")
}

// usageError answers a flag the command does not have, or a malformed
// value, with exit status 2 and the command's usage on stderr (urfave/cli
// would print the whole help on stdout, where a --json reader expects
// JSON).
func usageError(c *cli.Context, err error, isSub bool) error {
	return cli.Exit(fmt.Sprintf("%v\nusage: facever [global options] COMMAND [options] [arguments] (see 'facever --help')", err), exitError)
}

// commandUsageError is usageError for the command at path ("facever
// gallery list").
func commandUsageError(path, argsUsage string) cli.OnUsageErrorFunc {
	return func(c *cli.Context, err error, isSub bool) error {
		usage := strings.TrimSpace(path + " [options] " + argsUsage)
		return cli.Exit(fmt.Sprintf("%v\nusage: %s (see 'facever help %s')", err, usage, strings.TrimPrefix(path, "facever ")), exitError)
	}
}

// unknownCommand is the app's action: no command shows the help; anything
// else is not a command, exit status 2 with the list of commands.
func unknownCommand(c *cli.Context) error {
	if c.NArg() == 0 {
		return cli.ShowAppHelp(c)
	}
	var names []string
	for _, cmd := range c.App.VisibleCommands() {
		names = append(names, cmd.Name)
	}
	what := c.Args().First()
	if what == "help" {
		what = strings.Join(c.Args().Tail(), " ")
	}
	return cli.Exit(fmt.Sprintf("%q is not a command; the commands are: %s (see 'facever --help')", what, strings.Join(names, ", ")), exitError)
}

// prepareFlags sets the printed default of float flags to the shortest
// decimal that reads back as their value (a float32 default such as the
// detector's 0.65 otherwise prints as 0.6499999761581421), and range-checks
// thresholds.
func prepareFlags(flags []cli.Flag) {
	for _, f := range flags {
		ff, ok := f.(*cli.Float64Flag)
		if !ok {
			continue
		}
		if ff.DefaultText == "" {
			ff.DefaultText = shortFloat(ff.Value)
		}
		switch ff.Name {
		case "threshold":
			ff.Action = inRange("threshold", -1, 1, "a cosine similarity")
		case "min-score":
			ff.Action = inRange("min-score", 0, 1, "a detector probability")
		}
	}
}

// shortFloat prints v as written in the source: the shortest decimal of its
// float32 when v is one (defaults taken from float32 options), else of v.
func shortFloat(v float64) string {
	if float64(float32(v)) == v {
		return strconv.FormatFloat(v, 'g', -1, 32)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func inRange(name string, lo, hi float64, what string) func(*cli.Context, float64) error {
	return func(_ *cli.Context, v float64) error {
		if !(v >= lo && v <= hi) {
			return cli.Exit(fmt.Sprintf("--%s %v is outside [%v, %v]: it is %s", name, v, lo, hi, what), exitError)
		}
		return nil
	}
}

// flagSet is what reorder knows of one level's flags: each name (and
// alias) and whether it takes a value.
type flagSet map[string]bool

func flagsOf(flags []cli.Flag) flagSet {
	s := flagSet{"help": false, "h": false}
	for _, f := range flags {
		takes := true
		if v, ok := f.(interface{ TakesValue() bool }); ok {
			takes = v.TakesValue()
		}
		for _, n := range f.Names() {
			s[n] = takes
		}
	}
	return s
}

// flagName splits "--name=value" or "-name" into the name and whether the
// value is attached; ok is false for arguments that are not flags ("-" and
// anything not starting with '-').
func flagName(a string) (name string, attached, ok bool) {
	if len(a) < 2 || a[0] != '-' {
		return "", false, false
	}
	n := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
	if n == "" {
		return "", false, false
	}
	if i := strings.IndexByte(n, '='); i >= 0 {
		return n[:i], true, true
	}
	return n, false, true
}

// reorder rewrites args (without the program name) into global flags,
// the command path, the command's flags, "--" and the arguments.
func reorder(app *cli.App, args []string) []string {
	global := flagsOf(app.Flags)
	global["version"], global["v"] = false, false
	var globals, rest []string
	i := 0
	// Global flags before the command stay where they are.
	for i < len(args) {
		a := args[i]
		if a == "--" {
			return args
		}
		name, attached, ok := flagName(a)
		if !ok {
			break
		}
		globals = append(globals, a)
		i++
		if takes, known := global[name]; known && takes && !attached && i < len(args) {
			globals = append(globals, args[i])
			i++
		}
	}
	if i == len(args) {
		return globals
	}
	// `facever help CMD [SUB]` is `facever CMD [SUB] --help`.
	help := false
	if args[i] == "help" && app.Command("help") == nil {
		if i+1 == len(args) {
			return append(globals, "--help")
		}
		help = true
		i++
	}
	cmd := app.Command(args[i])
	if cmd == nil {
		if help {
			return append(append(globals, "help"), args[i:]...)
		}
		return args // unknown: the app's action says so
	}
	path := []string{args[i]}
	i++
	// Descend into subcommands; flags met on the way belong to the level
	// they were given at.
	var levels [][]string
	for len(cmd.Subcommands) > 0 {
		own := flagsOf(cmd.Flags)
		var here []string
		for i < len(args) {
			name, attached, ok := flagName(args[i])
			if !ok {
				break
			}
			dst, takes := &here, own[name]
			if _, mine := own[name]; !mine {
				if gt, isGlobal := global[name]; isGlobal {
					dst, takes = &rest, gt
				}
			}
			*dst = append(*dst, args[i])
			i++
			if takes && !attached && i < len(args) {
				*dst = append(*dst, args[i])
				i++
			}
		}
		levels = append(levels, here)
		if i == len(args) {
			break
		}
		sub := cmd.Command(args[i])
		if sub == nil {
			break
		}
		cmd = sub
		path = append(path, args[i])
		i++
	}
	out := append(globals, path[0])
	for k, p := range path[1:] {
		out = append(out, levels[k]...)
		out = append(out, p)
	}
	if len(levels) == len(path) { // stopped at a command with subcommands
		out = append(out, levels[len(levels)-1]...)
	}
	if help {
		return append(out, "--help")
	}
	if cmd.SkipFlagParsing || len(cmd.Subcommands) > 0 {
		// The command parses its own line.
		out = append(append(append([]string(nil), globals...), rest...), out[len(globals):]...)
		return append(out, args[i:]...)
	}
	own := flagsOf(cmd.Flags)
	var flags, positional []string
	for i < len(args) {
		a := args[i]
		i++
		if a == "--" {
			positional = append(positional, args[i:]...)
			break
		}
		name, attached, ok := flagName(a)
		if !ok {
			positional = append(positional, a)
			continue
		}
		takes, mine := own[name]
		dst := &flags
		if !mine {
			if gt, isGlobal := global[name]; isGlobal && name != "help" && name != "h" {
				takes, dst = gt, &rest
			}
		}
		*dst = append(*dst, a)
		if takes && !attached && i < len(args) {
			*dst = append(*dst, args[i])
			i++
		}
	}
	// Global flags given after the command go before it.
	out = append(append(append([]string(nil), globals...), rest...), out[len(globals):]...)
	out = append(out, flags...)
	if len(positional) > 0 {
		out = append(append(out, "--"), positional...)
	}
	return out
}
