package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/convertro-etl/convertro-etl/convertro"
	"github.com/convertro-etl/convertro-etl/objstore"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/writers"
)

// ReplayReport is what Replay did, one entry per shard that had dead letters.
type ReplayReport struct {
	Shards []*ShardReplay `json:"shards"`
}

// Remaining is the number of dead letters left in place across the shards.
func (r *ReplayReport) Remaining() int {
	n := 0
	for _, s := range r.Shards {
		n += s.StillDead + s.Unsent
	}
	return n
}

// ShardReplay is one shard's replay, stored in the state as
// replay-<i>-of-<n>-<time>.json. Committed is false until the manifest
// records the replay: a report left with false (a kill in between) lists
// requests that were sent but not recorded, which the next replay sends again.
type ShardReplay struct {
	Name      string         `json:"-"`
	Job       pipeline.JobID `json:"job"`
	Shard     string         `json:"shard"`
	Started   time.Time      `json:"started"`
	Finished  time.Time      `json:"finished"`
	Committed bool           `json:"committed"`
	BaseURL   string         `json:"base_url"`
	// FromFiles are the dead-letter parts the replay read (the manifest's
	// list before); RemainingFiles replaces them in the manifest.
	FromFiles      []string `json:"from_files"`
	RemainingFiles []string `json:"remaining_files,omitempty"`
	// DeadLetters = Delivered + StillDead + Unsent.
	DeadLetters   int   `json:"dead_letters"`
	Delivered     int   `json:"delivered"`
	StillDead     int   `json:"still_dead"`
	Unsent        int   `json:"unsent"` // not sent: the replay stopped first
	RowsDelivered int64 `json:"rows_delivered"`
	// Requests are the requests Convertro now accepted, as sent.
	Requests []ReplayedRequest `json:"requests"`
	// Counts are the manifest's counts after the replay.
	Counts pipeline.Counts `json:"counts"`
	Error  string          `json:"error,omitempty"`
}

// ReplayedRequest is one dead letter that a replay delivered.
type ReplayedRequest struct {
	MessageID string `json:"message_id"`
	Object    string `json:"object"`
	RowGroup  int32  `json:"row_group"`
	Row       int64  `json:"row"`
	URL       string `json:"url"`
	Status    int    `json:"status"`
	Attempts  int    `json:"attempts"`
}

