package verify

import (
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestParseLFWPairs(t *testing.T) {
	in := "2\t1\nAl\t1\t2\nAl\t1\tBo\t3\n\nCy 4 12\nCy 1 Di 1\n"
	ps, err := ParsePairs(strings.NewReader(in), "/lfw")
	if err != nil {
		t.Fatal(err)
	}
	want := []Pair{
		{A: "/lfw/Al/Al_0001.jpg", B: "/lfw/Al/Al_0002.jpg", Same: true, Fold: 0, Line: 2},
		{A: "/lfw/Al/Al_0001.jpg", B: "/lfw/Bo/Bo_0003.jpg", Same: false, Fold: 0, Line: 3},
		{A: "/lfw/Cy/Cy_0004.jpg", B: "/lfw/Cy/Cy_0012.jpg", Same: true, Fold: 1, Line: 5},
		{A: "/lfw/Cy/Cy_0001.jpg", B: "/lfw/Di/Di_0001.jpg", Same: false, Fold: 1, Line: 6},
	}
	if ps.Format != FormatLFW || ps.Folds != 2 || len(ps.Pairs) != len(want) {
		t.Fatalf("got %+v", ps)
	}
	for i := range want {
		if ps.Pairs[i] != want[i] {
			t.Errorf("pair %d = %+v, want %+v", i, ps.Pairs[i], want[i])
		}
	}
	if got := ps.FoldIndices(); len(got) != 4 || got[2] != 1 {
		t.Errorf("FoldIndices = %v", got)
	}
	if g, i := ps.Counts(); g != 2 || i != 2 {
		t.Errorf("Counts = %d, %d", g, i)
	}
	if p := ps.Paths(); len(p) != 7 {
		t.Errorf("Paths = %v (want 7 distinct)", p)
	}
	// A lone header number is one fold (pairsDevTrain.txt).
	ps, err = ParsePairs(strings.NewReader("1\nA 1 2\nA 1 B 1\n"), "")
	if err != nil || ps.Folds != 1 || ps.Pairs[0].A != filepath.Join("A", "A_0001.jpg") {
		t.Errorf("one-number header: %+v %v", ps, err)
	}
}

func TestParsePairsErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "empty file"},
		{"blank", "\n\n", "empty file"},
		{"bad header", "ten 300\n", "line 1: header"},
		{"zero folds", "0 300\n", "line 1: header"},
		{"three header fields", "1 2 3\n", "line 1: header"},
		{"same expected", "1 1\nA 1 B 2\nA 1 B 2\n", "line 2: pair 1 of fold 1 should be a same-person line"},
		{"diff expected", "1 1\nA 1 2\nA 1 2\n", "line 3: pair 2 of fold 1 should be a different-person line"},
		{"bad number", "1 1\nA 1 x\nA 1 B 2\n", `line 2: "x" is not an image number`},
		{"zero number", "1 1\nA 0 1\nA 1 B 2\n", `line 2: "0" is not an image number`},
		{"path in name", "1 1\n../etc 1 2\nA 1 B 2\n", `line 2: "../etc" is not a valid LFW name`},
		{"dotdot name", "1 1\nA 1 2\nA 1 .. 2\n", `line 3: ".." is not a valid LFW name`},
		{"too few", "2 1\nA 1 2\nA 1 B 2\n", "announces 2 folds × 2 × 1 = 4 pairs, the file has 2"},
		{"too many", "1 1\nA 1 2\nA 1 B 2\nA 1 2\n", "line 4: more pairs"},
		{"csv fields", "a.jpg,b.jpg,1\na.jpg,b.jpg\n", "line 2: want 3 fields"},
		{"csv label", "a.jpg,b.jpg,1\na.jpg,b.jpg,maybe\n", `line 2: same must be`},
		{"csv empty path", "a.jpg,,1\n", "line 1: empty photo path"},
		{"csv only header", "path_a,path_b,same\n", "no pairs"},
		{"csv quote", "a.jpg,\"b.jpg,1\n", "line 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePairs(strings.NewReader(tc.in), "")
			if err == nil || !errors.Is(err, ErrPairsFormat) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestParseCSVPairs(t *testing.T) {
	in := "# comment\npath_a, path_b, same\na.jpg,b.jpg,1\n/abs/c.jpg,d.jpg,different\n\n\"e,1.jpg\",f.jpg,TRUE\ng.jpg,h.jpg,0\n"
	ps, err := ParsePairs(strings.NewReader(in), "root")
	if err != nil {
		t.Fatal(err)
	}
	want := []Pair{
		{A: filepath.Join("root", "a.jpg"), B: filepath.Join("root", "b.jpg"), Same: true, Fold: -1, Line: 3},
		{A: "/abs/c.jpg", B: filepath.Join("root", "d.jpg"), Same: false, Fold: -1, Line: 4},
		{A: filepath.Join("root", "e,1.jpg"), B: filepath.Join("root", "f.jpg"), Same: true, Fold: -1, Line: 6},
		{A: filepath.Join("root", "g.jpg"), B: filepath.Join("root", "h.jpg"), Same: false, Fold: -1, Line: 7},
	}
	if ps.Format != FormatCSV || ps.Folds != 0 || len(ps.Pairs) != len(want) {
		t.Fatalf("got %+v", ps)
	}
	for i := range want {
		if ps.Pairs[i] != want[i] {
			t.Errorf("pair %d = %+v, want %+v", i, ps.Pairs[i], want[i])
		}
	}
	if ps.FoldIndices() != nil {
		t.Error("CSV should leave folds to KFold")
	}
	// A UTF-8 byte-order mark and CRLF line ends (spreadsheet exports).
	ps, err = ParsePairs(strings.NewReader("\ufeffa.jpg,b.jpg,1\r\nc.jpg,d.jpg,0\r\n"), "")
	if err != nil || len(ps.Pairs) != 2 || ps.Pairs[0].A != "a.jpg" || ps.Pairs[1].B != "d.jpg" {
		t.Errorf("BOM/CRLF CSV: %+v %v", ps, err)
	}
	ps, err = ParsePairs(strings.NewReader("\ufeff1 1\r\nA 1 2\r\nA 1 B 1\r\n"), "")
	if err != nil || len(ps.Pairs) != 2 || ps.Pairs[1].B != filepath.Join("B", "B_0001.jpg") {
		t.Errorf("BOM/CRLF LFW: %+v %v", ps, err)
	}
	// No header.
	ps, err = ParsePairs(strings.NewReader("x.jpg,y.jpg,same\n"), "")
	if err != nil || len(ps.Pairs) != 1 || !ps.Pairs[0].Same {
		t.Errorf("headerless: %+v %v", ps, err)
	}
}

// TestLFWPairsFile reads the real LFW View 2 pairs file when it is present.
func TestLFWPairsFile(t *testing.T) {
	path := filepath.Join("..", "..", "shared", "faces", "lfw", "pairs.txt")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("LFW absent (%v)", err)
	}
	ps, err := ReadPairsFile(path, "")
	if err != nil {
		t.Fatal(err)
	}
	g, im := ps.Counts()
	if len(ps.Pairs) != 6000 || ps.Folds != 10 || g != 3000 || im != 3000 {
		t.Fatalf("LFW: %d pairs, %d folds, %d/%d", len(ps.Pairs), ps.Folds, g, im)
	}
	perFold := make([]int, 10)
	for _, p := range ps.Pairs {
		perFold[p.Fold]++
	}
	for f, n := range perFold {
		if n != 600 {
			t.Errorf("fold %d has %d pairs", f, n)
		}
	}
	// The default root is the images folder beside pairs.txt.
	if _, err := os.Stat(ps.Pairs[0].A); err != nil {
		t.Errorf("first photo: %v", err)
	}
	if n := len(ps.Paths()); n != 7701 {
		t.Errorf("%d distinct photos, want 7701", n)
	}
}

