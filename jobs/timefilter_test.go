package jobs

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/pipeline"
)

// undatedDay0 is the first day of the undated test export: a day of
// history before the first night, then three days the nights send.
var undatedDay0 = time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)

const (
	undatedPerDay   = 60
	undatedGroupLen = 40 // rows per row group: some row groups straddle midnight
)

// undatedRows is an export of Signed Up events over days 0..days-1 from
// undatedDay0, in time order, 60 a day (one every 24 minutes), with one row
// without any timestamp among the last day's.
func undatedRows(days int) []segmentTrack {
	var rows []segmentTrack
	for d := range days {
		for j := range undatedPerDay {
			i := len(rows)
			rows = append(rows, segmentTrack{
				ID: fmt.Sprintf("m-%04d", i), DeviceID: fmt.Sprintf("dev-%04d", i), EventText: "Signed Up",
				Timestamp: undatedDay0.AddDate(0, 0, d).Add(time.Duration(j) * 24 * time.Minute),
			})
		}
	}
	// A row without any event time, among the last day's rows: its row
	// group can never be pruned.
	at := len(rows) - undatedPerDay/3
	rows = append(rows[:at], append([]segmentTrack{{ID: "m-null", DeviceID: "dev-null", EventText: "Signed Up"}}, rows[at:]...)...)
	return rows
}

// writeUndated writes rows as one object whose path names no day, in row
// groups of undatedGroupLen rows.
func writeUndated(t *testing.T, path string, rows []segmentTrack, opts ...parquet.WriterOption) {
	t.Helper()
	var b bytes.Buffer
	w := parquet.NewGenericWriter[segmentTrack](&b, append(opts, parquet.MaxRowsPerRowGroup(undatedGroupLen))...)
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, b.Bytes())
}

// prunable is the oracle of the row groups a run reading [from, to) can
// leave out, from the rows themselves: those with a timestamp in every row
// and none of them in range.
func prunable(rows []segmentTrack, from, to time.Time) (groups int, rowsPruned int64) {
	for g := 0; g*undatedGroupLen < len(rows); g++ {
		grp := rows[g*undatedGroupLen : min((g+1)*undatedGroupLen, len(rows))]
		keep := false
		for _, r := range grp {
			if r.Timestamp.IsZero() || (!r.Timestamp.Before(from) && r.Timestamp.Before(to)) {
				keep = true
			}
		}
		if !keep {
			groups++
			rowsPruned += int64(len(grp))
		}
	}
	return groups, rowsPruned
}

// sentByDay counts the recorded requests by the UTC day of their ts, and
// fails on a request sent twice.
func sentByDay(t *testing.T, rec *recorder) map[string]int {
	t.Helper()
	out := map[string]int{}
	seen := map[string]bool{}
	for _, r := range rec.requests(t) {
		if seen[r] {
			t.Errorf("request sent twice: %s", r)
		}
		seen[r] = true
		u, err := url.Parse(r)
		if err != nil {
			t.Fatal(err)
		}
		ts, err := strconv.ParseInt(u.Query().Get("ts"), 10, 64)
		if err != nil {
			t.Fatalf("request %s: ts: %v", r, err)
		}
		out[time.Unix(ts, 0).UTC().Format(time.DateOnly)]++
	}
	return out
}

func dayOf(i int) string { return undatedDay0.AddDate(0, 0, i).Format(time.DateOnly) }

