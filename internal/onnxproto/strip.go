package onnxproto

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// StripShapes returns a copy of the ModelProto data in which the graph's
// inputs and outputs declare no shape (their names and element types
// stay) and the graph's value_info entries are gone; every other field is
// copied byte for byte. onnx-go allocates a tensor of every declared shape
// while decoding (3 GiB for an input declared 1×3×16384×16384, whatever
// the file's size), so the engine hands it the stripped file and reads the
// shapes with Scan instead. Errors wrap ErrMalformed.
func StripShapes(data []byte) ([]byte, error) {
	out := make([]byte, 0, len(data))
	err := wireFields(data, func(f wireField) error {
		if f.num == 7 && f.typ == 2 {
			g, err := stripGraph(f.data)
			if err != nil {
				return err
			}
			out = protowire.AppendTag(out, 7, protowire.BytesType)
			out = protowire.AppendBytes(out, g)
			return nil
		}
		out = appendField(out, f)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return out, nil
}

func stripGraph(b []byte) ([]byte, error) {
	out := make([]byte, 0, len(b))
	err := wireFields(b, func(f wireField) error {
		switch {
		case f.num == 13 && f.typ == 2: // value_info: dropped
			return nil
		case (f.num == 11 || f.num == 12) && f.typ == 2:
			vi, err := stripValueInfo(f.data)
			if err != nil {
				return err
			}
			out = protowire.AppendTag(out, protowire.Number(f.num), protowire.BytesType)
			out = protowire.AppendBytes(out, vi)
			return nil
		}
		out = appendField(out, f)
		return nil
	})
	return out, err
}

// stripValueInfo keeps a ValueInfoProto's name, doc string and, of its
// type, the tensor element type.
func stripValueInfo(b []byte) ([]byte, error) {
	var out []byte
	err := wireFields(b, func(f wireField) error {
		if f.num != 2 || f.typ != 2 { // not the TypeProto
			out = appendField(out, f)
			return nil
		}
		var tensor []byte
		found := false
		if err := wireFields(f.data, func(g wireField) error {
			if g.num != 1 || g.typ != 2 { // other kinds of type: dropped
				return nil
			}
			found = true
			return wireFields(g.data, func(h wireField) error {
				if h.num == 1 && h.typ == 0 {
					tensor = protowire.AppendTag(tensor, 1, protowire.VarintType)
					tensor = protowire.AppendVarint(tensor, h.v)
				}
				return nil
			})
		}); err != nil {
			return err
		}
		if found {
			out = protowire.AppendTag(out, 2, protowire.BytesType)
			out = protowire.AppendBytes(out, appendMsg(nil, 1, tensor))
		}
		return nil
	})
	return out, err
}

// appendField re-encodes one field as it was read.
func appendField(b []byte, f wireField) []byte {
	num := protowire.Number(f.num)
	switch f.typ {
	case 0:
		b = protowire.AppendTag(b, num, protowire.VarintType)
		return protowire.AppendVarint(b, f.v)
	case 1:
		b = protowire.AppendTag(b, num, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, f.v)
	case 5:
		b = protowire.AppendTag(b, num, protowire.Fixed32Type)
		return protowire.AppendFixed32(b, uint32(f.v))
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, f.data)
}
