// Package margin builds the classification losses that face-recognition heads
// are trained with, as gorgonia graphs: plain softmax, Center loss (Wen et al.,
// ECCV 2016), SphereFace (Liu et al., CVPR 2017), CosFace (Wang et al.,
// CVPR 2018), ArcFace (Deng et al., CVPR 2019) and the combined margin of the
// ArcFace paper.
//
// A Head adds its mean loss over a batch to the graph that holds the features
// x (N×D) and the class weights w (C×D); the batch's labels live in a Labels
// value the graph reads at run time, so one graph serves every batch. The
// heads are built from a few custom gorgonia ops (row normalisation, a matrix
// product on gonum or, with -tags openblas, OpenBLAS (see GEMMBackend), label
// picks, a stable softmax cross-entropy, the margin functions, a clamped
// differentiable Arccos), each with its symbolic gradient; gradients flow
// through every normalisation.
//
// Evaluate runs the very graph training uses, in float64, and returns the loss
// and its gradients, so the formulas can be checked against hand computations
// and finite differences. Formulas and defaults follow ../shared/REFERENCE.md.
package margin
