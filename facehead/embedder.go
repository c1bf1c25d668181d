// Package facehead turns aligned faces into embeddings: a frozen, imported
// ONNX backbone, optionally followed by a trained projection (a "head", read
// from its file format here). Heads are learnt by package facehead/train
// with a margin, pair or proxy loss from package margin; this package links
// neither, so a verifier or a server does not carry the training code.
// Verification compares the unit-length embeddings with cosine similarity.
package facehead

import (
	"fmt"
	"math"

	"github.com/facever/facever/align"
	"github.com/facever/facever/infer"
	"github.com/facever/facever/models"
)

// Projector maps a unit-length backbone feature to a unit-length embedding:
// a trained head. Project must not allocate.
type Projector interface {
	// Project writes the embedding of feat into dst (len OutDim).
	Project(dst, feat []float32)
	// OutDim is the embedding size.
	OutDim() int
}

// MaxBatch is the largest number of faces run through the backbone at once.
const MaxBatch = 16

// Embedder computes face embeddings from aligned chips.
type Embedder struct {
	backbone infer.Session
	model    models.Model
	head     Projector
}

// NewEmbedder returns an embedder over a backbone session whose model is
// described by m (input name, normalisation, output). head may be nil: the
// embedding is then the normalised backbone feature.
func NewEmbedder(backbone infer.Session, m models.Model, head Projector) *Embedder {
	return &Embedder{backbone: backbone, model: m, head: head}
}

// Dim is the size of the embeddings Embed returns.
func (e *Embedder) Dim() int {
	if e.head != nil {
		return e.head.OutDim()
	}
	return e.model.OutputShapes[0][1]
}

// Features returns the L2-normalised backbone feature of each chip, running
// the backbone in batches of up to MaxBatch faces.
func (e *Embedder) Features(chips []align.Chip) ([][]float32, error) {
	out := make([][]float32, 0, len(chips))
	c, h, w := e.model.Shape[1], e.model.Shape[2], e.model.Shape[3]
	plane := h * w
	for start := 0; start < len(chips); start += MaxBatch {
		batch := chips[start:min(start+MaxBatch, len(chips))]
		x := infer.NewTensor(len(batch), c, h, w)
		for i, ch := range batch {
			if ch.Size != w || len(ch.Pix) != 3*plane {
				return nil, fmt.Errorf("face %d: chip has %d bytes, want %d (%d×%d RGB)", start+i, len(ch.Pix), 3*plane, w, h)
			}
			rgbToCHW(ch.Pix, x.Data[i*c*plane:(i+1)*c*plane], plane, e.model.Mean, e.model.Scale)
		}
		outs, err := e.backbone.Run(map[string]infer.Tensor{e.model.Input: x}, e.model.Outputs[:1])
		if err != nil {
			return nil, fmt.Errorf("backbone %s: %w", e.model.Name, err)
		}
		y := outs[0]
		if len(y.Data)%len(batch) != 0 {
			return nil, fmt.Errorf("backbone %s: %d output values for %d faces", e.model.Name, len(y.Data), len(batch))
		}
		d := len(y.Data) / len(batch)
		for i := range batch {
			f := append([]float32(nil), y.Data[i*d:(i+1)*d]...)
			if err := Normalize(f); err != nil {
				return nil, fmt.Errorf("face %d: %w", start+i, err)
			}
			out = append(out, f)
		}
	}
	return out, nil
}

// Embed returns the unit-length embedding of each chip: the backbone
// feature, projected by the head when there is one.
func (e *Embedder) Embed(chips []align.Chip) ([][]float32, error) {
	feats, err := e.Features(chips)
	if err != nil || e.head == nil {
		return feats, err
	}
	return e.Project(feats), nil
}

// Project applies the head (if any) to backbone features.
func (e *Embedder) Project(feats [][]float32) [][]float32 {
	if e.head == nil {
		return feats
	}
	out := make([][]float32, len(feats))
	for i, f := range feats {
		out[i] = make([]float32, e.head.OutDim())
		e.head.Project(out[i], f)
	}
	return out
}

// Normalize scales v to unit length in place. A zero or non-finite vector is
// an error.
func Normalize(v []float32) error {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	if s == 0 || math.IsNaN(s) || math.IsInf(s, 0) {
		return fmt.Errorf("embedding has norm %v", math.Sqrt(s))
	}
	inv := float32(1 / math.Sqrt(s))
	for i := range v {
		v[i] *= inv
	}
	return nil
}

// rgbToCHW converts interleaved RGB bytes to planar floats (p−mean)·scale.
func rgbToCHW(b []byte, dst []float32, plane int, mean, scale float32) {
	r, g, bl := dst[:plane], dst[plane:2*plane], dst[2*plane:3*plane]
	for i := 0; i < plane; i++ {
		r[i] = (float32(b[3*i]) - mean) * scale
		g[i] = (float32(b[3*i+1]) - mean) * scale
		bl[i] = (float32(b[3*i+2]) - mean) * scale
	}
}
