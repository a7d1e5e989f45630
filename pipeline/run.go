package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/convertro-etl/convertro-etl/internal/segment"
	"github.com/convertro-etl/convertro-etl/objstore"
)

// Errors Run returns, besides those of its dependencies (ErrLeaseHeld,
// ErrLeaseLost, ErrJobMismatch from the checkpoint; decode and send errors).
var (
	// ErrStopped: the context was cancelled (a signal); the progress so far is
	// committed and the same command resumes.
	ErrStopped = errors.New("stopped: the run can be resumed by running the same command again")
	// ErrMisconfigured: a streak of requests, at any point of the run, were
	// all refused the same way (the same permanent 3xx or 4xx status and
	// body start) with none accepted in between, which is a wrong setting
	// (client name, site id, endpoint), not bad rows; the streak was not
	// dead-lettered, and it is sent again on resume.
	ErrMisconfigured = errors.New("misconfigured: requests in a row were all refused the same way")
	// ErrIncomplete: the run finished, but rows were dead-lettered or objects
	// skipped. Run returns it together with the report.
	ErrIncomplete = errors.New("finished with dead-lettered rows or skipped objects")
	// ErrInputChanged: an input object differs from the plan the manifest
	// holds (generation, size, rows), so resuming would mix two versions.
	ErrInputChanged = errors.New("input changed since the plan")
	// ErrURLTooLong is the dead-letter reason of a request whose URL is over
	// Config.MaxURLBytes: it is never sent.
	ErrURLTooLong = errors.New("request not sent: the URL is longer than the run sends")
	// ErrSkipObject, wrapped in a Decoder's error, sets the object aside
	// (--on-bad-file skip) instead of stopping the run: its remaining units
	// are not read, rows already completed stay counted, and the manifest and
	// the report list it as skipped. A later run of the same job reads it
	// again once the listing shows another version of it.
	ErrSkipObject = errors.New("object set aside")
)

// SkipNoRequests is the skip reason of a row the transform accepted but for
// which it emitted no request.
const SkipNoRequests = "no_requests"

// Manifest statuses.
const (
	StatusRunning  = "running"
	StatusFinished = "finished"
	StatusFailed   = "failed"
	StatusStopped  = "stopped"
	StatusDryRun   = "dry_run"
)

// misconfigRequests is how many outcomes in a row, all the same permanent
// refusal, mean a misconfiguration rather than bad rows. (Never more than
// the window: held outcomes hold their permits.)
const misconfigRequests = 20

// maxReason bounds the reason stored with a dead letter.
const maxReason = 1024

// maxCutURL is how much of a URL over Config.MaxURLBytes its dead letter
// keeps, followed by cutMarker; maxMessageID bounds a dead letter's message
// id. A row with a 50 MiB value then costs a record of a few KiB, not a copy
// of the value (or of its URL, up to three times larger).
const (
	maxCutURL    = 2 << 10
	maxMessageID = 256
)

// cutMarker ends a value a dead letter holds only the start of. Its space
// and non-ASCII bytes appear in no URL a transform builds (every value is
// escaped), so a cut URL can never be taken for one and replayed.
const cutMarker = " …(cut)"

// Decoder reads one row group of an object in batches. firstRow is the index
// within the row group of batch[0]; rows come in order, each exactly once.
// The batch and the bytes it points to are valid only during fn. Errors name
// the object and row group; an error returned by fn is returned as is.
type Decoder interface {
	Decode(ctx context.Context, obj Object, rowGroup int, fn func(firstRow int64, batch []segment.Message) error) error
}

// Transform turns one decoded row into the URLs of its requests, calling emit
// once per request (emit copies the URL). It returns the reason the row is
// skipped, or "" when the row is delivered. A URL over Config.MaxURLBytes is
// not sent (nor listed by a dry run) but dead-lettered, keeping only its
// start: a Transform may hand it cut to MaxURLBytes+1 bytes rather than
// build it whole. A Transform may keep scratch
// state: each decode worker gets its own from Deps.NewTransform.
type Transform func(msg *segment.Message, emit func(url []byte)) (skip string)

