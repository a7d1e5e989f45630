package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func sampleReport() *Report {
	m := &Manifest{
		Job: testJob, Shard: Shard{1, 4}, Status: StatusFinished, Runs: 3, Window: 8192,
		MaybeRepeated:   8192 * 2, // two runs killed with work left
		DeadLetterFiles: []string{"dead-letters/1-of-4/part-1.parquet"},
		Objects:         []PlannedObject{{URI: "gs://b/a.parquet", Key: "a.parquet"}, {URI: "gs://b/bad.parquet", Key: "bad.parquet", Skipped: "bad footer"}},
		Units:           []UnitProgress{{Object: 0, RowGroup: 0, Rows: 100, Watermark: 100, Done: true}},
		Counts: Counts{
			RowsRead: 100, RowsDelivered: 80, RowsDeadLettered: 5,
			RowsSkipped:  map[string]int64{"missing_user_id": 10, "unmapped_event": 5},
			RequestsSent: 130, RequestsAcked: 124, RequestsDeadLettered: 6,
			RequestsRetried: 4, PossibleDuplicates: 2, ObjectsSkipped: 1,
			DeadLetterGroups: map[string]DeadLetterGroup{
				"401 Unauthorized": {Status: 401, Count: 4, First: `{"error":"bad token"}`},
				"400 Bad Request":  {Status: 400, Count: 2, First: "no sid"},
			},
		},
	}
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return buildReport(m, Config{}, start, start.Add(10*time.Second), Counts{RowsRead: 50, RequestsSent: 60}, nil)
}

func TestReportFields(t *testing.T) {
	r := sampleReport()
	if err := r.Check(); err != nil {
		t.Fatal(err)
	}
	if r.RepeatBound != 8192*2+2 || r.Resumes != 2 || r.RowsThisRun != 50 || r.RequestsThisRun != 70 ||
		r.RowsPerSecond != 5 || r.RequestsPerSecond != 7 || r.DeadLetters != 6 || r.RowsPlanned != 100 || r.RowsMarked != 100 {
		t.Errorf("report = %+v", r)
	}
	if len(r.SkippedObjects) != 1 || r.SkippedObjects[0].URI != "gs://b/bad.parquet" || len(r.DeadLetterFiles) != 1 {
		t.Errorf("skipped objects %v, dead-letter files %v", r.SkippedObjects, r.DeadLetterFiles)
	}
	data, err := r.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"job", "shard", "status", "counts", "dead_letters", "dead_letter_files", "skipped_objects",
		"runs", "resumes", "window", "repeat_bound", "wall_seconds", "rows_per_second", "requests_per_second"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("report JSON lacks %q", k)
		}
	}
	if skips := doc["counts"].(map[string]any)["rows_skipped"].(map[string]any); skips["missing_user_id"] != 10.0 {
		t.Errorf("counts.rows_skipped = %v", skips)
	}
}

func TestReportCheckCatchesMismatch(t *testing.T) {
	tests := []struct {
		name   string
		change func(r *Report)
	}{
		{"rows", func(r *Report) { r.Counts.RowsDelivered++ }},
		{"requests", func(r *Report) { r.Counts.RequestsAcked-- }},
		{"skips", func(r *Report) { r.Counts.RowsSkipped["unmapped_event"]++ }},
		{"manifest", func(r *Report) { r.RowsMarked-- }},
		{"dead rows without dead requests", func(r *Report) {
			r.Counts.RowsDeadLettered, r.Counts.RowsDelivered = 7, 78
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := sampleReport()
			tt.change(r)
			if err := r.Check(); !errors.Is(err, ErrCountsMismatch) {
				t.Errorf("Check = %v, want ErrCountsMismatch", err)
			}
		})
	}
}

