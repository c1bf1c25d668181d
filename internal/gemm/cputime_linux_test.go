package gemm

import (
	"time"

	"golang.org/x/sys/unix"
)

// threadCPU is the CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID,
// nanosecond resolution): on a shared machine a one-thread benchmark's rate
// per CPU second varies far less with other load than its rate per wall
// second.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
