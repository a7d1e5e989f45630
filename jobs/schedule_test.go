package jobs

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/writers/generate"
)

// landDay copies one day's partitions of every table from export into src,
// as an export job landing that day's files.
func landDay(t *testing.T, export, src, day string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(export, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Base(filepath.Dir(filepath.Dir(path))) != "day="+day {
			return err
		}
		rel, err := filepath.Rel(export, path)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		writeFile(t, filepath.Join(src, rel), data)
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatalf("no file of day %s in the export", day)
	}
	return n
}

// failAfter forwards to h until it has passed on n requests while armed,
// then answers 503: Convertro going down in the middle of a night.
type failAfter struct {
	h     http.Handler
	armed atomic.Bool
	n     atomic.Int64
}

func (f *failAfter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.armed.Load() && f.n.Add(-1) < 0 {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	f.h.ServeHTTP(w, r)
}

// TestNightly runs the README's nightly job (--from yesterday --to yesterday,
// one fixed --state) over six nights: an ordinary night, a night before its
// data has landed, that day's partition landing late, a night on which
// Convertro goes down halfway, then two ordinary nights. Every request of the export reaches
// Convertro, none more often than the repeat bound allows, and no night
// needs a manual step.
func TestNightly(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	export, src := filepath.Join(dir, "export"), filepath.Join(dir, "source")
	start := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)
	if _, err := generate.Generate(ctx, generate.Options{Out: export, Rows: 2500, Seed: 11, Start: start, Days: 6, RowGroupRows: 150}); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	want := expectRequests(readOracleRows(t, export), "acme", "12", testEvents, false)

	rec, down := newFlakyRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	o := testOptions(src, filepath.Join(dir, "state"), rec.srv.URL)
	o.From, o.To = "yesterday", "yesterday"
	o.DownAfter = time.Second
	days := func(i int) string { return start.AddDate(0, 0, i).Format(time.DateOnly) }
	night := func(i int) (*pipeline.Report, error) {
		env := testEnv(t)
		env.Now = func() time.Time { return start.AddDate(0, 0, i+1).Add(2 * time.Hour) } // 02:00 the next day
		return Run(ctx, o, env)
	}

	// Night 0: an ordinary night.
	landDay(t, export, src, days(0))
	if _, err := night(0); err != nil {
		t.Fatalf("night 0: %v", err)
	}
	// Night 1: the day's partition has not landed yet; nothing to send.
	rep, err := night(1)
	if err != nil || rep.Counts.RowsRead-rep.RowsThisRun != rep.Counts.RowsRead || rep.RowsThisRun != 0 {
		t.Fatalf("night 1, no data yet: err %v, report %+v", err, rep)
	}
	// Day 1 lands late, with day 2; night 2 sends both.
	landDay(t, export, src, days(1))
	landDay(t, export, src, days(2))
	if _, err := night(2); err != nil {
		t.Fatalf("night 2: %v", err)
	}
	// Night 3: Convertro goes down after 40 requests; the run stops, resumably.
	landDay(t, export, src, days(3))
	down.n.Store(40)
	down.armed.Store(true)
	if _, err := night(3); err == nil || errors.Is(err, pipeline.ErrIncomplete) || errors.Is(err, pipeline.ErrJobMismatch) {
		t.Fatalf("night 3, Convertro down: err %v, want a failed run", err)
	}
	down.armed.Store(false)
	// Nights 4 and 5: the failed night's work is resumed first, then each day.
	landDay(t, export, src, days(4))
	if _, err := night(4); err != nil {
		t.Fatalf("night 4, after a failed night: %v", err)
	}
	landDay(t, export, src, days(5))
	if rep, err = night(5); err != nil {
		t.Fatalf("night 5: %v", err)
	}

	got := rec.requests(t)
	count := map[string]int{}
	for _, r := range got {
		count[r]++
	}
	var uniq []string
	repeats := 0
	for _, r := range got {
		if count[r] > 0 {
			uniq = append(uniq, r)
			repeats += count[r] - 1
			count[r] = 0
		}
	}
	diffRequests(t, "delivered over five nights", uniq, want)
	if int64(repeats) > rep.RepeatBound {
		t.Errorf("%d requests sent twice, the report bounds them by %d", repeats, rep.RepeatBound)
	}
	if err := rep.Check(); err != nil {
		t.Error(err)
	}
	m := readManifest(t, o.State)
	if m.CoveredFrom != days(0) {
		t.Errorf("ledger covers from %q, want %s", m.CoveredFrom, days(0))
	}
	// The ledger keeps the days a night looks back at, not the whole history.
	for _, p := range m.Objects {
		if p.Day < days(2) {
			t.Errorf("ledger still lists %s of %s, older than the lookback", p.URI, p.Day)
		}
	}
	if m.Pruned.Objects == 0 {
		t.Error("nothing pruned from the ledger after five nights with a 3-day lookback")
	}

	// The same night again: nothing new, nothing sent, success.
	before := rec.sim.Stats().Accepted
	for range 3 {
		again, err := night(5)
		if err != nil {
			t.Fatalf("night 5 again: %v", err)
		}
		// A run that had nothing in flight adds nothing to the bound.
		if again.RepeatBound != rep.RepeatBound {
			t.Errorf("repeat bound %d after a rerun that sent nothing, was %d", again.RepeatBound, rep.RepeatBound)
		}
	}
	if after := rec.sim.Stats().Accepted; after != before {
		t.Errorf("a night run again sent %d requests", after-before)
	}
}

