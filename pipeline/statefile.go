package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"cloud.google.com/go/storage"

	"github.com/convertro-etl/convertro-etl/internal/gcscall"
)

// FileStateStore is the optional extra of the built-in stores for state
// objects too big to hold in memory (an audience snapshot of millions of
// rows): they move between the store and a local file by streaming.
type FileStateStore interface {
	StateStore
	// ReadFile copies the object to the local file path (replacing it) and
	// returns the object's generation; ErrStateNotFound if absent.
	ReadFile(ctx context.Context, name, path string) (gen int64, err error)
	// WriteFile stores the local file path as the object, with Write's
	// all-or-nothing replacement and ifGen precondition.
	WriteFile(ctx context.Context, name, path string, ifGen int64) (gen int64, err error)
}

var (
	_ FileStateStore = (*dirStore)(nil)
	_ FileStateStore = (*gcsStore)(nil)
)

func (d *dirStore) ReadFile(ctx context.Context, name, dst string) (int64, error) {
	p := d.URI(name)
	if err := checkName(name); err != nil {
		return 0, fmt.Errorf("read %s: %w", p, err)
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("read %s: %w", p, err)
	}
	src, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("read %s: %w", p, ErrStateNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", p, err)
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", p, err)
	}
	if err := copyToFile(dst, src); err != nil {
		return 0, fmt.Errorf("read %s: %w", p, err)
	}
	return fileGen(fi), nil
}

func (d *dirStore) WriteFile(ctx context.Context, name, src string, ifGen int64) (int64, error) {
	p := d.URI(name)
	gen, err := d.writeFile(ctx, name, p, src, ifGen)
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", p, err)
	}
	return gen, nil
}

// writeFile is write with the bytes streamed from the local file src.
func (d *dirStore) writeFile(ctx context.Context, name, p, src string, ifGen int64) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	return d.write(ctx, name, p, in, ifGen)
}

func (g *gcsStore) ReadFile(ctx context.Context, name, dst string) (int64, error) {
	uri := g.URI(name)
	if err := checkName(name); err != nil {
		return 0, fmt.Errorf("read %s: %w", uri, err)
	}
	// Any size: the read ends only when the bytes stop coming.
	ctx, touch, stop := gcscall.Watchdog(ctx, gcscall.StallTimeout)
	defer stop()
	r, err := g.bucket.Object(g.key(name)).NewReader(ctx)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", uri, gcsKind(ctx, err))
	}
	defer r.Close()
	if err := copyToFile(dst, gcscall.TouchReader{R: r, Touch: touch}); err != nil {
		return 0, fmt.Errorf("read %s: %w", uri, gcsKind(ctx, err))
	}
	return r.Attrs.Generation, nil
}

func (g *gcsStore) WriteFile(ctx context.Context, name, src string, ifGen int64) (int64, error) {
	uri := g.URI(name)
	gen, err := g.writeFile(ctx, name, src, ifGen)
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", uri, err)
	}
	return gen, nil
}

func (g *gcsStore) writeFile(ctx context.Context, name, src string, ifGen int64) (int64, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	if err := checkIfGen(ifGen); err != nil {
		return 0, err
	}
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	obj := g.bucket.Object(g.key(name))
	switch {
	case ifGen == IfAbsent:
		obj = obj.If(storage.Conditions{DoesNotExist: true})
	case ifGen > 0:
		obj = obj.If(storage.Conditions{GenerationMatch: ifGen})
	}
	// Returning before Close cancels ctx, which aborts the (resumable)
	// upload: nothing half-written lands. The upload ends when the writer
	// stops taking bytes for gcscall.StallTimeout; the client retries a
	// chunk that meets a transient error when the write is conditional.
	ctx, touch, stop := gcscall.Watchdog(ctx, gcscall.StallTimeout)
	defer stop()
	w := obj.NewWriter(ctx)
	if _, err := io.Copy(w, gcscall.TouchReader{R: in, Touch: touch}); err != nil {
		return 0, gcsKind(ctx, err)
	}
	if err := w.Close(); err != nil {
		return 0, gcsKind(ctx, err)
	}
	return w.Attrs().Generation, nil
}

// copyToFile writes r to path through a temporary file renamed into place.
func copyToFile(path string, r io.Reader) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
