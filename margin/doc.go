// Package margin builds the losses that face-recognition heads are trained
// with, as gorgonia graphs. The classification (margin) losses: plain
// softmax, Center loss (Wen et al., ECCV 2016), SphereFace (Liu et al., CVPR
// 2017), CosFace (Wang et al., CVPR 2018), ArcFace (Deng et al., CVPR 2019)
// and the combined margin of the ArcFace paper. The pair losses, on the
// cosine similarities within a batch (w = nil): contrastive (Hadsell et al.
// 2006), triplet with all, batch-hard or semi-hard mining (Hoffer and Ailon
// 2015; Hermans et al. 2017; Schroff et al. 2015), N-pair (Sohn 2016),
// lifted structure (Song et al. 2016) and multi-similarity (Wang et al.
// 2019). The proxy losses, on the cosines to learned proxies in w: ProxyNCA
// (Movshovitz-Attias et al. 2017), Proxy Anchor (Kim et al. 2020) and
// SoftTriple (Qian et al. 2019). WeightRows says how many rows of w a loss
// reads; CheckBatch whether it is defined on a batch's labels.
//
// New builds any of them by name from Params, the registry (Specs, Lookup)
// owning each loss's hyper-parameters, their defaults and their checks; a
// command line takes its flags, help texts and defaults from it. Losses built
// by New are ready to train: SphereFace anneals its λ and Center loss moves
// its centres through Stepper, Center loss starts from the class means
// through ClassInitializer.
//
// A Loss adds its mean over a batch to the graph that holds the features
// x (N×D) and the class weights w (C×D); the batch's labels live in a Labels
// value the graph reads at run time, so one graph serves every batch. The
// losses are built from a few custom gorgonia ops (row normalisation, a matrix
// product on internal/gemm in float32 and gorgonia's BLAS in float64, or
// OpenBLAS with -tags openblas (see GEMMBackend), label picks, a stable softmax cross-entropy, the margin functions, a clamped
// differentiable Arccos), each with its symbolic gradient; gradients flow
// through every normalisation.
//
// Evaluate runs the very graph training uses, in float64, and returns the loss
// and its gradients, so the formulas can be checked against hand computations
// and finite differences. Formulas, defaults and their sources: docs/losses.md.
package margin
