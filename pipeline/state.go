package pipeline

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/convertro-etl/convertro-etl/internal/gcscall"
)

// Error kinds of a StateStore. Every store maps its backend's errors to these
// once, so callers never look at HTTP codes or errno values.
var (
	// ErrStateNotFound: the named state object does not exist.
	ErrStateNotFound = errors.New("state not found")
	// ErrPrecondition: a conditional write found another generation than the
	// one it was given (or an object where none was expected).
	ErrPrecondition = errors.New("generation precondition failed")
)

// Special values of StateStore.Write's ifGen.
const (
	IfAbsent      int64 = 0  // the object must not exist yet
	Unconditional int64 = -1 // overwrite whatever is there
)

// StateStore keeps the small objects of a job's state (manifests, reports)
// in a local folder or under gs://bucket/prefix. Names are relative,
// slash-separated and never contain "..".
//
// Generations are opaque non-zero int64 tokens: every successful Write
// produces one that no earlier version of the object had, and Read returns
// the token of exactly the bytes it returns. That makes Write with ifGen a
// compare-and-swap, which is what fences a second runner out of a job.
type StateStore interface {
	// Read returns the object and its generation; ErrStateNotFound if absent.
	Read(ctx context.Context, name string) (data []byte, gen int64, err error)
	// Write replaces the object as a whole (readers see the old or the new
	// bytes, never a mix) if its generation is ifGen: IfAbsent (0) = it must
	// not exist, Unconditional (-1) = any. A mismatch is ErrPrecondition.
	Write(ctx context.Context, name string, data []byte, ifGen int64) (gen int64, err error)
	// Delete removes the object; deleting an absent object is not an error.
	Delete(ctx context.Context, name string) error
	// URI names the object for messages: a local path or gs://bucket/key.
	URI(name string) string
}

// stateLister is the optional extra that ListManifests needs; both built-in
// stores have it.
type stateLister interface {
	// List returns the names under prefix, sorted.
	List(ctx context.Context, prefix string) ([]string, error)
}

// OpenState opens the state location uri: a local folder (a plain path or
// file://path, created if missing) or gs://bucket/prefix. gcs is the client
// for gs:// locations; nil creates one from the environment (Application
// Default Credentials, STORAGE_EMULATOR_HOST) that lives as long as the
// process. Opening a local folder removes the temporary files that writes
// killed midway left in it (see dirStore).
func OpenState(ctx context.Context, uri string, gcs *storage.Client) (StateStore, error) {
	switch {
	case uri == "":
		return nil, errors.New("open state: empty location")
	case strings.HasPrefix(uri, "gs://"):
		bucket, prefix, _ := strings.Cut(strings.TrimPrefix(uri, "gs://"), "/")
		if bucket == "" {
			return nil, fmt.Errorf("open state %s: no bucket", uri)
		}
		if gcs == nil {
			var err error
			// JSON reads (the emulators behind STORAGE_EMULATOR_HOST do not
			// serve the XML read path, and a manifest read there came back
			// "not found" although the write had landed) and bounded
			// retries, as readers.NewGCSClient.
			if gcs, err = gcscall.NewClient(ctx); err != nil {
				return nil, fmt.Errorf("open state %s: %w", uri, err)
			}
		}
		return &gcsStore{bucket: gcs.Bucket(bucket), bucketName: bucket, prefix: strings.Trim(prefix, "/")}, nil
	case strings.HasPrefix(uri, "file://"):
		return openDirStore(uri, strings.TrimPrefix(uri, "file://"))
	case strings.Contains(uri, "://"):
		return nil, fmt.Errorf("open state %s: unsupported scheme (want a path, file:// or gs://)", uri)
	default:
		return openDirStore(uri, uri)
	}
}

func checkName(name string) error {
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "\\") ||
		slices.Contains(strings.Split(name, "/"), "..") || path.Clean(name) != name {
		return fmt.Errorf("invalid state object name %q", name)
	}
	return nil
}

func checkIfGen(ifGen int64) error {
	if ifGen < Unconditional {
		return fmt.Errorf("invalid generation precondition %d", ifGen)
	}
	return nil
}

