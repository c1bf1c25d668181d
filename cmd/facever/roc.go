package main

import (
	"fmt"

	"github.com/facever/facever/verify"
)

// writeROC draws one ROC curve into a PNG file.
func writeROC(path string, roc *verify.ROC, label string) error {
	return verify.WriteROCPNG(path, []verify.Curve{{Label: label, ROC: roc}},
		verify.PlotOptions{Title: fmt.Sprintf("ROC: %d same-person, %d different-person pairs", roc.Genuine, roc.Impostor)})
}
