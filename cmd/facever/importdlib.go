package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/facever/facever/internal/dlib"
)

// importDlibCommand is `facever model import-dlib FILE.dat --out MODEL.onnx
// [--json]`: convert dlib's face-recognition ResNet
// (dlib_face_recognition_resnet_model_v1.dat, from Debian's dlib source
// package; scripts/fetch-dlib.sh) into an ONNX model with the project's own
// parser and writer.
func importDlibCommand() *cli.Command {
	return &cli.Command{
		Name:      "import-dlib",
		Usage:     "convert dlib_face_recognition_resnet_model_v1.dat (dlib's CC0 face-recognition ResNet) into ONNX",
		ArgsUsage: "FILE.dat --out MODEL.onnx [--json]",
		Description: "Reads dlib's serialisation, checks it against the network dlib's dnn_face_recognition_ex.cpp defines,\n" +
			"and writes a deterministic ONNX model (opset 11): input \"input\" N×3×150×150 RGB 0..255,\n" +
			"output \"descriptor\" N×128, the source file's sha256 in its metadata. Get the file with scripts/fetch-dlib.sh.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Usage: "ONNX file to write (required)"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON document on stdout instead of text"},
		},
		// flags may follow the .dat path, which urfave/cli v2 does not parse
		SkipFlagParsing: true,
		Action:          importDlib,
	}
}

// importDlibReport is the --json document of `model import-dlib`.
type importDlibReport struct {
	Source       string `json:"source"`
	SourceSHA256 string `json:"source_sha256"`
	KnownSource  bool   `json:"known_source"`
	Out          string `json:"out"`
	OutSHA256    string `json:"out_sha256"`
	Bytes        int    `json:"bytes"`
	Params       int    `json:"parameter_count"`
	ConvLayers   int    `json:"conv_layers"`
	Opset        int    `json:"opset"`
	Input        string `json:"input"`
	Output       string `json:"output"`
}

func importDlib(c *cli.Context) error {
	var pos []string
	var out string
	asJSON, help := false, false
	args := c.Args().Slice()
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(arg, "-") || arg == "-" {
			pos = append(pos, arg)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		switch name {
		case "h", "help":
			help = true
		case "json":
			asJSON = !hasVal || val == "true"
		case "out", "o":
			if !hasVal {
				if i+1 >= len(args) {
					return cli.Exit("flag --out needs a value", 2)
				}
				i++
				val = args[i]
			}
			out = val
		default:
			return cli.Exit("unknown flag "+arg, 2)
		}
	}
	if help {
		if l := c.Lineage(); len(l) > 1 {
			return cli.ShowCommandHelp(l[1], "import-dlib")
		}
		return cli.ShowAppHelp(c)
	}
	if len(pos) != 1 || out == "" {
		return cli.Exit("usage: facever model import-dlib FILE.dat --out MODEL.onnx [--json]", 2)
	}
	rep, err := importDlibFile(pos[0], out)
	if err != nil {
		return cli.Exit(err.Error(), 2)
	}
	w := c.App.Writer
	if w == nil {
		w = os.Stdout
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return cli.Exit(err.Error(), 2)
		}
		return nil
	}
	known := "not the file Debian's dlib 19.24 ships, but it has the same network"
	if rep.KnownSource {
		known = "the file Debian's dlib 19.24+dfsg-1 ships"
	}
	fmt.Fprintf(w, "source    %s\nsha256    %s (%s)\nnetwork   %d conv layers, %d parameters\nwrote     %s (%d bytes, opset %d)\nsha256    %s\ninput     %s\noutput    %s\n",
		rep.Source, rep.SourceSHA256, known, rep.ConvLayers, rep.Params, rep.Out, rep.Bytes, rep.Opset, rep.OutSHA256, rep.Input, rep.Output)
	return nil
}

// importDlibFile converts src into an ONNX file at dst, written through a
// temporary file in dst's folder and renamed, so dst is never half written.
func importDlibFile(src, dst string) (*importDlibReport, error) {
	data, err := os.ReadFile(src)
	if err != nil {
		return nil, fmt.Errorf("import-dlib: %w", err)
	}
	sum := sha256.Sum256(data)
	srcSum := hex.EncodeToString(sum[:])
	net, err := dlib.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("import-dlib %s: %w", src, err)
	}
	onnx, err := net.ONNX(srcSum)
	if err != nil {
		return nil, fmt.Errorf("import-dlib %s: %w", src, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".import-dlib-*.onnx")
	if err != nil {
		return nil, fmt.Errorf("import-dlib: %w", err)
	}
	_, werr := tmp.Write(onnx)
	cerr := tmp.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), dst)
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("import-dlib: write %s: %w", dst, werr)
	}
	convs := 0
	for _, l := range net.Layers {
		if l.Kind == dlib.Conv {
			convs++
		}
	}
	osum := sha256.Sum256(onnx)
	return &importDlibReport{
		Source: src, SourceSHA256: srcSum, KnownSource: srcSum == dlib.FileSHA256,
		Out: dst, OutSHA256: hex.EncodeToString(osum[:]), Bytes: len(onnx),
		Params: net.Params, ConvLayers: convs, Opset: dlib.Opset,
		Input:  fmt.Sprintf("%s N×3×%d×%d float32, RGB 0..255 (dlib chip, padding 0.25)", dlib.InputName, net.Rows, net.Cols),
		Output: fmt.Sprintf("%s N×%d float32 (Euclidean distance, same person below 0.6)", dlib.OutputName, dlib.DescriptorSize),
	}, nil
}
