package main

import (
	"bytes"
	"errors"
	"fmt"
	"image/jpeg"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/facever/facever/align"
	"github.com/facever/facever/enroll"
)

// noCropsFlag is enroll's --no-crops.
var noCropsFlag = &cli.BoolFlag{Name: "no-crops", Usage: "keep only the templates, not each face's aligned 112×112 crop (a 3-6 KiB JPEG per face, shown by facever gallery crop and the web page)"}

// chipCrop is the crop enroll keeps of a face: its aligned chip as the
// JPEG facever serve keeps (align.Chip.JPEG, at most enroll.MaxCropBytes),
// nil with --no-crops. A chip that cannot be encoded (none the aligner
// makes) is enrolled without one rather than failing the enroll: the
// template is what recognition needs, and --json's has_crop says so.
func chipCrop(c *cli.Context, chip align.Chip) []byte {
	if c.Bool("no-crops") {
		return nil
	}
	b, err := chip.JPEG()
	if err != nil || len(b) > enroll.MaxCropBytes {
		return nil
	}
	return b
}

// missing is a gallery crop answer of exit status 1.
func missing(format string, args ...any) error {
	return cli.Exit(fmt.Sprintf(format, args...), exitNegative)
}

func galleryCropCommand() *cli.Command {
	cmd := &cli.Command{
		Name:      "crop",
		Usage:     "write the aligned face kept for one of a person's templates (a 112×112 JPEG)",
		ArgsUsage: "NAME|#ID FACE_ID --out FILE|-",
		Description: `Each face enroll adds keeps, beside its template, the aligned crop the model saw:
the 112×112 face (150×150 for dlib_resnet_v1) as a JPEG of 3-6 KiB. This writes
it, exactly as stored, to --out (mode 0600: it is biometric data; an existing
file is replaced), or to stdout with --out -. FACE_ID is the template's number
as facever gallery show lists it ("template #3": 3 or #3).

A face enrolled with --no-crops (enroll or serve), imported by facever
import-dlib, or enrolled before crops were kept has no crop: gallery show says
"no crop kept" for it.

Exit status: 0 when the crop was written; 1 when there is no such person, the
person has no such face, or the face has no crop kept; 2 on a usage error (a
missing or extra argument, a FACE_ID that is not a number, no --out) or any
other error (the gallery cannot be read, --out cannot be written).

Examples:
   facever gallery show --gallery team.db "Ada Lovelace"
   facever gallery crop --gallery team.db "Ada Lovelace" 3 --out ada-3.jpg
   facever gallery crop --gallery team.db "#7" 12 --out - > face.jpg
   facever gallery crop --server http://127.0.0.1:8080 --key $KEY "Ada Lovelace" 3 --out ada-3.jpg`,
		Flags: []cli.Flag{galleryFlag,
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "the JPEG file to write, or - for stdout"},
		},
		Action: func(c *cli.Context) error {
			fid, err := cropArgs(c)
			if err != nil {
				return err
			}
			g, err := openGallery(c, nil, true)
			if err != nil {
				return fail(err)
			}
			defer g.Close()
			it, err := g.Resolve(c.Args().First())
			switch {
			case errors.Is(err, enroll.ErrNotFound):
				return missing("no person %q in %s (see `facever gallery list`)", c.Args().First(), galleryName(c))
			case err != nil:
				return fail(err)
			}
			b, err := g.TemplateCrop(it.ID, fid)
			switch {
			case errors.Is(err, enroll.ErrNotFound), errors.Is(err, enroll.ErrTemplateNotFound):
				return missing("#%d %s has no face %d in %s (see `facever gallery show --gallery %s %q`)", it.ID, it.Name, fid, galleryName(c), gallerySpec(c), it.Name)
			case errors.Is(err, enroll.ErrNoCrop):
				return missing("face %d of #%d %s has no crop kept: it was enrolled with --no-crops, imported, or enrolled before crops were kept", fid, it.ID, it.Name)
			case err != nil:
				return fail(err)
			}
			return writeCrop(c, it, fid, b)
		},
	}
	return cmd
}

