package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/convertro-etl/convertro-etl/internal/segment"
	"github.com/convertro-etl/convertro-etl/objstore"
)

// The live engine: feeder → decode workers (with the transform) → senders →
// checkpointer, for a run that delivers.

// rowState follows one row with requests until all of them are handled.
// The decode worker creates it; after that only the checkpointer touches it.
type rowState struct {
	unit    int
	row     int64
	letter  int // in a replay: the dead letter it sends again
	msgID   string
	left    int   // requests not yet acked or dead-lettered
	permits int64 // window permits the row holds until committed
	tally   rowTally
}

type request struct {
	row *rowState
	url string
}

type ack struct {
	req request
	out Outcome
	// sent and answered order the request's start and its answer among
	// those of all senders (one counter): the misconfiguration guard tells
	// a request sent after a refusal came back from one in flight beside it.
	sent, answered int64
}

type skipRow struct {
	row    int64
	reason string
}

type skipBatch struct {
	unit int
	rows []skipRow
	// bad, when set, sets the unit's object aside with this reason
	// (a Decoder error wrapping ErrSkipObject).
	bad string
}

type liveRun struct {
	cfg  Config
	deps Deps
	m    *Manifest // owned by the checkpointer once the stages start
	// view is the plan's objects and units for the feeder and the
	// decoders: a copy of the manifest's, extended in step with it when a
	// Planner adds a segment.
	view *planView
	// settled marks the units done or retired before this run, and begun
	// holds a copy of the progress of those it had begun: read-only, so
	// that the decoders skip the rows done without reading the manifest,
	// which the checkpointer changes. Units added since have neither.
	settled []bool
	begun   map[int]*UnitProgress
	bad     badObjects // objects set aside, by index
	window  *semaphore.Weighted
	// windowWaits counts the decoders waiting for window permits: the
	// checkpointer never defers a commit they wait for (endingSoon).
	windowWaits atomic.Int64
	// windowHeld is the permits taken and not yet given back, and
	// windowRows the rows that hold them and are not yet done: from them
	// the checkpointer tells whether the rows still to decode fit in what
	// is free, or need a commit before the run's end (endingSoon).
	windowHeld, windowRows atomic.Int64
	prog                   *progress

	budget *budget // requests per UTC day, and the daily cap
	// capped is set when a row did not fit in the day's budget: the feeder
	// stops and the decoders pass over the units still handed to them.
	capped atomic.Bool
	// events numbers the senders' requests and answers (ack.sent, ack.answered).
	events atomic.Int64
	// activeFrom is when the run's active time not yet in the manifest began.
	activeFrom time.Time
	// attempted counts the requests handed to Convertro by this run, and
	// completedReqs (the checkpointer's) those whose rows it marked done: the
	// difference at the end is what a resume sends again.
	attempted     atomic.Int64
	completedReqs int64

	// replay, when set, makes the requests dead letters sent again instead
	// of decoded rows (replay.go): no feeder nor decoders, no window.
	replay *replaying

	// segs carries the segments a Planner adds to the checkpointer, which
	// appends them to the manifest before the feeder sees them.
	segs   chan planSegment
	unitCh chan int
	reqs   chan request
	skips  chan skipBatch
	acks   chan ack
}

