package dlib

import (
	"errors"
	"fmt"

	"github.com/facever/facever/internal/onnxproto"
)

// ONNX names and settings of the converted model.
const (
	// InputName is the graph input: N×3×150×150 float32, RGB, pixel values
	// 0..255 (the graph subtracts the mean and divides by 256 itself).
	InputName = "input"
	// OutputName is the graph output: N×128 descriptors, not normalised;
	// dlib compares them by Euclidean distance (same person below 0.6).
	OutputName = "descriptor"
	// Opset is the ONNX operator set the graph uses.
	Opset = 11
	// IRVersion is the ONNX IR version that goes with Opset.
	IRVersion = 6
	// Converter is recorded in the model's metadata.
	Converter = "facever model import-dlib (internal/dlib)"
)

// Metadata keys of the converted model.
const (
	MetaSourceFile   = "source_file"
	MetaSourceSHA256 = "source_sha256"
	MetaConverter    = "converter"
	MetaLoss         = "dlib_loss"
	MetaInput        = "input_format"
	MetaDistance     = "distance"
	MetaLicense      = "license"
)

// ONNX converts the parsed network into a deterministic ONNX model (opset
// 11) with input InputName (N×3×150×150, N dynamic) and output OutputName
// (N×128). sourceSHA256 is the hex sha256 of the .dat file it came from;
// it is recorded in metadata_props with the converter's name.
func (n *Net) ONNX(sourceSHA256 string) ([]byte, error) {
	m, err := n.onnxModel(sourceSHA256)
	if err != nil {
		return nil, err
	}
	return m.Marshal()
}

// graphBuilder accumulates nodes and initializers with sequential names.
type graphBuilder struct {
	g   onnxproto.Graph
	seq map[string]int
}

func (b *graphBuilder) name(prefix string) string {
	i := b.seq[prefix]
	b.seq[prefix]++
	return fmt.Sprintf("%s%d", prefix, i)
}

func (b *graphBuilder) init(t onnxproto.Tensor) string {
	b.g.Initializers = append(b.g.Initializers, t)
	return t.Name
}

// node adds a node named after its op; its output is named after the node
// unless out is given.
func (b *graphBuilder) node(op, prefix, out string, in []string, attrs ...onnxproto.Attr) string {
	name := b.name(prefix)
	if out == "" {
		out = name
	}
	b.g.Nodes = append(b.g.Nodes, onnxproto.Node{Name: name, OpType: op, Inputs: in, Outputs: []string{out}, Attrs: attrs})
	return out
}

// batchNorm adds y = scale·x + bias per channel as a BatchNormalization with
// mean 0, variance 1 and epsilon 0, which OpenCV and the engine compute as
// exactly x·scale + bias.
func (b *graphBuilder) batchNorm(prefix, x string, scale, bias []float32) string {
	c := int64(len(scale))
	zeros := make([]float32, c)
	ones := make([]float32, c)
	for i := range ones {
		ones[i] = 1
	}
	base := b.name(prefix + "_")
	s := b.init(onnxproto.FloatTensor(base+"_scale", scale, c))
	bi := b.init(onnxproto.FloatTensor(base+"_bias", bias, c))
	mean := b.init(onnxproto.FloatTensor(base+"_mean", zeros, c))
	vr := b.init(onnxproto.FloatTensor(base+"_var", ones, c))
	b.g.Nodes = append(b.g.Nodes, onnxproto.Node{
		Name: base, OpType: "BatchNormalization", Inputs: []string{x, s, bi, mean, vr}, Outputs: []string{base},
		Attrs: []onnxproto.Attr{onnxproto.FloatAttr("epsilon", 0)},
	})
	return base
}

