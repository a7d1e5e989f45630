package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/convertro-etl/convertro-etl/internal/localfile"
)

// A bare path or file:///path: a local folder. Writes go to a temporary
// file in the object's folder, are fsynced, renamed over the name and the
// folder is fsynced, so a crash leaves the old or the new object. Versions
// are modification times in nanoseconds; every write sets the new file's
// strictly after the old one's, and the check of a precondition and the
// rename happen under a lock on a file in the root (see lockFolder), so two
// processes (or goroutines) cannot both pass the check. Reads take no lock:
// a renamed file is never modified in place. Files and folders are created
// with modes 0666 and 0777 less the process's umask, as every other file
// the user creates (umask 077 keeps a state private).
func init() { Register("file", openLocal) }

// Reasons a local entry is listed but is not data; the readers skip it
// with this reason.
const (
	// SkipFolder: a remote name ending in "/", the empty object that
	// consoles create to show a folder (the Store marks it on every
	// backend).
	SkipFolder = "folder placeholder"
	// SkipNotRegular: neither a file nor a folder (a broken symlink, a
	// socket, a device).
	SkipNotRegular = "not a regular file"
	// SkipSymlinkedDir: a symlink to a folder, which a walk does not follow.
	SkipSymlinkedDir = "symlinked folder not followed"
)

const (
	// lockName is the lock file of a folder that holds written objects.
	lockName = ".convertro-state.lock"
	// orphanTempAge is the age after which a temporary file is an orphan. A
	// write holds its temporary file for the time it takes to copy and
	// fsync it, and renames it under a lock it waits for at most lockWait:
	// far less than this.
	orphanTempAge = time.Hour
	// lockWait bounds the wait for the folder's lock when ctx allows more.
	lockWait = 30 * time.Second
)

type localBackend struct {
	root string // cleaned
}

func openLocal(_ context.Context, loc Location) (Backend, error) {
	if loc.Path == "" {
		return nil, errors.New("empty path")
	}
	return &localBackend{root: filepath.Clean(loc.Path)}, nil
}

func (d *localBackend) path(key string) string {
	if key == "" {
		return d.root
	}
	return filepath.Join(d.root, filepath.FromSlash(key))
}
func (d *localBackend) URI(key string) string  { return d.path(key) }
func (d *localBackend) Name(key string) string { return filepath.ToSlash(d.path(key)) }
func (d *localBackend) As(any) bool            { return false }

func localVersion(fi fs.FileInfo) string { return strconv.FormatInt(fi.ModTime().UnixNano(), 10) }

func (d *localBackend) checkKey(key string) error {
	if !filepath.IsLocal(filepath.FromSlash(key)) {
		return fmt.Errorf("key %q is not a path inside %s", key, d.root)
	}
	return nil
}

