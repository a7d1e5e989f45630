package readers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/storage"
)

// SourceOptions configure OpenSource. The zero value lists everything and
// creates its own GCS client when it needs one.
type SourceOptions struct {
	// From and To bound the partition days listed, inclusive; only their
	// calendar dates count. A zero value leaves that side open.
	From, To time.Time
	// GCSClient serves gs:// sources. Nil: the Source creates one with
	// NewGCSClient and closes it in Close. A client passed in is never closed.
	GCSClient *storage.Client
	// Logger receives a progress line about every 10 s while a listing
	// runs. Nil: no progress lines.
	Logger *slog.Logger
}

// Skip reasons: why a listed object is not data.
const (
	SkipFolder       = "folder placeholder"
	SkipEmpty        = "empty object"
	SkipDeltaLog     = "delta log"
	SkipMarker       = "_SUCCESS marker"
	SkipChecksum     = "checksum file"
	SkipJSON         = "json report"
	SkipHidden       = "hidden file"
	SkipSymlinkedDir = "symlinked folder not followed"
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
}

// Source is one --source: a local folder or file, or a GCS prefix or object.
// It lists objects and opens them pinned to the version that was listed.
type Source struct {
	uri      string
	d        driver
	from, to time.Time // UTC midnights; zero = open
	close    func() error
	log      *slog.Logger // nil: no progress lines
}

// driver is what a storage backend must do; everything else (skipping,
// partitions, filtering, sorting, version checks, read bounds, error
// wrapping) is Source's. Drivers return ErrNotFound (wrapped) for missing
// objects and do not name the object in their errors: Source does.
type driver interface {
	// list returns every object at or under the root, keys relative to it,
	// calling seen once per object as it goes (for progress).
	list(ctx context.Context, seen func()) ([]entry, error)
	// stat returns the object's current version.
	stat(ctx context.Context, key string) (entry, error)
	// open opens the object; GCS pins gen when it is not 0. The entry is the
	// version actually opened.
	open(ctx context.Context, key string, gen int64) (blob, entry, error)
	// uri names the object for people; name is its slash path for
	// partition parsing (GCS object name, local path).
	uri(key string) string
	name(key string) string
}

// entry is one listed object version.
type entry struct {
	key       string
	size, gen int64
	skip      string // a reason only the driver can see, e.g. a symlinked folder
	loop      bool   // a symlink loop: data that fails to open as a bad file
}

// blob is an opened object version. readAt is only asked for bytes within
// the planned size; version reports the version now behind the handle, so
// that a local file rewritten in place is noticed.
type blob interface {
	readAt(p []byte, off int64) (int, error)
	version() (size, gen int64, err error)
	close() error
}

// OpenSource prepares a source: a local path, a file:// URI, or
// gs://bucket[/prefix]. A path or URI naming one object lists that object
// alone; otherwise it names a folder (a GCS prefix is taken as a folder:
// gs://b/tracks does not list gs://b/tracks_old/...). Telling one from the
// other costs a stat here (on GCS, one metadata request, whose failure other
// than not-found is returned); a missing source is reported by List.
func OpenSource(ctx context.Context, uri string, o SourceOptions) (*Source, error) {
	s := &Source{uri: uri, close: func() error { return nil }, log: o.Logger}
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
	scheme, rest, hasScheme := strings.Cut(uri, "://")
	switch {
	case !hasScheme:
		s.d = newDirDriver(uri)
	case scheme == "file":
		u, err := url.Parse(uri)
		if err != nil {
			return nil, fmt.Errorf("open source %s: %w", uri, err)
		}
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("open source %s: a file URI names an absolute path (file:///path); use a plain path for a relative one", uri)
		}
		s.d = newDirDriver(u.Path)
	case scheme == "gs":
		bucket, prefix, _ := strings.Cut(rest, "/")
		if bucket == "" {
			return nil, fmt.Errorf("open source %s: no bucket", uri)
		}
		client := o.GCSClient
		if client == nil {
			c, err := NewGCSClient(ctx)
			if err != nil {
				return nil, fmt.Errorf("open source %s: %w", uri, err)
			}
			client, s.close = c, sync.OnceValue(c.Close)
		}
		d, err := newGCSDriver(ctx, client, bucket, prefix)
		if err != nil {
			_ = s.close()
			return nil, fmt.Errorf("open source %s: %w", uri, err)
		}
		s.d = d
	default:
		return nil, fmt.Errorf("open source %s: unsupported scheme %q (want a path, file:// or gs://)", uri, scheme)
	}
	return s, nil
}

// URI is the source as given to OpenSource.
func (s *Source) URI() string { return s.uri }