// TestNightlyOverUndatedExport runs a nightly job (--from yesterday --to
// yesterday, one --state) on each of three days over one export whose path
// names no day and that holds four days of events: each night sends that
// day's events and nothing else, so each day is sent once; the row groups
// whose timestamp statistics lie outside the day are not read (plan and
// report say how many), and the row without a timestamp is counted as
// skipped in every night that reads its row group, never sent. The export is
// either the same object every night or rewritten every night with the
// history so far.
func TestNightlyOverUndatedExport(t *testing.T) {
	for _, rewritten := range []bool{false, true} {
		t.Run(fmt.Sprintf("rewritten=%v", rewritten), func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			path := filepath.Join(dir, "source", "tracks", "000000000000.parquet")
			all := undatedRows(4)
			if !rewritten {
				writeUndated(t, path, all)
			}
			rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
			o := testOptions(filepath.Join(dir, "source"), filepath.Join(dir, "state"), rec.srv.URL)
			o.From, o.To = "yesterday", "yesterday"

			var before pipeline.Counts
			for night := 1; night <= 3; night++ {
				rows := all
				if rewritten {
					// The export as it stands that night: days 0..night.
					rows = undatedRows(night + 1)
					writeUndated(t, path, rows)
				}
				env := testEnv(t)
				from := undatedDay0.AddDate(0, 0, night)
				env.Now = func() time.Time { return from.AddDate(0, 0, 1).Add(2 * time.Hour) }

				var plan bytes.Buffer
				penv := env
				penv.Stdout = &plan
				if err := PrintPlan(ctx, o, penv); err != nil {
					t.Fatal(err)
				}
				wantGroups, wantRows := prunable(rows, from, from.AddDate(0, 0, 1))
				if wantGroups == 0 {
					t.Fatalf("night %d: the fixture leaves no row group to prune", night)
				}
				totalGroups := (len(rows) + undatedGroupLen - 1) / undatedGroupLen
				wantLine := fmt.Sprintf("row groups pruned by their timestamp statistics: %d of %d (%d rows), not read", wantGroups, totalGroups, wantRows)
				if !strings.Contains(plan.String(), wantLine) {
					t.Errorf("night %d: plan does not say %q:\n%s", night, wantLine, plan.String())
				}

				rep, err := Run(ctx, o, env)
				if err != nil {
					t.Fatalf("night %d: %v", night, err)
				}
				if rep.RowGroupsPruned != int64(wantGroups) || rep.RowsPruned != wantRows {
					t.Errorf("night %d: report says %d row groups (%d rows) pruned, want %d (%d)", night, rep.RowGroupsPruned, rep.RowsPruned, wantGroups, wantRows)
				}
				got := sentByDay(t, rec)
				for d := 0; d <= 3; d++ {
					want := 0
					if d >= 1 && d <= night {
						want = undatedPerDay
					}
					if got[dayOf(d)] != want {
						t.Errorf("after night %d: %d requests for %s, want %d", night, got[dayOf(d)], dayOf(d), want)
					}
				}
				if len(got) > 3 {
					t.Errorf("after night %d: requests for days %v", night, got)
				}
				// What this night read adds up: its day delivered, every
				// other row read skipped as outside the range, and the row
				// without a timestamp (its row group is always read) as
				// missing_timestamp.
				c := rep.Counts
				read := c.RowsRead - before.RowsRead
				delivered := c.RowsDelivered - before.RowsDelivered
				outside := c.RowsSkipped[SkipOutsideTimeRange] - before.RowsSkipped[SkipOutsideTimeRange]
				missing := c.RowsSkipped["missing_timestamp"] - before.RowsSkipped["missing_timestamp"]
				if delivered != undatedPerDay || missing != 1 || read != delivered+outside+missing || read != int64(len(rows))-wantRows {
					t.Errorf("night %d: read %d = delivered %d + outside %d + missing_timestamp %d; want %d delivered, 1 missing, %d read",
						night, read, delivered, outside, missing, undatedPerDay, int64(len(rows))-wantRows)
				}
				if rep.Status != pipeline.StatusFinished || rep.RowsMarked != c.RowsRead {
					t.Errorf("night %d: status %s, rows marked %d, read %d", night, rep.Status, rep.RowsMarked, c.RowsRead)
				}
				before = cloneCountsForTest(c)

				// The same night run again sends nothing more.
				if _, err := Run(ctx, o, env); err != nil {
					t.Fatalf("night %d again: %v", night, err)
				}
				if again := sentByDay(t, rec); again[dayOf(night)] != undatedPerDay {
					t.Errorf("night %d run again: %d requests for its day", night, again[dayOf(night)])
				}
			}
		})
	}
}

