package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/convertro-etl/convertro-etl/internal/segment"
	"github.com/convertro-etl/convertro-etl/writers"
)

// failingDecoder is memDecoder, except that one row group of one object
// fails with ErrSkipObject after its first batch.
type failingDecoder struct {
	memDecoder
	key string
	rg  int
}

func (d *failingDecoder) Decode(ctx context.Context, obj Object, rg int, fn func(int64, []segment.Message, []string) error) error {
	if obj.Key != d.key || rg != d.rg {
		return d.memDecoder.Decode(ctx, obj, rg, fn)
	}
	batches := 0
	return d.memDecoder.Decode(ctx, obj, rg, func(first int64, b []segment.Message, skip []string) error {
		if batches++; batches > 1 {
			return fmt.Errorf("read %s row group %d column \"event\": corrupt page (%w)", obj.URI, rg, ErrSkipObject)
		}
		return fn(first, b, skip)
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

// decoderSkips is memDecoder marking every row whose index is a multiple
// of 11 as not the job's, with reason "not_this_jobs".
type decoderSkips struct{ memDecoder }

func (d *decoderSkips) Decode(ctx context.Context, obj Object, rg int, fn func(int64, []segment.Message, []string) error) error {
	return d.memDecoder.Decode(ctx, obj, rg, func(first int64, b []segment.Message, _ []string) error {
		skip := make([]string, len(b))
		for i := range b {
			if (first+int64(i))%11 == 0 {
				skip[i] = "not_this_jobs"
				b[i].UserID = nil // the transform would skip it otherwise too, as missing_user_id
				b[i].Event = []byte("Order Completed")
			}
		}
		return fn(first, b, skip)
	})
}

// TestDecoderSkips: a row the decoder marks is counted skipped with the
// decoder's reason and never reaches the transform, in a live run and in a
// dry run alike; the other rows go as usual.
func TestDecoderSkips(t *testing.T) {
	objs := slices.DeleteFunc(testObjects(), func(o Object) bool { return o.Skipped != "" })
	want := expect(objs)
	marked := int64(0)
	for _, u := range BuildPlan(objs) {
		for row := range u.Rows {
			if row%11 != 0 {
				continue
			}
			marked++
			// The row's own fate in expect, which the mark replaces.
			switch {
			case row%7 == 3:
				want.reasons["missing_user_id"]--
			case row%13 == 6:
				want.reasons["unmapped_event"]--
			case row%17 == 9:
				want.reasons[SkipNoRequests]--
			default:
				id := url.QueryEscape(msgID(objs[u.Object].Key, u.RowGroup, row))
				want.requests = slices.DeleteFunc(want.requests, func(r string) bool { return strings.Contains(r, "eid="+id+"&") || strings.HasSuffix(r, "eid="+id) })
				want.skipped++
			}
		}
	}
	want.reasons["not_this_jobs"] = marked
	for k, n := range want.reasons {
		if n == 0 {
			delete(want.reasons, k)
		}
	}

	stub := newConvertroStub(t, nil)
	rep, err := runLiveTest(t, context.Background(), t.TempDir(), Config{Objects: objs, Decoders: 2}, &decoderSkips{memDecoder{batch: 64}}, stub, &memDeadLetters{})
	if err != nil {
		t.Fatal(err)
	}
	got := stub.received()
	slices.Sort(got)
	wantReqs := slices.Sorted(slices.Values(want.requests))
	if !slices.Equal(got, wantReqs) || !maps.Equal(rep.Counts.RowsSkipped, want.reasons) || rep.Counts.RowsRead != want.rows {
		t.Errorf("live: %d requests (want %d), skipped %v (want %v), read %d (want %d)",
			len(got), len(wantReqs), rep.Counts.RowsSkipped, want.reasons, rep.Counts.RowsRead, want.rows)
	}

	var out bytes.Buffer
	drep, err := Run(context.Background(), Config{Job: testJob, Objects: objs, Decoders: 2},
		Deps{Decoder: &decoderSkips{memDecoder{batch: 64}}, NewTransform: newTestTransform("http://convertro.test"),
			DryRun: &out, DryRunLine: writers.AppendDryRunLine})
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(drep.Counts.RowsSkipped, want.reasons) || drep.WouldSend.Requests != int64(len(want.requests)) {
		t.Errorf("dry: skipped %v (want %v), would send %d (want %d)", drep.Counts.RowsSkipped, want.reasons, drep.WouldSend.Requests, len(want.requests))
	}
}
