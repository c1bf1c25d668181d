package server

import (
	facever "github.com/facever/facever"
	"github.com/facever/facever/align"
)

// The root package's recognizer is what `facever serve` runs on.
var _ Recognizer = (*facever.Recognizer)(nil)

// Recognizer is what the server needs of the models: find faces, align one,
// embed aligned faces. It must be safe for concurrent use; the root
// package's *facever.Recognizer is one. The server does everything around
// it (limits, decoding, batching, cancellation, the gallery), so that a
// fake Recognizer tests all of that in milliseconds.
type Recognizer interface {
	// Detect returns the faces in im, largest first, with their landmarks.
	Detect(im *align.Image) ([]align.Face, error)
	// Align makes the backbone's input chip of face f of im.
	Align(im *align.Image, f align.Face) (align.Chip, error)
	// EmbedChips returns the unit embedding of each chip. The server
	// passes at most Config.MaxBatch chips per call.
	EmbedChips(chips []align.Chip) ([][]float32, error)
	// Model names the backbone (reported by /healthz and every answer).
	Model() string
	// Threshold is the default verification (1:1) threshold.
	Threshold() float64
	// IdentifyThreshold is the default identification (1:N) threshold.
	IdentifyThreshold() float64
}
