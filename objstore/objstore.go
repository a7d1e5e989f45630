package objstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/convertro-etl/convertro-etl/internal/localfile"
)

// Error kinds. Every backend maps its SDK's errors to these once, so callers
// test them with errors.Is and never look at HTTP codes, SDK types or errno
// values. Messages are wrapped once with the operation and the object's URI.
var (
	// ErrNotFound: the object, bucket or container does not exist.
	ErrNotFound = errors.New("not found")
	// ErrPrecondition: a conditional write found another version than the
	// one it was given, or an object where none was expected.
	ErrPrecondition = errors.New("version precondition failed")
	// ErrUnsupported: no backend is registered for the location's scheme.
	ErrUnsupported = errors.New("unsupported location")
)

// Attrs describe one version of one object.
type Attrs struct {
	// Key is the object's name relative to the Store's root, slash-separated.
	Key string
	// Size in bytes.
	Size int64
	// Version names this version of the object, opaquely: a GCS generation,
	// an S3 or Azure ETag, a local file's modification time in nanoseconds.
	// No two versions of one name written through a Store share a Version,
	// except two with identical bytes on S3, whose ETags derive from the
	// bytes: there a write at a version holds exactly while the object has
	// those bytes, so the writers' bytes must tell them apart (a lease
	// names its owner) for a write to fence another writer out.
	Version string
	// Skip is a reason only the backend can see for not reading the object
	// as data (a local symlink to a folder, a broken symlink); "" otherwise.
	Skip string
	// Loop marks a local symlink loop: listed, so that opening it fails as
	// a bad file rather than vanishing.
	Loop bool
}

// Precondition says when a write may replace what is under its name. The
// zero value is IfAbsent: a forgotten precondition never overwrites.
type Precondition struct {
	any     bool
	version string
}

var (
	// IfAbsent writes only if no object has the name yet.
	IfAbsent = Precondition{}
	// Overwrite writes whatever is there.
	Overwrite = Precondition{any: true}
)

// IfVersion writes only if the object's current version is v; "" is IfAbsent.
func IfVersion(v string) Precondition { return Precondition{version: v} }

// Absent reports whether the write requires that no object exists.
func (p Precondition) Absent() bool { return !p.any && p.version == "" }

// Any reports whether the write is unconditional.
func (p Precondition) Any() bool { return p.any }

// Version is the version the write requires, "" when it requires none or absence.
func (p Precondition) Version() string { return p.version }

func (p Precondition) String() string {
	switch {
	case p.any:
		return "any version"
	case p.version == "":
		return "absent"
	}
	return "version " + p.version
}

// Reader reads one version of one object by ranges. It is safe for
// concurrent use.
type Reader interface {
	// ReadAt reads len(p) bytes at off. A short read with a nil error means
	// the object ended early: it changed under the reader.
	ReadAt(p []byte, off int64) (int, error)
	// Version is the size and version behind the reader now: pinned by the
	// remote backends, re-read from the file on local disk, so that a file
	// rewritten in place is noticed.
	Version() (size int64, version string, err error)
	Close() error
}

// Backend is what one storage service must do. Keys are relative to the
// root the backend was opened at; errors are mapped to the kinds above (a
// retryable one wrapped by Transient) and do not name the object: the Store
// does. Backends are safe for concurrent use.
type Backend interface {
	// URI names the object for people: a local path, gs://b/k, s3://b/k, az://c/k.
	URI(key string) string
	// Name is the object's whole slash path within its bucket (or on disk),
	// for reading partitions out of it.
	Name(key string) string
	// List calls fn for every object under prefix, recursively, in any
	// order. Listing a root under which nothing exists calls fn never and
	// returns nil, or ErrNotFound when the bucket itself is missing.
	List(ctx context.Context, prefix string, fn func(Attrs) error) error
	// Stat returns the current version of key.
	Stat(ctx context.Context, key string) (Attrs, error)
	// Open opens key for ranged reads, pinned to version when it is not ""
	// (ErrNotFound when that version is gone; local disk cannot pin and
	// reports the version opened instead).
	Open(ctx context.Context, key, version string) (Reader, Attrs, error)
	// Get copies the whole current version to w and returns its version.
	Get(ctx context.Context, key string, w io.Writer) (version string, err error)
	// Put stores size bytes from r as key, all or nothing, under pre;
	// ErrPrecondition when pre does not hold. r may be read again from the
	// start (Seek) only by the Store, between attempts.
	Put(ctx context.Context, key string, r io.Reader, size int64, pre Precondition) (version string, err error)
	// Delete removes key; removing an absent object is not an error.
	Delete(ctx context.Context, key string) error
	// As sets target, a pointer to a native client type, and reports
	// whether it could: the escape hatch for a caller that truly needs the
	// SDK's client (tests, mostly).
	As(target any) bool
}

