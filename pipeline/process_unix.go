//go:build unix

package pipeline

import (
	"errors"
	"syscall"
)

// processRunning reports whether pid names a process; EPERM means it exists
// under another user.
func processRunning(pid int) bool {
	return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
