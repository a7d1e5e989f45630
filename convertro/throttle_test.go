package convertro

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
)

// fakeClock is a clock that moves only when told; safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) { c.set(c.now().Add(d)) }

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// throttleRig is a throttle on a fake clock, with the limit it last applied.
type throttleRig struct {
	clock   *fakeClock
	th      *throttle
	applied []float64
}

func newThrottleRig(ceiling float64) *throttleRig {
	r := &throttleRig{clock: newFakeClock()}
	r.th = newThrottle(ceiling, r.clock.now, func(rps float64) { r.applied = append(r.applied, rps) })
	return r
}

func (r *throttleRig) rate() float64 {
	r.th.mu.Lock()
	defer r.th.mu.Unlock()
	return r.th.rate
}

// window observes ok 2xx and tooMany 429 answers spread evenly over d, the
// last one exactly d after the current time. A window that starts where the
// throttle's own window starts and lasts 500 ms (with at least 20 answers
// counted) thus ends with its last answer; so does one of 5 s with exactly
// 20.
func (r *throttleRig) window(d time.Duration, ok, tooMany int) {
	begin := r.clock.now()
	n := ok + tooMany
	for i := 1; i <= n; i++ {
		r.clock.set(begin.Add(time.Duration(int64(d) * int64(i) / int64(n))))
		o := outcomeOK
		if tooMany*i/n > tooMany*(i-1)/n { // 429s spread like a line's pixels
			o = outcome429
		}
		r.th.observe(o)
	}
}

func near(got, want float64) bool { return math.Abs(got-want) <= 1e-9*math.Max(1, math.Abs(want)) }

func TestThrottleCutsOn429s(t *testing.T) {
	r := newThrottleRig(100)
	r.th.observe(outcomeOK) // opens the first window
	// A burst of 429s within one window: one cut, at the window's end.
	r.window(400*time.Millisecond, 20, 20)
	if got := r.rate(); got != 100 {
		t.Fatalf("rate %v before the window ended, want 100", got)
	}
	r.window(100*time.Millisecond, 5, 5)
	if got := r.rate(); !near(got, 70) {
		t.Fatalf("rate %v after a window with 49%% 429s, want 70", got)
	}
	// Still 429s in the next window: cut again, from the current rate.
	r.window(500*time.Millisecond, 30, 5)
	if got := r.rate(); !near(got, 49) {
		t.Fatalf("rate %v after a second window with 429s, want 49", got)
	}
	// 1 in 25 (4%) is tolerated: no cut, and no raise either.
	r.window(500*time.Millisecond, 24, 1)
	if got := r.rate(); !near(got, 49) {
		t.Fatalf("rate %v after a window with 4%% 429s, want 49", got)
	}
	if len(r.applied) != 2 || !near(r.applied[1], 49) {
		t.Errorf("limits applied %v, want [70 49]", r.applied)
	}
	h := r.th.history()
	if len(h) != 2 || !near(h[0].Rate, 70) || h[0].Share429 < 0.45 || h[0].Share429 > 0.55 || !h[1].Time.After(h[0].Time) {
		t.Errorf("history %+v", h)
	}

	// Cuts stop at 1 request/s.
	for range 20 {
		r.window(500*time.Millisecond, 10, 10)
	}
	if got := r.rate(); got != throttleFloor {
		t.Errorf("rate %v after 20 windows of 50%% 429s, want the floor %v", got, throttleFloor)
	}
}

func TestThrottleStartsUnlimitedFromAcceptedRate(t *testing.T) {
	r := newThrottleRig(0)
	r.th.observe(outcomeOK)
	// 400 answers/s, of which 100 accepted: the limit starts from the
	// accepted rate, not from the 400 attempts/s.
	// (the opening 2xx makes it 51 accepted in 0.5 s).
	r.window(500*time.Millisecond, 50, 150)
	if got, want := r.rate(), 0.7*102; !near(got, want) {
		t.Fatalf("rate %v, want %v", got, want)
	}
	if h := r.th.history(); len(h) != 1 || !near(h[0].Accepted, 102) {
		t.Errorf("history %+v, want one point that accepted 102/s", h)
	}
}

