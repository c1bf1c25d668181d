package onnxrt

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	onnx "github.com/owulveryck/onnx-go"

	"github.com/facever/facever/internal/gemm"
)

// The ONNX backend test cases as Debian's libonnx-testdata installs them.
const onnxTestData = "/usr/share/libonnx-testdata/data"

var conformanceSuites = []string{"node", "pytorch-converted", "pytorch-operator", "simple"}

// conformanceSkip lists the cases whose operators the engine supports but
// that it leaves out, with the reason.
// Reasons for leaving a case out.
const (
	skipEmpty    = "onnx-go v0.5.0 cannot decode a tensor with no elements"
	skipSmallint = "onnx-go v0.5.0 does not decode 8/16-bit or unsigned integer tensors"
	skipStr      = "string tensors are not supported"
	skipF16      = "float16/bfloat16 tensors (onnx-go v0.5.0 does not decode them)"
	skipSeq      = "sequence or optional values are not tensors"
	skipRawbool  = "onnx-go v0.5.0 cannot decode bool tensors stored as raw data"
	skipThreeD   = "3-D convolution and pooling are not implemented (face models are 2-D)"
	skipTraining = "training mode is not supported (inference engine)"
	skipArgmax   = "MaxPool's Indices output is not implemented"
)

var conformanceSkip = map[string]string{
	"node/test_add_uint8":                                     skipSmallint,
	"node/test_averagepool_3d_default":                        skipThreeD,
	"node/test_batchnorm_epsilon_training_mode":               skipTraining,
	"node/test_batchnorm_example_training_mode":               skipTraining,
	"node/test_cast_BFLOAT16_to_FLOAT":                        skipF16,
	"node/test_cast_DOUBLE_to_FLOAT16":                        skipF16,
	"node/test_cast_FLOAT16_to_DOUBLE":                        skipF16,
	"node/test_cast_FLOAT16_to_FLOAT":                         skipF16,
	"node/test_cast_FLOAT_to_BFLOAT16":                        skipF16,
	"node/test_cast_FLOAT_to_FLOAT16":                         skipF16,
	"node/test_cast_FLOAT_to_STRING":                          skipStr,
	"node/test_cast_STRING_to_FLOAT":                          skipStr,
	"node/test_castlike_BFLOAT16_to_FLOAT_expanded":           skipF16,
	"node/test_castlike_DOUBLE_to_FLOAT16_expanded":           skipF16,
	"node/test_castlike_FLOAT16_to_DOUBLE_expanded":           skipF16,
	"node/test_castlike_FLOAT16_to_FLOAT_expanded":            skipF16,
	"node/test_castlike_FLOAT_to_BFLOAT16_expanded":           skipF16,
	"node/test_castlike_FLOAT_to_FLOAT16_expanded":            skipF16,
	"node/test_castlike_FLOAT_to_STRING_expanded":             skipStr,
	"node/test_castlike_STRING_to_FLOAT_expanded":             skipStr,
	"node/test_clip_default_int8_inbounds":                    skipSmallint,
	"node/test_clip_default_int8_max":                         skipSmallint,
	"node/test_clip_default_int8_min":                         skipSmallint,
	"node/test_constantofshape_int_shape_zero":                skipEmpty,
	"node/test_div_uint8":                                     skipSmallint,
	"node/test_dropout_default_mask":                          skipRawbool,
	"node/test_dropout_default_mask_ratio":                    skipRawbool,
	"node/test_identity_opt":                                  skipSeq,
	"node/test_identity_sequence":                             skipSeq,
	"node/test_max_float16":                                   skipF16,
	"node/test_max_int16":                                     skipSmallint,
	"node/test_max_int8":                                      skipSmallint,
	"node/test_max_uint16":                                    skipSmallint,
	"node/test_max_uint32":                                    skipSmallint,
	"node/test_max_uint64":                                    skipSmallint,
	"node/test_max_uint8":                                     skipSmallint,
	"node/test_maxpool_2d_uint8":                              skipSmallint,
	"node/test_maxpool_3d_default":                            skipThreeD,
	"node/test_maxpool_with_argmax_2d_precomputed_pads":       skipArgmax,
	"node/test_maxpool_with_argmax_2d_precomputed_strides":    skipArgmax,
	"node/test_min_float16":                                   skipF16,
	"node/test_min_int16":                                     skipSmallint,
	"node/test_min_int8":                                      skipSmallint,
	"node/test_min_uint16":                                    skipSmallint,
	"node/test_min_uint32":                                    skipSmallint,
	"node/test_min_uint64":                                    skipSmallint,
	"node/test_min_uint8":                                     skipSmallint,
	"node/test_mul_uint8":                                     skipSmallint,
	"node/test_pow_types_float32_uint32":                      skipSmallint,
	"node/test_pow_types_float32_uint64":                      skipSmallint,
	"node/test_reduce_sum_default_axes_keepdims_example":      skipEmpty,
	"node/test_reduce_sum_default_axes_keepdims_random":       skipEmpty,
	"node/test_reduce_sum_empty_axes_input_noop_example":      skipEmpty,
	"node/test_reduce_sum_empty_axes_input_noop_random":       skipEmpty,
	"node/test_reduce_sum_negative_axes_keepdims_random":      skipEmpty,
	"node/test_reshape_allowzero_reordered":                   skipEmpty,
	"node/test_slice_start_out_of_bounds":                     skipEmpty,
	"node/test_split_zero_size_splits":                        skipEmpty,
	"node/test_sub_uint8":                                     skipSmallint,
	"node/test_training_dropout":                              skipRawbool,
	"node/test_training_dropout_default":                      skipRawbool,
	"node/test_training_dropout_default_mask":                 skipRawbool,
	"node/test_training_dropout_mask":                         skipRawbool,
	"node/test_training_dropout_zero_ratio":                   skipRawbool,
	"node/test_training_dropout_zero_ratio_mask":              skipRawbool,
	"pytorch-converted/test_AvgPool3d":                        skipThreeD,
	"pytorch-converted/test_AvgPool3d_stride":                 skipThreeD,
	"pytorch-converted/test_AvgPool3d_stride1_pad0_gpu_input": skipThreeD,
	"pytorch-converted/test_Conv3d":                           skipThreeD,
	"pytorch-converted/test_Conv3d_dilated":                   skipThreeD,
	"pytorch-converted/test_Conv3d_dilated_strided":           skipThreeD,
	"pytorch-converted/test_Conv3d_groups":                    skipThreeD,
	"pytorch-converted/test_Conv3d_no_bias":                   skipThreeD,
	"pytorch-converted/test_Conv3d_stride":                    skipThreeD,
	"pytorch-converted/test_Conv3d_stride_padding":            skipThreeD,
	"pytorch-converted/test_MaxPool3d":                        skipThreeD,
	"pytorch-converted/test_MaxPool3d_stride":                 skipThreeD,
	"pytorch-converted/test_MaxPool3d_stride_padding":         skipThreeD,
}

