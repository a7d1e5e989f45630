package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/writers/generate"
)

// shardedJob is a small export run in shards on one state, each shard a
// real run with its own --shard i/n.
type shardedJob struct {
	export, state string
	n             int
	want          []string // every request of the job (the oracle's)
}

func newShardedJob(t *testing.T, n int) *shardedJob {
	t.Helper()
	dir := t.TempDir()
	j := &shardedJob{export: filepath.Join(dir, "export"), state: filepath.Join(dir, "state"), n: n}
	if _, err := generate.Generate(context.Background(), generate.Options{Out: j.export, Rows: 1200, Seed: 11, RowGroupRows: 60}); err != nil {
		t.Fatal(err)
	}
	j.want = expectRequests(readOracleRows(t, j.export), "acme", "12", testEvents, false)
	return j
}

func (j *shardedJob) options(i int, endpoint string) Options {
	o := testOptions(j.export, j.state, endpoint)
	o.Shard = strconv.Itoa(i) + "/" + strconv.Itoa(j.n)
	return o
}

// run runs shard i to its end against endpoint.
func (j *shardedJob) run(t *testing.T, i int, endpoint string) error {
	t.Helper()
	_, err := Run(context.Background(), j.options(i, endpoint), testEnv(t))
	return err
}

// status reads the job's status at now, as JSON and as text, and its
// verdict and merged report.
func (j *shardedJob) status(t *testing.T, now time.Time) (js JobStatus, text string, verdict error, rep JobReport) {
	t.Helper()
	var out bytes.Buffer
	env := testEnv(t)
	env.Now = func() time.Time { return now }
	env.Stdout = &out
	if err := Status(context.Background(), StatusOptions{State: j.state, JSON: true}, env); err != nil {
		t.Fatalf("status --json: %v", err)
	}
	if err := json.Unmarshal(out.Bytes(), &js); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out.String())
	}
	out.Reset()
	verdict = Status(context.Background(), StatusOptions{State: j.state, Done: true}, env)
	text = out.String()
	out.Reset()
	if err := Status(context.Background(), StatusOptions{State: j.state, Report: true}, env); err != nil {
		t.Fatalf("status --report: %v\n%s", err, out.String())
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("status --report: %v\n%s", err, out.String())
	}
	return js, text, verdict, rep
}

