package facehead

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// Head is a trained projection: embedding = normalise(W·feature + B), with
// any BatchNorm of training folded into W and B. It implements Projector.
type Head struct {
	in, out int
	w       []float32 // out×in, row-major
	b       []float32 // out
	meta    HeadMeta
}

// HeadMeta describes how a head was trained; it is stored in the head file.
type HeadMeta struct {
	// BackboneSHA256 is the hex sha256 of the backbone model file whose
	// features the head was trained on; LoadHead refuses any other backbone.
	BackboneSHA256 string `json:"backbone_sha256"`
	// Loss is the training loss's name (margin.Names).
	Loss string `json:"loss"`
	// Params are the loss's hyper-parameters (margin.Loss.Params) and the
	// training settings (epochs, batch size, learning rate, seed...).
	Params map[string]float64 `json:"params"`
	// BatchNorm reports whether a BatchNorm layer (now folded) was trained.
	BatchNorm bool `json:"batch_norm"`
	// Identities is the number of identities in the training data (for
	// the pair losses, those with two or more photos: the ones drawn).
	Identities int `json:"identities"`
	// Samples is the number of training features.
	Samples int `json:"samples"`
	// FinalLoss is the last epoch's mean training loss.
	FinalLoss float64 `json:"final_loss"`
	// FinalAccuracy is the last epoch's training accuracy (TrainReport).
	FinalAccuracy float64 `json:"final_accuracy"`
	// Note is free text for the caller (the data folder, a command line).
	Note string `json:"note,omitempty"`
	// Thresholds, when set, are the decision thresholds calibrated on the
	// head's own held-out people; verify and identify use them by default
	// for this head. A file with thresholds is format version 2.
	Thresholds *HeadThresholds `json:"thresholds,omitempty"`
}

// HeadThresholds are a head's own decision thresholds, calibrated by
// `facever train` on the people it held out (never trained on): the backbone's
// thresholds do not carry over to a projection trained after them.
type HeadThresholds struct {
	// Verify is the 1:1 threshold: the lowest at which at most VerifyFAR of
	// the held-out different-person pairs are accepted (verify.Calibrate).
	Verify float64 `json:"verify"`
	// VerifyFAR is the false-accept rate Verify was chosen for.
	VerifyFAR float64 `json:"verify_far"`
	// Identify is the 1:N threshold: the lowest at which at most
	// IdentifyFalseAlarm of held-out strangers match someone enrolled
	// (verify.EvaluateOpenSet's calibrated point); 0 when the held-out
	// people were too few to calibrate it.
	Identify float64 `json:"identify,omitempty"`
	// IdentifyFalseAlarm is the stranger match rate Identify was chosen for.
	IdentifyFalseAlarm float64 `json:"identify_false_alarm,omitempty"`
	// Identities counts the held-out people the thresholds rest on.
	Identities int `json:"identities"`
}

// check reports thresholds that are not similarities or rates.
func (t *HeadThresholds) check() error {
	ok := func(v, lo, hi float64) bool { return !math.IsNaN(v) && v >= lo && v <= hi }
	if !ok(t.Verify, -1, 1) || !ok(t.Identify, -1, 1) || !ok(t.VerifyFAR, 0, 1) || !ok(t.IdentifyFalseAlarm, 0, 1) || t.Identities < 0 {
		return fmt.Errorf("head thresholds %+v out of range (similarities in [-1, 1], rates in [0, 1])", *t)
	}
	return nil
}

// Thresholds returns the head's own calibrated thresholds, if it has them.
func (h *Head) Thresholds() (HeadThresholds, bool) {
	if h.meta.Thresholds == nil {
		return HeadThresholds{}, false
	}
	return *h.meta.Thresholds, true
}

// SetThresholds records thresholds calibrated on the head's held-out people
// (stored by Save, as format version 2).
func (h *Head) SetThresholds(t HeadThresholds) error {
	if err := t.check(); err != nil {
		return err
	}
	h.meta.Thresholds = &t
	return nil
}

// NewHead returns the head embedding = normalise(W·feature + B) for W
// (out×in, row-major) and B (out), both copied, with its training record.
// Sizes must match and every value be finite. Package facehead/train makes
// heads this way; any other trainer can too.
func NewHead(in, out int, w, b []float32, meta HeadMeta) (*Head, error) {
	if in <= 0 || out <= 0 || int64(in)*int64(out)+int64(out) > maxHeadValues {
		return nil, fmt.Errorf("facehead: head of %d×%d values", out, in)
	}
	if len(w) != in*out || len(b) != out {
		return nil, fmt.Errorf("facehead: %d×%d head with %d weights and %d biases", out, in, len(w), len(b))
	}
	vals := make([]float32, 0, len(w)+len(b))
	vals = append(append(vals, w...), b...)
	for i, v := range vals {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("facehead: head value %d is %v", i, v)
		}
	}
	h := &Head{in: in, out: out, w: vals[:len(w):len(w)], b: vals[len(w):], meta: meta}
	h.meta.BackboneSHA256 = strings.ToLower(meta.BackboneSHA256)
	return h, nil
}

