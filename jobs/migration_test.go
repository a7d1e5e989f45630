package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/objstore"
	"github.com/convertro-etl/convertro-etl/objstore/objstoretest"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/readers"
	"github.com/convertro-etl/convertro-etl/writers/generate"
)

// maxRequestsPerRow bounds the requests one row of the test export makes
// with testEvents (Added to Cart maps to two names): a run stops at the cap
// with fewer than this many requests of the day left unused.
const maxRequestsPerRow = 2

// testClock is Env.Now for runs spread over days: it advances a millisecond
// on each reading (so that runs have an active time) and a day on demand.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Millisecond)
	return c.now
}

// nextDay moves to noon of the next UTC day.
func (c *testClock) nextDay() {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.now.UTC().Truncate(24*time.Hour).AddDate(0, 0, 1)
	c.now = d.Add(12 * time.Hour)
}

func (c *testClock) day() string { return c.Now().UTC().Format(time.DateOnly) }

// TestMigrationDailyCap runs a migration over a four-day export with a daily
// cap of about 40% of its requests, one invocation per simulated day (and a
// second one on the first day): each stops at the cap with exit-3 semantics
// and a resumable manifest, the next day's continues, and together they
// deliver exactly the dry run's requests, each once, oldest partition first.
func TestMigrationDailyCap(t *testing.T) {
	dir := t.TempDir()
	export := filepath.Join(dir, "export")
	if _, err := generate.Generate(context.Background(), generate.Options{Out: export, Rows: 4000, Seed: 11, Days: 4, RowGroupRows: 150}); err != nil {
		t.Fatal(err)
	}
	testMigrationDailyCap(t, export, filepath.Join(dir, "state"), 4, 2000)
}

// TestMigrationDailyCapRemote is TestMigrationDailyCap with the export and
// the state in a bucket of each object store: two hours of each of two
// days, so that the plan still spans days and hours.
func TestMigrationDailyCapRemote(t *testing.T) {
	export := filepath.Join(t.TempDir(), "export")
	if _, err := generate.Generate(context.Background(), generate.Options{Out: export, Rows: 3000, Seed: 11, Days: 2, RowGroupRows: 40}); err != nil {
		t.Fatal(err)
	}
	export = hoursOf(t, export, 12, 13)
	for _, name := range slices.Sorted(maps.Keys(remoteBackends)) {
		t.Run(name, func(t *testing.T) {
			root := remoteBackends[name](t)
			objstoretest.PutTree(t, export, root+"/segment")
			testMigrationDailyCap(t, root+"/segment", root+"/state/migration", 2, 150)
		})
	}
}

// testMigrationDailyCap runs the migration of source, an export over days
// days, at a cap of 40% of its requests a day, with its state in state. The
// dry run must have at least minRequests requests.
func testMigrationDailyCap(t *testing.T, source, state string, days, minRequests int) {
	ctx := context.Background()
	clock := &testClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	env := testEnv(t)
	env.Now = clock.Now

	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	o := testOptions(source, state, rec.srv.URL)
	o.Kind = "migration"
	o.Concurrency = 8
	// One decoder reads the units strictly in plan order, so that where a
	// run stops, and what the next one finds first, is deterministic.
	o.Decoders = 1

	dry := o
	dry.DryRun, dry.Out = true, filepath.Join(t.TempDir(), "dry.jsonl")
	if _, err := Run(ctx, dry, env); err != nil {
		t.Fatalf("dry run: %v", err)
	}
	want := dryRunRequests(t, dry.Out)
	if len(want) < minRequests {
		t.Fatalf("the dry run has only %d requests", len(want))
	}
	capPerDay := int64(len(want)) * 4 / 10
	o.MaxRequestsPerDay = capPerDay

	recorded := func() int64 { return int64(len(rec.requests(t))) }
	var sentBefore int64
	finished := false
	for inv := 0; inv < 8 && !finished; inv++ {
		day := clock.day()
		rep, err := Run(ctx, o, env)
		sent := recorded() - sentBefore
		m := readManifest(t, state)
		t.Logf("invocation %d on %s: %d requests sent (cap %d), manifest %s, err %v", inv, day, sent, capPerDay, m.Status, err)
		switch {
		case err == nil:
			finished = true
			if m.Status != pipeline.StatusFinished || rep.Status != pipeline.StatusFinished {
				t.Errorf("invocation %d: manifest %s, report %s, want finished", inv, m.Status, rep.Status)
			}
			if sent > capPerDay {
				t.Errorf("invocation %d: %d requests on %s, over the cap %d", inv, sent, day, capPerDay)
			}
		case errors.Is(err, pipeline.ErrCapReached):
			if m.Status != pipeline.StatusStopped || rep == nil || rep.Status != pipeline.StatusStopped {
				t.Errorf("invocation %d: manifest %s, want stopped (report %+v)", inv, m.Status, rep)
			}
			if sent > capPerDay || sent <= capPerDay-maxRequestsPerRow {
				t.Errorf("invocation %d: %d requests sent on %s, want the cap %d less at most %d", inv, sent, day, capPerDay, maxRequestsPerRow-1)
			}
			if m.DailyRequests[day] != sent {
				t.Errorf("invocation %d: manifest counts %d requests on %s, the simulator recorded %d", inv, m.DailyRequests[day], day, sent)
			}
			if rep.Counts.RequestsSent != m.Counts.RequestsSent || m.Counts.RequestsSent != sentBefore+sent {
				t.Errorf("invocation %d: manifest counts %d requests sent, the simulator recorded %d", inv, m.Counts.RequestsSent, sentBefore+sent)
			}
			if inv == 0 {
				checkPrefixDone(t, m)
				// The same day again: the budget is spent, nothing goes out.
				_, err := Run(ctx, o, env)
				if !errors.Is(err, pipeline.ErrCapReached) {
					t.Fatalf("second run on %s: err = %v, want ErrCapReached", day, err)
				}
				if again := recorded() - sentBefore - sent; again != 0 {
					t.Errorf("second run on %s sent %d requests past the day's cap", day, again)
				}
			}
		default:
			t.Fatalf("invocation %d: %v", inv, err)
		}
		sentBefore += sent
		clock.nextDay()
	}
	if !finished {
		t.Fatal("the migration did not finish in 8 days")
	}
	// No kill, so no repeats: the union is the dry run's set, each once.
	diffRequests(t, "recorded over all invocations", rec.requests(t), want)

	m := readManifest(t, state)
	var total int64
	for d, n := range m.DailyRequests {
		if n > capPerDay {
			t.Errorf("manifest: %d requests on %s, over the cap %d", n, d, capPerDay)
		}
		total += n
	}
	if total != int64(len(want)) || len(m.DailyRequests) != 3 {
		t.Errorf("manifest: %d requests over %d days (%v), want %d over 3", total, len(m.DailyRequests), m.DailyRequests, len(want))
	}
	checkOldestFirst(t, m, days)
}

