package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/facever/facever/internal/testmodels"
)

// TestBatchBadPhotoInTheMiddle runs every command that takes several photos
// on good, bad, good: the bad photo is an error entry (a line in text mode,
// {"path", "error": {"code", "message"}} in --json, in order with the
// results), the good ones are processed, and the exit status is 2.
func TestBatchBadPhotoInTheMiddle(t *testing.T) {
	testmodels.Dir(t)
	notImage := writeFile(t, "notes.jpg", []byte("hello, these are my notes\n"))
	noFace := writeFile(t, "grey.png", pngOf(t, 300, 200))
	gal := filepath.Join(t.TempDir(), "g.db")
	if code, _, errs := facever(t, "enroll", "-g", gal, "--name", "John Simm", simmA); code != exitOK {
		t.Fatalf("enroll: %d %s", code, errs)
	}
	outDir := t.TempDir()
	tests := []struct {
		cmd  []string
		bad  string
		code string
		good string // in the text output of each good photo
	}{
		{[]string{"detect"}, notImage, "not_image", "face(s)"},
		{[]string{"align", "--out", outDir}, noFace, "no_face", ".png"},
		{[]string{"embed"}, noFace, "no_face", "0."},
		{[]string{"enroll", "-g", gal, "--name", "John Simm"}, noFace, "no_face", "enrolled"},
		{[]string{"identify", "-g", gal}, noFace, "no_face", "similarity"},
		{[]string{"detect"}, filepath.Join(t.TempDir(), "missing.jpg"), "not_found", "face(s)"},
		{[]string{"embed"}, notImage, "not_image", "0."},
		{[]string{"identify", "-g", gal}, t.TempDir(), "unreadable", "similarity"},
	}
	for _, tc := range tests {
		t.Run(tc.cmd[0]+"_"+tc.code, func(t *testing.T) {
			good := []string{simmA, salleyA}
			args := append(append(append([]string{}, tc.cmd...), good[0], tc.bad), good[1])
			// Text.
			code, out, errs := facever(t, args...)
			if code != exitError {
				t.Fatalf("text: exit %d, want 2\n%s\n%s", code, out, errs)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			at := map[string]int{}
			for i, l := range lines {
				for _, p := range append(good, tc.bad) {
					if strings.Contains(l, p) || (tc.cmd[0] == "align" && strings.Contains(l, strings.TrimSuffix(filepath.Base(p), filepath.Ext(p))+"_1.png")) {
						if _, seen := at[p]; !seen {
							at[p] = i
						}
					}
				}
			}
			if !(at[good[0]] < at[tc.bad] && at[tc.bad] < at[good[1]]) || len(at) != 3 {
				t.Fatalf("text: the photos are not reported in order: %v\n%s", at, out)
			}
			if l := lines[at[tc.bad]]; !strings.Contains(l, tc.bad+": error "+tc.code+": ") {
				t.Fatalf("text: bad photo's line %q", l)
			}
			if !strings.Contains(strings.Join(lines[at[good[1]]:], "\n"), tc.good) {
				t.Fatalf("text: the photo after the bad one was not processed:\n%s", out)
			}
			if !strings.Contains(errs, "1 of 3 photo(s) could not be used") {
				t.Fatalf("text: stderr %q", errs)
			}
			// JSON.
			code, out, errs = facever(t, append(args, "--json")...)
			if code != exitError {
				t.Fatalf("json: exit %d, want 2\n%s\n%s", code, out, errs)
			}
			var doc struct {
				Photos []map[string]json.RawMessage `json:"photos"`
			}
			if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Photos) != 3 {
				t.Fatalf("json: %v\n%s", err, out)
			}
			for i, p := range doc.Photos {
				var path string
				json.Unmarshal(p["path"], &path)
				want := []string{good[0], tc.bad, good[1]}[i]
				if path != want {
					t.Fatalf("json: photo %d is %q, want %q", i, path, want)
				}
				_, hasErr := p["error"]
				if hasErr != (i == 1) {
					t.Fatalf("json: photo %d: %s", i, out)
				}
			}
			bad := doc.Photos[1]
			var e struct{ Code, Message string }
			if err := json.Unmarshal(bad["error"], &e); err != nil || len(bad) != 2 || e.Code != tc.code || e.Message == "" {
				t.Fatalf("json: the bad photo's entry is not {path, error: {code %s, message}}: %v %s", tc.code, err, out)
			}
		})
	}
}
