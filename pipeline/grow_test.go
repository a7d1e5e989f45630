package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"weak"

	"golang.org/x/sync/errgroup"

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

// tallyObjects is a listing of n objects of two to four row groups of 9
// to 31 rows each, in which some objects are set aside while planned
// (objects 30-32 and the last three among them: in segments of three,
// theirs have no units), and others have a time filter that prunes one
// of their row groups; object 12 is set aside with a filter, which then
// prunes nothing.
func tallyObjects(n int) []Object {
	objs := make([]Object, n)
	for i := range objs {
		key := fmt.Sprintf("part-%03d.parquet", i)
		rgs := make([]int64, 2+i%3)
		for rg := range rgs {
			rgs[rg] = int64(9 + (i*5+rg*3)%23)
		}
		objs[i] = Object{URI: "mem://" + key, Key: key, Size: int64(100 + i), Version: "1", RowGroups: rgs}
		if i%5 == 2 || i == 12 {
			objs[i].Filter = &TimeFilter{Pruned: []int{i % len(rgs)}}
		}
		if i%11 == 4 || i == 12 || (i >= 30 && i < 33) || i >= n-3 {
			objs[i].Skipped = "bad footer"
		}
	}
	return objs
}

// A dry run whose plan comes in many segments, the segments written
// dropped as it goes, reports what the plan holds as the whole plan's dry
// run does: the rows planned and marked, the row groups pruned (of the
// objects not set aside), and the objects set aside in plan order, with
// what was read of the one found bad mid-way.
func TestPlannerDryRunReportSameAsWholePlan(t *testing.T) {
	const n, badObj, badRG = 150, 78, 1
	objs := tallyObjects(n)
	badKey := objs[badObj].Key
	newDecoder := func() Decoder { return &failingDecoder{memDecoder: memDecoder{batch: 8}, key: badKey, rg: badRG} }

	// What the report reads of the plan, worked out from the listing:
	// with one decoder the units are read in plan order, so
	// the bad object's row groups before badRG are read, badRG gives one
	// batch (8 rows) before it fails, and those after are passed over.
	var want Report
	for _, u := range BuildPlan(objs) {
		want.RowsPlanned += u.Rows
	}
	for i, o := range objs {
		if o.Filter != nil && o.Skipped == "" {
			for _, rg := range o.Filter.Pruned {
				want.RowGroupsPruned++
				want.RowsPruned += o.RowGroups[rg]
			}
		}
		switch {
		case o.Skipped != "":
			want.SkippedObjects = append(want.SkippedObjects, SkippedObject{URI: o.URI, Reason: o.Skipped})
		case i == badObj:
			s := SkippedObject{URI: o.URI, Reason: fmt.Errorf("read %s row group %d column \"event\": corrupt page (%w)", o.URI, badRG, ErrSkipObject).Error()}
			for rg, rows := range o.RowGroups {
				read := rows
				switch {
				case rg == badRG:
					read = 8
				case rg > badRG:
					read = 0
				}
				s.RowsRead += read
				s.RowsNotRead += rows - read
			}
			want.SkippedObjects = append(want.SkippedObjects, s)
			want.RowsMarked -= s.RowsNotRead
		}
	}
	want.RowsMarked += want.RowsPlanned
	if want.RowGroupsPruned < 20 || len(want.SkippedObjects) < 15 || want.SkippedObjects[1].URI != objs[12].URI {
		t.Fatalf("the listing does not have what the test needs: %d row groups pruned, %d objects set aside", want.RowGroupsPruned, len(want.SkippedObjects))
	}

	// same compares what a report reads of the plan; the counts come from
	// the rows read, the same whatever the segments.
	same := func(name string, got, want *Report) {
		t.Helper()
		if got.RowsPlanned != want.RowsPlanned || got.RowsMarked != want.RowsMarked || got.RowsReplaced != want.RowsReplaced ||
			got.RowGroupsPruned != want.RowGroupsPruned || got.RowsPruned != want.RowsPruned {
			t.Errorf("%s: planned %d, marked %d, replaced %d, pruned %d row groups (%d rows); want %d, %d, %d, %d (%d)", name,
				got.RowsPlanned, got.RowsMarked, got.RowsReplaced, got.RowGroupsPruned, got.RowsPruned,
				want.RowsPlanned, want.RowsMarked, want.RowsReplaced, want.RowGroupsPruned, want.RowsPruned)
		}
		if !slices.Equal(got.SkippedObjects, want.SkippedObjects) {
			t.Errorf("%s: skipped objects\n%+v\nwant\n%+v", name, got.SkippedObjects, want.SkippedObjects)
		}
	}
	dry := func(known int, p *segmentPlanner, decoders int) *Report {
		t.Helper()
		deps := Deps{Decoder: newDecoder(), NewTransform: newTestTransform("http://convertro.test"),
			DryRun: io.Discard, DryRunLine: writers.AppendDryRunLine}
		if p != nil {
			deps.Planner = p.plan
		}
		rep, err := Run(context.Background(), Config{Job: testJob, Objects: objs[:known], Decoders: decoders}, deps)
		if err != nil {
			t.Fatalf("dry run: %v", err)
		}
		if err := rep.Check(); err != nil {
			t.Error(err)
		}
		if rep.Counts.ObjectsSkipped != int64(len(want.SkippedObjects)) {
			t.Errorf("%d objects skipped, want %d", rep.Counts.ObjectsSkipped, len(want.SkippedObjects))
		}
		return rep
	}
	whole := dry(n, nil, 1)
	same("whole plan", whole, &want)
	for _, tc := range []struct {
		known int
		sizes []int
	}{{0, []int{3}}, {9, []int{1, 2, 5}}, {0, []int{40, 1, 3}}} {
		name := fmt.Sprintf("%d known, segments of %v", tc.known, tc.sizes)
		rep := dry(tc.known, &segmentPlanner{objs: objs[tc.known:], sizes: tc.sizes}, 1)
		same(name, rep, &want)
		if !maps.Equal(rep.Counts.RowsSkipped, whole.Counts.RowsSkipped) || rep.Counts.RowsRead != whole.Counts.RowsRead || *rep.WouldSend != *whole.WouldSend {
			t.Errorf("%s: counts %+v, would send %+v; the whole plan's %+v, %+v", name, rep.Counts, *rep.WouldSend, whole.Counts, *whole.WouldSend)
		}
	}

	// With more decoders, what is read of the bad object before the
	// failure is known varies; the rest does not.
	rep := dry(0, &segmentPlanner{objs: objs, sizes: []int{3}}, 4)
	k := slices.IndexFunc(rep.SkippedObjects, func(s SkippedObject) bool { return s.URI == objs[badObj].URI })
	wantBad := want.SkippedObjects[k]
	got := rep.SkippedObjects[k]
	if got.Reason != wantBad.Reason || got.RowsRead < 8 || got.RowsRead+got.RowsNotRead != wantBad.RowsRead+wantBad.RowsNotRead {
		t.Errorf("4 decoders: the bad object %+v, want %d rows in all, at least 8 read", got, wantBad.RowsRead+wantBad.RowsNotRead)
	}
	if rep.RowsMarked != want.RowsPlanned-got.RowsNotRead {
		t.Errorf("4 decoders: %d rows marked, want the %d planned but the %d not read", rep.RowsMarked, want.RowsPlanned, got.RowsNotRead)
	}
	rep.SkippedObjects[k], rep.RowsMarked = wantBad, want.RowsMarked
	same("4 decoders", rep, &want)
}

