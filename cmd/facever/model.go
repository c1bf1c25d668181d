package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/facever/facever/infer"
	"github.com/facever/facever/internal/bytesize"
	"github.com/facever/facever/internal/npy"
	"github.com/facever/facever/internal/onnxrt"
)

// modelCommand is `facever model`: inspect and run an ONNX model on the
// project's own engine (for people who bring their own backbone).
func modelCommand() *cli.Command {
	return &cli.Command{
		Name:  "model",
		Usage: "inspect or run an ONNX model on facever's engine; add, list and remove your own backbones",
		Subcommands: append([]*cli.Command{
			importDlibCommand(),
			{
				Name:      "check",
				Usage:     "print inputs, outputs, opset, operator counts, unsupported operators and the time of one run",
				ArgsUsage: "MODEL.onnx",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "json", Usage: "print one JSON document on stdout instead of text"},
					maxMemoryFlag(),
				},
				// flags may follow the model path, which urfave/cli v2
				// does not parse: modelArgs does
				SkipFlagParsing: true,
				Action:          modelCheck,
			},
			{
				Name:      "run",
				Usage:     "run a model on .npy inputs (float32, C order) and write DIR/<output>.npy",
				ArgsUsage: "MODEL.onnx",
				Flags: []cli.Flag{
					&cli.StringSliceFlag{Name: "in", Usage: "input .npy file, as FILE (first input) or NAME=FILE; repeat for more inputs"},
					&cli.StringFlag{Name: "out", Usage: "directory for the output .npy files (required)"},
					maxMemoryFlag(),
				},
				SkipFlagParsing: true,
				Action:          modelRun,
			},
		}, userModelCommands()...),
	}
}

// defaultMaxMemory is the default of --max-memory: what one run of a
// model (its inputs, the engine's buffers and its outputs) may take.
const defaultMaxMemory = 4 << 30

func maxMemoryFlag() cli.Flag {
	return &cli.StringFlag{Name: "max-memory", Value: "4GiB",
		Usage: "refuse to run the model when its inputs, the engine's buffers and its outputs would take more than this (B, KB, MB, GB, KiB, MiB, GiB), computed from the shapes before anything is allocated"}
}

// checkReport is the --json document of `model check`.
type checkReport struct {
	Model       string             `json:"model"`
	Opset       int                `json:"opset"`
	Inputs      []onnxrt.ValueInfo `json:"inputs"`
	Outputs     []onnxrt.ValueInfo `json:"outputs"`
	OpCounts    map[string]int     `json:"op_counts"`
	Unsupported []string           `json:"unsupported"`
	MemoryBytes int64              `json:"memory_bytes,omitempty"`
	RunMS       float64            `json:"run_ms,omitempty"`
	RunError    string             `json:"run_error,omitempty"`
}

// modelArgs parses a subcommand's arguments with flags before or after
// the positional ones: --json, --in X (repeatable), --out X, -h/--help.
type modelArgs struct {
	pos       []string
	json      bool
	ins       []string
	out       string
	maxMemory int64
	help      bool
	badUsage  string
}

