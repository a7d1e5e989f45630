package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/convertro-etl/convertro-etl/internal/segment"
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
// skip, when not nil, holds for each row of the batch the reason the job
// drops it before the transform sees it, or "" (a row of the export that is
// not this job's to send: outside its time range, held by another table):
// the engine counts it skipped with that reason. The batch, skip and the
// bytes they point to are valid only during fn. Errors name the object and
// row group; an error returned by fn is returned as is.
type Decoder interface {
	Decode(ctx context.Context, obj Object, rowGroup int, fn func(firstRow int64, batch []segment.Message, skip []string) error) error
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
	Job   JobID
	Shard Shard // zero value: 0/1
	// Objects is the listing, in plan order (jobs sorts it by URI); a
	// resume checks it against the manifest. With a Deps.Planner it is the
	// part of the listing known before the run starts, and must hold every
	// listed object the ledger (Deps.Previous) holds.
	Objects []Object
	// PlannedRows, when not 0, is the rows of this shard's units that the
	// Planner will add, known before the run (a dry run's plan, read whole
	// first and handed out in segments): the progress counts towards it
	// from the start rather than growing with the segments. Only a dry run
	// reads it.
	PlannedRows int64

	Decoders    int // decode workers, and row groups in memory; default GOMAXPROCS
	Concurrency int // sender goroutines; default 64
	// Window is the most requests sent whose rows are not yet committed; it
	// bounds what a kill can make the next run send again. Commits come at
	// most once per CommitInterval (one write a second per object name),
	// so the window also caps the rate at Window per CommitInterval: the
	// default max(65536, 4×Concurrency) is above what one process sends
	// here (44-49k req/s over loopback), where 8192 held a fast run to
	// 7.6k req/s. At such rates a second's acknowledgements fill most of
	// it, and a run near its end commits when its rows to come need the
	// permits, not only when its end allows (see endingSoon).
	Window int

	CommitInterval time.Duration // default 1s (GCS takes about one write per second per object)
	// LeaseTTL is the ttl given to OpenCheckpoint (default DefaultLeaseTTL).
	// A run that makes no progress still commits every LeaseTTL/3, so that
	// a long stall on Convertro does not let its lease expire.
	LeaseTTL           time.Duration
	ProgressInterval   time.Duration // period of Deps.OnProgress; default 10s
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
	// Planner, when set, adds objects to the plan while the run goes,
	// after Config.Objects (see Planner): the first units are sent while
	// the footers of later objects are still being read. nil: the plan is
	// Config.Objects.
	Planner Planner
	State   StateStore // where the report goes; nil = no report file
	// DryRun, when set, makes the run write the requests it would send, one
	// JSON line each, instead of sending them. It takes no lease and writes
	// no state.
	DryRun io.Writer
	// DryRunLine formats one request of a dry run (writers.AppendDryRunLine).
	DryRunLine func(dst, url []byte) []byte
	// OnProgress is told how far the run is every Config.ProgressInterval
	// and once at its end (nil: nobody), from a goroutine of its own.
	OnProgress func(Progress)
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

// settle is what the end of one unit's decode means, for the live engine
// and the dry run alike. aside: its object is bad and set aside
// (ErrSkipObject), and err is the decoder's error, whose text names the
// object; first says whether this unit set it aside (the warning is logged
// once per object). Otherwise a non-nil err stops the run: the decoder's,
// or ErrInputChanged for a unit that read another number of rows than the
// plan says.
func (b *badObjects) settle(ctx context.Context, err error, obj Object, u Unit, seen int64, log *slog.Logger) (aside, first bool, _ error) {
	switch {
	case err != nil && errors.Is(err, ErrSkipObject) && ctx.Err() == nil:
		first = b.add(u.Object)
		if first {
			log.Warn("skipping bad file", "object", obj.URI, "row_group", u.RowGroup, "rows_read_before", seen, "err", err)
		}
		return true, first, err
	case err != nil:
		return false, false, err
	case seen != u.Rows:
		return false, false, fmt.Errorf("decode %s row group %d: %d rows, the plan says %d: %w", obj.URI, u.RowGroup, seen, u.Rows, ErrInputChanged)
	}
	return false, false, nil
}

// cutString is b as a string, cut to n bytes and marked when longer, so that
// what a row keeps until its dead letter is written stays small.
func cutString(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + cutMarker
}
