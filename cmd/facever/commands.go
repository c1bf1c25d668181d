package main

import (
	"github.com/urfave/cli/v2"

	"github.com/facever/facever/internal/pipeline"
)

// commands lists every subcommand of the CLI.
func commands() []*cli.Command {
	return []*cli.Command{
		verifyCommand(),
		detectCommand(),
		alignCommand(),
		embedCommand(),
		evalCommand(),
		evalIdentifyCommand(),
		calibrateCommand(),
		enrollCommand(),
		identifyCommand(),
		galleryCommand(),
		trainCommand(),
		crossvalCommand(),
		serveCommand(),
		apikeyCommand(),
		cacheCommand(),
		modelCommand(),
	}
}

var headFlag = &cli.StringFlag{Name: "head", Usage: "a head file made by facever train: embeddings are its projection of the backbone feature"}

// useHead loads the --head file for the pipeline's backbone.
func useHead(c *cli.Context, p *pipeline.Pipeline) error {
	h, err := loadHead(c)
	if err != nil {
		return err
	}
	p.SetHead(h)
	return nil
}