// handWeak hands objs to add and returns a weak pointer to them: the
// caller keeps none of its own.
func handWeak(add func([]Object) error, objs []Object) (weak.Pointer[Object], error) {
	return weak.Make(&objs[0]), add(objs)
}

// A dry run lets go of the objects a Planner handed once their units are
// written, and a Planner that adds segments as fast as it can gets no more
// than dryBacklog units ahead of the writer: with segments of one unit
// each, the segments still reachable after a collection are never more
// than the backlog and the one just added. A view that kept every segment
// would hold all of them. The decoders wait until the Planner has gone
// past the backlog, so that the bound is reached.
func TestPlannerDryRunLetsGoOfWrittenSegments(t *testing.T) {
	const n = dryBacklog + 1500
	// The collector may keep a segment retired a moment ago through a
	// stale stack slot of the goroutine that retired it.
	const slack = 2
	gate := make(chan struct{})
	dec := &memDecoder{batch: 4, before: func(ctx context.Context, _ Object, _ int) error {
		select {
		case <-gate:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	var handed []weak.Pointer[Object]
	worst := 0
	check := func(k int) {
		runtime.GC()
		held := 0
		for _, w := range handed {
			if w.Value() != nil {
				held++
			}
		}
		worst = max(worst, held)
		if held > dryBacklog+1+slack {
			t.Errorf("after segment %d was added, %d segments are still held; at most %d units may wait to be written", k, held, dryBacklog)
		}
	}
	planner := func(ctx context.Context, add func([]Object) error) error {
		for k := range n {
			if k == dryBacklog+1 {
				close(gate)
			}
			key := fmt.Sprintf("seg-%05d.parquet", k)
			w, err := handWeak(add, []Object{{URI: "mem://" + key, Key: key, Size: 1, Version: "1", RowGroups: []int64{3}}})
			if err != nil {
				return err
			}
			handed = append(handed, w)
			if k%512 == 0 || k > dryBacklog && k <= dryBacklog+8 || k == n-1 {
				check(k)
			}
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{Job: testJob, Decoders: 2}, Deps{Decoder: dec, NewTransform: newTestTransform("http://convertro.test"),
		DryRun: io.Discard, DryRunLine: writers.AppendDryRunLine, Planner: planner})
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if rep.RowsPlanned != 3*n || rep.Counts.RowsRead != 3*n {
		t.Errorf("planned %d rows, read %d; want %d", rep.RowsPlanned, rep.Counts.RowsRead, 3*n)
	}
	if err := rep.Check(); err != nil {
		t.Error(err)
	}
	t.Logf("%d segments of one unit; at most %d held at a check", n, worst)
}

// The dry run's plan lets a segment be added only while at most dryBacklog
// units are not written, whatever the segments' sizes, and drops every
// segment the writer has passed; the writer still finds each unit not
// written and its object. The writer starts only once the planner has
// gone past the backlog, so that the planner has to wait for it.
func TestDryPlanBacklog(t *testing.T) {
	sizes := []int{1, 700, 0, 3, dryBacklog + 900, 0, 64, 2 * dryBacklog, 1, 5, dryBacklog - 1, 2, 0, 300}
	view := newPlanView(nil, nil, false)
	plan := newDryPlan(view, map[int]string{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	started := make(chan struct{})
	start := sync.OnceFunc(func() { close(started) })
	var objects, units int // the planner's
	g.Go(func() error {
		defer view.finish()
		defer start()
		for k, size := range sizes {
			if units > dryBacklog {
				start()
			}
			if err := plan.admit(gctx); err != nil {
				return err
			}
			plan.mu.Lock()
			written := plan.written
			plan.mu.Unlock()
			if units-written > dryBacklog {
				return fmt.Errorf("segment %d admitted with %d units not written", k, units-written)
			}
			objs := make([]Object, size)
			for i := range objs {
				key := fmt.Sprintf("u%d", units+i) // one unit an object: unit i is object i
				objs[i] = Object{URI: "mem://" + key, Key: key, RowGroups: []int64{1}}
			}
			s := newSegment(objs, objects, Shard{0, 1})
			view.add(s.objs, s.units)
			objects, units = objects+size, units+size
			// Every segment the view holds with units has one not written
			// before it was looked at: the writer drops a segment before
			// it says it wrote its last unit.
			plan.mu.Lock()
			written = plan.written
			plan.mu.Unlock()
			var held []viewSegment
			view.segments(func(s viewSegment) { held = append(held, s) })
			for _, h := range held {
				if len(h.units) > 0 && h.unit0+len(h.units) <= written {
					return fmt.Errorf("after segment %d: the view holds units %d-%d, all written (%d)", k, h.unit0, h.unit0+len(h.units)-1, written)
				}
			}
		}
		return nil
	})
	g.Go(func() error {
		select {
		case <-started:
		case <-gctx.Done():
			return context.Cause(gctx)
		}
		for i := 0; ; i++ {
			if ok, err := view.wait(gctx, i); err != nil || !ok {
				return err
			}
			if u, obj := view.at(i); u.Object != i || obj.Key != fmt.Sprintf("u%d", i) {
				return fmt.Errorf("unit %d: %+v of object %s", i, u, obj.Key)
			}
			plan.wrote()
		}
	})
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	var held int
	view.segments(func(s viewSegment) { held += len(s.units) })
	if plan.written != units || held != 0 {
		t.Errorf("%d units written of %d; the view still holds %d", plan.written, units, held)
	}
	var tally planTally
	plan.tally(&tally)
	if tally.rowsPlanned != int64(units) || tally.rowsMarked != int64(units) {
		t.Errorf("tally %+v, want %d rows planned and marked", tally, units)
	}
}

// A dry run told the rows its Planner will add (Config.PlannedRows) counts
// its progress towards them from the first report, where one not told
// counts towards what has been added so far.
func TestPlannerDryRunPlannedRowsAreTheTotal(t *testing.T) {
	objs := growObjects(30)
	want := expect(objs).rows
	for _, told := range []int64{0, want} {
		var totals []int64
		var mu sync.Mutex
		// The first segment waits until progress has been reported, so a
		// run not told the rows reports a total below the plan's.
		reported := make(chan struct{})
		var once sync.Once
		p := &segmentPlanner{objs: objs, sizes: []int{2}, before: func(ctx context.Context, k int) error {
			if k != 1 {
				return nil
			}
			select {
			case <-reported:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}}
		var out bytes.Buffer
		_, err := Run(context.Background(), Config{Job: testJob, Decoders: 2, PlannedRows: told, ProgressInterval: time.Millisecond},
			Deps{Decoder: &memDecoder{batch: 6}, NewTransform: newTestTransform("http://convertro.test"),
				DryRun: &out, DryRunLine: writers.AppendDryRunLine, Planner: p.plan,
				OnProgress: func(pr Progress) {
					mu.Lock()
					totals = append(totals, pr.Total)
					mu.Unlock()
					once.Do(func() { close(reported) })
				}})
		if err != nil {
			t.Fatalf("told %d: %v", told, err)
		}
		mu.Lock()
		first, last := totals[0], totals[len(totals)-1]
		mu.Unlock()
		switch {
		case last != want:
			t.Errorf("told %d: the last progress counts towards %d rows, want %d", told, last, want)
		case told != 0 && first != want:
			t.Errorf("told %d: the first progress counts towards %d rows, want %d", told, first, want)
		case told == 0 && first >= want:
			t.Errorf("not told: the first progress counts towards %d rows, want fewer than the plan's %d", first, want)
		}
	}
}
