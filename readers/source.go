package readers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/convertro-etl/convertro-etl/objstore"
)

// SourceOptions configure OpenSource. The zero value lists everything.
type SourceOptions struct {
	// From and To bound the partition days listed, inclusive; only their
	// calendar dates count. A zero value leaves that side open.
	From, To time.Time
	// Logger receives a progress line about every 10 s while a listing
	// runs. Nil: no progress lines.
	Logger *slog.Logger
	// TableVersions are the versions to read Delta tables at, by the
	// table's URI (TableVersion.URI); a table not named is read at its
	// latest version.
	TableVersions map[string]int64
	// Since and Delivered describe what a recurring job delivered: the
	// version of each Delta table its last finished run read (by URI), and
	// which files' rows it delivered (by object URI). A file that commits
	// after that version added only to rearrange delivered files (OPTIMIZE:
	// dataChange false) is listed as Carried. Nil: nothing is carried.
	Since     map[string]int64
	Delivered func(uri string) bool
	// ReadConcurrency bounds the ranged reads of the source's objects in
	// flight at once, whatever number of decoders asks for them. 0:
	// DefaultReadConcurrency.
	ReadConcurrency int
	// MemoryBudget bounds the bytes of the source's objects held in
	// memory: the row groups decoded and read ahead, and the footers kept.
	// One budget may serve several sources. Nil: a budget of
	// DefaultMemoryBudget shared by every Source opened without one.
	MemoryBudget *MemoryBudget
}

// Skip reasons: why a listed object is not data.
const (
	SkipFolder       = objstore.SkipFolder
	SkipEmpty        = "empty object"
	SkipDeltaLog     = "delta log"
	SkipMarker       = "_SUCCESS marker"
	SkipChecksum     = "checksum file"
	SkipJSON         = "json report"
	SkipHidden       = "hidden file"
	SkipSymlinkedDir = objstore.SkipSymlinkedDir
	SkipNotRegular   = objstore.SkipNotRegular
)

// Skipped is an object the listing left out because it is not data.
type Skipped struct {
	URI, Reason string
}

// Listing is the result of Scan: the data objects, the objects that are not
// data, and what the date filter did.
type Listing struct {
	// Objects are the data objects within the date range, sorted by Key.
	Objects []Object
	// Skipped are the objects that are not data, sorted by URI.
	Skipped []Skipped
	// OutOfRange counts data objects left out by the date range.
	OutOfRange int
	// Undated counts objects kept although a date range was given, because
	// their path holds no day partition.
	Undated int
	// Tables are the Delta tables read, with the version read, sorted by URI.
	Tables []TableVersion
	// Rewritten counts the delivered files (SourceOptions.Delivered) that
	// a commit since SourceOptions.Since removed while changing data
	// (DELETE, UPDATE, MERGE): the rows they kept are in the files that
	// replaced them, which are read whole.
	Rewritten int
}

// Source is one --source: a folder or a single object, on local disk or in
// any object store objstore serves. It lists objects and opens them pinned
// to the version that was listed.
type Source struct {
	uri      string
	st       *objstore.Store
	single   string       // the key of the single object the source names, or "" for a folder
	from, to time.Time    // UTC midnights; zero = open
	log      *slog.Logger // nil: no progress lines
	versions map[string]int64
	since    map[string]int64
	done     func(uri string) bool
	slots    chan struct{} // one per ranged read in flight
	footers  footerCache
	tailSize tailSizer
}

// OpenSource prepares a source: a local path, a file:// URI, or
// scheme://bucket[/prefix] of a registered object store (gs, s3, az). A
// path or URI naming one object lists that object alone; otherwise it names
// a folder (a prefix is taken as a folder: gs://b/tracks does not list
// gs://b/tracks_old/...). Telling one from the other costs a stat here (one
// metadata request on a remote store, whose failure other than not-found is
// returned); a missing source is reported by List.
func OpenSource(ctx context.Context, uri string, o SourceOptions) (*Source, error) {
	if o.ReadConcurrency <= 0 {
		o.ReadConcurrency = DefaultReadConcurrency
	}
	s := &Source{uri: uri, log: o.Logger, versions: o.TableVersions, since: o.Since, done: o.Delivered,
		slots: make(chan struct{}, o.ReadConcurrency), footers: footerCache{budget: cmp.Or(o.MemoryBudget, defaultBudget)}}
	if !o.From.IsZero() {
		s.from = dayOf(o.From)
	}
	if !o.To.IsZero() {
		s.to = dayOf(o.To)
	}
	if !s.from.IsZero() && !s.to.IsZero() && s.from.After(s.to) {
		return nil, fmt.Errorf("open source %s: --from %s is after --to %s", uri,
			s.from.Format(time.DateOnly), s.to.Format(time.DateOnly))
	}
	st, single, err := objstore.OpenObjectOrFolder(ctx, uri)
	if err != nil {
		return nil, err // names the source
	}
	s.st, s.single = st, single
	s.footers.off = s.Local()
	return s, nil
}