// checkPrefixDone checks that a run cut by the cap, with one decoder, left
// the plan's units done up to one partly read unit, and the rest untouched.
func checkPrefixDone(t *testing.T, m *pipeline.Manifest) {
	t.Helper()
	i := 0
	for i < len(m.Units) && m.Units[i].Done {
		i++
	}
	if i == 0 || i == len(m.Units) {
		t.Fatalf("%d of %d units done after a run cut by the cap", i, len(m.Units))
	}
	for j := i + 1; j < len(m.Units); j++ {
		if m.Units[j].Done || m.Units[j].Acked() > 0 {
			t.Fatalf("unit %d of %d has progress while unit %d is unfinished: not in plan order", j, len(m.Units), i)
		}
	}
}

// checkOldestFirst checks that the plan the manifest holds, which the
// feeder follows, goes by partition day and hour.
func checkOldestFirst(t *testing.T, m *pipeline.Manifest, want int) {
	t.Helper()
	var prev readers.Partition
	days := map[string]bool{}
	for i, u := range m.Units {
		p := readers.ParsePartition(m.Objects[u.Object].Key)
		if !p.HasDay {
			t.Fatalf("unit %d: %s has no day partition", i, m.Objects[u.Object].Key)
		}
		days[p.Day.Format(time.DateOnly)] = true
		if i > 0 && (p.Day.Before(prev.Day) || (p.Day.Equal(prev.Day) && p.Hour < prev.Hour)) {
			t.Fatalf("unit %d (%s) comes after a later partition (%s %02d)", i, m.Objects[u.Object].Key, prev.Day.Format(time.DateOnly), prev.Hour)
		}
		prev = p
	}
	if len(days) != want {
		t.Errorf("plan spans %d days, want %d", len(days), want)
	}
}

// TestMigrationPlan checks that plan shows a migration's span and an estimate
// of its requests and days at the cap before anything is sent.
func TestMigrationPlan(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	export := filepath.Join(dir, "export")
	if _, err := generate.Generate(ctx, generate.Options{Out: export, Rows: 4000, Seed: 11, Days: 4, RowGroupRows: 150}); err != nil {
		t.Fatal(err)
	}
	o := testOptions(export, filepath.Join(dir, "state"), "")
	o.Kind = "migration"
	dry := o
	dry.DryRun, dry.Out = true, filepath.Join(dir, "dry.jsonl")
	if _, err := Run(ctx, dry, testEnv(t)); err != nil {
		t.Fatal(err)
	}
	actual := len(dryRunRequests(t, dry.Out))

	o.MaxRequestsPerDay = 1000
	var out bytes.Buffer
	env := testEnv(t)
	env.Stdout = &out
	if err := PrintPlan(ctx, o, env); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	if !strings.Contains(text, "partitions from 2024-01-01 00:00 to 2024-01-04 23:00 (4 days)") {
		t.Errorf("plan does not show the span:\n%s", text)
	}
	mr := regexp.MustCompile(`requests: about (\d+) `).FindStringSubmatch(text)
	md := regexp.MustCompile(`about (\d+) days? \(one run a day`).FindStringSubmatch(text)
	if mr == nil || md == nil {
		t.Fatalf("plan shows no request or day estimate:\n%s", text)
	}
	est, _ := strconv.Atoi(mr[1])
	days, _ := strconv.Atoi(md[1])
	if est < actual*3/4 || est > actual*5/4 {
		t.Errorf("plan estimates %d requests, the dry run has %d", est, actual)
	}
	if days != (est+999)/1000 {
		t.Errorf("plan says %d days at 1000/day for %d requests", days, est)
	}
}

