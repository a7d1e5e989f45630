package convertro

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultDownAfter is ClientOptions.DownAfter when left zero.
const DefaultDownAfter = 5 * time.Minute

// ErrDown: Convertro failed every request for ClientOptions.DownAfter, so the
// Client stopped; every Get returns it from then on. Nothing is wrong with the
// rows: the run should stop and be resumed later.
var ErrDown = errors.New("Convertro down")

// The adaptive throttle's tuning. Windows are short so that the rate follows
// Convertro within seconds; they also need enough answers for a share to mean
// something, and a window that spans an idle pause says nothing about the rate.
const (
	throttleWindow     = 500 * time.Millisecond // shortest window evaluated
	throttleMinAnswers = 20                     // answers a window needs, unless it reaches throttleMaxWindow
	throttleMaxWindow  = 5 * time.Second        // a slow sender's window ends here, whatever its answers
	throttleStale      = 2 * throttleMaxWindow  // an answer after this long opens a new window
	throttleMaxShare   = 0.05                   // a larger share of 429s cuts the rate
	throttleMinTooMany = 5                      // ...if the window holds at least this many 429s
	throttleQuiet      = throttleMaxShare / 2   // a share of 429s at most this raises it
	throttleCut        = 0.7                    // multiplicative decrease
	throttleRaise      = 0.05                   // additive increase: this share of the rate...
	throttleMinRaise   = 1.0                    // ...or this many requests/s, whichever is larger
	throttleProbe      = 0.01                   // the share raised by above the knee
	throttleFloor      = 1.0                    // requests/s the rate is never cut below
	throttleUnlimit    = 1.5                    // unlimited again above this multiple of the knee
	maxRateHistory     = 600                    // points kept by RateHistory: the latest ones
)

// RatePoint is one change of the Client's rate limit, for reports.
type RatePoint struct {
	Time time.Time `json:"time"`
	// Rate is the limit from Time on, in requests per second; 0 is unlimited.
	Rate float64 `json:"rate"`
	// Share429 is the share (0–1) of answers that were 429 in the window that
	// led to the change; 0 for a change made by SetRate.
	Share429 float64 `json:"share_429"`
	// Accepted is the rate of 2xx answers per second in that window.
	Accepted float64 `json:"accepted"`
}

// outcome is what one attempt told the throttle.
type outcome uint8

const (
	outcomeOK    outcome = iota // 2xx
	outcome429                  // 429 Too Many Requests
	outcomeOther                // any other answer or failure
)

// throttle is an AIMD controller of the Client's shared rate limit. It
// counts the answers of a short window and, at the window's end, cuts the
// rate by throttleCut when more than throttleMaxShare of them were 429s, or
// raises it by a small step when they were well under that (throttleQuiet),
// up to the configured ceiling.
//
// Convertro's 429s are the only load signal: 5xx and timeouts are left to
// backoff, since a failing server is not necessarily a busy one.
//
// observe is O(1) with a mutex held over a few integer updates; the
// limiter is updated under the same mutex (its own lock is never held while
// calling us), so changes reach the limiter in the order they were decided.
type throttle struct {
	now   func() time.Time
	apply func(rps float64) // sets the limiter; 0 = unlimited

	mu      sync.Mutex
	ceiling float64 // configured rate (ClientOptions.Rate or SetRate); 0 = none
	rate    float64 // current limit; 0 = unlimited
	// knee is what Convertro accepted when it last pushed back: the accepted
	// rate of the window that caused the last cut (not of the window before,
	// which a server that absorbs bursts may have let exceed its rate). Above
	// the knee the rate rises in smaller steps, since such a server shows an
	// excess only after it has built up.
	// Without a ceiling, the limit is lifted once it grows well past the
	// knee without a 429: Convertro then evidently takes more than it did.
	knee float64
	// prevSent and prevAccepted are the answered and accepted rates of the
	// previous window, 0 after an idle gap.
	prevSent, prevAccepted float64
	// The current window: since start, ok 2xx, tooMany 429 and other answers.
	start               time.Time
	ok, tooMany, others int
	hist                []RatePoint // ring of at most maxRateHistory points
	next                int         // oldest point, once hist is full
}

func newThrottle(ceiling float64, now func() time.Time, apply func(float64)) *throttle {
	if ceiling < 0 {
		ceiling = 0
	}
	return &throttle{now: now, apply: apply, ceiling: ceiling, rate: ceiling}
}

// observe counts one attempt's outcome and, at the end of a window, adjusts
// the rate.
func (t *throttle) observe(o outcome) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.start.IsZero() || now.Sub(t.start) > throttleStale {
		t.restart(now)
		t.prevSent, t.prevAccepted = 0, 0
	}
	switch o {
	case outcomeOK:
		t.ok++
	case outcome429:
		t.tooMany++
	default:
		t.others++
	}
	elapsed := now.Sub(t.start)
	n := t.ok + t.tooMany + t.others
	if elapsed < throttleWindow || (n < throttleMinAnswers && elapsed < throttleMaxWindow) {
		return
	}
	t.adjust(now, elapsed.Seconds(), n)
	t.restart(now)
}

func (t *throttle) restart(now time.Time) {
	t.start, t.ok, t.tooMany, t.others = now, 0, 0, 0
}

