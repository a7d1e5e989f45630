// Package objstoretest is the conformance suite every objstore backend
// passes, and the emulator processes it runs against (fake-gcs-server, an
// S3 server, Azurite). A new backend is done when Run passes on a real
// server of its kind.
//
// # Concurrency
//
// Run starts subtests in parallel; the emulator helpers are safe to call
// from parallel tests.
package objstoretest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/objstore"
)

// Options say what a backend promises where backends differ; the suite
// checks each promise as made, never less.
type Options struct {
	// ContentVersions: a version is derived from the bytes (an S3 ETag is
	// their MD5), so writing identical bytes again keeps it, and the suite
	// checks that it is kept instead of that it changes. A conditional
	// write at such a version holds exactly while the object has those
	// bytes.
	ContentVersions bool
}

// Run runs the suite for a backend whose every write makes a new version.
// newRoot returns the URI of a new, empty location (a folder, or a prefix
// in a bucket) each time it is called.
func Run(t *testing.T, newRoot func(t *testing.T) string) {
	RunWith(t, Options{}, newRoot)
}

// RunWith runs the suite for a backend that promises o.
func RunWith(t *testing.T, o Options, newRoot func(t *testing.T) string) {
	open := func(t *testing.T) *objstore.Store {
		t.Helper()
		s, err := objstore.Open(context.Background(), newRoot(t))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ctx := context.Background()

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		if _, err := s.Stat(ctx, "missing.json"); !errors.Is(err, objstore.ErrNotFound) {
			t.Errorf("Stat of a missing object: %v, want ErrNotFound", err)
		}
		if _, _, err := s.Read(ctx, "missing.json"); !errors.Is(err, objstore.ErrNotFound) {
			t.Errorf("Read of a missing object: %v, want ErrNotFound", err)
		}
		if _, _, err := s.Open(ctx, "missing.json", ""); !errors.Is(err, objstore.ErrNotFound) {
			t.Errorf("Open of a missing object: %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx, "missing.json"); err != nil {
			t.Errorf("Delete of a missing object: %v, want nil", err)
		}
		dst := filepath.Join(t.TempDir(), "out")
		if _, err := s.ReadFile(ctx, "missing.json", dst); !errors.Is(err, objstore.ErrNotFound) {
			t.Errorf("ReadFile of a missing object: %v, want ErrNotFound", err)
		}
		n := 0
		if err := s.List(ctx, "", func(objstore.Attrs) error { n++; return nil }); err != nil || n != 0 {
			t.Errorf("List of an empty root: %d objects, %v; want none, nil", n, err)
		}
		if err := s.Delete(ctx, "../escape"); err == nil {
			t.Errorf("Delete of ../escape was accepted")
		}
	})

	t.Run("CreateIfAbsent", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		v1, err := s.Write(ctx, "m.json", []byte("one"), objstore.IfAbsent)
		if err != nil || v1 == "" {
			t.Fatalf("first create: version %q, %v", v1, err)
		}
		if _, err := s.Write(ctx, "m.json", []byte("two"), objstore.IfAbsent); !errors.Is(err, objstore.ErrPrecondition) {
			t.Fatalf("second create: %v, want ErrPrecondition", err)
		}
		got, v, err := s.Read(ctx, "m.json")
		if err != nil || string(got) != "one" || v != v1 {
			t.Fatalf("after a refused create: %q version %q, %v; want \"one\" version %q", got, v, err, v1)
		}
	})

	t.Run("ReplaceIfVersion", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		v1, err := s.Write(ctx, "m.json", []byte("one"), objstore.IfAbsent)
		if err != nil {
			t.Fatal(err)
		}
		v2, err := s.Write(ctx, "m.json", []byte("two"), objstore.IfVersion(v1))
		if err != nil {
			t.Fatalf("replace at the current version: %v", err)
		}
		if v2 == v1 || v2 == "" {
			t.Fatalf("replace gave version %q, the old one was %q", v2, v1)
		}
		// A stale writer: it read v1, someone wrote v2 since.
		if _, err := s.Write(ctx, "m.json", []byte("stale"), objstore.IfVersion(v1)); !errors.Is(err, objstore.ErrPrecondition) {
			t.Fatalf("stale replace: %v, want ErrPrecondition", err)
		}
		got, v, err := s.Read(ctx, "m.json")
		if err != nil || string(got) != "two" || v != v2 {
			t.Fatalf("after a stale replace: %q version %q, %v; want \"two\" version %q", got, v, err, v2)
		}
		a, err := s.Stat(ctx, "m.json")
		if err != nil || a.Version != v2 || a.Size != 3 {
			t.Fatalf("Stat: %+v, %v; want version %q size 3", a, err, v2)
		}
		// Same bytes again is a new version too, unless versions are the
		// bytes' own.
		v3, err := s.Write(ctx, "m.json", []byte("two"), objstore.IfVersion(v2))
		switch {
		case err != nil:
			t.Fatalf("rewrite of the same bytes: %v", err)
		case o.ContentVersions && v3 != v2:
			t.Fatalf("rewrite of the same bytes: version %q, want the bytes' version %q", v3, v2)
		case !o.ContentVersions && v3 == v2:
			t.Fatalf("rewrite of the same bytes: version %q, the old one's; want a new version", v3)
		}
		if _, err := s.Write(ctx, "absent.json", []byte("x"), objstore.IfVersion(v3)); !errors.Is(err, objstore.ErrPrecondition) {
			t.Fatalf("replace of an absent object: %v, want ErrPrecondition", err)
		}
		if _, err := s.Write(ctx, "m.json", []byte("any"), objstore.Overwrite); err != nil {
			t.Fatalf("unconditional write: %v", err)
		}
		if err := s.Delete(ctx, "m.json"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stat(ctx, "m.json"); !errors.Is(err, objstore.ErrNotFound) {
			t.Fatalf("Stat after Delete: %v, want ErrNotFound", err)
		}
	})

	t.Run("ConcurrentWriters", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		v0, err := s.Write(ctx, "lease.json", []byte("0"), objstore.IfAbsent)
		if err != nil {
			t.Fatal(err)
		}
		// Eight writers read the same version and race at the backend
		// itself (no pacing between them): exactly one may win.
		b := s.Backend()
		const writers = 8
		var wins atomic.Int32
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for i := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				data := fmt.Appendf(nil, "writer %d", i)
				_, err := b.Put(ctx, "lease.json", bytes.NewReader(data), int64(len(data)), objstore.IfVersion(v0))
				switch {
				case err == nil:
					wins.Add(1)
				case !errors.Is(err, objstore.ErrPrecondition):
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("a losing writer got %v, want ErrPrecondition", err)
		}
		if wins.Load() != 1 {
			t.Fatalf("%d writers won a compare-and-swap on one version, want exactly 1", wins.Load())
		}
		got, _, err := s.Read(ctx, "lease.json")
		if err != nil || !strings.HasPrefix(string(got), "writer ") {
			t.Fatalf("after the race: %q, %v", got, err)
		}
		// And absent-creates race the same way.
		wins.Store(0)
		for i := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				data := fmt.Appendf(nil, "creator %d", i)
				if _, err := b.Put(ctx, "new.json", bytes.NewReader(data), int64(len(data)), objstore.IfAbsent); err == nil {
					wins.Add(1)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d creators made one absent object, want exactly 1", wins.Load())
		}
	})

	t.Run("ListPagesAndPrefixes", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		defer setPageSize(7)()
		var want []string
		for i := range 23 {
			want = append(want, fmt.Sprintf("day=2024-01-02/part-%02d.parquet", i))
		}
		want = append(want, "day=2024-01-03/part-00.parquet", "day=2024-01-0/x", "top.json")
		var wg sync.WaitGroup
		errs := make(chan error, len(want))
		sem := make(chan struct{}, 8)
		for _, k := range want {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				if _, err := s.Write(ctx, k, []byte(k), objstore.IfAbsent); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		got, err := s.ListKeys(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Fatalf("List of the root:\n got %q\nwant %q", got, want)
		}
		got, err = s.ListKeys(ctx, "day=2024-01-02/")
		if err != nil || len(got) != 23 {
			t.Fatalf("List of a folder prefix: %d keys, %v; want 23", len(got), err)
		}
		got, err = s.ListKeys(ctx, "day=2024-01-0")
		if err != nil || len(got) != 25 {
			t.Fatalf("List of a name prefix: %d keys (%q), %v; want 25", len(got), got, err)
		}
		var sizes int64
		if err := s.List(ctx, "day=2024-01-03/", func(a objstore.Attrs) error {
			sizes += a.Size
			if a.Version == "" {
				return fmt.Errorf("%s listed without a version", a.Key)
			}
			return nil
		}); err != nil || sizes != int64(len("day=2024-01-03/part-00.parquet")) {
			t.Fatalf("List attrs: size %d, %v", sizes, err)
		}
		// fn's error ends the listing and comes back.
		stop := errors.New("enough")
		if err := s.List(ctx, "", func(objstore.Attrs) error { return stop }); !errors.Is(err, stop) {
			t.Fatalf("List with a failing fn: %v, want it back", err)
		}
	})

	t.Run("SiblingRoots", func(t *testing.T) {
		t.Parallel()
		root := newRoot(t)
		a, err := objstore.Open(ctx, root+"/tracks")
		if err != nil {
			t.Fatal(err)
		}
		b, err := objstore.Open(ctx, root+"/tracks_old/")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Write(ctx, "x.parquet", []byte("a"), objstore.IfAbsent); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Write(ctx, "y.parquet", []byte("b"), objstore.IfAbsent); err != nil {
			t.Fatal(err)
		}
		if got, err := a.ListKeys(ctx, ""); err != nil || !slices.Equal(got, []string{"x.parquet"}) {
			t.Fatalf("root .../tracks lists %q, %v; want only its own x.parquet", got, err)
		}
		s, key, err := objstore.OpenObjectOrFolder(ctx, root+"/tracks/x.parquet")
		if err != nil || key != "x.parquet" {
			t.Fatalf("OpenObjectOrFolder of an object: key %q, %v", key, err)
		}
		if got, err := s.ListKeys(ctx, ""); err != nil || !slices.Equal(got, []string{"x.parquet"}) {
			t.Fatalf("the object's folder lists %q, %v", got, err)
		}
		_, key, err = objstore.OpenObjectOrFolder(ctx, root+"/tracks")
		if err != nil || key != "" {
			t.Fatalf("OpenObjectOrFolder of a folder: key %q, %v; want \"\"", key, err)
		}
	})

	t.Run("RangedReads", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		data := make([]byte, 1<<20+3)
		rand.Read(data)
		v, err := s.Write(ctx, "data.parquet", data, objstore.IfAbsent)
		if err != nil {
			t.Fatal(err)
		}
		r, a, err := s.Open(ctx, "data.parquet", v)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if a.Size != int64(len(data)) || a.Version != v {
			t.Fatalf("Open: %+v, want size %d version %q", a, len(data), v)
		}
		var wg sync.WaitGroup
		for _, rg := range [][2]int{{0, 4}, {1, 7}, {4093, 8191}, {len(data) - 8, 8}, {len(data) - 1, 1}, {333_333, 262_144}, {0, len(data)}} {
			wg.Add(1)
			go func() { // the Reader is shared by concurrent reads
				defer wg.Done()
				off, n := rg[0], rg[1]
				p := make([]byte, n)
				got, err := r.ReadAt(p, int64(off))
				if err != nil || got != n || !bytes.Equal(p, data[off:off+n]) {
					t.Errorf("ReadAt(%d bytes at %d): %d bytes, %v; or wrong bytes", n, off, got, err)
				}
			}()
		}
		wg.Wait()
		size, rv, err := r.Version()
		if err != nil || size != int64(len(data)) || rv != v {
			t.Fatalf("Reader.Version: %d %q %v", size, rv, err)
		}
	})

	t.Run("PinnedVersion", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		v1, err := s.Write(ctx, "f.parquet", bytes.Repeat([]byte("1"), 4096), objstore.IfAbsent)
		if err != nil {
			t.Fatal(err)
		}
		r, _, err := s.Open(ctx, "f.parquet", v1)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		v2, err := s.Write(ctx, "f.parquet", bytes.Repeat([]byte("2"), 4096), objstore.IfVersion(v1))
		if err != nil {
			t.Fatal(err)
		}
		// A reader opened at v1 never passes off bytes of v2 as v1's: it
		// reads v1, fails, or reports the new version.
		p := make([]byte, 16)
		n, err := r.ReadAt(p, 100)
		_, now, verr := r.Version()
		if err == nil && n == len(p) && bytes.Equal(p, bytes.Repeat([]byte("2"), 16)) && verr == nil && now == v1 {
			t.Fatalf("a reader pinned to %s read the bytes of %s and still claims %s", v1, v2, now)
		}
		// Opening the gone version: not found, or opened at another version.
		if r2, a, err := s.Open(ctx, "f.parquet", v1); err == nil {
			r2.Close()
			if a.Version == v1 {
				t.Fatalf("Open of the replaced version %s succeeded and claims it", v1)
			}
		} else if !errors.Is(err, objstore.ErrNotFound) {
			t.Fatalf("Open of the replaced version: %v, want ErrNotFound", err)
		}
	})

	t.Run("LargeObject", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		dir := t.TempDir()
		src := filepath.Join(dir, "big")
		data := make([]byte, 20<<20+5)
		rand.Read(data)
		if err := os.WriteFile(src, data, 0o600); err != nil {
			t.Fatal(err)
		}
		v, err := s.WriteFile(ctx, "snapshots/big.parquet", src, objstore.IfAbsent)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, "back")
		got, err := s.ReadFile(ctx, "snapshots/big.parquet", dst)
		if err != nil || got != v {
			t.Fatalf("ReadFile: version %q, %v; want %q", got, err, v)
		}
		back, err := os.ReadFile(dst)
		if err != nil || !bytes.Equal(back, data) {
			t.Fatalf("ReadFile gave %d bytes (%v), want the %d written", len(back), err, len(data))
		}
		r, _, err := s.Open(ctx, "snapshots/big.parquet", v)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		tail := make([]byte, 1000)
		if n, err := r.ReadAt(tail, int64(len(data)-1000)); err != nil || n != 1000 || !bytes.Equal(tail, data[len(data)-1000:]) {
			t.Fatalf("ReadAt of the tail: %d, %v", n, err)
		}
		if _, err := s.WriteFile(ctx, "snapshots/big.parquet", src, objstore.IfVersion("1")); !errors.Is(err, objstore.ErrPrecondition) {
			t.Fatalf("WriteFile at a stale version: %v, want ErrPrecondition", err)
		}
	})

	t.Run("Names", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		keys := []string{"dir with space/a file.parquet", "ünïcødé/日本語.parquet", "a+b=c&d;e,f/%41 #x.json", "day=2024-01-02/hr=03/p.parquet"}
		for _, k := range keys {
			if _, err := s.Write(ctx, k, []byte(k), objstore.IfAbsent); err != nil {
				t.Fatalf("write %q: %v", k, err)
			}
		}
		got, err := s.ListKeys(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		want := slices.Clone(keys)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Fatalf("List:\n got %q\nwant %q", got, want)
		}
		for _, k := range keys {
			data, _, err := s.Read(ctx, k)
			if err != nil || string(data) != k {
				t.Errorf("read %q: %q, %v", k, data, err)
			}
			r, _, err := s.Open(ctx, k, "")
			if err != nil {
				t.Errorf("open %q: %v", k, err)
				continue
			}
			p := make([]byte, 3)
			if _, err := r.ReadAt(p, 1); err != nil || string(p) != k[1:4] {
				t.Errorf("ReadAt of %q: %q, %v", k, p, err)
			}
			r.Close()
			if !strings.Contains(s.URI(k), k) && !strings.Contains(s.URI(k), filepath.FromSlash(k)) {
				t.Errorf("URI(%q) = %q does not name it", k, s.URI(k))
			}
		}
	})

	t.Run("OneWritePerSecondPerName", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		start := time.Now()
		v := ""
		var err error
		for i := range 3 {
			if v, err = s.Write(ctx, "paced.json", fmt.Appendf(nil, "%d", i), objstore.IfVersion(v)); err != nil {
				t.Fatal(err)
			}
		}
		if el := time.Since(start); el < 2*objstore.MinWriteInterval {
			t.Fatalf("3 writes to one name took %s, want at least %s", el, 2*objstore.MinWriteInterval)
		}
		if st := objstore.WriteStats(s.URI("paced.json")); st.Writes != 3 || st.MinGap < objstore.MinWriteInterval {
			t.Fatalf("WriteStats %+v: want 3 writes at least %s apart", st, objstore.MinWriteInterval)
		}
		// Other names are not held back by it.
		if _, err := s.Write(ctx, "other.json", []byte("x"), objstore.IfAbsent); err != nil {
			t.Fatal(err)
		}
	})
}

var pageMu sync.Mutex

// setPageSize makes every backend list n objects a page, so that a short
// listing crosses pages; the returned func restores it.
func setPageSize(n int) func() {
	pageMu.Lock()
	old := objstore.ListPageSize.Swap(int32(n))
	return func() { objstore.ListPageSize.Store(old); pageMu.Unlock() }
}

// PutTree copies the local folder dir to the location root, object for
// object (keys are the files' slash paths below dir), for tests that build
// a source tree in a bucket.
func PutTree(t testing.TB, dir, root string) {
	t.Helper()
	st, err := objstore.Open(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		_, err = st.Write(context.Background(), filepath.ToSlash(rel), data, objstore.Overwrite)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
