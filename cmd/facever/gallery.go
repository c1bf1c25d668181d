package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	fv "github.com/facever/facever"
	"github.com/facever/facever/align"
	"github.com/facever/facever/enroll"
	"github.com/facever/facever/models"
)

var galleryFlag = &cli.StringFlag{Name: "gallery", Aliases: []string{"g"}, Usage: "the gallery: a file (created by enroll; mode 0600: it holds biometric data), or postgres://USER@HOST:PORT/DB shared by several servers (default: $" + fv.EnvGallery + ")"}

// envGallery names the gallery when --gallery is not given.
const envGallery = fv.EnvGallery

// gallerySpec is --gallery, else $FACEVER_GALLERY ("" when neither).
func gallerySpec(c *cli.Context) string {
	if s := c.String("gallery"); s != "" {
		return s
	}
	return os.Getenv(envGallery)
}

// galleryName is the gallery as messages show it (a URL without its
// password).
func galleryName(c *cli.Context) string { return fv.GalleryName(gallerySpec(c)) }

// errNoGallery is the error of a command given no gallery.
var errNoGallery = cli.Exit("say which gallery: --gallery FILE, or --gallery postgres://USER@HOST:PORT/DB (or $"+fv.EnvGallery+")", exitError)

// fileOnly refuses a PostgreSQL gallery for a command that works on the
// file itself.
func fileOnly(c *cli.Context, what string) error {
	if spec := gallerySpec(c); spec == "" {
		return errNoGallery
	} else if fv.IsPostgres(spec) {
		return fail(fmt.Errorf("%s needs a gallery file; %s is a PostgreSQL database: %s", commandPath(c), fv.GalleryName(spec), what))
	}
	return nil
}

