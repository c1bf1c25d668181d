// Package models is facever's catalogue of the model files it knows: where
// each comes from, its checksum, and the exact form of its inputs and outputs.
// The files themselves are fetched by `make setup` into this directory and are
// never committed.
package models

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// SetupCommand is what a person runs to fetch the model files.
const SetupCommand = "make setup"

// EnvDir is the environment variable that names the models directory.
const EnvDir = "FACEVER_MODELS"

// ErrMissing is returned when a model file is not in the models directory.
var ErrMissing = errors.New("model file missing")

// ErrChecksum is returned when a model file's sha256 differs from the catalogue.
var ErrChecksum = errors.New("model checksum mismatch")

// Model describes one model file of the catalogue.
type Model struct {
	// Name is the catalogue name (the file name without .onnx).
	Name string
	// File is the file name inside the models directory.
	File string
	// Package and Version name the npm package that ships the file, and
	// Path its place inside the package.
	Package, Version, Path string
	// License is the licence the source package states.
	License string
	// SHA256 is the hex sha256 of the file.
	SHA256 string
	// Input is the input tensor's name and Shape its shape (N first; N=1 as exported).
	Input string
	Shape []int
	// Color is the channel order the model wants: "RGB" or "GRAY".
	Color string
	// Mean and Scale normalise a pixel p (0..255) to (p−Mean)·Scale.
	Mean, Scale float32
	// Outputs names the output tensors in the order the pipeline reads them.
	Outputs []string
	// OutputShapes gives each output's shape at batch 1.
	OutputShapes [][]int
	// What says in words what the model does.
	What string
	// Chip names the alignment recipe a backbone needs: "arcface112" (the
	// ArcFace five-point template, 112×112) or "dlib150" (dlib's 150×150
	// chip with padding 0.25). Empty for models that are not backbones.
	Chip string
	// Threshold is the default cosine-similarity threshold of a backbone
	// (facever compares unit-length embeddings by cosine for every model).
	Threshold float64
	// IdentifyThreshold is the default threshold of 1:N identification
	// (identify, the server's /v1/identify): higher than Threshold, because
	// a search against N people has N chances of a false match. Measured on
	// LFW's open-set protocol (eval-identify) for at most 1 % of strangers
	// matched; 0 means unmeasured, and Identification falls back to
	// Threshold.
	IdentifyThreshold float64 `json:",omitempty"`
	// MadeBy says how the file is obtained when it is not fetched as is:
	// the command that builds it.
	MadeBy string
	// Calibrated is true when Threshold was set by `facever calibrate`
	// (user models; a new registration's threshold comes from its check
	// photos only).
	Calibrated bool `json:",omitempty"`
	// Metadata are the ONNX file's metadata_props (user models).
	Metadata map[string]string `json:",omitempty"`
}

const (
	pkg     = "faceplugin-face-recognition-js"
	version = "0.0.1"
	license = "MIT (per the package's package.json; training data not stated)"
)

// Feature is the MobileFaceNet-style face embedder (512-d).
var Feature = Model{
	Name: "fr_feature", File: "fr_feature.onnx", Package: pkg, Version: version, Path: "package/model/fr_feature.onnx",
	License: license, SHA256: "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581",
	Input: "input", Shape: []int{1, 3, 112, 112}, Color: "RGB", Mean: 127, Scale: 1.0 / 128,
	Outputs: []string{"output"}, OutputShapes: [][]int{{1, 512}},
	What: "MobileFaceNet-style embedder, opset 9: aligned 112×112 RGB face → 512-d feature",
	Chip: "arcface112", Threshold: 0.38, IdentifyThreshold: 0.495,
}

// Dlib is dlib's face-recognition ResNet (CC0), converted from Debian's
// dlib_face_recognition_resnet_model_v1.dat by `facever model import-dlib`
// (`make dlib`). The graph normalises its input itself (mean 122.782,
// 117.001, 104.298 and /256 in a BatchNormalization), so pixels go in as 0..255.
var Dlib = Model{
	Name: "dlib_resnet_v1", File: "dlib_resnet_v1.onnx", Package: "dlib (Debian source package)", Version: "19.24+dfsg-1",
	Path:    "dlib_19.24+dfsg.orig-dlib-models.tar.bz2: dlib_face_recognition_resnet_model_v1.dat",
	License: "CC0 (Debian copyright file of dlib)", SHA256: "24d1f91ed46d1efde0a62743e2962256d381cacf4cd9b6e69f50324a1941d59a",
	Input: "input", Shape: []int{1, 3, 150, 150}, Color: "RGB", Mean: 0, Scale: 1,
	Outputs: []string{"descriptor"}, OutputShapes: [][]int{{1, 128}},
	What: "dlib ResNet-29 face descriptor: dlib's 150×150 RGB chip → 128-d descriptor (published LFW 99.38 %)",
	Chip: "dlib150", Threshold: 0.924, IdentifyThreshold: 0.9543,
	MadeBy: "make dlib",
}