// Replay sends the dead letters recorded in the state location o.State again,
// re-aimed (convertro.Wire.Retarget) at o's endpoint, domain, client name and
// site id, with the client options of a run. In each shard's manifest the
// requests Convertro now accepts move from dead-lettered to acked (rows whose
// dead letters are all gone, to delivered), and the dead letters left take
// the place of the old parts. o.Shard, when set, limits the replay to that
// shard. An audience sync's dead letters are not replayed: its next sync
// sends them again.
//
// Each shard's lease is taken as a run takes it, so a replay never runs beside
// a run or another replay (ErrLeaseHeld). The manifest is written once per
// shard, after the requests were sent: a kill before that write records
// nothing, and the next replay sends the same requests again (Convertro keeps
// one per event id); a kill after it leaves only unlisted files behind.
//
// The error is nil when no dead letter remains, wraps pipeline.ErrIncomplete
// when some do, and is any other failure (Convertro unreachable, state) after
// recording what was delivered before it.
func Replay(ctx context.Context, o Options, env Env) (*ReplayReport, error) {
	env = env.withDefaults()
	o = o.withDefaults()
	if o.DryRun {
		return nil, fmt.Errorf("%w: replay sends requests: --dry-run does not apply", ErrConfig)
	}
	var only *pipeline.Shard
	if o.Shard != "" {
		s, err := pipeline.ParseShard(o.Shard)
		if err != nil {
			return nil, fmt.Errorf("%w: --shard: %w", ErrConfig, err)
		}
		only = &s
	}
	s := convertro.Settings{
		Account: o.Account, ClientName: o.ClientName, SiteID: o.SiteID, Domain: o.Domain,
		HybridAttributionModel: o.Hybrid, Endpoint: o.Endpoint,
	}
	if err := s.Validate(true); err != nil {
		return nil, err
	}
	st, err := pipeline.OpenState(ctx, o.State)
	if err != nil {
		return nil, err
	}
	ms, err := pipeline.ListManifests(ctx, st)
	if err != nil {
		return nil, err
	}
	r := &replayer{
		o: o, env: env, st: st, wire: convertro.NewWire(s),
		client: convertro.NewClient(convertro.ClientOptions{
			Concurrency: o.Concurrency,
			Timeout:     o.Timeout,
			MaxAttempts: o.MaxAttempts,
			Rate:        o.Rate,
			Adaptive:    !o.FixedRate,
			DownAfter:   o.DownAfter,
			UserAgent:   "convertro-etl/" + env.Version,
		}),
	}
	orphans, err := orphanParts(ctx, st, ms)
	if err != nil {
		return nil, err
	}
	rep := &ReplayReport{}
	for _, m := range ms {
		switch {
		case only != nil && m.Shard != *only:
			continue
		case kindNamed(m.Job.Kind) != nil && kindNamed(m.Job.Kind).NoReplay != "":
			if len(m.DeadLetterFiles) > 0 {
				env.Log.Info(kindNamed(m.Job.Kind).NoReplay, "shard", m.Shard.String())
			}
			continue
		case len(m.DeadLetterFiles) == 0 && len(orphans[m.Shard]) == 0:
			continue
		}
		sr, err := r.shard(ctx, m.Shard)
		if sr != nil {
			rep.Shards = append(rep.Shards, sr)
			sr.summary(env)
		}
		if err != nil {
			return rep, err
		}
	}
	if n := rep.Remaining(); n > 0 {
		return rep, fmt.Errorf("replay %s: %d dead letters remain: %w", o.State, n, pipeline.ErrIncomplete)
	}
	return rep, nil
}

func (sr *ShardReplay) summary(env Env) {
	fmt.Fprintf(env.Stderr, "replay shard %s: %d dead letters, %d delivered (%d rows), %d still refused, %d not sent\n",
		sr.Shard, sr.DeadLetters, sr.Delivered, sr.RowsDelivered, sr.StillDead, sr.Unsent)
}

type replayer struct {
	o      Options
	env    Env
	st     pipeline.StateStore
	wire   *convertro.Wire
	client *convertro.Client
}

// letter outcomes of a replay.
const (
	unsent = iota
	delivered
	stillDead
)