// snapshot is status from one reading of the state, for a state a run is
// changing: the view, its text, verdict and merged report (through JSON, as
// printed), and the manifests they were made from.
func (j *shardedJob) snapshot(t *testing.T, now time.Time) (js JobStatus, text string, verdict error, rep JobReport, ms []*pipeline.Manifest) {
	t.Helper()
	read, err := ReadJobStatus(context.Background(), j.state, now)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := read.write(&out, now); err != nil {
		t.Fatal(err)
	}
	for v, into := range map[any]any{read: &js, read.Report(): &rep} {
		b, err := json.Marshal(v)
		if err == nil {
			err = json.Unmarshal(b, into)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return js, out.String(), read.verdict(), rep, read.ms
}

// manifests reads each shard's manifest (nil where none).
func (j *shardedJob) manifests(t *testing.T) []*pipeline.Manifest {
	t.Helper()
	st, err := pipeline.OpenState(context.Background(), j.state)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*pipeline.Manifest, j.n)
	for i := range j.n {
		m, err := pipeline.ReadManifest(context.Background(), st, pipeline.Shard{Index: i, Count: j.n})
		if err == nil {
			out[i] = m
		}
	}
	return out
}

// checkTotals: the totals and the merged report are the sums of the
// manifests' own figures, and the merged counts reconcile.
func checkTotals(t *testing.T, js JobStatus, rep JobReport, ms []*pipeline.Manifest) {
	t.Helper()
	var rowsRead, delivered, dead, sent, acked, done, total int64
	var runs int
	for _, m := range ms {
		if m == nil {
			continue
		}
		rowsRead += m.Counts.RowsRead
		delivered += m.Counts.RowsDelivered
		dead += m.Counts.RowsDeadLettered
		sent += m.Counts.RequestsSent
		acked += m.Counts.RequestsAcked
		d, n := m.RowsProgress()
		done += d
		total += n
		runs += m.Runs
	}
	c := js.Totals.Counts
	if c.RowsRead != rowsRead || c.RowsDelivered != delivered || c.RowsDeadLettered != dead || c.RequestsSent != sent || c.RequestsAcked != acked ||
		js.Totals.RowsDone != done || js.Totals.RowsTotal != total {
		t.Errorf("totals %+v (rows %d of %d), want the manifests' sums: read %d delivered %d dead %d sent %d acked %d, rows %d of %d",
			c, js.Totals.RowsDone, js.Totals.RowsTotal, rowsRead, delivered, dead, sent, acked, done, total)
	}
	if rep.Counts.RowsRead != rowsRead || rep.Counts.RequestsAcked != acked || rep.RowsMarked != done || rep.RowsPlanned != total || rep.Runs != runs {
		t.Errorf("merged report: read %d acked %d marked %d planned %d runs %d, want %d %d %d %d %d",
			rep.Counts.RowsRead, rep.Counts.RequestsAcked, rep.RowsMarked, rep.RowsPlanned, rep.Runs, rowsRead, acked, done, total, runs)
	}
	if err := rep.Check(); err != nil {
		t.Errorf("merged report: %v", err)
	}
	for _, s := range rep.Shards {
		if err := s.Check(); err != nil {
			t.Errorf("shard %s's report: %v", s.Shard, err)
		}
	}
}

func shardStatuses(js JobStatus) []string {
	var out []string
	for _, s := range js.Shards {
		out = append(out, s.Status)
	}
	return out
}

// TestStatusAcrossShards: a job in five shards, each a real run with
// --shard i/5 on one state: two finished, one running with a live lease,
// one failed, one not started. Status lists every shard of the count the
// state records, sums their counts, estimates the job's size and time
// left, and its verdict for a workflow says "failed", then "not finished",
// then done once the missing shards have run; the merged report then holds
// every request of the job once.
func TestStatusAcrossShards(t *testing.T) {
	ctx := context.Background()
	j := newShardedJob(t, 5)
	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	// Every request refused as for another client: the run stops as
	// misconfigured and its manifest says failed.
	refusing := newRecorder(t, simulator.Options{ClientName: "someone-else", SiteID: "12"})

	errs := make(chan error, 3)
	for _, i := range []int{0, 1} {
		go func() { errs <- j.run(t, i, rec.srv.URL) }()
	}
	go func() {
		if err := j.run(t, 3, refusing.srv.URL); err == nil || errors.Is(err, pipeline.ErrIncomplete) {
			errs <- errors.New("shard 3 against a refusing Convertro did not fail: " + errString(err))
			return
		}
		errs <- nil
	}()
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}

	// Shard 2 runs against a slow Convertro while status looks.
	slow := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12", Delay: 200 * time.Millisecond})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	o := j.options(2, slow.srv.URL)
	o.Concurrency = 1
	go func() {
		_, err := Run(runCtx, o, testEnv(t))
		done <- err
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := j.manifests(t)[2]; m != nil && m.Status == pipeline.StatusRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("shard 2's run wrote no running manifest in 20 s")
		}
		time.Sleep(20 * time.Millisecond)
	}

	js, text, verdict, rep, ms := j.snapshot(t, time.Now())
	if want := []string{"finished", "finished", "running", "failed", StatusNotStarted}; !slices.Equal(shardStatuses(js), want) || js.ShardCount != 5 {
		t.Fatalf("shard statuses %v of %d, want %v of 5\n%s", shardStatuses(js), js.ShardCount, want, text)
	}
	if !regexp.MustCompile(`(?m)^4/5 +not_started +- +-`).MatchString(text) {
		t.Errorf("status has no row for shard 4/5, not started:\n%s", text)
	}
	host, _ := os.Hostname()
	if s := js.Shards[2]; !s.LeaseLive || s.Lease.Host != host || s.Lease.PID != os.Getpid() {
		t.Errorf("running shard: lease %+v live %v, want held by this process", s.Lease, s.LeaseLive)
	}
	if js.Status != JobFailed || js.Complete || !errors.Is(verdict, ErrShardFailed) || !strings.Contains(verdict.Error(), "3/5") {
		t.Errorf("job %s complete %v, verdict %v; want failed naming shard 3/5", js.Status, js.Complete, verdict)
	}
	checkTotals(t, js, rep, ms)
	if est := js.Totals.RowsTotal * 5 / 4; js.Totals.RowsTotalEstimate != est || est == 0 {
		t.Errorf("estimated rows %d, want the 4 planned shards' %d × 5/4 = %d", js.Totals.RowsTotalEstimate, js.Totals.RowsTotal, est)
	}
	if e := js.Totals.ETA; e == nil || !slices.Contains(e.NoRate, "4/5") || e.Seconds != 0 || e.RowsLeft < js.Totals.RowsTotalEstimate-js.Totals.RowsTotal {
		t.Errorf("job ETA %+v: want unknown while 4/5 has not started, counting its estimated rows", e)
	}
	if !slices.Equal(rep.NotStarted, []string{"4/5"}) || len(rep.Shards) != 4 || rep.Status != JobFailed || rep.Shard != "all of 5" {
		t.Errorf("merged report: not started %v, %d shard reports, status %s, shard %q", rep.NotStarted, len(rep.Shards), rep.Status, rep.Shard)
	}
	for _, want := range []string{
		"shard 2/5: running (lease held by " + host + " pid " + strconv.Itoa(os.Getpid()),
		"shard 3/5: its last run failed",
		"job: failed, 5 shards: 2 finished, 1 running, 1 failed, 1 not_started",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("status does not say %q:\n%s", want, text)
		}
	}

	// Shard 2 stopped cleanly, shard 3 run again and finished: not done
	// yet, and nothing failed.
	stop()
	if err := <-done; !errors.Is(err, pipeline.ErrStopped) {
		t.Fatalf("shard 2 cancelled: err = %v, want ErrStopped", err)
	}
	if err := j.run(t, 3, rec.srv.URL); err != nil {
		t.Fatalf("shard 3 again: %v", err)
	}
	js, text, verdict, _ = j.status(t, time.Now())
	if want := []string{"finished", "finished", "stopped", "finished", StatusNotStarted}; !slices.Equal(shardStatuses(js), want) {
		t.Errorf("shard statuses %v, want %v\n%s", shardStatuses(js), want, text)
	}
	if js.Status != JobUnfinished || !errors.Is(verdict, ErrNotDone) || errors.Is(verdict, ErrShardFailed) ||
		!strings.Contains(verdict.Error(), "2/5 stopped") || !strings.Contains(verdict.Error(), "4/5 not_started") {
		t.Errorf("job %s, verdict %v; want unfinished naming 2/5 stopped and 4/5 not started", js.Status, verdict)
	}

	// The rest run: the job is done, and its merged report holds every
	// request of the job, each counted once.
	for _, i := range []int{2, 4} {
		go func() { errs <- j.run(t, i, rec.srv.URL) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	js, text, verdict, rep = j.status(t, time.Now())
	if js.Status != JobFinished || !js.Complete || verdict != nil || js.Totals.ETA != nil || js.Totals.Percent != 100 {
		t.Fatalf("after every shard ran: job %s complete %v verdict %v ETA %v %.1f%%\n%s", js.Status, js.Complete, verdict, js.Totals.ETA, js.Totals.Percent, text)
	}
	checkTotals(t, js, rep, j.manifests(t))
	if rep.Counts.RequestsAcked != int64(len(j.want)) || rep.Counts.RowsRead != 1200 || rep.RowsPlanned != 1200 || rep.Status != JobFinished {
		t.Errorf("merged report: %d requests acked, %d rows read of %d planned, status %s; want %d requests, 1200 rows",
			rep.Counts.RequestsAcked, rep.Counts.RowsRead, rep.RowsPlanned, rep.Status, len(j.want))
	}
	got := append(rec.requests(t), slow.requests(t)...)
	for _, r := range j.want {
		if !slices.Contains(got, r) {
			t.Fatalf("request %s of the job never reached Convertro", r)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

// TestStatusShardHoldsAnotherRun: a recurring job in two shards whose
// shard 0 has begun tonight's range while shard 1 still holds last night's
// finished run: shard 1 is not started for tonight, and the job is not done.
func TestStatusShardHoldsAnotherRun(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	export := filepath.Join(dir, "export")
	start := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)
	if _, err := generate.Generate(ctx, generate.Options{Out: export, Rows: 400, Seed: 3, Start: start, Days: 2, RowGroupRows: 50}); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	state := filepath.Join(dir, "state")
	night := func(shard, day string) {
		t.Helper()
		o := testOptions(export, state, rec.srv.URL)
		o.Shard, o.From, o.To = shard, day, day
		if _, err := Run(ctx, o, testEnv(t)); err != nil {
			t.Fatalf("shard %s, %s: %v", shard, day, err)
		}
	}
	night("0/2", "2024-03-01")
	night("1/2", "2024-03-01")
	night("0/2", "2024-03-02")

	var out bytes.Buffer
	env := testEnv(t)
	env.Stdout = &out
	verdict := Status(ctx, StatusOptions{State: state, JSON: true, Done: true}, env)
	var js JobStatus
	if err := json.Unmarshal(out.Bytes(), &js); err != nil {
		t.Fatal(err)
	}
	if want := []string{"finished", StatusNotStarted}; !slices.Equal(shardStatuses(js), want) ||
		!strings.Contains(js.Job.Description, "2024-03-02") {
		t.Fatalf("statuses %v for job %q, want %v for tonight's range", shardStatuses(js), js.Job.Description, want)
	}
	if h := js.Shards[1].Holds; h == nil || !strings.Contains(h.Description, "2024-03-01") || js.Shards[1].HoldsStatus != "finished" {
		t.Errorf("shard 1/2 holds %+v (%s), want last night's finished run", h, js.Shards[1].HoldsStatus)
	}
	if !errors.Is(verdict, ErrNotDone) {
		t.Errorf("verdict %v, want ErrNotDone", verdict)
	}
	night("1/2", "2024-03-02")
	if err := Status(ctx, StatusOptions{State: state, Done: true}, testEnv(t)); err != nil {
		t.Errorf("after both shards ran tonight: %v", err)
	}
}

// TestStatusOtherSplit: a state written before the shard count was
// recorded, holding manifests of two splits: the job is the split written
// last, its missing shards are not started, and the older split's
// manifests are listed apart and counted nowhere.
func TestStatusOtherSplit(t *testing.T) {
	state := t.TempDir()
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	job := pipeline.JobID{Kind: "backfill", Fingerprint: "f", Description: "backfill of x"}
	for i, s := range []pipeline.Shard{{Index: 0, Count: 2}, {Index: 1, Count: 2}, {Index: 0, Count: 3}} {
		writeManifest(t, state, &pipeline.Manifest{Version: pipeline.ManifestVersion, Job: job, Shard: s, Status: pipeline.StatusFinished,
			Counts: pipeline.Counts{RowsRead: 10, RowsDelivered: 10}, Runs: 1, Updated: at.Add(time.Duration(i) * time.Hour)})
	}
	js, err := ReadJobStatus(context.Background(), state, at.Add(time.Hour*5))
	if err != nil {
		t.Fatal(err)
	}
	if js.ShardCount != 3 || !slices.Equal(shardStatuses(*js), []string{"finished", StatusNotStarted, StatusNotStarted}) {
		t.Errorf("count %d, statuses %v; want the 3-shard split, 1/3 and 2/3 not started", js.ShardCount, shardStatuses(*js))
	}
	if len(js.Other) != 2 || js.Other[0].Shard != "0/2" || js.Other[1].Shard != "1/2" || js.Totals.Counts.RowsRead != 10 {
		t.Errorf("other manifests %v, rows read %d: want 0/2 and 1/2 apart, only 0/3's 10 rows counted", js.Other, js.Totals.Counts.RowsRead)
	}
	if err := js.verdict(); !errors.Is(err, ErrNotDone) {
		t.Errorf("verdict %v, want ErrNotDone", err)
	}
}
