package objstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func openTestLocal(t *testing.T, root string) *Store {
	t.Helper()
	s, err := Open(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A reader of a local object never sees a partial or mixed file while
// another goroutine rewrites it, and no temporary file remains.
func TestLocalReaderNeverSeesPartial(t *testing.T) {
	defer setWriteInterval(0)()
	dir := filepath.Join(t.TempDir(), "state")
	st := openTestLocal(t, "file://"+dir)
	ctx := context.Background()
	const size = 1 << 20
	version := func(i int) []byte { return bytes.Repeat([]byte{'a' + byte(i%26)}, size) }
	if _, err := st.Write(ctx, "big.json", version(0), IfAbsent); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var reads int
	var readErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			data, _, err := st.Read(ctx, "big.json")
			if err != nil {
				readErr = err
				return
			}
			reads++
			if len(data) != size || bytes.Count(data, data[:1]) != size {
				readErr = fmt.Errorf("read %d saw a partial or mixed file: %d bytes", reads, len(data))
				return
			}
		}
	})
	for i := 1; i <= 40; i++ {
		if _, err := st.Write(ctx, "big.json", version(i), Overwrite); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	if readErr != nil {
		t.Fatal(readErr)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

// setWriteInterval lowers the pacing for a test that writes one name many
// times to exercise something else; the returned func restores it.
func setWriteInterval(d time.Duration) func() {
	old := MinWriteInterval
	MinWriteInterval = d
	return func() { MinWriteInterval = old }
}

// Fifty writes to one name give fifty versions: the local version (a
// modification time) moves forward even within one clock tick.
func TestLocalDistinctVersions(t *testing.T) {
	defer setWriteInterval(0)()
	st := openTestLocal(t, t.TempDir())
	seen := map[string]int{}
	v := ""
	var err error
	for i := range 50 {
		if v, err = st.Write(context.Background(), "g.json", fmt.Append(nil, i), IfVersion(v)); err != nil {
			t.Fatal(err)
		}
		if j, dup := seen[v]; dup {
			t.Fatalf("writes %d and %d share version %s", j, i, v)
		}
		seen[v] = i
	}
}

// The temporary file of a write that lost its precondition, or whose
// context was cancelled, is removed.
func TestLocalNoTempAfterFailedWrite(t *testing.T) {
	dir := t.TempDir()
	st := openTestLocal(t, dir)
	ctx := context.Background()
	if _, err := st.Write(ctx, "x.json", []byte("1"), IfAbsent); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write(ctx, "x.json", []byte("2"), IfAbsent); !errors.Is(err, ErrPrecondition) {
		t.Fatalf("err = %v, want ErrPrecondition", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := st.Write(cctx, "c.json", []byte("x"), Overwrite); err == nil {
		t.Fatal("write with a cancelled context succeeded")
	}
	if _, _, err := st.Read(ctx, "c.json"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after a cancelled write: %v, want ErrNotFound", err)
	}
	hidden, _ := filepath.Glob(filepath.Join(dir, ".*.tmp"))
	if len(hidden) > 0 {
		t.Errorf("temporary files left: %v", hidden)
	}
}

// RemoveOrphanTemps removes the temporary files killed writes left, once
// they are old, and nothing else.
func TestLocalRemovesOrphanTemps(t *testing.T) {
	root := filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(filepath.Join(root, "dead-letters"), 0o755); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * orphanTempAge)
	files := map[string]bool{ // name: removed
		"manifest-0-of-1.json":                              false,
		".manifest-0-of-1.json.0123abcd.convertro-etl.tmp":  true,
		".report-0-of-1.json.99.convertro-etl.tmp":          true,
		"dead-letters/.part-3.parquet.1a.convertro-etl.tmp": true,
		".manifest-0-of-1.json.123456789.tmp":               true,  // an earlier version's, its object exists
		".notes.txt.123456789.tmp":                          false, // no notes.txt: not ours
		"draft.tmp":                                         false,
	}
	for name := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	recent := ".manifest-0-of-1.json.fresh.convertro-etl.tmp" // a write in progress
	if err := os.WriteFile(filepath.Join(root, recent), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	files[recent] = false
	st := openTestLocal(t, root)
	if err := st.RemoveOrphanTemps(context.Background()); err != nil {
		t.Fatal(err)
	}
	for name, removed := range files {
		_, err := os.Stat(filepath.Join(root, filepath.FromSlash(name)))
		if gone := errors.Is(err, os.ErrNotExist); gone != removed {
			t.Errorf("%s: removed %v, want %v (%v)", name, gone, removed, err)
		}
	}
	keys, err := st.ListKeys(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if strings.HasSuffix(k, ".convertro-etl.tmp") || k == lockName {
			t.Errorf("List shows the store's own file %s", k)
		}
	}
}

func TestParseLocations(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		uri, wantURI string // wantURI of "m.json"; "" = want an error
	}{
		{uri: dir + "/plain", wantURI: dir + "/plain/m.json"},
		{uri: "file://" + dir + "/url", wantURI: dir + "/url/m.json"},
		{uri: "file://host/x"},
		{uri: "gs://"},
		{uri: "nope://bucket/x"},
		{uri: ""},
	} {
		s, err := Open(context.Background(), tc.uri)
		if tc.wantURI == "" {
			if err == nil {
				t.Errorf("Open(%q) succeeded, want an error", tc.uri)
			}
			continue
		}
		if err != nil {
			t.Errorf("Open(%q): %v", tc.uri, err)
			continue
		}
		if got := s.URI("m.json"); got != tc.wantURI {
			t.Errorf("Open(%q).URI = %q, want %q", tc.uri, got, tc.wantURI)
		}
	}
}