func TestPairsFromDir(t *testing.T) {
	dir := t.TempDir()
	files := []string{"ann/1.jpg", "ann/2.PNG", "ann/notes.txt", "ann/.hidden.jpg", "bob/1.jpeg", "cy/a.jpg", "cy/b.jpg", "empty/x.txt", ".git/y.jpg", "loose.jpg"}
	for _, f := range files {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, fixture(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ps, err := PairsFromDir(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	// 5 photos: 10 pairs, 2 same (ann 1-2, cy a-b).
	g, im := ps.Counts()
	if len(ps.Pairs) != 10 || g != 2 || im != 8 || ps.Format != FormatFolders {
		t.Fatalf("got %d pairs (%d same): %+v", len(ps.Pairs), g, ps.Pairs)
	}
	if ps.Pairs[0].A != filepath.Join(dir, "ann", "1.jpg") || ps.Pairs[0].B != filepath.Join(dir, "ann", "2.PNG") || !ps.Pairs[0].Same {
		t.Errorf("first pair %+v", ps.Pairs[0])
	}
	if _, err := PairsFromDir(dir, 9); err == nil {
		t.Error("limit of 9 pairs not enforced")
	}
	if _, err := PairsFromDir(filepath.Join(dir, "none"), 0); err == nil {
		t.Error("missing folder accepted")
	}
}

func TestJohnsFolders(t *testing.T) {
	dir := filepath.Join("..", "..", "shared", "faces", "johns")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("johns absent (%v)", err)
	}
	ps, err := PairsFromDir(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("johns: %d pairs", len(ps.Pairs))
	if len(ps.Pairs) != 1485 {
		t.Errorf("johns: %d pairs, want 1485 (55 photos)", len(ps.Pairs))
	}
}

func FuzzParsePairs(f *testing.F) {
	for _, s := range []string{
		"10\t300\nA\t1\t2\n",
		"1 1\nA 1 2\nA 1 B 2\n",
		"2 1\nA 1 2\nA 1 B 2\nC 1 3\nC 1 D 4\n",
		"path_a,path_b,same\na.jpg,b.jpg,1\nc,d,different\n",
		"a,\"b\"\"c\",true\n",
		"# x\n\n1\n",
		"\xef\xbb\xbf1 1\r\nA 1 2\r\nA 1 B 1\r\n",
		"\xff\xfe1\x00 \x001\x00\n\x00",        // UTF-16LE with its BOM
		"\xfe\xff\x001\x00 \x001\x00\n",        // UTF-16BE with its BOM
		"p\x00a\x00,\x00b\x00,\x001\x00\n\x00", // UTF-16LE without a BOM
		"a.jpg,b.jpg,1\n" + strings.Repeat("x", maxPairsLine+1) + ",b,1\n",
		strings.Repeat("\n", 100) + "a,b,1\n",
		"a,b,1\n\x00\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, err := ParsePairs(strings.NewReader(string(data)), "r")
		if err != nil {
			if !errors.Is(err, ErrPairsFormat) {
				t.Fatalf("error %v does not wrap ErrPairsFormat", err)
			}
			return
		}
		if len(ps.Pairs) == 0 {
			t.Fatal("no pairs and no error")
		}
		for _, p := range ps.Pairs {
			if p.A == "" || p.B == "" || p.Line < 1 {
				t.Fatalf("bad pair %+v", p)
			}
			if ps.Folds > 0 && (p.Fold < 0 || p.Fold >= ps.Folds) || ps.Folds == 0 && p.Fold != -1 {
				t.Fatalf("pair %+v: fold outside 0..%d", p, ps.Folds)
			}
			if ps.Format == FormatLFW && (!strings.HasPrefix(p.A, "r/") || strings.Contains(p.A, "..")) {
				t.Fatalf("LFW path %q escapes the root", p.A)
			}
		}
	})
}

func TestPairSetEvaluate(t *testing.T) {
	// Two LFW folds of 3 + 3 pairs; fold 1 has one unscored pair.
	var b strings.Builder
	b.WriteString("2 3\n")
	for range 2 {
		b.WriteString("A 1 2\nB 1 2\nC 1 2\nA 1 B 1\nA 1 C 1\nB 1 C 1\n")
	}
	ps, err := ParsePairs(strings.NewReader(b.String()), "")
	if err != nil {
		t.Fatal(err)
	}
	scores := []float64{0.9, 0.8, 0.7, 0.1, 0.2, 0.75, 0.85, math.NaN(), 0.6, 0.3, 0.65, 0.0}
	e, err := ps.Evaluate(scores, PairsOptions{NoFace: NoFaceSkip})
	if err != nil {
		t.Fatal(err)
	}
	if e.Skipped != 1 || e.Pairs != 11 || len(e.KFold.Folds) != 2 || e.KFold.Folds[1].Pairs != 5 {
		t.Fatalf("Evaluate: skipped %d, pairs %d, folds %+v", e.Skipped, e.Pairs, e.KFold.Folds)
	}
	// The file's folds: fold 0 is the first six pairs.
	if e.KFold.Folds[0].Pairs != 6 {
		t.Errorf("fold 0 has %d pairs, want the file's 6", e.KFold.Folds[0].Pairs)
	}
	// Another k: stratified folds.
	if e, err := ps.Evaluate(scores, PairsOptions{Folds: 3, NoFace: NoFaceSkip}); err != nil || len(e.KFold.Folds) != 3 {
		t.Errorf("k=3: %v %v", e, err)
	}
	c, err := ps.Calibrate(scores, 0.5, NoFaceSkip)
	if err != nil || c.Skipped != 1 || c.Impostor != 6 || c.Genuine != 5 {
		t.Errorf("Calibrate: %+v %v", c, err)
	}
	if _, err := ps.Evaluate(scores[:3], PairsOptions{}); err == nil {
		t.Error("score count mismatch accepted")
	}
}

// fixture is the content of a test file: the first bytes of a JPEG for a
// photo's name (the walker decides by content), a line of text otherwise.
func fixture(name string) []byte {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".jpg", ".jpeg", ".png":
		return []byte{0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, 'J', 'F', 'I', 'F', 0}
	}
	return []byte("some notes\n")
}

// endless yields n bytes of a repeated pattern without holding them, and
// counts what was read.
type endless struct {
	pattern []byte
	n, read int64
}

func (e *endless) Read(p []byte) (int, error) {
	if e.read >= e.n {
		return 0, io.EOF
	}
	k := int(min(int64(len(p)), e.n-e.read))
	for i := range k {
		p[i] = e.pattern[(e.read+int64(i))%int64(len(e.pattern))]
	}
	e.read += int64(k)
	return k, nil
}

// TestPairsHugeLine: a pairs file with a 1 GiB line (a file that is not a
// pairs file at all, or a broken export) is refused after reading little of
// it, in bounded memory and time: the file is streamed with a line limit,
// never read whole (it was: a 1 GB line cost 11.6 GB RSS).
func TestPairsHugeLine(t *testing.T) {
	for _, tc := range []struct {
		name, first string
		pattern     string
		want        string
	}{
		{"LFW", "10 300\n", "Aaron_Eckhart ", "line 2 is longer than 64 KiB"},
		{"CSV", "a.jpg,b.jpg,1\n", "x", "line 2 is longer than 64 KiB"},
		{"first line", "", "y", "line 1 is longer than 64 KiB"},
		{"quoted CSV field", "a.jpg,\"", "z", "line 1 is longer than 64 KiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &endless{pattern: []byte(tc.pattern), n: 1 << 30}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, err := ParsePairs(io.MultiReader(strings.NewReader(tc.first), src), "")
			took := time.Since(start)
			runtime.ReadMemStats(&after)
			if err == nil || !errors.Is(err, ErrPairsFormat) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%v after reading %d KiB, %d KiB allocated, %v", err, src.read>>10, alloc>>10, took)
			if src.read > 1<<20 || alloc > 4<<20 || took > 5*time.Second {
				t.Errorf("read %d bytes, allocated %d bytes, took %v: want ≤ 1 MiB read, ≤ 4 MiB allocated", src.read, alloc, took)
			}
		})
	}
	// A line just under the limit is a line.
	long := strings.Repeat("d", maxPairsLine-20)
	if ps, err := ParsePairs(strings.NewReader("a.jpg,"+long+",1\n"), ""); err != nil || ps.Pairs[0].B != long {
		t.Errorf("a long but legal line: %v", err)
	}
	// Blank lines before the first pair are bounded too.
	src := &endless{pattern: []byte("\n"), n: 1 << 30}
	if _, err := ParsePairs(src, ""); err == nil || !strings.Contains(err.Error(), "blank lines") || src.read > 2<<20 {
		t.Errorf("endless blank lines: %v after %d bytes", err, src.read)
	}
}