func (n *Net) onnxModel(sourceSHA256 string) (*onnxproto.Model, error) {
	if len(n.Layers) == 0 {
		return nil, errors.New("dlib: empty network")
	}
	b := &graphBuilder{seq: map[string]int{}}
	b.g.Name = "dlib_face_recognition_resnet_model_v1"
	N := onnxproto.Dim{Param: "N"}
	b.g.Inputs = []onnxproto.ValueInfo{{Name: InputName, ElemType: onnxproto.Float,
		Dims: []onnxproto.Dim{N, {Value: 3}, {Value: int64(n.Rows)}, {Value: int64(n.Cols)}}}}
	b.g.Outputs = []onnxproto.ValueInfo{{Name: OutputName, ElemType: onnxproto.Float,
		Dims: []onnxproto.Dim{N, {Value: DescriptorSize}}}}

	// input_rgb_image_sized: (pixel − avg)/256 per channel.
	var scale, bias [3]float32
	for c := range scale {
		scale[c] = 1.0 / 256
		bias[c] = -n.Mean[c] / 256
	}
	cur := b.batchNorm("input_norm", InputName, scale[:], bias[:])
	shape := shape3{3, n.Rows, n.Cols}

	type tagged struct {
		name  string
		shape shape3
	}
	tags := map[int]tagged{}
	var err error
	for i, l := range n.Layers {
		switch l.Kind {
		case Tag:
			tags[l.ID] = tagged{cur, shape}
		case Skip:
			t, ok := tags[l.ID]
			if !ok {
				return nil, fmt.Errorf("dlib: layer %d: skip%d without tag%d", i, l.ID, l.ID)
			}
			cur, shape = t.name, t.shape
		case Conv:
			if len(l.Weights) != l.Filters*l.InC*l.Size*l.Size || len(l.Bias) != l.Filters || l.InC != shape.c {
				return nil, fmt.Errorf("dlib: layer %d (%s): weights do not match the layer", i, l)
			}
			base := b.name("conv")
			w := b.init(onnxproto.FloatTensor(base+"_W", l.Weights, int64(l.Filters), int64(l.InC), int64(l.Size), int64(l.Size)))
			bi := b.init(onnxproto.FloatTensor(base+"_B", l.Bias, int64(l.Filters)))
			p := int64(l.Pad)
			b.g.Nodes = append(b.g.Nodes, onnxproto.Node{Name: base, OpType: "Conv", Inputs: []string{cur, w, bi}, Outputs: []string{base},
				Attrs: []onnxproto.Attr{
					onnxproto.Ints("kernel_shape", int64(l.Size), int64(l.Size)),
					onnxproto.Ints("pads", p, p, p, p),
					onnxproto.Ints("strides", int64(l.Stride), int64(l.Stride)),
				}})
			cur = base
			if shape, err = convShape(shape, l); err != nil {
				return nil, fmt.Errorf("dlib: layer %d: %w", i, err)
			}
		case Affine:
			if len(l.Gamma) != shape.c || len(l.Beta) != shape.c {
				return nil, fmt.Errorf("dlib: layer %d (%s): %d channels expected", i, l, shape.c)
			}
			cur = b.batchNorm("affine", cur, l.Gamma, l.Beta)
		case Relu:
			cur = b.node("Relu", "relu", "", []string{cur})
		case MaxPool, AvgPool:
			if l.Size == 0 {
				if l.Kind != AvgPool {
					return nil, fmt.Errorf("dlib: layer %d: global max pooling is not supported", i)
				}
				cur = b.node("GlobalAveragePool", "gap", "", []string{cur})
				shape = shape3{shape.c, 1, 1}
				break
			}
			op, prefix := "MaxPool", "maxpool"
			if l.Kind == AvgPool {
				op, prefix = "AveragePool", "avgpool"
			}
			p := int64(l.Pad)
			cur = b.node(op, prefix, "", []string{cur},
				onnxproto.Ints("kernel_shape", int64(l.Size), int64(l.Size)),
				onnxproto.Ints("pads", p, p, p, p),
				onnxproto.Ints("strides", int64(l.Stride), int64(l.Stride)))
			if shape, err = convShape(shape, l); err != nil {
				return nil, fmt.Errorf("dlib: layer %d: %w", i, err)
			}
		case AddPrev:
			t, ok := tags[l.ID]
			if !ok {
				return nil, fmt.Errorf("dlib: layer %d: add_prev%d without tag%d", i, l.ID, l.ID)
			}
			out := shape3{max(shape.c, t.shape.c), max(shape.h, t.shape.h), max(shape.w, t.shape.w)}
			a := b.padTo(cur, shape, out)
			c := b.padTo(t.name, t.shape, out)
			cur = b.node("Add", "add", "", []string{a, c})
			shape = out
		case FC:
			if len(l.Weights) != l.InC*l.Filters || l.InC != shape.c*shape.h*shape.w || l.Filters != DescriptorSize {
				return nil, fmt.Errorf("dlib: layer %d (%s): weights do not match the layer", i, l)
			}
			flat := b.node("Flatten", "flatten", "", []string{cur}, onnxproto.Int("axis", 1))
			base := b.name("fc")
			w := b.init(onnxproto.FloatTensor(base+"_W", l.Weights, int64(l.InC), int64(l.Filters)))
			if i != len(n.Layers)-1 {
				return nil, fmt.Errorf("dlib: layer %d: fc must be the last layer", i)
			}
			cur = b.node("MatMul", "fc", OutputName, []string{flat, w})
			shape = shape3{l.Filters, 1, 1}
		default:
			return nil, fmt.Errorf("dlib: layer %d: unknown kind %v", i, l.Kind)
		}
	}
	if cur != OutputName {
		return nil, errors.New("dlib: the network does not end with its fc layer")
	}
	return &onnxproto.Model{
		IRVersion:       IRVersion,
		Opset:           Opset,
		ProducerName:    "facever",
		ProducerVersion: "1",
		Doc: "dlib's face-recognition ResNet (dlib_face_recognition_resnet_model_v1.dat, CC0), " +
			"converted by facever. Input: 150×150 RGB chips aligned as dlib does (five landmarks, padding 0.25), " +
			"pixel values 0..255. Output: 128-d descriptors; same person when the Euclidean distance is below 0.6.",
		Graph: b.g,
		Metadata: []onnxproto.KV{
			{Key: MetaSourceFile, Value: FileName},
			{Key: MetaSourceSHA256, Value: sourceSHA256},
			{Key: MetaConverter, Value: Converter},
			{Key: MetaLoss, Value: n.Loss},
			{Key: MetaInput, Value: fmt.Sprintf("RGB %d×%d, 0..255, NCHW; mean %g %g %g and 1/256 applied in the graph", n.Cols, n.Rows, n.Mean[0], n.Mean[1], n.Mean[2])},
			{Key: MetaDistance, Value: "euclidean 0.6"},
			{Key: MetaLicense, Value: "CC0-1.0"},
		},
	}, nil
}

