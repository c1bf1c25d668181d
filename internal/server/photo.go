package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	facever "github.com/facever/facever"
	"github.com/facever/facever/align"
)

// face is one photo's outcome: its faces and the chip of the chosen one.
type face struct {
	faces  []align.Face
	chosen align.Face
	chip   align.Chip
	// chips are every face's chip, in the order of faces (detectAll only).
	chips []align.Chip
	// scale is the size the photo was decoded at (1, or 1/2, 1/4, 1/8 for
	// a large JPEG read reduced); boxes are in the photo's own pixels.
	scale float64
}

// imageCost is what a decoded image of pixels may hold in memory while it
// is detected, as the decode budget counts it: 3 bytes per pixel (BGR),
// 6.75 more for the black-bordered copy the detector makes of a photo
// without a face found (1.5 times each side; small photos always get one),
// and 1 MiB for the detector's small copies and the chip.
func imageCost(pixels int) int64 { return (39*int64(pixels)+3)/4 + 1<<20 }

// urgentPixels is the largest photo of a verify or an identify that goes
// ahead of enroll photos and large photos (4 megapixels: 40 MiB decoded).
const urgentPixels = 4_000_000

// header reads an image's size from its header (align.ReadHeader: every
// format facever decodes), without decoding a pixel, and returns the most
// pixels its decoding may hold. A photo over the server's pixel limit is
// refused here, unless it is a baseline JPEG, which align.DecodeWith reads
// at 1/2, 1/4 or 1/8 of its size to fit the limit (or refuses).
func (s *Server) header(data []byte) (int, error) {
	if len(data) == 0 {
		return 0, fmt.Errorf("%w: empty file", align.ErrNotImage)
	}
	h, err := align.ReadHeader(data)
	if err != nil {
		return 0, err
	}
	px := h.Pixels()
	if px > int64(s.cfg.MaxPixels) {
		if h.Format != align.FormatJPEG || h.Progressive {
			return 0, fmt.Errorf("%w: the %s header says %d×%d pixels; this server accepts at most %d pixels (%.1f megapixels)", align.ErrTooLarge, h.Format, h.Width, h.Height, s.cfg.MaxPixels, float64(s.cfg.MaxPixels)/1e6)
		}
		px = reducedPixels(h.Width, h.Height, s.cfg.MaxPixels)
	}
	return int(px), nil
}

// reducedPixels is the size a baseline JPEG of w×h over limit pixels is
// decoded at: the least reduction of 1/2, 1/4, 1/8 that fits, as
// align.DecodeWith chooses it (a 48-megapixel photo under a 40-megapixel
// limit is read at 1/2, 12 megapixels, and counts 112 MiB of the decode
// budget, not the 373 MiB of the limit); limit when none fits (the
// decoder refuses it).
func reducedPixels(w, h, limit int) int64 {
	for _, f := range []int{2, 4, 8} {
		if px := int64((w+f-1)/f) * int64((h+f-1)/f); px <= int64(limit) {
			return px
		}
	}
	return int64(limit)
}

// detect checks an image's header, waits for its share of the decode
// budget, decodes it and aligns its largest face. With an enroll policy,
// the photo must pass facever.CheckEnrollFaces (the CLI's enroll check:
// one face unless Largest, at least MinFace pixels).
func (s *Server) detect(ctx context.Context, data []byte, policy *facever.EnrollPolicy) (*face, error) {
	return s.detectFaces(ctx, data, policy, alignOne)
}

// detectMode says what detectFaces aligns.
type detectMode int

const (
	alignOne  detectMode = iota // the chosen face (no face: ErrNoFace)
	alignAll                    // every face (no face: ErrNoFace)
	alignNone                   // none: boxes only, and no face is no error
)

// detectBoxes finds the faces of a photo without aligning any (none found:
// an empty list).
func (s *Server) detectBoxes(ctx context.Context, data []byte) (*face, error) {
	return s.detectFaces(ctx, data, nil, alignNone)
}

// detectAll is detect that also aligns every face of the photo (at most
// MaxFaces: 422 too_many_faces above it, before any is aligned).
func (s *Server) detectAll(ctx context.Context, data []byte) (*face, error) {
	return s.detectFaces(ctx, data, nil, alignAll)
}

func (s *Server) detectFaces(ctx context.Context, data []byte, policy *facever.EnrollPolicy, mode detectMode) (*face, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	px, err := s.header(data)
	if err != nil {
		return nil, err
	}
	cost := imageCost(px)
	// The photo of a verify or an identify of at most urgentPixels goes
	// first: a person waits for the answer, and it costs little.
	urgent := policy == nil && px <= urgentPixels
	if err := s.decode.acquire(ctx, cost, urgent); err != nil {
		return nil, err
	}
	defer s.decode.release(cost)
	im, err := align.DecodeWith(data, align.DecodeOptions{MaxPixels: s.cfg.MaxPixels})
	if err != nil {
		return nil, err
	}
	defer im.Close()
	if err := s.detectors.acquire(ctx, 1, urgent); err != nil {
		return nil, err
	}
	start := time.Now()
	faces, err := s.rec.Detect(im)
	s.metrics.model("detect", time.Since(start), 0)
	s.detectors.release(1)
	if err != nil {
		return nil, err
	}
	if mode == alignNone {
		return &face{faces: faces, scale: im.Scale}, nil
	}
	if len(faces) == 0 {
		return nil, align.ErrNoFace
	}
	chosen := faces[0]
	if policy != nil {
		if chosen, err = facever.CheckEnrollFaces(faces, *policy); err != nil {
			if errors.Is(err, align.ErrMultipleFaces) {
				return nil, fmt.Errorf("%w (send largest=true to enroll the largest)", err)
			}
			return nil, err
		}
	}
	chip, err := s.rec.Align(im, chosen)
	if err != nil {
		return nil, err
	}
	f := &face{faces: faces, chosen: chosen, chip: chip, scale: im.Scale}
	if mode == alignAll {
		fc := faceCounter{max: s.cfg.MaxFaces}
		if err := fc.add(len(faces)); err != nil {
			return nil, err
		}
		f.chips = make([]align.Chip, len(faces))
		f.chips[0] = chip
		for i := 1; i < len(faces); i++ {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if f.chips[i], err = s.rec.Align(im, faces[i]); err != nil {
				return nil, err
			}
		}
	}
	return f, nil
}

// faceCounter enforces MaxFaces over one request.
type faceCounter struct{ n, max int }

func (c *faceCounter) add(n int) error {
	c.n += n
	if c.n > c.max {
		return &apiError{http.StatusUnprocessableEntity, "too_many_faces", fmt.Sprintf("the photos of this request hold %d or more faces; this server reports at most %d per request", c.n, c.max)}
	}
	return nil
}
