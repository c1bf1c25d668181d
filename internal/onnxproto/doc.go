// Package onnxproto reads and writes the ONNX file format (a protobuf
// ModelProto, https://github.com/onnx/onnx/blob/main/onnx/onnx.proto) with
// the protobuf wire format alone
// (https://protobuf.dev/programming-guides/encoding/). It registers no
// protobuf type, so it links beside onnx-go, which registers the ONNX
// messages under the name "onnx".
//
// Reading (Scan, CheckWire) walks every field and keeps what describes a
// model without decoding its tensors: opset, producer, metadata, the
// nodes' names, operators and edges, initializer names and shapes, and the
// declared inputs and outputs with their symbolic dimensions. The engine
// (internal/onnxrt) reads what onnx-go does not pass on from it; runtimes
// that abort on malformed files (OpenCV DNN) check files with CheckWire.
//
// Writing (Model.Marshal) encodes a whole model: the dlib converter and the
// tests that build models use it.
package onnxproto
