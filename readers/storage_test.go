package readers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/objstore"
	"github.com/convertro-etl/convertro-etl/objstore/objstoretest"
	"github.com/parquet-go/parquet-go"
)

// storageHarness is one backend of the conformance suite: a place to put
// objects and the source URIs that name them.
type storageHarness struct {
	put func(t *testing.T, path string, data []byte) // a path ending in "/" is a folder placeholder
	del func(t *testing.T, path string)
	// uri names a path relative to the harness root as a source ("" = the root).
	uri func(path string) string
	// placeholders: the backend stores "folder/" objects (GCS), which listing must skip.
	placeholders bool
}

func newDirHarness(t *testing.T) *storageHarness {
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	full := func(p string) string { return filepath.Join(root, filepath.FromSlash(p)) }
	return &storageHarness{
		put: func(t *testing.T, p string, data []byte) {
			t.Helper()
			if strings.HasSuffix(p, "/") {
				if err := os.MkdirAll(full(p), 0o755); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err := os.MkdirAll(filepath.Dir(full(p)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full(p), data, 0o644); err != nil {
				t.Fatal(err)
			}
		},
		del: func(t *testing.T, p string) {
			t.Helper()
			if err := os.Remove(full(p)); err != nil {
				t.Fatal(err)
			}
		},
		uri: full,
	}
}

// newStoreHarness puts objects through the storage layer into root, a
// bucket of an emulator process; placeholders are written through the
// backend, since the Store refuses a name ending in "/".
func newStoreHarness(t *testing.T, root string) *storageHarness {
	ctx := context.Background()
	st, err := objstore.Open(ctx, root+"/root")
	if err != nil {
		t.Fatal(err)
	}
	return &storageHarness{
		put: func(t *testing.T, p string, data []byte) {
			t.Helper()
			if strings.HasSuffix(p, "/") {
				if _, err := st.Backend().Put(ctx, p, bytes.NewReader(nil), 0, objstore.Overwrite); err != nil {
					t.Fatal(err)
				}
				return
			}
			if _, err := st.Write(ctx, p, data, objstore.Overwrite); err != nil {
				t.Fatal(err)
			}
		},
		del: func(t *testing.T, p string) {
			t.Helper()
			if err := st.Delete(ctx, p); err != nil {
				t.Fatal(err)
			}
		},
		uri: func(p string) string {
			if p == "" {
				return root + "/root"
			}
			return root + "/root/" + p
		},
		placeholders: true,
	}
}

// storageBackends are the backends the listing suite runs on: local disk,
// and a bucket of each emulator process.
var storageBackends = map[string]func(*testing.T) *storageHarness{
	"dir":   newDirHarness,
	"gcs":   func(t *testing.T) *storageHarness { return newStoreHarness(t, objstoretest.GCS(t)) },
	"azure": func(t *testing.T) *storageHarness { return newStoreHarness(t, objstoretest.Azure(t)) },
	"s3":    func(t *testing.T) *storageHarness { return newStoreHarness(t, objstoretest.S3(t)) },
}

type treeEntry struct {
	path, skip string
	size       int
	data       string // the content, when it is not size random bytes
}

// The tree's Delta table: version 0 adds part-old, version 1 (an OPTIMIZE)
// replaces it with part-00000, of day 2024-01-02 by the log alone.
const (
	deltaCommit0 = `{"protocol":{"minReaderVersion":1,"minWriterVersion":2}}
{"metaData":{"id":"t","format":{"provider":"parquet"},"schemaString":"{\"type\":\"struct\",\"fields\":[]}","partitionColumns":["day"],"configuration":{}}}
{"add":{"path":"part-old.parquet","partitionValues":{"day":"2024-01-02"},"size":41,"modificationTime":1,"dataChange":true}}
`
	deltaCommit1 = `{"remove":{"path":"part-old.parquet","deletionTimestamp":2,"dataChange":false}}
{"add":{"path":"part-00000.parquet","partitionValues":{"day":"2024-01-02"},"size":40,"modificationTime":2,"dataChange":false}}
{"commitInfo":{"operation":"OPTIMIZE"}}
`
)

// The tree every backend is tested with: what listing must keep, skip and filter.
var conformanceTree = []treeEntry{
	{path: "tracks/2024/01/01/00/a.parquet", size: 1000},
	{path: "tracks/2024/01/02/13/b.parquet", size: 5000},
	{path: "tracks/_SUCCESS", skip: SkipMarker},
	{path: "tracks/2024/01/02/13/.b.parquet.crc", size: 12, skip: SkipChecksum},
	{path: "tracks_old/x.parquet", size: 10},
	{path: "lake/src1/segment_type=track/day=2024-01-01/hr=05/part-0.parquet", size: 30},
	{path: "lake/src1/segment_type=identify/day=2024-01-03/hr=00/part-0.parquet", size: 31},
	{path: "hive/tracks/year=2024/month=01/day=02/hour=10/f.parquet", size: 32},
	{path: "dt/pages/dt=2024-01-04/f.parquet", size: 33},
	{path: "bq/order_completed/000000000000.parquet", size: 34},
	{path: "delta/_delta_log/00000000000000000000.json", data: deltaCommit0, skip: SkipDeltaLog},
	{path: "delta/_delta_log/00000000000000000001.json", data: deltaCommit1, skip: SkipDeltaLog},
	{path: "delta/_delta_log/.00000000000000000001.json.crc", size: 20, skip: SkipDeltaLog},
	{path: "delta/part-old.parquet", size: 41, skip: SkipNotInTable},
	{path: "delta/part-00000.parquet", size: 40},
	{path: "report.json", size: 2, skip: SkipJSON},
	{path: "spark/_temporary/0/part-0.parquet", size: 5, skip: SkipHidden},
	{path: ".hidden.parquet", size: 5, skip: SkipHidden},
	{path: "empty.parquet", skip: SkipEmpty},
	{path: "folder/", skip: SkipFolder},
}

// content is deterministic bytes for a path, so reads can be checked.
func content(path string, size int) []byte {
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(uint64(len(path)), uint64(size)))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func fill(t *testing.T, h *storageHarness) {
	for _, o := range conformanceTree {
		if o.data != "" {
			h.put(t, o.path, []byte(o.data))
			continue
		}
		h.put(t, o.path, content(o.path, o.size))
	}
}

func openSource(t *testing.T, uri string, o SourceOptions) *Source {
	t.Helper()
	s, err := OpenSource(context.Background(), uri, o)
	if err != nil {
		t.Fatalf("OpenSource(%s): %v", uri, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openOnlyParquet opens the one object a source lists as Parquet, opened
// at its listed version (OpenListed) or checked against the store (Open);
// the file is closed when the test ends.
func openOnlyParquet(t *testing.T, src *Source, listed bool) *ParquetFile {
	t.Helper()
	ctx := t.Context()
	objs, _, err := src.List(ctx)
	if err != nil || len(objs) != 1 {
		t.Fatalf("list: %v %v", objs, err)
	}
	open := src.Open
	if listed {
		open = src.OpenListed
	}
	f, err := open(ctx, objs[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	p, err := OpenParquet(ctx, f, objs[0], Hint{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func keys(objs []Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.Key)
	}
	return out
}

func TestStorageConformance(t *testing.T) {
	for name, newHarness := range storageBackends {
		t.Run(name, func(t *testing.T) { testConformance(t, newHarness) })
	}
}

func testConformance(t *testing.T, newHarness func(*testing.T) *storageHarness) {
	ctx := context.Background()

	t.Run("ListAll", func(t *testing.T) {
		h := newHarness(t)
		fill(t, h)
		s := openSource(t, h.uri(""), SourceOptions{})
		objs, skipped, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var wantKeys []string
		wantSkipped := map[string]string{}
		for _, o := range conformanceTree {
			switch {
			case o.skip == "":
				wantKeys = append(wantKeys, o.path)
			case strings.HasSuffix(o.path, "/") && !h.placeholders:
			default:
				wantSkipped[h.uri(o.path)] = o.skip
			}
		}
		slices.Sort(wantKeys)
		if got := keys(objs); !slices.Equal(got, wantKeys) {
			t.Errorf("keys\n got %q\nwant %q", got, wantKeys)
		}
		for _, o := range objs {
			want := conformanceTree[slices.IndexFunc(conformanceTree, func(e treeEntry) bool { return e.path == o.Key })]
			if o.Size != int64(want.size) || o.Version == "" || o.URI != h.uri(o.Key) {
				t.Errorf("%s: size %d version %q URI %s, want size %d, a version, URI %s",
					o.Key, o.Size, o.Version, o.URI, want.size, h.uri(o.Key))
			}
		}
		gotSkipped := map[string]string{}
		for _, sk := range skipped {
			gotSkipped[sk.URI] = sk.Reason
		}
		if fmt.Sprint(gotSkipped) != fmt.Sprint(wantSkipped) {
			t.Errorf("skipped\n got %v\nwant %v", gotSkipped, wantSkipped)
		}
		if !slices.IsSortedFunc(skipped, func(a, b Skipped) int { return strings.Compare(a.URI, b.URI) }) {
			t.Errorf("skipped not sorted: %v", skipped)
		}

		// Visit hands over the same objects, one call each, and keeps none.
		var visited []Object
		l, err := s.Visit(ctx, func(o Object) { visited = append(visited, o) })
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(visited, func(a, b Object) int { return strings.Compare(a.Key, b.Key) })
		if !slices.Equal(visited, objs) || l.Objects != nil || len(l.Skipped) != len(skipped) {
			t.Errorf("Visit handed %q and kept %d objects, %d skipped; want %q, none kept, %d skipped",
				keys(visited), len(l.Objects), len(l.Skipped), keys(objs), len(skipped))
		}
	})

	t.Run("DeltaVersion", func(t *testing.T) {
		h := newHarness(t)
		fill(t, h)
		s := openSource(t, h.uri("delta"), SourceOptions{TableVersions: map[string]int64{h.uri("delta"): 0}})
		l, err := s.Scan(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := keys(l.Objects); !slices.Equal(got, []string{"part-old.parquet"}) || len(l.Tables) != 1 || l.Tables[0].Version != 0 {
			t.Errorf("version 0: keys %q tables %+v, want part-old.parquet at version 0", got, l.Tables)
		}
	})

	t.Run("Prefix", func(t *testing.T) {
		h := newHarness(t)
		fill(t, h)
		for _, uri := range []string{h.uri("tracks"), h.uri("tracks") + "/"} {
			s := openSource(t, uri, SourceOptions{})
			objs, skipped, err := s.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"2024/01/01/00/a.parquet", "2024/01/02/13/b.parquet"} // not tracks_old/
			if got := keys(objs); !slices.Equal(got, want) {
				t.Errorf("%s: keys %q, want %q", uri, got, want)
			}
			b := objs[1]
			wantPart := Partition{Day: day("2024-01-02"), HasDay: true, Hour: 13, Table: "tracks"}
			if b.Partition != wantPart || b.URI != h.uri("tracks/2024/01/02/13/b.parquet") {
				t.Errorf("%s: %+v, want partition %+v", uri, b, wantPart)
			}
			if len(skipped) != 2 {
				t.Errorf("%s: skipped %v, want _SUCCESS and the .crc", uri, skipped)
			}
		}
	})

	t.Run("SingleFile", func(t *testing.T) {
		h := newHarness(t)
		fill(t, h)
		s := openSource(t, h.uri("tracks/2024/01/02/13/b.parquet"), SourceOptions{})
		objs, skipped, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(objs) != 1 || len(skipped) != 0 {
			t.Fatalf("objects %v skipped %v, want the one file", objs, skipped)
		}
		o := objs[0]
		if o.Key != "b.parquet" || o.Size != 5000 || o.URI != h.uri("tracks/2024/01/02/13/b.parquet") ||
			o.Partition.Table != "tracks" || o.Partition.Hour != 13 {
			t.Errorf("got %+v", o)
		}
		f, err := s.Open(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		got := make([]byte, f.Size())
		if _, err := f.ReadAt(got, 0); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(got, content("tracks/2024/01/02/13/b.parquet", 5000)) {
			t.Error("content differs")
		}
	})

	t.Run("PartitionFilter", func(t *testing.T) {
		h := newHarness(t)
		fill(t, h)
		s := openSource(t, h.uri(""), SourceOptions{From: day("2024-01-02"), To: day("2024-01-03")})
		l, err := s.Scan(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{
			"bq/order_completed/000000000000.parquet", // undated: kept
			"delta/part-00000.parquet",                // its day from the Delta log
			"hive/tracks/year=2024/month=01/day=02/hour=10/f.parquet",
			"lake/src1/segment_type=identify/day=2024-01-03/hr=00/part-0.parquet",
			"tracks/2024/01/02/13/b.parquet",
			"tracks_old/x.parquet", // undated: kept
		}
		if got := keys(l.Objects); !slices.Equal(got, want) {
			t.Errorf("keys\n got %q\nwant %q", got, want)
		}
		// a (01-01), lake track (01-01), dt (01-04)
		if l.OutOfRange != 3 || l.Undated != 2 {
			t.Errorf("out of range %d undated %d, want 3 and 2", l.OutOfRange, l.Undated)
		}
		for _, o := range l.Objects {
			if strings.Contains(o.Key, "segment_type=identify") &&
				(o.Partition.SegmentType != "identify" || o.Partition.Hour != 0 || o.Partition.Table != "src1") {
				t.Errorf("%s: %+v", o.Key, o.Partition)
			}
			if strings.HasPrefix(o.Key, "hive/") && (o.Partition.Hour != 10 || o.Partition.Table != "tracks") {
				t.Errorf("%s: %+v", o.Key, o.Partition)
			}
			if strings.HasPrefix(o.Key, "delta/") && (o.Partition.Day != day("2024-01-02") || o.Partition.Table != "delta") {
				t.Errorf("%s: %+v", o.Key, o.Partition)
			}
		}
		if want := []TableVersion{{URI: h.uri("delta"), Version: 1}}; !slices.Equal(l.Tables, want) {
			t.Errorf("tables %+v, want %+v", l.Tables, want)
		}

		// Open-ended ranges.
		s = openSource(t, h.uri(""), SourceOptions{From: day("2024-01-04")})
		if l, err = s.Scan(ctx); err != nil {
			t.Fatal(err)
		}
		if got := keys(l.Objects); !slices.Contains(got, "dt/pages/dt=2024-01-04/f.parquet") || len(got) != 3 {
			t.Errorf("from 2024-01-04: %q", got)
		}
		s = openSource(t, h.uri(""), SourceOptions{To: day("2024-01-01")})
		if l, err = s.Scan(ctx); err != nil {
			t.Fatal(err)
		}
		if got := keys(l.Objects); len(got) != 4 || l.OutOfRange != 5 { // b, identify, hive, dt, delta
			t.Errorf("to 2024-01-01: %q, %d out of range", got, l.OutOfRange)
		}
	})

	t.Run("ReadAt", func(t *testing.T) {
		h := newHarness(t)
		fill(t, h)
		s := openSource(t, h.uri("tracks"), SourceOptions{})
		objs, _, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		o := objs[1]
		want := content("tracks/2024/01/02/13/b.parquet", 5000)
		f, err := s.Open(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if f.Size() != 5000 {
			t.Fatalf("Size %d", f.Size())
		}
		footer := make([]byte, 8) // where a Parquet reader starts
		if n, err := f.ReadAt(footer, f.Size()-8); n != 8 || (err != nil && err != io.EOF) {
			t.Fatalf("footer: n %d err %v", n, err)
		}
		if !bytes.Equal(footer, want[5000-8:]) {
			t.Error("footer bytes differ")
		}
		p := make([]byte, 100)
		n, err := f.ReadAt(p, 4950) // across the end
		if n != 50 || err != io.EOF || !bytes.Equal(p[:n], want[4950:]) {
			t.Errorf("across the end: n %d err %v", n, err)
		}
		if n, err := f.ReadAt(p, 5000); n != 0 || err != io.EOF {
			t.Errorf("at the end: n %d err %v", n, err)
		}
		if n, err := f.ReadAt(p, 9000); n != 0 || err != io.EOF {
			t.Errorf("past the end: n %d err %v", n, err)
		}
		if _, err := f.ReadAt(p, -1); err == nil || err == io.EOF {
			t.Errorf("negative offset: %v", err)
		}
		var wg sync.WaitGroup // concurrent readers (under -race)
		for i := range 8 {
			wg.Go(func() {
				q := make([]byte, 500)
				off := int64(i * 500)
				if n, err := f.ReadAt(q, off); n != 500 || err != nil || !bytes.Equal(q, want[off:off+500]) {
					t.Errorf("concurrent read at %d: n %d err %v", off, n, err)
				}
			})
		}
		wg.Wait()
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := f.ReadAt(p, 0); err == nil {
			t.Error("read after Close succeeded")
		}
	})

	t.Run("Rewritten", func(t *testing.T) {
		h := newHarness(t)
		fill(t, h)
		s := openSource(t, h.uri("tracks"), SourceOptions{})
		objs, _, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		a, b := objs[0], objs[1]
		fa, err := s.Open(ctx, a) // opened before the rewrite
		if err != nil {
			t.Fatal(err)
		}
		defer fa.Close()
		h.put(t, "tracks/2024/01/01/00/a.parquet", content("new", 1001))
		h.put(t, "tracks/2024/01/02/13/b.parquet", content("new", 4000))

		_, err = s.Open(ctx, b)
		if !errors.Is(err, ErrChanged) || !strings.HasPrefix(err.Error(), "open "+b.URI+": ") {
			t.Errorf("Open after rewrite: %v, want ErrChanged naming %s", err, b.URI)
		}
		_, err = fa.ReadAt(make([]byte, 10), 0)
		if !errors.Is(err, ErrChanged) || !strings.Contains(err.Error(), a.URI) {
			t.Errorf("read after rewrite: %v, want ErrChanged naming %s", err, a.URI)
		}
		// A fresh listing opens the new version.
		objs, _, err = s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		f, err := s.Open(ctx, objs[1])
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if f.Size() != 4000 {
			t.Errorf("new size %d", f.Size())
		}
	})

	t.Run("Missing", func(t *testing.T) {
		h := newHarness(t)
		fill(t, h)
		s := openSource(t, h.uri("tracks"), SourceOptions{})
		objs, _, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		h.del(t, "tracks/2024/01/02/13/b.parquet")
		_, err = s.Open(ctx, objs[1])
		if !errors.Is(err, ErrNotFound) || errors.Is(err, ErrChanged) || !strings.HasPrefix(err.Error(), "open "+objs[1].URI+": ") {
			t.Errorf("Open deleted: %v, want ErrNotFound naming %s", err, objs[1].URI)
		}
		// No version: whatever is there now; still ErrNotFound when nothing is.
		_, err = s.Open(ctx, Object{Key: "nope.parquet"})
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("Open never existed: %v", err)
		}
		missing := h.uri("no/such/folder")
		_, _, err = openSource(t, missing, SourceOptions{}).List(ctx)
		if !errors.Is(err, ErrNotFound) || !strings.HasPrefix(err.Error(), "list "+missing+": ") {
			t.Errorf("List missing source: %v, want ErrNotFound naming %s", err, missing)
		}
	})
}

// Local files cannot be pinned; a same-size rewrite is caught by the
// modification time.
func TestStorageDirSameSizeRewrite(t *testing.T) {
	ctx := context.Background()
	h := newDirHarness(t)
	h.put(t, "x.parquet", []byte("0123456789"))
	s := openSource(t, "file://"+h.uri(""), SourceOptions{})
	objs, _, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs[0].URI != h.uri("x.parquet") {
		t.Fatalf("file:// listing: %+v", objs)
	}
	h.put(t, "x.parquet", []byte("9876543210"))
	ns, err := strconv.ParseInt(objs[0].Version, 10, 64) // a local version is the modification time
	if err != nil {
		t.Fatal(err)
	}
	later := time.Unix(0, ns).Add(time.Second) // beyond any timestamp granularity
	if err := os.Chtimes(h.uri("x.parquet"), later, later); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(ctx, objs[0]); !errors.Is(err, ErrChanged) {
		t.Errorf("Open: %v, want ErrChanged", err)
	}
}

func TestStorageDirSymlinks(t *testing.T) {
	h := newDirHarness(t)
	h.put(t, "data/a.parquet", []byte("a"))
	if err := os.Symlink(h.uri("data"), h.uri("linked")); err != nil {
		t.Skip("no symlinks:", err)
	}
	if err := os.Symlink(h.uri("data/a.parquet"), h.uri("b.parquet")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(h.uri("gone"), h.uri("broken.parquet")); err != nil {
		t.Fatal(err)
	}
	objs, skipped, err := openSource(t, h.uri(""), SourceOptions{}).List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(objs); !slices.Equal(got, []string{"b.parquet", "data/a.parquet"}) {
		t.Errorf("keys %q", got)
	}
	want := []Skipped{{h.uri("broken.parquet"), SkipNotRegular}, {h.uri("linked"), SkipSymlinkedDir}}
	if !slices.Equal(skipped, want) {
		t.Errorf("skipped %v, want %v", skipped, want)
	}
	// A root that is itself a symlink to a folder is walked.
	objs, _, err = openSource(t, h.uri("linked"), SourceOptions{}).List(context.Background())
	if err != nil || len(objs) != 1 || objs[0].Key != "a.parquet" {
		t.Errorf("symlinked root: %v %v", objs, err)
	}
}

func TestStorageOpenSourceErrors(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		uri  string
		o    SourceOptions
		want string
	}{
		{uri: "ftp://b/k", want: "unsupported location"},
		{uri: "gs://", want: "no bucket"},
		{uri: "file://relative/path", want: "absolute path"},
		{uri: "/data", o: SourceOptions{From: day("2024-01-02"), To: day("2024-01-01")}, want: "after --to"},
	} {
		_, err := OpenSource(ctx, tt.uri, tt.o)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.uri) {
			t.Errorf("OpenSource(%q): %v, want an error naming it and saying %q", tt.uri, err, tt.want)
		}
	}
}

// remoteBackends are the emulators a must-show measurement runs on, by the
// name objstoretest.TrafficOf knows them, with the root of a new bucket.
var remoteBackends = map[string]func(testing.TB) string{
	"gcs":   objstoretest.GCS,
	"azure": objstoretest.Azure,
	"s3":    objstoretest.S3,
}

// The must-show property: reading 3 of 40 columns of a 30 MB Parquet file
// in a bucket fetches the footer and those column chunks, not the object,
// on every remote backend: the emulator's proxy counts what it served.
func TestStorageReadsOnlyNeededColumns(t *testing.T) {
	const (
		rows      = 200_000
		groupRows = 50_000
		columns   = 40
	)

	group := parquet.Group{}
	for j := range columns {
		group[fmt.Sprintf("c%02d", j)] = parquet.Leaf(parquet.Int32Type)
	}
	schema := parquet.NewSchema("wide", group)
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[any](&buf, schema, parquet.PageBufferSize(64<<10))
	r := rand.New(rand.NewPCG(1, 2))
	wantSums := make([]int64, columns)
	values := make([]parquet.Value, groupRows)
	for range rows / groupRows {
		for j, cw := range w.ColumnWriters() { // column order is the sorted names: c00..c39
			for i := range values {
				v := r.Int32()
				wantSums[j] += int64(v)
				values[i] = parquet.Int32Value(v).Level(0, 0, j)
			}
			if _, err := cw.WriteRowValues(values); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Flush(); err != nil { // one row group
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	size := int64(buf.Len())
	for name, newRoot := range remoteBackends {
		t.Run(name, func(t *testing.T) {
			root := newRoot(t)
			st, err := objstore.Open(context.Background(), root)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Write(context.Background(), "wide/tracks/part-0.parquet", buf.Bytes(), objstore.IfAbsent); err != nil {
				t.Fatal(err)
			}
			readColumns(t, root+"/wide", objstoretest.TrafficOf(name), size, wantSums)
		})
	}
}

func readColumns(t *testing.T, uri string, c *objstoretest.Traffic, size int64, wantSums []int64) {
	const rows, groupRows = 200_000, 50_000
	ctx := context.Background()
	s := openSource(t, uri, SourceOptions{})
	objs, _, err := s.List(ctx)
	if err != nil || len(objs) != 1 || objs[0].Size != size {
		t.Fatalf("list: %v %v", objs, err)
	}
	f, err := s.Open(ctx, objs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	c.Reset()
	pf, err := parquet.OpenFile(f, f.Size(), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true),
		parquet.ReadBufferSize(256<<10))
	if err != nil {
		t.Fatal(err)
	}
	if got := len(pf.RowGroups()); got != rows/groupRows {
		t.Fatalf("%d row groups", got)
	}
	for _, name := range []string{"c03", "c17", "c38"} {
		leaf, ok := pf.Schema().Lookup(name)
		if !ok {
			t.Fatalf("no column %s", name)
		}
		var n, sum int64
		vals := make([]parquet.Value, 4096)
		for _, rg := range pf.RowGroups() {
			pages := rg.ColumnChunks()[leaf.ColumnIndex].Pages()
			for {
				page, err := pages.ReadPage()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				vr := page.Values()
				for {
					k, err := vr.ReadValues(vals)
					for _, v := range vals[:k] {
						sum += int64(v.Int32())
					}
					n += int64(k)
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
				}
				parquet.Release(page)
			}
			pages.Close()
		}
		if n != rows || sum != wantSums[leaf.ColumnIndex] {
			t.Errorf("%s: %d values summing to %d, want %d summing to %d", name, n, sum, rows, wantSums[leaf.ColumnIndex])
		}
	}
	served := c.Bytes.Load()
	t.Logf("object %d bytes; reading 3 of %d columns served %d bytes (%.1f%%) in %d requests",
		size, len(wantSums), served, 100*float64(served)/float64(size), c.Requests.Load())
	if served == 0 || served > size*15/100 {
		t.Errorf("served %d bytes of a %d-byte object, want under 15%%", served, size)
	}
}

// A running listing logs how far it got, on every backend.
func TestStorageListProgress(t *testing.T) {
	old := listProgressEvery
	listProgressEvery = 0 // a line per object after the first
	t.Cleanup(func() { listProgressEvery = old })
	for name, newHarness := range storageBackends {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			for i := range 3 {
				h.put(t, fmt.Sprintf("p/%d.parquet", i), []byte("x"))
			}
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, nil))
			s := openSource(t, h.uri("p"), SourceOptions{Logger: log})
			if _, err := s.Scan(context.Background()); err != nil {
				t.Fatal(err)
			}
			want := "listed 3 objects under " + h.uri("p") + " so far"
			if !strings.Contains(buf.String(), want) {
				t.Errorf("log %q, want a line %q", buf.String(), want)
			}
		})
	}
}
