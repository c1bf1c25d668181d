package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	fv "github.com/facever/facever"
	"github.com/facever/facever/align"
	"github.com/facever/facever/dataset"
	"github.com/facever/facever/enroll"
	"github.com/facever/facever/internal/progress"
)

// Flags of the bulk enroll (enroll --data).
var (
	dataEnrollFlag  = &cli.StringFlag{Name: "data", Usage: "enroll one person per sub-folder of this folder (name = folder name) instead of --name PHOTO..."}
	allowDupFlag    = &cli.BoolFlag{Name: "allow-duplicates", Usage: "with --data: enroll a photo under a person although the same photo (same content) is a template of another person"}
	commitEveryFlag = &cli.IntFlag{Name: "commit-every", Value: 64, Usage: "with --data: photos per transaction (one fsync each; a crash loses at most the uncommitted ones, which a rerun enrolls)"}
	workersFlag     = &cli.IntFlag{Name: "workers", Usage: "with --data: photos embedded in parallel (default: the number of CPUs)"}
)

// bulkJob is one photo of the walked folder.
type bulkJob struct {
	name, path string
}

// bulkResult is what a worker made of one photo: a template to commit, a
// photo already in the gallery, or a rejection.
type bulkResult struct {
	outcome  photoOutcome
	template *enroll.Template
	rej      *photoError
	err      error // not the photo's fault: stops the enroll
}