// ---- local folder ----

// dirStore keeps state in a local folder. A write goes to a temporary file
// in the same folder, is fsynced, renamed over the name and the folder is
// fsynced, so a crash leaves the old or the new object. Files and folders are
// created with modes 0666 and 0777 less the process's umask, as every other
// file the user creates (umask 077 keeps the state private; 022 lets other
// users run status on it). A temporary file is named
// .<name>.<random>.convertro-etl.tmp; one that a killed write left behind
// is removed when the folder is next opened, once it is an hour old. Generations are
// emulated: a hash of the file's device, inode and modification time, where
// every write sets the new file's modification time strictly after the old
// one's. The check of ifGen and the rename happen under an flock on a lock
// file in the folder, so two processes (or goroutines) cannot both pass the
// check; reads take no lock, since a renamed file is never modified in place.
type dirStore struct{ dir string }

const dirLockName = ".convertro-state.lock"

func openDirStore(uri, dir string) (*dirStore, error) {
	if dir == "" {
		return nil, fmt.Errorf("open state %s: empty path", uri)
	}
	dir = filepath.Clean(dir)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, fmt.Errorf("open state %s: %w", uri, err)
	}
	if err := removeOrphanTemps(dir, time.Now().Add(-orphanTempAge)); err != nil {
		return nil, fmt.Errorf("open state %s: %w", uri, err)
	}
	return &dirStore{dir: dir}, nil
}

const (
	// tempSuffix ends the name of every temporary file of a dirStore write:
	// a name no one else uses, so removing orphans removes only ours.
	tempSuffix = ".convertro-etl.tmp"
	// orphanTempAge is the age after which a temporary file is an orphan. A
	// write holds its temporary file for the time it takes to copy and
	// fsync it, and renames it to its name under a lock it waits for at
	// most lockWait: far less than this.
	orphanTempAge = time.Hour
	// lockWait bounds the wait for the folder's lock when ctx allows more.
	lockWait = 30 * time.Second
)

// createTemp creates a new temporary file for the object at path p, with
// mode 0666 less the umask (os.CreateTemp would force 0600).
func createTemp(p string) (*os.File, error) {
	for range 100 {
		var b [8]byte
		rand.Read(b[:])
		name := filepath.Join(filepath.Dir(p), "."+filepath.Base(p)+"."+hex.EncodeToString(b[:])+tempSuffix)
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if !errors.Is(err, fs.ErrExist) {
			return f, err
		}
	}
	return nil, fmt.Errorf("create temporary file for %s: too many name collisions", p)
}

// isOrphanTemp reports whether the file name in folder dir is a temporary
// file of a dirStore write: this version's suffix, or the earlier
// .<name>.<digits>.tmp (os.CreateTemp's) next to the object <name> it was
// for, so that an unrelated file is never taken for one.
func isOrphanTemp(dir, name string) bool {
	if strings.HasPrefix(name, ".") && strings.HasSuffix(name, tempSuffix) && len(name) > 1+len(tempSuffix) {
		return true
	}
	rest, ok := strings.CutSuffix(name, ".tmp")
	if !ok || !strings.HasPrefix(rest, ".") {
		return false
	}
	i := strings.LastIndexByte(rest, '.')
	digits := rest[i+1:]
	if i <= 1 || digits == "" || strings.Trim(digits, "0123456789") != "" {
		return false
	}
	_, err := os.Lstat(filepath.Join(dir, rest[1:i]))
	return err == nil
}

// removeOrphanTemps removes the temporary files under dir last modified
// before cutoff: a write killed midway left them, and nothing reads them.
func removeOrphanTemps(dir string, cutoff time.Time) error {
	return filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() || !e.Type().IsRegular() || !isOrphanTemp(filepath.Dir(p), e.Name()) {
			return nil
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // renamed or removed meanwhile
		}
		if err != nil {
			return err
		}
		if fi.ModTime().Before(cutoff) {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		return nil
	})
}