// Detect is the UltraFace-320 face detector.
var Detect = Model{
	Name: "fr_detect", File: "fr_detect.onnx", Package: pkg, Version: version, Path: "package/model/fr_detect.onnx",
	License: license, SHA256: "6c0256ccd3164f844736a401faf936ec2930764a87ae39442180887d0c5c8854",
	Input: "input", Shape: []int{1, 3, 240, 320}, Color: "RGB", Mean: 127, Scale: 1.0 / 128,
	Outputs: []string{"scores", "boxes"}, OutputShapes: [][]int{{1, 4420, 2}, {1, 4420, 4}},
	What: "UltraFace-320 detector: 4420 priors, softmaxed scores (column 1 = face), boxes x1,y1,x2,y2 in 0..1",
}

// Landmark is the 68-point landmark regressor.
var Landmark = Model{
	Name: "fr_landmark", File: "fr_landmark.onnx", Package: pkg, Version: version, Path: "package/model/fr_landmark.onnx",
	License: license, SHA256: "f10b0ba1d2a8a099adefede1ebf3733e44fe370715e7303dbeb7f59c02142258",
	Input: "input", Shape: []int{1, 1, 64, 64}, Color: "GRAY", Mean: 0, Scale: 1.0 / 256,
	Outputs: []string{"output"}, OutputShapes: [][]int{{1, 136}},
	What: "68-point landmarks of a face box: 64×64 grey crop → 136 values, (x,y) relative to the box",
}

// All lists the catalogue.
var All = []Model{Feature, Detect, Landmark, Dlib}

// Backbones lists the catalogue's face embedders, the default first.
var Backbones = []Model{Feature, Dlib}

// Backbone returns the backbone called name ("" is the default, fr_feature;
// "dlib" is short for dlib_resnet_v1), or a user model registered in the
// models directory Dir("") ($FACEVER_MODELS or the checkout's models/); see
// BackboneIn for another directory.
func Backbone(name string) (Model, error) { return BackboneIn("", name) }

// Lookup returns the catalogue entry with the given name (with or without .onnx).
func Lookup(name string) (Model, bool) {
	for _, m := range All {
		if m.Name == name || m.File == name {
			return m, true
		}
	}
	return Model{}, false
}

// Dir resolves the models directory: flag if not empty, else $FACEVER_MODELS,
// else the models/ directory of the facever checkout that holds the working
// directory or the executable.
func Dir(flag string) string {
	if flag != "" {
		return flag
	}
	if d := os.Getenv(EnvDir); d != "" {
		return d
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		if r, err := filepath.EvalSymlinks(exe); err == nil {
			exe = r
		}
		starts = append(starts, filepath.Dir(exe))
	}
	for _, s := range starts {
		for d := s; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "models", "SHA256SUMS")); err == nil {
				return filepath.Join(d, "models")
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return "models"
}

var verified sync.Map // path+size+mtime → true

// Path returns the path of m inside dir after checking that the file exists
// and that its sha256 matches the catalogue. Errors name the set-up command.
func Path(dir string, m Model) (string, error) {
	p := filepath.Join(dir, m.File)
	st, err := os.Stat(p)
	if err != nil {
		cmd := SetupCommand
		if m.Package == UserPackage {
			cmd = "facever model add " + m.Path + " --name " + m.Name
		} else if m.MadeBy != "" {
			cmd = m.MadeBy
		}
		return "", fmt.Errorf("%w: %s not found in %s (run `%s`, or point --models / %s at the directory that holds it)", ErrMissing, m.File, dir, cmd, EnvDir)
	}
	key := fmt.Sprintf("%s|%d|%d", p, st.Size(), st.ModTime().UnixNano())
	if _, ok := verified.Load(key); ok {
		return p, nil
	}
	sum, err := FileSHA256(p)
	if err != nil {
		return "", err
	}
	if sum != m.SHA256 && m.Package == UserPackage {
		return "", fmt.Errorf("%w: %s has sha256 %s, but it was registered as %s; register it again (`facever model remove %s`, then `facever model add`)", ErrChecksum, p, sum, m.SHA256, m.Name)
	}
	if sum != m.SHA256 {
		return "", fmt.Errorf("%w: %s has sha256 %s, the catalogue expects %s (%s@%s %s); delete it and run `%s`", ErrChecksum, p, sum, m.SHA256, m.Package, m.Version, m.Path, SetupCommand)
	}
	verified.Store(key, true)
	return p, nil
}

// FileSHA256 returns the hex sha256 of a file's content.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Identification is the default 1:N identification threshold: IdentifyThreshold,
// or Threshold where that was not measured.
func (m Model) Identification() float64 {
	if m.IdentifyThreshold != 0 {
		return m.IdentifyThreshold
	}
	return m.Threshold
}
