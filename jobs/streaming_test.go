package jobs

import (
	"context"
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
// request. A run that read every footer before sending would wait on that
// read for good; the hold gives up after a minute only so that such a run
// ends, and the test then fails. The run delivers what a dry run lists,
// and the manifest names more than one part of the plan.
func TestFirstRequestBeforeLastFooter(t *testing.T) {
	ctx := context.Background()
	export := filepath.Join(t.TempDir(), "export")
	if _, err := generate.Generate(ctx, generate.Options{Out: export, Rows: 20_000, Seed: 31, Days: 1, RowGroupRows: 500}); err != nil {
		t.Fatal(err)
	}
	root := objstoretest.GCS(t) + "/segment"
	objstoretest.PutTree(t, export, root)
	src, err := readers.OpenSource(ctx, root, readers.SourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	objs, _, err := src.List(ctx)
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
	last := strings.TrimPrefix(uris[len(uris)-1], "gs://")
	last = last[strings.IndexByte(last, '/')+1:] // the object's name in its bucket

	first := make(chan struct{})
	var once sync.Once
	var held, releasedByRequest, gaveUp int
	var mu sync.Mutex
	hold := func(r *http.Request) {
		if !strings.Contains(r.URL.Path, last) {
			return
		}
		select {
		case <-first:
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

	rec := &recorder{}
	rec.sim = simulator.New(simulator.Options{ClientName: "acme", SiteID: "12", Record: rec})
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(first) })
		rec.sim.ServeHTTP(w, r)
	}))
	defer rec.srv.Close()

	dir := t.TempDir()
	o := testOptions(root, filepath.Join(dir, "state"), rec.srv.URL)
	rep, err := Run(ctx, o, testEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	h, byRequest, gave := held, releasedByRequest, gaveUp
	mu.Unlock()
	if h == 0 || byRequest == 0 || gave > 0 {
		t.Fatalf("reads of the last object held %d times: %d released by the first request, %d gave up waiting for one", h, byRequest, gave)
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
	st, err := pipeline.OpenState(ctx, o.State)
	if err != nil {
		t.Fatal(err)
	}
	m, err := pipeline.ReadManifest(ctx, st, pipeline.Shard{Index: 0, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Parts) < 2 || len(m.Objects) != len(objs) {
		t.Errorf("manifest: %d objects in %d parts, want the %d listed in more than one", len(m.Objects), len(m.Parts), len(objs))
	}
	t.Logf("%d objects, %d parts; the last object's reads were held %d times until the first request", len(objs), len(m.Parts), h)
}
