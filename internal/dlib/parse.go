package dlib

import "fmt"

// FileName is the name dlib gives the face-recognition model file.
const FileName = "dlib_face_recognition_resnet_model_v1.dat"

// FileSHA256 is the sha256 of dlib_face_recognition_resnet_model_v1.dat as
// shipped in Debian's dlib 19.24+dfsg-1 source package (22,466,066 bytes).
const FileSHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"

// InputSize is the side of the RGB chip the network takes.
const InputSize = 150

// DescriptorSize is the length of the network's output.
const DescriptorSize = 128

// shape3 is a sample's shape: channels, rows, columns.
type shape3 struct{ c, h, w int }

// Parse decodes a whole dlib_face_recognition_resnet_model_v1.dat. Any
// departure from the expected layout (anet_type of dlib's
// dnn_face_recognition_ex.cpp) is a *FormatError naming what was expected at
// which byte offset. Parse never panics and allocates no more than the input
// holds.
func Parse(data []byte) (*Net, error) {
	r := &reader{b: data}
	net := &Net{Layers: Topology()}
	L := net.Layers

	// add_loss_layer: version 1, then loss_metric_'s details.
	if _, err := r.intIn("add_loss_layer version", 4, 1, 1); err != nil {
		return nil, err
	}
	v, err := r.version("loss layer", "loss_metric_", "loss_metric_2")
	if err != nil {
		return nil, err
	}
	net.Loss = v
	if v == "loss_metric_2" {
		if net.Margin, err = r.float("loss_metric_ margin"); err != nil {
			return nil, err
		}
		if net.DistThresh, err = r.float("loss_metric_ dist_thresh"); err != nil {
			return nil, err
		}
	} else {
		net.Margin, net.DistThresh = 0.1, 0.75
	}

	// One version number per layer, from the outermost (fc) inwards.
	versions := make([]int64, len(L))
	for i := len(L) - 1; i >= 0; i-- {
		what := fmt.Sprintf("version of layer %d (%s)", i, L[i])
		switch {
		case L[i].Kind == Tag || L[i].Kind == Skip:
			versions[i], err = r.intIn(what, 4, 1, 1)
		case i == 0: // the add_layer directly over the input layer
			versions[i], err = r.intIn(what, 4, 2, 3)
		default:
			versions[i], err = r.intIn(what, 4, 1, 2)
		}
		if err != nil {
			return nil, err
		}
	}

	// The input layer.
	if _, err := r.version("input layer", "input_rgb_image_sized"); err != nil {
		return nil, err
	}
	for c, name := range []string{"avg_red", "avg_green", "avg_blue"} {
		at := r.off
		f, err := r.float("input_rgb_image_sized " + name)
		if err != nil {
			return nil, err
		}
		if !(f >= 0 && f <= 255) {
			return nil, r.errf(at, "input_rgb_image_sized "+name, "average %g outside 0..255", f)
		}
		net.Mean[c] = float32(f)
	}
	rows, err := r.intIn("input_rgb_image_sized rows", 8, InputSize, InputSize)
	if err != nil {
		return nil, err
	}
	cols, err := r.intIn("input_rgb_image_sized columns", 8, InputSize, InputSize)
	if err != nil {
		return nil, err
	}
	net.Rows, net.Cols = int(rows), int(cols)

	// Each layer's details and add_layer bookkeeping, innermost first.
	cur := shape3{3, net.Rows, net.Cols}
	tags := map[int]shape3{}
	for i := range L {
		l := &L[i]
		at := r.off
		what := fmt.Sprintf("layer %d (%s)", i, l)
		switch l.Kind {
		case Tag:
			tags[l.ID] = cur
			continue
		case Skip:
			s, ok := tags[l.ID]
			if !ok {
				return nil, fmt.Errorf("dlib: topology: skip%d without tag%d", l.ID, l.ID)
			}
			cur = s
			continue
		case Conv:
			err = r.conv(l, what, cur.c)
			if err == nil {
				cur, err = outShape(r, at, what, cur, l)
			}
			net.Params += len(l.Weights) + len(l.Bias)
		case Affine:
			err = r.affine(l, what, cur.c)
			net.Params += len(l.Gamma) + len(l.Beta)
		case Relu:
			err = r.relu(what)
		case MaxPool, AvgPool:
			err = r.pool(l, what)
			if err == nil {
				cur, err = outShape(r, at, what, cur, l)
			}
		case AddPrev:
			if _, err = r.version(what, "add_prev_"); err == nil {
				t, ok := tags[l.ID]
				if !ok {
					return nil, fmt.Errorf("dlib: topology: add_prev%d without tag%d", l.ID, l.ID)
				}
				cur = shape3{max(cur.c, t.c), max(cur.h, t.h), max(cur.w, t.w)}
			}
		case FC:
			err = r.fc(l, what, cur.c*cur.h*cur.w)
			cur = shape3{l.Filters, 1, 1}
			net.Params += len(l.Weights)
		}
		if err != nil {
			return nil, err
		}
		if err := r.trailer(what, i == 0, versions[i]); err != nil {
			return nil, err
		}
	}
	if r.remaining() != 0 {
		return nil, r.errf(r.off, "end of file", "%d trailing bytes", r.remaining())
	}
	return net, nil
}

