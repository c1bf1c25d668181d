// Package dataset walks a folder of labelled photos, one sub-folder per
// person (DIR/<person>/<photo>, the layout of LFW, CASIA-WebFace, VGGFace2,
// ORL), with one rule for what a photo is: a regular file whose first bytes
// are those of an image (imageformat.Sniff, through SniffFile; the decoder in align uses the same one), whatever its name. Every command that takes
// --data (eval, eval-identify, train, crossval, enroll) reads its folder
// through Walk, so they all see the same people and photos, and every file
// left out is reported with its reason.
//
// Rules:
//   - a person is a sub-folder of DIR (a symbolic link to a folder counts);
//     the person's name is the sub-folder's name;
//   - a person's photos are the image files directly inside their folder
//     (symbolic links to files followed); folders inside a person's folder
//     are not looked into, and are reported;
//   - hidden names (starting with '.', such as .DS_Store or .git) are
//     skipped, and so are files that are not images (Thumbs.db, notes.txt),
//     empty files, broken links, links that loop, files that are not regular
//     files (FIFOs, devices), files directly in DIR, and a person folder that
//     is DIR itself, one of its parents or the same folder as an earlier
//     person (a link loop or a duplicate);
//   - people come in name order, each person's photos in name order.
package dataset

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// Person is one sub-folder of the walked folder and the photos in it.
type Person struct {
	// Name is the folder's name.
	Name string `json:"name"`
	// Photos are the photo paths (DIR/Name/file, links not resolved), in
	// name order.
	Photos []string `json:"photos"`
}

// Reason says why a file or folder was left out.
type Reason string

// The reasons a walk leaves something out.
const (
	Hidden       Reason = "hidden"                 // name starts with '.'
	NotPhoto     Reason = "not a photo"            // content is not an image
	EmptyFile    Reason = "empty file"             // zero bytes
	NotRegular   Reason = "not a regular file"     // FIFO, socket, device
	BrokenLink   Reason = "broken link"            // link to nothing
	LinkLoop     Reason = "link loop"              // link to itself, or to DIR or a parent of DIR
	Duplicate    Reason = "same folder as another" // person folder reached twice through links
	Unreadable   Reason = "unreadable"             // permission or I/O error
	LooseFile    Reason = "not in a person folder" // a file directly in DIR
	NestedFolder Reason = "folder inside a person folder"
	NoPhotos     Reason = "folder without photos"
)

// Skip is one file or folder left out of a walk.
type Skip struct {
	// Path is the file or folder as walked.
	Path string `json:"path"`
	// Reason says why.
	Reason Reason `json:"reason"`
	// Detail adds the error or the other folder's name, when there is one.
	Detail string `json:"detail,omitempty"`
}

// String is "path: reason (detail)".
func (s Skip) String() string {
	if s.Detail != "" {
		return fmt.Sprintf("%s: %s (%s)", s.Path, s.Reason, s.Detail)
	}
	return fmt.Sprintf("%s: %s", s.Path, s.Reason)
}

// Set is the outcome of a walk: the people with at least one photo, and
// everything left out.
type Set struct {
	// Root is the walked folder.
	Root string `json:"root"`
	// People are the people with one or more photos, in name order.
	People []Person `json:"people"`
	// Skipped lists what was left out, in walk order.
	Skipped []Skip `json:"skipped"`
}

// ErrNoPeople is wrapped by Walk's error for a folder without any person
// folder holding a photo.
var ErrNoPeople = errors.New("no folder of photos")

// Walk reads root (see the package comment for the rules). The error is for
// a root that cannot be read or holds no person with a photo; files that
// cannot be read are skipped and listed, not errors.
func Walk(root string) (*Set, error) {
	rootInfo, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", root, err)
	}
	if !rootInfo.IsDir() {
		return nil, fmt.Errorf("%s is a file, not a folder of people (DIR/<person>/<photo>)", root)
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", root, err)
	}
	// DIR and its parents: a person folder that is one of them is a loop.
	ancestors := []os.FileInfo{rootInfo}
	if abs, err := filepath.Abs(root); err == nil {
		for d := filepath.Dir(abs); ; d = filepath.Dir(d) {
			if st, err := os.Stat(d); err == nil {
				ancestors = append(ancestors, st)
			}
			if d == filepath.Dir(d) {
				break
			}
		}
	}
	s := &Set{Root: root}
	type seen struct {
		info os.FileInfo
		name string
	}
	var people []seen
	for _, e := range ents { // os.ReadDir sorts by name
		path := filepath.Join(root, e.Name())
		if strings.HasPrefix(e.Name(), ".") {
			s.skip(path, Hidden, "")
			continue
		}
		st, reason, detail := stat(path)
		if reason != "" {
			s.skip(path, reason, detail)
			continue
		}
		if !st.IsDir() {
			s.skip(path, LooseFile, "")
			continue
		}
		if loopsTo(st, ancestors) {
			s.skip(path, LinkLoop, "leads back to "+root+" or a folder above it")
			continue
		}
		dup := ""
		for _, p := range people {
			if os.SameFile(p.info, st) {
				dup = p.name
				break
			}
		}
		if dup != "" {
			s.skip(path, Duplicate, dup)
			continue
		}
		people = append(people, seen{st, e.Name()})
		if p, ok := s.person(path, e.Name()); ok {
			s.People = append(s.People, p)
		}
	}
	if len(s.People) == 0 {
		sum := s.Summary()
		if sum != "" {
			sum = "; " + sum
		}
		return s, fmt.Errorf("%s holds %w (expected DIR/<person>/<photo>)%s", root, ErrNoPeople, sum)
	}
	return s, nil
}