// URI is the source as given to OpenSource.
func (s *Source) URI() string { return s.uri }

// Local says the source is on local disk, whose reads answer at once:
// reading its row groups ahead hides no latency.
func (s *Source) Local() bool { return s.st.Scheme() == "file" }

// Close releases nothing today (clients are shared by the process); it is
// kept so that callers need not change when a Source holds resources.
func (s *Source) Close() error { return nil }

// List returns the data objects within the date range, sorted by Key, and
// the objects that are not data with the reason. See Scan.
func (s *Source) List(ctx context.Context) ([]Object, []Skipped, error) {
	l, err := s.Scan(ctx)
	return l.Objects, l.Skipped, err
}

// Scan lists the source. Objects that are not data are skipped with a
// reason: "folder/" placeholders, zero-size objects, anything under
// _delta_log/, _SUCCESS, *.crc, *.json, and names (or folders below the
// source root) starting with "." or "_". Everything else is data, whatever
// its extension, so that a stray file fails loudly in the Parquet reader
// instead of vanishing. With a date range, objects whose path has a day
// partition outside it are counted in OutOfRange; objects without one are
// kept and counted in Undated.
//
// A folder holding _delta_log/ is a Delta table: of the objects below it,
// only the files of the table version read are data, with the partition
// the log gives them; the others are skipped as SkipNotInTable (see the
// package doc). An Iceberg table is ErrUnsupported.
//
// A source under which nothing at all is listed (a missing folder, bucket or
// prefix) is ErrNotFound.
func (s *Source) Scan(ctx context.Context) (Listing, error) {
	var objs []Object
	l, err := s.Visit(ctx, func(o Object) { objs = append(objs, o) })
	if err != nil {
		return Listing{}, err
	}
	slices.SortFunc(objs, func(a, b Object) int { return cmp.Compare(a.Key, b.Key) })
	l.Objects = objs
	return l, nil
}

// Visit lists the source as Scan does, but hands each data object to fn as
// it is found, in no set order, instead of returning them in
// Listing.Objects (left nil): a caller that keeps some of them (a shard its
// own share) never holds the others. What is listed below the source is
// still held until Visit returns, as the Delta tables found in it decide
// which objects are data. fn is called from Visit's goroutine; an error
// found after it was called (a Delta file missing from the listing) fails
// Visit all the same.
func (s *Source) Visit(ctx context.Context, fn func(Object)) (Listing, error) {
	p := listProgress{log: s.log, uri: s.uri, now: time.Now}
	entries, err := s.list(ctx, p.seen)
	if err != nil {
		return Listing{}, err
	}
	if len(entries) == 0 {
		return Listing{}, fmt.Errorf("list %s: %w: no objects", s.uri, ErrNotFound)
	}
	var l Listing
	tables, err := s.deltaTables(ctx, entries)
	if err != nil {
		return Listing{}, err
	}
	for _, t := range tables {
		l.Tables = append(l.Tables, TableVersion{URI: t.uri, Version: t.version})
		l.Rewritten += t.rewritten
	}
	slices.SortFunc(l.Tables, func(a, b TableVersion) int { return cmp.Compare(a.URI, b.URI) })
	listed := map[string]bool{}
	filtering := !s.from.IsZero() || !s.to.IsZero()
	for i, e := range entries {
		// Each entry is let go once taken: a listing of a million objects
		// is then not held whole beside what the caller keeps of it.
		entries[i] = objstore.Attrs{}
		t := tableOf(tables, e.Key)
		if t != nil && t.files[e.Key] != nil {
			listed[e.Key] = true
		}
		if reason := skipReason(e); reason != "" {
			l.Skipped = append(l.Skipped, Skipped{URI: s.st.URI(e.Key), Reason: reason})
			continue
		}
		var p Partition
		if t != nil {
			a := t.files[e.Key]
			if a == nil {
				l.Skipped = append(l.Skipped, Skipped{URI: s.st.URI(e.Key), Reason: SkipNotInTable})
				continue
			}
			p = t.partition(s.st, a)
		} else {
			p = ParsePartition(s.st.Name(e.Key))
		}
		if filtering {
			if !p.HasDay {
				l.Undated++
			} else if (!s.from.IsZero() && p.Day.Before(s.from)) || (!s.to.IsZero() && p.Day.After(s.to)) {
				l.OutOfRange++
				continue
			}
		}
		uri, key := s.st.URI(e.Key), e.Key
		if strings.HasSuffix(uri, key) {
			// The key shares the URI's bytes: a listing held for the whole
			// run then keeps each path once.
			key = uri[len(uri)-len(key):]
		}
		fn(Object{
			URI: uri, Key: key, Size: e.Size, Version: e.Version, Partition: p,
			Carried: t != nil && t.carried[e.Key],
		})
	}
	if err := missingFiles(tables, listed); err != nil {
		return Listing{}, err
	}
	slices.SortFunc(l.Skipped, func(a, b Skipped) int { return cmp.Compare(a.URI, b.URI) })
	return l, nil
}

