package readers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// SkipNotRegular: a local entry that is neither a file nor a folder (a
// broken symlink, a socket, a device).
const SkipNotRegular = "not a regular file"

// dirDriver serves a local folder, or a single local file.
type dirDriver struct {
	root   string // as given, cleaned
	base   string // the folder keys are relative to: root, or root's parent for a single file
	single string // the key of the single file, or "" for a folder
}

var _ driver = (*dirDriver)(nil)

func newDirDriver(root string) *dirDriver {
	root = filepath.Clean(root)
	d := &dirDriver{root: root, base: root}
	// A file named by the source is listed alone, and so is a symlink
	// loop. A missing path is a folder here and ErrNotFound when listed.
	if fi, err := os.Stat(root); (err == nil && !fi.IsDir()) || isLoop(err) {
		d.base, d.single = filepath.Dir(root), filepath.Base(root)
	}
	return d
}

func (d *dirDriver) path(key string) string { return filepath.Join(d.base, filepath.FromSlash(key)) }
func (d *dirDriver) uri(key string) string  { return d.path(key) }
func (d *dirDriver) name(key string) string { return filepath.ToSlash(d.path(key)) }

func (d *dirDriver) list(ctx context.Context, seen func()) ([]entry, error) {
	if d.single != "" {
		e, err := d.stat(ctx, d.single)
		if isLoop(err) {
			return []entry{{key: d.single, loop: true}}, nil
		}
		if err != nil {
			return nil, err
		}
		seen()
		return []entry{e}, nil
	}
	var out []entry
	start := d.root
	if fi, err := os.Stat(d.root); err == nil && fi.IsDir() {
		start += string(filepath.Separator) // walk into a root that is a symlink to a folder
	}
	err := filepath.WalkDir(start, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if de.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(d.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		seen()
		fi, err := os.Stat(p) // follows symlinks
		switch {
		case err != nil && errors.Is(err, fs.ErrNotExist):
			out = append(out, entry{key: key, skip: SkipNotRegular}) // broken symlink
		case isLoop(err):
			// Listed as data, so that opening it fails as a bad file:
			// set aside under --on-bad-file skip, named when it fails.
			out = append(out, entry{key: key, loop: true})
		case err != nil:
			return err
		case fi.IsDir():
			out = append(out, entry{key: key, skip: SkipSymlinkedDir})
		case !fi.Mode().IsRegular():
			out = append(out, entry{key: key, skip: SkipNotRegular})
		default:
			out = append(out, entry{key: key, size: fi.Size(), gen: fi.ModTime().UnixNano()})
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	return out, err // a walk error names its path
}

func (d *dirDriver) stat(_ context.Context, key string) (entry, error) {
	if !filepath.IsLocal(filepath.FromSlash(key)) {
		return entry{}, fmt.Errorf("key %q is not a path inside the source", key)
	}
	fi, err := os.Stat(d.path(key))
	if err != nil {
		return entry{}, dirErr(err)
	}
	if !fi.Mode().IsRegular() {
		return entry{}, errors.New("not a regular file")
	}
	return entry{key: key, size: fi.Size(), gen: fi.ModTime().UnixNano()}, nil
}

// open cannot pin a local version; Source compares the version opened
// with the listed one, and every read re-checks it.
func (d *dirDriver) open(_ context.Context, key string, _ int64) (blob, entry, error) {
	if !filepath.IsLocal(filepath.FromSlash(key)) {
		return nil, entry{}, fmt.Errorf("key %q is not a path inside the source", key)
	}
	f, err := os.Open(d.path(key))
	if err != nil {
		return nil, entry{}, dirErr(err)
	}
	b := &dirBlob{f: f}
	size, gen, err := b.version()
	if err != nil {
		f.Close()
		return nil, entry{}, err
	}
	return b, entry{key: key, size: size, gen: gen}, nil
}

type dirBlob struct{ f *os.File }

func (b *dirBlob) readAt(p []byte, off int64) (int, error) {
	n, err := b.f.ReadAt(p, off)
	if err == io.EOF {
		err = nil // shorter than listed: Source reports ErrChanged
	}
	return n, dirErr(err)
}

// version costs one fstat per read: cheap next to the read itself, and it
// catches a file rewritten in place while it is read.
func (b *dirBlob) version() (int64, int64, error) {
	fi, err := b.f.Stat()
	if err != nil {
		return 0, 0, dirErr(err)
	}
	if !fi.Mode().IsRegular() {
		return 0, 0, errors.New("not a regular file")
	}
	return fi.Size(), fi.ModTime().UnixNano(), nil
}

func (b *dirBlob) close() error { return dirErr(b.f.Close()) }

// isLoop reports a symlink loop (ELOOP: too many levels of symbolic links).
func isLoop(err error) bool { return errors.Is(err, syscall.ELOOP) }

// dirErr drops the path an *fs.PathError repeats (Source names the object)
// and maps a missing file to ErrNotFound.
func dirErr(err error) error {
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
		return fmt.Errorf("%w: symlink loop: %w", ErrBadFile, err)
	}
	return err
}
