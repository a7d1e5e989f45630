package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/objstore"
	"github.com/convertro-etl/convertro-etl/writers"
)

// growObjects is a listing of n objects of a few row groups each, sorted
// by URI.
func growObjects(n int) []Object {
	objs := make([]Object, n)
	for i := range objs {
		key := fmt.Sprintf("day=2024-01-01/part-%03d.parquet", i)
		objs[i] = Object{URI: "mem://" + key, Key: key, Size: int64(100 + i), Version: "1",
			RowGroups: []int64{int64(20 + i%7), int64(5 + i%3)}}
	}
	objs[3].RowGroups = append(objs[3].RowGroups, 0) // a row group with no rows
	objs[5].RowGroups, objs[5].Skipped = nil, "bad footer"
	return objs
}

// segmentPlanner adds objs in segments of the sizes given (the last one
// repeated), calling before(k) ahead of segment k; it records the segments
// it added.
type segmentPlanner struct {
	objs   []Object
	sizes  []int
	before func(ctx context.Context, k int) error
	mu     sync.Mutex
	added  int // objects handed over
}

func (p *segmentPlanner) plan(ctx context.Context, add func([]Object) error) error {
	for k, at := 0, 0; at < len(p.objs); k++ {
		n := p.sizes[min(k, len(p.sizes)-1)]
		end := min(at+n, len(p.objs))
		if p.before != nil {
			if err := p.before(ctx, k); err != nil {
				return err
			}
		}
		if err := add(slices.Clone(p.objs[at:end])); err != nil {
			return err
		}
		p.mu.Lock()
		p.added = end
		p.mu.Unlock()
		at = end
	}
	return nil
}

func (p *segmentPlanner) handed() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.added
}