func runLive(ctx context.Context, cfg Config, deps Deps) (*Report, error) {
	started := deps.Now()
	// A manifest left "running" with work to do was not finished by its run:
	// that process was killed, with up to a window of requests sent whose
	// rows it had not committed. A clean stop committed them, and says in
	// MaybeRepeated what it left in flight.
	killed := deps.Previous != nil && !cfg.Fresh && deps.Previous.Status == StatusRunning && unfinishedLive(deps.Previous) > 0
	m, done, err := prepareManifest(cfg, deps)
	if err != nil {
		return nil, err
	}
	if done {
		// A finished job that the listing gives nothing new does nothing.
		deps.Logger.Info("job already finished, nothing new in its range; nothing to do", "job", m.Job.Description, "shard", m.Shard.String())
		rep := buildReport(m, cfg, started, deps.Now(), m.Counts, deps.State)
		writeMissingReport(ctx, deps, cfg, rep)
		if n := setAside(m); n > 0 {
			// Still incomplete: the objects set aside are unchanged in the
			// listing. Replacing them makes the next run read them.
			return rep, fmt.Errorf("run shard %s: finished earlier with %d objects set aside, unchanged since: %w",
				m.Shard, n, ErrIncomplete)
		}
		return rep, nil
	}
	c := deps.Checkpoint
	if killed {
		m.MaybeRepeated += int64(m.Window)
	}
	if err := c.Begin(ctx, m); err != nil {
		if killed {
			m.MaybeRepeated -= int64(m.Window)
		}
		return nil, err
	}
	m = c.Manifest()
	startCounts := cloneCounts(m.Counts)
	m.DailyCap = cfg.MaxRequestsPerDay

	r := &liveRun{cfg: cfg, deps: deps, m: m, window: semaphore.NewWeighted(int64(cfg.Window)),
		budget: newBudget(cfg.MaxRequestsPerDay, deps.Now, m.DailyRequests), activeFrom: started}
	objs := objectsOf(m.Objects)
	for i, o := range objs {
		if o.Skipped != "" {
			r.bad.add(i)
		}
	}
	r.view = newPlanView(objs, m.planUnits(), deps.Planner == nil)
	r.settled = make([]bool, len(m.Units))
	r.begun = map[int]*UnitProgress{}
	var total int64
	for i := range m.Units {
		u := &m.Units[i]
		if u.Rows == 0 {
			u.Done = true
		}
		switch {
		case u.Done || u.Retired:
			r.settled[i] = true
		case u.Watermark > 0 || len(u.Above) > 0:
			c := *u
			c.Above = slices.Clone(u.Above)
			r.begun[i] = &c
		}
		total += u.Rows
	}
	r.prog = newProgress(deps.OnProgress, deps.Now, cfg.ProgressInterval, total, markedRows(m.Units))
	r.prog.start()

	err = r.stages(ctx)
	r.prog.stop()

	stopped := err != nil && ctx.Err() != nil &&
		(errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))
	status := StatusFinished
	switch {
	case stopped:
		status, err = StatusStopped, fmt.Errorf("run shard %s: %w", m.Shard, ErrStopped)
	case err != nil:
		status = StatusFailed
	case r.capped.Load():
		day, sent, need := r.budget.refused()
		status, err = StatusStopped, fmt.Errorf("run shard %s: %d requests queued on %s (UTC), the next row would pass the cap of %d: %w",
			m.Shard, sent, day, cfg.MaxRequestsPerDay, ErrCapReached)
		if need > cfg.MaxRequestsPerDay {
			// No day could ever take it: waiting would not help.
			status, err = StatusFailed, fmt.Errorf("run shard %s: a row needs %d requests, more than the whole daily cap of %d: raise the cap",
				m.Shard, need, cfg.MaxRequestsPerDay)
		}
	default:
		if cerr := checkCounts(m.Counts, m.marked()); cerr != nil {
			status, err = StatusFailed, cerr
		} else if n := unfinishedLive(m); n > 0 {
			status, err = StatusFailed, fmt.Errorf("run shard %s: %d units unfinished after all stages ended: %w", m.Shard, n, ErrCountsMismatch)
		}
	}
	var leftInFlight int64
	if !errors.Is(err, ErrLeaseLost) {
		// The run is over, cancelled or not: the last progress must still
		// reach the state.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.FinalCommitTimeout)
		r.syncBudget()
		// Requests sent whose rows are not done are sent again by the
		// next run: that, not a whole window, is what this stop adds to
		// the repeat bound.
		leftInFlight = max(r.attempted.Load()-r.completedReqs, 0)
		m.MaybeRepeated += leftInFlight
		ferr := r.flushDeadLetters(fctx)
		if ferr == nil {
			ferr = c.Finish(fctx, status)
		}
		cancel()
		if ferr != nil {
			err = errors.Join(err, ferr)
		}
	}
	rep := buildReport(m, cfg, started, deps.Now(), startCounts, deps.State)
	if deps.RateHistory != nil {
		rep.RateHistory = deps.RateHistory()
	}
	rep.Status = status
	rep.RequestsAttempted, rep.LeftInFlight = r.attempted.Load(), leftInFlight
	if err != nil {
		rep.Error = err.Error()
	}
	if !errors.Is(err, ErrLeaseLost) {
		r.writeReport(ctx, rep)
	}
	// Incomplete is about this cycle of a recurring job: rows dead-lettered
	// since it last finished, and objects set aside that are still listed.
	if dead, aside := m.Counts.RowsDeadLettered-m.CycleStart.RowsDeadLettered, setAside(m); err == nil && (dead > 0 || aside > 0) {
		err = fmt.Errorf("run shard %s: %d rows dead-lettered, %d objects set aside: %w",
			m.Shard, dead, aside, ErrIncomplete)
	}
	return rep, err
}

