package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Replay: a shard's dead letters sent again through the live engine's
// senders and checkpointer, and moved in its counts by one function that
// also runs the count check.

// ReplayDeps are what Replay drives. All but Recorded, Logger and Now are
// required.
type ReplayDeps struct {
	Sender Sender
	// Checkpoint and Previous come from OpenCheckpoint; Previous is the
	// shard's manifest (not nil: a shard that never ran has no dead letters).
	Checkpoint *Checkpoint
	Previous   *Manifest
	// Retarget turns a dead letter's URL into the URL to send now. A letter
	// it refuses is not sent and stays dead-lettered, its reason saying why.
	Retarget func(url string) (string, error)
	// Letters reads the dead letters once the lease is taken, from m (the
	// manifest under the lease: its DeadLetterFiles); the state may be
	// cleaned under the lease there too. No letters: nothing is recorded.
	Letters func(ctx context.Context, m *Manifest) ([]DeadLetter, error)
	// Record stores the letters left and the replay's own record before
	// the manifest takes the replay, and returns the dead-letter files that
	// replace the manifest's. An error records nothing: the manifest keeps
	// its counts and files, and the next replay sends the same letters.
	Record func(ctx context.Context, res *ReplayResult) (files []string, err error)
	// Recorded, when set, is called once the manifest holds the replay.
	Recorded func(ctx context.Context, res *ReplayResult)
	Logger   *slog.Logger // nil = slog.Default()
	Now      func() time.Time
}

// ReplayResult is what Replay did with one shard's dead letters:
// Letters = len(Delivered) + StillDead + Unsent.
type ReplayResult struct {
	Letters   int
	Delivered []Redelivered // accepted now, in the letters' order
	// Remaining are the letters left, in the letters' order: those refused
	// again (holding the new refusal), those Retarget refused (holding why)
	// and those not sent because the replay stopped first (as they were).
	Remaining     []DeadLetter
	StillDead     int
	Unsent        int
	RowsDelivered int64  // rows whose dead letters were all delivered
	Counts        Counts // the manifest's counts with the replay in, checked
	Err           error  // what stopped the sending, if anything
	Recorded      bool   // the manifest holds the replay
}

// Redelivered is one dead letter that Convertro accepted now.
type Redelivered struct {
	Letter           DeadLetter
	URL              string // as sent
	Status, Attempts int
}

// Replay sends the dead letters of the shard of deps.Checkpoint again, under
// its lease, with the live engine's senders (cfg.Concurrency of them) and
// its checkpointer, which renews the lease while they send. The
// misconfiguration guard does not apply (a letter refused again stays a
// dead letter), nor the window: the manifest is written once, after the
// sending, so a kill before that write records nothing and the next replay
// sends every letter again (Convertro keeps one request per event id).
//
// Then, even after a failure, what was delivered is recorded: the requests
// Convertro accepted move from dead-lettered to acknowledged (and are
// counted in RequestsReplayed), their rows, once none of their letters is
// left, from dead-lettered to delivered; the letters refused again move to
// the group of their new refusal. The counts are checked (ErrCountsMismatch
// records nothing), deps.Record stores the letters left and the record of
// the replay, and the manifest takes the new counts and files in its final
// write, which gives the lease back.
//
// Errors: ErrLeaseHeld from Begin; ErrLeaseLost (nothing more is written);
// ErrStopped when ctx was cancelled; the send error that stopped the
// sending (Convertro down); ErrCountsMismatch; deps.Letters' and
// deps.Record's errors. The result is nil only when the lease was not
// taken.
//
// Of cfg, Concurrency, CommitInterval, LeaseTTL and FinalCommitTimeout
// apply; the last bounds each write made however the replay ended (the
// final manifest write, Record and Recorded), as it bounds a run's.
func Replay(ctx context.Context, cfg Config, deps ReplayDeps) (*ReplayResult, error) {
	cfg = cfg.withDefaults()
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Sender == nil || deps.Checkpoint == nil || deps.Previous == nil || deps.Retarget == nil ||
		deps.Letters == nil || deps.Record == nil {
		return nil, errors.New("replay: ReplayDeps.Sender, Checkpoint, Previous, Retarget, Letters and Record are required")
	}
	m, c := deps.Previous, deps.Checkpoint
	status := m.Status
	if status == StatusRunning {
		// No live run holds the lease (OpenCheckpoint saw to that): the run
		// or replay that wrote "running" was killed.
		status = StatusStopped
		if m.AllDone() {
			status = StatusFinished
		}
	}
	// A replay follows no interrupted run: like a reopened run it is no
	// resume and adds nothing to the repeat bound.
	m.Reopened++
	if err := c.Begin(ctx, m); err != nil {
		return nil, err
	}
	// bounded is the context of the writes that must happen however the
	// replay ended.
	bounded := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), cfg.FinalCommitTimeout)
	}
	finish := func(err error) error {
		fctx, cancel := bounded()
		defer cancel()
		if ferr := c.Finish(fctx, status); ferr != nil {
			err = errors.Join(err, ferr)
		}
		return err
	}
	res := &ReplayResult{}
	letters, err := deps.Letters(ctx, m)
	if err != nil {
		return res, finish(fmt.Errorf("replay shard %s: %w", m.Shard, err))
	}
	res.Letters = len(letters)

	p := &replaying{letters: letters, urls: make([]string, len(letters)), outs: make([]letterOut, len(letters))}
	for i := range letters {
		p.urls[i], p.outs[i].unsendable = deps.Retarget(letters[i].URL)
	}
	r := &liveRun{cfg: cfg, m: m, replay: p,
		deps: Deps{Sender: deps.Sender, Checkpoint: c, Logger: deps.Logger, Now: deps.Now}}
	sendErr := r.stages(ctx)
	if errors.Is(sendErr, ErrLeaseLost) {
		return res, sendErr // another process owns the shard: write nothing more
	}
	if sendErr != nil && ctx.Err() != nil {
		sendErr = fmt.Errorf("replay shard %s: %w", m.Shard, ErrStopped)
	}
	res.Err = sendErr

	counts, err := p.settle(res, m, deps.Now().UTC())
	if err != nil {
		return res, finish(errors.Join(sendErr, fmt.Errorf("replay shard %s: %w", m.Shard, err)))
	}
	if len(res.Delivered) == 0 && res.StillDead == 0 {
		// Nothing to record: the manifest keeps its files as they are.
		return res, finish(sendErr)
	}
	res.Counts = counts
	rctx, cancel := bounded()
	files, err := deps.Record(rctx, res)
	cancel()
	if err != nil {
		return res, finish(errors.Join(sendErr, fmt.Errorf("replay shard %s: %w", m.Shard, err)))
	}
	m.Counts, m.DeadLetterFiles = counts, files
	if err := finish(nil); err != nil {
		return res, errors.Join(sendErr, err)
	}
	res.Recorded = true
	if deps.Recorded != nil {
		dctx, cancel := bounded()
		deps.Recorded(dctx, res)
		cancel()
	}
	return res, sendErr
}