func TestReportSummary(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().Summary(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"job test backfill, shard 1/4: finished",
		"100 of 100 read = 80 delivered + 15 skipped + 5 dead-lettered",
		"missing_user_id 10, unmapped_event 5",
		"130 sent = 124 acked + 6 dead-lettered (4 retried, 2 possibly sent twice)",
		"6 requests in dead-letters/1-of-4/part-1.parquet, by refusal:",
		"\n                4 × 401 Unauthorized \"{\\\"error\\\":\\\"bad token\\\"}\"\n                2 × 400 Bad Request \"no sid\"\n",
		"gs://b/bad.parquet (bad footer)",
		"3 (2 resumes); at most 16386 requests sent twice (16384 left in flight by interrupted runs + 2 possible duplicates)",
		"5 rows/s, 7 requests/s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

// TestProgress: what OnProgress is told: rows done before and during the
// run, the rate and the time left, and a final report when the run stops.
func TestProgress(t *testing.T) {
	var got []Progress
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	now := start
	p := newProgress(func(pr Progress) { got = append(got, pr) }, func() time.Time { return now }, time.Hour, 1000, 200)
	p.start()
	p.add(300, 450)
	now = start.Add(10 * time.Second)
	p.stop()
	if len(got) != 1 || !got[0].Final {
		t.Fatalf("reports %+v, want one final", got)
	}
	// 500 rows left at 30 rows/s: 16.7s, shown rounded.
	s := got[0]
	if s.Done != 500 || s.Total != 1000 || s.Percent() != 50 || s.RequestsPerSecond() != 45 || s.ETA() != 17*time.Second {
		t.Errorf("progress %+v: percent %v, req/s %v, ETA %v", s, s.Percent(), s.RequestsPerSecond(), s.ETA())
	}
	if (Progress{Total: 10}).ETA() != -1 {
		t.Error("an ETA before the first row")
	}
}

// TestDryRunSummary: a dry run says what it would send; it never claims
// rows delivered or requests sent or acknowledged.
func TestDryRunSummary(t *testing.T) {
	m := &Manifest{Job: testJob, Shard: Shard{0, 1}, Status: StatusDryRun, Objects: []PlannedObject{{URI: "mem://a", Key: "a"}},
		Units:  []UnitProgress{{Rows: 10, Watermark: 10, Done: true}},
		Counts: Counts{RowsRead: 10, RowsDelivered: 7, RowsSkipped: map[string]int64{"missing_user_id": 3}, RequestsSent: 9, RequestsAcked: 9}}
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := buildReport(m, Config{}, start, start.Add(time.Second), Counts{}, nil)
	if !r.DryRun || r.WouldSend == nil || *r.WouldSend != (WouldSend{Rows: 7, Requests: 9}) ||
		r.Counts.RowsDelivered != 0 || r.Counts.RequestsSent != 0 || r.Counts.RequestsAcked != 0 {
		t.Errorf("dry-run report: dry_run %v, would_send %+v, counts %+v", r.DryRun, r.WouldSend, r.Counts)
	}
	if err := r.Check(); err != nil {
		t.Errorf("Check of a dry run: %v", err)
	}
	data, err := r.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(`"dry_run": true`)) || !bytes.Contains(data, []byte(`"would_send": {`)) {
		t.Errorf("JSON report lacks dry_run or would_send:\n%s", data)
	}
	var b strings.Builder
	if err := r.Summary(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"nothing was sent", "10 of 10 read = 7 would be delivered + 3 skipped", "9 would be sent"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry-run summary lacks %q:\n%s", want, out)
		}
	}
	for _, bad := range []string{"acked", "= 7 delivered", "dead-lettered", "sent ="} {
		if strings.Contains(out, bad) {
			t.Errorf("dry-run summary says %q:\n%s", bad, out)
		}
	}
}

// TestReportHints: a skip reason with a hint (Config.SkipHints) is quoted,
// with its count, in the report and its summary when rows were skipped for
// it, and not when none were.
func TestReportHints(t *testing.T) {
	m := &Manifest{Job: testJob, Shard: Shard{0, 1}, Status: StatusFinished, Counts: Counts{
		RowsRead: 12, RowsDelivered: 5, RowsSkipped: map[string]int64{"missing_user_id": 3, "web_only": 4},
	}}
	cfg := Config{SkipHints: map[string]string{
		"web_only":     "--send-web would send them",
		"unmapped_xyz": "never counted here",
	}}
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := buildReport(m, cfg, start, start.Add(time.Second), Counts{}, nil)
	want := "4 rows skipped as web_only: --send-web would send them"
	if len(r.Hints) != 1 || r.Hints[0] != want {
		t.Errorf("hints %q, want [%q]", r.Hints, want)
	}
	data, err := r.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"hints": [`) {
		t.Errorf("report JSON lacks hints:\n%s", data)
	}
	var b bytes.Buffer
	if err := r.Summary(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "  hint:         "+want+"\n") {
		t.Errorf("summary lacks the hint:\n%s", b.String())
	}
}
