package facever

import (
	"fmt"

	"github.com/facever/facever/align"
	"github.com/facever/facever/internal/pipeline"
	"github.com/facever/facever/verify"
)

// Which says which faces of a photo Embed embeds.
type Which int

const (
	// Largest embeds the largest face only (by box area): the usual choice
	// for a portrait, a passport photo or a selfie.
	Largest Which = iota
	// Every embeds every face found, largest first: for group photos.
	Every
)

// Face is one face of a photo: where it is, its aligned chip and its
// embedding.
type Face struct {
	// Face is the detection: box, score and five landmarks, in the photo's
	// pixels. It is the zero value with Options.Aligned (the whole photo is
	// the face).
	align.Face
	// Chip is the aligned face the backbone saw.
	Chip align.Chip
	// Embedding is the unit-length embedding (length Recognizer.Dim);
	// compare two with verify.Cosine.
	Embedding []float32
}

// Photo is what Embed found in one photo.
type Photo struct {
	// Path is the file read (empty for Embed on a decoded image).
	Path string
	// Width and Height are the photo's size in pixels.
	Width, Height int
	// Scale is the size the photo was read at: 1, or 1/2, 1/4, 1/8 for a
	// large JPEG read reduced (align.DecodeOptions); boxes and landmarks
	// are in the photo's own coordinates either way.
	Scale float64
	// Detected is the number of faces the detector found (0 with
	// Options.Aligned: no detection ran).
	Detected int
	// Faces are the faces embedded, largest first: one with Largest (or
	// Options.Aligned), every face found with Every.
	Faces []Face
}

// Detect finds the faces of im, largest first, with their boxes, scores and
// five landmarks. A photo without a face is an empty slice, not an error.
// Detect runs the detector even with Options.Aligned.
func (r *Recognizer) Detect(im *align.Image) ([]align.Face, error) {
	var faces []align.Face
	err := r.with(func(p *pipeline.Pipeline) error {
		var err error
		faces, err = p.Aligner.Detect(im)
		return err
	})
	return faces, err
}

// DetectFile is Detect on the photo at path.
func (r *Recognizer) DetectFile(path string) ([]align.Face, error) {
	im, err := align.Load(path)
	if err != nil {
		return nil, err
	}
	defer im.Close()
	faces, err := r.Detect(im)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return faces, nil
}

// Align warps face f of im onto the chip the backbone expects (the
// ArcFace five-point template at 112×112 for fr_feature, dlib's 150×150
// chip for dlib_resnet_v1).
func (r *Recognizer) Align(im *align.Image, f align.Face) (align.Chip, error) {
	if r.backbone.Chip == "dlib150" {
		return align.AlignDlib(im, f)
	}
	return align.Align(im, f)
}

// Embed detects the faces of im, aligns the largest one or every one (see
// Which) and embeds them together (backbone runs of up to facehead.MaxBatch
// faces). A photo without a face is an error wrapping align.ErrNoFace. With
// Options.Aligned the whole photo is the face.
func (r *Recognizer) Embed(im *align.Image, which Which) (*Photo, error) {
	ph := &Photo{Scale: im.Scale}
	ph.Width, ph.Height = im.SourceSize()
	err := r.with(func(p *pipeline.Pipeline) error {
		if r.opt.Aligned {
			ph.Faces = []Face{{Chip: align.ChipFromImageSize(im, r.backbone.Shape[3])}}
		} else {
			found, err := p.Aligner.Detect(im)
			if err != nil {
				return err
			}
			if len(found) == 0 {
				return align.ErrNoFace
			}
			ph.Detected = len(found)
			if which != Every {
				found = found[:1]
			}
			for _, f := range found {
				chip, err := r.Align(im, f)
				if err != nil {
					return err
				}
				ph.Faces = append(ph.Faces, Face{Face: f, Chip: chip})
			}
		}
		chips := make([]align.Chip, len(ph.Faces))
		for i := range ph.Faces {
			chips[i] = ph.Faces[i].Chip
		}
		embs, err := p.Embedder.Embed(chips)
		if err != nil {
			return err
		}
		for i := range ph.Faces {
			ph.Faces[i].Embedding = embs[i]
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ph, nil
}

// EmbedFile is Embed on the photo at path; errors name the file.
func (r *Recognizer) EmbedFile(path string, which Which) (*Photo, error) {
	im, err := align.Load(path)
	if err != nil {
		return nil, err
	}
	defer im.Close()
	ph, err := r.Embed(im, which)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ph.Path = path
	return ph, nil
}

// EmbedChips embeds aligned chips (made by Align, or aligned photos
// through align.ChipFromImageSize), in backbone runs of up to
// facehead.MaxBatch chips.
func (r *Recognizer) EmbedChips(chips []align.Chip) ([][]float32, error) {
	var embs [][]float32
	err := r.with(func(p *pipeline.Pipeline) error {
		var err error
		embs, err = p.Embedder.Embed(chips)
		return err
	})
	return embs, err
}

// Verify says whether the largest faces of a and b are the same person:
// their cosine similarity against Threshold.
func (r *Recognizer) Verify(a, b *align.Image) (verify.Decision, error) {
	pa, err := r.Embed(a, Largest)
	if err != nil {
		return verify.Decision{}, fmt.Errorf("first photo: %w", err)
	}
	pb, err := r.Embed(b, Largest)
	if err != nil {
		return verify.Decision{}, fmt.Errorf("second photo: %w", err)
	}
	return verify.Decide(pa.Faces[0].Embedding, pb.Faces[0].Embedding, r.thr), nil
}

// VerifyFiles is Verify on the photos at paths a and b.
func (r *Recognizer) VerifyFiles(a, b string) (verify.Decision, error) {
	pa, err := r.EmbedFile(a, Largest)
	if err != nil {
		return verify.Decision{}, err
	}
	pb, err := r.EmbedFile(b, Largest)
	if err != nil {
		return verify.Decision{}, err
	}
	return verify.Decide(pa.Faces[0].Embedding, pb.Faces[0].Embedding, r.thr), nil
}
