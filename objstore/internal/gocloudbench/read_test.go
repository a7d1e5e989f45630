package gocloudbench

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"cloud.google.com/go/storage"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	azblobblob "github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"gocloud.dev/blob"
	_ "gocloud.dev/blob/azureblob"
	_ "gocloud.dev/blob/fileblob"
	"gocloud.dev/blob/gcsblob"
	_ "gocloud.dev/blob/s3blob"
	"gocloud.dev/gcp"
	"google.golang.org/api/option"

	"github.com/convertro-etl/convertro-etl/objstore"
	"github.com/convertro-etl/convertro-etl/objstore/objstoretest"
)

func TestMain(m *testing.M) {
	// objstoretest looks for .emulators beside the nearest go.mod, which is
	// this module's: point it at the repository root's unless told.
	if os.Getenv(objstoretest.EmulatorsEnv) == "" {
		dir, err := filepath.Abs(filepath.Join("..", "..", "..", ".emulators"))
		if err == nil {
			err = os.Setenv(objstoretest.EmulatorsEnv, dir)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	code := objstoretest.Main(m)
	for _, dir := range localDirs {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

const (
	// objectSize is the one object each backend holds: a large Parquet
	// export file.
	objectSize = 30 << 20
	objectKey  = "bench/object.bin"
	// readSize is the decoder's read size (readers.readBufferSize): a tail
	// read and every piece of a column chunk.
	readSize = 256 << 10
)

// target is one backend holding the object, opened both ways.
type target struct {
	name    string
	store   *objstore.Store
	bucket  *blob.Bucket
	traffic *objstoretest.Traffic // nil for local disk
	rawGCS  string                // GCS only: the object's JSON media URL, for the plain HTTP floor
}

var (
	targetsMu sync.Mutex
	targets   = map[string]*target{}
	localDirs []string
	content   = sync.OnceValue(func() []byte {
		// Incompressible and the same in every run.
		data := make([]byte, objectSize)
		r := rand.NewChaCha8([32]byte{'c', 'o', 'n', 'v', 'e', 'r', 't', 'r', 'o'})
		r.Read(data)
		return data
	})
)

// locate makes a new, empty bucket (or folder) of backend and returns its
// objstore root and how gocloud opens the same bucket.
func locate(tb testing.TB, backend string) (root string, open func(context.Context) (*blob.Bucket, error)) {
	tb.Helper()
	var gocloudURL string
	open = func(ctx context.Context) (*blob.Bucket, error) { return blob.OpenBucket(ctx, gocloudURL) }
	switch backend {
	case "local":
		dir, err := os.MkdirTemp("", "gocloudbench-")
		if err != nil {
			tb.Fatal(err)
		}
		localDirs = append(localDirs, dir)
		root, gocloudURL = dir, "file://"+filepath.ToSlash(dir)
	case "gcs":
		// STORAGE_EMULATOR_HOST, which objstoretest.GCS sets, is all
		// gcsblob's URL opener needs to reach the emulator (it then makes
		// an unauthenticated client for that host). But that client reads
		// through the XML API, whose path fake-gcs-server answers "object
		// doesn't exist" (objstore reads through the JSON API for the same
		// reason), and no URL parameter changes it: open the bucket in
		// code, with the JSON reads objstore uses.
		root = objstoretest.GCS(tb)
		bucket := strings.TrimPrefix(root, "gs://")
		open = func(ctx context.Context) (*blob.Bucket, error) {
			return gcsblob.OpenBucket(ctx, gcp.NewAnonymousHTTPClient(gcp.DefaultTransport()), bucket,
				&gcsblob.Options{ClientOptions: []option.ClientOption{storage.WithJSONReads()}})
		}
	case "s3":
		// s3blob takes the server, its addressing and the region from the
		// URL; credentials come from the environment objstoretest.S3 sets.
		root = objstoretest.S3(tb)
		q := url.Values{
			"endpoint":       {os.Getenv("AWS_ENDPOINT_URL_S3")},
			"use_path_style": {"true"},
			"region":         {objstoretest.S3Region},
			// Without it, every ranged GET logs that the response has no
			// checksum to validate (ours turns that log off).
			"response_checksum_validation": {"when_required"},
		}
		gocloudURL = root + "?" + q.Encode()
	case "azure":
		// azureblob's scheme is azblob. With a connection string in the
		// environment it makes its client from that string, but it first
		// builds a service URL that must be valid: http is allowed only
		// with localemu=true, and then only on a loopback domain.
		root = objstoretest.Azure(tb)
		host, err := azuriteHost(os.Getenv("AZURE_STORAGE_CONNECTION_STRING"))
		if err != nil {
			tb.Fatal(err)
		}
		q := url.Values{"localemu": {"true"}, "protocol": {"http"}, "domain": {host}}
		gocloudURL = "azblob://" + strings.TrimPrefix(root, "az://") + "?" + q.Encode()
	default:
		tb.Fatalf("unknown backend %q", backend)
	}
	return root, open
}

// setup writes the object to a new bucket of backend name once per test
// binary (a -count run reuses it) and opens it through both layers.
func setup(b *testing.B, name string) *target {
	b.Helper()
	targetsMu.Lock()
	defer targetsMu.Unlock()
	if t, ok := targets[name]; ok {
		return t
	}
	ctx := context.Background()
	root, open := locate(b, name)
	st, err := objstore.Open(ctx, root)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := st.Write(ctx, objectKey, content(), objstore.Overwrite); err != nil {
		b.Fatal(err)
	}
	bk, err := open(ctx)
	if err != nil {
		b.Fatalf("gocloud open %s: %v", name, err)
	}
	t := &target{name: name, store: st, bucket: bk}
	if name != "local" {
		t.traffic = objstoretest.TrafficOf(name)
	}
	if name == "gcs" {
		t.rawGCS = "http://" + os.Getenv("STORAGE_EMULATOR_HOST") + "/storage/v1/b/" + strings.TrimPrefix(root, "gs://") +
			"/o/" + url.PathEscape(objectKey) + "?alt=media"
	}
	targets[name] = t
	return t
}

// azuriteHost is the host:port of BlobEndpoint in an Azure connection string.
func azuriteHost(conn string) (string, error) {
	for part := range strings.SplitSeq(conn, ";") {
		if v, ok := strings.CutPrefix(part, "BlobEndpoint="); ok {
			u, err := url.Parse(v)
			if err != nil {
				return "", err
			}
			return u.Host, nil
		}
	}
	return "", fmt.Errorf("no BlobEndpoint in the connection string")
}

// scattered are the offsets of the scattered reads: 4 KiB-aligned, spread
// over the whole object, the same in every run.
var scattered = sync.OnceValue(func() []int64 {
	r := rand.New(rand.NewPCG(1, 2))
	offs := make([]int64, 1024)
	for i := range offs {
		offs[i] = r.Int64N((objectSize-readSize)/4096) * 4096
	}
	return offs
})

// span is one ranged read.
type span struct{ off, n int64 }

// parquetReads is what the decoder reads of one file, in order: the 4
// magic bytes at the start, a readSize tail (which holds the footer), then
// for each row group the projected column chunks, each in readSize pieces.
// The file has 4 row groups of 16 columns of unequal sizes (about 90 KiB
// to 1.3 MiB a chunk), of which 10 are read.
var parquetReads = sync.OnceValue(func() []span {
	const rowGroups, footer = 4, 48 << 10
	weights := []int64{9, 1, 6, 3, 14, 2, 8, 1, 5, 11, 2, 4, 7, 1, 3, 6}
	projected := map[int]bool{0: true, 1: true, 2: true, 4: true, 5: true, 7: true, 8: true, 11: true, 12: true, 15: true}
	var sum int64
	for _, w := range weights {
		sum += w
	}
	spans := []span{{0, 4}, {objectSize - readSize, readSize}}
	data := int64(objectSize - footer - 8 - 4)
	off := int64(4)
	for range rowGroups {
		for c, w := range weights {
			size := data / rowGroups * w / sum
			if projected[c] {
				for p := off; p < off+size; p += readSize {
					spans = append(spans, span{p, min(readSize, off+size-p)})
				}
			}
			off += size
		}
	}
	return spans
})

func parquetBytes() int64 {
	var n int64
	for _, s := range parquetReads() {
		n += s.n
	}
	return n
}

// The two ways of reading a range, and the plain HTTP floor for GCS.

// pinned are the ReaderOptions that make gocloud's range readers read only
// the version a describes, as objstore's Reader does: a BeforeRead hook
// per driver, on its native request type. nil for local disk, which
// neither layer can pin.
func pinned(backend string, a *blob.Attributes) (*blob.ReaderOptions, error) {
	var hook func(as func(any) bool) error
	switch backend {
	case "gcs":
		var oa storage.ObjectAttrs
		if !a.As(&oa) {
			return nil, errors.New("gcsblob attributes are not storage.ObjectAttrs")
		}
		hook = func(as func(any) bool) error {
			var obj **storage.ObjectHandle
			if !as(&obj) {
				return errors.New("gcsblob offered no **storage.ObjectHandle")
			}
			*obj = (*obj).Generation(oa.Generation)
			return nil
		}
	case "s3":
		hook = func(as func(any) bool) error {
			var in *s3.GetObjectInput
			if !as(&in) {
				return errors.New("s3blob offered no *s3.GetObjectInput")
			}
			in.IfMatch = aws.String(a.ETag)
			return nil
		}
	case "azure":
		etag := azcore.ETag(a.ETag)
		hook = func(as func(any) bool) error {
			var o *azblobblob.DownloadStreamOptions
			if !as(&o) {
				return errors.New("azureblob offered no *blob.DownloadStreamOptions")
			}
			o.AccessConditions = &azblobblob.AccessConditions{ModifiedAccessConditions: &azblobblob.ModifiedAccessConditions{IfMatch: &etag}}
			return nil
		}
	default:
		return nil, nil
	}
	return &blob.ReaderOptions{BeforeRead: hook}, nil
}

// readObjstore reads as the readers package does: ReadAt, then Version,
// which is free on a pinned remote Reader and one fstat on local disk (it
// notices a file rewritten in place, which no pin can prevent there).
func readObjstore(r objstore.Reader, buf []byte, off int64) error {
	n, err := r.ReadAt(buf, off)
	if err == nil && n != len(buf) {
		err = fmt.Errorf("short read: %d of %d bytes at %d", n, len(buf), off)
	}
	if err == nil {
		_, _, err = r.Version()
	}
	return err
}

func readGocloud(ctx context.Context, bk *blob.Bucket, opts *blob.ReaderOptions, buf []byte, off int64) error {
	rr, err := bk.NewRangeReader(ctx, objectKey, off, int64(len(buf)), opts)
	if err != nil {
		return err
	}
	_, err = io.ReadFull(rr, buf)
	if cerr := rr.Close(); err == nil {
		err = cerr
	}
	return err
}

func readHTTP(ctx context.Context, c *http.Client, rawURL string, buf []byte, off int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+int64(len(buf))-1))
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent {
		return fmt.Errorf("GET %s: %s", rawURL, resp.Status)
	}
	_, err = io.ReadFull(resp.Body, buf)
	return err
}

// check fails b unless buf holds the object's bytes at off.
func check(b *testing.B, how string, buf []byte, off int64) {
	b.Helper()
	if !bytes.Equal(buf, content()[off:off+int64(len(buf))]) {
		b.Fatalf("%s: the %d bytes read at %d are not the object's", how, len(buf), off)
	}
}

// counted runs the timed loop, then reports the requests each iteration
// made through the emulator's proxy, which both layers should match.
func counted(b *testing.B, t *target, loop func()) {
	b.ReportAllocs()
	if t.traffic != nil {
		t.traffic.Reset()
	}
	b.ResetTimer()
	loop()
	b.StopTimer()
	if t.traffic != nil && b.N > 0 {
		b.ReportMetric(float64(t.traffic.Requests.Load())/float64(b.N), "req/op")
	}
}

// BenchmarkRangedRead reads the object of each backend by ranges, through
// objstore (impl=objstore) and through gocloud.dev/blob (impl=gocloud), in
// the same run; impl=http is a bare net/http GET of the same ranges from
// the GCS emulator: what any client costs at least. Compare with
//
//	benchstat -col /impl out.txt
//
// pattern=scattered is one 256 KiB read at the next of 1,024 scattered
// offsets, on one Reader opened beforehand (objstore) or one range reader
// per read (gocloud, which has no other way). pattern=parquet is one
// whole file as the decoder reads it: the object's size (Store.Open, or
// Bucket.Attributes), the magic bytes, the tail, then the projected column
// chunks in 256 KiB pieces. MB/s counts the bytes read; req/op the
// requests the emulator served. Plain gocloud reads are not pinned to
// the version opened, ours are (a generation on GCS, If-Match on S3 and
// Azure); impl=gocloud-pinned adds that through a BeforeRead hook per
// driver (see pinned), for the same guarantee.
func BenchmarkRangedRead(b *testing.B) {
	// -count repeats each leaf benchmark in a row; runs of the test binary
	// alternating -reverse interleave the ways of reading, and none
	// always reads first (make bench-gocloud does that).
	reverse := *reverseFlag
	for _, name := range []string{"local", "gcs", "s3", "azure"} {
		b.Run("backend="+name, func(b *testing.B) {
			t := setup(b, name)
			b.Run("pattern=scattered", func(b *testing.B) { benchScattered(b, t, reverse) })
			b.Run("pattern=parquet", func(b *testing.B) { benchParquet(b, t, reverse) })
		})
	}
}

var reverseFlag = flag.Bool("reverse", false, "take the ways of reading in the reverse order")

// inOrder returns the impls, reversed if reverse.
func inOrder[T any](impls []T, reverse bool) []T {
	out := slices.Clone(impls)
	if reverse {
		slices.Reverse(out)
	}
	return out
}

func benchScattered(b *testing.B, t *target, reverse bool) {
	ctx := context.Background()
	offs := scattered()
	buf := make([]byte, readSize)
	// Each way of reading makes, once, what reads buf at an offset.
	type impl struct {
		name    string
		prepare func(b *testing.B) (read func(off int64) error, done func())
	}
	gocloud := func(pin bool) func(b *testing.B) (func(int64) error, func()) {
		return func(b *testing.B) (func(int64) error, func()) {
			var opts *blob.ReaderOptions
			if pin {
				a, err := t.bucket.Attributes(ctx, objectKey)
				if err != nil {
					b.Fatal(err)
				}
				if opts, err = pinned(t.name, a); err != nil {
					b.Fatal(err)
				}
			}
			return func(off int64) error { return readGocloud(ctx, t.bucket, opts, buf, off) }, func() {}
		}
	}
	impls := []impl{
		{"objstore", func(b *testing.B) (func(int64) error, func()) {
			r, _, err := t.store.Open(ctx, objectKey, "")
			if err != nil {
				b.Fatal(err)
			}
			return func(off int64) error { return readObjstore(r, buf, off) }, func() { r.Close() }
		}},
		{"gocloud", gocloud(false)},
	}
	if t.name != "local" {
		impls = append(impls, impl{"gocloud-pinned", gocloud(true)})
	}
	if t.rawGCS != "" {
		impls = append(impls, impl{"http", func(b *testing.B) (func(int64) error, func()) {
			c := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
			return func(off int64) error { return readHTTP(ctx, c, t.rawGCS, buf, off) }, c.CloseIdleConnections
		}})
	}
	for _, im := range inOrder(impls, reverse) {
		b.Run("impl="+im.name, func(b *testing.B) {
			read, done := im.prepare(b)
			defer done()
			if err := read(offs[0]); err != nil {
				b.Fatal(err)
			}
			check(b, im.name, buf, offs[0])
			b.SetBytes(readSize)
			i := 0
			counted(b, t, func() {
				for b.Loop() {
					if err := read(offs[i%len(offs)]); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		})
	}
}

func benchParquet(b *testing.B, t *target, reverse bool) {
	ctx := context.Background()
	spans := parquetReads()
	buf := make([]byte, readSize)
	// One file as the decoder reads it; verify checks every range (outside
	// the timed loop).
	objstoreFile := func(b *testing.B, verify bool) error {
		r, a, err := t.store.Open(ctx, objectKey, "")
		if err != nil {
			return err
		}
		defer r.Close()
		if a.Size != objectSize {
			return fmt.Errorf("size %d, want %d", a.Size, objectSize)
		}
		for _, s := range spans {
			if err := readObjstore(r, buf[:s.n], s.off); err != nil {
				return err
			}
			if verify {
				check(b, "objstore", buf[:s.n], s.off)
			}
		}
		return nil
	}
	gocloudFile := func(pin bool) func(b *testing.B, verify bool) error {
		return func(b *testing.B, verify bool) error {
			a, err := t.bucket.Attributes(ctx, objectKey)
			if err != nil {
				return err
			}
			if a.Size != objectSize {
				return fmt.Errorf("size %d, want %d", a.Size, objectSize)
			}
			var opts *blob.ReaderOptions
			if pin {
				if opts, err = pinned(t.name, a); err != nil {
					return err
				}
			}
			for _, s := range spans {
				if err := readGocloud(ctx, t.bucket, opts, buf[:s.n], s.off); err != nil {
					return err
				}
				if verify {
					check(b, "gocloud", buf[:s.n], s.off)
				}
			}
			return nil
		}
	}
	impls := []struct {
		name string
		file func(*testing.B, bool) error
	}{{"objstore", objstoreFile}, {"gocloud", gocloudFile(false)}}
	if t.name != "local" {
		impls = append(impls, struct {
			name string
			file func(*testing.B, bool) error
		}{"gocloud-pinned", gocloudFile(true)})
	}
	for _, impl := range inOrder(impls, reverse) {
		b.Run("impl="+impl.name, func(b *testing.B) {
			if err := impl.file(b, true); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(parquetBytes())
			counted(b, t, func() {
				for b.Loop() {
					if err := impl.file(b, false); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
