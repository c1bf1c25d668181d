//go:build !unix

package enroll

import "time"

// flockWait leaves locking to bbolt where flock does not exist.
func flockWait(fd uintptr, exclusive bool, timeout time.Duration) error { return nil }

func funlock(fd uintptr) {}
