package jobs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/objstore/objstoretest"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/writers/generate"
)

var testEvents = map[string][]string{
	"Signed Up":      {"signup"},
	"Product Viewed": {"product_view"},
	"Added to Cart":  {"add_to_cart", "cart"},
}

func testOptions(source, state, endpoint string) Options {
	o := Options{
		Sources: []string{source}, State: state, Endpoint: endpoint,
		Account: "acme", ClientName: "acme", SiteID: "12",
		Events:      map[string]EventNames{},
		Concurrency: 16,
	}
	for k, v := range testEvents {
		o.Events[k] = v
	}
	return o
}

func testEnv(t *testing.T) Env {
	return Env{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Stderr: io.Discard, Stdout: io.Discard}
}

// recorder is a simulator whose record the test reads back.
type recorder struct {
	sim *simulator.Simulator
	srv *httptest.Server
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Write(p)
}

func newRecorder(t testing.TB, o simulator.Options) *recorder {
	r := &recorder{}
	o.Record = r
	r.sim = simulator.New(o)
	r.srv = httptest.NewServer(r.sim)
	t.Cleanup(r.srv.Close)
	// Every hit and install carries an eid, in every test export: the
	// simulator refuses one without (and counts it under this reason).
	t.Cleanup(func() {
		if n := r.sim.Stats().Reasons[simulator.ReasonEID]; n > 0 {
			t.Errorf("the simulator refused %d hits or installs without eid", n)
		}
	})
	return r
}

// requests returns what the simulator recorded, each request as its exact
// wire form path?query (parameter order and escaping as sent), sorted.
func (r *recorder) requests(t *testing.T) []string {
	t.Helper()
	if err := r.sim.Flush(); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(r.buf.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct{ Path, Raw string }
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("record line %q: %v", sc.Text(), err)
		}
		out = append(out, line.Path+"?"+line.Raw)
	}
	slices.Sort(out)
	return out
}

// dryRunRequests reads a dry run's output in the recorder's exact form.
func dryRunRequests(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct{ Method, URL string }
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("dry-run line %q: %v", sc.Text(), err)
		}
		u, err := url.Parse(line.URL)
		if err != nil || line.Method != "GET" {
			t.Fatalf("dry-run line %q: method %q, %v", sc.Text(), line.Method, err)
		}
		if (strings.Contains(u.Path, "/api/hit/") || strings.Contains(u.Path, "/api/install/")) && u.Query().Get("eid") == "" {
			t.Errorf("the dry run lists a request without eid: %s", line.URL)
		}
		out = append(out, u.Path+"?"+u.RawQuery)
	}
	slices.Sort(out)
	return out
}

func diffRequests(t *testing.T, what string, got, want []string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	t.Errorf("%s: %d requests, want %d", what, len(got), len(want))
	var extra, missing []string
	g, w := slices.Clone(got), slices.Clone(want)
	for len(g) > 0 || len(w) > 0 {
		switch {
		case len(w) == 0 || (len(g) > 0 && g[0] < w[0]):
			extra, g = append(extra, g[0]), g[1:]
		case len(g) == 0 || w[0] < g[0]:
			missing, w = append(missing, w[0]), w[1:]
		default:
			g, w = g[1:], w[1:]
		}
	}
	for i, s := range extra {
		if i == 5 {
			break
		}
		t.Errorf("  unexpected: %s", s)
	}
	for i, s := range missing {
		if i == 5 {
			break
		}
		t.Errorf("  missing:    %s", s)
	}
}

// TestEndToEnd runs the job over a generated export of each layout against the
// simulator, and checks the requests against the oracle's reading of the
// same files, the dry run against the live run, and the report's counts.
func TestEndToEnd(t *testing.T) {
	for _, layout := range []string{"warehouse", "datalake", "upper", "nested"} {
		t.Run(layout, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			export := filepath.Join(dir, "export")
			const rows = 3000
			if _, err := generate.Generate(ctx, generate.Options{Out: export, Rows: rows, Seed: 7, Layout: layout, RowGroupRows: 400}); err != nil {
				t.Fatal(err)
			}
			want := expectRequests(readOracleRows(t, export), "acme", "12", testEvents, false)
			if len(want) < rows/2 {
				t.Fatalf("the oracle expects only %d requests from %d rows: the export lacks variety", len(want), rows)
			}

			rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
			o := testOptions(export, filepath.Join(dir, "state"), rec.srv.URL)
			rep, err := Run(ctx, o, testEnv(t))
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			diffRequests(t, "recorded by the simulator", rec.requests(t), want)
			if err := rep.Check(); err != nil {
				t.Errorf("report: %v", err)
			}
			c := rep.Counts
			if c.RowsRead != rows || c.RequestsSent != int64(len(want)) || c.RequestsAcked != c.RequestsSent {
				t.Errorf("counts %+v: want %d rows read and %d requests sent and acked", c, rows, len(want))
			}
			// Every generated row has an anonymous_id: those without a device
			// id are web rows.
			for _, reason := range []string{"missing_user_id", "missing_device_id_has_anonymous_id", "unmapped_event", "missing_order_id", "unsupported_type", "disabled_by_integrations"} {
				if c.RowsSkipped[reason] == 0 {
					t.Errorf("no row skipped as %s: the export should exercise it (skips %v)", reason, c.RowsSkipped)
				}
			}
			if st := rec.sim.Stats(); st.Rejected != 0 {
				t.Errorf("simulator rejected %d requests: %+v", st.Rejected, st.Reasons)
			}

			o.DryRun, o.Out = true, filepath.Join(dir, "dry.jsonl")
			if _, err := Run(ctx, o, testEnv(t)); err != nil {
				t.Fatalf("dry run: %v", err)
			}
			diffRequests(t, "dry run", dryRunRequests(t, o.Out), want)

			// A finished job run again sends nothing and succeeds.
			before := rec.sim.Stats().Accepted
			o.DryRun, o.Out = false, ""
			if _, err := Run(ctx, o, testEnv(t)); err != nil {
				t.Fatalf("second run: %v", err)
			}
			if after := rec.sim.Stats().Accepted; after != before {
				t.Errorf("a finished job run again sent %d requests", after-before)
			}
		})
	}
}

