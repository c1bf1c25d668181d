// Package pipeline wires the models, the aligner and the embedder together
// for the commands: photo path in, faces and embeddings out.
package pipeline

import (
	"fmt"

	"github.com/facever/facever/align"
	"github.com/facever/facever/facehead"
	"github.com/facever/facever/infer"
	"github.com/facever/facever/internal/session"
	"github.com/facever/facever/models"
)

// Config selects the models and runtime.
type Config struct {
	// ModelsDir is the --models flag (empty: models.Dir's defaults).
	ModelsDir string
	// Runtime is "opencv" or "engine" (empty: session.Default).
	Runtime string
	// Model names the backbone (models.Backbone; empty: the default).
	Model string
	// Detect tunes the detector.
	Detect align.Options
}

// Pipeline holds loaded models. Close releases them.
type Pipeline struct {
	Aligner  *align.Aligner
	Embedder *facehead.Embedder
	// Backbone is the catalogue entry of the backbone in use.
	Backbone models.Model
	sessions []infer.Session
	dir      string
	rt       string
}

// Open loads the detector and landmark models (and, when embed is true, the
// backbone).
func Open(cfg Config, embed bool) (*Pipeline, error) {
	backbone, err := models.BackboneIn(cfg.ModelsDir, cfg.Model)
	if err != nil {
		return nil, err
	}
	p := &Pipeline{dir: models.Dir(cfg.ModelsDir), rt: cfg.Runtime, Backbone: backbone}
	det, err := p.open(models.Detect)
	if err != nil {
		return nil, err
	}
	lmk, err := p.open(models.Landmark)
	if err != nil {
		p.Close()
		return nil, err
	}
	p.Aligner = align.New(det, lmk, cfg.Detect)
	if embed {
		fea, err := p.open(backbone)
		if err != nil {
			p.Close()
			return nil, err
		}
		p.Embedder = facehead.NewEmbedder(fea, backbone, nil)
	}
	return p, nil
}

// SetHead makes the embedder project backbone features through head.
func (p *Pipeline) SetHead(head facehead.Projector) {
	if p.Embedder != nil {
		p.Embedder = facehead.NewEmbedder(p.sessions[len(p.sessions)-1], p.Backbone, head)
	}
}

// ModelsDir is the models directory in use.
func (p *Pipeline) ModelsDir() string { return p.dir }

func (p *Pipeline) open(m models.Model) (infer.Session, error) {
	s, err := session.Open(p.rt, p.dir, m)
	if err != nil {
		return nil, err
	}
	p.sessions = append(p.sessions, s)
	return s, nil
}

// Close releases every model.
func (p *Pipeline) Close() {
	for _, s := range p.sessions {
		s.Close()
	}
	p.sessions = nil
}

// Align makes the chip the backbone needs from a detected face.
func (p *Pipeline) Align(im *align.Image, f align.Face) (align.Chip, error) {
	if p.Backbone.Chip == "dlib150" {
		return align.AlignDlib(im, f)
	}
	return align.Align(im, f)
}

// Photo is the outcome of finding a face in one photo.
type Photo struct {
	// Path is the file read.
	Path string
	// Faces are all faces found, largest first.
	Faces []align.Face
	// Chip is the aligned chosen face (the largest).
	Chip align.Chip
	// Width and Height of the photo.
	Width, Height int
	// Scale is the size the photo was read at (1, or 1/2, 1/4, 1/8 for a
	// large JPEG read reduced; see align.DecodeOptions).
	Scale float64
}

// Face loads a photo, finds its faces and aligns the largest. With aligned
// true the photo is taken to be an aligned face already (no detection).
// A photo without a face is align.ErrNoFace.
func (p *Pipeline) Face(path string, aligned bool) (*Photo, error) {
	im, err := align.Load(path)
	if err != nil {
		return nil, err
	}
	defer im.Close()
	ph := &Photo{Path: path, Scale: im.Scale}
	ph.Width, ph.Height = im.SourceSize()
	if aligned {
		ph.Chip = align.ChipFromImageSize(im, p.Backbone.Shape[3])
		return ph, nil
	}
	faces, err := p.Aligner.Detect(im)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(faces) == 0 {
		return nil, fmt.Errorf("%s: %w", path, align.ErrNoFace)
	}
	ph.Faces = faces
	ph.Chip, err = p.Align(im, faces[0])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ph, nil
}