func parseModelArgs(args []string, valueFlags map[string]bool) modelArgs {
	a := modelArgs{maxMemory: defaultMaxMemory}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			a.pos = append(a.pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(arg, "-") || arg == "-" {
			a.pos = append(a.pos, arg)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		switch {
		case name == "h" || name == "help":
			a.help = true
		case name == "json" && !valueFlags["json"]:
			a.json = !hasVal || val == "true"
		case valueFlags[name]:
			if !hasVal {
				if i+1 >= len(args) {
					a.badUsage = "flag --" + name + " needs a value"
					return a
				}
				i++
				val = args[i]
			}
			switch name {
			case "in":
				a.ins = append(a.ins, val)
			case "max-memory":
				n, err := bytesize.Parse(val)
				if err != nil {
					a.badUsage = "--max-memory: " + err.Error()
					return a
				}
				a.maxMemory = n
			default:
				a.out = val
			}
		default:
			a.badUsage = "unknown flag " + arg
			return a
		}
	}
	return a
}

// showHelp prints a model subcommand's help (looked up in the parent
// context, which holds the subcommands).
func showHelp(c *cli.Context, name string) error {
	if l := c.Lineage(); len(l) > 1 {
		c = l[1]
	}
	return cli.ShowCommandHelp(c, name)
}

func modelCheck(c *cli.Context) error {
	a := parseModelArgs(c.Args().Slice(), map[string]bool{"max-memory": true})
	if a.help {
		return showHelp(c, "check")
	}
	if a.badUsage != "" {
		return cli.Exit(a.badUsage, exitError)
	}
	if len(a.pos) != 1 {
		return cli.Exit("model check needs one model: facever model check MODEL.onnx [--json]", exitError)
	}
	path := a.pos[0]
	data, err := os.ReadFile(path)
	if err != nil {
		return cli.Exit(err.Error(), exitError)
	}
	m, err := onnxrt.Load(data)
	if m == nil {
		return cli.Exit(fmt.Sprintf("%s: %v", path, err), exitError)
	}
	rep := checkReport{Model: path, Opset: m.Opset(), Inputs: m.Inputs(), Outputs: m.Outputs(),
		OpCounts: m.OpCounts(), Unsupported: m.Unsupported()}
	if rep.Unsupported == nil {
		rep.Unsupported = []string{}
	}
	if err == nil {
		// time one run on zeros (after a first run that builds the plan),
		// once the declared shapes are known to fit in --max-memory
		shapes := map[string][]int{}
		for _, in := range m.Inputs() {
			shape := append([]int{}, in.Shape...)
			for i, d := range shape {
				if d < 0 {
					shape[i] = 1 // a dynamic dimension: batch of one
				}
			}
			shapes[in.Name] = shape
		}
		var inputs map[string]infer.Tensor
		rep.MemoryBytes, err = checkMemory(m, shapes, a.maxMemory)
		if err == nil {
			inputs = map[string]infer.Tensor{}
			for name, shape := range shapes {
				inputs[name] = infer.NewTensor(shape...)
			}
			_, err = m.Run(inputs, nil)
		}
		if err != nil {
			rep.RunError = err.Error()
		} else {
			start := time.Now()
			_, err := m.Run(inputs, nil)
			rep.RunMS = float64(time.Since(start).Microseconds()) / 1000
			if err != nil {
				rep.RunError = err.Error()
			}
		}
	} else {
		rep.RunError = err.Error()
	}
	w := c.App.Writer
	if a.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return cli.Exit(err.Error(), exitError)
		}
	} else {
		fmt.Fprintf(w, "model   %s\nopset   %d\n", path, rep.Opset)
		for _, in := range rep.Inputs {
			fmt.Fprintf(w, "input   %s %s\n", in.Name, shapeString(in.Shape))
		}
		for _, o := range rep.Outputs {
			fmt.Fprintf(w, "output  %s %s\n", o.Name, shapeString(o.Shape))
		}
		ops := make([]string, 0, len(rep.OpCounts))
		for k := range rep.OpCounts {
			ops = append(ops, k)
		}
		sort.Strings(ops)
		fmt.Fprintln(w, "operators:")
		for _, k := range ops {
			fmt.Fprintf(w, "  %-24s %d\n", k, rep.OpCounts[k])
		}
		if len(rep.Unsupported) > 0 {
			fmt.Fprintf(w, "unsupported: %s\n", strings.Join(rep.Unsupported, ", "))
		} else {
			fmt.Fprintln(w, "unsupported: none")
		}
		if rep.MemoryBytes > 0 {
			fmt.Fprintf(w, "memory  %s for one run on the declared shapes\n", bytesize.Format(rep.MemoryBytes))
		}
		if rep.RunError == "" {
			fmt.Fprintf(w, "one run on zeros: %.2f ms\n", rep.RunMS)
		}
	}
	if rep.RunError != "" {
		return cli.Exit(fmt.Sprintf("%s: %s", path, rep.RunError), exitError)
	}
	return nil
}

func shapeString(s []int) string {
	if s == nil {
		return "(unknown shape)"
	}
	parts := make([]string, len(s))
	for i, d := range s {
		if d < 0 {
			parts[i] = "?"
		} else {
			parts[i] = fmt.Sprint(d)
		}
	}
	return "[" + strings.Join(parts, "×") + "]"
}

