package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/writers"
	"github.com/convertro-etl/convertro-etl/writers/generate"
)

var shard0 = pipeline.Shard{Index: 0, Count: 1}

// deadLettered is a finished job whose run against a simulator refusing
// some device ids left dead letters.
type deadLettered struct {
	state  string
	o      Options
	all    []string // every request of the job (canonical path?query)
	reject []string // the refused device ids
	dead   []string // the requests refused
	before *pipeline.Manifest
}

func runWithDeadLetters(t *testing.T, nReject int) *deadLettered {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	export := filepath.Join(dir, "export")
	if _, err := generate.Generate(ctx, generate.Options{Out: export, Rows: 1200, Seed: 11, RowGroupRows: 300}); err != nil {
		t.Fatal(err)
	}
	d := &deadLettered{state: filepath.Join(dir, "state")}

	// The dry run says which requests the job sends, and so which device ids
	// to refuse.
	dry := testOptions(export, d.state, "")
	dry.DryRun, dry.Out = true, filepath.Join(dir, "dry.jsonl")
	if _, err := Run(ctx, dry, testEnv(t)); err != nil {
		t.Fatalf("dry run: %v", err)
	}
	d.all = dryRunRequests(t, dry.Out)
	for _, r := range d.all {
		if sid := sidOf(t, r); !slices.Contains(d.reject, sid) && len(d.reject) < nReject {
			d.reject = append(d.reject, sid)
		}
	}
	for _, r := range d.all {
		if slices.Contains(d.reject, sidOf(t, r)) {
			d.dead = append(d.dead, r)
		}
	}

	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12", RejectSIDs: d.reject})
	d.o = testOptions(export, d.state, rec.srv.URL)
	rep, err := Run(ctx, d.o, testEnv(t))
	if !errors.Is(err, pipeline.ErrIncomplete) {
		t.Fatalf("run: err = %v, want ErrIncomplete", err)
	}
	if got := rep.Counts.RequestsDeadLettered; got != int64(len(d.dead)) || got == 0 {
		t.Fatalf("run dead-lettered %d requests, want %d (> 0)", got, len(d.dead))
	}
	d.before = readManifest(t, d.state)
	if len(d.before.DeadLetterFiles) == 0 {
		t.Fatal("the run's manifest lists no dead-letter files")
	}
	return d
}

func sidOf(t *testing.T, req string) string {
	t.Helper()
	_, q, _ := strings.Cut(req, "?")
	v, err := url.ParseQuery(q)
	if err != nil || v.Get("sid") == "" {
		t.Fatalf("request %q has no sid (%v)", req, err)
	}
	return v.Get("sid")
}

func readManifest(t *testing.T, state string) *pipeline.Manifest {
	t.Helper()
	st, err := pipeline.OpenState(context.Background(), state)
	if err != nil {
		t.Fatal(err)
	}
	m, err := pipeline.ReadManifest(context.Background(), st, shard0)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// listedDeadLetters reads the dead letters the manifest lists.
func listedDeadLetters(t *testing.T, state string, m *pipeline.Manifest) []writers.DeadLetter {
	t.Helper()
	st, err := pipeline.OpenState(context.Background(), state)
	if err != nil {
		t.Fatal(err)
	}
	var parts [][]writers.DeadLetter
	for _, name := range m.DeadLetterFiles {
		data, _, err := st.Read(context.Background(), name)
		if err != nil {
			t.Fatalf("listed dead-letter part: %v", err)
		}
		dls, err := writers.DecodeDeadLetters(name, data)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, dls)
	}
	return writers.MergeDeadLetters(parts...)
}

// canonical turns URLs into the recorder's exact path?query form.
func canonical(t *testing.T, urls []string) []string {
	t.Helper()
	var out []string
	for _, s := range urls {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, u.Path+"?"+u.RawQuery)
	}
	slices.Sort(out)
	return out
}

func letterURLs(dls []writers.DeadLetter) []string {
	var out []string
	for _, d := range dls {
		out = append(out, d.URL)
	}
	return out
}

func rowsOf(dls []writers.DeadLetter) int64 {
	type key struct {
		o  string
		rg int32
		r  int64
	}
	rows := map[key]bool{}
	for _, d := range dls {
		rows[key{d.Object, d.RowGroup, d.Row}] = true
	}
	return int64(len(rows))
}

