// Package localfile writes local files whole or not at all (File), the one
// way the program writes a local file that others may read: the local
// storage backend's objects, downloads of remote objects, audience
// snapshots, generated exports, and the files at paths a user names (Output:
// a dry run's requests, a run's report). A kill leaves at most a temporary
// file, which IsTemp recognises for cleaning (RemoveStaleTemps for one
// file's).
//
// It also makes the scratch folders where a run keeps working files no one
// else reads (Scratch). A kill leaves the folder, and the next run's first
// Scratch removes it.
//
// # Errors
//
// The file system's own errors, unwrapped: the caller names the file.
// NewScratch names the folder it could not lock.
//
// # Concurrency
//
// A File is used by one goroutine. Create may be called concurrently, also
// for one path: each call gets a temporary file of its own, and the last
// Commit wins. NewScratch may be called concurrently; a Scratch is released
// once.
package localfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File is a local file written whole or not at all: it is written
// under a temporary name in its folder (hidden, with the suffix orphan
// cleaning knows, mode 0666 less the umask) and renamed to its path by
// Commit, so that no reader ever sees part of it and a kill leaves only a
// temporary file behind. Every local file the program writes goes through
// it (the local backend's writes, downloads, audience snapshots, generated
// exports, Output). Its errors are the file system's, left for the caller
// to wrap with what it was writing.
type File struct {
	*os.File
	path string
	done bool
}

// Create starts the file that Commit puts at path. path's folder must
// exist.
func Create(path string) (*File, error) {
	f, err := createTemp(path)
	if err != nil {
		return nil, err
	}
	return &File{File: f, path: path}, nil
}

// Commit closes the file and renames it to its path, replacing what was
// there. durable also syncs the file and its folder first, for files that
// must survive a crash of the machine (state); generated test data need
// not pay for it. On error the temporary file is removed.
func (f *File) Commit(durable bool) error {
	if f.done {
		return errors.New("already committed or aborted")
	}
	f.done = true
	var err error
	if durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), f.path)
	}
	if err == nil && durable {
		err = SyncDir(filepath.Dir(f.path))
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	return nil
}

// Abort discards the file. It does nothing after Commit.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.Close()
	os.Remove(f.Name())
}

// TempSuffix ends the name of every temporary file: a name no one else
// uses, so that removing orphans removes only ours.
const TempSuffix = ".convertro-etl.tmp"

// createTemp creates a new temporary file for the file at path p, in its
// folder, with mode 0666 less the umask (os.CreateTemp would force 0600).
func createTemp(p string) (*os.File, error) {
	for range 100 {
		var b [8]byte
		rand.Read(b[:])
		name := filepath.Join(filepath.Dir(p), "."+filepath.Base(p)+"."+hex.EncodeToString(b[:])+TempSuffix)
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if !errors.Is(err, fs.ErrExist) {
			return f, err
		}
	}
	return nil, fmt.Errorf("create temporary file for %s: too many name collisions", p)
}

// IsTemp reports whether name (a base name) is one of our temporary files.
func IsTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.HasSuffix(name, TempSuffix) && len(name) > 1+len(TempSuffix)
}

// RemoveStaleTemps removes the temporary files of the file at path p that
// were last written before cutoff: those of writers killed before Commit or
// Abort, which nothing else removes. A writer still at work writes its
// temporary file as it goes, so a cutoff well in the past spares it. It
// returns the files removed.
func RemoveStaleTemps(p string, cutoff time.Time) []string {
	dir, base := filepath.Split(p)
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var removed []string
	for _, e := range entries {
		// Exactly the names createTemp gives: 16 hex digits between the
		// base and the suffix.
		mid, ok := strings.CutPrefix(e.Name(), "."+base+".")
		if !ok {
			continue
		}
		if mid, ok = strings.CutSuffix(mid, TempSuffix); !ok || len(mid) != 16 {
			continue
		}
		if _, err := hex.DecodeString(mid); err != nil || !e.Type().IsRegular() {
			continue
		}
		m := filepath.Join(dir, e.Name())
		st, err := os.Lstat(m)
		if err != nil || !st.ModTime().Before(cutoff) {
			continue
		}
		if os.Remove(m) == nil {
			removed = append(removed, m)
		}
	}
	return removed
}

// Output is a file written at a path a user named (a dry run's requests, a
// run's report). A regular file there, or none, is written whole or not at
// all (File). Anything else (a device such as /dev/null, a pipe, a symbolic
// link) is written in place, as renaming over it would replace it.
type Output struct {
	f     *File
	plain *os.File
}

// CreateOutput starts the output at path. A regular file there keeps its
// permissions: what replaces it is given them.
func CreateOutput(path string) (*Output, error) {
	st, statErr := os.Lstat(path)
	if statErr == nil && !st.Mode().IsRegular() {
		f, err := os.Create(path)
		if err != nil {
			return nil, err
		}
		return &Output{plain: f}, nil
	}
	f, err := Create(path)
	if err != nil {
		return nil, err
	}
	if statErr == nil {
		if err := f.Chmod(st.Mode().Perm()); err != nil {
			f.Abort()
			return nil, err
		}
	}
	return &Output{f: f}, nil
}

func (o *Output) Write(p []byte) (int, error) {
	if o.plain != nil {
		return o.plain.Write(p)
	}
	return o.f.Write(p)
}

// Finish puts what was written at the path when ok, and discards it
// otherwise; written in place, it is there either way.
func (o *Output) Finish(ok bool) error {
	switch {
	case o.plain != nil:
		return o.plain.Close()
	case ok:
		return o.f.Commit(false)
	}
	o.f.Abort()
	return nil
}
