//go:build unix

package objstore

import (
	"errors"
	"os"
	"syscall"
)

// tryLock takes an exclusive flock on f without waiting. flock belongs to
// the open file description, so it also excludes other goroutines of this
// process that opened the lock file themselves.
func tryLock(f *os.File) (bool, error) {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, syscall.EWOULDBLOCK), errors.Is(err, syscall.EINTR):
		return false, nil
	}
	return false, err
}

// isLoop reports a symlink loop (ELOOP: too many levels of symbolic links).
func isLoop(err error) bool { return errors.Is(err, syscall.ELOOP) }