// shard replays one shard's dead letters under its lease.
func (r *replayer) shard(ctx context.Context, shard pipeline.Shard) (*ShardReplay, error) {
	cp, m, err := pipeline.OpenCheckpoint(ctx, r.st, shard, pipeline.NewLease(), r.env.Now, r.o.LeaseTTL)
	if err != nil {
		return nil, err
	}
	if m == nil {
		return nil, nil // deleted since the listing
	}
	if len(m.DeadLetterFiles) == 0 {
		// Nothing to send; orphaned parts only, deleted under the lease.
		return nil, r.cleanOnly(ctx, cp, m)
	}
	status := m.Status
	if status == pipeline.StatusRunning {
		// No live run holds the lease (OpenCheckpoint saw to that): the run
		// or replay that wrote "running" was killed.
		status = pipeline.StatusStopped
		if allDone(m) {
			status = pipeline.StatusFinished
		}
	}
	// A replay follows no interrupted run: like a reopened run it is no
	// resume and adds nothing to the repeat bound.
	m.Reopened++
	if err := cp.Begin(ctx, m); err != nil {
		return nil, err
	}
	finish := func(err error) error {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if ferr := cp.Finish(fctx, status); ferr != nil && !errors.Is(err, pipeline.ErrLeaseLost) {
			err = errors.Join(err, ferr)
		}
		return err
	}
	// Under the lease, a part the manifest does not list can never be
	// listed by anyone: it is an orphan, and goes.
	cleanOrphans(ctx, r.st, m, r.env)
	sr := &ShardReplay{
		Job: m.Job, Shard: shard.String(), Started: r.env.Now().UTC(), BaseURL: r.wire.BaseURL(),
		FromFiles: append([]string(nil), m.DeadLetterFiles...),
	}
	var parts [][]writers.DeadLetter
	for _, name := range m.DeadLetterFiles {
		data, _, err := r.st.Read(ctx, name)
		if err != nil {
			return nil, finish(fmt.Errorf("replay shard %s: %w", shard, err))
		}
		dls, err := writers.DecodeDeadLetters(r.st.URI(name), data)
		if err != nil {
			return nil, finish(fmt.Errorf("replay shard %s: %w", shard, err))
		}
		parts = append(parts, dls)
	}
	letters := writers.MergeDeadLetters(parts...)
	sr.DeadLetters = len(letters)

	outcome, sendErr := r.send(ctx, cp, letters)
	if errors.Is(sendErr, pipeline.ErrLeaseLost) {
		return sr, sendErr // another process owns the shard: write nothing more
	}
	if sendErr != nil && ctx.Err() != nil {
		sendErr = fmt.Errorf("replay shard %s: %w", shard, pipeline.ErrStopped)
	}

	// Record what was delivered, even after a failure: those requests were
	// accepted and must not stay counted as dead.
	var remaining []writers.DeadLetter
	// groupMove is a change to the counts' dead-letter groups: a letter
	// delivered leaves its group, one refused again may change group.
	type groupMove struct {
		from, to   string
		fromStatus int
		dead       writers.DeadLetter
	}
	var moves []groupMove
	type rowKey struct {
		object   string
		rowGroup int32
		row      int64
	}
	rowLeft := map[rowKey]bool{}
	for i := range letters {
		d := &letters[i]
		k := rowKey{d.Object, d.RowGroup, d.Row}
		switch outcome[i].kind {
		case delivered:
			sr.Delivered++
			sr.Requests = append(sr.Requests, ReplayedRequest{
				MessageID: d.MessageID, Object: d.Object, RowGroup: d.RowGroup, Row: d.Row,
				URL: outcome[i].url, Status: outcome[i].status, Attempts: outcome[i].attempts,
			})
			if _, ok := rowLeft[k]; !ok {
				rowLeft[k] = false
			}
			moves = append(moves, groupMove{from: pipeline.DeadLetterClass(int(d.Status), nil), fromStatus: int(d.Status)})
			continue
		case stillDead:
			sr.StillDead++
			if to := outcome[i].class; to != "" {
				moves = append(moves, groupMove{from: pipeline.DeadLetterClass(int(d.Status), nil), fromStatus: int(d.Status),
					to: to, dead: outcome[i].dead})
			}
			*d = outcome[i].dead
		default:
			sr.Unsent++
		}
		rowLeft[k] = true
		remaining = append(remaining, *d)
	}
	for _, left := range rowLeft {
		if !left {
			sr.RowsDelivered++
		}
	}
	if sr.Delivered == 0 && sr.StillDead == 0 && len(letters) > 0 {
		// Nothing to record: the manifest keeps its parts as they are.
		sr.Finished = r.env.Now().UTC()
		return sr, finish(sendErr)
	}

	stamp := r.env.Now().UTC().Format("20060102T150405.000000000Z")
	if len(remaining) > 0 {
		name, err := r.writeNew(ctx, func(seq int) string {
			return fmt.Sprintf("dead-letters/%d-of-%d/%s-replay-%05d.parquet", shard.Index, shard.Count, stamp, seq)
		}, func() ([]byte, error) { return writers.DeadLetterFile(remaining) })
		if err != nil {
			return sr, finish(errors.Join(sendErr, fmt.Errorf("replay shard %s: %w", shard, err)))
		}
		sr.RemainingFiles = []string{name}
	}
	oldCounts, oldFiles := m.Counts, m.DeadLetterFiles
	c := m.Counts
	c.RowsSkipped = maps.Clone(c.RowsSkipped)
	c.DeadLetterGroups = maps.Clone(c.DeadLetterGroups)
	for _, mv := range moves {
		if mv.to == mv.from {
			continue
		}
		c.RemoveDeadLetters(mv.from, mv.fromStatus, 1)
		if mv.to != "" {
			c.AddDeadLetters(mv.to, int(mv.dead.Status), mv.dead.Response, 1)
		}
	}
	moved := int64(sr.Delivered)
	c.RequestsDeadLettered -= moved
	c.RequestsAcked += moved
	c.RequestsReplayed += moved
	rows := min(sr.RowsDelivered, c.RowsDeadLettered)
	c.RowsDeadLettered -= rows
	c.RowsDelivered += rows
	if err := checkReplayCounts(c); err != nil {
		return sr, finish(errors.Join(sendErr, fmt.Errorf("replay shard %s: %w", shard, err)))
	}
	sr.Counts = c
	m.Counts, m.DeadLetterFiles = c, sr.RemainingFiles
	if sendErr != nil {
		sr.Error = sendErr.Error()
	}

	// The report first (not committed), then the manifest, then the report
	// again: a kill at any point leaves the manifest the record, and a
	// report that says whether the manifest took it.
	sr.Finished = r.env.Now().UTC()
	reportName, err := r.writeNew(ctx, func(seq int) string {
		return fmt.Sprintf("replay-%d-of-%d-%s-%02d.json", shard.Index, shard.Count, stamp, seq)
	}, func() ([]byte, error) { return json.MarshalIndent(sr, "", "  ") })
	if err != nil {
		// Without its report the replay is not recorded at all: the next
		// replay sends these requests again.
		m.Counts, m.DeadLetterFiles = oldCounts, oldFiles
		return sr, finish(errors.Join(sendErr, fmt.Errorf("replay shard %s: %w", shard, err)))
	}
	sr.Name = reportName
	if err := finish(nil); err != nil {
		return sr, errors.Join(sendErr, err)
	}
	sr.Committed = true
	if data, err := json.MarshalIndent(sr, "", "  "); err == nil {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		_, err = r.st.Write(wctx, reportName, data, objstore.Overwrite)
		cancel()
		if err != nil {
			r.env.Log.Warn("replay report not marked committed; the manifest has the replay", "uri", r.st.URI(reportName), "err", err)
		}
	}
	// The old parts are no longer listed; their delivered letters are in the
	// report, the others in the new part.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	for _, name := range sr.FromFiles {
		if err := r.st.Delete(dctx, name); err != nil && !errors.Is(err, objstore.ErrNotFound) {
			r.env.Log.Warn("old dead-letter part not deleted (no longer listed in the manifest)", "uri", r.st.URI(name), "err", err)
		}
	}
	return sr, sendErr
}

