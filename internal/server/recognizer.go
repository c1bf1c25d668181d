package server

import (
	"errors"
	"sync"

	"github.com/facever/facever/align"
	"github.com/facever/facever/facehead"
	"github.com/facever/facever/internal/pipeline"
	"github.com/facever/facever/models"
)

// Recognizer is what the server needs of the models: find faces, align one,
// embed aligned faces. It must be safe for concurrent use. The server does
// everything around it (limits, decoding, batching, cancellation, the
// gallery), so that a fake Recognizer tests all of that in milliseconds.
type Recognizer interface {
	// Detect returns the faces in im, largest first, with their landmarks.
	Detect(im *align.Image) ([]align.Face, error)
	// AlignFace makes the backbone's input chip of face f of im.
	AlignFace(im *align.Image, f align.Face) (align.Chip, error)
	// EmbedChips returns the unit embedding of each chip. The server
	// passes at most facehead.MaxBatch chips per call.
	EmbedChips(chips []align.Chip) ([][]float32, error)
	// Backbone is the backbone in use (its name is reported by /healthz
	// and every answer).
	Backbone() models.Model
	// Threshold is the default decision threshold.
	Threshold() float64
}

// pipelineRecognizer is a Recognizer over internal/pipeline: a pool of
// aligners (one per worker, since a detector session runs one image at a
// time) and one embedder.
type pipelineRecognizer struct {
	aligners chan *pipeline.Pipeline
	embedP   *pipeline.Pipeline
	embedMu  sync.Mutex
	all      []*pipeline.Pipeline
	backbone models.Model
	thr      float64
}

// openPipeline loads workers aligners and one embedder (with the head file,
// when not empty).
func openPipeline(cfg pipeline.Config, workers int, head string) (*pipelineRecognizer, error) {
	r := &pipelineRecognizer{aligners: make(chan *pipeline.Pipeline, workers)}
	for i := 0; i < workers; i++ {
		p, err := pipeline.Open(cfg, false)
		if err != nil {
			r.Close()
			return nil, err
		}
		r.all = append(r.all, p)
		r.aligners <- p
	}
	p, err := pipeline.Open(cfg, true)
	if err != nil {
		r.Close()
		return nil, err
	}
	r.all = append(r.all, p)
	r.embedP = p
	r.backbone, r.thr = p.Backbone, p.Backbone.Threshold
	if head != "" {
		h, err := facehead.LoadHead(head, p.Backbone.SHA256)
		if err != nil {
			r.Close()
			return nil, err
		}
		p.SetHead(h)
	}
	return r, nil
}

func (r *pipelineRecognizer) Detect(im *align.Image) ([]align.Face, error) {
	p, ok := <-r.aligners
	if !ok {
		return nil, errShuttingDown
	}
	defer func() { r.aligners <- p }()
	return p.Aligner.Detect(im)
}

func (r *pipelineRecognizer) AlignFace(im *align.Image, f align.Face) (align.Chip, error) {
	return r.embedP.Align(im, f)
}

func (r *pipelineRecognizer) EmbedChips(chips []align.Chip) ([][]float32, error) {
	r.embedMu.Lock()
	defer r.embedMu.Unlock()
	if r.embedP == nil || r.embedP.Embedder == nil {
		return nil, errors.New("server: models closed")
	}
	return r.embedP.Embedder.Embed(chips)
}

func (r *pipelineRecognizer) Backbone() models.Model { return r.backbone }
func (r *pipelineRecognizer) Threshold() float64     { return r.thr }

// Close releases the models (after every request has finished).
func (r *pipelineRecognizer) Close() {
	r.embedMu.Lock()
	defer r.embedMu.Unlock()
	for _, p := range r.all {
		p.Close()
	}
	r.all = nil
	r.embedP = nil
}
