package pipeline

import (
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"golang.org/x/term"
)

// progress shows the operator how far the run is. The stages only add to two
// atomic counters; one goroutine of its own draws: on a terminal a single
// line redrawn in place, otherwise a log line every interval.
type progress struct {
	out   io.Writer // nil: counting only
	tty   bool
	log   *slog.Logger
	every time.Duration

	total, before int64 // rows in the plan, rows done before this run
	rows, reqs    atomic.Int64
	began         time.Time
	quit, done    chan struct{}
}

func newProgress(out io.Writer, log *slog.Logger, every time.Duration, total, before int64) *progress {
	p := &progress{out: out, log: log, every: every, total: total, before: before}
	if f, ok := out.(interface{ Fd() uintptr }); ok && term.IsTerminal(int(f.Fd())) {
		p.tty = true
		p.every = 250 * time.Millisecond
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	return p
}

func (p *progress) add(rows, reqs int64) {
	p.rows.Add(rows)
	p.reqs.Add(reqs)
}

func (p *progress) start() {
	p.began = time.Now()
	if p.out == nil {
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
				p.draw(false)
			}
		}
	}()
}

func (p *progress) stop() {
	if p.out == nil {
		return
	}
	close(p.quit)
	<-p.done
	if p.tty {
		p.draw(true)
	}
}

type progressState struct {
	done, total       int64
	percent, reqsPerS float64
	eta               time.Duration // -1 unknown
}

func (p *progress) state(now time.Time) progressState {
	rows, reqs := p.rows.Load(), p.reqs.Load()
	s := progressState{done: p.before + rows, total: p.total, eta: -1}
	if s.total > 0 {
		s.percent = 100 * float64(s.done) / float64(s.total)
	}
	if el := now.Sub(p.began).Seconds(); el > 0 {
		s.reqsPerS = float64(reqs) / el
		if rows > 0 {
			left := float64(s.total - s.done)
			s.eta = time.Duration(left / (float64(rows) / el) * float64(time.Second)).Round(time.Second)
		}
	}
	return s
}

func (p *progress) draw(final bool) {
	s := p.state(time.Now())
	if !p.tty {
		p.log.Info("progress", "rows", s.done, "total", s.total, "percent", fmt.Sprintf("%.1f", s.percent),
			"requests_per_second", fmt.Sprintf("%.0f", s.reqsPerS), "eta", etaString(s.eta))
		return
	}
	// \r and erase-to-end-of-line redraw the one line in place.
	end := ""
	if final {
		end = "\n"
	}
	fmt.Fprintf(p.out, "\r\x1b[Krows %d/%d (%.1f%%)  %.0f req/s  ETA %s%s",
		s.done, s.total, s.percent, s.reqsPerS, etaString(s.eta), end)
}

func etaString(d time.Duration) string {
	if d < 0 {
		return "?"
	}
	return d.String()
}
