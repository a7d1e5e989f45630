package objstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"

	"cloud.google.com/go/auth"
	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// gs://bucket/prefix: Google Cloud Storage through its Go client, the JSON
// API. Versions are object generations, and conditional writes use
// ifGenerationMatch (0 for absent), which GCS checks atomically.
func init() { Register("gs", openGCS) }

// gcsClient is the process's one GCS client, made on first use.
var gcsClient = sync.OnceValues(func() (*storage.Client, error) {
	return newGCSClient(context.Background())
})

// newGCSClient creates a GCS client whose own retries are bounded (RetryFor,
// with backoff) and that reads through the JSON API, which the emulators
// behind STORAGE_EMULATOR_HOST serve as well (their XML read path answered
// "not found" for objects that existed). Credentials are Application
// Default Credentials; STORAGE_EMULATOR_HOST, when set, points the client at
// an emulator without credentials.
func newGCSClient(ctx context.Context, opts ...option.ClientOption) (*storage.Client, error) {
	c, err := storage.NewClient(ctx, append([]option.ClientOption{storage.WithJSONReads()}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("create GCS client: %w", gcsExplain(ctx, err))
	}
	c.SetRetry(storage.WithBackoff(backoff), storage.WithMaxRetryDuration(RetryFor))
	if emulator := os.Getenv("STORAGE_EMULATOR_HOST"); emulator != "" {
		if err := probe(ctx, emulator, "GCS emulator (STORAGE_EMULATOR_HOST)", gcsEmulatorFix()); err != nil {
			c.Close()
			return nil, fmt.Errorf("create GCS client: %w", err)
		}
	}
	return c, nil
}

// NewGCSClient makes a GCS client as the process's own is made (bounded
// retries, JSON reads), with opts after the defaults: for a test that
// serves a bucket through a proxy (see RouteGCSBucket).
func NewGCSClient(ctx context.Context, opts ...option.ClientOption) (*storage.Client, error) {
	return newGCSClient(ctx, opts...)
}

func gcsEmulatorFix() string {
	return "start the emulator, or correct STORAGE_EMULATOR_HOST" + currentValue("STORAGE_EMULATOR_HOST") +
		" (unset it to use Google Cloud Storage)"
}

type gcsBackend struct {
	bucket *storage.BucketHandle
	name   string // the bucket's name
	prefix string // "" or ends with "/"
}

func openGCS(ctx context.Context, loc Location) (Backend, error) {
	var c *storage.Client
	if routed, ok := gcsRoutes.Load(loc.Bucket); ok {
		c = routed.(*storage.Client)
	} else {
		var err error
		if c, err = gcsClient(); err != nil {
			return nil, err
		}
	}
	return &gcsBackend{bucket: c.Bucket(loc.Bucket), name: loc.Bucket, prefix: folder(loc.Path)}, nil
}

// folder makes a remote prefix name a folder: "" or ending in "/".
func folder(p string) string {
	p = strings.TrimLeft(p, "/")
	if p != "" && !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return p
}

func (g *gcsBackend) URI(key string) string  { return "gs://" + g.name + "/" + g.prefix + key }
func (g *gcsBackend) Name(key string) string { return g.prefix + key }

func (g *gcsBackend) As(target any) bool {
	switch t := target.(type) {
	case **storage.Client:
		c, err := gcsClient()
		*t = c
		return err == nil
	case **storage.BucketHandle:
		*t = g.bucket
		return true
	}
	return false
}

// List reads the listing page by page; it ends if no page arrives for
// StallTimeout, however long the whole listing takes.
func (g *gcsBackend) List(ctx context.Context, prefix string, fn func(Attrs) error) error {
	q := &storage.Query{Prefix: g.prefix + prefix}
	if err := q.SetAttrSelection([]string{"Name", "Size", "Generation"}); err != nil {
		return err
	}
	wctx, touch, stop := Watchdog(ctx, StallTimeout)
	defer stop()
	it := g.bucket.Objects(wctx, q)
	it.PageInfo().MaxSize = int(ListPageSize.Load())
	for {
		a, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return nil
		}
		if err != nil {
			return gcsErr(wctx, err)
		}
		touch()
		if err := fn(Attrs{Key: strings.TrimPrefix(a.Name, g.prefix), Size: a.Size, Version: gcsVersion(a.Generation)}); err != nil {
			return err
		}
	}
}

func gcsVersion(gen int64) string { return strconv.FormatInt(gen, 10) }