// TestEndToEndRemote runs with sources and state in a bucket of each object
// store, and checks that a second run of the same job is refused while the
// first holds the lease (the store's conditional writes fence it).
func TestEndToEndRemote(t *testing.T) {
	ctx := context.Background()
	export := filepath.Join(t.TempDir(), "export")
	if _, err := generate.Generate(ctx, generate.Options{Out: export, Rows: 1500, Seed: 3, RowGroupRows: 300}); err != nil {
		t.Fatal(err)
	}
	for name, newRoot := range remoteBackends {
		t.Run(name, func(t *testing.T) { testEndToEndRemote(t, export, newRoot(t)) })
	}
}

func testEndToEndRemote(t *testing.T, export, root string) {
	ctx := context.Background()
	objstoretest.PutTree(t, export, root+"/segment")
	want := expectRequests(readOracleRows(t, export), "acme", "12", testEvents, false)

	// Slow answers keep the first run busy while the second one tries.
	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12", Delay: 20 * time.Millisecond})
	o := testOptions(root+"/segment", root+"/state/nightly", rec.srv.URL)
	o.Concurrency = 4
	env := testEnv(t)

	first := make(chan error, 1)
	var rep *pipeline.Report
	go func() {
		var err error
		rep, err = Run(ctx, o, env)
		first <- err
	}()
	// Wait until the first run holds the lease and has sent something.
	for rec.sim.Stats().Accepted < 10 {
		select {
		case err := <-first:
			t.Fatalf("first run ended early: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	_, err := Run(ctx, o, env)
	if !errors.Is(err, pipeline.ErrLeaseHeld) {
		t.Errorf("second concurrent run: err = %v, want ErrLeaseHeld", err)
	} else if !strings.Contains(err.Error(), "holds the lease") {
		t.Errorf("second run's message does not explain the refusal: %v", err)
	}
	if err := <-first; err != nil {
		t.Fatalf("first run: %v", err)
	}
	diffRequests(t, "recorded by the simulator", rec.requests(t), want)
	if err := rep.Check(); err != nil {
		t.Errorf("report: %v", err)
	}
	if _, ok := readObject(t, root+"/state/nightly", pipeline.ReportName(pipeline.Shard{Index: 0, Count: 1})); !ok {
		t.Errorf("no report in the state %s", root)
	}
}

// TestBackfillExampleJobFile runs the README's backfill job file on the
// bundled sample and checks it against the oracle.
func TestBackfillExampleJobFile(t *testing.T) {
	o, err := LoadFile("../examples/backfill/job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(t, simulator.Options{ClientName: o.ClientName, SiteID: o.SiteID})
	o.Endpoint, o.State = rec.srv.URL, filepath.Join(t.TempDir(), "state")
	rep, err := Run(context.Background(), o, testEnv(t))
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	events := map[string][]string{}
	for k, v := range o.Events {
		events[k] = v
	}
	want := expectRequests(readOracleRows(t, o.Sources[0]), o.ClientName, o.SiteID, events, o.Hybrid)
	diffRequests(t, "recorded by the simulator", rec.requests(t), want)
	if rep.Counts.RowsRead != 2000 {
		t.Errorf("read %d rows of the sample, want 2000", rep.Counts.RowsRead)
	}
}

// TestTracksCopiesOfEventTablesAreSkipped: a warehouse dataset holds every
// track twice, in `tracks` and in its event table; the copies in `tracks` of
// events that have a table of their own are skipped as in_event_table, so
// each is sent once (input-schemas.md).
func TestTracksCopiesOfEventTablesAreSkipped(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	export := filepath.Join(dir, "export")
	if _, err := generate.Generate(ctx, generate.Options{Out: export, Rows: 1000, Seed: 5, Days: 1, RowGroupRows: 200}); err != nil {
		t.Fatal(err)
	}
	want := expectRequests(readOracleRows(t, export), "acme", "12", testEvents, false)

	// Copy every order_completed file into tracks, as the warehouse keeps them.
	var copied int64
	orders := filepath.Join(export, "order_completed")
	filepath.WalkDir(orders, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(orders, p)
		dst := filepath.Join(export, "tracks", filepath.Dir(rel), "copy-"+filepath.Base(rel))
		data, _ := os.ReadFile(p)
		os.MkdirAll(filepath.Dir(dst), 0o755)
		copied += int64(len(readOracleFile(t, p)))
		return os.WriteFile(dst, data, 0o644)
	})
	if copied == 0 {
		t.Fatal("the export has no order_completed rows to copy")
	}

	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	rep, err := Run(ctx, testOptions(export, filepath.Join(dir, "state"), rec.srv.URL), testEnv(t))
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	diffRequests(t, "recorded by the simulator", rec.requests(t), want)
	if got := rep.Counts.RowsSkipped[SkipInEventTable]; got != copied {
		t.Errorf("%d rows skipped as %s, want the %d copied", got, SkipInEventTable, copied)
	}
}

// TestEndToEndLayoutsRemote is TestEndToEnd on each object store: an export
// of each layout in a bucket, the state beside it, the live run checked
// against the oracle and the dry run against the same. A remote run costs
// by the object (a footer and column chunks read by range, each a round
// trip), so the buckets hold four hours of a day: the layouts' paths, names
// and types in 20 objects (the nested layout, partitioned by day, in 5).
func TestEndToEndLayoutsRemote(t *testing.T) {
	ctx := context.Background()
	type export struct {
		dir  string
		rows int64
		want []string
	}
	layouts := []string{generate.LayoutWarehouse, generate.LayoutDatalake, generate.LayoutUpper, generate.LayoutNested}
	exports := map[string]export{}
	for _, layout := range layouts {
		dir := filepath.Join(t.TempDir(), layout)
		if _, err := generate.Generate(ctx, generate.Options{Out: dir, Rows: 1500, Seed: 13, Layout: layout, Days: 1, RowGroupRows: 100}); err != nil {
			t.Fatal(err)
		}
		dir = hoursOf(t, dir, 12, 15)
		rows := readOracleRows(t, dir)
		want := expectRequests(rows, "acme", "12", testEvents, false)
		if len(want) < 150 {
			t.Fatalf("%s: the oracle expects only %d requests from %d rows: the export lacks variety", layout, len(want), len(rows))
		}
		t.Logf("%s: %d rows, %d requests", layout, len(rows), len(want))
		exports[layout] = export{dir, int64(len(rows)), want}
	}
	for _, name := range slices.Sorted(maps.Keys(remoteBackends)) {
		t.Run(name, func(t *testing.T) {
			root := remoteBackends[name](t)
			for _, layout := range layouts {
				t.Run(layout, func(t *testing.T) {
					e := exports[layout]
					source, state := root+"/"+layout, root+"/state/"+layout
					objstoretest.PutTree(t, e.dir, source)

					rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
					o := testOptions(source, state, rec.srv.URL)
					rep, err := Run(ctx, o, testEnv(t))
					if err != nil {
						t.Fatalf("run: %v", err)
					}
					diffRequests(t, "recorded by the simulator", rec.requests(t), e.want)
					if err := rep.Check(); err != nil {
						t.Errorf("report: %v", err)
					}
					c := rep.Counts
					if c.RowsRead != e.rows || c.RequestsSent != int64(len(e.want)) || c.RequestsAcked != c.RequestsSent {
						t.Errorf("counts %+v: want %d rows read and %d requests sent and acked", c, e.rows, len(e.want))
					}
					if st := rec.sim.Stats(); st.Rejected != 0 {
						t.Errorf("simulator rejected %d requests: %+v", st.Rejected, st.Reasons)
					}
					if _, ok := readObject(t, state, pipeline.ReportName(pipeline.Shard{Index: 0, Count: 1})); !ok {
						t.Errorf("no report in the state %s", state)
					}

					o.DryRun, o.Out = true, filepath.Join(t.TempDir(), "dry.jsonl")
					if _, err := Run(ctx, o, testEnv(t)); err != nil {
						t.Fatalf("dry run: %v", err)
					}
					diffRequests(t, "dry run", dryRunRequests(t, o.Out), e.want)
				})
			}
		})
	}
}

// hoursOf copies the files of dir whose hr= partition is within [from, to],
// and those without one, to a new folder, and returns it.
func hoursOf(t *testing.T, dir string, from, to int) string {
	t.Helper()
	return copyFiles(t, dir, func(rel []string) bool {
		for _, seg := range rel {
			if v, ok := strings.CutPrefix(seg, "hr="); ok {
				if h, err := strconv.Atoi(v); err != nil || h < from || h > to {
					return false
				}
			}
		}
		return true
	})
}