func (d *dirStore) URI(name string) string { return filepath.Join(d.dir, filepath.FromSlash(name)) }

func (d *dirStore) Read(ctx context.Context, name string) ([]byte, int64, error) {
	p := d.URI(name)
	if err := checkName(name); err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", p, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", p, err)
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("read %s: %w", p, ErrStateNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", p, err)
	}
	defer f.Close()
	// Stat the open file, not the path: the bytes and the generation then
	// belong to the same version even if a writer renames a new one in.
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", p, err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", p, err)
	}
	return data, fileGen(fi), nil
}

func (d *dirStore) Write(ctx context.Context, name string, data []byte, ifGen int64) (int64, error) {
	p := d.URI(name)
	gen, err := d.write(ctx, name, p, bytes.NewReader(data), ifGen)
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", p, err)
	}
	return gen, nil
}

// write stores what src holds as the object name at path p: the bytes go to a
// temporary file before the lock, and only the generation check, the fsync
// and the rename happen under it.
func (d *dirStore) write(ctx context.Context, name, p string, src io.Reader, ifGen int64) (gen int64, err error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	if err := checkIfGen(ifGen); err != nil {
		return 0, err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return 0, err
	}
	f, err := createTemp(p)
	if err != nil {
		return 0, err
	}
	tmp := f.Name()
	renamed := false
	defer func() {
		if !renamed {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := io.Copy(f, src); err != nil {
		return 0, err
	}
	unlock, err := d.lock(ctx)
	if err != nil {
		return 0, err
	}
	defer unlock()

	cur, err := os.Stat(p)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, err
	}
	switch {
	case ifGen == IfAbsent && exists:
		return 0, ErrPrecondition
	case ifGen > 0 && (!exists || fileGen(cur) != ifGen):
		return 0, ErrPrecondition
	}
	fi, err := setLaterModTime(f, tmp, cur)
	if err != nil {
		return 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, p); err != nil {
		return 0, err
	}
	renamed = true
	if err := syncDir(dir); err != nil {
		return 0, err
	}
	return fileGen(fi), nil
}

// setLaterModTime gives the temporary file a modification time strictly
// after cur's (the version it replaces), so that no two versions of a name
// share a generation even when the inode number is reused. Some file systems
// keep microseconds or seconds only, hence the growing steps.
func setLaterModTime(f *os.File, tmp string, cur fs.FileInfo) (fs.FileInfo, error) {
	for _, step := range []time.Duration{time.Nanosecond, time.Microsecond, time.Millisecond, time.Second, 2 * time.Second} {
		t := time.Now()
		if cur != nil && !t.After(cur.ModTime()) {
			t = cur.ModTime().Add(step)
		}
		if err := os.Chtimes(tmp, t, t); err != nil {
			return nil, err
		}
		fi, err := f.Stat()
		if err != nil {
			return nil, err
		}
		if cur == nil || fi.ModTime().After(cur.ModTime()) {
			return fi, nil
		}
	}
	return nil, errors.New("file system does not keep a later modification time")
}

func (d *dirStore) Delete(ctx context.Context, name string) error {
	p := d.URI(name)
	if err := checkName(name); err != nil {
		return fmt.Errorf("delete %s: %w", p, err)
	}
	unlock, err := d.lock(ctx)
	if err != nil {
		return fmt.Errorf("delete %s: %w", p, err)
	}
	defer unlock()
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", p, err)
	}
	if err := syncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("delete %s: %w", p, err)
	}
	return nil
}