func (r *liveRun) writeReport(ctx context.Context, rep *Report) {
	if r.deps.State == nil {
		return
	}
	data, err := rep.JSON()
	if err == nil {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.FinalCommitTimeout)
		_, err = r.deps.State.Write(wctx, ReportName(r.cfg.Shard), data, objstore.Overwrite)
		cancel()
	}
	if err != nil {
		// The manifest, not the report, is the record of progress: a missing
		// report does not undo finished work.
		r.deps.Logger.Warn("write report", "uri", r.deps.State.URI(ReportName(r.cfg.Shard)), "err", err)
	}
}

// acquireWindow takes a row's n window permits, counted in windowWaits
// while it has to wait for them.
func (r *liveRun) acquireWindow(ctx context.Context, n int64) error {
	if !r.window.TryAcquire(n) {
		r.windowWaits.Add(1)
		err := r.window.Acquire(ctx, n)
		r.windowWaits.Add(-1)
		if err != nil {
			return err
		}
	}
	r.windowHeld.Add(n)
	r.windowRows.Add(1)
	return nil
}

// releaseWindow gives back n permits: those of the rows a commit recorded,
// or of a row not sent after all.
func (r *liveRun) releaseWindow(n int64) {
	r.windowHeld.Add(-n)
	r.window.Release(n)
}

// stages runs feeder → decoders (with the transform) → senders →
// checkpointer in one errgroup: the first error cancels every stage.
func (r *liveRun) stages(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	r.reqs = make(chan request, r.cfg.Concurrency)
	r.acks = make(chan ack, r.cfg.Concurrency)
	r.segs = make(chan planSegment)
	if r.replay != nil {
		g.Go(func() error {
			defer close(r.reqs)
			return r.replay.feed(ctx, r.reqs)
		})
	} else {
		r.decodeStages(ctx, g)
	}
	var senders sync.WaitGroup
	for range r.cfg.Concurrency {
		senders.Add(1)
		g.Go(func() error {
			defer senders.Done()
			return r.sender(ctx)
		})
	}
	g.Go(func() error {
		senders.Wait()
		close(r.acks)
		return nil
	})
	g.Go(func() error {
		k := &checkpointer{r: r, c: r.deps.Checkpoint, m: r.m, last: r.deps.Now()}
		return k.loop(ctx)
	})
	return g.Wait()
}