// adjust decides at the end of a window of secs seconds and n answers.
// Windows restart after every decision, so the rate changes at most once
// per window and each decision sees only answers sent under the rate it
// judges (but for the few that were in flight).
func (t *throttle) adjust(now time.Time, secs float64, n int) {
	accepted := float64(t.ok) / secs
	sent := float64(n) / secs
	share := float64(t.tooMany) / float64(n)
	switch {
	// A server under load answers more 429s the faster it is pushed; one
	// that sheds a steady few (a 2% background of 429s) does so at any rate.
	// So a cut needs a clear excess — over the threshold and more than a
	// couple of 429s, which a 20-answer window reaches by chance — and a
	// window well under the threshold counts as quiet. Requiring windows
	// with no 429 at all would ratchet the rate down under background 429s,
	// since such windows get rarer as the rate rises.
	case share > throttleMaxShare && t.tooMany >= throttleMinTooMany:
		// Cut from the rate actually sent. Unlimited, that is the accepted
		// rate: the attempt rate then counts the 429s themselves. Limited,
		// it is the limit, or the answer rate of this window or the last
		// (the 429s' Retry-After may have idled the senders of this one)
		// when the senders did not use the whole limit.
		// The window that meets the 429s often accepts less than the one
		// before it: every sender answered 429 sits out its Retry-After.
		// The better measure of what Convertro took is the larger of the two.
		t.knee = max(accepted, t.prevAccepted)
		base := t.rate
		if base == 0 {
			base = t.knee
		} else {
			base = min(base, max(sent, t.prevSent))
		}
		t.set(now, max(t.floor(), base*throttleCut), share, accepted)
	case share <= throttleQuiet && t.rate > 0:
		step := throttleRaise
		if t.knee > 0 && t.rate >= t.knee {
			step = throttleProbe
		}
		r := t.rate + max(throttleMinRaise, t.rate*step)
		if t.ceiling > 0 {
			r = min(r, t.ceiling)
		} else if r > t.knee*throttleUnlimit {
			r = 0
		}
		t.set(now, r, share, accepted)
	}
	t.prevSent, t.prevAccepted = sent, accepted
}

// floor is the lowest rate a cut reaches: throttleFloor, or the ceiling if
// that is lower.
func (t *throttle) floor() float64 {
	if t.ceiling > 0 && t.ceiling < throttleFloor {
		return t.ceiling
	}
	return throttleFloor
}

func (t *throttle) set(now time.Time, r, share, accepted float64) {
	if r == t.rate {
		return
	}
	t.rate = r
	t.apply(r)
	p := RatePoint{Time: now, Rate: r, Share429: share, Accepted: accepted}
	if len(t.hist) < maxRateHistory {
		if t.hist == nil {
			t.hist = make([]RatePoint, 0, maxRateHistory)
		}
		t.hist = append(t.hist, p)
		return
	}
	t.hist[t.next] = p
	t.next = (t.next + 1) % maxRateHistory
}

// setCeiling makes rps (0 = unlimited) both the ceiling and the current rate.
func (t *throttle) setCeiling(rps float64) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ceiling = max(0, rps)
	t.restart(now)
	t.set(now, t.ceiling, 0, 0)
	t.apply(t.ceiling) // even when unchanged here, the limiter may have been set elsewhere
}

// history returns the points, oldest first.
func (t *throttle) history() []RatePoint {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]RatePoint, 0, len(t.hist))
	out = append(out, t.hist[t.next:]...)
	return append(out, t.hist[:t.next]...)
}

// health declares Convertro down when every attempt has failed for a while.
// An attempt's failure is a transient one (408, 429, 5xx, timeout,
// connection error); any 2xx or permanent 4xx shows Convertro up and ends
// the streak. Down is final: done is closed and err set, once.
type health struct {
	after time.Duration // < 0: never down
	// since is the Unix nanoseconds of the first failure of the current
	// streak, 0 when the last answer was not a failure. Successes only load
	// it, so that senders do not contend on the cache line.
	since atomic.Int64
	// ctx ends when down is declared; its Done channel wakes every waiting
	// Get, and it can parent an injected Sleep's context.
	ctx     context.Context
	declare context.CancelFunc
	once    sync.Once
	err     error // written before declare, read after <-ctx.Done()
}

func newHealth(after time.Duration) *health {
	ctx, cancel := context.WithCancel(context.Background())
	return &health{after: after, ctx: ctx, declare: cancel}
}

// up records an answer that shows Convertro up.
func (h *health) up() {
	if h.since.Load() != 0 {
		h.since.Store(0)
	}
}

// failed records a transient failure at now and reports whether Convertro
// is (now or already) down.
func (h *health) failed(now time.Time, cause error) bool {
	if h.after < 0 {
		return false
	}
	if h.downErr() != nil {
		return true
	}
	t := now.UnixNano()
	s := h.since.Load()
	if s == 0 {
		if h.since.CompareAndSwap(0, t) {
			return false
		}
		if s = h.since.Load(); s == 0 {
			return false // an answer in between showed Convertro up
		}
	}
	if now.Sub(time.Unix(0, s)) < h.after {
		return false
	}
	h.once.Do(func() {
		h.err = &downError{after: h.after, since: time.Unix(0, s).UTC(), last: cause.Error()}
		h.declare()
	})
	return true
}

// answeredSince reports whether an answer showed Convertro up after t, a
// failure recorded by failed: since was set at t or before, and only up
// clears it. With no streak kept (never down), every answer counts.
func (h *health) answeredSince(t time.Time) bool {
	s := h.since.Load()
	return h.after < 0 || s == 0 || s > t.UnixNano()
}

// downErr returns the error every Get returns once Convertro is down, else nil.
func (h *health) downErr() error {
	select {
	case <-h.ctx.Done():
		return h.err
	default:
		return nil
	}
}

type downError struct {
	after time.Duration
	since time.Time // the first failure after the last answer that showed it up
	last  string
}

func (e *downError) Error() string {
	return "Convertro down since " + e.since.Format(time.RFC3339) + ": every request has failed for " +
		e.after.String() + ", none accepted; stopping so that the same command resumes later (last failure: " + e.last + ")"
}

func (e *downError) Is(target error) bool { return target == ErrDown }
