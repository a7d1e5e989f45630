package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
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
		"6 requests in dead-letters/1-of-4/part-1.parquet",
		"gs://b/bad.parquet (bad footer)",
		"3 (2 resumes); at most 16386 requests sent twice (16384 left in flight by interrupted runs + 2 possible duplicates)",
		"5 rows/s, 7 requests/s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

func TestPushMetrics(t *testing.T) {
	var method, path string
	var families = map[string]*dto.MetricFamily{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method, path = r.Method, r.URL.Path
		dec := expfmt.NewDecoder(r.Body, expfmt.ResponseFormat(r.Header))
		for {
			var mf dto.MetricFamily
			if err := dec.Decode(&mf); err != nil {
				if !errors.Is(err, io.EOF) {
					t.Errorf("decode push body: %v", err)
				}
				break
			}
			families[mf.GetName()] = &mf
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	if err := PushMetrics(context.Background(), srv.URL, "convertro-etl", sampleReport()); err != nil {
		t.Fatal(err)
	}
	if method != http.MethodPut || path != "/metrics/job/convertro-etl/shard/1-of-4" {
		t.Errorf("push was %s %s", method, path)
	}
	value := func(name string, labels ...string) float64 {
		mf := families[name]
		if mf == nil {
			t.Errorf("metric %s not pushed", name)
			return -1
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			return m.GetGauge().GetValue()
		}
		t.Errorf("metric %s%v not pushed", name, labels)
		return -1
	}
	for name, want := range map[string]float64{
		"convertro_etl_rows_read_total":              100,
		"convertro_etl_rows_delivered_total":         80,
		"convertro_etl_requests_sent_total":          130,
		"convertro_etl_requests_dead_lettered_total": 6,
		"convertro_etl_possible_duplicates_total":    2,
		"convertro_etl_repeat_bound":                 16386,
		"convertro_etl_run_finished":                 1,
	} {
		if got := value(name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := value("convertro_etl_rows_skipped_total", "reason", "unmapped_event"); got != 5 {
		t.Errorf("rows skipped (unmapped_event) = %v, want 5", got)
	}

	srv.Close()
	if err := PushMetrics(context.Background(), srv.URL, "convertro-etl", sampleReport()); err == nil {
		t.Error("push to a closed gateway succeeded")
	}
}

func TestProgressLogLine(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	p := newProgress(&bytes.Buffer{}, log, time.Hour, 1000, 200) // a buffer is not a terminal
	if p.tty {
		t.Fatal("a buffer taken for a terminal")
	}
	p.began = time.Now().Add(-10 * time.Second)
	p.add(300, 450)
	// 500 rows left at 30 rows/s: 16.7s, shown rounded.
	s := p.state(p.began.Add(10 * time.Second))
	if s.done != 500 || s.total != 1000 || s.percent != 50 || s.reqsPerS != 45 || s.eta != 17*time.Second {
		t.Errorf("progress state = %+v", s)
	}
	p.draw(false)
	if out := logs.String(); !strings.Contains(out, "rows=500") || !strings.Contains(out, "total=1000") || !strings.Contains(out, "percent=50.0") {
		t.Errorf("progress log line = %q", out)
	}
	p.tty = true
	var line bytes.Buffer
	p.out = &line
	p.draw(true)
	if got := line.String(); !strings.HasPrefix(got, "\r\x1b[Krows 500/1000 (50.0%)") || !strings.HasSuffix(got, "\n") {
		t.Errorf("terminal line = %q", got)
	}
}
