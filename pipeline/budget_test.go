package pipeline

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// dayClock is Deps.Now for runs spread over days.
type dayClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *dayClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Millisecond)
	return c.now
}

func (c *dayClock) nextDay() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(24 * time.Hour)
}

func (c *dayClock) day() string { return c.Now().UTC().Format(time.DateOnly) }

func runCapped(t *testing.T, dir string, cfg Config, stub *convertroStub, now func() time.Time) (*Report, error) {
	t.Helper()
	st, err := OpenState(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	cp, prev, err := OpenCheckpoint(context.Background(), st, Shard{0, 1}, NewLease(), now, 0)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Job = testJob
	return Run(context.Background(), cfg, Deps{
		Decoder:      &memDecoder{batch: 5},
		NewTransform: newTestTransform(stub.URL),
		Sender:       httpSender{stub.Client()},
		DeadLetters:  &memDeadLetters{},
		Checkpoint:   cp,
		Previous:     prev,
		State:        st,
		Now:          now,
	})
}

// TestDailyCapAcrossRuns runs a job under a daily cap with several decoders,
// a run a day: no day goes over the cap, each stopped run is resumable, and
// together the runs send every request once (a row is never half sent at the
// cap: its resume would repeat the half).
func TestDailyCapAcrossRuns(t *testing.T) {
	objs := testObjects()
	want := expect(objs)
	stub := newConvertroStub(t, nil)
	dir := t.TempDir()
	clock := &dayClock{now: time.Date(2026, 5, 1, 6, 0, 0, 0, time.UTC)}
	const capPerDay = 40
	cfg := Config{Objects: objs, Decoders: 4, Concurrency: 8, Window: 16, MaxRequestsPerDay: capPerDay}
	var before int
	for day := 0; ; day++ {
		if day == 20 {
			t.Fatal("not finished after 20 days")
		}
		today := clock.day()
		rep, err := runCapped(t, dir, cfg, stub, clock.Now)
		sent := len(stub.received()) - before
		before += sent
		m := readManifest(t, dir, Shard{0, 1})
		if sent > capPerDay || m.DailyRequests[today] != int64(sent) {
			t.Errorf("day %d: %d requests sent, manifest counts %d, cap %d", day, sent, m.DailyRequests[today], capPerDay)
		}
		if m.DailyCap != capPerDay {
			t.Errorf("manifest daily cap %d", m.DailyCap)
		}
		if errors.Is(err, ErrIncomplete) { // finished; one object is set aside
			if rep.Status != StatusFinished {
				t.Errorf("status %s", rep.Status)
			}
			break
		}
		if !errors.Is(err, ErrCapReached) || m.Status != StatusStopped || rep.Status != StatusStopped {
			t.Fatalf("day %d: err %v, manifest %s", day, err, m.Status)
		}
		if sent <= capPerDay-2 { // a row makes at most two requests
			t.Errorf("day %d: stopped at %d requests, the cap is %d", day, sent, capPerDay)
		}
		clock.nextDay()
	}
	checkSentOnce(t, stub.received(), want.requests)
	m := readManifest(t, dir, Shard{0, 1})
	var total int64
	for _, n := range m.DailyRequests {
		total += n
	}
	if total != int64(len(want.requests)) || m.Counts.RequestsSent != total {
		t.Errorf("manifest: %d requests by day, %d sent, want %d", total, m.Counts.RequestsSent, len(want.requests))
	}
	if m.ActiveSeconds <= 0 {
		t.Errorf("manifest active seconds %v", m.ActiveSeconds)
	}
}

// TestDailyCapBelowOneRow: a cap smaller than a row's requests could never
// be met; the run fails instead of stopping every day for ever.
func TestDailyCapBelowOneRow(t *testing.T) {
	stub := newConvertroStub(t, nil)
	clock := &dayClock{now: time.Date(2026, 5, 1, 6, 0, 0, 0, time.UTC)}
	cfg := Config{Objects: testObjects(), Decoders: 1, Concurrency: 1, MaxRequestsPerDay: 1}
	_, err := runCapped(t, t.TempDir(), cfg, stub, clock.Now)
	if err == nil || errors.Is(err, ErrCapReached) || !strings.Contains(err.Error(), "more than the whole daily cap") {
		t.Fatalf("err = %v, want a failure naming the cap", err)
	}
}

// TestBudgetKeepsAMonth: the manifest keeps a month of daily request counts,
// not every day a recurring job ever ran.
func TestBudgetKeepsAMonth(t *testing.T) {
	now := time.Date(2025, 3, 15, 2, 0, 0, 0, time.UTC)
	b := newBudget(0, func() time.Time { return now }, map[string]int64{
		"2024-03-15": 5, "2025-02-01": 7, "2025-02-12": 8, "2025-03-14": 9,
	})
	got := b.snapshot()
	if len(got) != 2 || got["2025-02-12"] != 8 || got["2025-03-14"] != 9 {
		t.Errorf("kept %v, want the days since 2025-02-12", got)
	}
}
