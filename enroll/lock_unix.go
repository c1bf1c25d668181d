//go:build unix

package enroll

import (
	"errors"
	"syscall"
	"time"
)

// flockWait takes the file lock bbolt takes (flock, exclusive for a
// read-write open, shared for read-only), waiting up to timeout (0: forever).
// bbolt's own flock on the same open file then succeeds at once.
func flockWait(fd uintptr, exclusive bool, timeout time.Duration) error {
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	start := time.Now()
	for {
		err := syscall.Flock(int(fd), how|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return err
		}
		if timeout > 0 && time.Since(start) > timeout {
			return errLockTimeout
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// funlock releases the lock explicitly: closing the file is not enough when
// a mapping of it (bbolt's mmap, left behind by a panic) still holds the
// open file description.
func funlock(fd uintptr) { _ = syscall.Flock(int(fd), syscall.LOCK_UN) }
