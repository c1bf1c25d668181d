package facever

import (
	"fmt"

	"github.com/facever/facever/align"
	"github.com/facever/facever/enroll"
)

// OpenGallery opens (or creates, unless opts.ReadOnly) the gallery file at
// path for this Recognizer's backbone and head: opts.Model and opts.Head are
// set, so that a gallery enrolled with other models fails with
// enroll.ErrModelMismatch instead of comparing incomparable embeddings.
func (r *Recognizer) OpenGallery(path string, opts enroll.Options) (*enroll.Gallery, error) {
	opts.Model, opts.Head = r.backbone.SHA256, r.headID
	g, err := enroll.Open(path, opts)
	if err != nil {
		return nil, fmt.Errorf("gallery %s: %w", path, err)
	}
	return g, nil
}

// Identification is who the largest face of a photo is, among the people of
// a gallery.
type Identification struct {
	// Photo is the photo searched (its largest face).
	Photo *Photo
	// Top are the best-scoring people, best first (up to k).
	Top []enroll.Match
	// Match is Top[0] when its similarity reaches Threshold; nil when the
	// person is unknown.
	Match *enroll.Match
}

// Identify searches g for the largest face of im and returns the best k
// people (k < 1 means 1). g must have been opened with OpenGallery (or for
// the same backbone and head).
func (r *Recognizer) Identify(g enroll.Store, im *align.Image, k int) (*Identification, error) {
	ph, err := r.Embed(im, Largest)
	if err != nil {
		return nil, err
	}
	return r.identify(g, ph, k)
}

// IdentifyFile is Identify on the photo at path.
func (r *Recognizer) IdentifyFile(g enroll.Store, path string, k int) (*Identification, error) {
	ph, err := r.EmbedFile(path, Largest)
	if err != nil {
		return nil, err
	}
	return r.identify(g, ph, k)
}

func (r *Recognizer) identify(g enroll.Store, ph *Photo, k int) (*Identification, error) {
	k = max(k, 1)
	ms, err := g.Search(ph.Faces[0].Embedding, k)
	if err != nil {
		return nil, err
	}
	id := &Identification{Photo: ph, Top: ms}
	if len(ms) > 0 && float64(ms[0].Score) >= r.idThr {
		m := ms[0]
		id.Match = &m
	}
	return id, nil
}
