package onnxrt_test

import (
	"fmt"
	"testing"

	"github.com/facever/facever/infer"
	"github.com/facever/facever/internal/onnxrt"
)

// BenchmarkConvPaths runs fr_landmark on one thread (SetThreads(1), as
// align runs it, one 64×64 crop at a time) and fr_detect on the pool at
// batch 1, with the current depthwise code ("new") and the old one
// ("legacy", SetLegacyConv) side by side in one run:
// go test ./internal/onnxrt -run '^$' -bench ConvPaths -benchtime 20x -count 5.
func BenchmarkConvPaths(b *testing.B) {
	files := faceImages(b)
	for _, c := range []struct {
		rm      realModel
		threads int
	}{{realModels[2], 1}, {realModels[1], 0}} {
		_, m := loadReal(b, c.rm)
		m.SetThreads(c.threads)
		names := outNames(m)
		inputs := map[string]infer.Tensor{m.Inputs()[0].Name: blob(b, c.rm, files[:1])}
		outs := make([]infer.Tensor, len(names))
		for _, legacy := range []bool{true, false} {
			name := map[bool]string{true: "legacy", false: "new"}[legacy]
			b.Run(fmt.Sprintf("%s/threads=%d/%s", c.rm.file, c.threads, name), func(b *testing.B) {
				defer onnxrt.SetLegacyConv(legacy)()
				if err := m.RunInto(inputs, names, outs); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				c0 := cpuTime()
				for i := 0; i < b.N; i++ {
					m.RunInto(inputs, names, outs)
				}
				report(b, 1, cpuTime()-c0)
			})
		}
		m.Close()
	}
}