// outShape applies a Conv or pool to a sample shape.
func outShape(r *reader, at int, what string, in shape3, l *Layer) (shape3, error) {
	if l.Size == 0 { // global pooling
		return shape3{in.c, 1, 1}, nil
	}
	h, w := in.h+2*l.Pad-l.Size, in.w+2*l.Pad-l.Size
	if h < 0 || w < 0 {
		return in, r.errf(at, what, "a %d×%d window does not fit a %d×%d input", l.Size, l.Size, in.h, in.w)
	}
	c := in.c
	if l.Kind == Conv {
		c = l.Filters
	}
	return shape3{c, h/l.Stride + 1, w/l.Stride + 1}, nil
}

// trailer reads what dlib's add_layer writes after a layer's details:
// three bools, the x_grad and cached_output tensors, then params_grad
// (version 2) or, for the layer over the input, grad_final and (version 3)
// the sample expansion factor.
func (r *reader) trailer(what string, overInput bool, version int64) error {
	for _, name := range []string{"this_layer_setup_called", "gradient_input_is_stale", "get_output_and_gradient_input_disabled"} {
		if _, err := r.boolean(what + " " + name); err != nil {
			return err
		}
	}
	for _, name := range []string{"x_grad", "cached_output"} {
		if _, _, err := r.tensor(what+" "+name, false); err != nil {
			return err
		}
	}
	if overInput {
		if _, _, err := r.tensor(what+" grad_final", false); err != nil {
			return err
		}
		if version >= 3 {
			if _, err := r.intIn(what+" sample_expansion_factor", 4, 1, 1); err != nil {
				return err
			}
		}
		return nil
	}
	if version >= 2 {
		if _, _, err := r.tensor(what+" params_grad", false); err != nil {
			return err
		}
	}
	return nil
}

// multipliers skips the learning-rate and weight-decay multipliers.
func (r *reader) multipliers(what string) error {
	for _, name := range []string{"learning_rate_multiplier", "weight_decay_multiplier", "bias_learning_rate_multiplier", "bias_weight_decay_multiplier"} {
		if _, err := r.float(what + " " + name); err != nil {
			return err
		}
	}
	return nil
}

// expect reads an integer that must equal want.
func (r *reader) expect(what string, maxBytes int, want int) error {
	_, err := r.intIn(what, maxBytes, int64(want), int64(want))
	return err
}

func (r *reader) conv(l *Layer, what string, inC int) error {
	v, err := r.version(what, "con_4", "con_5", "con_6")
	if err != nil {
		return err
	}
	pat := r.off
	ps, params, err := r.tensor(what+" params", true)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name  string
		bytes int
		want  int
	}{
		{"num_filters", 8, l.Filters}, {"nr", 8, l.Size}, {"nc", 8, l.Size},
		{"stride_y", 4, l.Stride}, {"stride_x", 4, l.Stride},
		{"padding_y", 4, l.Pad}, {"padding_x", 4, l.Pad},
	} {
		if err := r.expect(what+" "+f.name, f.bytes, f.want); err != nil {
			return err
		}
	}
	at := r.off
	fs, err := r.alias(what + " filters")
	if err != nil {
		return err
	}
	if fs != (Shape{l.Filters, inC, l.Size, l.Size}) {
		return r.errf(at, what+" filters", "shape %v, expected %v", fs, Shape{l.Filters, inC, l.Size, l.Size})
	}
	at = r.off
	bs, err := r.alias(what + " biases")
	if err != nil {
		return err
	}
	if err := r.multipliers(what); err != nil {
		return err
	}
	useBias := true
	if v != "con_4" {
		if useBias, err = r.boolean(what + " use_bias"); err != nil {
			return err
		}
	}
	if v == "con_6" {
		at := r.off
		relu, err := r.boolean(what + " use_relu")
		if err != nil {
			return err
		}
		if relu {
			return r.errf(at, what+" use_relu", "a convolution with a fused relu is not part of this network")
		}
	}
	nw := fs.Size()
	nb := 0
	if useBias {
		nb = l.Filters
		if bs.Size() != nb {
			return r.errf(at, what+" biases", "shape %v, expected %d values", bs, nb)
		}
	}
	if ps.Size() != nw+nb {
		return r.errf(pat, what+" params", "%d values, expected %d filter weights and %d biases", ps.Size(), nw, nb)
	}
	l.InC = inC
	l.Weights = params[:nw:nw]
	l.Bias = make([]float32, l.Filters)
	copy(l.Bias, params[nw:])
	return nil
}