// List walks the folder under prefix; symlinks to files are followed, to
// folders not (they are listed with SkipSymlinkedDir), and a symlink loop
// is listed as Loop. The lock and temporary files of writes are left out.
func (d *localBackend) List(ctx context.Context, prefix string, fn func(Attrs) error) error {
	start := d.root
	if fi, err := os.Stat(d.root); err == nil && fi.IsDir() {
		start += string(filepath.Separator) // walk into a root that is a symlink to a folder
	}
	// A prefix that is a folder path starts the walk there; any other is a
	// filter on the keys.
	if dir := prefix[:strings.LastIndexByte(prefix, '/')+1]; dir != "" {
		start = filepath.Join(d.root, filepath.FromSlash(dir)) + string(filepath.Separator)
	}
	err := filepath.WalkDir(start, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			if p == start && errors.Is(err, fs.ErrNotExist) {
				return nil // nothing under it
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if de.IsDir() || de.Name() == lockName || localfile.IsTemp(de.Name()) {
			return nil
		}
		rel, err := filepath.Rel(d.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		var a Attrs
		fi, err := os.Stat(p) // follows symlinks
		switch {
		case err != nil && errors.Is(err, fs.ErrNotExist):
			a = Attrs{Key: key, Skip: SkipNotRegular} // broken symlink
		case isLoop(err):
			a = Attrs{Key: key, Loop: true}
		case err != nil:
			return err
		case fi.IsDir():
			a = Attrs{Key: key, Skip: SkipSymlinkedDir}
		case !fi.Mode().IsRegular():
			a = Attrs{Key: key, Skip: SkipNotRegular}
		default:
			a = Attrs{Key: key, Size: fi.Size(), Version: localVersion(fi)}
		}
		return fn(a)
	})
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err // a walk error names its path
}

// Stat of the root's own name ("") or of a key; a folder or a special file
// is not an object (ErrNotFound), a symlink loop is Loop.
func (d *localBackend) Stat(_ context.Context, key string) (Attrs, error) {
	if err := d.checkKey(key); err != nil && key != "" {
		return Attrs{}, err
	}
	fi, err := os.Stat(d.path(key))
	if isLoop(err) {
		return Attrs{Key: key, Loop: true}, localErr(err)
	}
	if err != nil {
		return Attrs{}, localErr(err)
	}
	if fi.IsDir() {
		return Attrs{}, fmt.Errorf("%w: a folder", ErrNotFound)
	}
	if !fi.Mode().IsRegular() {
		return Attrs{}, errors.New("not a regular file")
	}
	return Attrs{Key: key, Size: fi.Size(), Version: localVersion(fi)}, nil
}

// Open cannot pin a local version: it reports the version opened, and the
// Reader's Version re-reads it, so that the caller can compare both with
// the version it listed.
func (d *localBackend) Open(_ context.Context, key, _ string) (Reader, Attrs, error) {
	if err := d.checkKey(key); err != nil {
		return nil, Attrs{}, err
	}
	f, err := os.Open(d.path(key))
	if err != nil {
		return nil, Attrs{}, localErr(err)
	}
	r := &localReader{f: f}
	size, v, err := r.Version()
	if err != nil {
		f.Close()
		return nil, Attrs{}, err
	}
	return r, Attrs{Key: key, Size: size, Version: v}, nil
}

type localReader struct{ f *os.File }

func (r *localReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := r.f.ReadAt(p, off)
	if err == io.EOF {
		err = nil // shorter than listed: the caller reports a change
	}
	return n, localErr(err)
}

// Version costs one fstat: cheap next to a read, and it catches a file
// rewritten in place while it is read.
func (r *localReader) Version() (int64, string, error) {
	fi, err := r.f.Stat()
	if err != nil {
		return 0, "", localErr(err)
	}
	if !fi.Mode().IsRegular() {
		return 0, "", errors.New("not a regular file")
	}
	return fi.Size(), localVersion(fi), nil
}

func (r *localReader) Close() error { return localErr(r.f.Close()) }

func (d *localBackend) Get(ctx context.Context, key string, w io.Writer) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	f, err := os.Open(d.path(key))
	if err != nil {
		return "", localErr(err)
	}
	defer f.Close()
	// Stat the open file, not the path: the bytes and the version then
	// belong to the same file even if a writer renames a new one in.
	fi, err := f.Stat()
	if err != nil {
		return "", localErr(err)
	}
	if fi.IsDir() {
		return "", fmt.Errorf("%w: a folder", ErrNotFound)
	}
	if _, err := io.Copy(w, f); err != nil {
		return "", localErr(err)
	}
	return localVersion(fi), nil
}

// Put copies the bytes to a temporary file before taking the lock; only the
// precondition check, the fsync and the rename happen under it.
func (d *localBackend) Put(ctx context.Context, key string, r io.Reader, _ int64, pre Precondition) (v string, err error) {
	p := d.path(key)
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return "", err
	}
	f, err := localfile.Create(p)
	if err != nil {
		return "", err
	}
	defer f.Abort() // nothing once committed
	if _, err := io.Copy(f, r); err != nil {
		return "", err
	}
	unlock, err := lockFolder(ctx, d.root)
	if err != nil {
		return "", err
	}
	defer unlock()

	cur, err := os.Stat(p)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	switch {
	case pre.Absent() && exists:
		return "", ErrPrecondition
	case !pre.Any() && !pre.Absent() && (!exists || localVersion(cur) != pre.Version()):
		return "", ErrPrecondition
	}
	fi, err := setLaterModTime(f.File, f.Name(), cur)
	if err != nil {
		return "", err
	}
	if err := f.Commit(true); err != nil {
		return "", err
	}
	return localVersion(fi), nil
}