// decodeStages starts the feeder and the decode workers, which feed the
// senders the requests of the rows.
func (r *liveRun) decodeStages(ctx context.Context, g *errgroup.Group) {
	r.unitCh = make(chan int)
	r.skips = make(chan skipBatch, r.cfg.Decoders)
	if r.deps.Planner != nil {
		g.Go(func() error {
			if err := r.deps.Planner(ctx, func(objs []Object) error { return r.addSegment(ctx, objs) }); err != nil {
				return fmt.Errorf("plan shard %s: %w", r.cfg.Shard, err)
			}
			r.view.finish()
			return nil
		})
	}
	g.Go(func() error { // feeder, in plan order, while the plan grows
		defer close(r.unitCh)
		for i := 0; ; i++ {
			ok, err := r.view.wait(ctx, i)
			if err != nil || !ok {
				return err
			}
			if r.capped.Load() {
				// The day's budget is spent: no more units are handed
				// over, but planning goes on to its end, so that the
				// manifest holds the whole job (status reads its totals
				// from it, and the next run starts from it).
				_, err := r.view.wait(ctx, math.MaxInt)
				return err
			}
			u, _ := r.view.at(i)
			if i < len(r.settled) && r.settled[i] || u.Rows == 0 || r.bad.has(u.Object) {
				continue
			}
			if err := put(ctx, r.unitCh, i); err != nil {
				return err
			}
		}
	})
	var decoders sync.WaitGroup
	for range r.cfg.Decoders {
		decoders.Add(1)
		g.Go(func() error {
			defer decoders.Done()
			return r.decodeWorker(ctx)
		})
	}
	g.Go(func() error {
		decoders.Wait()
		close(r.reqs)
		close(r.skips)
		return nil
	})
}

func (r *liveRun) decodeWorker(ctx context.Context) error {
	tf := r.deps.NewTransform()
	var urls []string
	emit := func(u []byte) {
		if lim := r.cfg.MaxURLBytes; lim > 0 && len(u) > lim {
			u = u[:lim+1] // never sent: its start is all that is kept
		}
		urls = append(urls, string(u))
	}
	for ui := range r.unitCh {
		if r.capped.Load() {
			continue // drained, not read: the feeder stops after the cap
		}
		u, obj := r.view.at(ui)
		// A unit handed over is read even if another unit of its object
		// failed meanwhile (the feeder stops handing them over): the units
		// dispatched before a failure are then always read.
		resume := r.begun[ui] // nil: nothing done before this run
		if resume == nil {
			resume = &UnitProgress{}
		}
		var seen int64
		err := r.deps.Decoder.Decode(ctx, obj, u.RowGroup, func(first int64, batch []segment.Message, skip []string) error {
			var skipped []skipRow
			for i := range batch {
				row := first + int64(i)
				seen++
				if resume.IsDone(row) {
					continue
				}
				urls = urls[:0]
				var reason string
				if skip != nil {
					reason = skip[i]
				}
				if reason == "" {
					reason = tf(&batch[i], emit)
				}
				if reason == "" && len(urls) == 0 {
					reason = SkipNoRequests
				}
				if reason != "" {
					skipped = append(skipped, skipRow{row, reason})
					continue
				}
				rs := &rowState{unit: ui, row: row, msgID: cutString(batch[i].MessageID, maxMessageID), left: len(urls),
					permits: int64(min(len(urls), r.cfg.Window))}
				// The window is taken before the requests enter the channel,
				// not by the senders: a row's permits are then all held
				// before any of its requests is sent, so the window can never
				// fill with half-sent rows that wait for permits themselves.
				if err := r.acquireWindow(ctx, rs.permits); err != nil {
					return err
				}
				if !r.budget.take(int64(len(urls))) {
					// The rows before it go on as usual; this one and the
					// rest wait for the next day's budget.
					r.windowRows.Add(-1)
					r.releaseWindow(rs.permits)
					if len(skipped) > 0 {
						if err := put(ctx, r.skips, skipBatch{unit: ui, rows: skipped}); err != nil {
							return err
						}
					}
					return errOverBudget
				}
				for _, url := range urls {
					if err := put(ctx, r.reqs, request{rs, url}); err != nil {
						return err
					}
				}
			}
			if len(skipped) > 0 {
				return put(ctx, r.skips, skipBatch{unit: ui, rows: skipped})
			}
			return nil
		})
		if errors.Is(err, errOverBudget) {
			r.capped.Store(true)
			continue
		}
		switch aside, first, err := r.bad.settle(ctx, err, obj, u, seen, r.deps.Logger); {
		case aside:
			// The rows handed on before the error complete as usual; the
			// rest of the object is not read.
			if first {
				if err := put(ctx, r.skips, skipBatch{unit: ui, bad: err.Error()}); err != nil {
					return err
				}
			}
		case err != nil:
			return err
		}
	}
	return nil
}

