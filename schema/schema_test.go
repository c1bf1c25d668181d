package schema

import (
	"strings"
	"testing"
)

// TestSchemasCompile: every file is valid JSON Schema and its references
// resolve.
func TestSchemasCompile(t *testing.T) {
	names, err := Names()
	if err != nil || len(names) < 10 {
		t.Fatalf("names %v %v", names, err)
	}
	for _, n := range names {
		if err := Validate(n, []byte(`"x"`)); err == nil || strings.Contains(err.Error(), "schema "+n) {
			t.Errorf("%s: a string validated, or the schema did not compile: %v", n, err)
		}
	}
}

// TestValidateRejects: the vocabulary's rules are enforced: the old and the
// inconsistent spellings fail.
func TestValidateRejects(t *testing.T) {
	face := `{"box":[1,2,3,4],"score":0.9,"landmarks":[[1,1],[2,2],[3,3],[4,4],[5,5]]}`
	good := `{"similarity":0.7,"threshold":0.38,"same_person":true,"model":"fr_feature","photos":[{"scale":1,"face_count":1,"face":` + face + `},{"scale":1,"face_count":1,"face":` + face + `}]}`
	if err := Validate("verify.json", []byte(good)); err != nil {
		t.Fatalf("good verify document refused: %v", err)
	}
	for name, doc := range map[string]string{
		"faces as a count":    strings.Replace(good, `"face_count":1`, `"faces":1`, 1),
		"boolean as 0/1":      strings.Replace(good, `"same_person":true`, `"same_person":1`, 1),
		"empty head":          strings.Replace(good, `"model":"fr_feature"`, `"model":"fr_feature","head":""`, 1),
		"box of three":        strings.Replace(good, `[1,2,3,4]`, `[1,2,3]`, 1),
		"four landmarks":      strings.Replace(good, `[[1,1],[2,2],[3,3],[4,4],[5,5]]`, `[[1,1],[2,2],[3,3],[4,4]]`, 1),
		"similarity as text":  strings.Replace(good, `"similarity":0.7`, `"similarity":"0.7"`, 1),
		"one photo":           `{"similarity":0.7,"threshold":0.38,"same_person":true,"model":"m","photos":[{"scale":1,"face_count":1,"face":` + face + `}]}`,
		"unknown field":       strings.Replace(good, `"model":"fr_feature"`, `"model":"fr_feature","score":0.7`, 1),
		"missing similarity":  strings.Replace(good, `"similarity":0.7,`, ``, 1),
		"detector score of 2": strings.Replace(good, `"score":0.9`, `"score":2`, 1),
	} {
		if err := Validate("verify.json", []byte(doc)); err == nil {
			t.Errorf("%s: accepted %s", name, doc)
		}
	}
	errDoc := `{"photos":[{"path":"a.jpg","error":{"code":"no_face","message":"no face found"}}]}`
	if err := Validate("detect.json", []byte(errDoc)); err != nil {
		t.Errorf("per-photo error entry refused: %v", err)
	}
	if err := Validate("detect.json", []byte(`{"photos":[{"path":"a.jpg","error":{"code":"","message":"x"}}]}`)); err == nil {
		t.Error("an empty error code was accepted")
	}
	if err := Validate("nosuch.json", []byte(`{}`)); err == nil {
		t.Error("an unknown schema name was accepted")
	}
}
