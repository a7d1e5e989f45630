package jobs

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/convertro-etl/convertro-etl/convertro"
	"github.com/convertro-etl/convertro-etl/internal/localfile"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/readers"
	"github.com/convertro-etl/convertro-etl/writers"
)

// Env is the process around a job: where it writes, how it logs, what time
// it is. Zero fields take the process's own.
type Env struct {
	Stdout, Stderr io.Writer
	Log            *slog.Logger
	Now            func() time.Time
	Getenv         func(string) string
	Version        string
	// MetricsInterval is how often a run pushes its figures to the
	// Pushgateway of Options.MetricsPush while it goes (default 15s).
	MetricsInterval time.Duration
	// tuneClient, when set, adjusts the Convertro client's options before
	// the client is made: tests give it a fake clock and sleep.
	tuneClient func(*convertro.ClientOptions)
}

func (e Env) withDefaults() Env {
	if e.Stdout == nil {
		e.Stdout = io.Discard
	}
	if e.Stderr == nil {
		e.Stderr = io.Discard
	}
	if e.Log == nil {
		e.Log = slog.New(slog.NewTextHandler(e.Stderr, nil))
	}
	if e.Now == nil {
		e.Now = time.Now
	}
	if e.Getenv == nil {
		e.Getenv = os.Getenv
	}
	if e.Version == "" {
		e.Version = "dev"
	}
	return e
}

// newScratch makes a scratch folder for a run's working files, and logs the
// folders of earlier runs it removed: runs killed before they could.
func newScratch(env Env, what string) (*localfile.Scratch, error) {
	s, swept, err := localfile.NewScratch(what)
	for _, dir := range swept {
		env.Log.Info("removed the scratch folder of an earlier run that ended without removing it", "folder", dir)
	}
	if err != nil {
		return nil, fmt.Errorf("scratch folder: %w", err)
	}
	return s, nil
}

// prepared is a job ready to run: settings checked, inputs listed, shard chosen.
type prepared struct {
	o        Options
	settings convertro.Settings
	mapper   *convertro.Mapper
	wire     *convertro.Wire
	in       *inputs
	shard    pipeline.Shard
	job      pipeline.JobID
	// state and covered are a live run's: the state location (opened to
	// read the ledger before listing) and the first day it asks for.
	state   pipeline.StateStore
	covered string
	// ledger is the shard's manifest read before listing (nil for none, a
	// dry run, or another job): the objects it pinned need no footer read.
	ledger *pipeline.Manifest
	// cp and prev are a live run's checkpoint and the manifest it found
	// (nil if none), opened before the listing (see recurring).
	cp   *pipeline.Checkpoint
	prev *pipeline.Manifest
}

func (p *prepared) close() {
	if p.in != nil {
		p.in.close()
	}
}

// backfillKind is the default kind: every row of the sources in the date
// range, sent once. The other kinds are variations of it (kind.go).
var backfillKind = Kind{Name: "backfill"}

// prepare does everything a run and a plan share, before any state is
// touched. With stream, the objects new to the ledger are planned while
// the run goes (inputs.planner), not before prepare returns.
func prepare(ctx context.Context, o Options, env Env, delivery, stream bool) (*prepared, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	now := env.Now()
	from, to, err := dateRange(o, now)
	if err != nil {
		return nil, err
	}
	s := convertro.Settings{
		Account: o.Account, ClientName: o.ClientName, SiteID: o.SiteID, Domain: o.Domain,
		HybridAttributionModel: o.Hybrid, Endpoint: o.Endpoint,
		AnonymousIDAsDeviceID: o.AnonymousIDAsDeviceID,
	}
	for name, tos := range o.Events {
		for _, t := range tos {
			s.AddEvent(name, t)
		}
	}
	if err := s.Validate(delivery); err != nil {
		return nil, err
	}
	m, err := convertro.NewMapper(s)
	if err != nil {
		return nil, err
	}
	for _, e := range m.IgnoredEvents() {
		env.Log.Warn("events entry has no effect: the seed fixes how this event is sent", "event", e)
	}
	shard, err := pipeline.ShardFromEnv(o.Shard, o.Shards, env.Getenv)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	p := &prepared{o: o, settings: s, mapper: m, wire: convertro.NewWire(s), shard: shard}
	win := plainListing(from, to)
	if delivery {
		if win, err = p.recurring(ctx, from, to, env.Now); err != nil {
			p.close()
			return nil, err
		}
	}
	p.covered = win.covered
	win.rowWindow(from, to, now)
	p.in, err = gather(ctx, o, win, shard, p.ledger, env.Log, stream)
	if err != nil {
		p.close()
		return nil, err
	}
	p.job = pipeline.JobID{
		Kind:        o.Kind,
		Fingerprint: o.Fingerprint(),
		Description: describe(o, from, to),
		Settings:    o.Settings(),
	}
	return p, nil
}