func modelRun(c *cli.Context) error {
	a := parseModelArgs(c.Args().Slice(), map[string]bool{"in": true, "out": true, "max-memory": true})
	if a.help {
		return showHelp(c, "run")
	}
	if a.badUsage != "" {
		return cli.Exit(a.badUsage, exitError)
	}
	if len(a.pos) != 1 || a.out == "" {
		return cli.Exit("model run needs one model and --out: facever model run MODEL.onnx --in x.npy [--in NAME=y.npy] --out DIR", exitError)
	}
	path := a.pos[0]
	data, err := os.ReadFile(path)
	if err != nil {
		return cli.Exit(err.Error(), exitError)
	}
	m, err := onnxrt.Load(data)
	if err != nil {
		return cli.Exit(fmt.Sprintf("%s: %v", path, err), exitError)
	}
	declared := m.Inputs()
	inputs := map[string]infer.Tensor{}
	for i, spec := range a.ins {
		name, file, ok := strings.Cut(spec, "=")
		if !ok {
			file = spec
			if i >= len(declared) {
				return cli.Exit(fmt.Sprintf("--in %s: the model has only %d inputs; name it as NAME=FILE", spec, len(declared)), exitError)
			}
			name = declared[i].Name
		}
		known := false
		for _, d := range declared {
			known = known || d.Name == name
		}
		if !known {
			return cli.Exit(fmt.Sprintf("--in %s: the model has no input %q", spec, name), exitError)
		}
		if _, dup := inputs[name]; dup {
			return cli.Exit(fmt.Sprintf("input %q given twice", name), exitError)
		}
		shape, vals, err := npy.ReadFile(file)
		if err != nil {
			return cli.Exit(err.Error(), exitError)
		}
		inputs[name] = infer.Tensor{Shape: shape, Data: vals}
	}
	for _, d := range declared {
		if _, ok := inputs[d.Name]; !ok {
			return cli.Exit(fmt.Sprintf("input %q missing: give it with --in %s=FILE.npy", d.Name, d.Name), exitError)
		}
	}
	shapes := map[string][]int{}
	for name, t := range inputs {
		shapes[name] = t.Shape
	}
	if _, err := checkMemory(m, shapes, a.maxMemory); err != nil {
		return cli.Exit(fmt.Sprintf("%s: %v", path, err), exitError)
	}
	outs, err := m.Run(inputs, nil)
	if err != nil {
		return cli.Exit(err.Error(), exitError)
	}
	dir := a.out
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return cli.Exit(err.Error(), exitError)
	}
	for i, o := range m.Outputs() {
		name := strings.NewReplacer("/", "_", "\\", "_", "..", "_").Replace(o.Name)
		p := filepath.Join(dir, name+".npy")
		if err := npy.WriteFile(p, outs[i].Shape, outs[i].Data); err != nil {
			return cli.Exit(err.Error(), exitError)
		}
		fmt.Fprintf(c.App.Writer, "%s %s\n", p, shapeString(outs[i].Shape))
	}
	return nil
}

// checkMemory computes what one run of m on inputs of these shapes takes
// (the inputs themselves, the engine's plan, the outputs) before anything
// large is allocated, refuses it above limit bytes with an error that
// says how to raise the limit, and sets the engine's limit for the run.
func checkMemory(m *onnxrt.Model, shapes map[string][]int, limit int64) (int64, error) {
	var in int64
	var desc []string
	for name, shape := range shapes {
		n := int64(4)
		for _, d := range shape {
			if d < 0 || (d > 0 && n > limit/int64(d)) {
				return 0, fmt.Errorf("input %s %s alone is over the memory limit of %s (raise it with --max-memory)",
					name, shapeString(shape), bytesize.Format(limit))
			}
			n *= int64(d)
		}
		in += n
		desc = append(desc, name+" "+shapeString(shape))
	}
	sort.Strings(desc)
	if in > limit {
		return 0, fmt.Errorf("inputs %s take %s, over the memory limit of %s (raise it with --max-memory)",
			strings.Join(desc, ", "), bytesize.Format(in), bytesize.Format(limit))
	}
	m.SetMemoryLimit(limit - in)
	plan, err := m.PlanMemory(shapes)
	if errors.Is(err, onnxrt.ErrMemoryLimit) {
		return 0, fmt.Errorf("one run on inputs %s needs more than the memory limit of %s (inputs %s, engine and outputs at least %s; raise it with --max-memory)",
			strings.Join(desc, ", "), bytesize.Format(limit), bytesize.Format(in), bytesize.Format(plan))
	}
	if err != nil {
		return 0, err
	}
	return in + plan, nil
}
