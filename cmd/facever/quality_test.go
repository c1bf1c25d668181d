package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"gocv.io/x/gocv"
)

// TestDetectRotationQuality: detect --json reports the quarter turn, the
// roll and the quality of each face; a photo turned upside down is read
// the right way up (rotation 180) and keeps a good quality.
func TestDetectRotationQuality(t *testing.T) {
	src := gocv.IMRead(simmA, gocv.IMReadColor)
	defer src.Close()
	turned := gocv.NewMat()
	defer turned.Close()
	gocv.Rotate(src, &turned, gocv.Rotate180Clockwise)
	path := filepath.Join(t.TempDir(), "upside_down.png")
	if !gocv.IMWrite(path, turned) {
		t.Fatal("cannot write the turned photo")
	}
	for _, tc := range []struct {
		photo    string
		rotation int
	}{{simmA, 0}, {path, 180}} {
		code, out, errs := facever(t, "detect", "--json", tc.photo)
		if code != exitOK {
			t.Fatalf("detect: exit %d %s", code, errs)
		}
		var d struct {
			Photos []struct {
				Faces []struct {
					Rotation int     `json:"rotation"`
					Roll     float64 `json:"roll"`
					Quality  struct {
						Score      float64 `json:"score"`
						Landmarks  float64 `json:"landmarks"`
						Sharpness  float64 `json:"sharpness"`
						FacePixels float64 `json:"face_pixels"`
						Yaw        float64 `json:"yaw"`
					} `json:"quality"`
				} `json:"faces"`
			} `json:"photos"`
		}
		if err := json.Unmarshal([]byte(out), &d); err != nil || len(d.Photos) != 1 || len(d.Photos[0].Faces) != 1 {
			t.Fatalf("detect JSON %v: %s", err, out)
		}
		f := d.Photos[0].Faces[0]
		if f.Rotation != tc.rotation || f.Quality.Score < 0.5 || f.Quality.FacePixels < 40 || f.Quality.Sharpness <= 0 {
			t.Errorf("%s: rotation %d (want %d), roll %.1f, quality %+v", tc.photo, f.Rotation, tc.rotation, f.Roll, f.Quality)
		}
	}
}

// TestEnrollMinQuality: enroll refuses a face below --min-quality, with
// the reason; the default keeps an ordinary photo.
func TestEnrollMinQuality(t *testing.T) {
	gal := filepath.Join(t.TempDir(), "g.db")
	code, out, _ := facever(t, "enroll", "--gallery", gal, "--name", "x", "--min-quality", "1.01", simmA)
	if code != exitError || !strings.Contains(out, "below --min-quality") {
		t.Fatalf("--min-quality 1.01: exit %d %s", code, out)
	}
	if code, out, errs := facever(t, "enroll", "--gallery", gal, "--name", "x", simmA); code != exitOK {
		t.Fatalf("default --min-quality: exit %d %s %s", code, out, errs)
	}
}
