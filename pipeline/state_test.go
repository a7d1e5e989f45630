package pipeline

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

	"github.com/fsouza/fake-gcs-server/fakestorage"
)

// stateStores are the backends every StateStore test runs against: a temp
// folder and GCS served in process by fake-gcs-server (real client, real
// HTTP semantics, real 412s).
var stateStores = []struct {
	name string
	open func(t *testing.T) StateStore
}{
	{"dir", newDirState},
	{"gcs", newGCSState},
}

func newDirState(t *testing.T) StateStore {
	t.Helper()
	st, err := OpenState(context.Background(), filepath.Join(t.TempDir(), "state"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func newGCSState(t *testing.T) StateStore {
	t.Helper()
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{NoListener: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: "state-bucket"})
	st, err := OpenState(context.Background(), "gs://state-bucket/jobs/nightly", srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestStateConformance is the one suite both stores must pass.
func TestStateConformance(t *testing.T) {
	for _, s := range stateStores {
		t.Run(s.name, func(t *testing.T) {
			t.Run("ReadMissing", func(t *testing.T) {
				st := s.open(t)
				_, _, err := st.Read(context.Background(), "manifest-0-of-1.json")
				if !errors.Is(err, ErrStateNotFound) {
					t.Fatalf("Read of a missing object: err = %v, want ErrStateNotFound", err)
				}
				if !strings.Contains(err.Error(), st.URI("manifest-0-of-1.json")) {
					t.Errorf("error %q does not name the object %s", err, st.URI("manifest-0-of-1.json"))
				}
			})
			t.Run("CreateIfAbsent", func(t *testing.T) { testCreateIfAbsent(t, s.open(t)) })
			t.Run("GenerationMatch", func(t *testing.T) { testGenerationMatch(t, s.open(t)) })
			t.Run("Unconditional", func(t *testing.T) { testUnconditional(t, s.open(t)) })
			t.Run("Delete", func(t *testing.T) { testDelete(t, s.open(t)) })
			t.Run("ConcurrentWritersSameGeneration", func(t *testing.T) { testConcurrentWriters(t, s.open(t), false) })
			t.Run("ConcurrentCreators", func(t *testing.T) { testConcurrentWriters(t, s.open(t), true) })
			t.Run("DistinctGenerations", func(t *testing.T) { testDistinctGenerations(t, s.open(t)) })
			t.Run("CancelledWriteLeavesNothing", func(t *testing.T) { testCancelledWrite(t, s.open(t)) })
			t.Run("InvalidNames", func(t *testing.T) { testInvalidNames(t, s.open(t)) })
			t.Run("List", func(t *testing.T) { testList(t, s.open(t)) })
		})
	}
}

func mustWrite(t *testing.T, st StateStore, name, data string, ifGen int64) int64 {
	t.Helper()
	gen, err := st.Write(context.Background(), name, []byte(data), ifGen)
	if err != nil {
		t.Fatalf("Write(%s, ifGen %d): %v", name, ifGen, err)
	}
	if gen <= 0 {
		t.Fatalf("Write(%s) returned generation %d, want > 0", name, gen)
	}
	return gen
}

func wantContent(t *testing.T, st StateStore, name, want string, wantGen int64) {
	t.Helper()
	data, gen, err := st.Read(context.Background(), name)
	if err != nil {
		t.Fatalf("Read(%s): %v", name, err)
	}
	if string(data) != want {
		t.Errorf("Read(%s) = %q, want %q", name, data, want)
	}
	if wantGen != 0 && gen != wantGen {
		t.Errorf("Read(%s) generation = %d, want %d (the one Write returned)", name, gen, wantGen)
	}
}

func testCreateIfAbsent(t *testing.T, st StateStore) {
	gen := mustWrite(t, st, "a.json", "first", IfAbsent)
	wantContent(t, st, "a.json", "first", gen)
	_, err := st.Write(context.Background(), "a.json", []byte("second"), IfAbsent)
	if !errors.Is(err, ErrPrecondition) {
		t.Fatalf("second create: err = %v, want ErrPrecondition", err)
	}
	if !strings.Contains(err.Error(), st.URI("a.json")) {
		t.Errorf("error %q does not name %s", err, st.URI("a.json"))
	}
	wantContent(t, st, "a.json", "first", gen)
}

func testGenerationMatch(t *testing.T, st StateStore) {
	ctx := context.Background()
	if _, err := st.Write(ctx, "m.json", []byte("x"), 12345); !errors.Is(err, ErrPrecondition) {
		t.Fatalf("generation match on a missing object: err = %v, want ErrPrecondition", err)
	}
	g1 := mustWrite(t, st, "m.json", "v1", IfAbsent)
	g2 := mustWrite(t, st, "m.json", "v2", g1)
	if g2 == g1 {
		t.Fatalf("a rewrite kept generation %d", g1)
	}
	wantContent(t, st, "m.json", "v2", g2)
	if _, err := st.Write(ctx, "m.json", []byte("stale"), g1); !errors.Is(err, ErrPrecondition) {
		t.Fatalf("write with the stale generation: err = %v, want ErrPrecondition", err)
	}
	wantContent(t, st, "m.json", "v2", g2)
	mustWrite(t, st, "m.json", "v3", g2)
	wantContent(t, st, "m.json", "v3", 0)
	if _, err := st.Write(ctx, "m.json", []byte("bad"), -7); err == nil {
		t.Error("ifGen -7 was accepted")
	}
}

func testUnconditional(t *testing.T, st StateStore) {
	g1 := mustWrite(t, st, "r.json", "one", Unconditional)
	g2 := mustWrite(t, st, "r.json", "two", Unconditional)
	if g1 == g2 {
		t.Errorf("two unconditional writes share generation %d", g1)
	}
	wantContent(t, st, "r.json", "two", g2)
}

func testDelete(t *testing.T, st StateStore) {
	ctx := context.Background()
	mustWrite(t, st, "d.json", "x", IfAbsent)
	if err := st.Delete(ctx, "d.json"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Read(ctx, "d.json"); !errors.Is(err, ErrStateNotFound) {
		t.Fatalf("Read after Delete: err = %v, want ErrStateNotFound", err)
	}
	if err := st.Delete(ctx, "d.json"); err != nil {
		t.Errorf("Delete of an absent object: %v", err)
	}
	mustWrite(t, st, "d.json", "again", IfAbsent) // the name is free again
}

// testConcurrentWriters races 8 writers with the same precondition: exactly
// one may win, and the object holds the winner's bytes.
func testConcurrentWriters(t *testing.T, st StateStore, create bool) {
	ifGen := IfAbsent
	if !create {
		ifGen = mustWrite(t, st, "race.json", "base", IfAbsent)
	}
	const n = 8
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		errs    = make([]error, n)
		gens    = make([]int64, n)
		payload = func(i int) string { return fmt.Sprintf("writer %d", i) }
	)
	for i := range n {
		wg.Go(func() {
			<-start
			gens[i], errs[i] = st.Write(context.Background(), "race.json", []byte(payload(i)), ifGen)
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("writers %d and %d both passed the precondition", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, ErrPrecondition):
			t.Errorf("writer %d: err = %v, want ErrPrecondition", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer won")
	}
	wantContent(t, st, "race.json", payload(winner), gens[winner])
}

func testDistinctGenerations(t *testing.T, st StateStore) {
	seen := map[int64]int{}
	gen := IfAbsent
	for i := range 50 {
		gen = mustWrite(t, st, "g.json", fmt.Sprint(i), gen)
		if j, dup := seen[gen]; dup {
			t.Fatalf("writes %d and %d share generation %d", j, i, gen)
		}
		seen[gen] = i
	}
}

func testCancelledWrite(t *testing.T, st StateStore) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := st.Write(ctx, "c.json", bytes.Repeat([]byte("x"), 1<<20), Unconditional); err == nil {
		// The local store may finish a write it had begun; a cancelled
		// context before the lock is refused, which is what this checks.
		t.Fatal("write with a cancelled context succeeded")
	}
	if _, _, err := st.Read(context.Background(), "c.json"); !errors.Is(err, ErrStateNotFound) {
		t.Fatalf("after a cancelled write: Read err = %v, want ErrStateNotFound", err)
	}
}

func testInvalidNames(t *testing.T, st StateStore) {
	for _, name := range []string{"", "../x.json", "/abs.json", "a/../b.json", "a//b.json", `a\b.json`} {
		if _, err := st.Write(context.Background(), name, []byte("x"), Unconditional); err == nil {
			t.Errorf("Write(%q) accepted an invalid name", name)
		}
	}
}

func testList(t *testing.T, st StateStore) {
	ctx := context.Background()
	for _, n := range []string{"manifest-1-of-2.json", "manifest-0-of-2.json", "report-0-of-2.json", "audiences/vip.parquet"} {
		mustWrite(t, st, n, n, IfAbsent)
	}
	got, err := st.(stateLister).List(ctx, "manifest-")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"manifest-0-of-2.json", "manifest-1-of-2.json"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("List(manifest-) = %v, want %v", got, want)
	}
	got, err = st.(stateLister).List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"audiences/vip.parquet", "manifest-0-of-2.json", "manifest-1-of-2.json", "report-0-of-2.json"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("List() = %v, want %v (no lock or temporary files)", got, want)
	}
}

// TestStateDirReaderNeverSeesPartial reads while another goroutine rewrites
// a 1 MiB object: every read must be one whole version, and no temporary
// file may remain.
func TestStateDirReaderNeverSeesPartial(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	st, err := OpenState(context.Background(), "file://"+dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	const size = 1 << 20
	version := func(i int) []byte { return bytes.Repeat([]byte{'a' + byte(i%26)}, size) }
	mustWrite(t, st, "big.json", string(version(0)), IfAbsent)

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
			data, _, err := st.Read(context.Background(), "big.json")
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
		mustWrite(t, st, "big.json", string(version(i)), Unconditional)
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
	wantContent(t, st, "big.json", string(version(40)), 0)
}

// TestStateDirNoTempAfterFailedWrite checks the temporary file of a write
// that lost its precondition is removed.
func TestStateDirNoTempAfterFailedWrite(t *testing.T) {
	dir := t.TempDir()
	st, err := OpenState(context.Background(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, st, "x.json", "1", IfAbsent)
	if _, err := st.Write(context.Background(), "x.json", []byte("2"), IfAbsent); !errors.Is(err, ErrPrecondition) {
		t.Fatalf("err = %v, want ErrPrecondition", err)
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "*.tmp"))
	hidden, _ := filepath.Glob(filepath.Join(dir, ".*.tmp"))
	if len(matches)+len(hidden) > 0 {
		t.Errorf("temporary files left: %v %v", matches, hidden)
	}
}

func TestOpenStateLocations(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, tc := range []struct {
		uri     string
		wantURI string // of "m.json"; "" = want an error
	}{
		{uri: dir + "/plain", wantURI: dir + "/plain/m.json"},
		{uri: "file://" + dir + "/url", wantURI: dir + "/url/m.json"},
		{uri: "gs://bucket/a/b/", wantURI: "gs://bucket/a/b/m.json"},
		{uri: "gs://bucket", wantURI: "gs://bucket/m.json"},
		{uri: "gs://"},
		{uri: "s3://bucket/x"},
		{uri: ""},
	} {
		t.Run(tc.uri, func(t *testing.T) {
			srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{NoListener: true})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Stop()
			st, err := OpenState(ctx, tc.uri, srv.Client())
			if tc.wantURI == "" {
				if err == nil {
					t.Fatalf("OpenState(%q) succeeded, want an error", tc.uri)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := st.URI("m.json"); got != tc.wantURI {
				t.Errorf("URI = %q, want %q", got, tc.wantURI)
			}
		})
	}
}