// Sender delivers one request, retrying as it sees fit.
type Sender interface {
	Send(ctx context.Context, url string) Outcome
}

// Outcome is the result of one Send. Err nil means acknowledged. Permanent
// (with Err set) means the request can never succeed: it is dead-lettered and
// counted as handled. Any other Err stops the run (Convertro down, retries
// exhausted, lease lost); the request is sent again on resume.
type Outcome struct {
	Status, Attempts  int
	Body              []byte
	Err               error
	Permanent         bool
	PossibleDuplicate bool // a retry after a timeout or a dropped connection
}

// DeadLetter is one permanently refused request, with where its row came from.
type DeadLetter struct {
	MessageID string
	Object    string // URI
	RowGroup  int
	Row       int64
	URL       string
	Status    int
	Response  string
	Reason    string
	Attempts  int
	Time      time.Time
}

// DeadLetterSink stores dead letters. Run calls it from one goroutine only.
// Flush makes every dead letter written so far durable and names the file
// (or object) that now holds them, "" when there were none; the checkpointer
// flushes before each manifest commit, so a row the manifest counts as
// dead-lettered always has its record stored, and the manifest lists the
// files that belong to the job.
type DeadLetterSink interface {
	WriteDeadLetter(DeadLetter) error
	Flush(ctx context.Context) (file string, err error)
}

// Config is what a run does and how hard it pushes. Zero values take the
// defaults noted.
type Config struct {
	Job     JobID
	Shard   Shard    // zero value: 0/1
	Objects []Object // the listing, sorted by key; a resume checks it against the manifest

	Decoders    int // decode workers, and row groups in memory; default GOMAXPROCS
	Concurrency int // sender goroutines; default 64
	// Window is the most requests sent whose rows are not yet committed; it
	// bounds what a kill can make the next run send again. Commits come at
	// most once per CommitInterval (one write a second per object name),
	// so the window also caps the rate at Window per CommitInterval: the
	// default max(65536, 4×Concurrency) is above what one process sends
	// here (about 33k req/s over loopback), where 8192 held a fast run to
	// 7.6k req/s.
	Window int

	CommitInterval time.Duration // default 1s (GCS takes about one write per second per object)
	// LeaseTTL is the ttl given to OpenCheckpoint (default DefaultLeaseTTL).
	// A run that makes no progress still commits every LeaseTTL/3, so that
	// a long stall on Convertro does not let its lease expire.
	LeaseTTL           time.Duration
	ProgressInterval   time.Duration // log line period when stderr is not a terminal; default 10s
	FinalCommitTimeout time.Duration // bound on each commit and the report write; default 10s

	// Fresh ignores a previous manifest of another job (--fresh) and starts over.
	Fresh bool
	// CoveredFrom is the first day (YYYY-MM-DD) this run was asked for, ""
	// for none; the manifest keeps the earliest (Manifest.CoveredFrom).
	CoveredFrom string
	// Tables are the table versions the listing was read at; the manifest
	// keeps those of the run that planned last (Manifest.Tables).
	Tables []TableVersion

	// MaxURLBytes is the longest request URL the run sends; a longer one is
	// dead-lettered unsent with ErrURLTooLong (a dry run does not list it
	// and counts it dead-lettered). 0 = no limit.
	MaxURLBytes int

	// MaxRequestsPerDay caps the requests a live run queues per UTC day
	// (deps.Now), counted across runs in Manifest.DailyRequests; 0 = no cap.
	// At the cap the run drains, commits and returns ErrCapReached.
	MaxRequestsPerDay int64

	// SkipHints says, for a skip reason, what would send the rows skipped
	// for it (the option that changes it): the report quotes it, with the
	// count, when the job has rows skipped for that reason (Report.Hints).
	SkipHints map[string]string
}

