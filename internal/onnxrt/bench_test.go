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
