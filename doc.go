// Package facever verifies and identifies faces in photos: the one entry
// point for Go programs, the facever command and its HTTP server alike.
//
//	r, err := facever.Open(facever.Options{})   // the default models, pure-Go engine
//	defer r.Close()
//	d, err := r.VerifyFiles("a.jpg", "b.jpg")   // d.Same, d.Similarity, d.Threshold
//
// A Recognizer is safe for concurrent use. See the Example, and docs/design.md
// in the repository for the reasoning behind each stage.
//
// # Data flow
//
// A photo goes through the packages below, left to right. Each stage is one
// package with one job; the arrows are the data flow.
//
//	photo file ─► align.Load ─► align.Aligner.Detect ─► align.Align ─► facehead.Embedder ─► verify / enroll
//	 (JPEG/PNG)   (GoCV decode,   (fr_detect boxes,     (five-point     (ONNX backbone,      (cosine and its
//	              size limits)     fr_landmark points)   similarity      optional trained     threshold; gallery
//	                                                     warp to chip)   head: embedding)     search: Identify)
//
//	every model runs through infer.Session: internal/onnxrt ("engine", pure Go) or internal/cvdnn ("opencv")
//	models lists the catalogue (file names, sha256, input shapes, thresholds); internal/session opens one
//
// Beside the per-photo path:
//
//   - internal/pipeline.Features computes backbone features of many photos on
//     every core, with a feature cache (internal/featcache): used by the
//     evaluations and by training.
//   - verify holds the evaluation protocols (ROC, k-fold, TAR@FAR, open-set
//     identification) over such features.
//   - facehead reads and writes head files; facehead/train trains heads with
//     the losses of package margin (the only packages that link gorgonia).
//   - internal/server is the HTTP API over a Recognizer; cmd/facever is the
//     command line.
//
// # Plugging in another runtime
//
// The detector and the embedder take an infer.Session; a runtime for other
// hardware (a GPU) implements that interface (see package infer) and is
// handed to align.New and facehead.NewEmbedder.
package facever