// checkReconciled checks the manifest's identities and that its dead letters
// are exactly what it counts.
func checkReconciled(t *testing.T, state string, m, before *pipeline.Manifest) []writers.DeadLetter {
	t.Helper()
	c, b := m.Counts, before.Counts
	if err := m.CheckCounts(); err != nil {
		t.Error(err)
	}
	if c.RowsRead != b.RowsRead || c.RequestsSent != b.RequestsSent || c.RowsDelivered+c.RowsDeadLettered != b.RowsDelivered+b.RowsDeadLettered {
		t.Errorf("counts %+v do not carry over the run's %+v", c, b)
	}
	if c.RequestsReplayed != c.RequestsAcked-b.RequestsAcked {
		t.Errorf("requests replayed %d, but acked grew by %d", c.RequestsReplayed, c.RequestsAcked-b.RequestsAcked)
	}
	var grouped int64
	for _, g := range c.DeadLetterGroups {
		grouped += g.Count
	}
	if grouped != c.RequestsDeadLettered {
		t.Errorf("dead-letter groups %+v hold %d, the counts %d", c.DeadLetterGroups, grouped, c.RequestsDeadLettered)
	}
	dls := listedDeadLetters(t, state, m)
	if int64(len(dls)) != c.RequestsDeadLettered || rowsOf(dls) != c.RowsDeadLettered {
		t.Errorf("the manifest lists %d dead letters of %d rows, counts %d and %d",
			len(dls), rowsOf(dls), c.RequestsDeadLettered, c.RowsDeadLettered)
	}
	if m.Status != pipeline.StatusFinished || m.Lease.Expires != (time.Time{}) {
		t.Errorf("status %q, lease %v: want finished and released", m.Status, m.Lease)
	}
	return dls
}

func replayReports(t *testing.T, state string) []ShardReplay {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(state, "replay-0-of-1-*.json"))
	var out []ShardReplay
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		var r ShardReplay
		if err := json.Unmarshal(data, &r); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		out = append(out, r)
	}
	return out
}

