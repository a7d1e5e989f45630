package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/convertro-etl/convertro-etl/internal/segment"
)

// failingDecoder is memDecoder, except that one row group of one object
// fails with ErrSkipObject after its first batch.
type failingDecoder struct {
	memDecoder
	key string
	rg  int
}

func (d *failingDecoder) Decode(ctx context.Context, obj Object, rg int, fn func(int64, []segment.Message) error) error {
	if obj.Key != d.key || rg != d.rg {
		return d.memDecoder.Decode(ctx, obj, rg, fn)
	}
	batches := 0
	return d.memDecoder.Decode(ctx, obj, rg, func(first int64, b []segment.Message) error {
		if batches++; batches > 1 {
			return fmt.Errorf("read %s row group %d column \"event\": corrupt page (%w)", obj.URI, rg, ErrSkipObject)
		}
		return fn(first, b)
	})
}

// TestRunSkipsObjectFoundBad: a row group found bad mid-way sets its object
// aside and the run goes on; the same job after the object is replaced reads
// the new version whole and finishes.
func TestRunSkipsObjectFoundBad(t *testing.T) {
	objs := testObjects()
	want := expect(objs)
	stub := newConvertroStub(t, nil)
	dir := t.TempDir()
	cfg := Config{Objects: objs, Decoders: 2, Concurrency: 4}
	dec := &failingDecoder{memDecoder: memDecoder{batch: 8}, key: "c.parquet", rg: 1}
	rep, err := runLiveTest(t, context.Background(), dir, cfg, dec, stub, &memDeadLetters{})
	if !errors.Is(err, ErrIncomplete) {
		t.Fatalf("Run error = %v, want ErrIncomplete", err)
	}
	if err := rep.Check(); err != nil {
		t.Error(err)
	}
	i := slices.IndexFunc(rep.SkippedObjects, func(s SkippedObject) bool { return s.URI == "mem://c.parquet" })
	if i < 0 || rep.Counts.ObjectsSkipped != 2 {
		t.Fatalf("skipped %+v (%d), want bad.parquet and c.parquet", rep.SkippedObjects, rep.Counts.ObjectsSkipped)
	}
	c := rep.SkippedObjects[i]
	// Row group 0 (12 rows) may be read, row group 1 gets one batch of 8 of
	// its 61 rows in, row group 2 (8 rows) may be read before the failure.
	if c.RowsRead < 8 || c.RowsNotRead < 53 || c.RowsRead+c.RowsNotRead != 12+61+8 {
		t.Errorf("c.parquet: %d rows read, %d not read", c.RowsRead, c.RowsNotRead)
	}
	if rep.Counts.RowsRead != rep.RowsPlanned-c.RowsNotRead {
		t.Errorf("rows read %d, planned %d, not read %d", rep.Counts.RowsRead, rep.RowsPlanned, c.RowsNotRead)
	}
	m := readManifest(t, dir, Shard{0, 1})
	if m.Status != StatusFinished || m.Objects[3].Skipped == "" || unfinishedLive(m) != 0 {
		t.Fatalf("manifest: status %s, c skipped %q, %d unfinished", m.Status, m.Objects[3].Skipped, unfinishedLive(m))
	}

	// Unchanged: still set aside, nothing read.
	stub.reset()
	if _, err := runLiveTest(t, context.Background(), dir, cfg, &memDecoder{batch: 8}, stub, &memDeadLetters{}); !errors.Is(err, ErrIncomplete) || len(stub.received()) != 0 {
		t.Fatalf("rerun, unchanged: err %v, %d requests", err, len(stub.received()))
	}

	// Replaced (a new generation): read whole, the rest stays done.
	objs[3].Version += "+"
	cfg.Objects = objs
	stub.reset()
	rep, err = runLiveTest(t, context.Background(), dir, cfg, &memDecoder{batch: 8}, stub, &memDeadLetters{})
	if !errors.Is(err, ErrIncomplete) { // bad.parquet is still bad
		t.Fatalf("rerun after the fix: %v", err)
	}
	if err := rep.Check(); err != nil {
		t.Error(err)
	}
	got := counts(stub.received())
	cOnly := expect([]Object{objs[3]})
	for _, r := range cOnly.requests {
		if got[r] != 1 {
			t.Errorf("%s received %d times after the fix, want 1", r, got[r])
		}
	}
	if len(stub.received()) != len(cOnly.requests) {
		t.Errorf("rerun sent %d requests, c.parquet makes %d", len(stub.received()), len(cOnly.requests))
	}
	if rep.Counts.ObjectsSkipped != 1 || len(rep.SkippedObjects) != 1 || rep.RowsReplaced != c.RowsRead {
		t.Errorf("after the fix: %d skipped %+v, %d rows replaced (want %d)", rep.Counts.ObjectsSkipped, rep.SkippedObjects, rep.RowsReplaced, c.RowsRead)
	}
	if rep.Runs != 2 || rep.Resumes != 0 || rep.RepeatBound != 0 {
		t.Errorf("after the fix: %d runs, %d resumes, repeat bound %d: want 2 runs (the unchanged rerun did nothing) and no resume (none was interrupted)", rep.Runs, rep.Resumes, rep.RepeatBound)
	}
	if rep.Counts.RowsRead != want.rows+c.RowsRead {
		t.Errorf("rows read %d, want %d (every row once, plus the replaced version's %d)", rep.Counts.RowsRead, want.rows+c.RowsRead, c.RowsRead)
	}
	m = readManifest(t, dir, Shard{0, 1})
	retired := 0
	for _, u := range m.Units {
		if u.Retired {
			retired++
			if u.Object != 3 {
				t.Errorf("unit %+v retired", u)
			}
		}
	}
	if retired != 3 || m.Objects[3].Version != objs[3].Version || m.Objects[3].Skipped != "" {
		t.Errorf("manifest: %d units retired, c.parquet %+v", retired, m.Objects[3])
	}
}

// TestDryRunSkipsObjectFoundBad: a dry run sets the object aside the same
// way and succeeds.
func TestDryRunSkipsObjectFoundBad(t *testing.T) {
	dec := &failingDecoder{memDecoder: memDecoder{batch: 8}, key: "a.parquet", rg: 1}
	rep, err := Run(context.Background(), Config{Objects: testObjects(), Decoders: 2}, Deps{
		Decoder: dec, NewTransform: newTestTransform("http://x"),
		DryRun: &discard{}, DryRunLine: func(dst, url []byte) []byte { return append(append(dst, url...), '\n') },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Check(); err != nil {
		t.Error(err)
	}
	if len(rep.SkippedObjects) != 2 || rep.SkippedObjects[0].URI != "mem://a.parquet" || rep.SkippedObjects[0].RowsRead < 8 {
		t.Errorf("skipped %+v", rep.SkippedObjects)
	}
}

type discard struct{}

func (*discard) Write(p []byte) (int, error) { return len(p), nil }
