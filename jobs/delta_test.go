package jobs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/readers/deltatest"
)

var deltaTrackSchema = deltatest.Schema("message_id", "string", "user_id", "string", "anonymous_id", "string",
	"context_device_id", "string", "event", "string", "event_text", "string", "context_user_agent", "string",
	"context_ip", "string", "timestamp", "timestamp", "event_date", "date")

// deltaTracks are n Signed Up tracks with message ids prefix-0 ... on day.
func deltaTracks(prefix string, n int, day time.Time) []oddTrack {
	rows := make([]oddTrack, n)
	for i := range rows {
		id := fmt.Sprintf("%s-%d", prefix, i)
		rows[i] = oddTrack{MessageID: id, UserID: "u-" + id, ContextDeviceID: "d-" + id, Event: "signed_up",
			EventText: "Signed Up", UserAgent: "Mozilla/5.0", IP: "10.0.0.1", Timestamp: day.Add(time.Hour)}
	}
	return rows
}

// eidCounts counts the requests of each message id in a record.
func eidCounts(t *testing.T, reqs []string) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, r := range reqs {
		_, q, _ := strings.Cut(r, "?")
		v, err := url.ParseQuery(q)
		if err != nil {
			t.Fatal(err)
		}
		n[v.Get("eid")]++
	}
	return n
}

func ids(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s-%d", prefix, i))
	}
	return out
}

