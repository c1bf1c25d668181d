package verify

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/facever/facever/dataset"
)

// Pair is one labelled pair of photos to compare.
type Pair struct {
	// A is the first photo's path (joined to the root given to the parser
	// unless absolute).
	A string `json:"a"`
	// B is the second photo's path.
	B string `json:"b"`
	// Same reports whether both photos show the same person.
	Same bool `json:"same"`
	// Fold is the pair's fold in [0, PairSet.Folds), or −1 when the source
	// defines no folds (CSV, folders): KFold then assigns them (AssignFolds).
	Fold int `json:"fold"`
	// Line is the 1-based line of the pairs file the pair came from (0 when
	// built from folders).
	Line int `json:"line,omitempty"`
}

// PairsFormat names the format a pair set was read from.
type PairsFormat string

// The formats ParsePairs understands, and the folder layout of PairsFromDir.
const (
	FormatLFW     PairsFormat = "lfw"
	FormatCSV     PairsFormat = "csv"
	FormatFolders PairsFormat = "folders"
)

// PairSet is a list of labelled pairs with the folds of its protocol.
type PairSet struct {
	// Format is the source's format.
	Format PairsFormat `json:"format"`
	// Folds is the number of folds the source defines (10 for LFW View 2),
	// 0 when it defines none.
	Folds int `json:"folds"`
	// Pairs are the pairs, in file order.
	Pairs []Pair `json:"pairs"`
}

// Labels returns Same of every pair, in order.
func (ps *PairSet) Labels() []bool {
	l := make([]bool, len(ps.Pairs))
	for i, p := range ps.Pairs {
		l[i] = p.Same
	}
	return l
}

// FoldIndices returns the fold of every pair for KFold, or nil when the set
// defines no folds (KFold then assigns stratified folds).
func (ps *PairSet) FoldIndices() []int {
	if ps.Folds == 0 {
		return nil
	}
	f := make([]int, len(ps.Pairs))
	for i, p := range ps.Pairs {
		f[i] = p.Fold
	}
	return f
}

