package jobs

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
)

// segmentTrack is a row of a warehouse `tracks` or event table, every column
// OPTIONAL (an empty string or a zero time is NULL).
type segmentTrack struct {
	ID          string    `parquet:"id,optional"`
	UserID      string    `parquet:"user_id,optional"`
	AnonymousID string    `parquet:"anonymous_id,optional"`
	DeviceID    string    `parquet:"context_device_id,optional"`
	Event       string    `parquet:"event,optional"`
	EventText   string    `parquet:"event_text,optional"`
	OrderID     string    `parquet:"order_id,optional"`
	Total       *float64  `parquet:"total,optional"`
	Timestamp   time.Time `parquet:"timestamp,optional,timestamp(microsecond)"`
}

// segmentIdentify is a row of a warehouse `identifies` table.
type segmentIdentify struct {
	ID          string    `parquet:"id,optional"`
	UserID      string    `parquet:"user_id,optional"`
	AnonymousID string    `parquet:"anonymous_id,optional"`
	DeviceID    string    `parquet:"context_device_id,optional"`
	Timestamp   time.Time `parquet:"timestamp,optional,timestamp(microsecond)"`
}

// writeTable writes rows as export/<table>/part-0.parquet.
func writeTable[T any](t *testing.T, export, table string, rows []T) {
	t.Helper()
	dir := filepath.Join(export, table)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "part-0.parquet"), writeParquet(t, rows), 0o644); err != nil {
		t.Fatal(err)
	}
}

// eids returns the eid of each request (canonical strings), "" for none.
func eids(t *testing.T, reqs []string) []string {
	t.Helper()
	var out []string
	for _, r := range reqs {
		u, err := url.Parse(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, u.Query().Get("eid"))
	}
	return out
}

// TestEventIDWithoutMessageID: every hit and install carries an eid, also
// for rows whose messageId (`id`) is NULL: an id derived from the row's
// values, the same on every run of the same rows, different for different
// rows, and the dry run lists the very requests the live run sends.
func TestEventIDWithoutMessageID(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	export := filepath.Join(dir, "export")
	ts := time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)
	signedUp := func(id string, at time.Time) segmentTrack {
		return segmentTrack{ID: id, UserID: "u-1", DeviceID: "d-1", Event: "signed_up", EventText: "Signed Up", Timestamp: at}
	}
	writeTable(t, export, "tracks", []segmentTrack{
		signedUp("m-1", ts),                      // a messageId: the eid
		signedUp("", ts),                         // NULL messageId
		signedUp("", ts.Add(time.Microsecond)),   // another row: another eid
		signedUp("", ts.Add(time.Microsecond)),   // the same row again: the same eid
		signedUp("", ts.Add(2*time.Microsecond)), // and one more
		{DeviceID: "d-2", Event: "application_installed", EventText: "Application Installed", Timestamp: ts}, // an install without messageId
	})

	run := func(state string, dry bool) []string {
		t.Helper()
		rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
		o := testOptions(export, state, rec.srv.URL)
		if dry {
			o.DryRun, o.Out = true, filepath.Join(dir, "dry.jsonl")
		}
		rep, err := Run(ctx, o, testEnv(t))
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		if err := rep.Check(); err != nil {
			t.Errorf("report: %v", err)
		}
		if dry {
			return dryRunRequests(t, o.Out)
		}
		if st := rec.sim.Stats(); st.Rejected != 0 {
			t.Errorf("the simulator refused %d requests: %v", st.Rejected, st.Reasons)
		}
		return rec.requests(t)
	}

	first := run(filepath.Join(dir, "state1"), false)
	if len(first) != 6 {
		t.Fatalf("%d requests, want 6 (one per row):\n%q", len(first), first)
	}
	got := eids(t, first)
	derived := regexp.MustCompile(`^row-[0-9a-f]{32}$`)
	count := map[string]int{}
	for i, e := range got {
		switch {
		case e == "":
			t.Errorf("request without eid: %s", first[i])
		case e != "m-1" && !derived.MatchString(e):
			t.Errorf("eid %q: want m-1 or a derived row-<32 hex>", e)
		}
		count[e]++
	}
	// m-1, three distinct Signed Up rows without id (one of them twice),
	// and the install.
	if len(count) != 5 || count["m-1"] != 1 {
		t.Errorf("eids %q: want m-1 and four distinct derived ids, one of them twice", got)
	}
	twice := 0
	for _, n := range count {
		if n == 2 {
			twice++
		}
	}
	if twice != 1 {
		t.Errorf("eids %q: want exactly the two identical rows to share one", got)
	}

	// A rerun of the same rows from a fresh state sends the same requests,
	// eids and all; so does the dry run.
	if again := run(filepath.Join(dir, "state2"), false); !slices.Equal(again, first) {
		t.Errorf("rerun sent other requests:\n%q\nfirst run:\n%q", again, first)
	}
	diffRequests(t, "dry run", run(filepath.Join(dir, "state3"), true), first)
}
