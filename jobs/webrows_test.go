package jobs

import (
	"bytes"
	"context"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/writers/generate"
)

// wireRequest is a request as the recorder gives it: path, then the query
// exactly as sent. kv are the query's name, value pairs in wire order.
func wireRequest(path string, kv ...string) string {
	var q strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			q.WriteByte('&')
		}
		q.WriteString(kv[i] + "=" + url.QueryEscape(kv[i+1]))
	}
	return path + "?" + q.String()
}

// TestWebRows: a web-only export (analytics.js rows: an anonymous_id, no
// context_device_id). By default nothing is sent, and the report and the
// plan count the rows and name the option that would send them; with
// --anonymous-id-as-device-id each mappable row is sent once, its sid the
// row's anonymous_id.
func TestWebRows(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	export := filepath.Join(dir, "export")
	ts := time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)
	unix := strconv.FormatInt(ts.Unix(), 10)
	total := 49.99
	writeTable(t, export, "identifies", []segmentIdentify{
		{ID: "i-1", UserID: "u-1", AnonymousID: "a-1", Timestamp: ts},
		{ID: "i-2", AnonymousID: "a-2", Timestamp: ts}, // no userId: missing_user_id (rule 2 comes first)
	})
	writeTable(t, export, "tracks", []segmentTrack{
		{ID: "t-1", UserID: "u-1", AnonymousID: "a-1", Event: "signed_up", EventText: "Signed Up", Timestamp: ts},
		{ID: "t-2", AnonymousID: "a-3", Event: "product_viewed", EventText: "Product Viewed", Timestamp: ts},
		{ID: "t-3", AnonymousID: "a-3", Event: "page_scrolled", EventText: "Page Scrolled", Timestamp: ts}, // not in the events map
		{ID: "t-4", Event: "signed_up", EventText: "Signed Up", Timestamp: ts},                             // neither id: missing_device_id
	})
	writeTable(t, export, "order_completed", []segmentTrack{
		{ID: "o-row", UserID: "u-1", AnonymousID: "a-1", Event: "order_completed", EventText: "Order Completed",
			OrderID: "o-1", Total: &total, Timestamp: ts},
	})

	cases := []struct {
		name string
		on   bool
		want []string // every request, sorted
		skip map[string]int64
		// in the report's summary and the plan. The plan bounds the web rows
		// from the footers: the identifies row without user_id may or may
		// not be one of them, and the rows of `tracks` may be copies of an
		// event table's (in_event_table), so 2 to 6; the run counts 5.
		summary, plan []string
	}{
		{name: "off by default: nothing is sent, and the report and the plan name the option",
			skip: map[string]int64{"missing_device_id_has_anonymous_id": 5, "missing_user_id": 1, "missing_device_id": 1},
			summary: []string{"hint:         5 rows skipped as missing_device_id_has_anonymous_id: they have an anonymous_id but no context_device_id (web rows); " +
				"--anonymous-id-as-device-id (job file: anonymousIdAsDeviceId: true) sends them with the anonymous_id as the device id (sid), " +
				"which will not match the visitor id Convertro's own browser tag sets"},
			plan: []string{"web rows: between 2 and 6 rows have an anonymous_id but no context_device_id (from the footers' statistics) " +
				"and will be skipped as missing_device_id_has_anonymous_id; --anonymous-id-as-device-id (job file: anonymousIdAsDeviceId: true)"}},
		{name: "--anonymous-id-as-device-id: one request per mappable row, sid = anonymous_id",
			on: true,
			want: []string{
				wireRequest("/api/hit/acme/12/", "sid", "a-1", "typ", "sale", "val", "49.99", "eid", "o-1", "ts", unix),
				wireRequest("/api/hit/acme/12/", "sid", "a-1", "typ", "signup", "val", "1", "eid", "t-1", "ts", unix),
				wireRequest("/api/hit/acme/12/", "sid", "a-3", "typ", "product_view", "val", "1", "eid", "t-2", "ts", unix),
				wireRequest("/api/user/acme/12/", "sid", "a-1", "id", "u-1", "ts", unix),
			},
			skip: map[string]int64{"missing_user_id": 1, "unmapped_event": 1, "missing_device_id": 1},
			plan: []string{"web rows: between 2 and 6 rows have an anonymous_id but no context_device_id (from the footers' statistics); " +
				"--anonymous-id-as-device-id sends them with the anonymous_id as the device id (sid)"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
			o := testOptions(export, filepath.Join(dir, "state"+strconv.Itoa(i)), rec.srv.URL)
			o.AnonymousIDAsDeviceID = tc.on
			var stderr, plan bytes.Buffer
			env := testEnv(t)
			env.Stderr = &stderr
			rep, err := Run(ctx, o, env)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			diffRequests(t, "recorded by the simulator", rec.requests(t), tc.want)
			if err := rep.Check(); err != nil {
				t.Errorf("report: %v", err)
			}
			if rep.Counts.RowsRead != 7 || rep.Counts.RequestsSent != int64(len(tc.want)) {
				t.Errorf("rows read %d, requests sent %d; want 7 and %d", rep.Counts.RowsRead, rep.Counts.RequestsSent, len(tc.want))
			}
			for reason, n := range tc.skip {
				if got := rep.Counts.RowsSkipped[reason]; got != n {
					t.Errorf("skipped as %s: %d, want %d (all: %v)", reason, got, n, rep.Counts.RowsSkipped)
				}
			}
			if len(rep.Counts.RowsSkipped) != len(tc.skip) {
				t.Errorf("skip reasons %v, want %v", rep.Counts.RowsSkipped, tc.skip)
			}
			if !tc.on && (len(rep.Hints) != 1 || !strings.Contains(rep.Hints[0], "--anonymous-id-as-device-id")) {
				t.Errorf("report hints %q: want one naming --anonymous-id-as-device-id", rep.Hints)
			}
			if tc.on && len(rep.Hints) != 0 {
				t.Errorf("report hints %q: want none once web rows are sent", rep.Hints)
			}
			for _, s := range tc.summary {
				if !strings.Contains(stderr.String(), s) {
					t.Errorf("summary lacks %q:\n%s", s, stderr.String())
				}
			}

			env.Stdout = &plan
			if err := PrintPlan(ctx, o, env); err != nil {
				t.Fatalf("plan: %v", err)
			}
			for _, s := range tc.plan {
				if !strings.Contains(plan.String(), s) {
					t.Errorf("plan lacks %q:\n%s", s, plan.String())
				}
			}
		})
	}
}