// headID identifies the --head file for galleries: its content's sha256.
func headID(c *cli.Context) (string, error) {
	p := c.String("head")
	if p == "" {
		return "", nil
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("--head: %w", err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// openGallery opens --gallery (a file or a postgres:// URL; else
// $FACEVER_GALLERY); with r, for r's backbone and head (a gallery of other
// models is refused), without, for any.
func openGallery(c *cli.Context, r *fv.Recognizer, readOnly bool) (enroll.Store, error) {
	opts := enroll.Options{ReadOnly: readOnly}
	if r != nil {
		opts.Model, opts.Head = r.Backbone().SHA256, r.HeadID()
	}
	return openSpec(c, opts)
}

// openSpec opens the command's gallery with opts.
func openSpec(c *cli.Context, opts enroll.Options) (enroll.Store, error) {
	spec := gallerySpec(c)
	if spec == "" {
		return nil, errNoGallery
	}
	if opts.ReadOnly && !fv.IsPostgres(spec) {
		if _, err := os.Stat(spec); err != nil {
			return nil, fmt.Errorf("gallery %s does not exist: create it with `facever enroll --gallery %s --name NAME PHOTO...`", spec, spec)
		}
	}
	return fv.OpenGallery(spec, opts)
}

// photoOutcome is a photo enroll took (a rejected one is a photoError).
type photoOutcome struct {
	Path     string         `json:"path"`
	Name     string         `json:"name,omitempty"` // bulk enroll: the person
	Enrolled bool           `json:"enrolled"`
	Skipped  string         `json:"skipped,omitempty"` // bulk enroll: "already_enrolled" (a rerun)
	Faces    int            `json:"face_count"`
	Face     map[string]any `json:"face,omitempty"`
	Template uint64         `json:"template_id,omitempty"`
	// HasCrop says, for an enrolled photo, whether the gallery keeps its
	// aligned face (false with --no-crops).
	HasCrop *bool `json:"has_crop,omitempty"`
}

func enrollCommand() *cli.Command {
	return &cli.Command{
		Name:      "enroll",
		Usage:     "add a person's photos to a gallery, or a folder of people",
		ArgsUsage: "--name NAME PHOTO... | --data DIR",
		Description: `Each photo is checked before it is enrolled: a photo with no face, with several
faces (unless --largest), whose face is smaller than --min-face pixels, or whose face
quality is below --min-quality is rejected with its reason; the others become templates of the person, all in one transaction.
Enrolling a name that exists adds photos to that person.

Each enrolled face keeps its aligned crop (the 112×112 face the model saw, a JPEG
of 3-6 KiB beside the 2 KiB template), so that the person's faces can be looked at
later (facever gallery crop, the web page of facever serve); --no-crops keeps the
templates only (has_crop false in --json).

A rejected photo is the line "rejected  PHOTO: error CODE: MESSAGE" (text) or the
entry {"path", "error": {"code", "message"}} (--json); the good photos are enrolled
all the same.

Exit status: 0 when every photo was enrolled, 2 when a photo was rejected (the others
are enrolled), none was enrolled, or on error.

Bulk enroll (--data DIR): one person per sub-folder of DIR, named by the folder
(symbolic links to folders and files followed; hidden and non-image files skipped
and listed on stderr). Photos are checked and embedded by --workers goroutines and
committed in order, --commit-every photos per transaction, with a progress bar on
stderr and one line per photo: "enrolled  PHOTO (NAME)", "skipped   PHOTO (NAME):
already enrolled" or "rejected  PHOTO: error CODE: MESSAGE". A photo whose content
(sha256) is already a template of its person is skipped before it is embedded, so
an interrupted bulk enroll is finished by running the same command again (a crash
loses at most the last uncommitted transaction). A photo that is already a template
of another person is rejected (duplicate_photo) unless --allow-duplicates. Exit
status: 0 when no photo was rejected, 2 otherwise.

Examples:
   facever enroll --gallery team.db --name "Ada Lovelace" ada1.jpg ada2.jpg
   facever enroll --gallery team.db --name bob --meta dept=R&D --largest party.jpg
   facever enroll --gallery team.db --data people/ --json > report.json
   facever enroll --gallery team.db --no-crops --name carol carol.jpg`,
		Flags: []cli.Flag{
			galleryFlag,
			&cli.StringFlag{Name: "name", Usage: "the person's name (not with --data)"},
			&cli.StringSliceFlag{Name: "meta", Usage: "metadata KEY=VALUE (repeatable)"},
			&cli.BoolFlag{Name: "largest", Usage: "when a photo holds several faces, enroll the largest instead of rejecting the photo"},
			&cli.IntFlag{Name: "min-face", Value: 40, Usage: "reject faces whose box is smaller than this many pixels on its shorter side"},
			&cli.Float64Flag{Name: "min-quality", Value: align.DefaultMinQuality, Usage: "reject faces whose quality score (0-1, see detect --json) is below this"},
			alignedFlag, headFlag, jsonFlag, scoreFlag,
			dataEnrollFlag, allowDupFlag, commitEveryFlag, workersFlag, noCropsFlag,
		},
		Action: func(c *cli.Context) error {
			if c.IsSet("data") {
				return bulkEnroll(c)
			}
			if !c.IsSet("name") {
				return cli.Exit("enroll needs --name NAME PHOTO... (or --data DIR: one person per sub-folder)", exitError)
			}
			if c.NArg() == 0 {
				return cli.Exit("enroll needs at least one photo", exitError)
			}
			meta := map[string]string{}
			for _, kv := range c.StringSlice("meta") {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return cli.Exit(fmt.Sprintf("--meta %q: write KEY=VALUE", kv), exitError)
				}
				meta[k] = v
			}
			r, err := openRecognizer(c)
			if err != nil {
				return fail(err)
			}
			defer r.Close()
			b := &batch{c: c}
			var outcomes []photoOutcome
			var rejected []photoError
			type entry struct {
				rejected bool
				i        int
			}
			var order []entry // outcomes and rejections, in the photos' order
			var chips []align.Chip
			for _, path := range c.Args().Slice() {
				o, chip, rej, err := checkPhoto(c, r, path)
				if err != nil {
					return fail(fmt.Errorf("%s: %w", path, err))
				}
				if rej != nil {
					b.failed++
					rejected = append(rejected, *rej)
					order = append(order, entry{true, len(rejected) - 1})
					continue
				}
				outcomes = append(outcomes, o)
				order = append(order, entry{false, len(outcomes) - 1})
				chips = append(chips, chip)
			}
			var ident enroll.Identity
			if len(chips) > 0 {
				embs, err := r.EmbedChips(chips)
				if err != nil {
					return fail(err)
				}
				ts := make([]enroll.Template, len(embs))
				for i, e := range embs {
					path := outcomes[i].Path
					ts[i] = enroll.Template{Embedding: e, Source: filepath.Base(path), PhotoSHA256: fileSHA(path), Crop: chipCrop(c, chips[i])}
				}
				g, err := openGallery(c, r, false)
				if err != nil {
					return fail(err)
				}
				var saved []enroll.Template
				ident, saved, err = g.Enroll(c.String("name"), meta, ts)
				g.Close()
				if err != nil {
					return fail(err)
				}
				for i, t := range saved {
					outcomes[i].Enrolled = true
					outcomes[i].Template = t.ID
					outcomes[i].HasCrop = &t.HasCrop
				}
			}
			photos := make([]any, len(order))
			for i, x := range order {
				if x.rejected {
					photos[i] = rejected[x.i]
				} else {
					photos[i] = &outcomes[x.i]
				}
			}
			if c.Bool("json") {
				doc := map[string]any{"gallery": galleryName(c), "photos": photos, "enrolled": len(chips)}
				if len(chips) > 0 {
					doc["identity"] = ident
				}
				if err := writeJSON(c.App.Writer, doc); err != nil {
					return fail(err)
				}
			} else {
				w := c.App.Writer
				for _, x := range photos {
					switch o := x.(type) {
					case *photoOutcome:
						fmt.Fprintf(w, "enrolled  %s\n", o.Path)
					case photoError:
						fmt.Fprintf(w, "rejected  %s\n", o)
					}
				}
				if len(chips) > 0 {
					fmt.Fprintf(w, "%s (id %d) now has %d template(s) in %s\n", ident.Name, ident.ID, ident.Templates, galleryName(c))
				}
			}
			if len(chips) == 0 {
				return cli.Exit("no photo was enrolled", exitError)
			}
			return b.end(nil)
		},
	}
}

// checkPhoto applies enroll's checks to one photo: the outcome (faces
// found, the face chosen) and its chip, or the rejection's entry; err is
// an error that is not the photo's fault (a model failure). Safe for
// concurrent use (the Recognizer is).
func checkPhoto(c *cli.Context, r *fv.Recognizer, path string) (o photoOutcome, chip align.Chip, rej *photoError, err error) {
	o = photoOutcome{Path: path}
	reject := func(err error, loading bool) (photoOutcome, align.Chip, *photoError, error) {
		e, ok := newPhotoError(path, err, loading)
		if !ok {
			return o, align.Chip{}, nil, err
		}
		return o, align.Chip{}, &e, nil
	}
	im, err := align.Load(path)
	if err != nil {
		return reject(err, true)
	}
	defer im.Close()
	if c.Bool("aligned") {
		o.Faces = 1
		return o, align.ChipFromImageSize(im, r.Backbone().Shape[3]), nil, nil
	}
	faces, err := r.Detect(im)
	if err != nil {
		return reject(err, false)
	}
	o.Faces = len(faces)
	f, err := fv.CheckEnrollFaces(faces, enrollPolicy(c))
	if err != nil {
		e := photoError{Path: path, Error: errorBody{Code: fv.PhotoErrorCode(err), Message: enrollReason(c, err)}}
		return o, align.Chip{}, &e, nil
	}
	o.Face = boxJSON(f)
	if q := f.Quality.Score; q < c.Float64("min-quality") {
		e := photoError{Path: path, Error: errorBody{Code: "low_quality", Message: fmt.Sprintf("face quality %.2f is below --min-quality %.2f (a partial, turned, blurred or badly lit face): use a photo of the whole face, upright and lit", q, c.Float64("min-quality"))}}
		return o, align.Chip{}, &e, nil
	}
	if chip, err = r.Align(im, f); err != nil {
		return reject(err, false)
	}
	return o, chip, nil, nil
}

func fileSHA(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

func identifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "identify",
		Usage:     "find who is in each photo among the people of a gallery",
		ArgsUsage: "PHOTO...",
		Description: `The largest face of each photo is compared with every template of the gallery;
each person scores by their best template. The best --top people are listed; the
photo is "unknown" when the best similarity is below --threshold.

A photo that cannot be read or holds no face is an error entry ("PHOTO: error CODE:
MESSAGE" on stdout, {"path", "error": {"code", "message"}} in --json) and the other
photos are still searched.

With --all-faces every face of each photo is searched (a group photo): each face
is listed with its box and its own match.

Exit status: 0 when every photo (every face, with --all-faces) matched someone,
1 when one came back unknown,
2 when a photo could not be used or on error.

Examples:
   facever identify --gallery team.db visitor.jpg
   facever identify --gallery team.db --top 3 --json a.jpg b.jpg`,
		Flags: []cli.Flag{
			galleryFlag,
			&cli.IntFlag{Name: "top", Value: 1, Usage: "how many best-matching people to list"},
			&cli.BoolFlag{Name: "all-faces", Usage: "identify every face of each photo (group photos), each with its box, instead of the largest"},
			&cli.BoolFlag{Name: "int8", Usage: "search a compact int8 copy of the templates (4× less memory, about 4× faster on large galleries; recall@1 0.99–1.00 against exact search)"},
			&cli.Float64Flag{Name: "threshold", Value: models.Feature.IdentifyThreshold, Usage: "similarity below which a photo is unknown (default: the model's 1:N threshold, 0.495 for fr_feature, measured on LFW for ≤ 1 % of strangers matched; see facever eval-identify)"},
			alignedFlag, headFlag, jsonFlag, scoreFlag,
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return cli.Exit("identify needs at least one photo", exitError)
			}
			if c.Int("top") < 1 {
				return cli.Exit("--top must be at least 1", exitError)
			}
			r, err := openRecognizer(c)
			if err != nil {
				return fail(err)
			}
			defer r.Close()
			g, err := openGallery(c, r, true)
			if err != nil {
				return fail(err)
			}
			ix, err := g.LoadIndex()
			g.Close()
			if err != nil {
				return fail(err)
			}
			if ix.Len() == 0 {
				return fail(fmt.Errorf("gallery %s holds no templates: enroll people first", galleryName(c)))
			}
			if c.Bool("int8") {
				ix = ix.Quantize()
			}
			s := ix.NewSearcher()
			defer s.Close()
			thr := identifyThresholdOf(c, r)
			type result struct {
				Path    string         `json:"path"`
				Faces   int            `json:"face_count"`
				Match   *enroll.Match  `json:"match"`
				Unknown bool           `json:"unknown"`
				Top     []enroll.Match `json:"top"`
			}
			// With --all-faces a photo's entry lists every face, each
			// with its own search.
			type faceResult struct {
				Box       [4]float64     `json:"box"`
				Score     float64        `json:"score"`
				Landmarks [][2]float64   `json:"landmarks"`
				Match     *enroll.Match  `json:"match"`
				Unknown   bool           `json:"unknown"`
				Top       []enroll.Match `json:"top"`
			}
			type groupResult struct {
				Path  string       `json:"path"`
				Faces []faceResult `json:"faces"`
				Count int          `json:"face_count"`
			}
			which := fv.Largest
			if c.Bool("all-faces") {
				which = fv.Every
			}
			var results []any
			b := &batch{c: c}
			unknown := 0
			for _, path := range c.Args().Slice() {
				ph, err := r.EmbedFile(path, which)
				if err != nil {
					e, ok := b.photoFailed(path, err, false)
					if !ok {
						return fail(err)
					}
					results = append(results, e)
					continue
				}
				if c.Bool("all-faces") {
					g := groupResult{Path: path, Count: ph.Detected, Faces: []faceResult{}}
					for i, f := range ph.Faces {
						ms, err := s.Search(f.Embedding, c.Int("top"))
						if err != nil {
							return fail(err)
						}
						fj := boxJSON(f.Face)
						fr := faceResult{Box: fj["box"].([4]float64), Score: fj["score"].(float64), Landmarks: fj["landmarks"].([][2]float64), Top: append([]enroll.Match(nil), ms...)}
						if len(ms) > 0 && float64(ms[0].Score) >= thr {
							m := ms[0]
							fr.Match = &m
						} else {
							fr.Unknown = true
							unknown++
						}
						g.Faces = append(g.Faces, fr)
						if !c.Bool("json") {
							box := fmt.Sprintf("face %d at %.0f,%.0f,%.0f,%.0f", i+1, f.Box[0], f.Box[1], f.Box[2], f.Box[3])
							if fr.Unknown {
								fmt.Fprintf(c.App.Writer, "%s: %s: unknown, below threshold %.3f\n", path, box, thr)
							} else {
								fmt.Fprintf(c.App.Writer, "%s: %s: %s (similarity %.3f)\n", path, box, fr.Match.Name, fr.Match.Score)
							}
						}
					}
					results = append(results, g)
					continue
				}
				ms, err := s.Search(ph.Faces[0].Embedding, c.Int("top"))
				if err != nil {
					return fail(err)
				}
				res := result{Path: path, Faces: ph.Detected, Top: append([]enroll.Match(nil), ms...)}
				if len(ms) > 0 && float64(ms[0].Score) >= thr {
					m := ms[0]
					res.Match = &m
				} else {
					res.Unknown = true
					unknown++
				}
				results = append(results, res)
				if !c.Bool("json") {
					w := c.App.Writer
					if res.Unknown {
						best := ""
						if len(ms) > 0 {
							best = fmt.Sprintf(" (closest: %s, similarity %.3f)", ms[0].Name, ms[0].Score)
						}
						fmt.Fprintf(w, "%s: unknown, below threshold %.3f%s\n", path, thr, best)
					} else {
						fmt.Fprintf(w, "%s: %s (similarity %.3f)\n", path, res.Match.Name, res.Match.Score)
					}
					if c.Int("top") > 1 {
						for i, m := range ms {
							fmt.Fprintf(w, "  %d. %s  %.3f\n", i+1, m.Name, m.Score)
						}
					}
				}
			}
			if c.Bool("json") {
				if err := writeJSON(c.App.Writer, map[string]any{"threshold": thr, "photos": results}); err != nil {
					return fail(err)
				}
			}
			if unknown > 0 {
				return b.end(cli.Exit("", exitNegative))
			}
			return b.end(nil)
		},
	}
}