// TestReplay: the operator fixed the cause on Convertro's side; a replay sends
// exactly the dead letters, re-aimed at the settings given now (a new
// endpoint, client name and site id), and the manifest shows them delivered.
func TestReplay(t *testing.T) {
	ctx := context.Background()
	d := runWithDeadLetters(t, 3)

	rec := newRecorder(t, simulator.Options{ClientName: "acme-eu", SiteID: "34"})
	o := d.o
	o.Endpoint, o.ClientName, o.SiteID = rec.srv.URL, "acme-eu", "34"
	rep, err := Replay(ctx, o, testEnv(t))
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	var want []string
	for _, r := range d.dead {
		want = append(want, strings.Replace(r, "/acme/12/?", "/acme-eu/34/?", 1))
	}
	slices.Sort(want)
	diffRequests(t, "replayed requests", rec.requests(t), want)

	m := readManifest(t, d.state)
	if dls := checkReconciled(t, d.state, m, d.before); len(dls) != 0 || len(m.DeadLetterFiles) != 0 {
		t.Errorf("%d dead letters (files %v) remain after a replay that delivered all", len(dls), m.DeadLetterFiles)
	}
	c := m.Counts
	if c.RequestsDeadLettered != 0 || c.RowsDeadLettered != 0 || c.RequestsAcked != c.RequestsSent ||
		c.RequestsReplayed != int64(len(d.dead)) || c.RowsDelivered != d.before.Counts.RowsDelivered+d.before.Counts.RowsDeadLettered {
		t.Errorf("counts after the replay %+v (before %+v): want every dead letter delivered", c, d.before.Counts)
	}
	if m.Runs != d.before.Runs+1 || m.Reopened != d.before.Reopened+1 {
		t.Errorf("runs %d, reopened %d; want one more of each (a replay is no resume)", m.Runs, m.Reopened)
	}
	for _, name := range d.before.DeadLetterFiles {
		if _, err := os.Stat(filepath.Join(d.state, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("old part %s still there (%v)", name, err)
		}
	}
	reps := replayReports(t, d.state)
	if len(reps) != 1 || !reps[0].Committed || reps[0].Delivered != len(d.dead) || len(reps[0].Requests) != len(d.dead) {
		t.Fatalf("replay reports %+v: want one, committed, listing %d requests", reps, len(d.dead))
	}
	var listed []string
	for _, r := range reps[0].Requests {
		listed = append(listed, r.URL)
	}
	diffRequests(t, "the report's requests", canonical(t, listed), want)
	if rep.Remaining() != 0 || len(rep.Shards) != 1 || rep.Shards[0].RowsDelivered != d.before.Counts.RowsDeadLettered {
		t.Errorf("report %+v", rep.Shards)
	}

	// Nothing left: a second replay sends nothing, and the job run again
	// is finished and complete.
	if _, err := Replay(ctx, o, testEnv(t)); err != nil {
		t.Errorf("second replay: %v", err)
	}
	if _, err := Run(ctx, d.o, testEnv(t)); err != nil {
		t.Errorf("the job run again after the replay: %v", err)
	}
	if n := len(rec.requests(t)); n != len(want) {
		t.Errorf("the simulator got %d requests, want still %d", n, len(want))
	}
	var out strings.Builder
	env := testEnv(t)
	env.Stdout = &out
	if err := Status(ctx, StatusOptions{State: d.state, JSON: true}, env); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"rows_dead_lettered": 0`) && !strings.Contains(out.String(), `"rows_dead_lettered":0`) {
		t.Errorf("status after the replay:\n%s", out.String())
	}
}

// TestReplayPartial: Convertro still refuses one device id; its requests stay
// dead-lettered, exactly them, and the others are delivered.
func TestReplayPartial(t *testing.T) {
	ctx := context.Background()
	d := runWithDeadLetters(t, 3)
	still := d.reject[:1]

	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12", RejectSIDs: still})
	o := d.o
	o.Endpoint = rec.srv.URL
	_, err := Replay(ctx, o, testEnv(t))
	if !errors.Is(err, pipeline.ErrIncomplete) {
		t.Fatalf("replay: err = %v, want ErrIncomplete", err)
	}
	var delivered, refused []string
	for _, r := range d.dead {
		if slices.Contains(still, sidOf(t, r)) {
			refused = append(refused, r)
		} else {
			delivered = append(delivered, r)
		}
	}
	if len(delivered) == 0 || len(refused) == 0 {
		t.Fatalf("the test needs both: %d delivered, %d refused", len(delivered), len(refused))
	}
	diffRequests(t, "delivered by the replay", rec.requests(t), delivered)
	m := readManifest(t, d.state)
	dls := checkReconciled(t, d.state, m, d.before)
	diffRequests(t, "left dead-lettered", canonical(t, letterURLs(dls)), refused)
	for _, dl := range dls {
		if dl.Status != 400 || dl.Time.Before(d.before.Updated.Truncate(time.Millisecond)) {
			t.Errorf("a remaining dead letter does not record the replay's refusal: %+v", dl)
			break
		}
	}

	// The same replay again sends only what is left, and it is refused again.
	first := rec.sim.Stats()
	if _, err := Replay(ctx, o, testEnv(t)); !errors.Is(err, pipeline.ErrIncomplete) {
		t.Fatalf("second replay: err = %v, want ErrIncomplete", err)
	}
	if st := rec.sim.Stats(); st.Accepted != first.Accepted || st.Rejected-first.Rejected != int64(len(refused)) {
		t.Errorf("second replay: %d accepted, %d rejected; want 0 and %d",
			st.Accepted-first.Accepted, st.Rejected-first.Rejected, len(refused))
	}
	checkReconciled(t, d.state, readManifest(t, d.state), d.before)
}

// TestReplayStopped: a replay cancelled midway records what was delivered,
// and the next one finishes; nothing is lost and nothing counted twice.
func TestReplayStopped(t *testing.T) {
	d := runWithDeadLetters(t, 6)
	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12", Delay: 20 * time.Millisecond})
	o := d.o
	o.Endpoint, o.Concurrency = rec.srv.URL, 2

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Replay(ctx, o, testEnv(t))
		done <- err
	}()
	for rec.sim.Stats().Accepted < 3 {
		select {
		case err := <-done:
			t.Fatalf("replay ended before it was stopped: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, pipeline.ErrStopped) {
		t.Fatalf("stopped replay: err = %v, want ErrStopped", err)
	}
	mid := readManifest(t, d.state)
	left := checkReconciled(t, d.state, mid, d.before)
	if len(left) == 0 || len(left) == len(d.dead) {
		t.Fatalf("stopped replay left %d of %d dead letters: want some delivered, some left", len(left), len(d.dead))
	}

	if _, err := Replay(context.Background(), o, testEnv(t)); err != nil {
		t.Fatalf("replay after the stopped one: %v", err)
	}
	m := readManifest(t, d.state)
	checkReconciled(t, d.state, m, d.before)
	c := m.Counts
	if c.RequestsDeadLettered != 0 || c.RequestsReplayed != int64(len(d.dead)) || c.RequestsAcked != c.RequestsSent {
		t.Errorf("counts after both replays %+v: want %d replayed, once each", c, len(d.dead))
	}
	// Every dead letter reached Convertro; a request in flight at the stop
	// may have been sent twice, nothing else.
	got := rec.requests(t)
	for _, r := range d.dead {
		if !slices.Contains(got, r) {
			t.Errorf("never delivered: %s", r)
		}
	}
	if extra := len(got) - len(d.dead); extra < 0 || extra > o.Concurrency {
		t.Errorf("%d requests recorded for %d dead letters: more repeats than requests in flight", len(got), len(d.dead))
	}
}

// TestReplayLeaseHeld: a replay never runs beside a run holding the lease.
func TestReplayLeaseHeld(t *testing.T) {
	ctx := context.Background()
	d := runWithDeadLetters(t, 2)
	st, err := pipeline.OpenState(ctx, d.state)
	if err != nil {
		t.Fatal(err)
	}
	cp, m, err := pipeline.OpenCheckpoint(ctx, st, shard0, pipeline.NewLease(), nil, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.Begin(ctx, m); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	o := d.o
	o.Endpoint = rec.srv.URL
	if _, err := Replay(ctx, o, testEnv(t)); !errors.Is(err, pipeline.ErrLeaseHeld) {
		t.Fatalf("replay beside a lease holder: err = %v, want ErrLeaseHeld", err)
	}
	if n := rec.sim.Stats().Accepted; n != 0 {
		t.Errorf("a refused replay sent %d requests", n)
	}
	if err := cp.Finish(ctx, pipeline.StatusFinished); err != nil {
		t.Fatal(err)
	}
	if _, err := Replay(ctx, o, testEnv(t)); err != nil {
		t.Fatalf("replay once the lease is free: %v", err)
	}
	diffRequests(t, "replayed", rec.requests(t), d.dead)
}

func TestReplaySettings(t *testing.T) {
	o := Options{State: t.TempDir(), Account: "acme", SiteID: "12"}
	if _, err := Replay(context.Background(), o, testEnv(t)); err == nil || !strings.Contains(err.Error(), "clientName") {
		t.Errorf("replay without a client name: err = %v", err)
	}
}

// TestReplayRemoteState replays from a state kept in a bucket of each object
// store: listing, reading, writing and deleting parts go through it.
func TestReplayRemoteState(t *testing.T) {
	export := filepath.Join(t.TempDir(), "export")
	if _, err := generate.Generate(context.Background(), generate.Options{Out: export, Rows: 600, Seed: 2, RowGroupRows: 200}); err != nil {
		t.Fatal(err)
	}
	for name, newRoot := range remoteBackends {
		t.Run(name, func(t *testing.T) { testReplayRemoteState(t, export, newRoot(t)) })
	}
}

func testReplayRemoteState(t *testing.T, export, root string) {
	ctx := context.Background()
	env := testEnv(t)
	o := testOptions(export, root+"/nightly", "")
	o.DryRun, o.Out = true, filepath.Join(t.TempDir(), "dry.jsonl")
	if _, err := Run(ctx, o, env); err != nil {
		t.Fatal(err)
	}
	all := dryRunRequests(t, o.Out)
	reject := []string{sidOf(t, all[0]), sidOf(t, all[len(all)-1])}
	var dead []string
	for _, r := range all {
		if slices.Contains(reject, sidOf(t, r)) {
			dead = append(dead, r)
		}
	}

	refusing := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12", RejectSIDs: reject})
	o.DryRun, o.Out, o.Endpoint = false, "", refusing.srv.URL
	if _, err := Run(ctx, o, env); !errors.Is(err, pipeline.ErrIncomplete) {
		t.Fatalf("run: err = %v, want ErrIncomplete", err)
	}
	st, err := pipeline.OpenState(ctx, o.State)
	if err != nil {
		t.Fatal(err)
	}
	before, err := pipeline.ReadManifest(ctx, st, shard0)
	if err != nil {
		t.Fatal(err)
	}

	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	o.Endpoint = rec.srv.URL
	if _, err := Replay(ctx, o, env); err != nil {
		t.Fatalf("replay: %v", err)
	}
	diffRequests(t, "replayed", rec.requests(t), dead)
	m, err := pipeline.ReadManifest(ctx, st, shard0)
	if err != nil {
		t.Fatal(err)
	}
	if c := m.Counts; c.RequestsDeadLettered != 0 || c.RowsDeadLettered != 0 || c.RequestsReplayed != int64(len(dead)) ||
		c.RowsDelivered != before.Counts.RowsDelivered+before.Counts.RowsDeadLettered || len(m.DeadLetterFiles) != 0 {
		t.Errorf("counts after the replay %+v, files %v", c, m.DeadLetterFiles)
	}
	for _, name := range before.DeadLetterFiles {
		if _, ok := readObject(t, o.State, name); ok {
			t.Errorf("old part %s not deleted", name)
		}
	}
	if reports := listKeys(t, o.State, "replay-0-of-1-"); len(reports) != 1 {
		t.Errorf("replay reports in the state: %q, want 1", reports)
	}
}