// padTo zero-pads x (of shape from) at the end of channels, rows and
// columns up to shape to, as dlib's add_prev does; it returns x itself when
// no padding is needed.
func (b *graphBuilder) padTo(x string, from, to shape3) string {
	dc, dh, dw := to.c-from.c, to.h-from.h, to.w-from.w
	if dc == 0 && dh == 0 && dw == 0 {
		return x
	}
	base := b.name("pad")
	pads := b.init(onnxproto.Int64Tensor(base+"_pads", []int64{0, 0, 0, 0, 0, int64(dc), int64(dh), int64(dw)}, 8))
	b.g.Nodes = append(b.g.Nodes, onnxproto.Node{Name: base, OpType: "Pad", Inputs: []string{x, pads}, Outputs: []string{base},
		Attrs: []onnxproto.Attr{onnxproto.String("mode", "constant")}})
	return base
}

// convShape is the output shape of a Conv or windowed pool.
func convShape(in shape3, l Layer) (shape3, error) {
	c := in.c
	if l.Kind == Conv {
		c = l.Filters
	}
	h, w := in.h+2*l.Pad-l.Size, in.w+2*l.Pad-l.Size
	if h < 0 || w < 0 || l.Stride <= 0 || l.Size <= 0 {
		return in, fmt.Errorf("%s does not fit a %d×%d input", l, in.h, in.w)
	}
	return shape3{c, h/l.Stride + 1, w/l.Stride + 1}, nil
}