// Close releases the GCS client the Source created, if any; calling it again
// does nothing. Files opened from the Source must be closed first.
func (s *Source) Close() error { return s.close() }

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
// A source under which nothing at all is listed (a missing folder, bucket or
// prefix) is ErrNotFound.
func (s *Source) Scan(ctx context.Context) (Listing, error) {
	p := listProgress{log: s.log, uri: s.uri, now: time.Now}
	entries, err := s.d.list(ctx, p.seen)
	if err != nil {
		return Listing{}, fmt.Errorf("list %s: %w", s.uri, err)
	}
	if len(entries) == 0 {
		return Listing{}, fmt.Errorf("list %s: %w: no objects", s.uri, ErrNotFound)
	}
	var l Listing
	filtering := !s.from.IsZero() || !s.to.IsZero()
	for _, e := range entries {
		if reason := skipReason(e); reason != "" {
			l.Skipped = append(l.Skipped, Skipped{URI: s.d.uri(e.key), Reason: reason})
			continue
		}
		p := ParsePartition(s.d.name(e.key))
		if filtering {
			if !p.HasDay {
				l.Undated++
			} else if (!s.from.IsZero() && p.Day.Before(s.from)) || (!s.to.IsZero() && p.Day.After(s.to)) {
				l.OutOfRange++
				continue
			}
		}
		l.Objects = append(l.Objects, Object{
			URI: s.d.uri(e.key), Key: e.key, Size: e.size, Generation: e.gen, Partition: p,
		})
	}
	slices.SortFunc(l.Objects, func(a, b Object) int { return cmp.Compare(a.Key, b.Key) })
	slices.SortFunc(l.Skipped, func(a, b Skipped) int { return cmp.Compare(a.URI, b.URI) })
	return l, nil
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
func skipReason(e entry) string {
	key := e.key
	if e.skip != "" {
		return e.skip
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
	if e.size == 0 && !e.loop {
		return SkipEmpty
	}
	return ""
}

// Open opens the object version that was listed. If the object is gone it
// returns ErrNotFound; if it was rewritten since it was listed (GCS: the
// listed generation is gone but the object exists; local: size or
// modification time differ) it returns ErrChanged. An Object with
// Generation 0 opens the current version and pins it.
//
// ctx governs the File's reads as well (io.ReaderAt has no context): cancel
// it only when done with the File.
func (s *Source) Open(ctx context.Context, o Object) (File, error) {
	uri := s.d.uri(o.Key)
	b, got, err := s.d.open(ctx, o.Key, o.Generation)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", uri, s.gone(ctx, o.Key, o.Generation, err))
	}
	if o.Generation != 0 && (got.gen != o.Generation || got.size != o.Size) {
		_ = b.close()
		return nil, fmt.Errorf("open %s: %w (listed size %d version %d, now size %d version %d)",
			uri, ErrChanged, o.Size, o.Generation, got.size, got.gen)
	}
	return &file{src: s, ctx: ctx, b: b, key: o.Key, uri: uri, size: got.size, gen: got.gen}, nil
}

// gone turns a driver's ErrNotFound for a pinned version into ErrChanged
// when the object still exists: it was rewritten, not deleted.
func (s *Source) gone(ctx context.Context, key string, gen int64, err error) error {
	if gen == 0 || !errors.Is(err, ErrNotFound) {
		return err
	}
	if cur, serr := s.d.stat(ctx, key); serr == nil && cur.gen != gen {
		return fmt.Errorf("%w (version %d is gone, now version %d)", ErrChanged, gen, cur.gen)
	}
	return err
}

// file is the File every driver returns: read bounds, version checks and
// error wrapping are here, once.
type file struct {
	src    *Source
	ctx    context.Context
	b      blob
	key    string
	uri    string
	size   int64
	gen    int64
	closed atomic.Bool
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
	n, err := f.b.readAt(p[:want], off)
	if err != nil {
		return 0, fmt.Errorf("read %s at %d: %w", f.uri, off, f.src.gone(f.ctx, f.key, f.gen, err))
	}
	size, gen, err := f.b.version()
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", f.uri, err)
	}
	if size != f.size || gen != f.gen || n < want {
		// No byte of a read that saw another version counts: callers that
		// take a full buffer and ignore the error must not get them.
		return 0, fmt.Errorf("read %s at %d: %w (got %d of %d bytes; size %d version %d, now size %d version %d)",
			f.uri, off, ErrChanged, n, want, f.size, f.gen, size, gen)
	}
	return n, eof
}

func (f *file) Close() error {
	if f.closed.Swap(true) {
		return nil
	}
	if err := f.b.close(); err != nil {
		return fmt.Errorf("close %s: %w", f.uri, err)
	}
	return nil
}