// Paths returns every distinct photo path of the set, sorted: embed each once
// (LFW's 6000 pairs use 7701 photos).
func (ps *PairSet) Paths() []string {
	var out []string
	for _, p := range ps.Pairs {
		out = append(out, p.A, p.B)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Counts returns the number of genuine (same-person) and impostor pairs.
func (ps *PairSet) Counts() (genuine, impostor int) {
	for _, p := range ps.Pairs {
		if p.Same {
			genuine++
		} else {
			impostor++
		}
	}
	return
}

// ErrPairsFormat is wrapped by every syntax error of a pairs file.
var ErrPairsFormat = errors.New("malformed pairs file")

// maxPairsLine bounds one line of a pairs file.
const maxPairsLine = 64 << 10

// ReadPairsFile reads a pairs file (see ParsePairs). Relative photo paths are
// joined to root; an empty root means the directory of the pairs file for CSV
// and, for LFW, its "images" subdirectory when there is one (the layout of
// the LFW distribution: pairs.txt beside images/), else the directory itself.
func ReadPairsFile(path, root string) (*PairSet, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read pairs: %w", err)
	}
	if root == "" {
		dir := filepath.Dir(path)
		root = dir
		if detectFormat(data) == FormatLFW {
			if st, err := os.Stat(filepath.Join(dir, "images")); err == nil && st.IsDir() {
				root = filepath.Join(dir, "images")
			}
		}
	}
	ps, err := ParsePairs(bytes.NewReader(data), root)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ps, nil
}

// detectFormat: a first non-blank line holding a comma is CSV, else LFW.
func detectFormat(data []byte) PairsFormat {
	for line := range strings.SplitSeq(string(data), "\n") {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if strings.Contains(line, ",") {
			return FormatCSV
		}
		return FormatLFW
	}
	return FormatLFW
}

// ParsePairs reads a pairs file, detecting its format from the first
// non-blank line (a comma means CSV):
//
//   - LFW pairs.txt: a header "F N" (F folds of N same-person then N
//     different-person lines each; a lone "N" means one fold), then
//     same-person lines "name n1 n2" and different-person lines
//     "name1 n1 name2 n2" (tab- or space-separated). Photos are
//     root/name/name_%04d.jpg. Pair i gets fold i / (2N).
//   - CSV "path_a,path_b,same", with an optional header line (recognised
//     by a third field that is not a label, or by the first two fields being
//     path_a,path_b / a,b / path1,path2 / image_a,image_b); same is one of
//     1/0, true/false, same/different, yes/no (any case). Lines starting with
//     '#' are comments. Pairs get fold −1.
//
// Errors name the line and wrap ErrPairsFormat.
func ParsePairs(r io.Reader, root string) (*PairSet, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read pairs: %w", err)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 BOM (spreadsheet exports)
	if detectFormat(data) == FormatCSV {
		return ParseCSVPairs(bytes.NewReader(data), root)
	}
	return ParseLFWPairs(bytes.NewReader(data), root)
}

func lineErr(line int, format string, args ...any) error {
	return fmt.Errorf("%w: line %d: %s", ErrPairsFormat, line, fmt.Sprintf(format, args...))
}

// lfwName checks an LFW identity name: it becomes a directory name.
func lfwName(s string) error {
	if s == "" || s == "." || s == ".." || strings.ContainsAny(s, `/\`) || strings.ContainsRune(s, 0) {
		return fmt.Errorf("%q is not a valid LFW name", s)
	}
	return nil
}

func lfwIndex(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 9999 {
		return 0, fmt.Errorf("%q is not an image number in 1..9999", s)
	}
	return n, nil
}

// LFWPath returns the path of image n of a person in the LFW layout:
// root/name/name_%04d.jpg.
func LFWPath(root, name string, n int) string {
	return filepath.Join(root, name, fmt.Sprintf("%s_%04d.jpg", name, n))
}

// ParseLFWPairs reads LFW's pairs.txt format (see ParsePairs), checking that
// the lines match the header: each fold is N same-person lines then N
// different-person lines.
func ParseLFWPairs(r io.Reader, root string) (*PairSet, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxPairsLine)
	ps := &PairSet{Format: FormatLFW}
	line, per := 0, 0
	header := false
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if !header {
			header = true
			var err error
			switch len(f) {
			case 1:
				ps.Folds = 1
				per, err = strconv.Atoi(f[0])
			case 2:
				ps.Folds, err = strconv.Atoi(f[0])
				if err == nil {
					per, err = strconv.Atoi(f[1])
				}
			default:
				return nil, lineErr(line, "header must be \"folds pairs-per-class\" (e.g. \"10 300\"), got %d fields", len(f))
			}
			if err != nil || ps.Folds < 1 || per < 1 || ps.Folds > 1000 || per > 10_000_000/ps.Folds {
				return nil, lineErr(line, "header must be two positive numbers \"folds pairs-per-class\" (e.g. \"10 300\"), got %q", sc.Text())
			}
			ps.Pairs = make([]Pair, 0, min(2*per*ps.Folds, 1<<16))
			continue
		}
		i := len(ps.Pairs)
		if i >= 2*per*ps.Folds {
			return nil, lineErr(line, "more pairs than the header's %d folds × 2 × %d", ps.Folds, per)
		}
		fold, wantSame := i/(2*per), i%(2*per) < per
		p := Pair{Fold: fold, Same: wantSame, Line: line}
		switch {
		case wantSame && len(f) == 3:
			if err := lfwName(f[0]); err != nil {
				return nil, lineErr(line, "%v", err)
			}
			n1, err := lfwIndex(f[1])
			if err != nil {
				return nil, lineErr(line, "%v", err)
			}
			n2, err := lfwIndex(f[2])
			if err != nil {
				return nil, lineErr(line, "%v", err)
			}
			p.A, p.B = LFWPath(root, f[0], n1), LFWPath(root, f[0], n2)
		case !wantSame && len(f) == 4:
			for _, name := range []string{f[0], f[2]} {
				if err := lfwName(name); err != nil {
					return nil, lineErr(line, "%v", err)
				}
			}
			n1, err := lfwIndex(f[1])
			if err != nil {
				return nil, lineErr(line, "%v", err)
			}
			n2, err := lfwIndex(f[3])
			if err != nil {
				return nil, lineErr(line, "%v", err)
			}
			p.A, p.B = LFWPath(root, f[0], n1), LFWPath(root, f[2], n2)
		case wantSame:
			return nil, lineErr(line, "pair %d of fold %d should be a same-person line \"name n1 n2\", got %d fields", i%(2*per)+1, fold+1, len(f))
		default:
			return nil, lineErr(line, "pair %d of fold %d should be a different-person line \"name1 n1 name2 n2\", got %d fields", i%(2*per)+1, fold+1, len(f))
		}
		ps.Pairs = append(ps.Pairs, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: line %d: %v", ErrPairsFormat, line+1, err)
	}
	if !header {
		return nil, fmt.Errorf("%w: empty file", ErrPairsFormat)
	}
	if want := 2 * per * ps.Folds; len(ps.Pairs) != want {
		return nil, fmt.Errorf("%w: line %d: the header announces %d folds × 2 × %d = %d pairs, the file has %d", ErrPairsFormat, line, ps.Folds, per, want, len(ps.Pairs))
	}
	return ps, nil
}

// parseSame reads the label column of a CSV pairs file.
func parseSame(s string) (same bool, ok bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "true", "same", "yes", "y", "t":
		return true, true
	case "0", "false", "different", "diff", "no", "n", "f":
		return false, true
	}
	return false, false
}

// ParseCSVPairs reads the CSV pairs format "path_a,path_b,same" (see
// ParsePairs). Relative paths are joined to root.
func ParseCSVPairs(r io.Reader, root string) (*PairSet, error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true
	ps := &PairSet{Format: FormatCSV}
	first := true
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return nil, lineErr(pe.Line, "%v", pe.Err)
			}
			return nil, fmt.Errorf("%w: %v", ErrPairsFormat, err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		if len(rec) != 3 {
			return nil, lineErr(line, "want 3 fields \"path_a,path_b,same\", got %d", len(rec))
		}
		same, ok := parseSame(rec[2])
		if first && (!ok || isHeader(rec)) {
			first = false
			continue
		}
		if !ok {
			return nil, lineErr(line, "same must be 1/0, true/false or same/different, got %q", rec[2])
		}
		first = false
		a, b := strings.TrimSpace(rec[0]), strings.TrimSpace(rec[1])
		if a == "" || b == "" {
			return nil, lineErr(line, "empty photo path")
		}
		if strings.ContainsRune(a, 0) || strings.ContainsRune(b, 0) {
			return nil, lineErr(line, "NUL byte in a photo path")
		}
		ps.Pairs = append(ps.Pairs, Pair{A: joinRoot(root, a), B: joinRoot(root, b), Same: same, Fold: -1, Line: line})
	}
	if len(ps.Pairs) == 0 {
		return nil, fmt.Errorf("%w: no pairs", ErrPairsFormat)
	}
	return ps, nil
}

// isHeader reports whether a first CSV record is the column names (its third
// field "same" would otherwise read as a label).
func isHeader(rec []string) bool {
	a, b := strings.ToLower(strings.TrimSpace(rec[0])), strings.ToLower(strings.TrimSpace(rec[1]))
	return (a == "path_a" || a == "a" || a == "path1" || a == "image_a") && (b == "path_b" || b == "b" || b == "path2" || b == "image_b")
}

func joinRoot(root, p string) string {
	if root == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(root, p)
}

// PairsFromDir builds every pair of photos from an identity-per-folder layout
// (dir/<person>/<photo>, read by dataset.Walk: photos decided by content,
// hidden files and junk skipped); see PairsFromPeople.
func PairsFromDir(dir string, maxPairs int) (*PairSet, error) {
	set, err := dataset.Walk(dir)
	if err != nil {
		return nil, fmt.Errorf("pairs from folders: %w", err)
	}
	ps, err := PairsFromPeople(set.People, maxPairs)
	if err != nil {
		return nil, fmt.Errorf("pairs from folders: %s: %w", dir, err)
	}
	return ps, nil
}

// PairsFromPeople builds every pair of the people's photos: all n·(n−1)/2
// pairs, same-person when both photos belong to one person, in order (person
// by person, photo by photo), with fold −1. maxPairs > 0 makes a larger set
// an error (the count grows quadratically: LFW's 13,233 photos would give 87
// million pairs).
func PairsFromPeople(people []dataset.Person, maxPairs int) (*PairSet, error) {
	type photo struct {
		path string
		id   int
	}
	var photos []photo
	for id, p := range people {
		for _, path := range p.Photos {
			photos = append(photos, photo{path, id})
		}
	}
	if len(photos) < 2 {
		return nil, fmt.Errorf("fewer than two photos in identity folders (one folder per person)")
	}
	total := len(photos) * (len(photos) - 1) / 2
	if maxPairs > 0 && total > maxPairs {
		return nil, fmt.Errorf("%d pairs (%d photos), more than the limit of %d", total, len(photos), maxPairs)
	}
	ps := &PairSet{Format: FormatFolders, Pairs: make([]Pair, 0, total)}
	for i := range photos {
		for j := i + 1; j < len(photos); j++ {
			ps.Pairs = append(ps.Pairs, Pair{A: photos[i].path, B: photos[j].path, Same: photos[i].id == photos[j].id, Fold: -1})
		}
	}
	return ps, nil
}

// usable drops the pairs whose score is NaN (not scored: no face found, an
// unreadable photo) and returns the rest with their labels and folds.
func (ps *PairSet) usable(scores []float64) (s []float64, same []bool, folds []int, skipped int, err error) {
	if len(scores) != len(ps.Pairs) {
		return nil, nil, nil, 0, fmt.Errorf("verify: %d scores for %d pairs", len(scores), len(ps.Pairs))
	}
	for i, p := range ps.Pairs {
		if math.IsNaN(scores[i]) {
			skipped++
			continue
		}
		s, same, folds = append(s, scores[i]), append(same, p.Same), append(folds, p.Fold)
	}
	return s, same, folds, skipped, nil
}

// Evaluate computes the standard metrics (see Evaluate) of scores[i], the
// similarity of Pairs[i]. A NaN score marks a pair that could not be scored:
// it is left out and counted in Evaluation.Skipped. k = 0 means the set's own
// folds (10 for LFW), or 10 when it has none; the set's folds are used when
// k equals their number, stratified folds (AssignFolds) otherwise.
func (ps *PairSet) Evaluate(scores []float64, k int) (*Evaluation, error) {
	s, same, folds, skipped, err := ps.usable(scores)
	if err != nil {
		return nil, err
	}
	if k == 0 {
		k = ps.Folds
		if k < 2 {
			k = 10
		}
	}
	if k != ps.Folds {
		folds = nil
	}
	e, err := Evaluate(s, same, folds, k)
	if err != nil {
		return nil, err
	}
	e.Skipped = skipped
	return e, nil
}

// Calibrate chooses the threshold for targetFAR on the set's scores (see
// Calibrate); NaN scores are left out and counted in Calibration.Skipped.
func (ps *PairSet) Calibrate(scores []float64, targetFAR float64) (Calibration, error) {
	s, same, _, skipped, err := ps.usable(scores)
	if err != nil {
		return Calibration{}, err
	}
	c, err := Calibrate(s, same, targetFAR)
	c.Skipped = skipped
	return c, err
}