// TestEndToEndWebRows: over a generated export, where the rows without a
// device id all have an anonymous_id, --anonymous-id-as-device-id sends
// what the oracle expects with sid = anonymous_id for those rows, and skips
// none of them for want of a device id.
func TestEndToEndWebRows(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	export := filepath.Join(dir, "export")
	if _, err := generate.Generate(ctx, generate.Options{Out: export, Rows: 2000, Seed: 11, RowGroupRows: 400}); err != nil {
		t.Fatal(err)
	}
	rows := readOracleRows(t, export)
	want := expectRequestsWith(rows, "acme", "12", testEvents, false, true)
	without := expectRequests(rows, "acme", "12", testEvents, false)
	if len(want) <= len(without) {
		t.Fatalf("the oracle expects %d requests with the option and %d without: the export has no web rows", len(want), len(without))
	}
	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	o := testOptions(export, filepath.Join(dir, "state"), rec.srv.URL)
	o.AnonymousIDAsDeviceID = true
	rep, err := Run(ctx, o, testEnv(t))
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	diffRequests(t, "recorded by the simulator", rec.requests(t), want)
	if err := rep.Check(); err != nil {
		t.Errorf("report: %v", err)
	}
	if n := rep.Counts.RowsSkipped["missing_device_id_has_anonymous_id"] + rep.Counts.RowsSkipped["missing_device_id"]; n != 0 {
		t.Errorf("%d rows skipped for want of a device id: %v", n, rep.Counts.RowsSkipped)
	}
}
