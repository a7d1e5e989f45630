package simulator

import (
	"net/http"
	"sync"
	"time"
)

// Outage is a Script (Options.Script) that takes Convertro down for Length
// of the clock Now, from the moment the simulator sees request number
// After+1: every attempt in that time is answered 503 or, every other one,
// has its connection dropped. With a fake clock, tests ride out minutes of
// outage in no real time. Safe for concurrent use.
type Outage struct {
	Now    func() time.Time
	After  int64
	Length time.Duration

	mu    sync.Mutex
	seen  int64
	start time.Time
	fails int64
}

// Script is the function to give Options.Script.
func (o *Outage) Script(_ string, attempt int) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.Now()
	if o.seen++; o.seen == o.After+1 {
		o.start = now
	}
	if o.start.IsZero() || !now.Before(o.start.Add(o.Length)) {
		return 0
	}
	o.fails++
	if attempt%2 == 0 {
		return StatusDrop
	}
	return http.StatusServiceUnavailable
}

// Began is when the outage started (zero before it did); Fails how many
// attempts it failed.
func (o *Outage) Began() (time.Time, int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.start, o.fails
}