// replaying is the source of a live run that replays dead letters: each
// letter is a row of one request.
type replaying struct {
	letters []DeadLetter
	urls    []string    // retargeted
	outs    []letterOut // the checkpointer's while the stages run
}

type letterOut struct {
	unsendable error // Retarget's refusal: never sent
	answered   bool
	out        Outcome
	at         time.Time // when the answer came
}

// feed hands every letter that has a URL to the senders, in order.
func (p *replaying) feed(ctx context.Context, reqs chan<- request) error {
	for i := range p.letters {
		if p.outs[i].unsendable != nil {
			continue
		}
		rs := &rowState{letter: i, left: 1}
		if err := put(ctx, reqs, request{rs, p.urls[i]}); err != nil {
			return err
		}
	}
	return nil
}

// origin names the dead letter a request sends again, for errors.
func (p *replaying) origin(rs *rowState) string {
	d := &p.letters[rs.letter]
	return fmt.Sprintf("the dead letter of %s row group %d row %d", d.Object, d.RowGroup, d.Row)
}

// settle sorts the letters by outcome into res and returns m's counts with
// the replay moved in, checked against the rows m marks done: the one place
// a replay changes counts. A delivered letter leaves its group and moves
// from dead-lettered to acknowledged; a row whose letters were all
// delivered moves from dead-lettered to delivered; a letter refused again
// moves to the group of its new refusal.
func (p *replaying) settle(res *ReplayResult, m *Manifest, now time.Time) (Counts, error) {
	c := cloneCounts(m.Counts)
	type rowKey struct {
		object   string
		rowGroup int
		row      int64
	}
	rowLeft := map[rowKey]bool{}
	for i, d := range p.letters {
		k, o := rowKey{d.Object, d.RowGroup, d.Row}, &p.outs[i]
		from := DeadLetterClass(d.Status, nil)
		switch {
		case o.unsendable != nil:
			res.StillDead++
			d.Reason, d.Time = truncate("replay: "+o.unsendable.Error(), maxReason), now
		case !o.answered:
			res.Unsent++
		case o.out.Err == nil:
			res.Delivered = append(res.Delivered, Redelivered{Letter: d, URL: p.urls[i], Status: o.out.Status, Attempts: o.out.Attempts})
			if _, seen := rowLeft[k]; !seen {
				rowLeft[k] = false
			}
			c.RemoveDeadLetters(from, d.Status, 1)
			continue
		default:
			res.StillDead++
			if to := DeadLetterClass(o.out.Status, o.out.Err); to != from {
				c.RemoveDeadLetters(from, d.Status, 1)
				c.AddDeadLetters(to, o.out.Status, string(o.out.Body), 1)
			}
			d = deadLetter(d, p.urls[i], o.out, o.at)
		}
		rowLeft[k] = true
		res.Remaining = append(res.Remaining, d)
	}
	for _, left := range rowLeft {
		if !left {
			res.RowsDelivered++
		}
	}
	moved := int64(len(res.Delivered))
	c.RequestsDeadLettered -= moved
	c.RequestsAcked += moved
	c.RequestsReplayed += moved
	rows := min(res.RowsDelivered, c.RowsDeadLettered)
	c.RowsDeadLettered -= rows
	c.RowsDelivered += rows
	if err := checkCounts(c, m.marked()); err != nil {
		return Counts{}, fmt.Errorf("after the replay: %w", err)
	}
	return c, nil
}