func TestThrottleRaisesAdditivelyUpToCeiling(t *testing.T) {
	r := newThrottleRig(100)
	r.th.observe(outcomeOK)
	r.window(500*time.Millisecond, 60, 60) // 70
	r.window(500*time.Millisecond, 60, 60) // 49
	r.window(500*time.Millisecond, 60, 60) // 34.3
	for _, want := range []float64{34.3 * 1.05, 34.3 * 1.05 * 1.05} {
		r.window(500*time.Millisecond, 30, 0)
		if got := r.rate(); !near(got, want) {
			t.Fatalf("rate %v after a quiet window, want +5%%: %v", got, want)
		}
	}
	// Windows without answers are no evidence: an idle client keeps its rate.
	before := r.rate()
	r.clock.advance(time.Minute)
	if got := r.rate(); got != before {
		t.Fatalf("rate moved from %v to %v while idle", before, got)
	}
	for range 100 {
		r.window(500*time.Millisecond, 30, 0)
		if got := r.rate(); got > 100 {
			t.Fatalf("rate %v above the ceiling 100", got)
		}
	}
	if got := r.rate(); got != 100 {
		t.Errorf("rate %v after 100 quiet windows, want the ceiling 100", got)
	}

	// Below 20 requests/s, 5% is less than the 1 request/s step; and a
	// window of a slow sender ends after 5 s, however few its answers.
	r = newThrottleRig(0)
	r.th.setCeiling(10)
	r.th.observe(outcomeOK)
	r.window(500*time.Millisecond, 10, 10) // 7
	r.window(5*time.Second, 10, 0)
	if got := r.rate(); !near(got, 8) {
		t.Errorf("rate %v, want 7 + 1", got)
	}
}

func TestThrottleCutsFromRateSent(t *testing.T) {
	// A limit of 100/s that the senders do not use: 20 answers in 5 s. The
	// cut starts from the 4/s they sent, or it would not slow them at all.
	r := newThrottleRig(100)
	r.th.observe(outcomeOK)
	r.window(5*time.Second, 10, 9)
	if got := r.rate(); !near(got, 0.7*4) {
		t.Errorf("rate %v, want 0.7 × 4", got)
	}
}

func TestThrottleLiftsLimitWithoutCeiling(t *testing.T) {
	r := newThrottleRig(0)
	r.th.observe(outcomeOK)
	r.window(500*time.Millisecond, 50, 50) // accepted 102/s: cut to 71.4
	var last float64
	for i := 0; r.rate() != 0; i++ {
		if i > 100 {
			t.Fatalf("still limited at %v after 100 quiet windows", r.rate())
		}
		last = r.rate()
		// Convertro takes all the client sends, as a limiter-bound sender would.
		r.window(500*time.Millisecond, int(last/2), 0)
		// Up to the knee, 5% a window; past it, 1% (at least 1/s).
		want := last * 1.05
		if last >= 102 {
			want = last + max(1, 0.01*last)
		}
		if got := r.rate(); got != 0 && !near(got, want) {
			t.Fatalf("raised from %v to %v, want %v", last, got, want)
		}
	}
	if last > 1.5*102 || last+max(1, 0.01*last) <= 1.5*102 {
		t.Errorf("lifted from %v, want the first step past 1.5 × 102/s", last)
	}
	if got := r.applied[len(r.applied)-1]; got != 0 {
		t.Errorf("limiter last set to %v, want 0 (unlimited)", got)
	}
}

func TestThrottleIgnoresIdleGaps(t *testing.T) {
	r := newThrottleRig(100)
	r.th.observe(outcomeOK)
	r.window(500*time.Millisecond, 19, 1) // one 429 in 20 (5%): no change
	// An hour later, a 429: its window starts now. Were the hour counted,
	// the answer rate would be about 0 and the cut would reach the floor.
	r.clock.advance(time.Hour)
	r.th.observe(outcome429)
	r.window(500*time.Millisecond, 60, 20)
	if got := r.rate(); !near(got, 70) {
		t.Errorf("rate %v, want 70", got)
	}
}

func TestThrottleHistoryBounded(t *testing.T) {
	r := newThrottleRig(100)
	r.th.observe(outcomeOK)
	for range 1000 { // 2000 changes
		r.window(500*time.Millisecond, 60, 60)
		r.window(500*time.Millisecond, 30, 0)
	}
	h := r.th.history()
	if len(h) != maxRateHistory {
		t.Fatalf("%d points, want %d", len(h), maxRateHistory)
	}
	for i := 1; i < len(h); i++ {
		if !h[i].Time.After(h[i-1].Time) {
			t.Fatalf("points %d and %d out of order: %v, %v", i-1, i, h[i-1].Time, h[i].Time)
		}
	}
	if last := h[len(h)-1]; last.Rate != r.rate() || !last.Time.Equal(r.clock.now()) {
		t.Errorf("last point %+v, want the latest change (rate %v at %v)", last, r.rate(), r.clock.now())
	}
	if cap(r.th.hist) != maxRateHistory {
		t.Errorf("history holds %d points of room", cap(r.th.hist))
	}
}