// ListedOpener is what a backend that can pin a version without asking
// the service does: open a version whose size the listing gave, with no
// request. Reads of it fail with ErrNotFound once that version is gone, as
// reads of an opened one do. Local disk cannot pin and does not offer it.
type ListedOpener interface {
	OpenListed(ctx context.Context, key string, a Attrs) (Reader, error)
}

// Location is a parsed storage URI.
type Location struct {
	// Scheme is "file" for a bare path, or the URI's scheme: gs, s3, az.
	Scheme string
	// Bucket is the bucket or container (empty for local paths).
	Bucket string
	// Path is the object name prefix within the bucket, or the local path.
	// It never starts with "/" for the remote schemes.
	Path string
	// Raw is the URI as given.
	Raw string
}

// Opener opens a backend rooted at a location: a folder (keys below it).
type Opener func(ctx context.Context, loc Location) (Backend, error)

var registry = struct {
	sync.RWMutex
	m map[string]Opener
}{m: map[string]Opener{}}

// Register makes scheme's locations open with open. Backends register in
// an init function of their own file; registering a scheme twice panics.
func Register(scheme string, open Opener) {
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.m[scheme]; dup {
		panic("objstore: scheme registered twice: " + scheme)
	}
	registry.m[scheme] = open
}

// Schemes lists the registered schemes, for help text and messages.
func Schemes() []string {
	registry.RLock()
	defer registry.RUnlock()
	var s []string
	for k := range registry.m {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// Parse splits a storage URI: a bare path or file:// is local disk, and
// scheme://bucket/prefix any registered backend.
func Parse(uri string) (Location, error) {
	if uri == "" {
		return Location{}, errors.New("empty location")
	}
	scheme, rest, ok := strings.Cut(uri, "://")
	if !ok {
		return Location{Scheme: "file", Path: uri, Raw: uri}, nil
	}
	if scheme == "file" {
		host, p, _ := strings.Cut(rest, "/")
		if host != "" && host != "localhost" {
			return Location{}, fmt.Errorf("%s: a file URI names an absolute path (file:///path); use a plain path for a relative one", uri)
		}
		return Location{Scheme: "file", Path: "/" + p, Raw: uri}, nil
	}
	bucket, p, _ := strings.Cut(rest, "/")
	if bucket == "" {
		return Location{}, fmt.Errorf("%s: no bucket", uri)
	}
	return Location{Scheme: scheme, Bucket: bucket, Path: p, Raw: uri}, nil
}

// Store is a location opened through its backend, with what every backend
// needs once: names checked, errors wrapped with the operation and the URI,
// conditional writes retried, and writes to one name paced. It is safe for
// concurrent use.
type Store struct {
	b   Backend
	loc Location
}

// Open opens the location uri as a folder: keys are relative to it.
func Open(ctx context.Context, uri string) (*Store, error) {
	loc, err := Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("open %w", err)
	}
	return open(ctx, loc)
}

func open(ctx context.Context, loc Location) (*Store, error) {
	registry.RLock()
	opener := registry.m[loc.Scheme]
	registry.RUnlock()
	if opener == nil {
		return nil, fmt.Errorf("open %s: %w: scheme %q (want a path, file://, %s)", loc.Raw, ErrUnsupported, loc.Scheme,
			strings.Join(remoteSchemes(), ", "))
	}
	b, err := opener(ctx, loc)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", loc.Raw, err)
	}
	return &Store{b: b, loc: loc}, nil
}

// Forms describes the location URLs the registered backends take, for help
// text and messages: "a path, file://…, or abfss://, az://, gs://, s3://
// bucket/prefix".
func Forms() string {
	return "a path, file://…, or " + strings.Join(remoteSchemes(), ", ") + " bucket/prefix"
}