// bulkEnroll is `enroll --data DIR`: every photo of every person folder,
// checked and embedded by --workers goroutines, committed in the photos'
// order in transactions of --commit-every photos. A photo whose content is
// already a template of its person is skipped before it is embedded, so a
// rerun finishes an interrupted enroll; one that is a template of another
// person is refused (duplicate_photo) unless --allow-duplicates.
func bulkEnroll(c *cli.Context) error {
	switch {
	case c.NArg() > 0:
		return cli.Exit("enroll --data takes no photo arguments: the photos are the folder's", exitError)
	case c.IsSet("name"):
		return cli.Exit("enroll --data names each person by their folder: drop --name", exitError)
	case len(c.StringSlice("meta")) > 0:
		return cli.Exit("enroll --data does not take --meta", exitError)
	case c.Int("commit-every") < 1:
		return cli.Exit("--commit-every must be at least 1", exitError)
	}
	start := time.Now()
	set, err := walkData(c, c.String("data"))
	if err != nil {
		return fail(err)
	}
	workers := c.Int("workers")
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	cfg := pipelineConfig(c)
	r, err := fv.Open(fv.Options{
		ModelsDir: cfg.ModelsDir, Runtime: cfg.Runtime, Model: cfg.Model, Detect: cfg.Detect,
		Head: c.String("head"), Aligned: c.Bool("aligned"), Workers: workers,
	})
	if err != nil {
		return fail(err)
	}
	defer r.Close()
	g, err := openGallery(c, r, false)
	if err != nil {
		return fail(err)
	}
	defer g.Close()

	var jobs []bulkJob
	for _, p := range set.People {
		for _, ph := range p.Photos {
			jobs = append(jobs, bulkJob{p.Name, ph})
		}
	}
	// Identities by name, for the check before embedding.
	var idsMu sync.Mutex
	ids := map[string]uint64{}
	identityOf := func(name string) (uint64, error) {
		idsMu.Lock()
		defer idsMu.Unlock()
		if id, ok := ids[name]; ok {
			return id, nil
		}
		it, err := g.GetByName(name)
		if errors.Is(err, enroll.ErrNotFound) {
			return 0, nil // not yet: looked up again next time
		} else if err != nil {
			return 0, err
		}
		ids[name] = it.ID
		return it.ID, nil
	}
	work := func(j bulkJob) bulkResult {
		o := photoOutcome{Path: j.path, Name: j.name}
		data, err := os.ReadFile(j.path)
		if err != nil {
			e, _ := newPhotoError(j.path, err, true)
			return bulkResult{rej: &e}
		}
		sum := sha256.Sum256(data)
		sha := hex.EncodeToString(sum[:])
		held, err := g.FindPhoto(sha)
		if err != nil {
			return bulkResult{err: err}
		}
		if len(held) > 0 {
			id, err := identityOf(j.name)
			if err != nil {
				return bulkResult{err: err}
			}
			for _, t := range held {
				if t.IdentityID == id {
					o.Skipped, o.Template = "already_enrolled", t.ID
					return bulkResult{outcome: o}
				}
			}
			if !c.Bool("allow-duplicates") {
				e := duplicateError(g, j.path, held[0])
				return bulkResult{rej: &e}
			}
		}
		o2, chip, rej, err := checkPhoto(c, r, j.path)
		if err != nil || rej != nil {
			return bulkResult{rej: rej, err: err}
		}
		o2.Name = j.name
		embs, err := r.EmbedChips([]align.Chip{chip})
		if err != nil {
			return bulkResult{err: err}
		}
		return bulkResult{outcome: o2, template: &enroll.Template{Embedding: embs[0], Source: filepath.Base(j.path), PhotoSHA256: sha, Crop: chipCrop(c, chip)}}
	}

	// Workers take photos in order; results are committed in order.
	results := make([]chan bulkResult, len(jobs))
	for i := range results {
		results[i] = make(chan bulkResult, 1)
	}
	next := make(chan int)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		defer close(next)
		for i := range jobs {
			select {
			case next <- i:
			case <-stop:
				return
			}
		}
	}()
	for w := 0; w < workers; w++ {
		go func() {
			for i := range next {
				results[i] <- work(jobs[i])
			}
		}()
	}

	bar := progress.New(c.App.ErrWriter, "enrolling", len(jobs))
	var photos []any
	var enrolled, skipped, rejected int
	var batchItems []enroll.BatchItem
	var pending []bulkResult // since the last commit, in order
	commit := func() error {
		var res []enroll.BatchResult
		if len(batchItems) > 0 {
			var err error
			if res, err = g.EnrollBatch(batchItems, c.Bool("allow-duplicates")); err != nil {
				return err
			}
		}
		k := 0
		for _, p := range pending {
			var entry any
			switch {
			case p.rej != nil:
				rejected++
				entry = *p.rej
			case p.template != nil:
				br := res[k]
				k++
				switch {
				case errors.Is(br.Err, enroll.ErrAlreadyEnrolled):
					skipped++
					p.outcome.Skipped, p.outcome.Template = "already_enrolled", br.Template.ID
					entry = p.outcome
				case errors.Is(br.Err, enroll.ErrDuplicatePhoto):
					rejected++
					entry = duplicateError(g, p.outcome.Path, br.Template)
				default:
					enrolled++
					hasCrop := br.Template.HasCrop
					p.outcome.Enrolled, p.outcome.Template, p.outcome.HasCrop = true, br.Template.ID, &hasCrop
					entry = p.outcome
				}
			default:
				skipped++
				entry = p.outcome
			}
			photos = append(photos, entry)
			if !c.Bool("json") {
				w := c.App.Writer
				switch e := entry.(type) {
				case photoError:
					fmt.Fprintf(w, "rejected  %s\n", e)
				case photoOutcome:
					if e.Enrolled {
						fmt.Fprintf(w, "enrolled  %s (%s)\n", e.Path, e.Name)
					} else {
						fmt.Fprintf(w, "skipped   %s (%s): already enrolled (template #%d)\n", e.Path, e.Name, e.Template)
					}
				}
			}
		}
		batchItems, pending = batchItems[:0], pending[:0]
		return nil
	}
	for i := range jobs {
		res := <-results[i]
		if res.err != nil {
			bar.Done()
			// What was committed stands; a rerun goes on from there.
			return fail(fmt.Errorf("%s: %w (the %d photos committed before stay enrolled: run the same command again to go on)", jobs[i].path, res.err, enrolled))
		}
		pending = append(pending, res)
		bar.Set(i+1, "")
		if res.template != nil {
			batchItems = append(batchItems, enroll.BatchItem{Name: jobs[i].name, Template: *res.template})
		}
		if len(batchItems) >= c.Int("commit-every") || len(pending) >= 4*c.Int("commit-every") {
			if err := commit(); err != nil {
				bar.Done()
				return fail(fmt.Errorf("gallery %s: %w (the %d photos committed before stay enrolled)", galleryName(c), err, enrolled))
			}
		}
	}
	if err := commit(); err != nil {
		bar.Done()
		return fail(fmt.Errorf("gallery %s: %w (the %d photos committed before stay enrolled)", galleryName(c), err, enrolled))
	}
	bar.Done()
	secs := time.Since(start).Seconds()
	if c.Bool("json") {
		skippedFiles := set.Skipped
		if skippedFiles == nil {
			skippedFiles = []dataset.Skip{} // [], not null
		}
		if err := writeJSONOrFail(c, map[string]any{
			"gallery": galleryName(c), "data": set.Root, "people": len(set.People),
			"enrolled": enrolled, "already_enrolled": skipped, "rejected": rejected,
			"seconds": secs, "photos": photos, "skipped_files": skippedFiles,
		}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(c.App.Writer, "%d photos of %d people in %.1fs (%.1f photos/s): %d enrolled, %d already in the gallery, %d rejected\n",
			len(jobs), len(set.People), secs, float64(len(jobs))/secs, enrolled, skipped, rejected)
	}
	if rejected > 0 {
		return cli.Exit(fmt.Sprintf("%d of %d photo(s) could not be used (see their error entries)", rejected, len(jobs)), exitError)
	}
	return nil
}

// duplicateError is the entry of a photo refused because template t of
// another person holds the same photo.
func duplicateError(g enroll.Store, path string, t enroll.Template) photoError {
	owner := fmt.Sprintf("#%d", t.IdentityID)
	if it, err := g.Get(t.IdentityID); err == nil {
		owner = fmt.Sprintf("%q", it.Name)
	}
	return photoError{Path: path, Error: errorBody{Code: fv.CodeDuplicatePhoto,
		Message: fmt.Sprintf("the same photo is template #%d of %s: pass --allow-duplicates to enroll it under this person too", t.ID, owner)}}
}