// Tolerances as ONNX's backend tests (onnx/backend/test/runner: rtol 1e-3,
// atol 1e-7), with atol raised to 1e-5 for float32 sums whose order differs.
const confRtol, confAtol = 1e-3, 1e-5

type confCase struct {
	suite, name, dir string
}

func conformanceCases(t *testing.T) []confCase {
	if _, err := os.Stat(onnxTestData); err != nil {
		t.Fatalf("%s missing: install Debian's libonnx-testdata (apt-get install libonnx-testdata)", onnxTestData)
	}
	var cases []confCase
	for _, s := range conformanceSuites {
		ents, err := os.ReadDir(filepath.Join(onnxTestData, s))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.IsDir() {
				cases = append(cases, confCase{s, e.Name(), filepath.Join(onnxTestData, s, e.Name())})
			}
		}
	}
	return cases
}

func readPB(path string) (*tensor, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	gt, err := onnx.NewTensor(b)
	if err != nil {
		return nil, err
	}
	return fromGorgonia(gt)
}

// runCase runs every test_data_set of a case; it returns errUnsupported
// wrapped when the model uses an operator the engine lacks.
func runCase(c confCase) (sets int, err error) {
	data, err := os.ReadFile(filepath.Join(c.dir, "model.onnx"))
	if err != nil {
		return 0, err
	}
	if pm, err := scanModel(data); err == nil {
		var missing []string
		for _, n := range pm.nodes {
			if _, ok := compilers[n.op]; !ok || (n.domain != "" && n.domain != "ai.onnx") {
				missing = append(missing, n.op)
			}
		}
		if missing != nil {
			return 0, fmt.Errorf("%w (%v)", errOpsMissing, missing)
		}
	}
	m, err := Load(data)
	if err != nil {
		if m != nil && len(m.Unsupported()) > 0 {
			return 0, fmt.Errorf("%w (%v)", errOpsMissing, m.Unsupported())
		}
		return 0, fmt.Errorf("load: %w", err)
	}
	dirs, _ := filepath.Glob(filepath.Join(c.dir, "test_data_set_*"))
	sort.Strings(dirs)
	for _, d := range dirs {
		var ins, want []*tensor
		for k := 0; ; k++ {
			p := filepath.Join(d, fmt.Sprintf("input_%d.pb", k))
			if _, err := os.Stat(p); err != nil {
				break
			}
			t, err := readPB(p)
			if err != nil {
				return sets, fmt.Errorf("%s: %w", p, err)
			}
			ins = append(ins, t)
		}
		for k := 0; ; k++ {
			p := filepath.Join(d, fmt.Sprintf("output_%d.pb", k))
			if _, err := os.Stat(p); err != nil {
				break
			}
			t, err := readPB(p)
			if err != nil {
				return sets, fmt.Errorf("%s: %w", p, err)
			}
			want = append(want, t)
		}
		for _, t := range ins {
			t.konst = false
		}
		got, err := m.runTensors(ins)
		if err != nil {
			return sets, err
		}
		if len(got) != len(want) {
			return sets, fmt.Errorf("%d outputs, want %d", len(got), len(want))
		}
		for k := range want {
			if err := compareTensors(got[k], want[k]); err != nil {
				return sets, fmt.Errorf("%s output %d: %w", filepath.Base(d), k, err)
			}
		}
		sets++
	}
	return sets, nil
}