// InDim returns the feature size the head takes.
func (h *Head) InDim() int { return h.in }

// OutDim returns the embedding size.
func (h *Head) OutDim() int { return h.out }

// Meta returns the head's training record.
func (h *Head) Meta() HeadMeta { return h.meta }

// SetBackbone records the sha256 (hex) of the backbone the head belongs to;
// Save needs it.
func (h *Head) SetBackbone(sha256hex string) { h.meta.BackboneSHA256 = strings.ToLower(sha256hex) }

// SetNote records free text in the head's metadata.
func (h *Head) SetNote(note string) { h.meta.Note = note }

// Project writes the unit-length embedding of feat (len InDim) into dst
// (len OutDim). It does not allocate. A projection of norm zero leaves dst
// zero. It panics if the lengths are wrong, like a slice index would.
func (h *Head) Project(dst, feat []float32) {
	in := h.in
	if len(feat) != in || len(dst) != h.out {
		panic(fmt.Sprintf("facehead: Project: feature %d (want %d), dst %d (want %d)", len(feat), in, len(dst), h.out))
	}
	var ss float32
	for o := range dst {
		row := h.w[o*in : (o+1)*in : (o+1)*in]
		s0, s1, s2, s3 := h.b[o], float32(0), float32(0), float32(0)
		j := 0
		for ; j+4 <= in; j += 4 {
			s0 += row[j] * feat[j]
			s1 += row[j+1] * feat[j+1]
			s2 += row[j+2] * feat[j+2]
			s3 += row[j+3] * feat[j+3]
		}
		for ; j < in; j++ {
			s0 += row[j] * feat[j]
		}
		v := (s0 + s1) + (s2 + s3)
		dst[o] = v
		ss += v * v
	}
	if ss == 0 {
		return
	}
	inv := float32(1 / math.Sqrt(float64(ss)))
	for o := range dst {
		dst[o] *= inv
	}
}

// Head file format, version 1 or 2 (all integers little-endian):
//
//	magic   "FVHEAD\r\n" (8 bytes)
//	version uint32 (1; 2 when the header's meta holds thresholds)
//	hlen    uint32, length of the JSON header (at most 1 MiB)
//	header  JSON: fileHeader
//	payload float32 W (out×in, row-major) then B (out); its CRC-32 (IEEE)
//	        is in the header
const (
	headMagic     = "FVHEAD\r\n"
	headVersion   = 1 // a head without thresholds
	headVersion2  = 2 // a head with its own thresholds (HeadMeta.Thresholds)
	maxHeaderLen  = 1 << 20
	maxHeadValues = 1 << 26 // 256 MiB of float32: far beyond any head
)

// fileHeader is the JSON header of a head file.
type fileHeader struct {
	Format  string   `json:"format"`        // "facever head"
	InDim   int      `json:"in_dim"`        // feature size d
	OutDim  int      `json:"out_dim"`       // embedding size d′
	CRC32   uint32   `json:"payload_crc32"` // CRC-32 (IEEE) of the payload
	Meta    HeadMeta `json:"meta"`          // training record
	Creator string   `json:"creator"`       // the writing package
}

// ErrBackboneMismatch is returned by LoadHead for a head trained on another
// backbone.
var ErrBackboneMismatch = errors.New("head was trained on another backbone")