func galleryCommand() *cli.Command {
	return &cli.Command{
		Name:  "gallery",
		Usage: "list, show, rename and remove the people of a gallery; check, back up and restore it",
		Description: `Examples:
   facever gallery list --gallery team.db
   facever gallery show --gallery team.db "Ada Lovelace"
   facever gallery crop --gallery team.db "Ada Lovelace" 3 --out ada-3.jpg
   facever gallery rename --gallery team.db bob "Bob Smith"
   facever gallery remove --gallery team.db "#7"
   facever gallery check --gallery team.db
   facever gallery backup --gallery team.db --to team-2026-12-01.db
   facever gallery restore --gallery team.db --from team-2026-12-01.db`,
		Subcommands: []*cli.Command{
			galleryCheckCommand(), galleryBackupCommand(), galleryRestoreCommand(), galleryMigrateCommand(), galleryCropCommand(),
			{
				Name:  "list",
				Usage: "every person with their number of templates",
				Flags: []cli.Flag{galleryFlag, jsonFlag},
				Action: func(c *cli.Context) error {
					g, err := openGallery(c, nil, true)
					if err != nil {
						return fail(err)
					}
					defer g.Close()
					ids, err := g.List()
					if err != nil {
						return fail(err)
					}
					if c.Bool("json") {
						return writeJSONOrFail(c, map[string]any{"gallery": g.Meta(), "identities": ids})
					}
					m := g.Meta()
					fmt.Fprintf(c.App.Writer, "%d people in %s (schema %d, backbone %s, head %s, %d-d)\n", len(ids), galleryName(c), m.Schema, shortSHA(m.Model), orNone(m.Head), m.Dim)
					for _, it := range ids {
						fmt.Fprintf(c.App.Writer, "  #%-5d %-30s %3d template(s)  enrolled %s\n", it.ID, it.Name, it.Templates, it.Created.Format("2006-01-02 15:04"))
					}
					return nil
				},
			},
			{
				Name:      "show",
				Usage:     "one person: metadata and templates",
				ArgsUsage: "NAME|#ID",
				Flags:     []cli.Flag{galleryFlag, jsonFlag},
				Action: func(c *cli.Context) error {
					g, it, err := resolveArg(c, true)
					if err != nil {
						return err
					}
					defer g.Close()
					ts, err := g.Templates(it.ID)
					if err != nil {
						return fail(err)
					}
					return printIdentity(c, it, ts)
				},
			},
			{
				Name:      "remove",
				Usage:     "delete a person and all their templates",
				ArgsUsage: "NAME|#ID",
				Flags:     []cli.Flag{galleryFlag, jsonFlag},
				Action: func(c *cli.Context) error {
					g, it, err := resolveArg(c, false)
					if err != nil {
						return err
					}
					defer g.Close()
					if err := g.Remove(it.ID); err != nil {
						return fail(err)
					}
					if c.Bool("json") {
						return writeJSONOrFail(c, map[string]any{"removed": it})
					}
					fmt.Fprintf(c.App.Writer, "removed #%d %s and %d template(s)\n", it.ID, it.Name, it.Templates)
					return nil
				},
			},
			{
				Name:      "rename",
				Usage:     "give a person a new name",
				ArgsUsage: "NAME|#ID NEW_NAME",
				Flags:     []cli.Flag{galleryFlag, jsonFlag},
				Action: func(c *cli.Context) error {
					if c.NArg() != 2 {
						return cli.Exit("rename needs the person and the new name", exitError)
					}
					g, it, err := resolveArg(c, false)
					if err != nil {
						return err
					}
					defer g.Close()
					if err := g.Rename(it.ID, c.Args().Get(1)); err != nil {
						return fail(err)
					}
					if c.Bool("json") {
						return writeJSONOrFail(c, map[string]any{"id": it.ID, "old_name": it.Name, "name": c.Args().Get(1)})
					}
					fmt.Fprintf(c.App.Writer, "#%d %s is now %s\n", it.ID, it.Name, c.Args().Get(1))
					return nil
				},
			},
		},
	}
}

