// Package train learns a face head: a projection of cached backbone features
// (Linear d→d′, optionally followed by BatchNorm, folded in at the end)
// trained with one of package margin's losses, returned as a facehead.Head
// ready to save and use. It holds the training loop (Train and its Config),
// the optimiser (AdamW), the P×K sampler of the pair losses and the identity
// split for validation.
//
// This package and margin are where gorgonia is linked: facehead, the
// pipeline and the server do not import them (facehead's
// TestInferencePathLinksNoTraining checks the import graph).
package train
