// Package session opens a catalogue model on the runtime a person chose:
// "opencv" (OpenCV DNN through GoCV) or "engine" (the project's own onnx-go
// backend).
package session

import (
	"fmt"
	"os"
	"strings"

	"github.com/facever/facever/infer"
	"github.com/facever/facever/internal/cvdnn"
	"github.com/facever/facever/internal/onnxrt"
	"github.com/facever/facever/models"
)

// Runtimes lists the runtime names accepted by Open.
var Runtimes = []string{"engine", "opencv"}

// Default is the runtime used when none is given: the project's own engine,
// which passes ONNX's conformance cases for its operators and matches
// OpenCV DNN on the three models (internal/onnxrt tests).
const Default = "engine"

// Open checks m's file in dir (presence, sha256) and loads it on runtime rt.
func Open(rt, dir string, m models.Model) (infer.Session, error) {
	p, err := models.Path(dir, m)
	if err != nil {
		return nil, err
	}
	switch rt {
	case "", "engine":
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		e, err := onnxrt.Load(data)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", p, err)
		}
		if m.Name == models.Landmark.Name {
			// A 64×64 crop's layers last microseconds: handing them to
			// other threads costs more than it saves, and crops run
			// from several goroutines go on at once (align runs a
			// face's tracking crop beside its reading).
			e.SetThreads(1)
		}
		return e, nil // safe for concurrent use
	case "opencv":
		s, err := cvdnn.Open(p)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", p, err)
		}
		return s, nil
	}
	return nil, fmt.Errorf("unknown runtime %q (choose one of: %s)", rt, strings.Join(Runtimes, ", "))
}