// recurring opens the state of a live run and its checkpoint and, when the
// manifest found holds this job, takes it as the ledger that widens the
// listing for late objects and unfinished work (see listing). The
// checkpoint opens before the listing: the manifest and its plan are read
// once, whatever the job's size, and a shard whose lease is held or whose
// count is not the state's is refused before it lists anything. Opening
// takes no lease: the run takes it (Begin) after the listing, conditional
// on the manifest read here, and pipeline merges the listing into it.
func (p *prepared) recurring(ctx context.Context, from, to time.Time, now func() time.Time) (listing, error) {
	win := plainListing(from, to)
	st, err := pipeline.OpenState(ctx, p.o.State)
	if err != nil {
		return win, err
	}
	p.state = st
	p.cp, p.prev, err = pipeline.OpenCheckpoint(ctx, st, p.shard, pipeline.NewLease(), now, p.o.LeaseTTL)
	if err != nil {
		return win, err
	}
	if p.o.Fresh || p.prev == nil || p.prev.Job.Fingerprint != p.o.Fingerprint() {
		return win, nil
	}
	p.ledger = p.prev
	return recurringListing(from, to, p.o.Lookback, p.ledger), nil
}

func dateRange(o Options, now time.Time) (from, to time.Time, err error) {
	if o.From != "" {
		if from, err = readers.ParseDay(o.From, now); err != nil {
			return from, to, fmt.Errorf("%w: --from: %w", ErrConfig, err)
		}
	}
	if o.To != "" {
		if to, err = readers.ParseDay(o.To, now); err != nil {
			return from, to, fmt.Errorf("%w: --to: %w", ErrConfig, err)
		}
	}
	if !from.IsZero() && !to.IsZero() && to.Before(from) {
		return from, to, fmt.Errorf("%w: --to %s is before --from %s", ErrConfig, day(to), day(from))
	}
	return from, to, nil
}

func describe(o Options, from, to time.Time) string {
	d := o.Kind + " of " + strings.Join(o.Sources, ", ")
	if !from.IsZero() || !to.IsZero() {
		d += " from " + orOpen(day(from)) + " to " + orOpen(day(to))
	}
	return d
}

func orOpen(s string) string {
	if s == "" {
		return "…"
	}
	return s
}

// Run runs or resumes the job o and returns its report (nil when the run
// could not start). The report's summary goes to env.Stderr.
func Run(ctx context.Context, o Options, env Env) (*pipeline.Report, error) {
	return run(ctx, o, env, false)
}

