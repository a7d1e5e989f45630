package localfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gofrs/flock"
)

// scratchPrefix begins the name of every scratch folder: a sweep removes
// no folder of another name.
const scratchPrefix = "convertro-etl-scratch-"

// scratchLock is the file in a scratch folder that its process keeps
// locked. The lock is the operating system's (flock, LockFileEx), so it is
// let go of when the process ends in any way, a kill included.
const scratchLock = ".lock"

// scratchGrace is how old a scratch folder must be before a sweep removes
// it with its lock free: its process locks it right after making it, and
// a younger folder may be in that moment.
const scratchGrace = time.Minute

// Scratch is a folder for one run's working files, in the system's
// temporary folder (TMPDIR): an audience sync's spill, which can be
// gigabytes. Release removes it. A run that is killed cannot, so the first
// Scratch a process makes removes the folders of the runs that ended
// without releasing theirs; a nightly job killed now and then does not fill
// the disk with them.
type Scratch struct {
	Dir  string
	lock *flock.Flock
}

var sweepOnce sync.Once

// NewScratch makes a scratch folder named for what ("audience") and locks it
// for as long as this process holds it. The first call in a process first
// removes the scratch folders whose process has ended (their lock is free)
// and returns them as swept, for the caller to log.
func NewScratch(what string) (s *Scratch, swept []string, err error) {
	sweepOnce.Do(func() { swept = sweep(os.TempDir(), time.Now()) })
	dir, err := os.MkdirTemp("", scratchPrefix+what+"-")
	if err != nil {
		return nil, swept, err
	}
	lock := flock.New(filepath.Join(dir, scratchLock))
	ok, err := lock.TryLock()
	if err == nil && !ok {
		// The folder is new, and no other process knows it yet.
		err = errors.New("locked by another process")
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, swept, fmt.Errorf("lock %s: %w", dir, err)
	}
	return &Scratch{Dir: dir, lock: lock}, swept, nil
}

// Release removes the folder with everything in it. It lets go of the lock
// first, as Windows removes no open file.
func (s *Scratch) Release() error {
	err := s.lock.Unlock()
	if rerr := os.RemoveAll(s.Dir); err == nil {
		err = rerr
	}
	return err
}

// sweep removes the scratch folders in tmp whose process has ended, and
// returns them. A folder it cannot judge (unreadable, or whose lock cannot
// be tried) is left alone: sweeping is a courtesy to the disk, and no reason
// to fail a run.
func sweep(tmp string, now time.Time) []string {
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return nil
	}
	var swept []string
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), scratchPrefix) {
			continue
		}
		dir := filepath.Join(tmp, e.Name())
		if ended(dir, now) && os.RemoveAll(dir) == nil {
			swept = append(swept, dir)
		}
	}
	return swept
}

// ended reports whether the process that made the scratch folder dir has
// ended: its lock file is free, or missing (killed between making the
// folder and its lock file), and the folder is older than scratchGrace.
func ended(dir string, now time.Time) bool {
	path := filepath.Join(dir, scratchLock)
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		st, err = os.Stat(dir)
		return err == nil && now.Sub(st.ModTime()) >= scratchGrace
	}
	if err != nil || now.Sub(st.ModTime()) < scratchGrace {
		return false
	}
	// Opened as it is, never created: a lock file removed meanwhile is
	// not made again in a folder about to go.
	lock := flock.New(path, flock.SetFlag(os.O_RDONLY))
	ok, err := lock.TryLock()
	if err != nil || !ok {
		return false
	}
	return lock.Unlock() == nil
}
