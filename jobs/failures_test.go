package jobs

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/convertro"
	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/writers/generate"
)

// failureExport generates a small export and the requests the oracle
// expects from it.
func failureExport(t *testing.T, rows int) (export string, want []string) {
	t.Helper()
	export = filepath.Join(t.TempDir(), "export")
	if _, err := generate.Generate(context.Background(), generate.Options{Out: export, Rows: rows, Seed: 11, Days: 1, RowGroupRows: 250}); err != nil {
		t.Fatal(err)
	}
	want = expectRequests(readOracleRows(t, export), "acme", "12", testEvents, false)
	return export, want
}

// clientClock is the Convertro client's clock in these tests: a sleep
// returns at once, having moved the clock to its end unless another sender's
// sleep moved it further, so that the senders' waits overlap as in real
// time and minutes of outage take no real time.
type clientClock struct {
	mu      sync.Mutex
	t       time.Time
	longest time.Duration
}

func newClientClock() *clientClock {
	return &clientClock{t: time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)}
}

func (c *clientClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clientClock) sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.longest = max(c.longest, d)
	if wake := c.t.Add(d); wake.After(c.t) {
		c.t = wake
	}
	c.mu.Unlock()
	return ctx.Err()
}

// env gives the run's Convertro client this clock.
func (c *clientClock) env(t *testing.T) Env {
	env := testEnv(t)
	env.tuneClient = func(o *convertro.ClientOptions) { o.Now, o.Sleep = c.now, c.sleep }
	return env
}

// TestRunRidesOutOutages: a 15-second and a 2-minute outage of Convertro in
// the middle of a run (503s and dropped connections, on the client's clock)
// do not end the run: it finishes with every request delivered once, and no
// sender waited more than 30 s at a time. (That a sender comes back at most
// 30 s after the outage is shown in convertro's TestClientRidesOutOutages,
// where the clock is exact.)
func TestRunRidesOutOutages(t *testing.T) {
	export, want := failureExport(t, 1500)
	for _, length := range []time.Duration{15 * time.Second, 2 * time.Minute} {
		t.Run(length.String(), func(t *testing.T) {
			clock := newClientClock()
			out := &simulator.Outage{Now: clock.now, After: int64(len(want) / 3), Length: length}
			rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12", Script: out.Script})
			o := testOptions(export, filepath.Join(t.TempDir(), "state"), rec.srv.URL)
			rep, err := Run(context.Background(), o, clock.env(t))
			if err != nil {
				t.Fatalf("run across a %v outage: %v", length, err)
			}
			diffRequests(t, "recorded by the simulator", rec.requests(t), want)
			if _, fails := out.Began(); fails < int64(o.Concurrency) {
				t.Fatalf("%d failed attempts: the outage did not happen", fails)
			}
			if clock.longest > convertro.DefaultMaxBackoff {
				t.Errorf("a wait of %v, over %v", clock.longest, convertro.DefaultMaxBackoff)
			}
			if c := rep.Counts; c.RequestsAcked != int64(len(want)) || c.RequestsDeadLettered != 0 || c.RequestsRetried == 0 {
				t.Errorf("counts %+v: want %d acked, none dead-lettered, some retried", c, len(want))
			}
		})
	}
}

// TestRunStopsWhenConvertroDown: an outage longer than --down-after stops
// the run (resumably) with a message saying since when Convertro is down;
// the same command finishes the job once it is back.
func TestRunStopsWhenConvertroDown(t *testing.T) {
	export, want := failureExport(t, 1000)
	clock := newClientClock()
	out := &simulator.Outage{Now: clock.now, After: 100, Length: 6 * time.Minute}
	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12", Script: out.Script})
	o := testOptions(export, filepath.Join(t.TempDir(), "state"), rec.srv.URL)
	rep, err := Run(context.Background(), o, clock.env(t))
	if !errors.Is(err, convertro.ErrDown) {
		t.Fatalf("err = %v, want ErrDown", err)
	}
	// Since the first failure the client saw after its last answer: the
	// outage's start, or a little later when an answer to a request sent
	// before it came back after the first failure.
	msg := err.Error()
	_, after, _ := strings.Cut(msg, "Convertro down since ")
	stamp, _, _ := strings.Cut(after, ": every request has failed for 5m0s")
	since, perr := time.Parse(time.RFC3339, stamp)
	start, _ := out.Began()
	if perr != nil || since.Before(start.Truncate(time.Second)) || since.After(start.Add(time.Minute)) || strings.Contains(msg, "sid=") {
		t.Errorf("message %q: want Convertro down since about %v, and no query", msg, start)
	}
	if rep == nil || rep.Status != pipeline.StatusFailed || rep.DeadLetters != 0 || rep.Error != msg {
		t.Fatalf("report %+v", rep)
	}
	clock.sleep(context.Background(), 6*time.Minute) // the outage is over
	if _, err := Run(context.Background(), o, clock.env(t)); err != nil {
		t.Fatalf("resume: %v", err)
	}
	got := rec.requests(t)
	diffRequests(t, "recorded by the simulator, without repeats", slices.Compact(got), want)
}