// resolveArg opens the gallery and finds the identity named by the first argument.
func resolveArg(c *cli.Context, readOnly bool) (enroll.Store, enroll.Identity, error) {
	if c.NArg() < 1 {
		return nil, enroll.Identity{}, cli.Exit("name the person (NAME or #ID)", exitError)
	}
	g, err := openGallery(c, nil, readOnly)
	if err != nil {
		return nil, enroll.Identity{}, fail(err)
	}
	it, err := g.Resolve(c.Args().First())
	if err != nil {
		g.Close()
		if errors.Is(err, enroll.ErrNotFound) {
			return nil, enroll.Identity{}, fail(fmt.Errorf("no person %q in %s (see `facever gallery list`)", c.Args().First(), galleryName(c)))
		}
		return nil, enroll.Identity{}, fail(err)
	}
	return g, it, nil
}

func shortSHA(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return orNone(s)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return shortSHA(s)
}

func galleryCheckCommand() *cli.Command {
	return &cli.Command{
		Name:  "check",
		Usage: "look for damage: every record's checksum, the indexes, the counts, the page structure",
		Description: `Reads the whole gallery: each identity and template record's CRC-32C, the names and
photo indexes against the records, the record counts, the committed-transaction
counter (a rolled-back meta page), and the page structure (bbolt's tx.Check after a
crash-proof walk of its own). Read-only: it waits for a process writing to the gallery.

Exit status: 0 when the gallery is sound, 1 when damage was found (restore a backup
with facever gallery restore), 2 when the check could not run.`,
		Flags: []cli.Flag{galleryFlag, jsonFlag},
		Action: func(c *cli.Context) error {
			if err := fileOnly(c, "PostgreSQL checks its own data (data checksums, pg_amcheck); `facever gallery list` reads every identity"); err != nil {
				return err
			}
			path := gallerySpec(c)
			if _, err := os.Stat(path); err != nil {
				return fail(fmt.Errorf("gallery %s: %w", path, err))
			}
			g, err := enroll.Open(path, enroll.Options{ReadOnly: true})
			var r *enroll.CheckReport
			if errors.Is(err, enroll.ErrCorrupt) {
				// Too damaged to open: that is the finding.
				r = &enroll.CheckReport{Path: path, Problems: []string{err.Error()}}
			} else if err != nil {
				return fail(fmt.Errorf("gallery %s: %w", path, err))
			} else {
				r, err = g.Check()
				g.Close()
				if err != nil {
					return fail(fmt.Errorf("check %s: %w", path, err))
				}
			}
			if c.Bool("json") {
				if r.Problems == nil {
					r.Problems = []string{} // a sound gallery: [], not null
				}
				if err := writeJSONOrFail(c, r); err != nil {
					return err
				}
			} else {
				w := c.App.Writer
				fmt.Fprintf(w, "%s: transaction %d, %d identities, %d templates, %d photo index entries, %d crops, %d API keys\n", path, r.Txid, r.Identities, r.Templates, r.Photos, r.Crops, r.APIKeys)
				for _, p := range r.Problems {
					fmt.Fprintf(w, "  damage: %s\n", p)
				}
				if r.OK() {
					fmt.Fprintln(w, "sound: every record and page checks out")
				} else {
					fmt.Fprintf(w, "%d problem(s): restore a backup with `facever gallery restore --gallery %s --from BACKUP`\n", len(r.Problems), path)
				}
			}
			if !r.OK() {
				return cli.Exit("", exitNegative)
			}
			return nil
		},
	}
}

