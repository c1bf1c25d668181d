package facever

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"

	"github.com/facever/facever/align"
	"github.com/facever/facever/facehead"
	"github.com/facever/facever/internal/pipeline"
	"github.com/facever/facever/models"
)

// ErrClosed is returned by a Recognizer's methods after Close.
var ErrClosed = errors.New("facever: recognizer is closed")

// Options select the models, the runtime and the detector of a Recognizer.
// The zero value is usable: the default models from the default directory on
// the project's own engine.
type Options struct {
	// ModelsDir holds the model files (empty: $FACEVER_MODELS, else the
	// checkout's models/ directory; see models.Dir).
	ModelsDir string
	// Runtime runs the models: "engine" (the default, pure Go) or "opencv"
	// (OpenCV DNN through GoCV).
	Runtime string
	// Model names the backbone: "fr_feature" (the default) or
	// "dlib_resnet_v1".
	Model string
	// Head, when not empty, is a head file made by `facever train`:
	// embeddings are then its projection of the backbone feature. The head
	// must have been trained on Model.
	Head string
	// Detect tunes the face detector (zero fields: align.DefaultOptions).
	Detect align.Options
	// Aligned says that every photo is an aligned face chip already (for
	// example a PNG written by `facever align`): no detection and no warp;
	// the whole photo is the face.
	Aligned bool
	// Threshold is the cosine similarity at or above which two faces are the
	// same person, for Verify (0: the head's own calibrated threshold when
	// Head has one, else the backbone's default, Backbone().Threshold).
	Threshold float64
	// IdentifyThreshold is Identify's: the similarity at or above which the
	// best match of a search is that person (0: the head's own 1:N
	// threshold when Head has one, else the backbone's 1:N default,
	// Backbone().Identification(), measured on LFW's open set).
	IdentifyThreshold float64
	// Workers bounds how many photos are processed at once by concurrent
	// callers; each worker holds its own copy of the three models, loaded on
	// first need (0: the number of CPUs).
	Workers int
}

// Recognizer finds, aligns and embeds faces, verifies pairs and identifies
// people in galleries. It is safe for concurrent use by many goroutines:
// each call borrows one of up to Options.Workers loaded model sets, so calls
// run in parallel up to that bound and wait beyond it.
type Recognizer struct {
	opt      Options
	cfg      pipeline.Config
	backbone models.Model
	head     facehead.Projector
	headID   string
	thr      float64
	idThr    float64

	mu     sync.Mutex
	idle   []*pipeline.Pipeline // loaded, not in use
	loaded int                  // loaded in all (idle and in use)
	closed bool
	free   *sync.Cond // signalled when a pipeline is returned or on Close
}

// Open loads the models named by opt (one set of models; more are loaded
// as concurrent callers need them, up to opt.Workers) and returns a
// Recognizer. Close it to release the models.
func Open(opt Options) (*Recognizer, error) {
	backbone, err := models.BackboneIn(opt.ModelsDir, opt.Model)
	if err != nil {
		return nil, err
	}
	if opt.Workers <= 0 {
		opt.Workers = runtime.NumCPU()
	}
	r := &Recognizer{
		opt:      opt,
		cfg:      pipeline.Config{ModelsDir: opt.ModelsDir, Runtime: opt.Runtime, Model: opt.Model, Detect: opt.Detect},
		backbone: backbone,
		thr:      opt.Threshold,
		idThr:    opt.IdentifyThreshold,
	}
	r.free = sync.NewCond(&r.mu)
	if r.thr == 0 {
		r.thr = backbone.Threshold
	}
	if r.idThr == 0 {
		r.idThr = backbone.Identification()
	}
	if opt.Head != "" {
		h, err := facehead.LoadHead(opt.Head, backbone.SHA256)
		if err != nil {
			return nil, err
		}
		// A head's own thresholds, calibrated on its held-out people, stand
		// in for the backbone's unless the caller chose one.
		if t, ok := h.Thresholds(); ok {
			if opt.Threshold == 0 {
				r.thr = t.Verify
			}
			if opt.IdentifyThreshold == 0 && t.Identify != 0 {
				r.idThr = t.Identify
			}
		}
		data, err := os.ReadFile(opt.Head)
		if err != nil {
			return nil, fmt.Errorf("head: %w", err)
		}
		sum := sha256.Sum256(data)
		r.head, r.headID = h, hex.EncodeToString(sum[:])
	}
	// Load the first set now, so that a missing or corrupt model is Open's
	// error rather than the first call's.
	p, err := r.load()
	if err != nil {
		return nil, err
	}
	r.idle = append(r.idle, p)
	r.loaded = 1
	return r, nil
}