// cropArgs checks gallery crop's arguments and returns FACE_ID.
func cropArgs(c *cli.Context) (uint64, error) {
	if c.NArg() != 2 {
		return 0, cli.Exit(fmt.Sprintf("gallery crop needs the person and the face: NAME|#ID FACE_ID --out FILE|- (got %d argument(s))", c.NArg()), exitError)
	}
	arg := c.Args().Get(1)
	fid, err := strconv.ParseUint(strings.TrimPrefix(arg, "#"), 10, 64)
	if err != nil || fid == 0 {
		return 0, cli.Exit(fmt.Sprintf("FACE_ID %q is not a face's number: give the template number facever gallery show lists (\"template #3\": 3)", arg), exitError)
	}
	if c.String("out") == "" {
		return 0, cli.Exit("say where to write the crop: --out FILE, or --out - for stdout", exitError)
	}
	return fid, nil
}

// writeCrop writes crop b of face fid of it to --out, checked first (a
// JPEG of at most enroll.MaxCropBytes: a store checks what it keeps, so
// anything else is damage).
func writeCrop(c *cli.Context, it enroll.Identity, fid uint64, b []byte) error {
	if len(b) == 0 || enroll.CheckCrop(b) != nil {
		return fail(fmt.Errorf("%w: the crop of face %d of #%d %s is not a JPEG image", enroll.ErrCorrupt, fid, it.ID, it.Name))
	}
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return fail(fmt.Errorf("%w: the crop of face %d of #%d %s: %v", enroll.ErrCorrupt, fid, it.ID, it.Name, err))
	}
	out := c.String("out")
	if out == "-" {
		if _, err := c.App.Writer.Write(b); err != nil {
			return fail(fmt.Errorf("stdout: %w", err))
		}
		return nil
	}
	if err := writeFileAtomic(out, b); err != nil {
		return fail(err)
	}
	fmt.Fprintf(c.App.Writer, "wrote face %d of #%d %s to %s (%d×%d JPEG, %d bytes)\n", fid, it.ID, it.Name, out, cfg.Width, cfg.Height, len(b))
	return nil
}

// writeFileAtomic writes data to path through a temporary file beside it
// (mode 0600), synced and renamed over path: a failed write leaves path as
// it was.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("--out %s: %w", path, err)
	}
	_, werr := tmp.Write(data)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("--out %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("--out %s: %w", path, err)
	}
	return nil
}

// remoteCrop is gallery crop on --server: GET
// /v1/identities/{id}/faces/{face_id}/crop.
func remoteCrop(c *cli.Context, rm *remote) error {
	fid, err := cropArgs(c)
	if err != nil {
		return err
	}
	it, err := rm.resolve(c)
	if err != nil {
		var ec cli.ExitCoder
		if errors.As(err, &ec) && strings.HasPrefix(err.Error(), "no person ") {
			return cli.Exit(err.Error(), exitNegative)
		}
		return err
	}
	path := fmt.Sprintf("/v1/identities/%d/faces/%d/crop", it.ID, fid)
	b, err := rm.getBytes(path, enroll.MaxCropBytes)
	var re *remoteError
	switch {
	case errors.As(err, &re) && re.status == http.StatusNotFound && re.code == "no_crop":
		return missing("face %d of #%d %s has no crop kept on %s: it was enrolled with --no-crops, imported, or enrolled before crops were kept", fid, it.ID, it.Name, rm.base)
	case errors.As(err, &re) && re.status == http.StatusNotFound:
		return missing("#%d %s has no face %d on %s (see `facever gallery show --server %s %q`)", it.ID, it.Name, fid, rm.base, rm.base, it.Name)
	case err != nil:
		return fail(err)
	}
	return writeCrop(c, it, fid, b)
}

// getBytes GETs path and returns a 2xx answer's body, refused past limit
// bytes; any other answer is a *remoteError as do words it.
func (r *remote) getBytes(path string, limit int64) ([]byte, error) {
	req, err := http.NewRequest("GET", r.base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+r.key)
	resp, err := r.hc.Do(req)
	if err != nil {
		return nil, r.unreachable(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, r.refusal(resp.StatusCode, data)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("GET %s: the answer of %s is over %d bytes: not a crop", path, r.base, limit)
	}
	return b, nil
}