func cloneCountsForTest(c pipeline.Counts) pipeline.Counts {
	out := c
	out.RowsSkipped = map[string]int64{}
	for k, v := range c.RowsSkipped {
		out.RowsSkipped[k] = v
	}
	return out
}

// TestNightlyOpenEndedOverUndatedExport: with --from yesterday and no
// --to, each night reads the events up to the moment it starts, less what
// earlier nights read: every event is sent exactly once over the nights,
// none dated after the last night started.
func TestNightlyOpenEndedOverUndatedExport(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	rows := undatedRows(4)
	writeUndated(t, filepath.Join(dir, "source", "tracks", "000000000000.parquet"), rows)
	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	o := testOptions(filepath.Join(dir, "source"), filepath.Join(dir, "state"), rec.srv.URL)
	o.From = "yesterday"
	var last time.Time
	for night := 1; night <= 2; night++ {
		env := testEnv(t)
		last = undatedDay0.AddDate(0, 0, night+1).Add(2 * time.Hour)
		env.Now = func() time.Time { return last }
		if _, err := Run(ctx, o, env); err != nil {
			t.Fatalf("night %d: %v", night, err)
		}
	}
	want := 0
	for _, r := range rows {
		if !r.Timestamp.IsZero() && !r.Timestamp.Before(undatedDay0.AddDate(0, 0, 1)) && r.Timestamp.Before(last) {
			want++
		}
	}
	got := 0
	for _, n := range sentByDay(t, rec) {
		got += n
	}
	if got != want {
		t.Errorf("%d requests over two nights, want %d (every event from day 1 to the second night's start, once)", got, want)
	}
}

// TestUndatedWithoutStatistics: an object whose timestamp column has no
// statistics is read whole and its rows filtered one by one: the day's
// events are sent, nothing is pruned.
func TestUndatedWithoutStatistics(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	rows := undatedRows(4)
	writeUndated(t, filepath.Join(dir, "source", "tracks", "000000000000.parquet"), rows, parquet.SkipPageBounds("timestamp"))
	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	o := testOptions(filepath.Join(dir, "source"), filepath.Join(dir, "state"), rec.srv.URL)
	o.From, o.To = dayOf(2), dayOf(2)
	env := testEnv(t)
	env.Now = func() time.Time { return undatedDay0.AddDate(0, 0, 10) }

	var plan bytes.Buffer
	penv := env
	penv.Stdout = &plan
	if err := PrintPlan(ctx, o, penv); err != nil {
		t.Fatal(err)
	}
	groups := (len(rows) + undatedGroupLen - 1) / undatedGroupLen
	if want := fmt.Sprintf("row groups pruned by their timestamp statistics: 0 of %d (0 rows)", groups); !strings.Contains(plan.String(), want) {
		t.Errorf("plan does not say %q:\n%s", want, plan.String())
	}
	rep, err := Run(ctx, o, env)
	if err != nil {
		t.Fatal(err)
	}
	if got := sentByDay(t, rec); len(got) != 1 || got[dayOf(2)] != undatedPerDay {
		t.Errorf("requests by day %v, want %d on %s only", got, undatedPerDay, dayOf(2))
	}
	c := rep.Counts
	if rep.RowGroupsPruned != 0 || c.RowsRead != int64(len(rows)) ||
		c.RowsSkipped[SkipOutsideTimeRange] != int64(len(rows)-undatedPerDay-1) || c.RowsSkipped["missing_timestamp"] != 1 {
		t.Errorf("report: %d row groups pruned, counts %+v", rep.RowGroupsPruned, c)
	}
}