// load opens one set of models.
func (r *Recognizer) load() (*pipeline.Pipeline, error) {
	p, err := pipeline.Open(r.cfg, true)
	if err != nil {
		return nil, err
	}
	if r.head != nil {
		p.SetHead(r.head)
	}
	return p, nil
}

// get borrows a loaded pipeline, loading another when every one is busy and
// fewer than Workers are loaded, else waiting for one to be returned.
func (r *Recognizer) get() (*pipeline.Pipeline, error) {
	r.mu.Lock()
	for {
		if r.closed {
			r.mu.Unlock()
			return nil, ErrClosed
		}
		if n := len(r.idle); n > 0 {
			p := r.idle[n-1]
			r.idle = r.idle[:n-1]
			r.mu.Unlock()
			return p, nil
		}
		if r.loaded < r.opt.Workers {
			r.loaded++
			r.mu.Unlock()
			p, err := r.load()
			if err != nil {
				r.mu.Lock()
				r.loaded--
				r.free.Signal()
				r.mu.Unlock()
				return nil, err
			}
			return p, nil
		}
		r.free.Wait()
	}
}

// put returns a borrowed pipeline (closing it when the Recognizer was
// closed meanwhile).
func (r *Recognizer) put(p *pipeline.Pipeline) {
	r.mu.Lock()
	if r.closed {
		r.loaded--
		r.mu.Unlock()
		p.Close()
		return
	}
	r.idle = append(r.idle, p)
	r.free.Signal()
	r.mu.Unlock()
}

// with runs fn on a borrowed pipeline.
func (r *Recognizer) with(fn func(p *pipeline.Pipeline) error) error {
	p, err := r.get()
	if err != nil {
		return err
	}
	defer r.put(p)
	return fn(p)
}

// Close releases the models. Calls still running finish first on the models
// they hold (which are released when they return); later calls fail with
// ErrClosed. Close is idempotent.
func (r *Recognizer) Close() error {
	r.mu.Lock()
	idle := r.idle
	r.idle = nil
	r.loaded -= len(idle)
	r.closed = true
	r.free.Broadcast()
	r.mu.Unlock()
	for _, p := range idle {
		p.Close()
	}
	return nil
}

// Backbone is the catalogue entry of the backbone in use (name, sha256,
// input size, default threshold).
func (r *Recognizer) Backbone() models.Model { return r.backbone }

// Model is the backbone's name (Backbone().Name).
func (r *Recognizer) Model() string { return r.backbone.Name }

// HeadID is the hex sha256 of the head file's content ("" without a head):
// what galleries record to tell heads apart.
func (r *Recognizer) HeadID() string { return r.headID }

// Threshold is the similarity threshold of Verify.
func (r *Recognizer) Threshold() float64 { return r.thr }

// IdentifyThreshold is the similarity threshold of Identify (1:N).
func (r *Recognizer) IdentifyThreshold() float64 { return r.idThr }

// Dim is the length of the embeddings.
func (r *Recognizer) Dim() int {
	if r.head != nil {
		return r.head.OutDim()
	}
	return r.backbone.OutputShapes[0][1]
}
