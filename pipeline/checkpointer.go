package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"
)

// The checkpointer: the one goroutine that owns the manifest during a live
// run, applies acknowledgements, releases the window and commits.

// checkpointer is the one goroutine that owns the manifest: it marks rows
// done, counts them, writes dead letters, commits, and releases the window.
type checkpointer struct {
	r       *liveRun
	c       *Checkpoint
	m       *Manifest
	last    time.Time // last commit
	commits int       // made by this run
	dirty   bool
	permits int64 // held by rows marked since the last commit

	// The misconfiguration guard (see ack): the current streak of identical
	// refusals, at most misconfigRequests, and the window permits its rows
	// hold, each row counted once.
	guardHeld    []ack
	guardPermits int64
	guardFirst   int64 // the earliest ack.answered held
}

func (k *checkpointer) loop(ctx context.Context) error {
	ticker := time.NewTicker(k.r.cfg.CommitInterval)
	defer ticker.Stop()
	skips, acks := k.r.skips, k.r.acks
	half := int64(k.r.cfg.Window+1) / 2
	// Commits are at least CommitInterval apart: one write a second to one
	// object name is what GCS allows, and objstore paces every backend so.
	// A half-full window that comes sooner waits for soon.
	var soon <-chan time.Time
	var soonAfter int // the commits made when soon was armed
	// The loop ends when both inputs close, not on ctx: what the stages
	// finish while stopping is still marked for the final commit.
	for skips != nil || acks != nil {
		select {
		case s := <-k.r.segs:
			s.appendTo(k.m)
			k.r.prog.grow(s.rows)
			k.r.view.add(s.objs, s.units)
			k.dirty = true
			close(s.accepted)
		case b, ok := <-skips:
			if !ok {
				skips = nil
				continue
			}
			if b.bad != "" {
				k.setAside(b.unit, b.bad)
			}
			for _, s := range b.rows {
				if err := k.complete(ctx, b.unit, s.row, s.reason, rowTally{}); err != nil {
					return err
				}
			}
		case a, ok := <-acks:
			if !ok {
				acks = nil
				continue
			}
			if err := k.ack(ctx, a); err != nil {
				return err
			}
			// Decoders wait for permits when the window is full; committing
			// at half gives permits back before they have to.
			if k.permits >= half && ctx.Err() == nil {
				now := k.r.deps.Now()
				if !k.paced(now) {
					if soon == nil {
						soon = time.After(k.r.cfg.CommitInterval - now.Sub(k.last))
						soonAfter = k.commits
					}
					continue
				}
				if k.endingSoon(now) {
					continue
				}
				if err := k.commit(ctx); err != nil {
					return err
				}
			}
		case <-soon:
			soon = nil
			// Armed for when the pacing allows a commit; the ticker may
			// have made one since, due at the same moment. Committing again
			// at once would hold this loop for a second in objstore's
			// pacing, and with it every sender, whose acknowledgements it
			// takes.
			if k.commits == soonAfter && k.dirty && ctx.Err() == nil && !k.endingSoon(k.r.deps.Now()) {
				if err := k.commit(ctx); err != nil {
					return err
				}
			}
		case <-ticker.C:
			now := k.r.deps.Now()
			renew := now.Sub(k.last) >= k.r.cfg.LeaseTTL/3
			if ctx.Err() == nil && (renew && k.paced(now) || k.dirty && k.due(now)) {
				if err := k.commit(ctx); err != nil {
					return err
				}
			}
		}
	}
	if ctx.Err() == nil {
		// The run ended inside a streak shorter than misconfigRequests: too
		// short to call it a misconfiguration; they are ordinary dead letters.
		return k.releaseGuard(ctx)
	}
	return nil
}

// ack applies one outcome, except that a streak of permanent refusals that
// all read the same (status and body start), with nothing accepted in
// between, is held back: when it reaches misconfigRequests (or the window)
// it is a wrong setting, not bad rows, and the run stops with
// ErrMisconfigured without dead-lettering them. This holds at any point of
// a run, so a setting that goes wrong mid-run (an account disabled, an
// endpoint moved) stops it too. Any other outcome of a request sent after
// the streak's first refusal came back ends the streak: the held refusals
// become ordinary dead letters. An outcome of a request sent before that was
// in flight beside the streak's start and says nothing about it: it is
// applied, and the streak kept.
//
// A replay has no guard: a dead letter refused again stays one, as it was
// before the replay.
func (k *checkpointer) ack(ctx context.Context, a ack) error {
	if k.r.replay != nil {
		return k.apply(ctx, a)
	}
	held := len(k.guardHeld) > 0
	if held && refusal(a.out) && sameRefusal(k.guardHeld[0].out, a.out) {
		return k.hold(ctx, a)
	}
	if held && a.sent > k.guardFirst {
		if err := k.releaseGuard(ctx); err != nil {
			return err
		}
		held = false
	}
	if !held && refusal(a.out) {
		return k.hold(ctx, a)
	}
	return k.apply(ctx, a)
}