// setLaterModTime gives the temporary file a modification time strictly
// after cur's (the version it replaces), so that no two versions of a name
// share a version. Some file systems keep microseconds or seconds only,
// hence the growing steps.
func setLaterModTime(f *os.File, tmp string, cur fs.FileInfo) (fs.FileInfo, error) {
	for _, step := range []time.Duration{time.Nanosecond, time.Microsecond, time.Millisecond, time.Second, 2 * time.Second} {
		t := time.Now()
		if cur != nil && !t.After(cur.ModTime()) {
			t = cur.ModTime().Add(step)
		}
		if err := os.Chtimes(tmp, t, t); err != nil {
			return nil, err
		}
		fi, err := f.Stat()
		if err != nil {
			return nil, err
		}
		if cur == nil || fi.ModTime().After(cur.ModTime()) {
			return fi, nil
		}
	}
	return nil, errors.New("file system does not keep a later modification time")
}

func (d *localBackend) Delete(ctx context.Context, key string) error {
	p := d.path(key)
	unlock, err := lockFolder(ctx, d.root)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // no folder, no object
		}
		return err
	}
	defer unlock()
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return localfile.SyncDir(filepath.Dir(p))
}

// isOrphanTemp reports whether the file name in folder dir is a temporary
// file of a write: this version's suffix, or the earlier .<name>.<digits>.tmp
// (os.CreateTemp's) next to the object <name> it was for, so that an
// unrelated file is never taken for one.
func isOrphanTemp(dir, name string) bool {
	if localfile.IsTemp(name) {
		return true
	}
	rest, ok := strings.CutSuffix(name, ".tmp")
	if !ok || !strings.HasPrefix(rest, ".") {
		return false
	}
	i := strings.LastIndexByte(rest, '.')
	digits := rest[i+1:]
	if i <= 1 || digits == "" || strings.Trim(digits, "0123456789") != "" {
		return false
	}
	_, err := os.Lstat(filepath.Join(dir, rest[1:i]))
	return err == nil
}

// RemoveOrphanTemps removes the temporary files that writes killed midway
// left under the Store's root, once they are an hour old; nothing reads
// them. Only local folders have them: elsewhere it does nothing. Call it on
// a state location, never on a source (it walks the whole folder).
func (s *Store) RemoveOrphanTemps(ctx context.Context) error {
	d, ok := s.b.(*localBackend)
	if !ok {
		return nil
	}
	if err := removeOrphanTemps(ctx, d.root, time.Now().Add(-orphanTempAge)); err != nil {
		return fmt.Errorf("clean %s: %w", d.root, err)
	}
	return nil
}

func removeOrphanTemps(ctx context.Context, dir string, cutoff time.Time) error {
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.IsDir() || !e.Type().IsRegular() || !isOrphanTemp(filepath.Dir(p), e.Name()) {
			return nil
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // renamed or removed meanwhile
		}
		if err != nil {
			return err
		}
		if fi.ModTime().Before(cutoff) {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// lockFolder takes the lock of the folder root (see lock_unix.go), polling
// so that ctx can end the wait, and gives up after lockWait: a holder that
// long is stuck (a lock is held for a rename and two fsyncs).
func lockFolder(ctx context.Context, root string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(root, lockName), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeoutCause(ctx, lockWait,
		fmt.Errorf("lock %s: held by another process for %s (%w)", f.Name(), lockWait, context.DeadlineExceeded))
	defer cancel()
	if err := context.Cause(ctx); err != nil {
		f.Close()
		return nil, err
	}
	wait := time.Millisecond
	for {
		ok, err := tryLock(f)
		if ok {
			return func() { f.Close() }, nil // closing the descriptor releases the lock
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, context.Cause(ctx)
		case <-t.C:
		}
		wait = min(2*wait, 20*time.Millisecond)
	}
}

// localErr drops the path an *fs.PathError repeats (the Store names the
// object) and maps a missing file to ErrNotFound.
func localErr(err error) error {
	if err == nil {
		return nil
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	if isLoop(err) {
		return fmt.Errorf("symlink loop: %w", err)
	}
	return err
}
