package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	fv "github.com/facever/facever"
	"github.com/facever/facever/enroll"
	"github.com/facever/facever/internal/progress"
)

func galleryMigrateCommand() *cli.Command {
	return &cli.Command{
		Name:      "migrate",
		Usage:     "copy a gallery into another: a file into PostgreSQL (or back), verified by counts and checksums",
		ArgsUsage: "--from GALLERY --to GALLERY",
		Description: `Copies every identity (its id, name, metadata and created time), every template
(its id, created time, source, photo sha256 and embedding, bit for bit, and its
face crop, the aligned JPEG enroll keeps, byte for byte), the API keys
(their sha256: the keys themselves were never stored) and the model and head tags
from --from into --to. Ids are preserved, so that clients' references stay valid.
Idempotency records (remembered for 24 h) are not copied.

The source is opened read-only and, when it is a file, checked first like facever
gallery check: a damaged source is refused. --to must be empty (a new file or a new
database); --resume finishes an interrupted migration of the same source, copying
what is missing and checking what is there. Each identity is copied in one
transaction with its templates.

Then both sides are read back and compared: the numbers of identities, templates,
crops and API keys, and a sha256 over every identity's name and its templates'
embeddings and crops (and one over the API key hashes). Any difference fails the
migration.

Exit status: 0 when everything was copied and verified, 2 otherwise.

Examples:
   facever gallery migrate --from team.db --to postgres://facever@db.internal:5432/facever
   facever gallery migrate --from team.db --to postgres://facever@db.internal:5432/facever --resume --json`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "from", Usage: "the gallery to copy: a file or postgres://...", Required: true},
			&cli.StringFlag{Name: "to", Usage: "the gallery to fill: a file (created) or postgres://... (an empty database)", Required: true},
			&cli.BoolFlag{Name: "resume", Usage: "--to already holds part (or all) of this same source: copy what is missing, check the rest"},
			jsonFlag,
		},
		Action: func(c *cli.Context) error {
			rep, err := migrate(c.String("from"), c.String("to"), c.Bool("resume"), c.App.ErrWriter)
			if err != nil {
				return fail(err)
			}
			if c.Bool("json") {
				return writeJSONOrFail(c, rep)
			}
			w := c.App.Writer
			fmt.Fprintf(w, "migrated %s to %s in %.1f s: %d identities (%d copied, %d already there), %d templates, %d crops (%d copied), %d API keys (%d copied); ids preserved\n",
				rep.From, rep.To, rep.Seconds, rep.Identities, rep.CopiedIdentities, rep.Identities-rep.CopiedIdentities, rep.Templates, rep.Crops, rep.CopiedCrops, rep.APIKeys, rep.CopiedAPIKeys)
			fmt.Fprintf(w, "verified: both sides hold %d identities, %d templates, %d crops, %d API keys; checksum %s\n", rep.Identities, rep.Templates, rep.Crops, rep.APIKeys, rep.Checksum)
			return nil
		},
	}
}

// migrateReport is what gallery migrate did (its --json).
type migrateReport struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Model, Head and Dim are the tags copied.
	Model string `json:"model,omitempty"`
	Head  string `json:"head,omitempty"`
	Dim   int    `json:"dim"`
	// Identities, Templates, Crops (templates that keep their face crop)
	// and APIKeys are the counts, equal on both sides.
	Identities int `json:"identities"`
	Templates  int `json:"templates"`
	Crops      int `json:"crops"`
	APIKeys    int `json:"api_keys"`
	// CopiedIdentities and CopiedAPIKeys are what this run wrote (less than
	// the counts on a --resume).
	CopiedIdentities int `json:"copied_identities"`
	CopiedTemplates  int `json:"copied_templates"`
	CopiedCrops      int `json:"copied_crops"`
	CopiedAPIKeys    int `json:"copied_api_keys"`
	// IDs says how identities were numbered in --to: "preserved".
	IDs string `json:"ids"`
	// Checksum is the sha256 over the names, embeddings and crops, KeysChecksum
	// over the API key hashes: equal on both sides.
	Checksum     string `json:"checksum"`
	KeysChecksum string `json:"api_keys_checksum"`
	// Seconds is the whole run; CopySeconds and VerifySeconds its two
	// parts.
	Seconds       float64 `json:"seconds"`
	CopySeconds   float64 `json:"copy_seconds"`
	VerifySeconds float64 `json:"verify_seconds"`
}