// hold adds a refusal to the streak, and stops the run when the streak is
// long enough.
func (k *checkpointer) hold(ctx context.Context, a ack) error {
	if len(k.guardHeld) == 0 || a.answered < k.guardFirst {
		k.guardFirst = a.answered
	}
	k.guardHeld = append(k.guardHeld, a)
	if !slices.ContainsFunc(k.guardHeld[:len(k.guardHeld)-1], func(h ack) bool { return h.req.row == a.req.row }) {
		k.guardPermits += a.req.row.permits
	}
	if n := len(k.guardHeld); n >= min(misconfigRequests, k.r.cfg.Window) {
		body := a.out.Body
		if len(body) > 200 {
			body = body[:200]
		}
		return fmt.Errorf("send: %d requests in a row were refused with status %d (%q), none accepted in between: "+
			"a setting is wrong (client name, site id, endpoint), not the rows, so none was dead-lettered (last error: %v): %w",
			n, a.out.Status, body, a.out.Err, ErrMisconfigured)
	}
	if k.guardPermits >= int64(k.r.cfg.Window) {
		// The held rows hold their window permits until they complete; were
		// they to hold all of them, no request could be sent that ends the
		// streak either way. (Only rows of several requests, some of them
		// applied before the streak, get here before the stop above.)
		return k.releaseGuard(ctx)
	}
	return nil
}

// refusal reports an outcome the misconfiguration guard counts: a
// permanent refusal with a 3xx or 4xx status.
func refusal(o Outcome) bool {
	return o.Permanent && o.Status >= 300 && o.Status < 500
}

// guardBody is how much of two refusals' bodies must match for them to
// count as the same refusal: enough for the reason, not the details a
// server may append about the row.
const guardBody = 64

func sameRefusal(a, b Outcome) bool {
	return a.Status == b.Status && bytes.Equal(a.Body[:min(len(a.Body), guardBody)], b.Body[:min(len(b.Body), guardBody)])
}

// releaseGuard applies the held streak: its outcomes are ordinary dead letters.
func (k *checkpointer) releaseGuard(ctx context.Context) error {
	held := k.guardHeld
	k.guardHeld, k.guardPermits = k.guardHeld[:0], 0
	for _, h := range held {
		if err := k.apply(ctx, h); err != nil {
			return err
		}
	}
	clear(held) // the slice is reused: drop what the acks point to
	return nil
}

func (k *checkpointer) apply(ctx context.Context, a ack) error {
	rs := a.req.row
	if p := k.r.replay; p != nil {
		// Recorded when the replay ends, in the manifest's final write.
		p.outs[rs.letter] = letterOut{answered: true, out: a.out, at: k.r.deps.Now().UTC()}
		return nil
	}
	if a.out.Permanent {
		u := &k.m.Units[rs.unit]
		url := a.req.url
		if lim := k.r.cfg.MaxURLBytes; lim > 0 && len(url) > lim {
			// Never sent, and never to be replayed: its start says which
			// request it was; the object, row group and row find the row.
			url = url[:maxCutURL] + cutMarker
		}
		dl := deadLetter(DeadLetter{MessageID: rs.msgID, Object: k.m.Objects[u.Object].URI, RowGroup: u.RowGroup, Row: rs.row},
			url, a.out, k.r.deps.Now().UTC())
		if err := k.r.deps.DeadLetters.WriteDeadLetter(dl); err != nil {
			return fmt.Errorf("write dead letter for %s row group %d row %d: %w", dl.Object, dl.RowGroup, dl.Row, err)
		}
		rs.tally.addDead(a.out.Status, a.out.Err, a.out.Body)
	} else {
		rs.tally.acked++
	}
	if a.out.Attempts > 1 {
		rs.tally.retried++
	}
	if a.out.PossibleDuplicate {
		rs.tally.dups++
	}
	rs.left--
	if rs.left > 0 {
		return nil
	}
	k.permits += rs.permits
	k.r.windowRows.Add(-1)
	return k.complete(ctx, rs.unit, rs.row, "", rs.tally)
}

// deadLetter is the record of a request refused for good (out), sent as
// url; origin names its row.
func deadLetter(origin DeadLetter, url string, out Outcome, now time.Time) DeadLetter {
	reason := "permanent failure"
	if out.Err != nil {
		reason = out.Err.Error()
	}
	if len(reason) > maxReason {
		// The error may quote the URL, which the dead letter holds
		// already: a 1 MiB value makes a URL of up to 3 MiB.
		reason = reason[:maxReason] + "…"
	}
	d := origin
	d.URL, d.Status, d.Response, d.Reason, d.Attempts, d.Time = url, out.Status, string(out.Body), reason, out.Attempts, now
	return d
}

