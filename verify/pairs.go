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

// Limits on a pairs file, so that a wrong or hostile file costs bounded memory
// and time: a pairs file is read as a stream, line by line, never whole.
const (
	// maxPairsLine bounds one line of a pairs file (bytes).
	maxPairsLine = 64 << 10
	// maxPairsPrefix bounds the blank and comment lines before the first
	// line that says the format (bytes).
	maxPairsPrefix = 1 << 20
	// maxPairs bounds the pairs of one file (LFW's header is held to it too).
	maxPairs = 10_000_000
)

// ReadPairsFile reads a pairs file (see ParsePairs), as a stream. Relative
// photo paths are joined to root; an empty root means the directory of the
// pairs file for CSV and, for LFW, its "images" subdirectory when there is
// one (the layout of the LFW distribution: pairs.txt beside images/), else
// the directory itself.
func ReadPairsFile(path, root string) (*PairSet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read pairs: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, fmt.Errorf("read pairs: %s is a folder, not a pairs file", path)
	}
	ps, err := parsePairs(f, func(format PairsFormat) string {
		if root != "" {
			return root
		}
		dir := filepath.Dir(path)
		if format == FormatLFW {
			if st, err := os.Stat(filepath.Join(dir, "images")); err == nil && st.IsDir() {
				return filepath.Join(dir, "images")
			}
		}
		return dir
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ps, nil
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
// The file is UTF-8 text (a byte-order mark is allowed); UTF-16 (what
// Windows calls "Unicode"), binary files, lines over 64 KiB and more than
// 10 million pairs are refused. It is read as a stream: memory stays bounded
// whatever the input. Errors name the line and wrap ErrPairsFormat.
func ParsePairs(r io.Reader, root string) (*PairSet, error) {
	return parsePairs(r, func(PairsFormat) string { return root })
}

// parsePairs detects the format from the first lines, then parses the whole
// stream with the root that rootFor gives for that format.
func parsePairs(r io.Reader, rootFor func(PairsFormat) string) (*PairSet, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, _ := br.Peek(4)
	if bytes.HasPrefix(head, []byte{0xFF, 0xFE}) || bytes.HasPrefix(head, []byte{0xFE, 0xFF}) {
		return nil, fmt.Errorf("%w: %s", ErrPairsFormat, utf16Advice("the file starts with a UTF-16 byte-order mark"))
	}
	if bytes.HasPrefix(head, []byte("\xef\xbb\xbf")) { // UTF-8 BOM (spreadsheet exports)
		br.Discard(3)
	}
	// The first lines, up to the one that says the format, are kept to be
	// parsed again.
	g := newLineGuard(br)
	var prefix []byte
	format := FormatLFW
	for {
		line, err := g.readLine()
		if err != nil && err != io.EOF {
			return nil, err
		}
		prefix = append(prefix, line...)
		if t := strings.TrimSpace(string(line)); t != "" && !strings.HasPrefix(t, "#") {
			if strings.Contains(t, ",") {
				format = FormatCSV
			}
			break
		}
		if err == io.EOF {
			break
		}
		if len(prefix) > maxPairsPrefix {
			return nil, fmt.Errorf("%w: more than %d KiB of blank lines and comments before the first pair: not a pairs file", ErrPairsFormat, maxPairsPrefix>>10)
		}
	}
	rest := io.MultiReader(bytes.NewReader(prefix), g.buf) // g.buf holds what was read ahead
	if format == FormatCSV {
		return ParseCSVPairs(rest, rootFor(format))
	}
	return ParseLFWPairs(rest, rootFor(format))
}

func utf16Advice(what string) string {
	return what + ": this looks like UTF-16 text (what Windows calls \"Unicode\") or a binary file; facever reads pairs files as UTF-8 text: save it again as UTF-8 (Excel: \"CSV UTF-8\"; Notepad: Save as, Encoding UTF-8; or iconv -f UTF-16 -t UTF-8)"
}

// lineGuard passes a stream through while counting lines, and fails it at
// the first line longer than maxPairsLine or holding a NUL byte, so that the
// parsers reading from it never buffer more than one bounded line.
type lineGuard struct {
	r    io.Reader
	line int // 1-based line of the next byte
	run  int // bytes since the last newline
	err  error
	buf  *bufio.Reader // for readLine
}

func newLineGuard(r io.Reader) *lineGuard {
	if g, ok := r.(*lineGuard); ok {
		return g
	}
	return &lineGuard{r: r, line: 1}
}

// Read implements io.Reader.
func (g *lineGuard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.r.Read(p)
	if errors.Is(err, ErrPairsFormat) { // an inner guard's
		g.err = err
	}
	for i := 0; i < n; {
		j := bytes.IndexByte(p[i:n], '\n')
		end := n
		if j >= 0 {
			end = i + j
		}
		if k := bytes.IndexByte(p[i:end], 0); k >= 0 {
			g.err = fmt.Errorf("%w: line %d: %s", ErrPairsFormat, g.line, utf16Advice("it holds a NUL byte"))
			return i + k, g.err
		}
		g.run += end - i
		if g.run > maxPairsLine {
			g.err = fmt.Errorf("%w: line %d is longer than %d KiB: not a pairs file (one pair per line)", ErrPairsFormat, g.line, maxPairsLine>>10)
			return end - (g.run - maxPairsLine), g.err
		}
		if j < 0 {
			break
		}
		g.line++
		g.run = 0
		i = end + 1
	}
	return n, err
}

// readLine returns the next line with its newline (without one at the end
// of the stream, with io.EOF).
func (g *lineGuard) readLine() ([]byte, error) {
	if g.buf == nil {
		g.buf = bufio.NewReaderSize(g, 4096)
	}
	var line []byte
	for {
		chunk, err := g.buf.ReadSlice('\n')
		line = append(line, chunk...)
		if err == bufio.ErrBufferFull {
			continue // bounded: the guard fails a line past maxPairsLine
		}
		return line, err
	}
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
	g := newLineGuard(r)
	// fail prefers the guard's error: a line cut at the limit is not a
	// malformed pair.
	fail := func(err error) (*PairSet, error) {
		if g.err != nil {
			return nil, g.err
		}
		return nil, err
	}
	sc := bufio.NewScanner(g)
	sc.Buffer(make([]byte, 4096), maxPairsLine+2) // the guard refuses longer lines first, with the clearer message
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
				return fail(lineErr(line, "header must be \"folds pairs-per-class\" (e.g. \"10 300\"), got %d fields", len(f)))
			}
			if err != nil || ps.Folds < 1 || per < 1 || ps.Folds > 1000 || per > 10_000_000/ps.Folds {
				return fail(lineErr(line, "header must be two positive numbers \"folds pairs-per-class\" (e.g. \"10 300\"), got %q", sc.Text()))
			}
			ps.Pairs = make([]Pair, 0, min(2*per*ps.Folds, 1<<16))
			continue
		}
		i := len(ps.Pairs)
		if i >= 2*per*ps.Folds {
			return fail(lineErr(line, "more pairs than the header's %d folds × 2 × %d", ps.Folds, per))
		}
		fold, wantSame := i/(2*per), i%(2*per) < per
		p := Pair{Fold: fold, Same: wantSame, Line: line}
		switch {
		case wantSame && len(f) == 3:
			if err := lfwName(f[0]); err != nil {
				return fail(lineErr(line, "%v", err))
			}
			n1, err := lfwIndex(f[1])
			if err != nil {
				return fail(lineErr(line, "%v", err))
			}
			n2, err := lfwIndex(f[2])
			if err != nil {
				return fail(lineErr(line, "%v", err))
			}
			p.A, p.B = LFWPath(root, f[0], n1), LFWPath(root, f[0], n2)
		case !wantSame && len(f) == 4:
			for _, name := range []string{f[0], f[2]} {
				if err := lfwName(name); err != nil {
					return fail(lineErr(line, "%v", err))
				}
			}
			n1, err := lfwIndex(f[1])
			if err != nil {
				return fail(lineErr(line, "%v", err))
			}
			n2, err := lfwIndex(f[3])
			if err != nil {
				return fail(lineErr(line, "%v", err))
			}
			p.A, p.B = LFWPath(root, f[0], n1), LFWPath(root, f[2], n2)
		case wantSame:
			return fail(lineErr(line, "pair %d of fold %d should be a same-person line \"name n1 n2\", got %d fields", i%(2*per)+1, fold+1, len(f)))
		default:
			return fail(lineErr(line, "pair %d of fold %d should be a different-person line \"name1 n1 name2 n2\", got %d fields", i%(2*per)+1, fold+1, len(f)))
		}
		ps.Pairs = append(ps.Pairs, p)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, ErrPairsFormat) {
			return nil, err
		}
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
	cr := csv.NewReader(newLineGuard(r))
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
			if errors.Is(err, ErrPairsFormat) { // from the line guard
				return nil, err
			}
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
		if len(ps.Pairs) == maxPairs {
			return nil, lineErr(line, "more than %d pairs: split the file", maxPairs)
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

// NoFace is how a pairs evaluation counts a pair that could not be scored
// because a photo gave no feature (no usable face, an unreadable file): its
// score is NaN (PairSet.Scores).
type NoFace int

// The no-face policies.
const (
	// NoFaceReject decides such a pair "different person": it scores
	// RejectScore, below every threshold, so a miss counts against accuracy
	// (a same-person pair becomes a false reject) instead of being dropped,
	// and every figure rests on all the pairs of the protocol. facever's
	// eval and calibrate use it; it is the zero value.
	NoFaceReject NoFace = iota
	// NoFaceSkip leaves such a pair out of every figure and counts it in
	// Evaluation.Skipped (Calibration.Skipped).
	NoFaceSkip
)

// RejectScore is the score NoFaceReject gives a pair without a feature: the
// lowest cosine similarity.
const RejectScore = -1.0

// String names the policy ("reject" or "skip").
func (n NoFace) String() string {
	switch n {
	case NoFaceReject:
		return "reject"
	case NoFaceSkip:
		return "skip"
	}
	return fmt.Sprintf("NoFace(%d)", int(n))
}

// PairsOptions are the choices of a pairs evaluation.
type PairsOptions struct {
	// Folds is the number of folds k: 0 means the set's own folds (10 for
	// LFW), or 10 when it has none; the set's folds are used when k equals
	// their number, stratified folds (AssignFolds) otherwise.
	Folds int
	// NoFace says how pairs without a feature count (default NoFaceReject).
	NoFace NoFace
}

// Scores returns the cosine similarity of every pair's two features, in
// order; feature returns nil for a photo without one (no usable face), and
// such a pair scores NaN, left to the evaluation's NoFace policy.
func (ps *PairSet) Scores(feature func(path string) []float32) []float64 {
	s := make([]float64, len(ps.Pairs))
	for i, p := range ps.Pairs {
		a, b := feature(p.A), feature(p.B)
		if a == nil || b == nil {
			s[i] = math.NaN()
			continue
		}
		s[i] = Cosine(a, b)
	}
	return s
}

// usable applies the no-face policy to the NaN scores (not scored: no face
// found, an unreadable photo) and returns the scores with their labels and
// folds, and the count of NaN scores.
func (ps *PairSet) usable(scores []float64, policy NoFace) (s []float64, same []bool, folds []int, unscored int, err error) {
	if len(scores) != len(ps.Pairs) {
		return nil, nil, nil, 0, fmt.Errorf("verify: %d scores for %d pairs", len(scores), len(ps.Pairs))
	}
	if policy != NoFaceReject && policy != NoFaceSkip {
		return nil, nil, nil, 0, fmt.Errorf("verify: unknown no-face policy %v", policy)
	}
	for i, p := range ps.Pairs {
		x := scores[i]
		if math.IsNaN(x) {
			unscored++
			if policy == NoFaceSkip {
				continue
			}
			x = RejectScore
		}
		s, same, folds = append(s, x), append(same, p.Same), append(folds, p.Fold)
	}
	return s, same, folds, unscored, nil
}

// Evaluate computes the standard metrics (see Evaluate) of scores[i], the
// similarity of Pairs[i], with the folds and no-face policy of opt. A NaN
// score marks a pair that could not be scored: with NoFaceReject it counts
// as a "different person" decision (Evaluation.Rejected counts them), with
// NoFaceSkip it is left out (Evaluation.Skipped).
func (ps *PairSet) Evaluate(scores []float64, opt PairsOptions) (*Evaluation, error) {
	s, same, folds, unscored, err := ps.usable(scores, opt.NoFace)
	if err != nil {
		return nil, err
	}
	k := opt.Folds
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
	if opt.NoFace == NoFaceSkip {
		e.Skipped = unscored
	} else {
		e.Rejected = unscored
	}
	return e, nil
}

// Calibrate chooses the threshold for targetFAR on the set's scores (see
// Calibrate), NaN scores counted by the policy: rejected (an impostor pair
// without a face is then a correct reject, a genuine one a false reject) or
// left out and counted in Calibration.Skipped.
func (ps *PairSet) Calibrate(scores []float64, targetFAR float64, policy NoFace) (Calibration, error) {
	s, same, _, unscored, err := ps.usable(scores, policy)
	if err != nil {
		return Calibration{}, err
	}
	c, err := Calibrate(s, same, targetFAR)
	if policy == NoFaceSkip {
		c.Skipped = unscored
	}
	return c, err
}