func TestClientRateAndSetRate(t *testing.T) {
	c := NewClient(ClientOptions{Rate: 50, Adaptive: true})
	if got := c.Rate(); got != 50 {
		t.Fatalf("Rate() = %v, want 50", got)
	}
	c.SetRate(0)
	if got := c.Rate(); got != 0 {
		t.Fatalf("Rate() = %v after SetRate(0), want 0", got)
	}
	c.SetRate(20)
	if h := c.RateHistory(); len(h) != 2 || h[0].Rate != 0 || h[1].Rate != 20 {
		t.Errorf("history %+v, want SetRate's two changes", h)
	}
	if got := NewClient(ClientOptions{Rate: 5}).RateHistory(); got != nil {
		t.Errorf("history %v without Adaptive", got)
	}
}

// TestAdaptiveFindsCeiling runs 32 senders as fast as they can for 6
// seconds against a simulator that answers 429 (Retry-After: 1) above 200
// requests/s, with an unlimited adaptive client, and measures the last 3
// seconds from the simulator's own counters: the controller must hold the
// accepted rate within 20% of the ceiling with under 5% 429s.
//
// It runs in a synctest bubble, the simulator's handler called in process
// (simulatorTransport): the clock is the bubble's, so the rates are exact
// whatever the load of the machine, and the test has no escape for a busy
// one. Six seconds see the first cut (from unlimited to 70% of the accepted
// rate) and the climb back past the ceiling, which the simulator's
// one-second burst absorbs for a while; the sawtooth that follows is covered
// by the throttle's unit tests.
func TestAdaptiveFindsCeiling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			ceiling   = 200.0
			senders   = 32
			run       = 6 * time.Second
			measured  = 3 * time.Second
			perSender = 1000 // 32000 in all, far above what 6 s at 200/s allow
		)
		sim := simulator.New(simulator.Options{MaxRPS: ceiling, RetryAfter: time.Second})
		c := NewClient(ClientOptions{Concurrency: senders, Adaptive: true, Transport: simulatorTransport{sim}})
		start := time.Now()
		deadline := start.Add(run)
		var seq atomic.Int64
		var wg sync.WaitGroup
		for range senders {
			wg.Go(func() {
				for range perSender {
					if !time.Now().Before(deadline) {
						return
					}
					u := fmt.Sprintf("http://convertro.test/api/install/a/b/?sid=d&eid=%d&ts=1", seq.Add(1))
					if _, err := c.Get(t.Context(), u); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		time.Sleep(time.Until(deadline.Add(-measured)))
		s0, t0, r0 := sim.Stats(), time.Now(), c.Rate()
		time.Sleep(time.Until(deadline))
		s1, t1 := sim.Stats(), time.Now()
		wg.Wait()

		secs := t1.Sub(t0).Seconds()
		accepted := float64(s1.Accepted-s0.Accepted) / secs
		requests := s1.Requests - s0.Requests
		share := float64(s1.Faults.Ceiling-s0.Faults.Ceiling) / float64(max(1, requests))
		t.Logf("last %.2f s: accepted %.1f/s, %d requests, 429 share %.2f%%; limit %.1f at the start, %.1f at the end",
			secs, accepted, requests, 100*share, r0, c.Rate())
		for _, p := range c.RateHistory() {
			t.Logf("  %6.3fs  rate %7.1f  429s %5.1f%%  accepted %6.1f/s", p.Time.Sub(start).Seconds(), p.Rate, 100*p.Share429, p.Accepted)
		}
		if share >= 0.05 {
			t.Errorf("429 share %.2f%% over the last %.2f s, want below 5%%", 100*share, secs)
		}
		if accepted > 1.2*ceiling || accepted < 0.8*ceiling {
			t.Errorf("accepted %.1f/s over the last %.2f s, want within 20%% of the ceiling %v", accepted, secs, ceiling)
		}
		if s1.Faults.Ceiling == 0 || len(c.RateHistory()) == 0 {
			t.Errorf("%d answers above the ceiling and %d changes of the limit: the senders never met the ceiling", s1.Faults.Ceiling, len(c.RateHistory()))
		}
	})
}

// simulatorTransport answers each request with the simulator's handler in
// process: no sockets, so a synctest bubble's clock governs every wait.
type simulatorTransport struct{ sim *simulator.Simulator }

func (s simulatorTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	w := httptest.NewRecorder()
	s.sim.ServeHTTP(w, r)
	return w.Result(), nil
}

// TestClientStopsWhenDown: senders waiting to retry, in an injected Sleep
// and in the Client's own timer, all return ErrDown once Convertro has
// failed every request for DownAfter, and later calls send nothing.
func TestClientStopsWhenDown(t *testing.T) {
	for _, injected := range []bool{true, false} {
		t.Run(fmt.Sprintf("injected sleep %v", injected), func(t *testing.T) {
			// 429 with a Retry-After of an hour (capped at 5 minutes): only
			// the down declaration can end the waits in time.
			srv := newClientTestServer(t, simulator.Options{RetryAfter: time.Hour, Script: func(string, int) int {
				return http.StatusTooManyRequests
			}})
			clock := newFakeClock()
			const senders = 4
			sleeping := make(chan time.Duration, senders)
			o := ClientOptions{DownAfter: 300 * time.Millisecond, Now: clock.now, MaxAttempts: 100}
			if injected {
				o.Sleep = func(ctx context.Context, d time.Duration) error {
					sleeping <- d
					return sleepCtx(ctx, d)
				}
			}
			c := NewClient(o)
			errs := make(chan error, senders)
			for i := range senders {
				go func() {
					_, err := c.Get(t.Context(), srv.hitURL(fmt.Sprintf("?sid=d&typ=t&val=1&eid=w%d&ts=1", i)))
					errs <- err
				}()
			}
			// Every sender has failed once, at the same instant of the fake
			// clock, and waits (with the injected Sleep, provably so).
			if injected {
				for range senders {
					if d := <-sleeping; d != MaxRetryAfter {
						t.Errorf("waiting %v, want Retry-After's %v", d, MaxRetryAfter)
					}
				}
			} else {
				// The server counts a request before the client has read
				// its 429: wait for the client to have started the streak
				// too, or a clock advanced in between would start it late
				// and the last failure below would not be 300ms after it.
				for srv.sim.Stats().Requests < senders || c.health.since.Load() == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			select {
			case err := <-errs:
				t.Fatalf("a sender returned before Convertro was down: %v", err)
			default:
			}

			clock.advance(300 * time.Millisecond)
			res, err := c.Get(t.Context(), srv.hitURL("?sid=d&typ=t&val=1&eid=last&ts=1"))
			if !errors.Is(err, ErrDown) || errors.Is(err, ErrGaveUp) || errors.Is(err, ErrPermanent) || res.Attempts != 1 {
				t.Fatalf("failure 300ms after the first: %+v, %v; want ErrDown after 1 attempt", res, err)
			}
			want := "Convertro down since 2026-03-01T12:00:00Z: every request has failed for 300ms, none accepted; stopping so that the same command resumes later (last failure: 429 Too Many Requests"
			if !strings.Contains(err.Error(), want) {
				t.Errorf("message %q\nwant it to contain %q", err, want)
			}
			for range senders {
				select {
				case err := <-errs:
					if !errors.Is(err, ErrDown) {
						t.Errorf("waiting sender: %v, want ErrDown", err)
					}
				case <-time.After(time.Minute): // a hang guard, not a speed check: the waits are 5 minutes
					t.Fatal("senders still waiting a minute after Convertro was declared down")
				}
			}

			before := srv.sim.Stats().Requests
			res, err = c.Get(t.Context(), srv.hitURL("?sid=d&typ=t&val=1&eid=after&ts=1"))
			if !errors.Is(err, ErrDown) || res.Attempts != 0 {
				t.Errorf("after down: %+v, %v; want ErrDown without an attempt", res, err)
			}
			if n := srv.sim.Stats().Requests; n != before {
				t.Errorf("%d requests sent after down", n-before)
			}
		})
	}
}

// TestClientDownClock: an answer that shows Convertro up (a 2xx, or a
// permanent 4xx) restarts the clock; 5xx, 429 and dropped connections do not.
func TestClientDownClock(t *testing.T) {
	srv := newClientTestServer(t, simulator.Options{Script: func(identity string, _ int) int {
		switch {
		case strings.Contains(identity, "eid=ok"):
			return 0
		case strings.Contains(identity, "eid=bad"):
			return http.StatusBadRequest
		case strings.Contains(identity, "eid=drop"):
			return simulator.StatusDrop
		case strings.Contains(identity, "eid=busy"):
			return http.StatusTooManyRequests
		}
		return http.StatusServiceUnavailable
	}})
	clock := newFakeClock()
	var w waits
	c := NewClient(ClientOptions{DownAfter: 300 * time.Millisecond, Now: clock.now, MaxAttempts: 1, Sleep: w.sleep})
	for i, step := range []struct {
		after time.Duration // on the fake clock, since the previous step
		eid   string
		want  error // nil: delivered
	}{
		{0, "f1", ErrGaveUp}, // the streak starts
		{200 * time.Millisecond, "ok", nil},
		{200 * time.Millisecond, "f2", ErrGaveUp}, // 400ms since f1, but the 2xx restarted the clock
		{200 * time.Millisecond, "bad", ErrPermanent},
		{200 * time.Millisecond, "f3", ErrGaveUp}, // likewise after a 400
		{100 * time.Millisecond, "busy", ErrGaveUp},
		{100 * time.Millisecond, "drop", ErrGaveUp},
		{99 * time.Millisecond, "f4", ErrGaveUp}, // 299ms since f3
		{1 * time.Millisecond, "f5", ErrDown},
		{0, "ok", ErrDown},
	} {
		clock.advance(step.after)
		_, err := c.Get(t.Context(), srv.hitURL(fmt.Sprintf("?sid=d&typ=t&val=1&eid=%s&ts=%d", step.eid, i)))
		if (step.want == nil) != (err == nil) || (step.want != nil && !errors.Is(err, step.want)) {
			t.Fatalf("step %d (%s): %v, want %v", i, step.eid, err, step.want)
		}
		if step.want != ErrDown && errors.Is(err, ErrDown) {
			t.Fatalf("step %d (%s): %v, want not down", i, step.eid, err)
		}
	}

	// Negative DownAfter: never down.
	c = NewClient(ClientOptions{DownAfter: -1, Now: clock.now, MaxAttempts: 1, Sleep: w.sleep})
	for i := range 3 {
		_, err := c.Get(t.Context(), srv.hitURL(fmt.Sprintf("?sid=d&typ=t&val=1&eid=never&ts=%d", i)))
		if !errors.Is(err, ErrGaveUp) || errors.Is(err, ErrDown) {
			t.Fatalf("%v, want ErrGaveUp with DownAfter < 0", err)
		}
		clock.advance(time.Hour)
	}
}

// BenchmarkThrottleObserve is the throttle's cost per attempt, with every
// sender reporting at once.
func BenchmarkThrottleObserve(b *testing.B) {
	th := newThrottle(0, time.Now, func(float64) {})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			o := outcomeOK
			if i++; i%50 == 0 {
				o = outcome429
			}
			th.observe(o)
		}
	})
}