// TestUndatedWithoutRangeReadWhole: without --from and --to nothing is
// filtered, as before.
func TestUndatedWithoutRangeReadWhole(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	rows := undatedRows(2)
	writeUndated(t, filepath.Join(dir, "source", "tracks", "000000000000.parquet"), rows)
	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	o := testOptions(filepath.Join(dir, "source"), filepath.Join(dir, "state"), rec.srv.URL)
	rep, err := Run(ctx, o, testEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := sentByDay(t, rec); got[dayOf(0)] != undatedPerDay || got[dayOf(1)] != undatedPerDay || rep.RowGroupsPruned != 0 {
		t.Errorf("requests by day %v, %d row groups pruned", got, rep.RowGroupsPruned)
	}
	if _, err := os.Stat(filepath.Join(dir, "state")); err != nil {
		t.Fatal(err)
	}
}

// TestNightlyOverUndatedExportAfterFailedNight: Convertro goes down in the
// middle of night 2. Night 3 resumes night 2's plan of the object as it was
// (the same filter and row groups, though its own range differs), then, in
// a second pass, reads the object for its own day: every day is delivered,
// and no request is sent twice beyond the report's repeat bound.
func TestNightlyOverUndatedExportAfterFailedNight(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	writeUndated(t, filepath.Join(dir, "source", "tracks", "000000000000.parquet"), undatedRows(4))
	rec, down := newFlakyRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	o := testOptions(filepath.Join(dir, "source"), filepath.Join(dir, "state"), rec.srv.URL)
	o.From, o.To = "yesterday", "yesterday"
	o.DownAfter = time.Second
	night := func(i int) (*pipeline.Report, error) {
		env := testEnv(t)
		env.Now = func() time.Time { return undatedDay0.AddDate(0, 0, i+1).Add(2 * time.Hour) }
		return Run(ctx, o, env)
	}
	if _, err := night(1); err != nil {
		t.Fatalf("night 1: %v", err)
	}
	down.n.Store(20)
	down.armed.Store(true)
	if _, err := night(2); err == nil {
		t.Fatal("night 2, Convertro down: the run succeeded")
	}
	down.armed.Store(false)
	m := readManifest(t, o.State)
	if len(m.Objects) != 1 || m.Objects[0].Filter == nil {
		t.Fatalf("ledger after the failed night: %+v", m.Objects)
	}
	failed := m.Objects[0].Filter.Clone()
	if want := undatedDay0.AddDate(0, 0, 2); len(failed.Read) != 1 || !failed.Read[0].From.Equal(want) {
		t.Fatalf("failed night's filter reads %+v, want from %s", failed.Read, want)
	}
	rep, err := night(3)
	if err != nil {
		t.Fatalf("night 3: %v", err)
	}
	m = readManifest(t, o.State)
	if f := m.Objects[0].Filter; f == nil || len(f.Read) != 1 || !f.Read[0].From.Equal(undatedDay0.AddDate(0, 0, 3)) ||
		len(f.Done) != 1 || !f.Done[0].To.Equal(undatedDay0.AddDate(0, 0, 3)) {
		t.Errorf("ledger after night 3: filter %+v, want day 3 read and days 1-2 done", f)
	}
	uniq := map[string]bool{}
	byDay := map[string]int{}
	all := rec.requests(t)
	for _, r := range all {
		if uniq[r] {
			continue
		}
		uniq[r] = true
		u, _ := url.Parse(r)
		ts, _ := strconv.ParseInt(u.Query().Get("ts"), 10, 64)
		byDay[time.Unix(ts, 0).UTC().Format(time.DateOnly)]++
	}
	for d := 1; d <= 3; d++ {
		if byDay[dayOf(d)] != undatedPerDay {
			t.Errorf("%d distinct requests for %s, want %d", byDay[dayOf(d)], dayOf(d), undatedPerDay)
		}
	}
	if byDay[dayOf(0)] != 0 {
		t.Errorf("%d requests for the day before the first night", byDay[dayOf(0)])
	}
	if repeats := int64(len(all) - len(uniq)); repeats > rep.RepeatBound {
		t.Errorf("%d requests sent twice, the report bounds them by %d", repeats, rep.RepeatBound)
	}
}