// cleanOnly takes the lease of a shard that has no dead letters listed,
// deletes its orphaned parts and gives the lease back, leaving the
// manifest's status and counts as they were.
func (r *replayer) cleanOnly(ctx context.Context, cp *pipeline.Checkpoint, m *pipeline.Manifest) error {
	status := m.Status
	if status == pipeline.StatusRunning {
		status = pipeline.StatusStopped // the run that wrote it died (see shard)
		if allDone(m) {
			status = pipeline.StatusFinished
		}
	}
	m.Reopened++ // no resume: the repeat bound does not grow
	if err := cp.Begin(ctx, m); err != nil {
		return err
	}
	cleanOrphans(ctx, r.st, m, r.env)
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return cp.Finish(fctx, status)
}

// writeNew writes a new state object named by name(seq), trying the next seq
// while the name is taken.
func (r *replayer) writeNew(ctx context.Context, name func(seq int) string, data func() ([]byte, error)) (string, error) {
	b, err := data()
	if err != nil {
		return "", fmt.Errorf("encode %s: %w", r.st.URI(name(1)), err)
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	for seq := 1; ; seq++ {
		n := name(seq)
		_, err := r.st.Write(wctx, n, b, objstore.IfAbsent)
		if errors.Is(err, objstore.ErrPrecondition) && seq < 100 {
			continue
		}
		return n, err
	}
}

type letterOutcome struct {
	kind             int
	url              string
	status, attempts int
	dead             writers.DeadLetter // the refusal, for stillDead
	class            string             // its group, when Convertro refused it again
}

// send sends every letter, Concurrency at a time, renewing the lease while
// it waits. A failure that is not a refusal (Convertro unreachable, retries
// exhausted, ctx cancelled) stops the sending; the letters not sent by then
// stay unsent.
func (r *replayer) send(ctx context.Context, cp *pipeline.Checkpoint, letters []writers.DeadLetter) ([]letterOutcome, error) {
	out := make([]letterOutcome, len(letters))
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	snd := sender{r.client}
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(r.o.Concurrency, max(len(letters), 1)) {
		wg.Go(func() {
			for i := range next {
				d := &letters[i]
				u, err := r.wire.Retarget(d.URL)
				if err != nil {
					dead := *d
					dead.Reason, dead.Time = "replay: "+err.Error(), r.env.Now().UTC()
					out[i] = letterOutcome{kind: stillDead, dead: dead}
					continue
				}
				res := snd.Send(sctx, u)
				switch {
				case res.Err == nil:
					out[i] = letterOutcome{kind: delivered, url: u, status: res.Status, attempts: res.Attempts}
				case res.Permanent:
					dead := *d
					dead.URL, dead.Status, dead.Response = u, int32(res.Status), string(res.Body)
					dead.Reason, dead.Attempts, dead.Time = res.Err.Error(), int32(res.Attempts), r.env.Now().UTC()
					out[i] = letterOutcome{kind: stillDead, dead: dead, class: pipeline.DeadLetterClass(res.Status, res.Err)}
				default:
					// Not d.URL: its query holds the person's ids, agent and IP.
					cancel(fmt.Errorf("replay the dead letter of %s row group %d row %d: %w", d.Object, d.RowGroup, d.Row, res.Err))
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	// The lease must outlive the sending: a replay longer than the lease
	// would otherwise let a run start beside it.
	renew := time.NewTicker(max(r.o.LeaseTTL/3, time.Second))
	defer renew.Stop()
	var renewErr error
	i := 0
	for i < len(letters) && sctx.Err() == nil {
		select {
		case next <- i:
			i++
		case <-sctx.Done():
		case <-renew.C:
			if renewErr = cp.Commit(sctx); renewErr != nil {
				cancel(renewErr)
			}
		}
	}
	close(next)
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-renew.C:
			if renewErr == nil && ctx.Err() == nil {
				if renewErr = cp.Commit(ctx); renewErr != nil {
					cancel(renewErr)
				}
			}
		}
	}
	if renewErr != nil {
		return out, renewErr
	}
	if err := context.Cause(sctx); err != nil {
		return out, err
	}
	return out, nil
}

// allDone reports whether every unit of m is done (m may be a summary).
func allDone(m *pipeline.Manifest) bool { return m.AllDone() }

// checkReplayCounts holds the identities a run holds (pipeline checks the
// same at the end of a run) after a replay moved requests and rows.
func checkReplayCounts(c pipeline.Counts) error {
	var skipped int64
	for _, n := range c.RowsSkipped {
		skipped += n
	}
	switch {
	case c.RowsRead != c.RowsDelivered+skipped+c.RowsDeadLettered,
		c.RequestsSent != c.RequestsAcked+c.RequestsDeadLettered,
		c.RequestsDeadLettered < 0,
		c.RowsDeadLettered > c.RequestsDeadLettered:
		return fmt.Errorf("counts after the replay do not reconcile (%+v): %w", c, pipeline.ErrCountsMismatch)
	}
	return nil
}