func (r *liveRun) sender(ctx context.Context) error {
	for req := range r.reqs {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx) // abandoned: resent on resume
		}
		// Counted whether sent or refused unsent, as the checkpointer counts
		// the rows' requests when they complete.
		r.attempted.Add(1)
		sent := r.events.Add(1)
		var out Outcome
		if lim := r.cfg.MaxURLBytes; lim > 0 && len(req.url) > lim {
			out = Outcome{Permanent: true, Err: fmt.Errorf("over %d bytes: %w", lim, ErrURLTooLong)}
		} else {
			out = r.deps.Sender.Send(ctx, req.url)
		}
		answered := r.events.Add(1)
		if out.Err != nil && !out.Permanent {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return fmt.Errorf("send %s: %w", r.origin(req.row), out.Err)
		}
		if err := put(ctx, r.acks, ack{req, out, sent, answered}); err != nil {
			return err
		}
	}
	return nil
}

// origin names the row (or in a replay the dead letter) of a request, for
// errors.
func (r *liveRun) origin(rs *rowState) string {
	if r.replay != nil {
		return r.replay.origin(rs)
	}
	u, obj := r.view.at(rs.unit)
	return fmt.Sprintf("%s row group %d row %d", obj.URI, u.RowGroup, rs.row)
}

// flushDeadLetters stores the dead letters written since the last commit and
// records their file in the manifest that the commit is about to write.
func (r *liveRun) flushDeadLetters(ctx context.Context) error {
	f, err := r.deps.DeadLetters.Flush(ctx)
	if err != nil {
		return fmt.Errorf("flush dead letters: %w", err)
	}
	if f != "" {
		r.m.DeadLetterFiles = append(r.m.DeadLetterFiles, f)
	}
	return nil
}

// syncBudget copies the daily request counts and the active time into the
// manifest, before each commit; only the manifest's owner calls it.
func (r *liveRun) syncBudget() {
	r.m.DailyRequests = r.budget.snapshot()
	now := r.deps.Now()
	if d := now.Sub(r.activeFrom); d > 0 {
		r.m.ActiveSeconds += d.Seconds()
	}
	r.activeFrom = now
}

// addSegment stores the part of the plan that holds objs and hands the
// segment to the checkpointer, which appends it to the manifest (named by
// the next commit) and then to the view the feeder reads. The part is
// stored first: a manifest never names a part that is not.
func (r *liveRun) addSegment(ctx context.Context, objs []Object) error {
	if len(objs) == 0 {
		return nil
	}
	baseObj, baseUnit := r.view.size()
	s := newSegment(objs, baseObj, r.cfg.Shard)
	data, name, err := encodePart(r.cfg.Shard, baseObj, baseUnit, plannedObjects(objs), unitsProgress(s.units))
	if err != nil {
		return fmt.Errorf("encode plan part of shard %s: %w", r.cfg.Shard, err)
	}
	wctx, cancel := context.WithTimeout(ctx, r.cfg.LeaseTTL)
	err = storePart(wctx, r.deps.Checkpoint.st, name, data)
	cancel()
	if err != nil {
		return err
	}
	s.part = name
	if err := put(ctx, r.segs, s); err != nil {
		return err
	}
	select {
	case <-s.accepted:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