func remoteSchemes() []string {
	var out []string
	for _, s := range Schemes() {
		if s != "file" {
			out = append(out, s+"://")
		}
	}
	return out
}

// OpenObjectOrFolder opens uri as a source: when it names one object (a
// local file, or a remote object whose name does not end in "/"), the Store
// is rooted at its folder and key is the object's name there; otherwise the
// Store is rooted at uri and key is "". Telling one from the other costs one
// Stat, whose failure other than not-found is returned.
func OpenObjectOrFolder(ctx context.Context, uri string) (s *Store, key string, err error) {
	loc, err := Parse(uri)
	if err != nil {
		return nil, "", fmt.Errorf("open %w", err)
	}
	p := strings.TrimRight(loc.Path, "/")
	if loc.Scheme == "file" {
		p = filepath.Clean(loc.Path)
	}
	if p == "" || p == "." || p == "/" || (loc.Scheme != "file" && strings.HasSuffix(loc.Path, "/")) {
		s, err := open(ctx, loc)
		return s, "", err
	}
	dir, base := path.Split(filepath.ToSlash(p))
	parent := loc
	parent.Path = dir
	if loc.Scheme == "file" {
		parent.Path = filepath.Dir(p)
	}
	ps, err := open(ctx, parent)
	if err != nil {
		return nil, "", err
	}
	a, err := ps.b.Stat(ctx, base)
	switch {
	case err == nil || a.Loop:
		return ps, base, nil
	case errors.Is(err, ErrNotFound):
		s, err := open(ctx, loc)
		return s, "", err
	default:
		return nil, "", fmt.Errorf("stat %s: %w", ps.b.URI(base), err)
	}
}

// Root is the location the Store was opened at, as given.
func (s *Store) Root() string { return s.loc.Raw }

// Scheme is the Store's backend: "file" for local disk, else gs, s3, az.
func (s *Store) Scheme() string { return s.loc.Scheme }

// URI names key for people and messages.
func (s *Store) URI(key string) string { return s.b.URI(key) }

// Name is key's whole slash path within its bucket.
func (s *Store) Name(key string) string { return s.b.Name(key) }

// Backend is the Store's backend, without the Store's pacing and retries:
// for the conformance suite, which races writers at the backend itself.
func (s *Store) Backend() Backend { return s.b }

// ListPageSize is how many objects a remote backend asks for per listing
// page (the services' own maximum is 1,000 to 5,000). Tests lower it to
// cross pages with a few objects.
var ListPageSize atomic.Int32

func init() { ListPageSize.Store(1000) }

// As is the escape hatch to the backend's native client; see Backend.As.
func (s *Store) As(target any) bool { return s.b.As(target) }

// CheckKey refuses a key that could leave the root: empty, absolute, with a
// backslash, a ".." segment, or not in clean form.
func CheckKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.Contains(key, "\\") ||
		slices.Contains(strings.Split(key, "/"), "..") || path.Clean(key) != key {
		return fmt.Errorf("invalid object name %q", key)
	}
	return nil
}

// List calls fn for every object under prefix (relative to the root),
// recursively, in no particular order.
func (s *Store) List(ctx context.Context, prefix string, fn func(Attrs) error) error {
	mark := func(a Attrs) error {
		if strings.HasSuffix(a.Key, "/") && a.Skip == "" {
			a.Skip = SkipFolder
		}
		return fn(a)
	}
	if err := s.b.List(ctx, prefix, mark); err != nil {
		return fmt.Errorf("list %s: %w", s.b.URI(prefix), err)
	}
	return nil
}

// ListKeys returns the keys under prefix, sorted.
func (s *Store) ListKeys(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	err := s.List(ctx, prefix, func(a Attrs) error {
		if a.Skip == "" && !a.Loop {
			keys = append(keys, a.Key)
		}
		return nil
	})
	slices.Sort(keys)
	return keys, err
}

// Stat returns key's current version.
func (s *Store) Stat(ctx context.Context, key string) (Attrs, error) {
	a, err := s.b.Stat(ctx, key)
	if err != nil {
		return a, fmt.Errorf("stat %s: %w", s.b.URI(key), err) // a may say Loop
	}
	return a, nil
}

