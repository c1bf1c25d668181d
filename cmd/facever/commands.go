package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	fv "github.com/facever/facever"
	"github.com/facever/facever/align"
)

// commands lists every subcommand of the CLI.
func commands() []*cli.Command {
	return guardServed([]*cli.Command{
		verifyCommand(),
		detectCommand(),
		alignCommand(),
		embedCommand(),
		evalCommand(),
		evalIdentifyCommand(),
		calibrateCommand(),
		enrollCommand(),
		identifyCommand(),
		remoteGalleryCommand(),
		trainCommand(),
		crossvalCommand(),
		serveCommand(),
		remoteAPIKeyCommand(),
		cacheCommand(),
		modelCommand(),
	})
}

var headFlag = &cli.StringFlag{Name: "head", Usage: "a head file made by facever train: embeddings are its projection of the backbone feature"}

// enrollPolicy is enroll's photo check from --largest and --min-face (0 or
// less: no minimum).
func enrollPolicy(c *cli.Context) fv.EnrollPolicy {
	p := fv.EnrollPolicy{Largest: c.Bool("largest"), MinFace: c.Int("min-face")}
	if p.MinFace <= 0 {
		p.MinFace = -1
	}
	return p
}

// enrollReason words a photo rejected by fv.CheckEnrollFaces with the
// flags that change the outcome.
func enrollReason(c *cli.Context, err error) string {
	var pe *fv.PhotoError
	switch {
	case !errors.As(err, &pe):
		return err.Error()
	case errors.Is(err, align.ErrNoFace):
		return "no face found"
	case errors.Is(err, align.ErrMultipleFaces):
		return fmt.Sprintf("%d faces found: crop the photo to one person, or pass --largest to enroll the largest face", pe.Faces)
	case errors.Is(err, fv.ErrFaceTooSmall):
		return fmt.Sprintf("face is %.0f pixels across, below --min-face %d: use a sharper, closer photo", pe.Side, pe.MinFace)
	}
	return err.Error()
}
