// Command facever verifies, enrolls and identifies faces in photos, and
// fine-tunes heads (margin, pair or proxy losses) on a frozen ONNX backbone. Run `facever --help`.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"
)

// Exit codes (docs/design.md, Conventions): 0 success or same person, 1 different person or
// no match, 2 error.
const (
	exitOK       = 0
	exitNegative = 1
	exitError    = 2
)

func main() {
	// OpenCV's warnings (libjpeg's "premature end", imdecode's header
	// messages) duplicate the errors facever prints itself.
	if os.Getenv("OPENCV_LOG_LEVEL") == "" {
		os.Setenv("OPENCV_LOG_LEVEL", "ERROR")
	}
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// run executes the CLI and returns its exit status.
func run(args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	err := app.Run(prepare(app, args)) // flags anywhere, help CMD, --version: args.go
	if err == nil {
		return exitOK
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(stderr, "facever:", msg)
		}
		return ec.ExitCode()
	}
	fmt.Fprintln(stderr, "facever:", err)
	return exitError
}

func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:  "facever",
		Usage: "face verification: verify pairs of photos, enroll people, identify faces, fine-tune heads",
		Description: `facever finds the face in each photo, aligns it to 112×112, embeds it with an
ONNX backbone and compares embeddings by cosine similarity.

Quick start:
   facever verify photo1.jpg photo2.jpg      same person? (exit 0 yes, 1 no, 2 error)
   facever detect --json group.jpg           boxes, scores and five landmarks
   facever align --out faces/ photo.jpg      aligned 112×112 faces as PNG
   facever embed photo.jpg                   the 512-d embedding

Models are looked up in --models, else $FACEVER_MODELS, else the models/ folder
of the checkout; fetch them with 'make setup'.`,
		Writer:          stdout,
		ErrWriter:       stderr,
		HideHelpCommand: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "models", Usage: "directory holding the model files (default: $FACEVER_MODELS, else the checkout's models/)", EnvVars: nil},
			&cli.StringFlag{Name: "runtime", Value: defaultRuntime(), Usage: "how models run: " + runtimeChoices()},
			&cli.StringFlag{Name: "model", Value: "fr_feature", Usage: "the backbone: fr_feature (default) or dlib_resnet_v1 (make dlib builds it); galleries and heads remember theirs"},
		},
		Commands:       commands(),
		ExitErrHandler: func(*cli.Context, error) {},
	}
	return app
}

// fail wraps an error as exit status 2.
func fail(err error) error {
	return cli.Exit(err.Error(), exitError)
}

// writeJSON prints v as one indented JSON document.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
