package verify

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Photo is a photo and the identity (folder name) it shows.
type Photo struct {
	// Path is the photo's file.
	Path string `json:"path"`
	// Identity is the person's folder name ("" for unknown probes).
	Identity string `json:"identity"`
}

// OpenSetSplit is a 1:N protocol built from an identity-per-folder layout:
// enroll Gallery, then identify Known (other photos of enrolled people: the
// right identity should come back) and Unknown (people never enrolled: they
// should come back unknown).
type OpenSetSplit struct {
	// Gallery holds the photos to enroll.
	Gallery []Photo `json:"gallery"`
	// Known holds the probes of enrolled people.
	Known []Photo `json:"known"`
	// Unknown holds the probes of people never enrolled (Identity "").
	Unknown []Photo `json:"unknown"`
}

// SplitOpenSet builds the 1:N protocol of the README from dir (one folder per
// person, photos as in PairsFromDir, in name order): every person with two or
// more photos is enrolled with their first enroll photos (at least one photo
// is always left as a probe) and the rest are known probes; every person with
// a single photo is an unknown probe. On LFW (enroll = 1): 1,680 people
// enrolled, 7,484 known probes, 4,069 unknown probes.
func SplitOpenSet(dir string, enroll int) (*OpenSetSplit, error) {
	if enroll < 1 {
		return nil, fmt.Errorf("open-set split: enroll %d photos per person: want ≥ 1", enroll)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open-set split: %w", err)
	}
	s := &OpenSetSplit{}
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		sub := filepath.Join(dir, e.Name())
		files, err := os.ReadDir(sub)
		if err != nil {
			return nil, fmt.Errorf("open-set split: %w", err)
		}
		var photos []Photo
		for _, f := range files {
			if f.IsDir() || strings.HasPrefix(f.Name(), ".") || !slices.Contains(ImageExtensions, strings.ToLower(filepath.Ext(f.Name()))) {
				continue
			}
			photos = append(photos, Photo{filepath.Join(sub, f.Name()), e.Name()})
		}
		switch {
		case len(photos) == 1:
			s.Unknown = append(s.Unknown, Photo{photos[0].Path, ""})
		case len(photos) >= 2:
			n := min(enroll, len(photos)-1)
			s.Gallery = append(s.Gallery, photos[:n]...)
			s.Known = append(s.Known, photos[n:]...)
		}
	}
	if len(s.Gallery) == 0 {
		return nil, fmt.Errorf("open-set split: %s has no person with two or more photos", dir)
	}
	return s, nil
}