// TestSettingsChangeOnUnfinishedWorkNamesThem: a state with unfinished work
// refuses a run whose settings differ, naming each setting that changed
// (the events map included) and --fresh; once the work is finished with the
// old settings, the new ones are taken for what comes next.
func TestSettingsChangeOnUnfinishedWorkNamesThem(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	export := filepath.Join(dir, "export")
	if _, err := generate.Generate(ctx, generate.Options{Out: export, Rows: 600, Seed: 3, RowGroupRows: 100}); err != nil {
		t.Fatal(err)
	}
	rec, down := newFlakyRecorder(t, simulator.Options{})
	o := testOptions(export, filepath.Join(dir, "state"), rec.srv.URL)
	o.DownAfter = time.Second
	down.n.Store(20)
	down.armed.Store(true)
	if _, err := Run(ctx, o, testEnv(t)); err == nil {
		t.Fatal("run against a Convertro that goes down succeeded")
	}
	down.armed.Store(false)

	for _, tc := range []struct {
		name   string
		change func(*Options)
		want   string
	}{
		{"site id", func(o *Options) { o.SiteID = "13" }, `siteId "12" → "13"`},
		{"events", func(o *Options) { o.Events = map[string]EventNames{"Signed Up": {"join"}} }, `events `},
		{"hybrid", func(o *Options) { o.Hybrid = true }, `hybrid "false" → "true"`},
		{"web rows", func(o *Options) { o.AnonymousIDAsDeviceID = true }, `anonymousIdAsDeviceId "" → "true"`},
	} {
		changed := o
		tc.change(&changed)
		_, err := Run(ctx, changed, testEnv(t))
		if !errors.Is(err, pipeline.ErrJobMismatch) {
			t.Fatalf("%s changed on unfinished work: err %v, want ErrJobMismatch", tc.name, err)
		}
		for _, s := range []string{tc.want, "--fresh", "unfinished"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s changed: message %q does not say %q", tc.name, err, s)
			}
		}
	}
	if _, err := Run(ctx, o, testEnv(t)); err != nil {
		t.Fatalf("finishing with the old settings: %v", err)
	}
	changed := o
	changed.SiteID = "13"
	if _, err := Run(ctx, changed, testEnv(t)); err != nil {
		t.Fatalf("new settings once the work is finished: %v", err)
	}
}

// newFlakyRecorder is newRecorder behind a failAfter.
func newFlakyRecorder(t *testing.T, o simulator.Options) (*recorder, *failAfter) {
	r := &recorder{}
	o.Record = r
	r.sim = simulator.New(o)
	down := &failAfter{h: r.sim}
	r.srv = httptest.NewServer(down)
	t.Cleanup(r.srv.Close)
	return r, down
}

// TestRecurringListing: how far back a run lists, and which listed objects
// it keeps: the lookback, but never before the first day the job covered;
// and the days of unfinished objects, keeping only those objects there.
func TestRecurringListing(t *testing.T) {
	d := func(s string) time.Time { tm, _ := time.Parse(time.DateOnly, s); return tm }
	ledger := &pipeline.Manifest{
		CoveredFrom: "2024-03-10",
		Objects: []pipeline.PlannedObject{
			{URI: "old-unfinished", Day: "2024-03-02"},
			{URI: "done", Day: "2024-03-11"},
		},
		Units: []pipeline.UnitProgress{{Object: 0, Rows: 10, Watermark: 3}, {Object: 1, Rows: 5, Watermark: 5, Done: true}},
	}
	for _, tc := range []struct {
		name     string
		from     string
		lookback time.Duration
		wantFrom string
		keep     map[string]bool // "uri@day"
	}{
		{"first days of the job are the floor", "2024-03-11", 72 * time.Hour, "2024-03-02",
			map[string]bool{"x@2024-03-09": false, "x@2024-03-10": true, "x@2024-03-12": false, "x@": true, "old-unfinished@2024-03-02": true, "x@2024-03-02": false}},
		{"lookback inside the covered days", "2024-03-20", 48 * time.Hour, "2024-03-02",
			map[string]bool{"x@2024-03-17": false, "x@2024-03-18": true, "x@2024-03-20": true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			to := d(tc.from)
			l := recurringListing(d(tc.from), to, tc.lookback, ledger)
			if day(l.from) != tc.wantFrom || !l.to.Equal(to) {
				t.Errorf("lists %s to %s, want %s to %s", day(l.from), day(l.to), tc.wantFrom, day(to))
			}
			for k, want := range tc.keep {
				uri, dd, _ := strings.Cut(k, "@")
				if got := l.keep(dd, uri); got != want {
					t.Errorf("keep(%s) = %v, want %v", k, got, want)
				}
			}
		})
	}
	if l := plainListing(time.Time{}, time.Time{}); l.covered != openDay || l.keep != nil {
		t.Errorf("an open range: covered %q", l.covered)
	}
}