// list returns every object at or under the root, keys relative to it,
// calling seen once per object as it goes.
func (s *Source) list(ctx context.Context, seen func()) ([]objstore.Attrs, error) {
	if s.single != "" {
		a, err := s.st.Stat(ctx, s.single)
		if err != nil && !a.Loop {
			return nil, fmt.Errorf("list %s: %w", s.uri, unwrapStat(err))
		}
		a.Key = s.single
		seen()
		return []objstore.Attrs{a}, nil
	}
	var out []objstore.Attrs
	err := s.st.List(ctx, "", func(a objstore.Attrs) error {
		seen()
		out = append(out, a)
		return nil
	})
	return out, err
}

// unwrapStat keeps the kind of a Stat error and drops its "stat <uri>:"
// (List names the source).
func unwrapStat(err error) error {
	if u := errors.Unwrap(err); u != nil {
		return u
	}
	return err
}

// listProgressEvery is how often a running listing logs how far it got.
var listProgressEvery = 10 * time.Second

// listProgress logs how many objects a listing has seen, every
// listProgressEvery, so that a listing of millions of objects is not silent.
type listProgress struct {
	log   *slog.Logger
	uri   string
	now   func() time.Time
	n     int
	start time.Time // when the listing started, or the last line was logged
}

func (p *listProgress) seen() {
	p.n++
	if p.log == nil {
		return
	}
	t := p.now()
	if p.start.IsZero() {
		p.start = t
		return
	}
	if t.Sub(p.start) >= listProgressEvery {
		p.start = t
		p.log.Info(fmt.Sprintf("listed %d objects under %s so far", p.n, p.uri), "source", p.uri, "listed", p.n)
	}
}

// skipReason says why e is not data, or "" if it is.
func skipReason(e objstore.Attrs) string {
	key := e.Key
	if e.Skip != "" {
		return e.Skip
	}
	if key == "" || strings.HasSuffix(key, "/") { // "" is a placeholder for the root itself
		return SkipFolder
	}
	parts := strings.Split(key, "/")
	base := parts[len(parts)-1]
	lower := strings.ToLower(base)
	switch {
	case slices.Contains(parts[:len(parts)-1], "_delta_log"):
		return SkipDeltaLog
	case base == "_SUCCESS":
		return SkipMarker
	case strings.HasSuffix(lower, ".crc"):
		return SkipChecksum
	case strings.HasSuffix(lower, ".json"):
		return SkipJSON
	}
	for _, p := range parts {
		if strings.HasPrefix(p, ".") || strings.HasPrefix(p, "_") {
			return SkipHidden
		}
	}
	if e.Size == 0 && !e.Loop {
		return SkipEmpty
	}
	return ""
}

// Open opens the object version that was listed. If the object is gone it
// returns ErrNotFound; if it was rewritten since it was listed (the listed
// version is gone but the object exists; local: size or modification time
// differ) it returns ErrChanged. An Object with no Version opens the
// current version and pins it.
//
// ctx governs the File's reads as well (io.ReaderAt has no context): cancel
// it only when done with the File.
func (s *Source) Open(ctx context.Context, o Object) (File, error) {
	uri := s.st.URI(o.Key)
	b, got, err := s.st.Open(ctx, o.Key, o.Version)
	if err != nil {
		err = s.gone(ctx, o.Key, o.Version, err)
		if errors.Is(err, ErrChanged) {
			return nil, fmt.Errorf("open %s: %w", uri, err)
		}
		return nil, readErr(err) // the Store named the object
	}
	if o.Version != "" && (got.Version != o.Version || got.Size != o.Size) {
		_ = b.Close()
		return nil, fmt.Errorf("open %s: %w (listed size %d version %s, now size %d version %s)",
			uri, ErrChanged, o.Size, o.Version, got.Size, got.Version)
	}
	return &file{src: s, ctx: ctx, b: b, key: o.Key, uri: uri, size: got.Size, version: got.Version}, nil
}