func (d *dirStore) List(ctx context.Context, prefix string) ([]string, error) {
	var names []string
	err := filepath.WalkDir(d.dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(e.Name(), ".") && p != d.dir {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil // lock and temporary files
		}
		if e.IsDir() {
			return ctx.Err()
		}
		rel, err := filepath.Rel(d.dir, p)
		if err != nil {
			return err
		}
		if rel = filepath.ToSlash(rel); strings.HasPrefix(rel, prefix) {
			names = append(names, rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", d.dir, err)
	}
	slices.Sort(names)
	return names, nil
}

// lock takes the folder's flock, polling so that ctx can end the wait, and
// gives up after lockWait: a holder that long is stuck (a lock is held for a
// rename and two fsyncs).
// flock belongs to the open file description, so it also excludes other
// goroutines of this process that opened the lock file themselves.
func (d *dirStore) lock(ctx context.Context) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(d.dir, dirLockName), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeoutCause(ctx, lockWait,
		fmt.Errorf("lock %s: held by another process for %s (%w)", f.Name(), lockWait, context.DeadlineExceeded))
	defer cancel()
	if err := context.Cause(ctx); err != nil {
		f.Close()
		return nil, err
	}
	wait := time.Millisecond
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing the descriptor releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, context.Cause(ctx)
		case <-t.C:
		}
		wait = min(2*wait, 20*time.Millisecond)
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// fileGen is the emulated generation of a local file: a hash of device,
// inode and modification time, positive and never 0 (IfAbsent).
func fileGen(fi fs.FileInfo) int64 {
	var b [24]byte
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		binary.LittleEndian.PutUint64(b[0:], uint64(st.Dev))
		binary.LittleEndian.PutUint64(b[8:], uint64(st.Ino))
	}
	binary.LittleEndian.PutUint64(b[16:], uint64(fi.ModTime().UnixNano()))
	h := fnv.New64a()
	h.Write(b[:])
	g := int64(h.Sum64() &^ (1 << 63))
	if g == 0 {
		g = 1
	}
	return g
}

// ---- Google Cloud Storage ----

// gcsStore keeps state under gs://bucket/prefix. Conditional writes use the
// object generation (ifGenerationMatch), which GCS checks atomically; an
// upload cancelled before it completes leaves nothing behind. GCS accepts
// about one write per second to one object, so callers pace their writes.
type gcsStore struct {
	bucket     *storage.BucketHandle
	bucketName string
	prefix     string
}

func (g *gcsStore) key(name string) string {
	if g.prefix == "" {
		return name
	}
	return g.prefix + "/" + name
}

func (g *gcsStore) URI(name string) string { return "gs://" + g.bucketName + "/" + g.key(name) }

func (g *gcsStore) Read(ctx context.Context, name string) ([]byte, int64, error) {
	uri := g.URI(name)
	if err := checkName(name); err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", uri, err)
	}
	data, gen, err := g.read(ctx, name)
	if err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", uri, err)
	}
	return data, gen, nil
}

// read reads the object; it ends if the answer stops arriving for
// gcscall.StallTimeout. The client retries a transient failure (for
// gcscall.RetryFor when it comes from gcscall.NewClient).
func (g *gcsStore) read(ctx context.Context, name string) ([]byte, int64, error) {
	ctx, touch, stop := gcscall.Watchdog(ctx, gcscall.StallTimeout)
	defer stop()
	r, err := g.bucket.Object(g.key(name)).NewReader(ctx)
	if err != nil {
		return nil, 0, gcsKind(ctx, err)
	}
	defer r.Close()
	data, err := io.ReadAll(gcscall.TouchReader{R: r, Touch: touch})
	if err != nil {
		return nil, 0, gcsKind(ctx, err)
	}
	return data, r.Attrs.Generation, nil
}

func (g *gcsStore) Write(ctx context.Context, name string, data []byte, ifGen int64) (int64, error) {
	uri := g.URI(name)
	gen, err := g.write(ctx, name, data, ifGen)
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", uri, err)
	}
	return gen, nil
}

