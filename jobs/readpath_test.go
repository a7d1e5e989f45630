package jobs

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"golang.org/x/sync/errgroup"

	"github.com/convertro-etl/convertro-etl/internal/segment"
	"github.com/convertro-etl/convertro-etl/objstore/objstoretest"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/readers"
	"github.com/convertro-etl/convertro-etl/writers/generate"
)

// exportNeeds opens every object of a local export as the job does and
// returns how many there are, their row groups, and the compressed bytes
// of the column chunks the mapping reads (RowGroup.CompressedBytes): what a
// dry run must fetch at least.
func exportNeeds(t testing.TB, dir string) (objects, groups int, need, size, footers int64) {
	t.Helper()
	ctx := context.Background()
	src, err := readers.OpenSource(ctx, dir, readers.SourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	objs, _, err := src.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		f, err := src.Open(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		p, err := readers.OpenParquet(ctx, f, o, readers.Hint{})
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range p.RowGroups() {
			need += g.CompressedBytes
			groups++
		}
		var tail [8]byte
		if _, err := f.ReadAt(tail[:], f.Size()-8); err != nil {
			t.Fatal(err)
		}
		footers += int64(binary.LittleEndian.Uint32(tail[:4])) + 8
		size += f.Size()
		f.Close()
		objects++
	}
	return objects, groups, need, size, footers
}

// A dry run from a GCS bucket (the real client through the emulator's
// counting proxy) opens each object once: one footer read (and the 4 head
// bytes beside it) while planning, nothing more to open it again for
// decoding, no metadata request, and then a few coalesced ranged reads per
// row group; the bytes fetched are within 1.1 times the column chunks the
// mapping needs. (Before: 18.9 requests an object, 2.1 times the bytes.)
func TestDryRunRemoteRequestsPerObject(t *testing.T) {
	ctx := context.Background()
	export := filepath.Join(t.TempDir(), "export")
	// Objects of some 1 to 2 MB with one to a few row groups: large enough
	// that a footer read fetches the footer and not the whole object.
	if _, err := generate.Generate(ctx, generate.Options{
		Out: export, Rows: 300_000, Seed: 23, Days: 1, RowGroupRows: 10_000,
	}); err != nil {
		t.Fatal(err)
	}
	objects, groups, need, size, footers := exportNeeds(t, export)
	t.Logf("objects %d bytes, footers %d bytes", size, footers)
	root := objstoretest.GCS(t) + "/segment"
	objstoretest.PutTree(t, export, root)

	traffic := objstoretest.TrafficOf("gcs")
	traffic.Reset()
	dir := t.TempDir()
	o := testOptions(root, filepath.Join(dir, "state"), "http://127.0.0.1:1")
	o.DryRun, o.Out = true, filepath.Join(dir, "dry.jsonl")
	o.Decoders = 2
	rep, err := Run(ctx, o, testEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counts.RowsRead != 300_000 {
		t.Fatalf("read %d rows, want 300000", rep.Counts.RowsRead)
	}
	reqs, got := traffic.Requests.Load(), traffic.Bytes.Load()
	t.Logf("%d objects, %d row groups: %d requests (%.1f an object), %d bytes fetched for %d bytes of needed column chunks (%.3f)",
		objects, groups, reqs, float64(reqs)/float64(objects), got, need, float64(got)/float64(need))
	// Per object: the footer read and the head read beside it; per row
	// group, its chunk ranges after merging (the generated files' mapped
	// columns are not all neighbours: at most a few ranges). Plus the
	// source's stat and the listing.
	if limit := int64(2*objects + 4*groups + 4); reqs > limit {
		t.Errorf("%d requests for %d objects of %d row groups, want at most %d", reqs, objects, groups, limit)
	}
	if ratio := float64(got) / float64(need); ratio > 1.1 {
		t.Errorf("fetched %d bytes for %d bytes of needed column chunks: %.3f times, want at most 1.1", got, need, ratio)
	}
}

// Row groups are read ahead of the decoders only when a source is a
// remote store, whose latency reading ahead hides; from local disk it
// would only hold memory.
func TestReadAheadOnlyFromRemoteStores(t *testing.T) {
	ctx := context.Background()
	export := filepath.Join(t.TempDir(), "export")
	if _, err := generate.Generate(ctx, generate.Options{Out: export, Rows: 2_000, Seed: 5, Days: 1}); err != nil {
		t.Fatal(err)
	}
	root := objstoretest.GCS(t) + "/ahead"
	objstoretest.PutTree(t, export, root)
	for _, c := range []struct {
		name    string
		sources []string
		ahead   bool
	}{
		{"local", []string{export}, false},
		{"gcs", []string{root}, true},
		{"local and gcs", []string{export, root}, true},
	} {
		o := testOptions(c.sources[0], "", "").withDefaults()
		o.Sources = c.sources
		in, err := gather(ctx, o, plainListing(time.Time{}, time.Time{}), pipeline.Shard{Index: 0, Count: 1}, nil, testEnv(nil).Log, false)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		in.close()
		if got := in.lookahead > 1; got != c.ahead {
			t.Errorf("%s: %d units read from the one a decoder starts, want reading ahead %v", c.name, in.lookahead, c.ahead)
		}
	}
}

// decodeAll decodes units, in plan order, with decoders of in's Decode at
// once, as a run does, and returns the rows decoded.
func decodeAll(ctx context.Context, in *inputs, units []pipeline.Unit, decoders int) (int64, error) {
	objs := in.all()
	work := make(chan pipeline.Unit)
	var rows atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for range decoders {
		g.Go(func() error {
			for u := range work {
				err := in.Decode(gctx, objs[u.Object], u.RowGroup, func(_ int64, batch []segment.Message, _ []string) error {
					rows.Add(int64(len(batch)))
					return nil
				})
				if err != nil {
					return err
				}
			}
			return nil
		})
	}
	for _, u := range units {
		work <- u
	}
	close(work)
	err := g.Wait()
	return rows.Load(), err
}

// Reading ahead asks for no more row groups than the memory budget holds,
// nearest first, and asks again for those it had no room for: from a GCS
// bucket 30 ms away, with a budget whose part for reading ahead holds a
// few of the export's row groups where the lookahead is dozens, the
// decoders find most row groups read ahead: 80-86 of 120, where they
// read the other 34-40 themselves. Before, the lookahead's farthest row
// groups took the room, the nearer ones were refused and never asked
// again, and the decoders read 107-109 themselves, each 30 ms away.
func TestReadAheadWithinBudget(t *testing.T) {
	ctx := context.Background()
	export := filepath.Join(t.TempDir(), "export")
	if _, err := generate.Generate(ctx, generate.Options{Out: export, Rows: 120_000, Seed: 29, Days: 1}); err != nil {
		t.Fatal(err)
	}
	_, groups, need, _, _ := exportNeeds(t, export)
	root := objstoretest.GCS(t) + "/budget-ahead"
	objstoretest.PutTree(t, export, root)
	o := testOptions(root, "", "").withDefaults()
	o.MemoryBudget, o.Decoders = readers.MinMemoryBudget>>20, 2
	in, err := gather(ctx, o, plainListing(time.Time{}, time.Time{}), pipeline.Shard{Index: 0, Count: 1}, nil, testEnv(nil).Log, false)
	if err != nil {
		t.Fatal(err)
	}
	defer in.close()
	if fit := int64(readers.MinMemoryBudget/4) * int64(groups) / need; fit >= int64(in.lookahead) || fit >= int64(groups)/4 {
		t.Fatalf("reading ahead's part holds %d of %d row groups, lookahead %d: want it to bind", fit, groups, in.lookahead)
	}
	traffic := objstoretest.TrafficOf("gcs")
	traffic.Delay.Store(int64(30 * time.Millisecond))
	defer traffic.Delay.Store(0)
	units := pipeline.BuildPlan(in.all())
	if _, err := decodeAll(ctx, in, units, o.Decoders); err != nil {
		t.Fatal(err)
	}
	ahead, onDemand := in.budget.Reads()
	t.Logf("%d row groups of %d bytes on average: %d read ahead, %d by their decoders", len(units), need/int64(groups), ahead, onDemand)
	if ahead+onDemand != int64(len(units)) || onDemand > int64(len(units))/2 {
		t.Errorf("of %d row groups, %d read ahead and %d by their decoders: want at most half by their decoders", len(units), ahead, onDemand)
	}
}

// Every object a run opens, to decode or to read ahead, is closed once its
// row groups are all read: with decoders and read-ahead sharing objects of
// several row groups, none is left open, and each decode read its rows.
func TestDecodedObjectsAreClosed(t *testing.T) {
	ctx := context.Background()
	export := filepath.Join(t.TempDir(), "export")
	if _, err := generate.Generate(ctx, generate.Options{Out: export, Rows: 60_000, Seed: 7, Days: 1, RowGroupRows: 100}); err != nil {
		t.Fatal(err)
	}
	root := objstoretest.GCS(t) + "/closed"
	objstoretest.PutTree(t, export, root)
	for _, source := range []string{export, root} {
		o := testOptions(source, "", "").withDefaults()
		in, err := gather(ctx, o, plainListing(time.Time{}, time.Time{}), pipeline.Shard{Index: 0, Count: 1}, nil, testEnv(nil).Log, false)
		if err != nil {
			t.Fatalf("%s: %v", source, err)
		}
		objs := in.all()
		units := pipeline.BuildPlan(objs)
		if len(units) <= len(objs) {
			t.Fatalf("%s: %d units of %d objects: want objects of several row groups", source, len(units), len(objs))
		}
		rows, err := decodeAll(ctx, in, units, 3)
		if err != nil {
			t.Fatalf("%s: %v", source, err)
		}
		if want := pipeline.PlanRows(units); rows != want {
			t.Errorf("%s: decoded %d rows, want %d", source, rows, want)
		}
		// A read-ahead started last may still be letting its object go.
		deadline := time.Now().Add(30 * time.Second)
		for {
			in.openMu.Lock()
			n := len(in.open)
			in.openMu.Unlock()
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: %d objects left open after every row group was read", source, n)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		in.close()
	}
}

// A dry run with the smallest --memory-budget over row groups each larger
// than the whole budget streams them, and writes exactly what a run with
// the default budget writes.
func TestReadPathMemoryBudget(t *testing.T) {
	ctx := context.Background()
	const rows = 200_000
	export := hugeValueExport(t, t.TempDir(), rows, 0, 0, parquet.MaxRowsPerRowGroup(rows/2))
	budget := readers.MinMemoryBudget >> 20
	if _, groups, need, _, _ := exportNeeds(t, export); need/int64(groups) <= int64(budget)<<20 {
		t.Fatalf("row groups of %d bytes on average: not larger than a budget of %d MiB", need/int64(groups), budget)
	}
	dry := func(mib int64) []byte {
		dir := t.TempDir()
		o := testOptions(export, filepath.Join(dir, "state"), "http://127.0.0.1:1")
		o.DryRun, o.Out = true, filepath.Join(dir, "dry.jsonl")
		o.Decoders, o.MemoryBudget = 2, mib
		rep, err := Run(ctx, o, testEnv(nil))
		if err != nil {
			t.Fatal(err)
		}
		if rep.Counts.RowsRead != rows {
			t.Fatalf("budget %d MiB: read %d rows, want %d", mib, rep.Counts.RowsRead, rows)
		}
		b, err := os.ReadFile(o.Out)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	small, def := dry(int64(budget)), dry(0)
	if len(def) == 0 || !bytes.Equal(small, def) {
		t.Errorf("dry run with a %d MiB budget wrote %d bytes, with the default %d bytes, not the same", budget, len(small), len(def))
	}
	o := testOptions(export, "", "").withDefaults()
	o.MemoryBudget = int64(budget)
	in, err := gather(ctx, o, plainListing(time.Time{}, time.Time{}), pipeline.Shard{Index: 0, Count: 1}, nil, testEnv(nil).Log, false)
	if err != nil {
		t.Fatal(err)
	}
	defer in.close()
	if in.budget.Bytes() != readers.MinMemoryBudget {
		t.Errorf("--memory-budget %d: the sources share a budget of %d bytes", budget, in.budget.Bytes())
	}
}

// planHeapChildEnv, set, makes TestPlanHoldsLittlePerObject measure in
// this process instead of starting one to measure in.
const planHeapChildEnv = "CONVERTRO_PLAN_HEAP_CHILD"

// What a run holds for each listed object (its listing, its record, its
// place in the plan) stays small whatever the number of objects: the live
// heap after planning 1,440 objects (a year's hourly partitions have
// 43,800) less that after 480, per object added. The memory budget is the
// smallest, so that the footers kept from planning (the same bounded bytes
// in both) do not hide what each object costs. 27-61 bytes (the
// difference of two small heaps, which the garbage around them moves by
// tens of bytes an object) since the record is all the run keeps (64
// bytes; its key front-coded, a numeric version held as 8 bytes, one row
// group's size in the record); 89-106 with a record of 72 bytes, its key
// and version packed whole, its URI made from its source's root when a
// plan entry is made for the run; 216-239 when jobs kept a plan entry (120 bytes) and the whole URI
// beside a record of 24 bytes, with no open file's state (inputs.open) and
// no web rows (summed as footers are read); 256-304 before, with them (64
// bytes a record);
// 269-302 since the objects of one table and day share what their paths
// say but the hour;
// 349-382 when each record held it whole (72 bytes), with the records one
// slice and objects found by URI by binary search; 393-418 with a record
// allocated for each and a map by URI; 474-486 when the record repeated
// the object's URI, key, size and version beside its plan entry and held
// its open state inline, 540 with the second map by URI that gather kept
// before. The bound catches a plan entry (120 bytes) kept for each object.
//
// The heap is the process's: the emulators' proxies and what earlier tests
// left closing share it, and once made this read 567 bytes (78 KiB for 480
// objects, far under the 350 a fresh process measured). So the test measures
// in a child process of its own, where only this test runs.
func TestPlanHoldsLittlePerObject(t *testing.T) {
	if os.Getenv(planHeapChildEnv) == "" {
		name := "TestPlanHoldsLittlePerObject"
		cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), planHeapChildEnv+"=1")
		out, err := cmd.CombinedOutput()
		t.Logf("the measuring process:\n%s", out)
		if err != nil {
			t.Fatalf("the measuring process: %v", err)
		}
		// A child that ran no test exits 0 too.
		if !bytes.Contains(out, []byte("--- PASS: "+name+" ")) {
			t.Fatalf("the measuring process did not run %s", name)
		}
		return
	}
	ctx := context.Background()
	// live is the heap the plan holds: the bytes of its objects, and those
	// of the spans they keep in use (which counts what the plan's small
	// objects keep of the garbage around them).
	live := func(days int) (alloc, inuse uint64) {
		export := filepath.Join(t.TempDir(), "export")
		// 5 tables of hourly partitions: 120 objects a day, 23 rows each.
		if _, err := generate.Generate(ctx, generate.Options{Out: export, Rows: 23 * 120 * days, Seed: 3,
			Layout: generate.LayoutWarehouse, Days: days}); err != nil {
			t.Fatal(err)
		}
		o := testOptions(export, "", "").withDefaults()
		o.MemoryBudget = readers.MinMemoryBudget >> 20
		// Twice: what sync.Pools hold (the generator's buffers) goes at
		// the second collection.
		var before, after runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&before)
		in, err := gather(ctx, o, plainListing(time.Time{}, time.Time{}), pipeline.Shard{Index: 0, Count: 1}, nil, testEnv(nil).Log, false)
		if err != nil {
			t.Fatal(err)
		}
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&after)
		if len(in.refs) != 120*days {
			t.Fatalf("%d days: %d objects planned, want %d", days, len(in.refs), 120*days)
		}
		in.close()
		return after.HeapAlloc - min(after.HeapAlloc, before.HeapAlloc), after.HeapInuse - min(after.HeapInuse, before.HeapInuse)
	}
	small, smallSpans := live(4)
	large, largeSpans := live(12)
	per := (int64(large) - int64(small)) / (120 * 8)
	spans := (int64(largeSpans) - int64(smallSpans)) / (120 * 8)
	t.Logf("live heap after planning: %d KiB for 480 objects, %d KiB for 1,440: %d bytes an object; spans in use: %d bytes an object",
		small>>10, large>>10, per, spans)
	if per > 140 {
		t.Errorf("planning holds %d bytes for each object listed, want at most 140", per)
	}
	// Measured: 307-392 bytes with the listing's strings and the row
	// groups packed (packed.go), 930-998 bytes before, where the plan's
	// small objects kept the spans of the listing's garbage in use.
	if spans > 600 {
		t.Errorf("planning keeps %d bytes of heap spans in use for each object listed, want at most 600", spans)
	}
}