// TestPairsUTF16: UTF-16 files (Excel's and Notepad's "Unicode text") are
// refused with a message that says what to do, whether or not they start
// with a byte-order mark; a UTF-8 one is read.
func TestPairsUTF16(t *testing.T) {
	utf16le := func(s string, bom bool) string {
		var b strings.Builder
		if bom {
			b.WriteString("\xff\xfe")
		}
		for _, r := range s {
			b.WriteRune(r)
			b.WriteByte(0)
		}
		return b.String()
	}
	utf16be := func(s string) string {
		var b strings.Builder
		b.WriteString("\xfe\xff")
		for _, r := range s {
			b.WriteByte(0)
			b.WriteRune(r)
		}
		return b.String()
	}
	csvText := "path_a,path_b,same\r\na.jpg,b.jpg,1\r\n"
	for name, in := range map[string]string{
		"UTF-16LE with BOM":    utf16le(csvText, true),
		"UTF-16LE without BOM": utf16le(csvText, false),
		"UTF-16BE with BOM":    utf16be(csvText),
		"LFW in UTF-16LE":      utf16le("1 1\nA 1 2\nA 1 B 1\n", true),
		"LFW UTF-16 no BOM":    utf16le("1 1\nA 1 2\nA 1 B 1\n", false),
		"NUL on line 3":        "a.jpg,b.jpg,1\nc.jpg,d.jpg,0\ne.jpg,f\x00.jpg,1\n",
	} {
		_, err := ParsePairs(strings.NewReader(in), "")
		if err == nil || !errors.Is(err, ErrPairsFormat) || !strings.Contains(err.Error(), "UTF-16") || !strings.Contains(err.Error(), "save it again as UTF-8") {
			t.Errorf("%s: error %v, want the UTF-16 advice", name, err)
		}
	}
	_, err := ParsePairs(strings.NewReader("a.jpg,b.jpg,1\nc.jpg,d.jpg,0\ne.jpg,f\x00.jpg,1\n"), "")
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("NUL: %v, want line 3 named", err)
	}
	if ps, err := ParsePairs(strings.NewReader("\ufeff"+csvText), ""); err != nil || len(ps.Pairs) != 1 {
		t.Errorf("UTF-8 with BOM: %v", err)
	}
	// A 1 GiB file (sparse: NUL bytes) named as a pairs file is refused at
	// once, without reading it whole.
	p := filepath.Join(t.TempDir(), "pairs.txt")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	start := time.Now()
	if _, err := ReadPairsFile(p, ""); err == nil || !strings.Contains(err.Error(), "NUL") || time.Since(start) > 2*time.Second {
		t.Errorf("1 GiB of NUL: %v after %v", err, time.Since(start))
	}
	if _, err := ReadPairsFile(t.TempDir(), ""); err == nil || !strings.Contains(err.Error(), "is a folder") {
		t.Errorf("a folder as pairs file: %v", err)
	}
}