// run is Run; second marks its second pass (see heldBack).
func run(ctx context.Context, o Options, env Env, second bool) (*pipeline.Report, error) {
	env = env.withDefaults()
	if o.MetricsPush != "" {
		if _, err := parseMetricsURL(o.MetricsPush); err != nil {
			return nil, err
		}
	}
	if k := kindNamed(o.withDefaults().Kind); k != nil && k.Run != nil {
		return k.Run(ctx, o, env)
	}
	// A live run plans while it sends: its first request leaves within
	// seconds whatever the job's size. A dry run plans first: it has no
	// request to hurry, and a bad footer fails it before it writes a line.
	p, err := prepare(ctx, o, env, !o.DryRun, !o.DryRun)
	if err != nil {
		return nil, err
	}
	defer p.close()
	o = p.o
	for _, s := range p.in.skipped {
		env.Log.Debug("not data, skipped", "object", s.URI, "reason", s.Reason)
	}
	if len(p.in.skipped) > 0 {
		env.Log.Info("objects that are not data were skipped", "count", len(p.in.skipped))
	}

	cfg := pipeline.Config{
		Job:         p.job,
		Shard:       p.shard,
		Objects:     p.in.known(),
		PlannedRows: p.in.plannedRows(),
		Decoders:    o.Decoders,
		Concurrency: o.Concurrency,
		Fresh:       o.Fresh,
		CoveredFrom: p.covered,
		Tables:      p.in.tables,

		MaxRequestsPerDay: o.MaxRequestsPerDay,
		MaxURLBytes:       MaxURLBytes,
		SkipHints:         skipHints,
	}
	deps := pipeline.Deps{
		Decoder:      p.in,
		Planner:      p.in.planner(),
		NewTransform: newTransform(p.mapper, p.wire),
		Logger:       env.Log,
		Now:          env.Now,
	}
	env.showProgress(&cfg, &deps)
	if o.DryRun {
		return runDry(ctx, cfg, deps, p.wire.BaseURL(), o.Out, env)
	}

	var metrics *metricsPusher
	if o.MetricsPush != "" {
		if metrics, err = newMetricsPusher(o.MetricsPush, p.job, p.shard, env.MetricsInterval, env.Log); err != nil {
			return nil, err
		}
	}
	st, cp, prev := p.state, p.cp, p.prev
	client := convertro.NewClient(env.clientOptions(convertro.ClientOptions{
		Concurrency: o.Concurrency,
		Timeout:     o.Timeout,
		MaxAttempts: o.MaxAttempts,
		Rate:        o.Rate,
		Adaptive:    !o.FixedRate,
		DownAfter:   o.DownAfter,
		UserAgent:   "convertro-etl/" + env.Version,
	}))
	dl := newDeadLetters(st, p.shard, env.Now)
	deps.Sender = sender{client}
	deps.DeadLetters = dl
	deps.Checkpoint, deps.Previous, deps.State = cp, prev, st
	cfg.LeaseTTL = o.LeaseTTL
	deps.RateHistory = func() []pipeline.RateSample {
		var out []pipeline.RateSample
		for _, p := range client.RateHistory() {
			out = append(out, pipeline.RateSample{At: p.Time, Rate: p.Rate, Share429: p.Share429, Accepted: p.Accepted})
		}
		return out
	}

	if metrics != nil {
		deps.Committed = metrics.update
		metrics.start(ctx)
	}

	rep, err := pipeline.Run(ctx, cfg, deps)
	if metrics != nil {
		metrics.finish(ctx, rep)
	}
	if rep != nil {
		rep.Summary(env.Stderr)
	}
	if err == nil && p.in.heldBack.Load() > 0 && !second {
		// Objects without a day were finished with an interrupted run's
		// time range; now that they are, a second pass reads them for
		// this run's, which the first could not plan over unfinished work.
		env.Log.Info("objects without a day were resumed with an earlier run's time range; reading them again for this run's",
			"objects", p.in.heldBack.Load())
		p.close()
		p.in = nil
		return run(ctx, o, env, true)
	}
	return rep, err
}

// runDry runs cfg as a dry run writing to out ("-": stdout). base is the
// wire's base URL: when JSON copies it as it is, so it does every URL the
// encoder makes from it (the rest is escaped ASCII), and the lines are
// written without scanning each URL for JSON escapes.
func runDry(ctx context.Context, cfg pipeline.Config, deps pipeline.Deps, base, out string, env Env) (*pipeline.Report, error) {
	// The pipeline buffers its own writes; the lines go straight to the file.
	deps.DryRun, deps.DryRunLine = env.Stdout, writers.AppendDryRunLine
	if writers.JSONPlain(base) {
		deps.DryRunLine = writers.AppendPlainDryRunLine
	}
	var file *localfile.Output
	if out != "-" {
		var err error
		if file, err = dryOutput(out, env); err != nil {
			return nil, fmt.Errorf("create dry-run output %s: %w", out, err)
		}
		deps.DryRun = file
	}
	rep, err := pipeline.Run(ctx, cfg, deps)
	if file != nil {
		// A run that failed or stopped discards its part of the requests.
		if ferr := file.Finish(err == nil); ferr != nil && err == nil {
			err = fmt.Errorf("write dry-run output %s: %w", out, ferr)
		}
	}
	if rep != nil {
		rep.Summary(env.Stderr)
	}
	return rep, err
}

// dryOutputStale is how long a temporary dry-run output must have gone
// unwritten before the next dry run to the same file removes it as a killed
// run's: a dry run at work writes it as it goes.
const dryOutputStale = time.Hour

// dryOutput opens the dry run's output file (localfile.Output): a failed or
// killed dry run leaves no part of its requests where a reader expects them
// all. It first removes what killed dry runs to the same file left.
func dryOutput(out string, env Env) (*localfile.Output, error) {
	for _, p := range localfile.RemoveStaleTemps(out, env.Now().Add(-dryOutputStale)) {
		env.Log.Info("removed the output of an earlier dry run that ended without finishing it", "file", p)
	}
	return localfile.CreateOutput(out)
}