func galleryBackupCommand() *cli.Command {
	return &cli.Command{
		Name:  "backup",
		Usage: "write a consistent copy of the gallery to a file (also from a running server)",
		Description: `The copy is one read transaction's view of the gallery (bbolt's tx.WriteTo), written
to a temporary file beside --to, synced, checked like facever gallery check, and then
renamed over --to (mode 0600: it holds biometric data).

A running facever serve holds its gallery's lock: back it up through the server with
--server URL and an admin --key (or $FACEVER_SERVER and $FACEVER_KEY); the server
streams its copy (GET /v1/backup) while it goes on serving, and the copy is checked
here the same way before it replaces --to.

Examples:
   facever gallery backup -g team.db --to team-backup.db
   facever gallery backup --server http://127.0.0.1:8080 --key $ADMIN_KEY --to team-backup.db`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "gallery", Aliases: []string{"g"}, Usage: "the gallery file (not with --server)"},
			jsonFlag,
			&cli.StringFlag{Name: "to", Usage: "the backup file to write (replaced if it exists)", Required: true},
			&cli.StringFlag{Name: "server", EnvVars: []string{"FACEVER_SERVER"}, Usage: "back up a running facever serve at this URL instead of a gallery file"},
			&cli.StringFlag{Name: "key", EnvVars: []string{"FACEVER_KEY"}, Usage: "an admin API key of --server"},
			&cli.DurationFlag{Name: "timeout", Value: 10 * time.Minute, Usage: "how long the download from --server may take"}},
		Action: func(c *cli.Context) error {
			var info enroll.BackupInfo
			var from string
			switch {
			case c.String("server") != "" && c.String("gallery") != "":
				return cli.Exit("give --gallery or --server, not both", exitError)
			case c.String("server") != "":
				var err error
				from = c.String("server")
				if info, err = backupFromServer(from, c.String("key"), c.String("to"), c.Duration("timeout")); err != nil {
					return fail(err)
				}
			case gallerySpec(c) != "":
				if err := fileOnly(c, "back it up with pg_dump (or copy it into a file with `facever gallery migrate --from postgres://... --to FILE`)"); err != nil {
					return err
				}
				s, err := openGallery(c, nil, true)
				if err != nil {
					return fail(err)
				}
				defer s.Close()
				g := s.(*enroll.Gallery)
				from = g.Path()
				if info, err = g.Backup(c.String("to")); err != nil {
					return fail(err)
				}
			default:
				return cli.Exit("say what to back up: --gallery FILE, or --server URL of a running facever serve", exitError)
			}
			if c.Bool("json") {
				return writeJSONOrFail(c, info)
			}
			fmt.Fprintf(c.App.Writer, "backed up %s (transaction %d, %d bytes) to %s\n", from, info.Txid, info.Bytes, info.Path)
			return nil
		},
	}
}