// person lists the photos of one person folder.
func (s *Set) person(dir, name string) (Person, bool) {
	files, err := os.ReadDir(dir)
	if err != nil {
		s.skip(dir, Unreadable, err.Error())
		return Person{}, false
	}
	p := Person{Name: name}
	for _, f := range files {
		path := filepath.Join(dir, f.Name())
		if strings.HasPrefix(f.Name(), ".") {
			s.skip(path, Hidden, "")
			continue
		}
		st, reason, detail := stat(path)
		if reason != "" {
			s.skip(path, reason, detail)
			continue
		}
		if st.IsDir() {
			s.skip(path, NestedFolder, "")
			continue
		}
		if !st.Mode().IsRegular() {
			s.skip(path, NotRegular, "")
			continue
		}
		format, err := SniffFile(path)
		switch {
		case errors.Is(err, errEmpty):
			s.skip(path, EmptyFile, "")
		case err != nil:
			s.skip(path, Unreadable, err.Error())
		case format == "":
			s.skip(path, NotPhoto, "")
		default:
			p.Photos = append(p.Photos, path)
		}
	}
	if len(p.Photos) == 0 {
		s.skip(dir, NoPhotos, "")
		return Person{}, false
	}
	sort.Strings(p.Photos)
	return p, true
}

// stat follows links; a reason is returned for what cannot be followed.
func stat(path string) (os.FileInfo, Reason, string) {
	st, err := os.Stat(path)
	if err == nil {
		return st, "", ""
	}
	switch {
	case errors.Is(err, syscall.ELOOP):
		return nil, LinkLoop, ""
	case errors.Is(err, fs.ErrNotExist):
		if target, lerr := os.Readlink(path); lerr == nil {
			return nil, BrokenLink, "to " + target
		}
	}
	return nil, Unreadable, err.Error()
}

func loopsTo(st os.FileInfo, ancestors []os.FileInfo) bool {
	for _, a := range ancestors {
		if os.SameFile(a, st) {
			return true
		}
	}
	return false
}

func (s *Set) skip(path string, r Reason, detail string) {
	s.Skipped = append(s.Skipped, Skip{Path: path, Reason: r, Detail: detail})
}

// Photos counts the photos of every person.
func (s *Set) Photos() int {
	n := 0
	for _, p := range s.People {
		n += len(p.Photos)
	}
	return n
}

// Paths returns every photo, person by person, in order.
func (s *Set) Paths() []string {
	out := make([]string, 0, s.Photos())
	for _, p := range s.People {
		out = append(out, p.Photos...)
	}
	return out
}

// ByName returns the photos of each person, by name.
func (s *Set) ByName() map[string][]string {
	m := make(map[string][]string, len(s.People))
	for _, p := range s.People {
		m[p.Name] = p.Photos
	}
	return m
}

// Summary counts the skipped entries by reason, the most frequent first:
// "400 files skipped: 380 not a photo, 20 hidden" ("" when nothing was).
func (s *Set) Summary() string {
	if len(s.Skipped) == 0 {
		return ""
	}
	count := map[Reason]int{}
	for _, k := range s.Skipped {
		count[k.Reason]++
	}
	reasons := make([]Reason, 0, len(count))
	for r := range count {
		reasons = append(reasons, r)
	}
	sort.Slice(reasons, func(i, j int) bool {
		if count[reasons[i]] != count[reasons[j]] {
			return count[reasons[i]] > count[reasons[j]]
		}
		return reasons[i] < reasons[j]
	})
	parts := make([]string, len(reasons))
	for i, r := range reasons {
		parts[i] = fmt.Sprintf("%d %s", count[r], r)
	}
	noun := "files"
	if len(s.Skipped) == 1 {
		noun = "file"
	}
	return fmt.Sprintf("%d %s skipped: %s", len(s.Skipped), noun, strings.Join(parts, ", "))
}

// Report writes the summary of what was skipped and then the first max
// skipped entries with their reasons, one a line ("  ... and N more" for the
// rest; max < 0 lists all). It writes nothing when nothing was skipped.
func (s *Set) Report(w io.Writer, max int) error {
	sum := s.Summary()
	if sum == "" {
		return nil
	}
	if _, err := fmt.Fprintf(w, "%s: %s\n", s.Root, sum); err != nil {
		return err
	}
	for i, k := range s.Skipped {
		if max >= 0 && i == max {
			_, err := fmt.Fprintf(w, "  ... and %d more\n", len(s.Skipped)-max)
			return err
		}
		if _, err := fmt.Fprintln(w, "  "+k.String()); err != nil {
			return err
		}
	}
	return nil
}
