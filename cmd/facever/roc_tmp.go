package main

import (
	"errors"

	"github.com/facever/facever/verify"
)

func writeROC(path string, roc *verify.ROC, label string) error {
	return errors.New("ROC plot: not yet wired")
}
