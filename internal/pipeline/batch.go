package pipeline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"sync"

	"github.com/facever/facever/align"
	"github.com/facever/facever/facehead"
	"github.com/facever/facever/internal/featcache"
	"github.com/facever/facever/models"
)

// Result is the backbone feature of one photo, or why there is none.
type Result struct {
	Path    string
	Faces   int
	Feature []float32 // normalised backbone feature; nil when Err != nil
	// Quality is the face's quality score (align.Quality.Score), NaN when
	// not known (--aligned input, no face, or a cache entry older than it).
	Quality float64
	Err     error
}

// BatchOptions control Features.
type BatchOptions struct {
	// Aligned: the photos are aligned faces already.
	Aligned bool
	// Augment, when not empty, is a facehead.Augment kind applied to each
	// chip before the backbone (seeded by the photo's content and Seed).
	Augment string
	// Seed varies the random augmentations.
	Seed uint64
	// Workers is the number of photos processed at once (default: cores).
	Workers int
	// CachePath, when not empty, names the feature cache file consulted and
	// filled. It is opened only while reading or writing, so several
	// processes can share it.
	CachePath string
	// Progress, when not nil, is called after each photo with the count done.
	Progress func(done, total int)
}

// Features computes the backbone feature of every photo, using every core
// and the cache. Per-photo failures (no face, unreadable) are reported in
// each Result, not as the error; the error is for the cache.
func Features(cfg Config, paths []string, opt BatchOptions) ([]Result, error) {
	res := make([]Result, len(paths))
	keys := make([][]byte, len(paths))
	var todo []int
	det := cfg.Detect
	if det.Score == 0 {
		det.Score = align.DefaultOptions.Score
	}
	if det.NMS == 0 {
		det.NMS = align.DefaultOptions.NMS
	}
	mode := fmt.Sprintf("align=%v score=%.3f nms=%.2f detect=%s", opt.Aligned, det.Score, det.NMS, align.DetectVersion)
	if opt.Augment != "" {
		mode += fmt.Sprintf(" augment=%s seed=%d", opt.Augment, opt.Seed)
	}
	backbone, err := models.BackboneIn(cfg.ModelsDir, cfg.Model)
	if err != nil {
		return nil, err
	}
	backboneSHA := backbone.SHA256
	var cache *featcache.Cache
	if opt.CachePath != "" {
		var err error
		if cache, err = featcache.Open(opt.CachePath); err != nil {
			return nil, err
		}
	}
	for i, path := range paths {
		res[i].Path, res[i].Quality = path, math.NaN()
		data, err := os.ReadFile(path)
		if err != nil {
			res[i].Err = err
			continue
		}
		keys[i] = featcache.Key(data, backboneSHA, mode)
		if cache != nil {
			if e, ok, err := cache.Get(keys[i]); err != nil {
				cache.Close()
				return nil, err
			} else if ok {
				res[i].Faces, res[i].Feature, res[i].Quality = e.Faces, e.Feature, e.Quality
				if e.Feature == nil {
					res[i].Err = fmt.Errorf("%s: %w", path, align.ErrNoFace)
				}
				continue
			}
		}
		todo = append(todo, i)
	}
	if cache != nil {
		cache.Close()
	}
	done := len(paths) - len(todo)
	if opt.Progress != nil {
		opt.Progress(done, len(paths))
	}
	if len(todo) == 0 {
		return res, nil
	}
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	workers = min(workers, len(todo))
	jobs := make(chan int)
	var mu sync.Mutex
	var wg sync.WaitGroup
	var openErr, flushErr error
	var newKeys [][]byte
	var newEntries []featcache.Entry
	for w := 0; w < workers; w++ {
		p, err := Open(cfg, true)
		if err != nil {
			openErr = err
			break
		}
		wg.Add(1)
		go func(p *Pipeline) {
			defer wg.Done()
			defer p.Close()
			for i := range jobs {
				r := &res[i]
				r.Quality = math.NaN()
				ph, err := p.Face(r.Path, opt.Aligned)
				if err == nil && opt.Augment != "" {
					seed := opt.Seed ^ binary.LittleEndian.Uint64(keys[i])
					ph.Chip, err = facehead.Augment(ph.Chip, opt.Augment, seed)
				}
				if err == nil {
					var f [][]float32
					f, err = p.Embedder.Features([]align.Chip{ph.Chip})
					if err == nil {
						r.Feature = f[0]
					}
					r.Faces = len(ph.Faces)
					if len(ph.Faces) > 0 {
						r.Quality = ph.Faces[0].Quality.Score
					}
				}
				r.Err = err
				mu.Lock()
				if err == nil || errors.Is(err, align.ErrNoFace) {
					newKeys = append(newKeys, keys[i])
					newEntries = append(newEntries, featcache.Entry{Faces: r.Faces, Feature: r.Feature, Quality: r.Quality})
					if len(newKeys) >= flushEvery {
						flushErr = errors.Join(flushErr, flush(opt.CachePath, newKeys, newEntries))
						newKeys, newEntries = nil, nil
					}
				}
				done++
				if opt.Progress != nil {
					opt.Progress(done, len(paths))
				}
				mu.Unlock()
			}
		}(p)
	}
	if openErr != nil {
		close(jobs)
		wg.Wait()
		return nil, openErr
	}
	for _, i := range todo {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if err := errors.Join(flushErr, flush(opt.CachePath, newKeys, newEntries)); err != nil {
		return res, fmt.Errorf("feature cache: %w", err)
	}
	return res, nil
}

// flushEvery is how many new features are written to the cache at a time, so
// an interrupted run keeps most of its work.
const flushEvery = 1000

// flush writes entries to the cache file at path (if any).
func flush(path string, keys [][]byte, entries []featcache.Entry) error {
	if path == "" || len(keys) == 0 {
		return nil
	}
	c, err := featcache.Open(path)
	if err != nil {
		return err
	}
	if err := c.PutMany(keys, entries); err != nil {
		c.Close()
		return err
	}
	return c.Close()
}
