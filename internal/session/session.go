// Package session opens a catalogue model on the runtime a person chose:
// "opencv" (OpenCV DNN through GoCV) or "engine" (the project's own onnx-go
// backend).
package session

import (
	"fmt"
	"strings"

	"github.com/facever/facever/internal/cvdnn"
	"github.com/facever/facever/internal/infer"
	"github.com/facever/facever/models"
)

// Runtimes lists the runtime names accepted by Open.
var Runtimes = []string{"opencv"}

// Default is the runtime used when none is given.
const Default = "opencv"

// Open checks m's file in dir (presence, sha256) and loads it on runtime rt.
func Open(rt, dir string, m models.Model) (infer.Session, error) {
	p, err := models.Path(dir, m)
	if err != nil {
		return nil, err
	}
	switch rt {
	case "", "opencv":
		s, err := cvdnn.Open(p)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", p, err)
		}
		return s, nil
	}
	return nil, fmt.Errorf("unknown runtime %q (choose one of: %s)", rt, strings.Join(Runtimes, ", "))
}