// write writes the object, retrying 408, 429, 5xx answers and network
// failures with backoff until ctx's deadline (gcscall.WriteRetryFor if it has
// none): the write is idempotent under its precondition. An attempt whose
// answer was lost may have landed, and then the next one fails its
// precondition against it: a precondition failure after a failed attempt
// reads the object back, and finding these very bytes means the write took.
func (g *gcsStore) write(ctx context.Context, name string, data []byte, ifGen int64) (int64, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	if err := checkIfGen(ifGen); err != nil {
		return 0, err
	}
	// One request carries the whole object: allow 1 s per MiB beyond the
	// call timeout.
	perAttempt := gcscall.CallTimeout + time.Duration(len(data)>>20)*time.Second
	var gen int64
	err := gcscall.Retry(ctx, perAttempt, func(ctx context.Context, retried bool) error {
		var err error
		gen, err = g.writeOnce(ctx, name, data, ifGen)
		if retried && errors.Is(err, ErrPrecondition) {
			if cur, curGen, rerr := g.read(ctx, name); rerr == nil && bytes.Equal(cur, data) {
				gen = curGen
				return nil
			}
		}
		return err
	})
	return gen, err
}

// writeOnce is one attempt of write.
func (g *gcsStore) writeOnce(ctx context.Context, name string, data []byte, ifGen int64) (int64, error) {
	obj := g.bucket.Object(g.key(name))
	switch {
	case ifGen == IfAbsent:
		obj = obj.If(storage.Conditions{DoesNotExist: true})
	case ifGen > 0:
		obj = obj.If(storage.Conditions{GenerationMatch: ifGen})
	}
	// Returning before Close cancels ctx, which aborts the upload: nothing
	// half-written lands.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := obj.NewWriter(ctx)
	w.ChunkSize = 0 // small objects: one request, no resumable session
	w.CRC32C = crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli))
	w.SendCRC32C = true
	if strings.HasSuffix(name, ".json") {
		w.ContentType = "application/json"
	}
	if _, err := w.Write(data); err != nil {
		return 0, gcsKind(ctx, err)
	}
	if err := w.Close(); err != nil {
		return 0, gcsKind(ctx, err)
	}
	return w.Attrs().Generation, nil
}

func (g *gcsStore) Delete(ctx context.Context, name string) error {
	uri := g.URI(name)
	if err := checkName(name); err != nil {
		return fmt.Errorf("delete %s: %w", uri, err)
	}
	ctx, cancel := gcscall.WithTimeout(ctx, gcscall.CallTimeout)
	defer cancel()
	err := g.bucket.Object(g.key(name)).Delete(ctx)
	if err != nil && !errors.Is(err, storage.ErrObjectNotExist) {
		return fmt.Errorf("delete %s: %w", uri, gcsKind(ctx, err))
	}
	return nil
}

func (g *gcsStore) List(ctx context.Context, prefix string) ([]string, error) {
	base := ""
	if g.prefix != "" {
		base = g.prefix + "/"
	}
	ctx, touch, stop := gcscall.Watchdog(ctx, gcscall.StallTimeout)
	defer stop()
	it := g.bucket.Objects(ctx, &storage.Query{Prefix: base + prefix})
	var names []string
	for {
		a, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("list gs://%s/%s: %w", g.bucketName, base+prefix, gcsKind(ctx, err))
		}
		touch()
		names = append(names, strings.TrimPrefix(a.Name, base))
	}
	slices.Sort(names)
	return names, nil
}

// gcsKind maps the client's errors to the store's kinds, keeping the
// original in the chain; a server that cannot be reached becomes a
// *gcscall.UnreachableError that names it. ctx is the call's.
func gcsKind(ctx context.Context, err error) error {
	err = gcscall.Explain(ctx, err)
	if errors.Is(err, storage.ErrObjectNotExist) {
		return fmt.Errorf("%w (%w)", ErrStateNotFound, err)
	}
	var gerr *googleapi.Error
	if errors.As(err, &gerr) && gerr.Code == http.StatusPreconditionFailed {
		return fmt.Errorf("%w (%w)", ErrPrecondition, err)
	}
	// The gRPC transport reports a failed precondition as a status code.
	if s, ok := status.FromError(err); ok && s.Code() == codes.FailedPrecondition {
		return fmt.Errorf("%w (%w)", ErrPrecondition, err)
	}
	return err
}

var (
	_ StateStore  = (*dirStore)(nil)
	_ StateStore  = (*gcsStore)(nil)
	_ stateLister = (*dirStore)(nil)
	_ stateLister = (*gcsStore)(nil)
)