func (g *gcsBackend) Stat(ctx context.Context, key string) (Attrs, error) {
	ctx, cancel := WithTimeout(ctx, CallTimeout)
	defer cancel()
	a, err := g.bucket.Object(g.prefix + key).Attrs(ctx)
	if err != nil {
		return Attrs{}, gcsErr(ctx, err)
	}
	return Attrs{Key: key, Size: a.Size, Version: gcsVersion(a.Generation)}, nil
}

// Open pins version, or the current generation when version is "", so that
// every ranged read sees the same bytes: one metadata request.
func (g *gcsBackend) Open(ctx context.Context, key, version string) (Reader, Attrs, error) {
	if key == "" {
		return nil, Attrs{}, errors.New("empty key")
	}
	obj := g.bucket.Object(g.prefix + key)
	if version != "" {
		gen, err := strconv.ParseInt(version, 10, 64)
		if err != nil {
			return nil, Attrs{}, fmt.Errorf("%w: version %q is not a GCS generation", ErrNotFound, version)
		}
		obj = obj.Generation(gen)
	}
	actx, cancel := WithTimeout(ctx, CallTimeout)
	defer cancel()
	a, err := obj.Attrs(actx)
	if err != nil {
		return nil, Attrs{}, gcsErr(actx, err)
	}
	at := Attrs{Key: key, Size: a.Size, Version: gcsVersion(a.Generation)}
	return &gcsReader{ctx: ctx, obj: obj.Generation(a.Generation), size: a.Size, version: at.Version}, at, nil
}

// OpenListed pins the listed generation with no request.
func (g *gcsBackend) OpenListed(ctx context.Context, key string, a Attrs) (Reader, error) {
	gen, err := strconv.ParseInt(a.Version, 10, 64)
	if err != nil || gen <= 0 { // the client reads the latest for these
		return nil, fmt.Errorf("%w: version %q is not a GCS generation", ErrNotFound, a.Version)
	}
	obj := g.bucket.Object(g.prefix + key).Generation(gen)
	return &gcsReader{ctx: ctx, obj: obj, size: a.Size, version: a.Version}, nil
}

// gcsReader reads one generation by ranges: one ranged GET per ReadAt.
type gcsReader struct {
	ctx     context.Context // the Open context: io.ReaderAt has no ctx slot
	obj     *storage.ObjectHandle
	size    int64
	version string
}

// ReadAt ends if the range stops arriving for StallTimeout; the client
// retries a transient failure of the request (for RetryFor at most).
func (r *gcsReader) ReadAt(p []byte, off int64) (int, error) {
	ctx, touch, stop := Watchdog(r.ctx, StallTimeout)
	defer stop()
	rr, err := r.obj.NewRangeReader(ctx, off, int64(len(p)))
	if err != nil {
		return 0, gcsErr(ctx, err)
	}
	defer rr.Close()
	n, err := io.ReadFull(TouchReader{R: rr, Touch: touch}, p)
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil // short: the caller reports a change
	}
	return n, gcsErr(ctx, err)
}

// Version is the pinned generation: it cannot change under the reader.
func (r *gcsReader) Version() (int64, string, error) { return r.size, r.version, nil }
func (r *gcsReader) Close() error                    { return nil }

// Get reads the whole object; it ends if the bytes stop coming for
// StallTimeout, whatever the object's size.
func (g *gcsBackend) Get(ctx context.Context, key string, w io.Writer) (string, error) {
	ctx, touch, stop := Watchdog(ctx, StallTimeout)
	defer stop()
	r, err := g.bucket.Object(g.prefix + key).NewReader(ctx)
	if err != nil {
		return "", gcsErr(ctx, err)
	}
	defer r.Close()
	if _, err := io.Copy(w, TouchReader{R: r, Touch: touch}); err != nil {
		return "", gcsErr(ctx, err)
	}
	return gcsVersion(r.Attrs.Generation), nil
}