func galleryRestoreCommand() *cli.Command {
	return &cli.Command{
		Name:  "restore",
		Usage: "replace the gallery with a backup",
		Description: `The backup is checked first (a damaged one is refused); then it replaces --gallery
(copied beside it, synced, renamed into place) and the gallery's transaction counter
is reset to the backup's. Whatever was enrolled after the backup is lost. The gallery
must not be open in another process: stop facever serve first.`,
		Flags: []cli.Flag{galleryFlag, jsonFlag,
			&cli.StringFlag{Name: "from", Usage: "the backup file (written by facever gallery backup)", Required: true},
			&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "how long to wait for another process to release the gallery"}},
		Action: func(c *cli.Context) error {
			if err := fileOnly(c, "restore it with pg_restore (or copy a gallery file into it with `facever gallery migrate --from FILE --to postgres://...`)"); err != nil {
				return err
			}
			info, err := enroll.Restore(c.String("from"), gallerySpec(c), c.Duration("timeout"))
			if err != nil {
				return fail(err)
			}
			if c.Bool("json") {
				return writeJSONOrFail(c, info)
			}
			fmt.Fprintf(c.App.Writer, "restored %s from %s (transaction %d, %d bytes)\n", info.Path, c.String("from"), info.Txid, info.Bytes)
			return nil
		},
	}
}

// printIdentity writes what `gallery show` says of identity it and its
// templates ts: the identity's line, its metadata and a line per
// template, or with --json one document.
func printIdentity(c *cli.Context, it enroll.Identity, ts []enroll.Template) error {
	if c.Bool("json") {
		return writeJSONOrFail(c, map[string]any{"identity": it, "templates": ts})
	}
	w := c.App.Writer
	fmt.Fprintf(w, "#%d %s, enrolled %s\n", it.ID, it.Name, it.Created.Format("2006-01-02 15:04"))
	for k, v := range it.Metadata {
		fmt.Fprintf(w, "  %s = %s\n", k, v)
	}
	for _, t := range ts {
		crop := "no crop kept"
		if t.HasCrop {
			crop = "crop kept"
		}
		fmt.Fprintf(w, "  template #%d from %s (%s), %s\n", t.ID, t.Source, t.Created.Format("2006-01-02 15:04"), crop)
	}
	return nil
}
