package pipeline

import (
	"errors"
	"maps"
	"sync"
	"time"
)

// ErrCapReached: the run stopped because the requests of the current UTC day
// reached Config.MaxRequestsPerDay. The requests handed to the senders were
// all sent and committed (status "stopped"); the same command continues
// where it stopped once the day has budget left, which is the next UTC day.
var ErrCapReached = errors.New("daily request cap reached: run again later (the next UTC day) to continue")

// errOverBudget ends a decode when a row's requests do not fit in the day's
// budget; the run then drains and returns ErrCapReached.
var errOverBudget = errors.New("row over the daily budget")

// budget counts the requests queued for sending per UTC day and, with a cap,
// refuses those that would take the day over it.
//
// A request is counted once, when its row's requests are queued for the
// senders, whatever number of attempts the Sender then makes: retries are
// attempts of the same request, not new ones. A request queued again by a
// later run (after a kill or a stop abandoned it) counts again, on the day it
// is queued again. A row's requests are taken all or none, so that a row is
// never half sent at the cap (its resume would repeat the half): the cap is
// never exceeded, and a run may stop with fewer requests left in the day than
// the next row needs. After the first refusal the budget refuses everything,
// so that the run stops at one row rather than slipping smaller rows past it.
type budget struct {
	cap int64 // 0 = no cap, count only
	now func() time.Time

	mu     sync.Mutex
	daily  map[string]int64 // requests by UTC day, YYYY-MM-DD
	closed bool
	// refusedDay and refusedNeed are the day of the first refusal and the
	// requests of the row refused (for the message).
	refusedDay  string
	refusedNeed int64
}

func newBudget(limit int64, now func() time.Time, daily map[string]int64) *budget {
	d := maps.Clone(daily)
	if d == nil {
		d = map[string]int64{}
	}
	return &budget{cap: limit, now: now, daily: d}
}

// take counts n requests for today and reports whether they fit under the cap.
func (b *budget) take(n int64) bool {
	day := b.now().UTC().Format(time.DateOnly)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	if b.cap > 0 && b.daily[day]+n > b.cap {
		b.closed, b.refusedDay, b.refusedNeed = true, day, n
		return false
	}
	b.daily[day] += n
	return true
}

// refused returns the day of the refusal that closed the budget, the
// requests counted that day and the requests of the row refused.
func (b *budget) refused() (day string, sent, need int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.refusedDay, b.daily[b.refusedDay], b.refusedNeed
}

// snapshot is the per-day counts, for the manifest.
func (b *budget) snapshot() map[string]int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	// Only the current day is ever read again: days older than a month are
	// dropped, so a job that runs every night for years keeps a month.
	oldest := b.now().UTC().AddDate(0, 0, -dailyKept).Format(time.DateOnly)
	maps.DeleteFunc(b.daily, func(day string, _ int64) bool { return day < oldest })
	if len(b.daily) == 0 {
		return nil
	}
	return maps.Clone(b.daily)
}

// dailyKept is how many days of request counts the manifest keeps.
const dailyKept = 31