// Put uploads in one request up to 16 MiB (the default chunk), resumably
// beyond. Returning before Close cancels the upload's context, which aborts
// it: nothing half-written lands.
func (g *gcsBackend) Put(ctx context.Context, key string, r io.Reader, size int64, pre Precondition) (string, error) {
	obj := g.bucket.Object(g.prefix + key)
	switch {
	case pre.Absent():
		obj = obj.If(storage.Conditions{DoesNotExist: true})
	case !pre.Any():
		gen, err := strconv.ParseInt(pre.Version(), 10, 64)
		if err != nil || gen <= 0 {
			return "", fmt.Errorf("%w: version %q is not a GCS generation", ErrPrecondition, pre.Version())
		}
		obj = obj.If(storage.Conditions{GenerationMatch: gen})
	}
	ctx, touch, stop := Watchdog(ctx, StallTimeout)
	defer stop()
	w := obj.NewWriter(ctx)
	if size <= 16<<20 {
		// Small objects: one request, with a checksum GCS verifies.
		data, err := io.ReadAll(r)
		if err != nil {
			return "", err
		}
		w.ChunkSize = 0
		w.CRC32C = crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli))
		w.SendCRC32C = true
		r = bytes.NewReader(data)
	}
	if strings.HasSuffix(key, ".json") {
		w.ContentType = "application/json"
	}
	if _, err := io.Copy(w, TouchReader{R: r, Touch: touch}); err != nil {
		return "", gcsErr(ctx, err)
	}
	if err := w.Close(); err != nil {
		return "", gcsErr(ctx, err)
	}
	return gcsVersion(w.Attrs().Generation), nil
}

func (g *gcsBackend) Delete(ctx context.Context, key string) error {
	ctx, cancel := WithTimeout(ctx, CallTimeout)
	defer cancel()
	return gcsErr(ctx, g.bucket.Object(g.prefix+key).Delete(ctx))
}

// gcsErr maps the client's errors to the kinds, keeping the original in the
// chain; a server that cannot be reached becomes an *UnreachableError that
// names it. ctx is the call's, whose cause says why it ended.
func gcsErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, storage.ErrObjectNotExist) || errors.Is(err, storage.ErrBucketNotExist) {
		return fmt.Errorf("%w (%w)", ErrNotFound, err)
	}
	var gerr *googleapi.Error
	if errors.As(err, &gerr) {
		switch {
		case gerr.Code == 412:
			return fmt.Errorf("%w (%w)", ErrPrecondition, err)
		case gerr.Code == 404:
			return fmt.Errorf("%w (%w)", ErrNotFound, err)
		case statusTransient(gerr.Code):
			return Transient(err)
		}
	}
	// The gRPC transport reports a failed precondition as a status code.
	if s, ok := status.FromError(err); ok && s.Code() == codes.FailedPrecondition {
		return fmt.Errorf("%w (%w)", ErrPrecondition, err)
	}
	return gcsExplain(ctx, err)
}

// gcsExplain names the server a failed call could not reach and what fixes
// it; a token server that answered with a refusal is not unreachable, and
// gets what to run to renew the credentials.
func gcsExplain(ctx context.Context, err error) error {
	var ae *auth.Error
	if errors.As(err, &ae) {
		return fmt.Errorf("%w; check GOOGLE_APPLICATION_CREDENTIALS%s or run `gcloud auth application-default login`",
			err, currentValue("GOOGLE_APPLICATION_CREDENTIALS"))
	}
	return explainUnreachable(ctx, err, func(u *url.URL) (string, string) {
		emulator := os.Getenv("STORAGE_EMULATOR_HOST")
		switch {
		case emulator != "" && u.Host == hostOf(emulator):
			return "GCS emulator (STORAGE_EMULATOR_HOST)", gcsEmulatorFix()
		case gcsAPIPath(u.Path):
			return "GCS endpoint", "check the network path to it (proxy, firewall, DNS); STORAGE_EMULATOR_HOST, when set, replaces it"
		}
		return "credentials token server", "check GOOGLE_APPLICATION_CREDENTIALS" + currentValue("GOOGLE_APPLICATION_CREDENTIALS") +
			" and its token_uri, or run `gcloud auth application-default login`"
	})
}

// gcsAPIPath reports whether p is a path of the GCS JSON or XML API.
func gcsAPIPath(p string) bool {
	for _, prefix := range []string{"/storage/v1/", "/upload/storage/v1/", "/download/storage/v1/", "/b/"} {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

func hostOf(endpoint string) string {
	if u, err := url.Parse(endpoint); err == nil && u.Host != "" {
		return u.Host
	}
	return endpoint
}

// gcsRoutes maps bucket names to the clients that serve them instead of the
// process's client: a test serves its bucket from an in-process server, or
// through a proxy that injects faults, while other tests run beside it.
var gcsRoutes sync.Map // bucket name → *storage.Client

// RouteGCSBucket makes gs://bucket/... locations opened from now on use c;
// restore undoes it. For tests.
func RouteGCSBucket(bucket string, c *storage.Client) (restore func()) {
	gcsRoutes.Store(bucket, c)
	return func() { gcsRoutes.Delete(bucket) }
}