// runPlanned runs (or resumes) the job with the objects of the ledger
// known at the start and the rest added by the planner, as jobs does.
func runPlanned(t *testing.T, ctx context.Context, st StateStore, cfg Config, planner *segmentPlanner, stub *convertroStub) (*Report, error) {
	t.Helper()
	cp, prev, err := OpenCheckpoint(context.Background(), st, Shard{0, 1}, NewLease(), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Job = testJob
	all := planner.objs
	planner.objs, cfg.Objects = nil, nil
	held := map[string]bool{}
	if prev != nil {
		for _, o := range prev.Objects {
			held[o.URI] = true
		}
	}
	for _, o := range all {
		if held[o.URI] {
			cfg.Objects = append(cfg.Objects, o)
		} else {
			planner.objs = append(planner.objs, o)
		}
	}
	return Run(ctx, cfg, Deps{
		Decoder:      &memDecoder{batch: 4},
		NewTransform: newTestTransform(stub.URL),
		Sender:       httpSender{stub.Client()},
		DeadLetters:  &memDeadLetters{},
		Checkpoint:   cp,
		Previous:     prev,
		State:        st,
		Planner:      planner.plan,
	})
}

// The first request leaves while later objects are not planned yet: the
// planner holds back its second segment until Convertro received a
// request, which a run that planned everything before sending would never
// do (the test would then end on its deadline with nothing sent). Every
// request is still sent exactly once, and the manifest names one part per
// segment.
func TestPlannerFirstRequestBeforePlanningEnds(t *testing.T) {
	objs := growObjects(40)
	want := expect(objs)
	first := make(chan struct{})
	var once sync.Once
	stub := newConvertroStub(t, func(*http.Request, int) int {
		once.Do(func() { close(first) })
		return http.StatusOK
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	planner := &segmentPlanner{objs: objs, sizes: []int{2, 4, 8, 16}, before: func(ctx context.Context, k int) error {
		if k != 1 {
			return nil
		}
		select {
		case <-first:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("no request reached Convertro while the plan held its first segment only: %w", ctx.Err())
		}
	}}
	st := newDirState(t)
	rep, err := runPlanned(t, ctx, st, Config{Decoders: 2, Concurrency: 4, Window: 4096}, planner, stub)
	if err != nil && !errors.Is(err, ErrIncomplete) {
		t.Fatalf("run: %v", err)
	}
	checkSentOnce(t, stub.received(), want.requests)
	m, err := ReadManifest(context.Background(), st, Shard{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	// Segments of 2, 4, 8, 16 and 10 objects, no Config.Objects: five parts.
	if len(m.Parts) != 5 || len(m.Objects) != len(objs) || m.Status != StatusFinished || !m.AllDone() {
		t.Fatalf("manifest: %d parts, %d objects, status %s, all done %v", len(m.Parts), len(m.Objects), m.Status, m.AllDone())
	}
	if rep.Counts.RowsRead != want.rows || rep.Counts.ObjectsSkipped != 1 {
		t.Errorf("report: %d rows, %d objects skipped; want %d, 1", rep.Counts.RowsRead, rep.Counts.ObjectsSkipped, want.rows)
	}
	if err := rep.Check(); err != nil {
		t.Error(err)
	}
}

// A dry run whose plan arrives in segments writes exactly what it writes
// when the whole plan is given at the start, whatever the segments and the
// number of decoders.
func TestPlannerDryRunSameOutput(t *testing.T) {
	objs := growObjects(30)
	whole := dryRun(t, objs, 1, &memDecoder{batch: 6})
	for _, tc := range []struct {
		known    int
		sizes    []int
		decoders int
	}{{0, []int{1}, 1}, {0, []int{1, 3, 9}, 4}, {7, []int{2, 50}, 3}, {30, []int{5}, 2}} {
		var out bytes.Buffer
		p := &segmentPlanner{objs: objs[tc.known:], sizes: tc.sizes}
		rep, err := Run(context.Background(), Config{Job: testJob, Objects: objs[:tc.known], Decoders: tc.decoders},
			Deps{Decoder: &memDecoder{batch: 6}, NewTransform: newTestTransform("http://convertro.test"),
				DryRun: &out, DryRunLine: writers.AppendDryRunLine, Planner: p.plan})
		if err != nil {
			t.Fatalf("%+v: %v", tc, err)
		}
		if !bytes.Equal(out.Bytes(), whole) {
			t.Errorf("%+v: the dry run's output differs from the one of the whole plan", tc)
		}
		if want := expect(objs); rep.Counts.RowsRead != want.rows || rep.Counts.ObjectsSkipped != 1 {
			t.Errorf("%+v: %d rows read, %d objects skipped", tc, rep.Counts.RowsRead, rep.Counts.ObjectsSkipped)
		}
	}
}

// A run stopped while it plans keeps the parts it named; the next run
// finds them in the ledger, plans the rest of the listing as new objects,
// and together they send every request, the repeats within the bound.
func TestPlannerStoppedMidPlanningResumes(t *testing.T) {
	objs := growObjects(40)
	want := expect(objs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stub := newConvertroStub(t, nil)
	const window = 128
	// The third segment waits until requests of the first two went out,
	// then the run is stopped there: planning is cut short.
	stopped := &segmentPlanner{objs: objs, sizes: []int{3, 5}, before: func(ctx context.Context, k int) error {
		if k < 2 {
			return nil
		}
		for len(stub.received()) < 10 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
		cancel()
		<-ctx.Done()
		return ctx.Err()
	}}
	st := newDirState(t)
	cfg := Config{Decoders: 2, Concurrency: 4, Window: window}
	rep1, err := runPlanned(t, ctx, st, cfg, stopped, stub)
	if !errors.Is(err, ErrStopped) {
		t.Fatalf("first run: %v, want ErrStopped", err)
	}
	m1, err := ReadManifest(context.Background(), st, Shard{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(m1.Objects) != 8 || len(m1.Parts) != 2 {
		t.Fatalf("after the stop: %d objects in %d parts, want the 8 of the 2 segments added", len(m1.Objects), len(m1.Parts))
	}
	first := stub.received()
	stub.reset()
	rest := &segmentPlanner{objs: objs, sizes: []int{4, 16}}
	rep2, err := runPlanned(t, context.Background(), st, cfg, rest, stub)
	if err != nil && !errors.Is(err, ErrIncomplete) {
		t.Fatalf("resume: %v", err)
	}
	if len(rest.objs) != len(objs)-8 {
		t.Errorf("the resume planned %d objects anew, want %d", len(rest.objs), len(objs)-8)
	}
	all := counts(slices.Concat(first, stub.received()))
	repeats := checkAllSent(t, all, want.requests)
	if int64(repeats) > rep2.RepeatBound || rep2.RepeatBound > window {
		t.Errorf("%d repeats, bound %d (window %d)", repeats, rep2.RepeatBound, window)
	}
	if rep2.Counts.RowsRead != want.rows || rep2.Counts.RequestsSent != int64(len(want.requests)) {
		t.Errorf("counts over both runs: %d rows, %d requests; want %d, %d", rep2.Counts.RowsRead, rep2.Counts.RequestsSent, want.rows, len(want.requests))
	}
	if err := rep2.Check(); err != nil {
		t.Error(err)
	}
	t.Logf("first run: %d requests (status %s); resume: %d; repeats %d (bound %d)", len(first), rep1.Status, len(stub.received()), repeats, rep2.RepeatBound)
}

// Each segment writes its own part once, and no part is written again: a
// segment's cost is its objects, and a commit writes the manifest, which
// names the parts, not the plan.
func TestPlannerSegmentWritesOnlyItsPart(t *testing.T) {
	objs := growObjects(60)
	stub := newConvertroStub(t, nil)
	st := &countingStore{StateStore: newDirState(t)}
	p := &segmentPlanner{objs: objs, sizes: []int{2, 8, 50}}
	if _, err := runPlanned(t, context.Background(), st, Config{Decoders: 2, Concurrency: 4, Window: 4096}, p, stub); err != nil && !errors.Is(err, ErrIncomplete) {
		t.Fatal(err)
	}
	m, err := ReadManifest(context.Background(), st, Shard{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Parts) != 3 {
		t.Fatalf("parts %v, want one per segment", m.Parts)
	}
	var sizes []int
	for _, part := range m.Parts {
		if n := st.writes[part]; n != 1 {
			t.Errorf("part %s written %d times, want once", part, n)
		}
		sizes = append(sizes, st.written[part])
	}
	for name := range st.writes {
		if strings.HasPrefix(name, "plan-") && !slices.Contains(m.Parts, name) {
			t.Errorf("a plan object the manifest does not name was written: %s", name)
		}
	}
	// A part holds its segment's objects: the first (2 objects) is a
	// small fraction of the last (50).
	if sizes[0]*10 > sizes[2] {
		t.Errorf("part sizes %v: the first segment's is not small next to the last's", sizes)
	}
	// The manifest itself holds no plan: its size stays below a part's.
	data, _, err := st.Read(context.Background(), ManifestName(Shard{0, 1}))
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > sizes[2] {
		t.Errorf("the manifest is %d bytes, larger than the plan part of 50 objects (%d)", len(data), sizes[2])
	}
	t.Logf("parts %v bytes; manifest %d bytes", sizes, len(data))
}

// A manifest of version 5, its plan in one object named by Plan, resumes:
// its plan is read as the one part, the run finishes it, and the manifest
// it writes is of version 6 with that part.
func TestVersion5ManifestResumes(t *testing.T) {
	objs := testObjects()
	want := expect(objs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := len(want.requests) / 3
	stub := newConvertroStub(t, func(_ *http.Request, n int) int {
		if n == stop {
			cancel()
		}
		return http.StatusOK
	})
	dir := t.TempDir()
	cfg := Config{Objects: objs, Decoders: 2, Concurrency: 4, Window: 64}
	if _, err := runLiveTest(t, ctx, dir, cfg, &memDecoder{batch: 4}, stub, &memDeadLetters{}); !errors.Is(err, ErrStopped) {
		t.Fatalf("first run: %v", err)
	}
	first := stub.received()
	// Write the state back as version 5 wrote it: the manifest's version
	// and Plan, the plan without a part's start.
	st, err := OpenState(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	bg := context.Background()
	data, _, err := st.Read(bg, ManifestName(Shard{0, 1}))
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	parts := raw["plan_parts"].([]any)
	if len(parts) != 1 {
		t.Fatalf("parts %v", parts)
	}
	planData, _, err := st.Read(bg, parts[0].(string))
	if err != nil {
		t.Fatal(err)
	}
	var plan map[string]any
	if err := json.Unmarshal(planData, &plan); err != nil {
		t.Fatal(err)
	}
	plan["version"] = 5
	delete(plan, "first_object")
	delete(plan, "first_unit")
	v5plan, _ := json.Marshal(plan)
	if _, err := st.Write(bg, "plan-0-of-1-v5.json", v5plan, objstore.Overwrite); err != nil {
		t.Fatal(err)
	}
	raw["version"] = 5
	raw["plan"] = "plan-0-of-1-v5.json"
	delete(raw, "plan_parts")
	v5, _ := json.Marshal(raw)
	if _, err := st.Write(bg, ManifestName(Shard{0, 1}), v5, objstore.Overwrite); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(bg, parts[0].(string)); err != nil {
		t.Fatal(err)
	}

	stub.reset()
	rep, err := runLiveTest(t, bg, dir, cfg, &memDecoder{batch: 4}, stub, &memDeadLetters{})
	if !errors.Is(err, ErrIncomplete) || rep.Status != StatusFinished {
		t.Fatalf("resume of a version 5 manifest: %v (status %s)", err, rep.Status)
	}
	all := counts(slices.Concat(first, stub.received()))
	for _, r := range want.requests {
		if all[r] == 0 {
			t.Errorf("%s never sent", r)
		}
	}
	if len(stub.received()) >= len(want.requests) {
		t.Errorf("the resume sent %d requests of %d: it did not take the version 5 progress", len(stub.received()), len(want.requests))
	}
	m := readManifest(t, dir, Shard{0, 1})
	if m.Version != ManifestVersion || len(m.Parts) != 1 || m.Parts[0] != "plan-0-of-1-v5.json" || m.Plan != "" {
		t.Errorf("after the resume: version %d, parts %v, plan %q; want version %d with the version 5 plan as its part",
			m.Version, m.Parts, m.Plan, ManifestVersion)
	}
}

// A program that knows versions up to 5 refuses a version 6 manifest; this
// one, likewise, refuses a newer one and says what to do.
func TestNewerManifestRefused(t *testing.T) {
	_, err := decodeManifest("gs://b/m.json", []byte(`{"version":7}`))
	if !errors.Is(err, ErrBadManifest) || !strings.Contains(err.Error(), "newer version of this program") {
		t.Fatalf("a version 7 manifest: %v", err)
	}
}

// A run that reaches the day's cap hands out no more units but finishes
// its plan: the manifest holds the whole job, for status and for the next
// run.
func TestPlannerCappedRunPlansEverything(t *testing.T) {
	objs := growObjects(30)
	stub := newConvertroStub(t, nil)
	st := newDirState(t)
	p := &segmentPlanner{objs: objs, sizes: []int{1, 2, 4}}
	_, err := runPlanned(t, context.Background(), st, Config{Decoders: 2, Concurrency: 4, Window: 64, MaxRequestsPerDay: 5}, p, stub)
	if !errors.Is(err, ErrCapReached) {
		t.Fatalf("run: %v, want ErrCapReached", err)
	}
	m, err := ReadManifest(context.Background(), st, Shard{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Objects) != len(objs) || m.AllDone() || m.Status != StatusStopped {
		t.Fatalf("after the cap: %d objects of %d planned, all done %v, status %s", len(m.Objects), len(objs), m.AllDone(), m.Status)
	}
	if n := len(stub.received()); n > 5 {
		t.Errorf("%d requests sent under a cap of 5", n)
	}
}

// A part that no manifest names (stored by a run stopped before the
// commit that would have named it, or left by a plan a fresh start
// replaced) is deleted when the shard's next run begins; other shards'
// parts stay, and so does every part the new manifest names.
func TestOrphanPlanPartsDropped(t *testing.T) {
	ctx := context.Background()
	st := newDirState(t)
	orphan := partPrefix(Shard{0, 1}) + "00000000deadbeef.json"
	others := []string{partPrefix(Shard{0, 2}) + "00000000deadbeef.json", partPrefix(Shard{0, 10}) + "00000000deadbeef.json"}
	for _, name := range append([]string{orphan}, others...) {
		if _, err := st.Write(ctx, name, []byte(`{"version":6}`), objstore.IfAbsent); err != nil {
			t.Fatal(err)
		}
	}
	stub := newConvertroStub(t, nil)
	p := &segmentPlanner{objs: growObjects(20), sizes: []int{5, 15}}
	if _, err := runPlanned(t, ctx, st, Config{Decoders: 2, Concurrency: 4, Window: 4096}, p, stub); err != nil && !errors.Is(err, ErrIncomplete) {
		t.Fatal(err)
	}
	if _, _, err := st.Read(ctx, orphan); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("the orphaned part of this shard is still there (%v)", err)
	}
	for _, name := range others {
		if _, _, err := st.Read(ctx, name); err != nil {
			t.Errorf("another shard's part %s: %v", name, err)
		}
	}
	m, err := ReadManifest(ctx, st, Shard{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Parts) != 2 || len(m.Objects) != 20 {
		t.Errorf("the manifest names parts %v and %d objects, want 2 parts of the 20 objects", m.Parts, len(m.Objects))
	}
}