// TestRunStopsOnRevokedCredentials: after 100 accepted requests Convertro
// answers only 401. The run stops at once (at most one 401 per sender)
// with an error naming 401 and what to check; nothing is dead-lettered;
// the counts add up; and the same command finishes the job once the
// credentials are restored.
func TestRunStopsOnRevokedCredentials(t *testing.T) {
	export, want := failureExport(t, 1000)
	var revoked atomic.Bool
	var calls, refused atomic.Int64
	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12", Script: func(string, int) int {
		if revoked.Load() && calls.Add(1) > 100 {
			refused.Add(1)
			return http.StatusUnauthorized
		}
		return 0
	}})
	revoked.Store(true)
	state := filepath.Join(t.TempDir(), "state")
	o := testOptions(export, state, rec.srv.URL)
	rep, err := Run(context.Background(), o, testEnv(t))
	if !errors.Is(err, convertro.ErrUnauthorized) || errors.Is(err, convertro.ErrPermanent) {
		t.Fatalf("err = %v, want ErrUnauthorized", err)
	}
	for _, s := range []string{"401 Unauthorized", "simulated unauthorized", "check the client name, the site id and the endpoint's credentials"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("message %q lacks %q", err, s)
		}
	}
	if n := refused.Load(); n == 0 || n > int64(o.Concurrency) {
		t.Errorf("%d requests answered 401, want 1 to %d (one per sender at most)", n, o.Concurrency)
	}
	c := rep.Counts
	if rep.Status != pipeline.StatusFailed || rep.DeadLetters != 0 || c.RequestsDeadLettered != 0 || c.RowsDeadLettered != 0 {
		t.Errorf("report status %s, %d dead letters, counts %+v: want failed, none dead-lettered", rep.Status, rep.DeadLetters, c)
	}
	if accepted := rec.sim.Stats().Accepted; c.RequestsAcked > accepted || accepted != 100 {
		t.Errorf("%d acked, simulator accepted %d: want 100 accepted, at most those acked", c.RequestsAcked, accepted)
	}
	if err := rep.Check(); err != nil {
		t.Error(err)
	}
	// The figures of a stopped run add up: every request handed to the
	// client is counted (a few were cancelled before they reached
	// Convertro), acked ones whose rows were committed, and the rest as left
	// in flight: sent again by the next run, and inside the repeat bound.
	if sent := rec.sim.Stats().Accepted + refused.Load(); rep.RequestsAttempted < sent ||
		rep.LeftInFlight != rep.RequestsAttempted-c.RequestsAcked || rep.RepeatBound < rep.LeftInFlight {
		t.Errorf("report: %d requests attempted, %d left in flight, %d acked, repeat bound %d; Convertro received %d",
			rep.RequestsAttempted, rep.LeftInFlight, c.RequestsAcked, rep.RepeatBound, sent)
	}
	if strings.Contains(rep.Error, "sid=") || !strings.Contains(rep.Error, "401") {
		t.Errorf("report error %q: want 401 named and no query", rep.Error)
	}
	if files, _ := filepath.Glob(filepath.Join(state, "*dead*")); len(files) != 0 {
		t.Errorf("dead-letter files %v", files)
	}

	revoked.Store(false)
	rep, err = Run(context.Background(), o, testEnv(t))
	if err != nil {
		t.Fatalf("resume with the credentials restored: %v", err)
	}
	got := rec.requests(t)
	diffRequests(t, "recorded by the simulator, without repeats", slices.Compact(got), want)
	if repeats := len(got) - len(slices.Compact(slices.Clone(got))); repeats > o.Concurrency {
		t.Errorf("%d requests sent twice, want at most the %d in flight", repeats, o.Concurrency)
	}
}

// TestRunStopsOnIdenticalRefusalsMidRun: 500 requests accepted, then every
// one refused with the same 400 (a setting gone wrong mid-run): the run
// stops as misconfigured and the streak is not dead-lettered.
func TestRunStopsOnIdenticalRefusalsMidRun(t *testing.T) {
	export, want := failureExport(t, 1500)
	if len(want) < 600 {
		t.Fatalf("only %d requests in the export", len(want))
	}
	var calls atomic.Int64
	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12", Script: func(string, int) int {
		if calls.Add(1) > 500 {
			return http.StatusBadRequest
		}
		return 0
	}})
	state := filepath.Join(t.TempDir(), "state")
	rep, err := Run(context.Background(), testOptions(export, state, rec.srv.URL), testEnv(t))
	if !errors.Is(err, pipeline.ErrMisconfigured) {
		t.Fatalf("err = %v, want ErrMisconfigured", err)
	}
	if !strings.Contains(err.Error(), "status 400") || strings.Contains(err.Error(), "sid=") {
		t.Errorf("message %q: want the status and no query", err)
	}
	if rep.DeadLetters != 0 || rep.Counts.RequestsDeadLettered != 0 || rep.Counts.RequestsAcked > 500 {
		t.Errorf("%d dead letters, counts %+v: want none, at most 500 acked", rep.DeadLetters, rep.Counts)
	}
	if err := rep.Check(); err != nil {
		t.Error(err)
	}
}

// TestRunStopsOnRedirects: a Convertro endpoint that answers every request
// with a 302 to another origin: nothing reaches that origin, and the run
// stops as misconfigured, naming where the redirect pointed.
func TestRunStopsOnRedirects(t *testing.T) {
	export, _ := failureExport(t, 500)
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere.Add(1) }))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/collect"+r.URL.RequestURI(), http.StatusFound)
	}))
	defer srv.Close()
	state := filepath.Join(t.TempDir(), "state")
	rep, err := Run(context.Background(), testOptions(export, state, srv.URL), testEnv(t))
	if !errors.Is(err, pipeline.ErrMisconfigured) {
		t.Fatalf("err = %v, want ErrMisconfigured", err)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("the redirect's target received %d requests", n)
	}
	if !strings.Contains(err.Error(), "a redirect to "+other.URL+"/collect/api/") || strings.Contains(err.Error(), "sid=") {
		t.Errorf("message %q: want the target named, without its query", err)
	}
	if rep.DeadLetters != 0 || rep.Counts.RequestsAcked != 0 {
		t.Errorf("%d dead letters, counts %+v", rep.DeadLetters, rep.Counts)
	}
	if _, err := os.Stat(state); err != nil {
		t.Error(err)
	}
}