// Save writes the head to path atomically (a temporary file in the same
// folder, synced, then renamed over path). The backbone's sha256 must have
// been recorded (train.Config.BackboneSHA256, NewHead or SetBackbone).
func (h *Head) Save(path string) (err error) {
	if !isSHA256(h.meta.BackboneSHA256) {
		return fmt.Errorf("save head %s: backbone sha256 %q is not 64 hex digits", path, h.meta.BackboneSHA256)
	}
	var buf bytes.Buffer
	if err := h.encode(&buf); err != nil {
		return fmt.Errorf("save head %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("save head %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("save head %s: %w", path, err)
	}
	if err = f.Chmod(0o644); err != nil {
		return fmt.Errorf("save head %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("save head %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("save head %s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("save head %s: %w", path, err)
	}
	return nil
}

func (h *Head) encode(w io.Writer) error {
	payload := make([]byte, 4*(len(h.w)+len(h.b)))
	for i, v := range h.w {
		binary.LittleEndian.PutUint32(payload[4*i:], math.Float32bits(v))
	}
	for i, v := range h.b {
		binary.LittleEndian.PutUint32(payload[4*(len(h.w)+i):], math.Float32bits(v))
	}
	hdr, err := json.Marshal(fileHeader{
		Format: "facever head", InDim: h.in, OutDim: h.out,
		CRC32: crc32.ChecksumIEEE(payload), Meta: h.meta, Creator: "github.com/facever/facever/facehead",
	})
	if err != nil {
		return err
	}
	var pre [16]byte
	copy(pre[:8], headMagic)
	version := uint32(headVersion)
	if h.meta.Thresholds != nil {
		version = headVersion2
	}
	binary.LittleEndian.PutUint32(pre[8:], version)
	binary.LittleEndian.PutUint32(pre[12:], uint32(len(hdr)))
	for _, b := range [][]byte{pre[:], hdr, payload} {
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// LoadHead reads a head file and checks that it was trained on the backbone
// whose sha256 (hex) is backboneSHA256; another backbone is an error wrapping
// ErrBackboneMismatch.
func LoadHead(path string, backboneSHA256 string) (*Head, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load head: %w", err)
	}
	defer f.Close()
	h, err := DecodeHead(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("load head %s: %w", path, err)
	}
	if want := strings.ToLower(backboneSHA256); h.meta.BackboneSHA256 != want {
		return nil, fmt.Errorf("load head %s: %w: it needs the backbone with sha256 %s, this one is %s",
			path, ErrBackboneMismatch, h.meta.BackboneSHA256, want)
	}
	return h, nil
}

// DecodeHead reads a head in the file format of Save from r, validating
// everything (magic, version, sizes, checksum, finite values). It does not
// check the backbone: LoadHead does.
func DecodeHead(r io.Reader) (*Head, error) {
	var pre [16]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return nil, fmt.Errorf("not a facever head file: %w", err)
	}
	if string(pre[:8]) != headMagic {
		return nil, errors.New("not a facever head file (bad magic)")
	}
	version := binary.LittleEndian.Uint32(pre[8:])
	if version != headVersion && version != headVersion2 {
		return nil, fmt.Errorf("head file version %d, this build reads versions %d and %d", version, headVersion, headVersion2)
	}
	n := binary.LittleEndian.Uint32(pre[12:])
	if n == 0 || n > maxHeaderLen {
		return nil, fmt.Errorf("head header of %d bytes", n)
	}
	hb := make([]byte, n)
	if _, err := io.ReadFull(r, hb); err != nil {
		return nil, fmt.Errorf("head header: %w", err)
	}
	var hdr fileHeader
	dec := json.NewDecoder(bytes.NewReader(hb))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&hdr); err != nil {
		return nil, fmt.Errorf("head header: %w", err)
	}
	if dec.More() {
		return nil, errors.New("head header: trailing data")
	}
	if hdr.InDim <= 0 || hdr.OutDim <= 0 || hdr.InDim > maxHeadValues || hdr.OutDim > maxHeadValues ||
		int64(hdr.InDim)*int64(hdr.OutDim)+int64(hdr.OutDim) > maxHeadValues {
		return nil, fmt.Errorf("head of %d×%d values", hdr.OutDim, hdr.InDim)
	}
	if t := hdr.Meta.Thresholds; (t != nil) != (version == headVersion2) {
		return nil, fmt.Errorf("head header: version %d with thresholds %v (version 2 and only version 2 carries them)", version, t != nil)
	} else if t != nil {
		if err := t.check(); err != nil {
			return nil, fmt.Errorf("head header: %w", err)
		}
	}
	if !isSHA256(hdr.Meta.BackboneSHA256) {
		return nil, fmt.Errorf("head header: backbone sha256 %q", hdr.Meta.BackboneSHA256)
	}
	count := hdr.OutDim*hdr.InDim + hdr.OutDim
	payload := make([]byte, 4*count)
	if _, err := io.ReadFull(r, payload); err != nil {
		return nil, fmt.Errorf("head payload: %w", err)
	}
	if got := crc32.ChecksumIEEE(payload); got != hdr.CRC32 {
		return nil, fmt.Errorf("head payload checksum %08x, header says %08x", got, hdr.CRC32)
	}
	var extra [1]byte
	if k, _ := r.Read(extra[:]); k != 0 {
		return nil, errors.New("head file: trailing data")
	}
	vals := make([]float32, count)
	for i := range vals {
		v := math.Float32frombits(binary.LittleEndian.Uint32(payload[4*i:]))
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("head value %d is %v", i, v)
		}
		vals[i] = v
	}
	wn := hdr.OutDim * hdr.InDim
	return &Head{in: hdr.InDim, out: hdr.OutDim, w: vals[:wn:wn], b: vals[wn:], meta: hdr.Meta}, nil
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
