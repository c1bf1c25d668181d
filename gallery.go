package facever

import (
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/facever/facever/align"
	"github.com/facever/facever/enroll"
	"github.com/facever/facever/enroll/pgstore"
)

// EnvGallery names the environment variable that OpenGallery reads when
// it is given no gallery.
const EnvGallery = "FACEVER_GALLERY"

// IsPostgres reports whether spec names a PostgreSQL gallery: a URL
// starting postgres:// or postgresql://.
func IsPostgres(spec string) bool {
	s := strings.ToLower(spec)
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// GalleryName is spec fit to show in a message or a log: a URL's password
// is hidden.
func GalleryName(spec string) string {
	if !IsPostgres(spec) {
		return spec
	}
	u, err := url.Parse(spec)
	if err != nil {
		return "postgres://(a URL that does not parse)"
	}
	return u.Redacted()
}

// OpenGallery opens the gallery spec (when empty, $FACEVER_GALLERY's):
// a postgres:// or postgresql:// URL opens the PostgreSQL store shared by
// several servers (package enroll/pgstore), anything else the bbolt file
// at that path (created unless opts.ReadOnly). Errors name the gallery
// (without a URL's password) and wrap the enroll sentinels.
func OpenGallery(spec string, opts enroll.Options) (enroll.Store, error) {
	if spec == "" {
		spec = os.Getenv(EnvGallery)
	}
	if spec == "" {
		return nil, fmt.Errorf("%w: no gallery given (a file, or postgres://...; or $%s)", enroll.ErrInvalid, EnvGallery)
	}
	if IsPostgres(spec) {
		s, err := openPostgres(spec, opts)
		if err != nil {
			return nil, fmt.Errorf("gallery %s: %w", GalleryName(spec), err)
		}
		return s, nil
	}
	g, err := enroll.Open(spec, opts)
	if err != nil {
		return nil, fmt.Errorf("gallery %s: %w", spec, err)
	}
	return g, nil
}

// openPostgres opens a PostgreSQL gallery.
func openPostgres(spec string, opts enroll.Options) (enroll.Store, error) {
	s, err := pgstore.Open(spec, opts)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// OpenGallery opens (or creates, unless opts.ReadOnly) the gallery spec (see
// the function OpenGallery: a file, or a postgres:// URL) for this
// Recognizer's backbone and head: opts.Model and opts.Head are set, so that
// a gallery enrolled with other models fails with enroll.ErrModelMismatch
// instead of comparing incomparable embeddings.
func (r *Recognizer) OpenGallery(spec string, opts enroll.Options) (enroll.Store, error) {
	opts.Model, opts.Head = r.backbone.SHA256, r.headID
	return OpenGallery(spec, opts)
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