// Open opens key for ranged reads, pinned to version when it is not "".
// The Reader's reads are bound to ctx: cancel it only when done reading.
func (s *Store) Open(ctx context.Context, key, version string) (Reader, Attrs, error) {
	r, a, err := s.b.Open(ctx, key, version)
	if err != nil {
		return nil, Attrs{}, fmt.Errorf("open %s: %w", s.b.URI(key), err)
	}
	return r, a, nil
}

// OpenListed opens the version of key that a listing gave (a.Version and
// a.Size), like Open, but without the metadata request Open makes on a
// remote store: the listing already said what Open would. A version gone
// since is found by the first read (ErrNotFound) instead of here. A backend
// that cannot pin (local disk), or attributes without a version, take Open.
func (s *Store) OpenListed(ctx context.Context, key string, a Attrs) (Reader, Attrs, error) {
	if lo, ok := s.b.(ListedOpener); ok && a.Version != "" && a.Size > 0 && key != "" {
		a.Key = key
		r, err := lo.OpenListed(ctx, key, a)
		if err != nil {
			return nil, Attrs{}, fmt.Errorf("open %s: %w", s.b.URI(key), err)
		}
		return r, a, nil
	}
	return s.Open(ctx, key, a.Version)
}

// Read returns the whole object and its version.
func (s *Store) Read(ctx context.Context, key string) ([]byte, string, error) {
	if err := CheckKey(key); err != nil {
		return nil, "", fmt.Errorf("read %s: %w", s.b.URI(key), err)
	}
	var buf bytes.Buffer
	v, err := s.b.Get(ctx, key, &buf)
	if err != nil {
		return nil, "", fmt.Errorf("read %s: %w", s.b.URI(key), err)
	}
	return buf.Bytes(), v, nil
}

// ReadFile copies the object to the local file dst (replaced whole, through
// a temporary file) and returns its version: for objects too big to hold
// in memory.
func (s *Store) ReadFile(ctx context.Context, key, dst string) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", fmt.Errorf("read %s: %w", s.b.URI(key), err)
	}
	var v string
	err := replaceFile(dst, func(w io.Writer) error {
		var err error
		v, err = s.b.Get(ctx, key, w)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("read %s: %w", s.b.URI(key), err)
	}
	return v, nil
}

// Write stores data as key under pre and returns the new version. A
// transient failure is retried with backoff until ctx's deadline
// (WriteRetryFor if it has none): under its precondition a write is
// idempotent, and an attempt whose answer was lost but which landed is
// recognised by reading the object back. Writes to one name are paced to
// one a second (MinWriteInterval), the rate GCS allows, on every backend.
func (s *Store) Write(ctx context.Context, key string, data []byte, pre Precondition) (string, error) {
	v, err := s.put(ctx, key, bytes.NewReader(data), int64(len(data)), pre, func() (bool, error) {
		cur, _, err := s.Read(ctx, key)
		return err == nil && bytes.Equal(cur, data), nil
	})
	if err != nil {
		return "", fmt.Errorf("write %s: %w", s.b.URI(key), err)
	}
	return v, nil
}

// WriteFile stores the local file src as key, streamed, as Write does.
func (s *Store) WriteFile(ctx context.Context, key, src string, pre Precondition) (string, error) {
	f, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("write %s: %w", s.b.URI(key), err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("write %s: %w", s.b.URI(key), err)
	}
	v, err := s.put(ctx, key, f, fi.Size(), pre, func() (bool, error) {
		a, err := s.b.Stat(ctx, key)
		return err == nil && a.Size == fi.Size() && sameFile(ctx, s, key, src), nil
	})
	if err != nil {
		return "", fmt.Errorf("write %s: %w", s.b.URI(key), err)
	}
	return v, nil
}

// sameFile reports whether the object holds the bytes of the local file,
// comparing digests of both streamed: the file may be a large snapshot.
func sameFile(ctx context.Context, s *Store, key, src string) bool {
	f, err := os.Open(src)
	if err != nil {
		return false
	}
	defer f.Close()
	want := sha256.New()
	if _, err := io.Copy(want, f); err != nil {
		return false
	}
	got := sha256.New()
	if _, err := s.b.Get(ctx, key, got); err != nil {
		return false
	}
	return bytes.Equal(got.Sum(nil), want.Sum(nil))
}

