package jobs

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/objstore/objstoretest"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/readers"
	"github.com/convertro-etl/convertro-etl/writers/generate"
)

// A run sends its first request while footers of later objects are still
// unread: every read of the last object in plan order (from the GCS
// emulator, through its proxy) is held until the simulator has received a
// request (or begins after it). A run that read every footer before sending would wait on that
// read for good; the hold gives up after a minute only so that such a run
// ends, and the test then fails. The run delivers what a dry run lists,
// and the manifest names more than one part of the plan.
func TestFirstRequestBeforeLastFooter(t *testing.T) {
	ctx := context.Background()
	root, objs, last := gcsExportPlanLast(t, 31)

	first := make(chan struct{})
	var held, releasedByRequest, gaveUp, after int
	var mu sync.Mutex
	hold := func(r *http.Request) {
		if !strings.Contains(r.URL.Path, last) {
			return
		}
		select {
		case <-first:
			mu.Lock()
			after++ // the first request came before this read even began
			mu.Unlock()
			return
		default:
		}
		mu.Lock()
		held++
		mu.Unlock()
		select {
		case <-first:
			mu.Lock()
			releasedByRequest++
			mu.Unlock()
		case <-time.After(time.Minute):
			mu.Lock()
			gaveUp++
			mu.Unlock()
		}
	}
	traffic := objstoretest.TrafficOf("gcs")
	traffic.Before.Store(&hold)
	defer traffic.Before.Store(nil)

	rec := newRecorderOnFirst(t, func() { close(first) })

	dir := t.TempDir()
	o := testOptions(root, filepath.Join(dir, "state"), rec.srv.URL)
	rep, err := Run(ctx, o, testEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	h, byRequest, gave, a := held, releasedByRequest, gaveUp, after
	mu.Unlock()
	if gave > 0 || h+a == 0 || h != byRequest {
		t.Fatalf("reads of the last object: %d held (%d released by the first request, %d gave up waiting for one), %d begun after it",
			h, byRequest, gave, a)
	}
	if err := rep.Check(); err != nil || rep.Status != pipeline.StatusFinished {
		t.Fatalf("status %s: %v", rep.Status, err)
	}
	traffic.Before.Store(nil)

	dry := o
	dry.DryRun, dry.Out, dry.State = true, filepath.Join(dir, "dry.jsonl"), ""
	if _, err := Run(ctx, dry, testEnv(t)); err != nil {
		t.Fatal(err)
	}
	if want, got := dryRunRequests(t, dry.Out), rec.requests(t); !slices.Equal(want, got) {
		t.Errorf("the run sent %d requests, the dry run lists %d", len(got), len(want))
	}
	m := readManifest(t, o.State)
	if len(m.Parts) < 2 || len(m.Objects) != len(objs) {
		t.Errorf("manifest: %d objects in %d parts, want the %d listed in more than one", len(m.Objects), len(m.Parts), len(objs))
	}
	t.Logf("%d objects, %d parts; the last object's reads: %d held until the first request, %d begun after it", len(objs), len(m.Parts), h, a)
}

// A run stopped while it plans (a signal once the first request arrived,
// the last object's reads still held) keeps the segments it committed; the
// same command then plans the rest as new objects and finishes: together
// the runs send every request a dry run lists, the repeats within the
// report's bound.
func TestStoppedWhilePlanningResumes(t *testing.T) {
	ctx := context.Background()
	root, objs, last := gcsExportPlanLast(t, 37)

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	first := make(chan struct{})
	hold := func(r *http.Request) {
		if strings.Contains(r.URL.Path, last) {
			<-runCtx.Done() // never read in the first run
		}
	}
	traffic := objstoretest.TrafficOf("gcs")
	traffic.Before.Store(&hold)
	defer traffic.Before.Store(nil)

	rec := newRecorderOnFirst(t, func() { close(first); stop() }) // a signal once the first request is in

	dir := t.TempDir()
	o := testOptions(root, filepath.Join(dir, "state"), rec.srv.URL)
	rep1, err := Run(runCtx, o, testEnv(t))
	if !errors.Is(err, pipeline.ErrStopped) {
		t.Fatalf("first run: %v, want ErrStopped", err)
	}
	m1 := readManifest(t, o.State)
	if len(m1.Objects) == 0 || len(m1.Objects) >= len(objs) {
		t.Fatalf("after the stop the plan holds %d of %d objects, want some but not the last", len(m1.Objects), len(objs))
	}
	firstRun := rec.requests(t)
	traffic.Before.Store(nil)

	rec2 := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	o.Endpoint = rec2.srv.URL
	rep2, err := Run(ctx, o, testEnv(t))
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	if err := rep2.Check(); err != nil || rep2.Status != pipeline.StatusFinished {
		t.Fatalf("resume: status %s, %v", rep2.Status, err)
	}
	dry := o
	dry.DryRun, dry.Out, dry.State = true, filepath.Join(dir, "dry.jsonl"), ""
	if _, err := Run(ctx, dry, testEnv(t)); err != nil {
		t.Fatal(err)
	}
	want := dryRunRequests(t, dry.Out)
	all := map[string]int{}
	for _, r := range slices.Concat(firstRun, rec2.requests(t)) {
		all[r]++
	}
	repeats := 0
	for _, r := range want {
		switch n := all[r]; {
		case n == 0:
			t.Errorf("never sent: %s", r)
		case n > 1:
			repeats += n - 1
		}
	}
	if len(all) != len(want) {
		t.Errorf("%d distinct requests sent, the dry run lists %d", len(all), len(want))
	}
	if int64(repeats) > rep2.RepeatBound {
		t.Errorf("%d requests sent twice, more than the bound %d", repeats, rep2.RepeatBound)
	}
	t.Logf("%d objects: %d planned before the stop (status %s, %d requests); the resume sent %d; %d repeats (bound %d)",
		len(objs), len(m1.Objects), rep1.Status, len(firstRun), len(rec2.requests(t)), repeats, rep2.RepeatBound)
	<-first
}

// gcsExportPlanLast generates an export of 20,000 rows in objects of more
// than a first segment, stores it in the GCS emulator and returns its root,
// its objects and the name in its bucket of the last object in plan order.
func gcsExportPlanLast(t *testing.T, seed int64) (root string, objs []readers.Object, last string) {
	t.Helper()
	ctx := context.Background()
	export := filepath.Join(t.TempDir(), "export")
	if _, err := generate.Generate(ctx, generate.Options{Out: export, Rows: 20_000, Seed: seed, Days: 1, RowGroupRows: 500}); err != nil {
		t.Fatal(err)
	}
	root = objstoretest.GCS(t) + "/segment"
	objstoretest.PutTree(t, export, root)
	src, err := readers.OpenSource(ctx, root, readers.SourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	objs, _, err = src.List(ctx)
	src.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) <= firstSegment {
		t.Fatalf("%d objects: the export must hold more than a first segment (%d)", len(objs), firstSegment)
	}
	uris := make([]string, len(objs))
	for i, o := range objs {
		uris[i] = o.URI
	}
	slices.Sort(uris)
	last = strings.TrimPrefix(uris[len(uris)-1], "gs://")
	return root, objs, last[strings.IndexByte(last, '/')+1:]
}

// newRecorderOnFirst is a recording simulator for acme/12 that calls
// onFirst when its first request arrives, before it answers it.
func newRecorderOnFirst(t *testing.T, onFirst func()) *recorder {
	t.Helper()
	var once sync.Once
	rec := &recorder{}
	rec.sim = simulator.New(simulator.Options{ClientName: "acme", SiteID: "12", Record: rec})
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(onFirst)
		rec.sim.ServeHTTP(w, r)
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}