var errOpsMissing = errors.New("operators not supported")

func compareTensors(got, want *tensor) error {
	if !sameShape(got.shape, want.shape) && !(got.size() == want.size() && got.size() == 1) {
		return fmt.Errorf("shape %v, want %v", got.shape, want.shape)
	}
	if (got.dt == dtFloat) != (want.dt == dtFloat) {
		return fmt.Errorf("type %v, want %v", got.dt, want.dt)
	}
	if want.dt == dtFloat {
		for i, w := range want.f {
			g := got.f[i]
			if math.IsNaN(float64(w)) {
				if !math.IsNaN(float64(g)) {
					return fmt.Errorf("[%d] = %g, want NaN", i, g)
				}
				continue
			}
			if math.IsInf(float64(w), 0) {
				if g != w {
					return fmt.Errorf("[%d] = %g, want %g", i, g, w)
				}
				continue
			}
			if d := math.Abs(float64(g) - float64(w)); d > confAtol+confRtol*math.Abs(float64(w)) {
				return fmt.Errorf("[%d] = %g, want %g", i, g, w)
			}
		}
		return nil
	}
	for i, w := range want.i {
		if got.i[i] != w {
			return fmt.Errorf("[%d] = %d, want %d", i, got.i[i], w)
		}
	}
	return nil
}

// TestConformance runs ONNX's backend test cases for every operator the
// engine supports. Set ONNXRT_CONF_VERBOSE=1 to list each case.
func TestConformance(t *testing.T) {
	for _, k := range gemm.Kernels() {
		t.Run(k.String(), func(t *testing.T) {
			restore, err := SetKernel(k)
			if err != nil {
				t.Fatal(err)
			}
			defer restore()
			conformance(t)
		})
	}
}

func conformance(t *testing.T) {
	cases := conformanceCases(t)
	verbose := os.Getenv("ONNXRT_CONF_VERBOSE") != ""
	filter := os.Getenv("ONNXRT_CONF_FILTER")
	ran, passed, skipped, unsupported := 0, 0, 0, 0
	for _, c := range cases {
		key := c.suite + "/" + c.name
		if filter != "" && !strings.Contains(key, filter) {
			continue
		}
		sets, err := runCase(c)
		switch {
		case errors.Is(err, errOpsMissing):
			unsupported++
			if verbose {
				t.Logf("-- %s: %v", key, err)
			}
			continue
		case conformanceSkip[key] != "":
			skipped++
			if verbose {
				t.Logf("skip %s: %s (%v)", key, conformanceSkip[key], err)
			}
			continue
		}
		ran++
		if err != nil {
			t.Errorf("FAIL %s: %v", key, err)
			continue
		}
		passed++
		if verbose {
			t.Logf("ok %s (%d sets)", key, sets)
		}
	}
	t.Logf("conformance: %d cases ran, %d passed; %d skipped by list; %d use operators the engine lacks", ran, passed, skipped, unsupported)
}
