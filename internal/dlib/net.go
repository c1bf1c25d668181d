// Package dlib reads dlib's face-recognition ResNet
// (dlib_face_recognition_resnet_model_v1.dat, CC0) from dlib's own binary
// serialisation, without dlib.
//
// dlib serialises a network recursively from its C++ type, and tag and skip
// layers leave nothing but a version number, so the file alone does not say
// how layers connect. The topology is therefore fixed here: it is dlib's
// anet_type of examples/dnn_face_recognition_ex.cpp (a 29-convolution ResNet
// on 150×150 RGB chips with a 128-d output). Parse checks every version
// string, layer hyper-parameter and tensor shape against that type and
// reports the first mismatch with its byte offset.
package dlib

import "fmt"

// Kind is the type of one layer of the network.
type Kind int

// The layer kinds of the face-recognition ResNet.
const (
	// Conv is a convolution (dlib con_) with biases.
	Conv Kind = iota
	// Affine is a per-channel y = gamma·x + beta (dlib affine_, batch
	// normalisation folded).
	Affine
	// Relu is max(x, 0).
	Relu
	// MaxPool is a max pooling (dlib max_pool_).
	MaxPool
	// AvgPool is an average pooling (dlib avg_pool_); a 0×0 window means
	// the global average.
	AvgPool
	// AddPrev adds the output of the tag with the same ID (dlib add_prev_);
	// the smaller of the two inputs is zero-filled at the end of channels,
	// rows and columns.
	AddPrev
	// FC is a fully connected layer without bias (dlib fc_no_bias):
	// y = x·W with W of In×Out, row-major.
	FC
	// Tag marks the current output under ID (dlib tagN).
	Tag
	// Skip replaces the current output with the tag ID's (dlib skipN).
	Skip
)

var kindNames = [...]string{"con", "affine", "relu", "max_pool", "avg_pool", "add_prev", "fc_no_bias", "tag", "skip"}

// String returns dlib's name of the kind.
func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Layer is one layer with its hyper-parameters and, once parsed, its
// weights.
type Layer struct {
	Kind Kind
	// ID is the tag number of Tag, Skip and AddPrev layers.
	ID int
	// Filters is the number of output channels of a Conv; Out of an FC.
	Filters int
	// Size is the square window of a Conv or pool (0 for a global pool).
	Size int
	// Stride is the stride of a Conv or pool, in both directions.
	Stride int
	// Pad is the zero padding of a Conv or pool on every side.
	Pad int

	// InC is the number of input channels of a Conv, In of an FC.
	InC int
	// Weights are a Conv's filters (Filters×InC×Size×Size, the layout of
	// ONNX Conv) or an FC's matrix (InC×Filters, row-major).
	Weights []float32
	// Bias is a Conv's per-filter bias.
	Bias []float32
	// Gamma and Beta are an Affine's per-channel scale and shift.
	Gamma, Beta []float32
}

// String names the layer as dlib's C++ type does, e.g. con<32,7,7,2,2>.
func (l Layer) String() string {
	switch l.Kind {
	case Conv:
		return fmt.Sprintf("con<%d,%d,%d,%d,%d>", l.Filters, l.Size, l.Size, l.Stride, l.Stride)
	case MaxPool, AvgPool:
		return fmt.Sprintf("%s<%d,%d,%d,%d>", l.Kind, l.Size, l.Size, l.Stride, l.Stride)
	case FC:
		return fmt.Sprintf("fc_no_bias<%d>", l.Filters)
	case Tag, Skip, AddPrev:
		return fmt.Sprintf("%s%d", l.Kind, l.ID)
	}
	return l.Kind.String()
}

// Net is the parsed network.
type Net struct {
	// Loss is the loss layer's version string ("loss_metric_2").
	Loss string
	// Margin and DistThresh are loss_metric's parameters (training only).
	Margin, DistThresh float64
	// Mean is the per-channel average subtracted from the R, G, B pixels
	// before dividing by 256 (input_rgb_image_sized).
	Mean [3]float32
	// Rows and Cols are the input chip size (150×150).
	Rows, Cols int
	// Layers are in forward order: the first convolution first, the final
	// fully connected layer last. Tag and Skip layers are included.
	Layers []Layer
	// Params is the number of learnt parameters.
	Params int
}

// Topology returns the layers of dlib's anet_type in forward order, with
// hyper-parameters and no weights.
func Topology() []Layer {
	// Padding follows dlib's default for con_ and pools: none with a stride
	// other than 1, else half the window.
	pad := func(size, stride int) int {
		if stride != 1 {
			return 0
		}
		return size / 2
	}
	con := func(n, k, s int) Layer { return Layer{Kind: Conv, Filters: n, Size: k, Stride: s, Pad: pad(k, s)} }
	pool := func(kind Kind, k, s int) Layer { return Layer{Kind: kind, Size: k, Stride: s, Pad: pad(k, s)} }
	simple := func(kind Kind, id int) Layer { return Layer{Kind: kind, ID: id} }

	// block<N, affine, stride, SUB> = affine<con<N,3,3,1,1, relu<affine<con<N,3,3,stride,stride, SUB>>>>>
	block := func(n, stride int) []Layer {
		return []Layer{con(n, 3, stride), simple(Affine, 0), simple(Relu, 0), con(n, 3, 1), simple(Affine, 0)}
	}
	// ares<N, SUB> = relu<add_prev1<block<N, affine, 1, tag1<SUB>>>>
	ares := func(n int) []Layer {
		l := []Layer{simple(Tag, 1)}
		l = append(l, block(n, 1)...)
		return append(l, simple(AddPrev, 1), simple(Relu, 0))
	}
	// ares_down<N, SUB> = relu<add_prev2<avg_pool<2,2,2,2, skip1<tag2<block<N, affine, 2, tag1<SUB>>>>>>>>
	aresDown := func(n int) []Layer {
		l := []Layer{simple(Tag, 1)}
		l = append(l, block(n, 2)...)
		return append(l, simple(Tag, 2), simple(Skip, 1), pool(AvgPool, 2, 2), simple(AddPrev, 2), simple(Relu, 0))
	}
	var l []Layer
	l = append(l, con(32, 7, 2), simple(Affine, 0), simple(Relu, 0), pool(MaxPool, 3, 2))
	// alevel4 = ares<32, ares<32, ares<32, SUB>>>
	for i := 0; i < 3; i++ {
		l = append(l, ares(32)...)
	}
	// alevel3 = ares<64, ares<64, ares<64, ares_down<64, SUB>>>>
	l = append(l, aresDown(64)...)
	for i := 0; i < 3; i++ {
		l = append(l, ares(64)...)
	}
	// alevel2 = ares<128, ares<128, ares_down<128, SUB>>>, alevel1 the same with 256
	for _, n := range []int{128, 256} {
		l = append(l, aresDown(n)...)
		for i := 0; i < 2; i++ {
			l = append(l, ares(n)...)
		}
	}
	// alevel0 = ares_down<256, SUB>
	l = append(l, aresDown(256)...)
	// avg_pool_everything = avg_pool<0,0,1,1>, then fc_no_bias<128>
	l = append(l, Layer{Kind: AvgPool, Size: 0, Stride: 1}, Layer{Kind: FC, Filters: 128})
	return l
}
