package gemm

import (
	"syscall"
	"time"
)

// threadCPU is the CPU time of the calling thread: on a shared machine a
// one-thread benchmark's rate per CPU second varies far less with other
// load than its rate per wall second.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_THREAD, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
