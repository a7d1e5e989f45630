package pipeline

import (
	"sync/atomic"
	"time"
)

// Progress is how far a run is, as Deps.OnProgress receives it: every
// Config.ProgressInterval while the run goes, and once at its end with
// Final set. How it is shown (a line redrawn on a terminal, a log line) is
// the caller's business.
type Progress struct {
	Done     int64         // rows handled, by this run and the runs before it
	Total    int64         // rows in the shard's plan
	Rows     int64         // rows handled by this run
	Requests int64         // requests this run handled (sent or dead-lettered)
	Elapsed  time.Duration // since this run started
	Final    bool
}

// Percent is the share of the plan's rows handled.
func (p Progress) Percent() float64 {
	if p.Total <= 0 {
		return 0
	}
	return 100 * float64(p.Done) / float64(p.Total)
}

// RequestsPerSecond is this run's rate.
func (p Progress) RequestsPerSecond() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Requests) / p.Elapsed.Seconds()
}

// ETA is the time left at this run's row rate, rounded to the second, or -1
// before the first row.
func (p Progress) ETA() time.Duration {
	if p.Rows <= 0 || p.Elapsed <= 0 {
		return -1
	}
	perRow := p.Elapsed.Seconds() / float64(p.Rows)
	return time.Duration(float64(p.Total-p.Done) * perRow * float64(time.Second)).Round(time.Second)
}

// progress counts what a run handled. The stages only add to two atomic
// counters; one goroutine of its own hands a Progress to report every
// interval, and stop hands the last one.
type progress struct {
	report func(Progress) // nil: counting only
	every  time.Duration
	now    func() time.Time

	before     int64        // rows done before this run
	total      atomic.Int64 // rows in the plan, which grows while planning goes on
	rows, reqs atomic.Int64
	began      time.Time
	quit, done chan struct{}
}

func newProgress(report func(Progress), now func() time.Time, every time.Duration, total, before int64) *progress {
	p := &progress{report: report, now: now, every: every, before: before}
	p.total.Store(total)
	return p
}

// grow adds rows planned while the run goes to the total.
func (p *progress) grow(rows int64) { p.total.Add(rows) }

func (p *progress) add(rows, reqs int64) {
	p.rows.Add(rows)
	p.reqs.Add(reqs)
}

func (p *progress) start() {
	p.began = p.now()
	if p.report == nil {
		return
	}
	p.quit, p.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(p.done)
		t := time.NewTicker(p.every)
		defer t.Stop()
		for {
			select {
			case <-p.quit:
				return
			case <-t.C:
				p.report(p.at(p.now(), false))
			}
		}
	}()
}

func (p *progress) stop() {
	if p.report == nil {
		return
	}
	close(p.quit)
	<-p.done
	p.report(p.at(p.now(), true))
}

func (p *progress) at(now time.Time, final bool) Progress {
	rows := p.rows.Load()
	return Progress{Done: p.before + rows, Total: p.total.Load(), Rows: rows, Requests: p.reqs.Load(),
		Elapsed: now.Sub(p.began), Final: final}
}
