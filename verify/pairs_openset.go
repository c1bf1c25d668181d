package verify

import (
	"errors"
	"fmt"

	"github.com/facever/facever/dataset"
)

// Photo is a photo and the identity (folder name) it shows.
type Photo struct {
	// Path is the photo's file.
	Path string `json:"path"`
	// Identity is the person's folder name ("" for unknown probes).
	Identity string `json:"identity"`
	// Person is the folder the photo comes from, for unknown probes too.
	Person string `json:"person"`
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
	// People names every person of the split (enrolled or not), in order.
	People []string `json:"people"`
}

// SplitOpenSet builds the 1:N protocol of the README from dir (one folder per
// person, read by dataset.Walk); see SplitPeople.
func SplitOpenSet(dir string, enroll int) (*OpenSetSplit, error) {
	if enroll < 1 {
		return nil, fmt.Errorf("open-set split: enroll %d photos per person: want ≥ 1", enroll)
	}
	set, err := dataset.Walk(dir)
	if err != nil {
		return nil, fmt.Errorf("open-set split: %w", err)
	}
	s, err := SplitPeople(set.People, enroll)
	if err != nil {
		return nil, fmt.Errorf("open-set split: %s: %w", dir, err)
	}
	return s, nil
}

// SplitPeople builds the open-set 1:N protocol from people (in their order,
// photos in their order): every person with two or more photos is enrolled
// with their first enroll photos (at least one photo is always left as a
// probe) and the rest are known probes; every person with a single photo is
// an unknown probe. On LFW (enroll = 1): 1,680 people enrolled, 7,484 known
// probes, 4,069 unknown probes.
func SplitPeople(people []dataset.Person, enroll int) (*OpenSetSplit, error) {
	if enroll < 1 {
		return nil, fmt.Errorf("enroll %d photos per person: want ≥ 1", enroll)
	}
	s := &OpenSetSplit{}
	for _, p := range people {
		if len(p.Photos) > 0 {
			s.People = append(s.People, p.Name)
		}
		switch {
		case len(p.Photos) == 1:
			s.Unknown = append(s.Unknown, Photo{p.Photos[0], "", p.Name})
		case len(p.Photos) >= 2:
			n := min(enroll, len(p.Photos)-1)
			for i, path := range p.Photos {
				ph := Photo{path, p.Name, p.Name}
				if i < n {
					s.Gallery = append(s.Gallery, ph)
				} else {
					s.Known = append(s.Known, ph)
				}
			}
		}
	}
	if len(s.Gallery) == 0 {
		return nil, errors.New("no person with two or more photos")
	}
	return s, nil
}