// OpenListed opens the object version that was listed, like Open, but
// trusts the listing's version and size instead of asking the store again:
// on a remote store it makes no request. A version gone since the listing
// is then found by the first read, as ErrChanged (or ErrNotFound when the
// object is gone), where Open would find it. An Object with no Version is
// opened by Open.
func (s *Source) OpenListed(ctx context.Context, o Object) (File, error) {
	if o.Version == "" {
		return s.Open(ctx, o)
	}
	uri := s.st.URI(o.Key)
	b, got, err := s.st.OpenListed(ctx, o.Key, objstore.Attrs{Size: o.Size, Version: o.Version})
	if err != nil {
		err = s.gone(ctx, o.Key, o.Version, err)
		if errors.Is(err, ErrChanged) {
			return nil, fmt.Errorf("open %s: %w", uri, err)
		}
		return nil, readErr(err)
	}
	if got.Version != o.Version || got.Size != o.Size {
		_ = b.Close()
		return nil, fmt.Errorf("open %s: %w (listed size %d version %s, now size %d version %s)",
			uri, ErrChanged, o.Size, o.Version, got.Size, got.Version)
	}
	return &file{src: s, ctx: ctx, b: b, key: o.Key, uri: uri, size: got.Size, version: got.Version}, nil
}

// gone turns ErrNotFound for a pinned version into ErrChanged when the
// object still exists: it was rewritten, not deleted.
func (s *Source) gone(ctx context.Context, key, version string, err error) error {
	if version == "" || !errors.Is(err, ErrNotFound) {
		return err
	}
	if cur, serr := s.st.Stat(ctx, key); serr == nil && cur.Version != version {
		return fmt.Errorf("%w (version %s is gone, now version %s)", ErrChanged, version, cur.Version)
	}
	return err
}

// file is the File every backend's reader becomes: read bounds, version
// checks and error wrapping are here, once.
type file struct {
	src     *Source
	ctx     context.Context
	b       objstore.Reader
	key     string
	uri     string
	size    int64
	version string
	closed  atomic.Bool
}

func (f *file) Size() int64 { return f.size }

// ReadAt follows io.ReaderAt: it returns len(p) bytes, or fewer with io.EOF
// at the end of the object. A failed read, or one during which the object
// changed, returns 0 bytes and the error (ErrChanged for a change), so that
// no caller can use bytes of another version. It is safe for concurrent use.
func (f *file) ReadAt(p []byte, off int64) (int, error) {
	if f.closed.Load() {
		return 0, fmt.Errorf("read %s: %w", f.uri, fs.ErrClosed)
	}
	if off < 0 {
		return 0, fmt.Errorf("read %s: negative offset %d", f.uri, off)
	}
	if off >= f.size {
		return 0, io.EOF
	}
	want := len(p)
	var eof error
	if int64(want) > f.size-off {
		want, eof = int(f.size-off), io.EOF
	}
	if want == 0 {
		return 0, nil
	}
	n, err := f.b.ReadAt(p[:want], off)
	if err != nil {
		return 0, fmt.Errorf("read %s at %d: %w", f.uri, off, readErr(f.src.gone(f.ctx, f.key, f.version, err)))
	}
	size, version, err := f.b.Version()
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", f.uri, readErr(err))
	}
	if size != f.size || version != f.version || n < want {
		// No byte of a read that saw another version counts: callers that
		// take a full buffer and ignore the error must not get them.
		return 0, fmt.Errorf("read %s at %d: %w (got %d of %d bytes; size %d version %s, now size %d version %s)",
			f.uri, off, ErrChanged, n, want, f.size, f.version, size, version)
	}
	return n, eof
}

func (f *file) readSlots() chan struct{} { return f.src.slots }
func (f *file) memory() *MemoryBudget    { return f.src.footers.budget }

// verify reports ErrChanged when the object is no longer the version
// opened: for bytes read earlier and served from memory.
func (f *file) verify() error {
	size, version, err := f.b.Version()
	if err != nil {
		return fmt.Errorf("read %s: %w", f.uri, readErr(err))
	}
	if size != f.size || version != f.version {
		return fmt.Errorf("read %s: %w (size %d version %s, now size %d version %s)",
			f.uri, ErrChanged, f.size, f.version, size, version)
	}
	return nil
}

func (f *file) cachedFooter() []byte { return f.src.footers.get(f.key, f.size, f.version) }
func (f *file) keepFooter(b []byte)  { f.src.footers.put(f.key, f.size, f.version, b) }
func (f *file) tails() *tailSizer    { return &f.src.tailSize }
func (f *file) dropFooter()          { f.src.footers.drop(f.key, f.size, f.version) }

func (f *file) Close() error {
	if f.closed.Swap(true) {
		return nil
	}
	if err := f.b.Close(); err != nil {
		return fmt.Errorf("close %s: %w", f.uri, err)
	}
	return nil
}

// readErr makes a symlink loop met while reading a bad file: data that
// cannot be read, set aside under --on-bad-file skip.
func readErr(err error) error {
	if errors.Is(err, syscall.ELOOP) {
		return fmt.Errorf("%w: %w", ErrBadFile, err)
	}
	return err
}