// A steady background of 429s that does not grow with the rate (2% of every
// window, as the soak's faulty simulator sends) is not load: the rate must
// not ratchet down under it, and a small window with a single 429 (5% of 20
// answers, by chance) cuts nothing.
func TestThrottleBackground429sDoNotRatchetDown(t *testing.T) {
	r := newThrottleRig(1000)
	r.window(500*time.Millisecond, 19, 1) // one 429 in 20: chance, not load
	if got := r.rate(); got != 1000 {
		t.Fatalf("one 429 in a 20-answer window cut the rate to %v", got)
	}
	r.th.setCeiling(0)                      // unlimited, as the job runs by default
	r.window(500*time.Millisecond, 180, 20) // a real excess: 10%
	cut := r.rate()
	if cut == 0 || cut >= 400 {
		t.Fatalf("10%% 429s left the rate at %v, want a cut below the 360/s accepted", cut)
	}
	best := cut
	for range 40 { // then 2% for 20 s, at whatever rate the limit allows
		n := int(r.rate() / 2)
		if r.rate() == 0 {
			n = 400
		}
		r.window(500*time.Millisecond, n-n/50, n/50)
		if r.rate() == 0 {
			break
		}
		best = max(best, r.rate())
	}
	if got := r.rate(); got != 0 && got <= best*0.99 {
		t.Errorf("after 20 s of 2%% background 429s the rate fell to %v (best %v)", got, best)
	}
	if got := r.rate(); got != 0 && got < 400 {
		t.Errorf("after 20 s of 2%% background 429s the rate is %v, want it back above the 360/s it was cut from", got)
	}
}
