package main

import (
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the README's JSON reference from schema/")

// TestReadmeMatchesSchema: the README's JSON field tables are exactly what
// the schema files say (golden check; -update rewrites them).
func TestReadmeMatchesSchema(t *testing.T) {
	const readme = "../../README.md"
	if err := run(readme, !*update); err != nil {
		t.Fatal(err)
	}
	tables, err := Tables()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"`similarity`", "`photos[].face_count`", "`error`", "(`schema/verify.json`)"} {
		if !strings.Contains(tables, want) {
			t.Errorf("tables lack %s", want)
		}
	}
	doc, _ := os.ReadFile(readme)
	if _, err := Replace([]byte("no markers"), tables); err == nil {
		t.Error("a file without markers was accepted")
	}
	if !strings.Contains(string(doc), tables) {
		t.Error("README does not hold the tables")
	}
}
