package models

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
)

// UserFile is the user catalogue's file name inside the models directory:
// the backbones registered by `facever model add`, as JSON.
const UserFile = "user.json"

// UserPackage is the Package of every user catalogue entry.
const UserPackage = "user"

// ErrUnknown is returned for a model name that neither the built-in nor the
// user catalogue knows.
var ErrUnknown = errors.New("unknown model")

// userCatalogue is the content of UserFile.
type userCatalogue struct {
	// Note tells a person who opens the file what it is.
	Note string `json:"note"`
	// Models are the registered backbones, by name.
	Models []Model `json:"models"`
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// Builtin reports whether name is the name, file name or alias of a
// built-in catalogue model (which a user model may not take).
func Builtin(name string) bool {
	switch strings.ToLower(name) {
	case "", "default", "dlib":
		return true
	}
	for _, m := range All {
		if strings.EqualFold(m.Name, name) || strings.EqualFold(m.File, name) || strings.EqualFold(m.Name+".onnx", name) {
			return true
		}
	}
	return false
}

// CheckUserName returns an error unless name may name a user model: 1–64
// letters, digits, '_', '.', '-' (not first), not a built-in name.
func CheckUserName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("model name %q: use 1–64 letters, digits, '_', '.' or '-', starting with a letter or digit", name)
	}
	if Builtin(name) || strings.HasSuffix(strings.ToLower(name), ".onnx") {
		return fmt.Errorf("model name %q clashes with a built-in model (%s); choose another --name", name, builtinNames())
	}
	return nil
}

func builtinNames() string {
	var names []string
	for _, m := range All {
		names = append(names, m.Name)
	}
	return strings.Join(names, ", ")
}

// UserPath is the path of the user catalogue of models directory dir
// (resolved by Dir).
func UserPath(dir string) string { return filepath.Join(Dir(dir), UserFile) }

// UserModels returns the user catalogue of models directory dir (resolved
// by Dir), sorted by name; none when the file does not exist.
func UserModels(dir string) ([]Model, error) {
	cat, err := readUser(UserPath(dir))
	if err != nil {
		return nil, err
	}
	return cat.Models, nil
}

func readUser(path string) (*userCatalogue, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &userCatalogue{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("user catalogue: %w", err)
	}
	var cat userCatalogue
	if err := json.Unmarshal(data, &cat); err != nil {
		return nil, fmt.Errorf("user catalogue %s: %w (fix or delete the file)", path, err)
	}
	for _, m := range cat.Models {
		if err := CheckUserName(m.Name); err != nil {
			return nil, fmt.Errorf("user catalogue %s: %w", path, err)
		}
		size := map[string]int{"arcface112": 112, "dlib150": 150}[m.Chip]
		if len(m.Shape) != 4 || m.Shape[0] != 1 || m.Shape[1] != 3 || m.Shape[2] != size || m.Shape[3] != size || size == 0 ||
			len(m.Outputs) == 0 || len(m.OutputShapes) == 0 || len(m.OutputShapes[0]) != 2 || m.OutputShapes[0][1] < 2 ||
			m.File != filepath.Base(m.File) || !strings.HasSuffix(m.File, ".onnx") || m.SHA256 == "" || m.Color != "RGB" ||
			math.IsNaN(float64(m.Mean)) || math.IsInf(float64(m.Mean), 0) || m.Scale == 0 || math.IsNaN(float64(m.Scale)) || math.IsInf(float64(m.Scale), 0) {
			return nil, fmt.Errorf("user catalogue %s: entry %q is incomplete (remove it with `facever model remove %s` and add it again)", path, m.Name, m.Name)
		}
	}
	sort.Slice(cat.Models, func(i, j int) bool { return cat.Models[i].Name < cat.Models[j].Name })
	return &cat, nil
}

// UpdateUser applies f to the user catalogue of dir under an exclusive lock
// (so that concurrent `model add` runs do not lose each other's entries) and
// writes the result atomically (a temporary file renamed over UserFile).
func UpdateUser(dir string, f func(ms []Model) ([]Model, error)) error {
	path := UserPath(dir)
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("user catalogue: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("user catalogue: lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck
	cat, err := readUser(path)
	if err != nil {
		return err
	}
	ms, err := f(cat.Models)
	if err != nil {
		return err
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
	cat.Models = ms
	cat.Note = "backbones registered by `facever model add`; edit with facever model add/remove and facever calibrate"
	data, err := json.MarshalIndent(cat, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), UserFile+".tmp*")
	if err != nil {
		return fmt.Errorf("user catalogue: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("user catalogue: %w", err)
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("user catalogue: %w", err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("user catalogue: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("user catalogue: %w", err)
	}
	return nil
}

// SetUserThreshold records thr as the default threshold of user model name.
func SetUserThreshold(dir, name string, thr float64) error {
	return UpdateUser(dir, func(ms []Model) ([]Model, error) {
		for i := range ms {
			if ms[i].Name == name {
				ms[i].Threshold = thr
				ms[i].Calibrated = true
				return ms, nil
			}
		}
		return nil, fmt.Errorf("%w %q in the user catalogue %s", ErrUnknown, name, UserPath(dir))
	})
}

// BackboneIn returns the backbone called name, looking in the built-in
// catalogue first ("" is the default, fr_feature; "dlib" is short for
// dlib_resnet_v1) and then in the user catalogue of models directory dir
// (resolved by Dir: "" means $FACEVER_MODELS or the checkout's models/).
func BackboneIn(dir, name string) (Model, error) {
	switch name {
	case "", "default":
		return Feature, nil
	case "dlib":
		return Dlib, nil
	}
	for _, m := range Backbones {
		if m.Name == name || m.File == name {
			return m, nil
		}
	}
	var names []string
	for _, m := range Backbones {
		names = append(names, m.Name)
	}
	user, err := UserModels(dir)
	if err != nil {
		return Model{}, err
	}
	for _, m := range user {
		if m.Name == name || m.File == name {
			return m, nil
		}
		names = append(names, m.Name)
	}
	return Model{}, fmt.Errorf("%w %q (choose one of: %s; or register your own with `facever model add FILE.onnx --name NAME`)", ErrUnknown, name, strings.Join(names, ", "))
}