// Delete removes key; an absent key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := CheckKey(key); err != nil {
		return fmt.Errorf("delete %s: %w", s.b.URI(key), err)
	}
	if err := s.b.Delete(ctx, key); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("delete %s: %w", s.b.URI(key), err)
	}
	return nil
}

// put is one paced write with retries. landed reports whether the object
// now holds exactly these bytes: asked after a precondition failure that
// follows a failed attempt whose outcome is unknown.
func (s *Store) put(ctx context.Context, key string, r io.ReadSeeker, size int64, pre Precondition, landed func() (bool, error)) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", err
	}
	release, err := pace(ctx, s.b.URI(key))
	if err != nil {
		return "", err
	}
	defer release()
	// One request carries the whole object: allow 1 s per MiB beyond the
	// call timeout.
	perAttempt := CallTimeout + time.Duration(size>>20)*time.Second
	var v string
	err = retry(ctx, perAttempt, func(ctx context.Context, retried bool) error {
		if _, err := r.Seek(0, io.SeekStart); err != nil {
			return err
		}
		var err error
		v, err = s.b.Put(ctx, key, r, size, pre)
		if retried && errors.Is(err, ErrPrecondition) {
			if ok, _ := landed(); ok {
				a, serr := s.b.Stat(ctx, key)
				if serr == nil {
					v = a.Version
					return nil
				}
			}
		}
		return err
	})
	return v, err
}

// MinWriteInterval is the least time between two writes to one object name
// from this process: GCS documents one write a second to one name, and the
// other backends are held to the same so that a state moved between them
// behaves alike.
var MinWriteInterval = time.Second

// writes paces writes per object URI, process-wide: two Stores opened on one
// location share it.
var writes = struct {
	sync.Mutex
	last  map[string]time.Time // start of the last write to the name
	busy  map[string]chan struct{}
	stats map[string]WriteStat
}{last: map[string]time.Time{}, busy: map[string]chan struct{}{}, stats: map[string]WriteStat{}}

// WriteStat is what this process wrote to one object name: how many writes
// were made and the shortest time between the starts of two of them.
type WriteStat struct {
	Writes int64
	MinGap time.Duration // 0 until the second write
}

// WriteStats returns the WriteStat of the object uri (as Store.URI names
// it): what the benchmark table and the tests read to show that no name is
// written more than once per MinWriteInterval.
func WriteStats(uri string) WriteStat {
	writes.Lock()
	defer writes.Unlock()
	return writes.stats[uri]
}

// pace waits until no other write to uri is under way and MinWriteInterval
// has passed since the last one started (GCS counts a write where it
// starts); release lets the next one go.
func pace(ctx context.Context, uri string) (release func(), err error) {
	for {
		writes.Lock()
		if ch, ok := writes.busy[uri]; ok {
			writes.Unlock()
			select {
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			case <-ch:
			}
			continue
		}
		ch := make(chan struct{})
		writes.busy[uri] = ch
		last := writes.last[uri]
		wait := time.Until(last.Add(MinWriteInterval))
		writes.Unlock()
		done := func() {
			writes.Lock()
			delete(writes.busy, uri)
			writes.Unlock()
			close(ch)
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				writes.Lock()
				delete(writes.busy, uri)
				writes.Unlock()
				close(ch)
				return nil, context.Cause(ctx)
			case <-t.C:
			}
		}
		now := time.Now()
		writes.Lock()
		st := writes.stats[uri]
		if !last.IsZero() && (st.MinGap == 0 || now.Sub(last) < st.MinGap) {
			st.MinGap = now.Sub(last)
		}
		st.Writes++
		writes.stats[uri] = st
		writes.last[uri] = now
		writes.Unlock()
		return done, nil
	}
}

// replaceFile writes dst through a temporary file in its folder, renamed
// over it when fill succeeds.
func replaceFile(dst string, fill func(io.Writer) error) error {
	f, err := localfile.Create(dst)
	if err != nil {
		return err
	}
	if err := fill(f); err != nil {
		f.Abort()
		return err
	}
	return f.Commit(false)
}