// setAside records the object of unit as skipped, once.
func (k *checkpointer) setAside(unit int, reason string) {
	o := &k.m.Objects[k.m.Units[unit].Object]
	if o.Skipped == "" {
		o.Skipped = reason
		k.m.Counts.ObjectsSkipped++
		k.dirty = true
	}
}

// complete marks a row done and counts it, in the same step, so that the
// counts always describe exactly the rows the manifest marks.
func (k *checkpointer) complete(ctx context.Context, unit int, row int64, skip string, t rowTally) error {
	u := &k.m.Units[unit]
	wasDone := u.Done
	u.MarkDone(row)
	addRow(&k.m.Counts, skip, t)
	k.dirty = true
	k.r.completedReqs += t.acked + t.dead
	k.r.prog.add(1, t.acked+t.dead)
	if !wasDone && u.Watermark >= u.Rows {
		u.Done = true
		if ctx.Err() == nil && k.due(k.r.deps.Now()) {
			return k.commit(ctx)
		}
	}
	return nil
}

// paced reports that a commit now would not wait for the pacing of writes
// to the manifest's name.
func (k *checkpointer) paced(now time.Time) bool {
	return now.Sub(k.last) >= k.r.cfg.CommitInterval
}

// due reports that a commit of progress is due at now: paced, and not in
// the run's last stretch (endingSoon).
func (k *checkpointer) due(now time.Time) bool {
	return k.paced(now) && !k.endingSoon(now)
}

// endingSoon reports that the run looks set to end before it could commit
// again, so that a commit of progress now would only make the final commit
// wait out the pacing: a run whose last request is acknowledged at 3.05 s
// would otherwise end at 4 s, having committed at 3. It holds while
//   - the plan is whole (no Planner is still adding rows),
//   - the rows left, at this run's row rate so far, take less than a
//     CommitInterval,
//   - no decoder waits for window permits (only a commit gives them back),
//     nor will one before the end: the rows not yet decoded are no more
//     than the permits free. Otherwise a commit must come before the end
//     anyway, and the sooner it comes, the less the decoders wait for it.
//     Rows are counted for permits, a row of several requests takes
//     several, and a row skipped none: the guess can be short, and the
//     check of waiting decoders then catches it.
//   - and, unless every row is done, the last commit is less than three
//     CommitIntervals old, so that a wrong guess (Convertro slowing down at
//     the end) delays a commit by at most two intervals, and the rows a
//     kill would make a resume send again stay within what was
//     acknowledged in the last three.
//
// The bound is three intervals, not two: deferring starts a second after
// the last commit at the earliest, and with two, a guess only a fifth too
// hopeful (measured: 0.8 s left, 1.03 s taken) brought the forced commit
// to just before the final one, which then waited out the pacing anyway.
// The window still bounds those rows, deferred or not.
func (k *checkpointer) endingSoon(now time.Time) bool {
	r := k.r
	if r.replay != nil || r.windowWaits.Load() > 0 || !r.view.whole() {
		return false
	}
	done := r.prog.rows.Load()
	left := r.prog.total.Load() - r.prog.before - done
	switch {
	case left <= 0:
		return true // the final commit comes next
	case now.Sub(k.last) >= 3*r.cfg.CommitInterval:
		return false
	}
	if undecoded := left - r.windowRows.Load(); undecoded > int64(r.cfg.Window)-r.windowHeld.Load() {
		return false
	}
	elapsed := now.Sub(r.prog.began)
	if done <= 0 || elapsed <= 0 {
		return false
	}
	return float64(left)*elapsed.Seconds() < float64(done)*r.cfg.CommitInterval.Seconds()
}

func (k *checkpointer) commit(ctx context.Context) error {
	// A commit is not interrupted by a cancel: a write cut off after it
	// reached the store would leave the checkpoint's generation behind the
	// store's, and the final commit would take that for a lost lease.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), k.r.cfg.FinalCommitTimeout)
	defer cancel()
	if k.r.replay == nil {
		if err := k.r.flushDeadLetters(cctx); err != nil {
			return err
		}
		k.r.syncBudget()
	}
	// A replay's commits renew the lease only: its outcome is written
	// once, when it ends (Replay).
	if err := k.c.Commit(cctx); err != nil {
		return err
	}
	k.last = k.r.deps.Now()
	k.commits++
	k.dirty = false
	if k.permits > 0 {
		k.r.releaseWindow(k.permits)
		k.permits = 0
	}
	if k.r.deps.Committed != nil {
		k.r.deps.Committed(k.r.snapshot())
	}
	return nil
}