// migrate copies from into to (see galleryMigrateCommand), reporting
// progress on progressTo.
func migrate(from, to string, resume bool, progressTo io.Writer) (*migrateReport, error) {
	start := time.Now()
	if from == to {
		return nil, fmt.Errorf("--from and --to are the same gallery")
	}
	rep := &migrateReport{From: fv.GalleryName(from), To: fv.GalleryName(to), IDs: "preserved"}
	src, err := fv.OpenGallery(from, enroll.Options{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	defer src.Close()
	if g, ok := src.(*enroll.Gallery); ok {
		r, err := g.Check()
		if err != nil {
			return nil, fmt.Errorf("--from: check %s: %w", rep.From, err)
		}
		if !r.OK() {
			return nil, fmt.Errorf("--from: %s is damaged (%d problem(s); first: %s): nothing was copied; restore a backup (facever gallery restore) or see facever gallery check", rep.From, len(r.Problems), r.Problems[0])
		}
	}
	srcKeys, ok := src.(enroll.Importer)
	if !ok {
		return nil, fmt.Errorf("--from: %T cannot list its API key records", src)
	}
	meta := src.Meta()
	rep.Model, rep.Head, rep.Dim = meta.Model, meta.Head, meta.Dim
	// The target takes whatever the source holds: its own limits apply to
	// later writes.
	dst, err := fv.OpenGallery(to, enroll.Options{Model: meta.Model, Head: meta.Head, MaxMetadataKeys: -1, MaxMetadataBytes: -1})
	if err != nil {
		if errors.Is(err, enroll.ErrModelMismatch) {
			return nil, fmt.Errorf("--to: %w: it cannot take this source's templates", err)
		}
		return nil, fmt.Errorf("--to: %w", err)
	}
	defer dst.Close()
	im, ok := dst.(enroll.Importer)
	if !ok {
		return nil, fmt.Errorf("--to: %T cannot import records as they are", dst)
	}
	if m := dst.Meta(); meta.Dim != 0 && m.Dim != 0 && m.Dim != meta.Dim {
		return nil, fmt.Errorf("--to: %w: its templates have %d values, the source's %d", enroll.ErrDimension, m.Dim, meta.Dim)
	}
	people, err := src.List()
	if err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	keys, err := srcKeys.APIKeyRecords()
	if err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	there, err := dst.List()
	if err != nil {
		return nil, fmt.Errorf("--to: %w", err)
	}
	thereKeys, err := im.APIKeyRecords()
	if err != nil {
		return nil, fmt.Errorf("--to: %w", err)
	}
	if (len(there) > 0 || len(thereKeys) > 0) && !resume {
		return nil, fmt.Errorf("--to: %s already holds %d identities and %d API keys: migrate copies into an empty gallery (a new file or database); to finish an interrupted migration of this same source, add --resume", rep.To, len(there), len(thereKeys))
	}
	have := make(map[uint64]enroll.Identity, len(there))
	for _, it := range there {
		have[it.ID] = it
	}
	bar := progress.New(progressTo, "migrating", len(people))
	for i, it := range people {
		ts, err := src.Templates(it.ID)
		if err != nil {
			return nil, fmt.Errorf("--from: identity %d (%q): %w", it.ID, it.Name, err)
		}
		if old, ok := have[it.ID]; ok {
			// --resume: copied before (all at once); the checksums below
			// compare it.
			if old.Name != it.Name {
				return nil, fmt.Errorf("--to: identity %d is %q there and %q in the source: --to is not a copy of this source", it.ID, old.Name, it.Name)
			}
		} else {
			crops, err := readCrops(src, it, ts)
			if err != nil {
				return nil, fmt.Errorf("--from: %w", err)
			}
			if err := im.ImportIdentity(it, ts); err != nil {
				if errors.Is(err, enroll.ErrExists) {
					return nil, fmt.Errorf("--to: identity %d (%q): %w: --to holds other people (not a copy of this source)", it.ID, it.Name, err)
				}
				return nil, fmt.Errorf("--to: identity %d (%q): %w (the %d identities copied before stay: rerun with --resume)", it.ID, it.Name, err, rep.CopiedIdentities)
			}
			rep.CopiedIdentities++
			rep.CopiedTemplates += len(ts)
			rep.CopiedCrops += crops
		}
		bar.Set(i+1, "")
	}
	bar.Done()
	haveKeys := map[string]bool{}
	for _, k := range thereKeys {
		haveKeys[k.Hash] = true
	}
	for _, k := range keys {
		if haveKeys[k.Hash] {
			continue
		}
		if err := im.ImportAPIKey(k); err != nil {
			return nil, fmt.Errorf("--to: API key %s… (%s): %w", k.Prefix, k.Name, err)
		}
		rep.CopiedAPIKeys++
	}
	// Verify: read both sides back.
	copied := time.Now()
	a, err := digestStore(src)
	if err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	b, err := digestStore(dst)
	if err != nil {
		return nil, fmt.Errorf("--to: %w", err)
	}
	if a != b {
		return nil, fmt.Errorf("verification failed: the source holds %s, --to holds %s", a, b)
	}
	if m := dst.Meta(); m.Model != meta.Model || m.Head != meta.Head || m.Dim != meta.Dim {
		return nil, fmt.Errorf("verification failed: --to is tagged backbone %s head %s dim %d, the source %s %s %d", shortSHA(m.Model), orNone(m.Head), m.Dim, shortSHA(meta.Model), orNone(meta.Head), meta.Dim)
	}
	rep.Identities, rep.Templates, rep.Crops, rep.APIKeys = a.identities, a.templates, a.crops, a.keys
	rep.Checksum, rep.KeysChecksum = a.sum, a.keySum
	secs := func(d time.Duration) float64 { return math.Round(d.Seconds()*100) / 100 }
	rep.Seconds, rep.CopySeconds, rep.VerifySeconds = secs(time.Since(start)), secs(copied.Sub(start)), secs(time.Since(copied))
	return rep, nil
}

// readCrops fills the Crop of each template of it (ts, from s.Templates)
// that HasCrop, for ImportIdentity, and returns how many it read. A crop
// gone since the list (a template removed meanwhile from a PostgreSQL
// source in use) is left out; the verification then tells.
func readCrops(s enroll.Store, it enroll.Identity, ts []enroll.Template) (int, error) {
	n := 0
	for i := range ts {
		if !ts[i].HasCrop {
			continue
		}
		b, err := s.TemplateCrop(it.ID, ts[i].ID)
		if errors.Is(err, enroll.ErrNoCrop) || errors.Is(err, enroll.ErrTemplateNotFound) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("identity %d (%q): the crop of template %d: %w", it.ID, it.Name, ts[i].ID, err)
		}
		ts[i].Crop = b
		n++
	}
	return n, nil
}

// storeDigest is what migrate compares of two stores.
type storeDigest struct {
	identities, templates, crops, keys int
	sum, keySum                        string
}

func (d storeDigest) String() string {
	return fmt.Sprintf("%d identities, %d templates, %d crops, %d API keys, checksum %.16s…, keys checksum %.16s…", d.identities, d.templates, d.crops, d.keys, d.sum, d.keySum)
}

// digestStore reads every identity and template of s: the counts and a
// sha256 over, for each identity in the byte order of its name, the name,
// the number of templates and, in enrolment order, each template's
// embedding (float32 bits, little endian) and its crop (its length, 0 for
// none, and its bytes); and a sha256 over the sorted API key hashes.
func digestStore(s enroll.Store) (storeDigest, error) {
	var d storeDigest
	people, err := s.List()
	if err != nil {
		return d, err
	}
	sort.Slice(people, func(i, j int) bool { return people[i].Name < people[j].Name })
	h := sha256.New()
	var buf []byte
	for _, it := range people {
		ts, err := s.Templates(it.ID)
		if err != nil {
			return d, fmt.Errorf("identity %d (%q): %w", it.ID, it.Name, err)
		}
		buf = binary.LittleEndian.AppendUint32(buf[:0], uint32(len(it.Name)))
		buf = append(buf, it.Name...)
		buf = binary.LittleEndian.AppendUint32(buf, uint32(len(ts)))
		for _, t := range ts {
			buf = binary.LittleEndian.AppendUint32(buf, uint32(len(t.Embedding)))
			for _, x := range t.Embedding {
				buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(x))
			}
			var crop []byte
			if t.HasCrop {
				if crop, err = s.TemplateCrop(it.ID, t.ID); err != nil {
					return d, fmt.Errorf("identity %d (%q): the crop of template %d: %w", it.ID, it.Name, t.ID, err)
				}
				d.crops++
			}
			buf = binary.LittleEndian.AppendUint32(buf, uint32(len(crop)))
			buf = append(buf, crop...)
		}
		h.Write(buf)
		d.templates += len(ts)
	}
	d.identities = len(people)
	d.sum = hex.EncodeToString(h.Sum(nil))
	im, ok := s.(enroll.Importer)
	if !ok {
		return d, fmt.Errorf("%T cannot list its API key records", s)
	}
	recs, err := im.APIKeyRecords()
	if err != nil {
		return d, err
	}
	hashes := make([]string, len(recs))
	for i, r := range recs {
		hashes[i] = r.Hash
	}
	slices.Sort(hashes)
	d.keys = len(hashes)
	ks := sha256.Sum256([]byte(strings.Join(hashes, "\n")))
	d.keySum = hex.EncodeToString(ks[:])
	return d, nil
}