// TestStatusETA checks status's estimate on a manifest with known numbers.
func TestStatusETA(t *testing.T) {
	ctx := context.Background()
	state := t.TempDir()
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	m := &pipeline.Manifest{
		Version: pipeline.ManifestVersion,
		Job:     pipeline.JobID{Kind: "migration", Fingerprint: "f", Description: "migration of x"},
		Shard:   pipeline.Shard{Index: 0, Count: 1},
		Status:  pipeline.StatusStopped,
		Objects: []pipeline.PlannedObject{{URI: "x/a.parquet", Key: "a.parquet", RowGroups: []int64{1000, 1000}}},
		Units: []pipeline.UnitProgress{
			{Object: 0, RowGroup: 0, Rows: 1000, Watermark: 1000, Done: true},
			{Object: 0, RowGroup: 1, Rows: 1000, Watermark: 250},
		},
		Counts:        pipeline.Counts{RowsRead: 1250, RowsDelivered: 1250, RequestsSent: 2500, RequestsAcked: 2500},
		DailyRequests: map[string]int64{"2026-03-01": 2100, "2026-03-02": 400},
		DailyCap:      400,
		ActiveSeconds: 125,
		Runs:          2,
	}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	st, err := pipeline.OpenState(ctx, state)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write(ctx, pipeline.ManifestName(m.Shard), data, objstore.Overwrite); err != nil {
		t.Fatal(err)
	}
	env := testEnv(t)
	env.Now = func() time.Time { return now }

	var js bytes.Buffer
	env.Stdout = &js
	if err := Status(ctx, StatusOptions{State: state, JSON: true}, env); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Shards []struct {
			ETA *ETA `json:"eta"`
		} `json:"shards"`
	}
	if err := json.Unmarshal(js.Bytes(), &got); err != nil {
		t.Fatalf("status --json: %v\n%s", err, js.String())
	}
	want := ETA{RowsLeft: 750, ActiveSeconds: 125, RowsPerSecond: 10, Seconds: 75, RequestsPerRow: 2, RequestsLeft: 1500,
		DailyCap: 400, RequestsToday: 400, DaysAtCap: 4}
	if len(got.Shards) != 1 || got.Shards[0].ETA == nil || *got.Shards[0].ETA != want {
		t.Fatalf("status --json ETA = %+v, want %+v", got, want)
	}

	var table bytes.Buffer
	env.Stdout = &table
	if err := Status(ctx, StatusOptions{State: state}, env); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"shard 0/1 ETA: 750 rows left", "about 1m15s of sending at 10 rows/s", "1500 requests left", "4 days at the cap of 400/day (400 sent today)"} {
		if !strings.Contains(table.String(), s) {
			t.Errorf("status does not say %q:\n%s", s, table.String())
		}
	}
}

// TestMigrationExampleJobFile runs the README's migration example,
// examples/migration/job.yaml on the bundled sample, a day at a time: the
// first day stops at the cap, the second finishes, and the requests are the
// dry run's, each once.
func TestMigrationExampleJobFile(t *testing.T) {
	ctx := context.Background()
	o, err := LoadFile("../examples/migration/job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if o.Kind != "migration" || o.MaxRequestsPerDay == 0 {
		t.Fatalf("the example is kind %q with cap %d, want a capped migration", o.Kind, o.MaxRequestsPerDay)
	}
	rec := newRecorder(t, simulator.Options{ClientName: o.ClientName, SiteID: o.SiteID})
	dir := t.TempDir()
	o.Endpoint, o.State, o.Rate = rec.srv.URL, filepath.Join(dir, "state"), 0
	clock := &testClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	env := testEnv(t)
	env.Now = clock.Now

	dry := o
	dry.DryRun, dry.Out = true, filepath.Join(dir, "dry.jsonl")
	if _, err := Run(ctx, dry, env); err != nil {
		t.Fatalf("dry run: %v", err)
	}
	want := dryRunRequests(t, dry.Out)
	if n := int64(len(want)); n <= o.MaxRequestsPerDay || n > 2*o.MaxRequestsPerDay {
		t.Fatalf("the sample makes %d requests: the example's cap %d should take two days", n, o.MaxRequestsPerDay)
	}

	if _, err := Run(ctx, o, env); !errors.Is(err, pipeline.ErrCapReached) {
		t.Fatalf("first day: err = %v, want ErrCapReached", err)
	}
	if n := int64(len(rec.requests(t))); n > o.MaxRequestsPerDay {
		t.Errorf("first day: %d requests, over the cap %d", n, o.MaxRequestsPerDay)
	}
	clock.nextDay()
	if _, err := Run(ctx, o, env); err != nil {
		t.Fatalf("second day: %v", err)
	}
	diffRequests(t, "recorded over two days", rec.requests(t), want)
}