// TestDeltaOptimizeAndDelete: a Delta table whose log holds an OPTIMIZE
// (two small files compacted into one, dataChange false) and a DELETE (a
// file rewritten without two rows) sends each live row once, and the
// deleted rows never, though every file ever written is still in the
// folder. The manifest records the version read.
func TestDeltaOptimizeAndDelete(t *testing.T) {
	ctx := context.Background()
	day := time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)
	src := filepath.Join(t.TempDir(), "tracks")
	tb := deltatest.New(t, src)
	tb.Create(deltaTrackSchema, []string{"event_date"}, nil)
	part := map[string]string{"event_date": "2024-01-02"}
	a := deltatest.WriteFile(tb, "event_date=2024-01-02/part-00000-a.snappy.parquet", part, deltaTracks("a", 30, day))
	b := deltatest.WriteFile(tb, "event_date=2024-01-02/part-00001-b.snappy.parquet", part, deltaTracks("b", 20, day))
	c := deltatest.WriteFile(tb, "event_date=2024-01-02/part-00002-c.snappy.parquet", part, deltaTracks("c", 10, day))
	tb.Commit("WRITE", deltatest.AddAction(a), deltatest.AddAction(b))
	tb.Commit("WRITE", deltatest.AddAction(c))
	tb.Checkpoint()
	ab := deltatest.WriteFile(tb, "event_date=2024-01-02/part-00000-ab.snappy.parquet", part,
		append(deltaTracks("a", 30, day), deltaTracks("b", 20, day)...))
	ab.DataChange = false
	tb.Commit("OPTIMIZE", deltatest.RemoveAction(a, false), deltatest.RemoveAction(b, false), deltatest.AddAction(ab))
	kept := slices.Delete(deltaTracks("c", 10, day), 3, 5) // DELETE WHERE message_id IN ('c-3', 'c-4')
	c2 := deltatest.WriteFile(tb, "event_date=2024-01-02/part-00000-c2.snappy.parquet", part, kept)
	tb.Commit("DELETE", deltatest.RemoveAction(c, true), deltatest.AddAction(c2))

	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	o := testOptions(src, filepath.Join(t.TempDir(), "state"), rec.srv.URL)
	rep, err := Run(ctx, o, testEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	got := eidCounts(t, rec.requests(t))
	live := slices.Concat(ids("a", 0, 30), ids("b", 0, 20), ids("c", 0, 3), ids("c", 5, 10))
	for _, id := range live {
		if got[id] != 1 {
			t.Errorf("live row %s sent %d times, want once", id, got[id])
		}
	}
	for _, id := range []string{"c-3", "c-4"} {
		if got[id] != 0 {
			t.Errorf("deleted row %s sent %d times", id, got[id])
		}
	}
	if len(got) != len(live) || rep.Counts.RowsRead != int64(len(live)) {
		t.Errorf("%d message ids sent, %d rows read: want %d", len(got), rep.Counts.RowsRead, len(live))
	}
	m, err := pipeline.ReadManifest(ctx, mustState(t, o.State), pipeline.Shard{Index: 0, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	if want := []pipeline.TableVersion{{URI: src, Version: 4}}; !slices.Equal(m.Tables, want) {
		t.Errorf("manifest tables %+v, want %+v", m.Tables, want)
	}

	// A dry run of the day sends the same; --from/--to select by the day.
	for _, c := range []struct {
		day  string
		want int
	}{{"2024-01-02", len(live)}, {"2024-01-03", 0}} {
		o2 := testOptions(src, filepath.Join(t.TempDir(), "state"), rec.srv.URL)
		o2.From, o2.To, o2.DryRun, o2.Out = c.day, c.day, true, filepath.Join(t.TempDir(), "out.jsonl")
		_, err := Run(ctx, o2, testEnv(t))
		t.Logf("dry run of %s: %v", c.day, err)
		if reqs := dryRunRequests(t, o2.Out); len(reqs) != c.want {
			t.Errorf("dry run of %s: %d requests, want %d", c.day, len(reqs), c.want)
		}
	}
}

// TestDeltaResumeReadsPinnedVersion: a run stopped halfway resumes at the
// table version it planned, though an OPTIMIZE committed since compacted
// every file into one: the compacted file is not read and no row is sent
// twice beyond what was in flight. The run after the job finished reads
// the latest version.
func TestDeltaResumeReadsPinnedVersion(t *testing.T) {
	day := time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)
	src := filepath.Join(t.TempDir(), "tracks")
	tb := deltatest.New(t, src)
	tb.Create(deltaTrackSchema, []string{"event_date"}, nil)
	part := map[string]string{"event_date": "2024-01-02"}
	var files []deltatest.Add
	var all []oddTrack
	for i := range 6 {
		rows := deltaTracks(fmt.Sprintf("f%d", i), 20, day)
		all = append(all, rows...)
		f := deltatest.WriteFile(tb, fmt.Sprintf("event_date=2024-01-02/part-%05d.snappy.parquet", i), part, rows)
		files = append(files, f)
		tb.Commit("WRITE", deltatest.AddAction(f))
	}
	pinned := tb.Version()

	rec := &recorder{}
	sim := simulator.New(simulator.Options{ClientName: "acme", SiteID: "12", Record: rec})
	rec.sim = sim
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var seen atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if seen.Add(1) == 30 {
			cancel() // the operator's Ctrl-C, a quarter through
		}
		sim.ServeHTTP(w, r)
	}))
	defer srv.Close()
	o := testOptions(src, filepath.Join(t.TempDir(), "state"), srv.URL)
	o.Concurrency = 2
	o.Decoders = 1
	if _, err := Run(ctx, o, testEnv(t)); !errors.Is(err, pipeline.ErrStopped) {
		t.Fatalf("stopped run: err = %v, want ErrStopped", err)
	}
	first := eidCounts(t, rec.requests(t))
	if len(first) >= len(all) {
		t.Fatalf("the stop came too late: %d of %d sent", len(first), len(all))
	}

	// OPTIMIZE: every file into one.
	optimize := []deltatest.Action{}
	for _, f := range files {
		optimize = append(optimize, deltatest.RemoveAction(f, false))
	}
	big := deltatest.WriteFile(tb, "event_date=2024-01-02/part-00000-optimized.snappy.parquet", part, all)
	big.DataChange = false
	tb.Commit("OPTIMIZE", append(optimize, deltatest.AddAction(big))...)

	rep, err := Run(context.Background(), o, testEnv(t))
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	both := eidCounts(t, rec.requests(t))
	twice := 0
	for _, r := range all {
		switch n := both[r.MessageID]; {
		case n == 0:
			t.Errorf("row %s never sent", r.MessageID)
		case n > 2:
			t.Errorf("row %s sent %d times", r.MessageID, n)
		case n == 2:
			twice++
		}
	}
	// Only what the stopped run had in flight or acknowledged since its
	// last commit may go twice; reading the compacted file would resend
	// every row the first run delivered.
	if int64(twice) > rep.RepeatBound || twice >= len(first) {
		t.Errorf("%d rows sent twice after %d in the first run (repeat bound %d)", twice, len(first), rep.RepeatBound)
	}
	m, err := pipeline.ReadManifest(context.Background(), mustState(t, o.State), pipeline.Shard{Index: 0, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	if want := []pipeline.TableVersion{{URI: src, Version: pinned}}; !slices.Equal(m.Tables, want) {
		t.Errorf("manifest tables %+v after the resume, want %+v", m.Tables, want)
	}
	for _, po := range m.Objects {
		if strings.Contains(po.URI, "optimized") {
			t.Errorf("the resume planned %s, added after the version it resumes", po.URI)
		}
	}
	t.Logf("first run sent %d rows, %d were left for the resume, %d went twice (bound %d)", len(first), len(all)-len(first), twice, rep.RepeatBound)

	// The job finished: the next run reads the latest version, in which
	// the OPTIMIZE's file holds rows delivered as the files it compacted,
	// and only the rows appended since are sent.
	fresh := deltatest.WriteFile(tb, "event_date=2024-01-02/part-00007-new.snappy.parquet", part, deltaTracks("n", 10, day))
	tb.Commit("WRITE", deltatest.AddAction(fresh))
	if _, err = Run(context.Background(), o, testEnv(t)); err != nil {
		t.Fatalf("next run: %v", err)
	}
	after := eidCounts(t, rec.requests(t))
	if len(after) != len(all)+10 {
		t.Errorf("next run: %d message ids sent in all, want %d", len(after), len(all)+10)
	}
	for id, n := range after {
		want := both[id]
		if strings.HasPrefix(id, "n-") {
			want = 1
		}
		if n != want {
			t.Errorf("next run: %s sent %d times in all, want %d", id, n, want)
		}
	}
	m, err = pipeline.ReadManifest(context.Background(), mustState(t, o.State), pipeline.Shard{Index: 0, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	if want := []pipeline.TableVersion{{URI: src, Version: tb.Version()}}; !slices.Equal(m.Tables, want) {
		t.Errorf("manifest tables %+v after the next run, want %+v", m.Tables, want)
	}
}