func (c Config) withDefaults() Config {
	if c.Shard.Count == 0 {
		c.Shard = Shard{Index: 0, Count: 1}
	}
	if c.Decoders <= 0 {
		c.Decoders = runtime.GOMAXPROCS(0)
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 64
	}
	if c.Window <= 0 {
		c.Window = max(65536, 4*c.Concurrency)
	}
	if c.CommitInterval <= 0 {
		c.CommitInterval = time.Second
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.ProgressInterval <= 0 {
		c.ProgressInterval = 10 * time.Second
	}
	if c.FinalCommitTimeout <= 0 {
		c.FinalCommitTimeout = 10 * time.Second
	}
	return c
}

// Deps are the parts a run drives. jobs adapts readers, convertro and writers
// to them.
type Deps struct {
	Decoder      Decoder
	NewTransform func() Transform
	Sender       Sender         // live runs only
	DeadLetters  DeadLetterSink // live runs only
	// Checkpoint and Previous come from OpenCheckpoint: Previous is the
	// manifest found in the state (nil if none). Both nil in a dry run.
	Checkpoint *Checkpoint
	Previous   *Manifest
	State      StateStore // where the report goes; nil = no report file
	// DryRun, when set, makes the run write the requests it would send, one
	// JSON line each, instead of sending them. It takes no lease and writes
	// no state.
	DryRun io.Writer
	// DryRunLine formats one request of a dry run (writers.AppendDryRunLine).
	DryRunLine func(dst, url []byte) []byte
	Progress   io.Writer // operator progress (stderr); nil = none
	// RateHistory, when set, is called once at the end of a live run for
	// the report: how an adaptive throttle changed the sending rate.
	RateHistory func() []RateSample
	Logger      *slog.Logger // nil = slog.Default()
	Now         func() time.Time

	// Committed, when set, is called by a live run after each commit with
	// the report so far (status running), from the goroutine that owns the
	// manifest: it must return at once (jobs pushes metrics from it).
	Committed func(*Report)
}

// Run runs (or resumes) the shard cfg.Shard of a job and returns its report.
// See the package documentation for the stages, the errors and the delivery
// guarantee.
func Run(ctx context.Context, cfg Config, deps Deps) (*Report, error) {
	cfg = cfg.withDefaults()
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Decoder == nil || deps.NewTransform == nil {
		return nil, errors.New("run: Deps.Decoder and Deps.NewTransform are required")
	}
	if deps.DryRun != nil {
		if deps.DryRunLine == nil {
			return nil, errors.New("run: a dry run needs Deps.DryRunLine")
		}
		return runDry(ctx, cfg, deps)
	}
	if deps.Sender == nil || deps.DeadLetters == nil || deps.Checkpoint == nil {
		return nil, errors.New("run: a live run needs Deps.Sender, Deps.DeadLetters and Deps.Checkpoint")
	}
	return runLive(ctx, cfg, deps)
}

// put sends v unless ctx ends first; every channel send in the pipeline goes
// through it. A ready receiver wins over a cancelled ctx, so that the work
// done while stopping still reaches the checkpointer.
func put[T any](ctx context.Context, ch chan<- T, v T) error {
	select {
	case ch <- v:
		return nil
	default:
	}
	select {
	case ch <- v:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// rowState follows one row with requests until all of them are handled.
// The decode worker creates it; after that only the checkpointer touches it.
type rowState struct {
	unit    int
	row     int64
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
	cfg    Config
	deps   Deps
	m      *Manifest // owned by the checkpointer once the stages start
	objs   []Object
	units  []Unit         // immutable copy of the manifest's units, for the decoders
	resume []UnitProgress // progress committed before this run, read-only
	bad    badObjects     // objects set aside, by index
	window *semaphore.Weighted
	prog   *progress

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
	r.objs = objectsOf(m.Objects)
	for i, o := range r.objs {
		if o.Skipped != "" {
			r.bad.add(i)
		}
	}
	r.units = make([]Unit, len(m.Units))
	r.resume = make([]UnitProgress, len(m.Units))
	var total int64
	for i, u := range m.Units {
		r.units[i] = Unit{Object: u.Object, RowGroup: u.RowGroup, Rows: u.Rows}
		if u.Rows == 0 {
			m.Units[i].Done = true
		}
		r.resume[i] = m.Units[i]
		r.resume[i].Above = slices.Clone(u.Above)
		total += u.Rows
	}
	r.prog = newProgress(deps.Progress, deps.Logger, cfg.ProgressInterval, total, markedRows(m.Units))
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

// prepareManifest returns the manifest to begin with: the previous one with
// the listing merged in (see mergeListing), or a new one from the plan. done
// reports a finished job that the listing gives nothing new to do.
func prepareManifest(cfg Config, deps Deps) (m *Manifest, done bool, err error) {
	prev := deps.Previous
	if prev == nil || cfg.Fresh {
		return newManifest(cfg), false, nil
	}
	if prev.Job.Fingerprint != cfg.Job.Fingerprint {
		if n := unfinishedLive(prev); n > 0 {
			return nil, false, fmt.Errorf("resume shard %s: the state holds %d unfinished units of %q and this run is %q (%s): "+
				"finish them first by running the state's job again, or start over with --fresh, which discards the state's progress "+
				"(its unfinished rows are not sent, and what it delivered is sent again if listed): %w",
				cfg.Shard, n, prev.Job.Description, cfg.Job.Description,
				orNone(settingsDiff(prev.Job.Settings, cfg.Job.Settings)), ErrJobMismatch)
		}
		// Another job over a finished one: it starts afresh.
		deps.Logger.Info("the state's finished job is another one; starting afresh", "was", prev.Job.Description, "now", cfg.Job.Description)
		return newManifest(cfg), false, nil
	}
	if diff := settingsDiff(prev.Job.Settings, cfg.Job.Settings); diff != "" {
		if n := unfinishedLive(prev); n > 0 {
			return nil, false, fmt.Errorf("resume shard %s: the state holds %d unfinished units sent with other settings: %s. "+
				"Either finish them with the settings they were started with (run again with the state's values), "+
				"or start over with --fresh, which discards the state's progress: its unfinished rows are not sent with the old settings, "+
				"and objects it delivered are sent again with the new ones if listed: %w",
				cfg.Shard, n, diff, ErrJobMismatch)
		}
		deps.Logger.Warn("settings changed since the state's last run: what it delivered is not sent again (--fresh sends everything listed again)",
			"changes", diff)
	}
	if prev.Version < 4 && prev.Shard.Count > 1 {
		if n := unfinishedLive(prev); n > 0 {
			return nil, false, fmt.Errorf("resume shard %s: the state holds %d unfinished units planned by an earlier version of this program, "+
				"which split an object's row groups among shards; this version gives each shard whole objects. "+
				"Finish the job with the version that started it, or start over with --fresh on every shard "+
				"(its unfinished rows are then sent by the shard that owns them now, and what it delivered is sent again if listed): %w",
				cfg.Shard, n, ErrJobMismatch)
		}
	}
	wasFinished := prev.Status == StatusFinished
	prev.Job = cfg.Job
	prev.CoveredFrom = coveredFrom(prev.CoveredFrom, cfg.CoveredFrom)
	prev.Tables = slices.Clone(cfg.Tables)
	added := mergeListing(prev, cfg, deps.Logger)
	if wasFinished {
		if !added {
			return prev, true, nil
		}
		// A new cycle: the run follows no interrupted one.
		prev.Reopened++
		prev.CycleStart = cloneCounts(prev.Counts)
	}
	prev.Status = StatusRunning
	prev.Window = max(prev.Window, cfg.Window)
	return prev, false, nil
}

func newManifest(cfg Config) *Manifest {
	m := &Manifest{Job: cfg.Job, Shard: cfg.Shard, Status: StatusRunning, Window: cfg.Window, CoveredFrom: cfg.CoveredFrom,
		Tables: slices.Clone(cfg.Tables)}
	m.Objects = make([]PlannedObject, len(cfg.Objects))
	for i, o := range cfg.Objects {
		m.Objects[i] = plannedObject(o)
		if o.Skipped != "" {
			m.Counts.ObjectsSkipped++
		}
	}
	units := ShardUnits(BuildPlan(cfg.Objects), cfg.Objects, cfg.Shard)
	m.Units = make([]UnitProgress, len(units))
	for i, u := range units {
		m.Units[i] = UnitProgress{Object: u.Object, RowGroup: u.RowGroup, Rows: u.Rows}
	}
	return m
}

// coveredFrom is the earlier of two CoveredFrom days ("" is unknown).
func coveredFrom(a, b string) string {
	if a == "" || (b != "" && b < a) {
		return b
	}
	return a
}

func orNone(s string) string {
	if s == "" {
		return "same settings"
	}
	return s
}

func objectsOf(p []PlannedObject) []Object {
	objs := make([]Object, len(p))
	for i, o := range p {
		objs[i] = Object{URI: o.URI, Key: o.Key, Size: o.Size, Version: o.Version, RowGroups: o.RowGroups, Skipped: o.Skipped,
			Filter: o.Filter}
	}
	return objs
}

// unfinishedLive is unfinished leaving out the units of objects set aside:
// their rows after the failure are not read.
func unfinishedLive(m *Manifest) int {
	n := 0
	for i := range m.Units {
		u := &m.Units[i]
		if !u.Done && !u.Retired && m.Objects[u.Object].Skipped == "" {
			n++
		}
	}
	return n
}

// badObjects is the set of objects set aside, shared by the feeder and the
// decode workers.
type badObjects struct {
	mu  sync.Mutex
	set map[int]bool
}

func (b *badObjects) has(i int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.set[i]
}

// add adds i and reports whether it was not in the set yet.
func (b *badObjects) add(i int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.set[i] {
		return false
	}
	if b.set == nil {
		b.set = map[int]bool{}
	}
	b.set[i] = true
	return true
}

// stages runs feeder → decoders (with the transform) → senders →
// checkpointer in one errgroup: the first error cancels every stage.
func (r *liveRun) stages(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	r.unitCh = make(chan int)
	r.reqs = make(chan request, r.cfg.Concurrency)
	r.skips = make(chan skipBatch, r.cfg.Decoders)
	r.acks = make(chan ack, r.cfg.Concurrency)

	g.Go(func() error { // feeder, in plan order
		defer close(r.unitCh)
		for i := range r.units {
			if r.capped.Load() {
				return nil // the day's budget is spent: hand over no more units
			}
			if r.resume[i].Done || r.resume[i].Retired || r.bad.has(r.units[i].Object) {
				continue
			}
			if err := put(ctx, r.unitCh, i); err != nil {
				return err
			}
		}
		return nil
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
		u := r.units[ui]
		obj := r.objs[u.Object]
		// A unit handed over is read even if another unit of its object
		// failed meanwhile (the feeder stops handing them over): the units
		// dispatched before a failure are then always read.
		resume := &r.resume[ui]
		var seen int64
		err := r.deps.Decoder.Decode(ctx, obj, u.RowGroup, func(first int64, batch []segment.Message) error {
			var skipped []skipRow
			for i := range batch {
				row := first + int64(i)
				seen++
				if resume.IsDone(row) {
					continue
				}
				urls = urls[:0]
				reason := tf(&batch[i], emit)
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
				if err := r.window.Acquire(ctx, rs.permits); err != nil {
					return err
				}
				if !r.budget.take(int64(len(urls))) {
					// The rows before it go on as usual; this one and the
					// rest wait for the next day's budget.
					r.window.Release(rs.permits)
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
		if err != nil && errors.Is(err, ErrSkipObject) && ctx.Err() == nil {
			// The rows handed on before the error complete as usual; the
			// rest of the object is not read.
			if r.bad.add(u.Object) {
				r.deps.Logger.Warn("skipping bad file", "object", obj.URI, "row_group", u.RowGroup, "rows_read_before", seen, "err", err)
				if err := put(ctx, r.skips, skipBatch{unit: ui, bad: err.Error()}); err != nil {
					return err
				}
			}
			continue
		}
		if err != nil {
			return err
		}
		if seen != u.Rows {
			return fmt.Errorf("decode %s row group %d: %d rows, the plan says %d: %w", obj.URI, u.RowGroup, seen, u.Rows, ErrInputChanged)
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
			u := r.units[req.row.unit]
			return fmt.Errorf("send %s row group %d row %d: %w", r.objs[u.Object].URI, u.RowGroup, req.row.row, out.Err)
		}
		if err := put(ctx, r.acks, ack{req, out, sent, answered}); err != nil {
			return err
		}
	}
	return nil
}

// checkpointer is the one goroutine that owns the manifest: it marks rows
// done, counts them, writes dead letters, commits, and releases the window.
type checkpointer struct {
	r       *liveRun
	c       *Checkpoint
	m       *Manifest
	last    time.Time // last commit
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
	due := func() bool { return k.r.deps.Now().Sub(k.last) >= k.r.cfg.CommitInterval }
	// The loop ends when both inputs close, not on ctx: what the stages
	// finish while stopping is still marked for the final commit.
	for skips != nil || acks != nil {
		select {
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
				if !due() {
					if soon == nil {
						soon = time.After(k.r.cfg.CommitInterval - k.r.deps.Now().Sub(k.last))
					}
					continue
				}
				if err := k.commit(ctx); err != nil {
					return err
				}
			}
		case <-soon:
			soon = nil
			if k.dirty && ctx.Err() == nil {
				if err := k.commit(ctx); err != nil {
					return err
				}
			}
		case <-ticker.C:
			renew := k.r.deps.Now().Sub(k.last) >= k.r.cfg.LeaseTTL/3
			if (k.dirty || renew) && due() && ctx.Err() == nil {
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
func (k *checkpointer) ack(ctx context.Context, a ack) error {
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
	if a.out.Permanent {
		u := k.r.units[rs.unit]
		reason := "permanent failure"
		if a.out.Err != nil {
			reason = a.out.Err.Error()
		}
		if len(reason) > maxReason {
			// The error may quote the URL, which the dead letter holds
			// already: a 1 MiB value makes a URL of up to 3 MiB.
			reason = reason[:maxReason] + "…"
		}
		url := a.req.url
		if lim := k.r.cfg.MaxURLBytes; lim > 0 && len(url) > lim {
			// Never sent, and never to be replayed: its start says which
			// request it was; the object, row group and row find the row.
			url = url[:maxCutURL] + cutMarker
		}
		dl := DeadLetter{MessageID: rs.msgID, Object: k.r.objs[u.Object].URI, RowGroup: u.RowGroup, Row: rs.row,
			URL: url, Status: a.out.Status, Response: string(a.out.Body), Reason: reason,
			Attempts: a.out.Attempts, Time: k.r.deps.Now().UTC()}
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
	return k.complete(ctx, rs.unit, rs.row, "", rs.tally)
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
		if k.r.deps.Now().Sub(k.last) >= k.r.cfg.CommitInterval && ctx.Err() == nil {
			return k.commit(ctx)
		}
	}
	return nil
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

func (k *checkpointer) commit(ctx context.Context) error {
	// A commit is not interrupted by a cancel: a write cut off after it
	// reached the store would leave the checkpoint's generation behind the
	// store's, and the final commit would take that for a lost lease.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), k.r.cfg.FinalCommitTimeout)
	defer cancel()
	if err := k.r.flushDeadLetters(cctx); err != nil {
		return err
	}
	k.r.syncBudget()
	if err := k.c.Commit(cctx); err != nil {
		return err
	}
	k.last = k.r.deps.Now()
	k.dirty = false
	if k.permits > 0 {
		k.r.window.Release(k.permits)
		k.permits = 0
	}
	if k.r.deps.Committed != nil {
		k.r.deps.Committed(k.r.snapshot())
	}
	return nil
}

// unitOutput is one unit's dry-run lines and counts, waiting for its turn.
type unitOutput struct {
	seq    int
	lines  [][]byte // chunks, in order
	counts Counts
	// partial: the unit's object was set aside; seen rows were read (and
	// their lines kept), bad is the reason when this unit found it.
	partial bool
	seen    int64
	bad     string
}

// A unit's dry-run lines are kept in fixed-size chunks that the writer
// gives back for reuse once written: lines are never copied to grow a
// buffer, and the memory held stays the lines waiting for their turn (a
// buffer per unit, reused, would hold every unit's largest size for good).
// A row starts a new chunk when less than dryChunkRoom is left, so that a
// row's lines share one chunk and can be cut off again; a longer row grows
// its chunk, which is then left to the collector rather than reused.
const (
	dryChunk     = 256 << 10
	dryChunkRoom = 16 << 10
	// dryFreeChunks bounds the free list, per decoder. Measured on 4M
	// rows: two chunks a decoder save most allocations; a free list deep
	// enough for the whole window (32 MiB) saved no CPU and raised the
	// peak RSS by half, as the collector then ran rarely and let the
	// heap grow.
	dryFreeChunks = 2
)

// dryLines returns an empty chunk: a recycled one if the writer has given
// one back, else a new one.
func dryLines(free <-chan []byte) []byte {
	select {
	case b := <-free:
		return b
	default:
		return make([]byte, 0, dryChunk)
	}
}

// recycleDryLines offers a chunk for reuse; it never blocks: a full free
// list drops the chunk.
func recycleDryLines(free chan<- []byte, b []byte) {
	if cap(b) != dryChunk {
		return
	}
	select {
	case free <- b[:0]:
	default:
	}
}

// runDry decodes and transforms every unit of the shard in parallel, and
// writes the requests in plan order: each unit's lines are buffered and an
// ordered writer emits them in turn. At most 2×Decoders units are between
// dispatch and write, which bounds the buffered output.
func runDry(ctx context.Context, cfg Config, deps Deps) (*Report, error) {
	started := deps.Now()
	units := ShardUnits(BuildPlan(cfg.Objects), cfg.Objects, cfg.Shard)
	m := &Manifest{Job: cfg.Job, Shard: cfg.Shard, Status: StatusDryRun}
	m.Objects = make([]PlannedObject, len(cfg.Objects))
	for i, o := range cfg.Objects {
		m.Objects[i] = PlannedObject{URI: o.URI, Key: o.Key, Size: o.Size, Version: o.Version, RowGroups: o.RowGroups, Skipped: o.Skipped,
			Filter: o.Filter}
		if o.Skipped != "" {
			m.Counts.ObjectsSkipped++
		}
	}
	m.Units = make([]UnitProgress, len(units))
	for i, u := range units {
		m.Units[i] = UnitProgress{Object: u.Object, RowGroup: u.RowGroup, Rows: u.Rows}
	}
	prog := newProgress(deps.Progress, deps.Logger, cfg.ProgressInterval, PlanRows(units), 0)
	prog.start()

	g, gctx := errgroup.WithContext(ctx)
	turns := semaphore.NewWeighted(int64(2 * cfg.Decoders))
	unitCh := make(chan int)
	outCh := make(chan unitOutput, cfg.Decoders)
	// The writer hands written units' buffers back to the decoders, so that
	// a run reuses a handful of buffers instead of growing a fresh one,
	// copy after copy, for every unit.
	free := make(chan []byte, dryFreeChunks*cfg.Decoders)
	g.Go(func() error {
		defer close(unitCh)
		for i := range units {
			// Taken in plan order and given back in plan order by the
			// writer: a slow unit holds back at most the window behind it.
			if err := turns.Acquire(gctx, 1); err != nil {
				return err
			}
			if err := put(gctx, unitCh, i); err != nil {
				return err
			}
		}
		return nil
	})
	var bad badObjects
	var workers sync.WaitGroup
	for range cfg.Decoders {
		workers.Add(1)
		g.Go(func() error {
			defer workers.Done()
			tf := deps.NewTransform()
			// A row's lines go straight into its unit's current chunk; a
			// row that turns out skipped after emitting is cut off again.
			var lines []byte
			var chunks [][]byte
			var nurls, ndead int64
			emit := func(u []byte) {
				if cfg.MaxURLBytes > 0 && len(u) > cfg.MaxURLBytes {
					ndead++ // a live run dead-letters it unsent: not listed
					return
				}
				lines = deps.DryRunLine(lines, u)
				nurls++
			}
			for ui := range unitCh {
				u := units[ui]
				obj := cfg.Objects[u.Object]
				out := unitOutput{seq: ui}
				if bad.has(u.Object) || obj.Skipped != "" {
					out.partial = true
					if err := put(gctx, outCh, out); err != nil {
						return err
					}
					continue
				}
				var seen int64
				lines, chunks = dryLines(free), nil
				err := deps.Decoder.Decode(gctx, obj, u.RowGroup, func(_ int64, batch []segment.Message) error {
					var reqs int64 // progress is told once a batch, not once a row
					for i := range batch {
						seen++
						if cap(lines)-len(lines) < dryChunkRoom {
							chunks = append(chunks, lines)
							lines = dryLines(free)
						}
						mark := len(lines)
						nurls, ndead = 0, 0
						reason := tf(&batch[i], emit)
						if reason == "" && nurls+ndead == 0 {
							reason = SkipNoRequests
						}
						if reason != "" {
							lines = lines[:mark]
							addRow(&out.counts, reason, rowTally{})
							continue
						}
						addRow(&out.counts, "", rowTally{acked: nurls, dead: ndead})
						reqs += nurls + ndead
					}
					prog.add(int64(len(batch)), reqs)
					return nil
				})
				if len(lines) > 0 {
					chunks = append(chunks, lines)
				} else {
					recycleDryLines(free, lines)
				}
				out.lines, lines, chunks = chunks, nil, nil
				if err != nil && errors.Is(err, ErrSkipObject) && gctx.Err() == nil {
					out.partial, out.seen = true, seen
					if bad.add(u.Object) {
						deps.Logger.Warn("skipping bad file", "object", obj.URI, "row_group", u.RowGroup, "rows_read_before", seen, "err", err)
						out.bad = err.Error()
					}
				} else if err != nil {
					return err
				} else if seen != u.Rows {
					return fmt.Errorf("decode %s row group %d: %d rows, the plan says %d: %w", obj.URI, u.RowGroup, seen, u.Rows, ErrInputChanged)
				}
				if err := put(gctx, outCh, out); err != nil {
					return err
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		workers.Wait()
		close(outCh)
		return nil
	})
	g.Go(func() error { // the ordered writer
		bw := bufio.NewWriterSize(deps.DryRun, 64<<10)
		pending := make(map[int]unitOutput)
		next := 0
		for o := range outCh {
			pending[o.seq] = o
			for {
				p, ok := pending[next]
				if !ok {
					break
				}
				delete(pending, next)
				for _, c := range p.lines {
					if _, err := bw.Write(c); err != nil {
						return fmt.Errorf("write dry run: %w", err)
					}
					recycleDryLines(free, c)
				}
				m.Counts.Add(p.counts)
				if p.partial {
					m.Units[next].Watermark = p.seen
					if o := &m.Objects[m.Units[next].Object]; p.bad != "" && o.Skipped == "" {
						o.Skipped = p.bad
						m.Counts.ObjectsSkipped++
					}
				} else {
					m.Units[next].Watermark, m.Units[next].Done = m.Units[next].Rows, true
				}
				turns.Release(1)
				next++
			}
		}
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("write dry run: %w", err)
		}
		return nil
	})
	err := g.Wait()
	prog.stop()
	rep := buildReport(m, cfg, started, deps.Now(), Counts{}, nil)
	rep.Status = StatusDryRun
	if err != nil {
		rep.Status = StatusFailed
		if ctx.Err() != nil {
			rep.Status = StatusStopped
			err = fmt.Errorf("dry run shard %s: %w", cfg.Shard, ErrStopped)
		}
		rep.Error = err.Error()
		return rep, err
	}
	if err := checkCounts(m.Counts, m.marked()); err != nil {
		rep.Error = err.Error()
		return rep, err
	}
	return rep, nil
}

// cutString is b as a string, cut to n bytes and marked when longer, so that
// what a row keeps until its dead letter is written stays small.
func cutString(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + cutMarker
}
