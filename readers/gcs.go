package readers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/convertro-etl/convertro-etl/internal/gcscall"
)

// NewGCSClient creates the GCS client a process shares among its sources.
// Credentials come from the environment as for every Google Cloud tool
// (Application Default Credentials); STORAGE_EMULATOR_HOST, when set, points
// the client at an emulator without credentials. Reads use the JSON API, the
// same API as listing and metadata, which emulators serve on any host name.
// The client's own retries of a transient error stop after 20 s; opts (an
// endpoint, credentials) come after the defaults.
func NewGCSClient(ctx context.Context, opts ...option.ClientOption) (*storage.Client, error) {
	return gcscall.NewClient(ctx, opts...)
}

// gcsDriver serves a GCS prefix, or a single GCS object.
type gcsDriver struct {
	bucket     *storage.BucketHandle
	bucketName string
	base       string // the object name prefix keys are relative to: "" or ends with "/"
	single     string // the key of the single object, or "" for a prefix
}

var _ driver = (*gcsDriver)(nil)

// newGCSDriver decides whether prefix names one object (one metadata
// request) or a folder.
func newGCSDriver(ctx context.Context, c *storage.Client, bucket, prefix string) (*gcsDriver, error) {
	g := &gcsDriver{bucket: c.Bucket(bucket), bucketName: bucket, base: prefix}
	if prefix == "" || strings.HasSuffix(prefix, "/") {
		return g, nil
	}
	cctx, cancel := gcscall.WithTimeout(ctx, gcscall.CallTimeout)
	defer cancel()
	_, err := g.bucket.Object(prefix).Attrs(cctx)
	switch {
	case err == nil:
		g.base, g.single = prefix[:strings.LastIndexByte(prefix, '/')+1], path.Base(prefix)
	case errors.Is(err, storage.ErrObjectNotExist) || errors.Is(err, storage.ErrBucketNotExist):
		g.base = prefix + "/"
	default:
		return nil, gcsErr(cctx, err)
	}
	return g, nil
}

func (g *gcsDriver) uri(key string) string  { return "gs://" + g.bucketName + "/" + g.base + key }
func (g *gcsDriver) name(key string) string { return g.base + key }

// list reads the listing page by page; it ends if no page arrives for
// gcscall.StallTimeout, however long the whole listing takes.
func (g *gcsDriver) list(ctx context.Context, seen func()) ([]entry, error) {
	if g.single != "" {
		e, err := g.stat(ctx, g.single)
		if err != nil {
			return nil, err
		}
		seen()
		return []entry{e}, nil
	}
	q := &storage.Query{Prefix: g.base}
	if err := q.SetAttrSelection([]string{"Name", "Size", "Generation"}); err != nil {
		return nil, err
	}
	wctx, touch, stop := gcscall.Watchdog(ctx, gcscall.StallTimeout)
	defer stop()
	var out []entry
	it := g.bucket.Objects(wctx, q)
	for {
		a, err := it.Next()
		if err == iterator.Done {
			return out, nil
		}
		if err != nil {
			return nil, gcsErr(wctx, err)
		}
		touch()
		seen()
		out = append(out, entry{key: strings.TrimPrefix(a.Name, g.base), size: a.Size, gen: a.Generation})
	}
}

func (g *gcsDriver) stat(ctx context.Context, key string) (entry, error) {
	ctx, cancel := gcscall.WithTimeout(ctx, gcscall.CallTimeout)
	defer cancel()
	a, err := g.bucket.Object(g.base + key).Attrs(ctx)
	if err != nil {
		return entry{}, gcsErr(ctx, err)
	}
	return entry{key: key, size: a.Size, gen: a.Generation}, nil
}

// open pins gen, or the current generation when gen is 0, so that every
// ranged read of the File sees the same bytes.
func (g *gcsDriver) open(ctx context.Context, key string, gen int64) (blob, entry, error) {
	if key == "" {
		return nil, entry{}, errors.New("empty key")
	}
	obj := g.bucket.Object(g.base + key)
	if gen != 0 {
		obj = obj.Generation(gen)
	}
	actx, cancel := gcscall.WithTimeout(ctx, gcscall.CallTimeout)
	defer cancel()
	a, err := obj.Attrs(actx)
	if err != nil {
		return nil, entry{}, gcsErr(actx, err)
	}
	e := entry{key: key, size: a.Size, gen: a.Generation}
	return &gcsBlob{ctx: ctx, obj: obj.Generation(a.Generation), size: e.size, gen: e.gen}, e, nil
}

// gcsBlob reads one generation by ranges: one ranged GET per readAt. The
// Parquet reader above decides how much to ask for at a time.
type gcsBlob struct {
	ctx       context.Context // the Open context: io.ReaderAt has no ctx slot
	obj       *storage.ObjectHandle
	size, gen int64
}

// readAt ends if the range stops arriving for gcscall.StallTimeout; the
// client retries a transient failure of the request (for 20 s at most).
func (b *gcsBlob) readAt(p []byte, off int64) (int, error) {
	ctx, touch, stop := gcscall.Watchdog(b.ctx, gcscall.StallTimeout)
	defer stop()
	r, err := b.obj.NewRangeReader(ctx, off, int64(len(p)))
	if err != nil {
		return 0, gcsErr(ctx, err)
	}
	defer r.Close()
	n, err := io.ReadFull(gcscall.TouchReader{R: r, Touch: touch}, p)
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil // short: Source reports ErrChanged
	}
	return n, gcsErr(ctx, err)
}

// version is the pinned generation: it cannot change under the handle.
func (b *gcsBlob) version() (int64, int64, error) { return b.size, b.gen, nil }

func (b *gcsBlob) close() error { return nil }

// gcsErr maps the client's not-found errors to ErrNotFound, and a server
// that cannot be reached to a *gcscall.UnreachableError naming it. ctx is
// the call's, whose cause says why it ended.
func gcsErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, storage.ErrObjectNotExist) || errors.Is(err, storage.ErrBucketNotExist) {
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	return gcscall.Explain(ctx, err)
}