func (r *reader) affine(l *Layer, what string, c int) error {
	v, err := r.version(what, "affine_", "affine_2")
	if err != nil {
		return err
	}
	pat := r.off
	ps, params, err := r.tensor(what+" params", true)
	if err != nil {
		return err
	}
	if ps.Size() != 2*c {
		return r.errf(pat, what+" params", "%d values, expected %d (gamma and beta of %d channels)", ps.Size(), 2*c, c)
	}
	for _, name := range []string{"gamma", "beta"} {
		at := r.off
		s, err := r.alias(what + " " + name)
		if err != nil {
			return err
		}
		if s.Size() != c {
			return r.errf(at, what+" "+name, "shape %v, expected %d channels", s, c)
		}
	}
	if err := r.expect(what+" mode (CONV_MODE)", 4, 0); err != nil {
		return err
	}
	if v == "affine_2" {
		at := r.off
		disabled, err := r.boolean(what + " disabled")
		if err != nil {
			return err
		}
		if disabled {
			return r.errf(at, what+" disabled", "a disabled layer is not part of this network")
		}
	}
	l.Gamma, l.Beta = params[:c:c], params[c:]
	return nil
}

func (r *reader) relu(what string) error {
	v, err := r.version(what, "relu_", "relu_2")
	if err != nil {
		return err
	}
	if v == "relu_2" {
		at := r.off
		disabled, err := r.boolean(what + " disabled")
		if err != nil {
			return err
		}
		if disabled {
			return r.errf(at, what+" disabled", "a disabled layer is not part of this network")
		}
	}
	return nil
}

func (r *reader) pool(l *Layer, what string) error {
	name := "max_pool_2"
	if l.Kind == AvgPool {
		name = "avg_pool_2"
	}
	if _, err := r.version(what, name); err != nil {
		return err
	}
	for _, f := range []struct {
		name  string
		bytes int
		want  int
	}{
		{"nr", 8, l.Size}, {"nc", 8, l.Size}, {"stride_y", 4, l.Stride}, {"stride_x", 4, l.Stride},
		{"padding_y", 4, l.Pad}, {"padding_x", 4, l.Pad},
	} {
		if err := r.expect(what+" "+f.name, f.bytes, f.want); err != nil {
			return err
		}
	}
	return nil
}

func (r *reader) fc(l *Layer, what string, in int) error {
	v, err := r.version(what, "fc_2", "fc_3")
	if err != nil {
		return err
	}
	if err := r.expect(what+" num_outputs", 8, l.Filters); err != nil {
		return err
	}
	if err := r.expect(what+" num_inputs", 8, in); err != nil {
		return err
	}
	pat := r.off
	ps, params, err := r.tensor(what+" params", true)
	if err != nil {
		return err
	}
	if ps.Size() != in*l.Filters {
		return r.errf(pat, what+" params", "%d values, expected %d×%d weights and no bias", ps.Size(), in, l.Filters)
	}
	at := r.off
	ws, err := r.alias(what + " weights")
	if err != nil {
		return err
	}
	if ws.Size() != in*l.Filters || ws[0] != in {
		return r.errf(at, what+" weights", "shape %v, expected %d×%d", ws, in, l.Filters)
	}
	if _, err := r.alias(what + " biases"); err != nil {
		return err
	}
	if err := r.expect(what+" bias_mode (FC_NO_BIAS)", 4, 1); err != nil {
		return err
	}
	if err := r.multipliers(what); err != nil {
		return err
	}
	if v == "fc_3" {
		at := r.off
		useBias, err := r.boolean(what + " use_bias")
		if err != nil {
			return err
		}
		if useBias {
			return r.errf(at, what+" use_bias", "fc_no_bias with a bias")
		}
	}
	l.InC = in
	l.Weights = params
	return nil
}
