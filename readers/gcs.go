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
)

// NewGCSClient creates the GCS client a process shares among its sources.
// Credentials come from the environment as for every Google Cloud tool
// (Application Default Credentials); STORAGE_EMULATOR_HOST, when set, points
// the client at an emulator without credentials. Reads use the JSON API, the
// same API as listing and metadata, which emulators serve on any host name.
func NewGCSClient(ctx context.Context) (*storage.Client, error) {
	c, err := storage.NewClient(ctx, storage.WithJSONReads())
	if err != nil {
		return nil, fmt.Errorf("create GCS client: %w", err)
	}
	return c, nil
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
	_, err := g.bucket.Object(prefix).Attrs(ctx)
	switch {
	case err == nil:
		g.base, g.single = prefix[:strings.LastIndexByte(prefix, '/')+1], path.Base(prefix)
	case errors.Is(err, storage.ErrObjectNotExist) || errors.Is(err, storage.ErrBucketNotExist):
		g.base = prefix + "/"
	default:
		return nil, gcsErr(err)
	}
	return g, nil
}

func (g *gcsDriver) uri(key string) string  { return "gs://" + g.bucketName + "/" + g.base + key }
func (g *gcsDriver) name(key string) string { return g.base + key }

func (g *gcsDriver) list(ctx context.Context) ([]entry, error) {
	if g.single != "" {
		e, err := g.stat(ctx, g.single)
		if err != nil {
			return nil, err
		}
		return []entry{e}, nil
	}
	q := &storage.Query{Prefix: g.base}
	if err := q.SetAttrSelection([]string{"Name", "Size", "Generation"}); err != nil {
		return nil, err
	}
	var out []entry
	it := g.bucket.Objects(ctx, q)
	for {
		a, err := it.Next()
		if err == iterator.Done {
			return out, nil
		}
		if err != nil {
			return nil, gcsErr(err)
		}
		out = append(out, entry{key: strings.TrimPrefix(a.Name, g.base), size: a.Size, gen: a.Generation})
	}
}

func (g *gcsDriver) stat(ctx context.Context, key string) (entry, error) {
	a, err := g.bucket.Object(g.base + key).Attrs(ctx)
	if err != nil {
		return entry{}, gcsErr(err)
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
	a, err := obj.Attrs(ctx)
	if err != nil {
		return nil, entry{}, gcsErr(err)
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

func (b *gcsBlob) readAt(p []byte, off int64) (int, error) {
	r, err := b.obj.NewRangeReader(b.ctx, off, int64(len(p)))
	if err != nil {
		return 0, gcsErr(err)
	}
	defer r.Close()
	n, err := io.ReadFull(r, p)
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil // short: Source reports ErrChanged
	}
	return n, gcsErr(err)
}

// version is the pinned generation: it cannot change under the handle.
func (b *gcsBlob) version() (int64, int64, error) { return b.size, b.gen, nil }

func (b *gcsBlob) close() error { return nil }

// gcsErr maps the client's not-found errors to ErrNotFound.
func gcsErr(err error) error {
	if errors.Is(err, storage.ErrObjectNotExist) || errors.Is(err, storage.ErrBucketNotExist) {
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	return err
}
