package onnxrt_test

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/facever/facever/infer"
	"github.com/facever/facever/internal/gemm"
	"github.com/facever/facever/internal/onnxrt"
)

// BenchmarkModels runs each real model at batch 1 and 16 on the engine and
// on OpenCV DNN (default backend and target, OpenCV's default 2 threads
// here) side by side: go test -bench Models -run ^$ ./internal/onnxrt/.
// "engine" uses the fastest micro-kernel the CPU has; where that is
// AVX-512, "engine-avx2" runs the AVX2 one in the same run.
func BenchmarkModels(b *testing.B) {
	files := faceImages(b)
	for _, rm := range realModels {
		data, m := loadReal(b, rm)
		cv := newCV(b, data)
		names := outNames(m)
		in := m.Inputs()[0].Name
		for _, batch := range []int{1, 16} {
			fs := make([]string, batch)
			for i := range fs {
				fs[i] = files[i%len(files)]
			}
			x := blob(b, rm, fs)
			for _, k := range benchKernels() {
				name := "engine"
				if k != gemm.Best() {
					name += "-" + k.String()
				}
				b.Run(fmt.Sprintf("%s/N=%d/%s", rm.file, batch, name), func(b *testing.B) {
					restore, err := onnxrt.SetKernel(k)
					if err != nil {
						b.Fatal(err)
					}
					defer restore()
					outs := make([]infer.Tensor, len(names))
					inputs := map[string]infer.Tensor{in: x}
					if err := m.RunInto(inputs, names, outs); err != nil {
						b.Fatal(err)
					}
					b.ResetTimer()
					c0 := cpuTime()
					for i := 0; i < b.N; i++ {
						m.RunInto(inputs, names, outs)
					}
					report(b, batch, cpuTime()-c0)
				})
			}
			b.Run(fmt.Sprintf("%s/N=%d/opencv", rm.file, batch), func(b *testing.B) {
				// OpenCV cannot run fr_detect batched: run the images one by one
				xs := []infer.Tensor{x}
				if !rm.cvBatch && batch > 1 {
					xs = xs[:0]
					for _, f := range fs {
						xs = append(xs, blob(b, rm, []string{f}))
					}
				}
				for _, x := range xs {
					cv.run(b, x, names)
				}
				b.ResetTimer()
				c0 := cpuTime()
				for i := 0; i < b.N; i++ {
					for _, x := range xs {
						cv.run(b, x, names)
					}
				}
				report(b, batch, cpuTime()-c0)
			})
		}
	}
}

// cpuTime is the CPU time of the whole process (every thread): on a shared
// machine it varies less with other load than wall time does.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func report(b *testing.B, batch int, cpu time.Duration) {
	n := float64(b.N * batch)
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/n, "ms/image")
	b.ReportMetric(float64(cpu.Microseconds())/1000/n, "cpu-ms/image")
}

// benchKernels are the micro-kernels the model benchmarks compare: the
// default one, and AVX2 beside AVX-512 (the pure-Go one is ~40× slower).
func benchKernels() []gemm.Kernel {
	ks := []gemm.Kernel{gemm.Best()}
	if gemm.Best() == gemm.AVX512 {
		ks = append(ks, gemm.AVX2)
	}
	return ks
}

// BenchmarkDetectLevels is the detector's cost per pyramid level, engine
// and OpenCV DNN side by side in one run: go test ./internal/onnxrt -run
// '^$' -bench DetectLevels. fr_detect cannot run at another input size on
// either runtime: its box decoding multiplies by prior boxes stored as a
// 1×4420×2 constant for 320×240 (node Mul_156), so a 640×480 input fails
// to broadcast there. A level of W×H is therefore (W/320)·(H/240) tiles
// of 320×240: 1, 4 and 16 tiles for 320×240, 640×480 and 1280×960 (no
// overlap). The engine runs a level's tiles as one batch or one by one;
// OpenCV, which cannot batch this model, one by one. "engine-whole" runs
// the level in one piece through the graph cut before the decoding
// (Model.Sub, AnyInputSize), what a pyramid without tiles would pay (plus
// decoding the boxes with priors for that size). Metrics are per level and
// per tile, wall clock and CPU time of the whole process.
func BenchmarkDetectLevels(b *testing.B) {
	rm := realModels[1]
	if rm.file != "fr_detect" {
		b.Fatal("realModels[1] is not fr_detect")
	}
	files := faceImages(b)
	data, m := loadReal(b, rm)
	cv := newCV(b, data)
	names := outNames(m)
	in := m.Inputs()[0].Name
	whole, err := m.Sub("scores", "462") // before the box decoding
	if err != nil {
		b.Fatal(err)
	}
	whole.AnyInputSize()
	for _, lv := range []struct {
		name  string
		tiles int
		w, h  int
	}{{"320x240", 1, 320, 240}, {"640x480", 4, 640, 480}, {"1280x960", 16, 1280, 960}} {
		fs := make([]string, lv.tiles)
		for i := range fs {
			fs[i] = files[i%len(files)]
		}
		batch := blob(b, rm, fs)
		single := make([]infer.Tensor, lv.tiles)
		for i := range single {
			single[i] = blob(b, rm, fs[i:i+1])
		}
		level := func(b *testing.B, runLevel func()) {
			runLevel()
			b.ResetTimer()
			c0 := cpuTime()
			for i := 0; i < b.N; i++ {
				runLevel()
			}
			cpu := cpuTime() - c0
			n := float64(b.N)
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/n, "ms/level")
			b.ReportMetric(float64(cpu.Microseconds())/1000/n, "cpu-ms/level")
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/n/float64(lv.tiles), "ms/tile")
		}
		outs := make([]infer.Tensor, len(names))
		if lv.tiles > 1 {
			b.Run(fmt.Sprintf("%s/tiles=%d/engine-batch", lv.name, lv.tiles), func(b *testing.B) {
				inputs := map[string]infer.Tensor{in: batch}
				level(b, func() {
					if err := m.RunInto(inputs, names, outs); err != nil {
						b.Fatal(err)
					}
				})
			})
		}
		b.Run(fmt.Sprintf("%s/tiles=%d/engine", lv.name, lv.tiles), func(b *testing.B) {
			inputs := make([]map[string]infer.Tensor, lv.tiles)
			for i := range inputs {
				inputs[i] = map[string]infer.Tensor{in: single[i]}
			}
			level(b, func() {
				for _, x := range inputs {
					if err := m.RunInto(x, names, outs); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
		if lv.tiles > 1 {
			// the level in one run of the graph cut before its decoding
			b.Run(fmt.Sprintf("%s/tiles=%d/engine-whole", lv.name, lv.tiles), func(b *testing.B) {
				x := infer.NewTensor(1, 3, lv.h, lv.w)
				for i := range x.Data {
					x.Data[i] = batch.Data[i%len(batch.Data)]
				}
				inputs := map[string]infer.Tensor{in: x}
				subOuts := make([]infer.Tensor, 2)
				level(b, func() {
					if err := whole.RunInto(inputs, []string{"scores", "462"}, subOuts); err != nil {
						b.Fatal(err)
					}
				})
			})
		}
		b.Run(fmt.Sprintf("%s/tiles=%d/opencv", lv.name, lv.tiles), func(b *testing.B) {
			level(b, func() {
				for _, x := range single {
					cv.run(b, x, names)
				}
			})
		})
	}
}
