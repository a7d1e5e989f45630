package writers

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/parquet-go/parquet-go"
)

// ErrClosed is returned by a DeadLetterWriter's Write after Close.
var ErrClosed = errors.New("dead-letter writer closed")

// DeadLetterPattern is the shape of the dead-letter file names ListDeadLetters
// finds: dead-letters-<run id>-<n>.parquet.
const DeadLetterPattern = "dead-letters-*.parquet"

// DeadLetterWriter streams dead letters into one local Parquet file. Rows go
// to a temporary file next to the destination, which Close renames into place
// after an fsync: a run killed before Close leaves no dead-letter file that
// looks complete, only a "*.tmp" file that ListDeadLetters ignores. Name one
// file per run segment (dead-letters-<run id>-<n>.parquet) rather than
// appending to an earlier one: Parquet files cannot be appended to.
//
// Write and Close are safe for concurrent use: senders that give up on a
// request may write from several goroutines.
type DeadLetterWriter struct {
	mu     sync.Mutex
	path   string
	f      *os.File
	pw     *parquet.GenericWriter[DeadLetter]
	one    [1]DeadLetter
	rows   int64
	closed bool
}

// CreateDeadLetters starts a dead-letter file that Close will store at path.
// An existing file at path is replaced by Close.
func CreateDeadLetters(path string) (*DeadLetterWriter, error) {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("create dead letters %s: %w", path, err)
	}
	return &DeadLetterWriter{
		path: path,
		f:    f,
		pw:   parquet.NewGenericWriter[DeadLetter](f, parquet.Compression(&parquet.Snappy)),
	}, nil
}

// Path is where Close stores the file.
func (w *DeadLetterWriter) Path() string { return w.path }

// Rows is the number of dead letters written so far.
func (w *DeadLetterWriter) Rows() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rows
}

// Write adds one dead letter. Its Time is stored to the millisecond.
func (w *DeadLetterWriter) Write(d DeadLetter) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return fmt.Errorf("write dead letter to %s: %w", w.path, ErrClosed)
	}
	w.one[0] = d
	_, err := w.pw.Write(w.one[:])
	w.one[0] = DeadLetter{} // drop references to the caller's strings
	if err != nil {
		return fmt.Errorf("write dead letter to %s: %w", w.path, err)
	}
	w.rows++
	return nil
}

// Close finishes the file and moves it into place (temporary file, fsync,
// rename, fsync of the folder). After a failed Close nothing is left at path
// that was not there before, and the temporary file is removed. Close is
// idempotent: later calls return nil.
func (w *DeadLetterWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	tmp := w.f.Name()
	err := w.pw.Close()
	if err == nil {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, w.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("close dead letters %s: %w", w.path, err)
	}
	if d, derr := os.Open(filepath.Dir(w.path)); derr == nil {
		// The rename is durable only once the folder is; some file systems
		// refuse to sync a folder, which costs durability, not correctness.
		d.Sync()
		d.Close()
	}
	return nil
}

// Abort drops the file being written: nothing is stored at Path. It is a
// no-op after Close.
func (w *DeadLetterWriter) Abort() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	w.f.Close()
	os.Remove(w.f.Name())
}

// ListDeadLetters returns the dead-letter files in dir (names matching
// DeadLetterPattern), as full paths in lexical order. A missing dir holds
// none: it returns no paths and no error.
func ListDeadLetters(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list dead letters in %s: %w", dir, err)
	}
	var paths []string
	for _, e := range entries {
		name := e.Name()
		if e.Type().IsRegular() && strings.HasPrefix(name, "dead-letters-") && strings.HasSuffix(name, ".parquet") {
			paths = append(paths, filepath.Join(dir, name))
		}
	}
	slices.Sort(paths)
	return paths, nil
}