// TestOverlappingSourcesListEachObjectOnce: a source inside another lists
// its objects twice; each is planned once, in plan order, and counted once
// among those listed. (One source lists each object once, and keeps no
// set of the URIs seen.)
func TestOverlappingSourcesListEachObjectOnce(t *testing.T) {
	ctx := context.Background()
	export := filepath.Join(t.TempDir(), "export")
	if _, err := generate.Generate(ctx, generate.Options{Out: export, Rows: 23 * 120, Seed: 3,
		Layout: generate.LayoutWarehouse, Days: 1}); err != nil {
		t.Fatal(err)
	}
	plan := func(sources ...string) *inputs {
		o := testOptions(sources[0], "", "").withDefaults()
		o.Sources = sources
		in, err := gather(ctx, o, plainListing(time.Time{}, time.Time{}), pipeline.Shard{Index: 0, Count: 1}, nil, testEnv(nil).Log, false)
		if err != nil {
			t.Fatal(err)
		}
		in.close()
		return in
	}
	one := plan(export)
	both := plan(filepath.Join(export, "tracks"), export)
	if len(one.refs) != 120 || one.listed != 120 {
		t.Fatalf("one source: %d objects planned, %d listed, want 120", len(one.refs), one.listed)
	}
	if both.listed != one.listed || len(both.refs) != len(one.refs) {
		t.Errorf("overlapping sources: %d objects planned, %d listed, want %d", len(both.refs), both.listed, len(one.refs))
	}
	for i := range one.refs {
		if i < len(both.refs) && both.uri(i) != one.uri(i) {
			t.Fatalf("overlapping sources: object %d is %s, want %s", i, both.uri(i), one.uri(i))
		}
	}
}
