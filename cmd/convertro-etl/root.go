package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/convertro-etl/convertro-etl/jobs"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// run executes one command line and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "convertro-etl:", err)
	}
	return exitCode(err)
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "convertro-etl",
		Short:         "Deliver Segment events exported as Parquet to Convertro, resumably",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	env := func() jobs.Env {
		return jobs.Env{
			Stdout:  stdout,
			Stderr:  stderr,
			Log:     slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
			Now:     time.Now,
			Version: version,
		}
	}
	root.AddCommand(
		newRunCmd(env),
		newPlanCmd(env),
		newStatusCmd(env),
		newSimulateCmd(env),
		newGenerateCmd(env),
		newReplayCmd(env),
		newDeadLettersCmd(env),
	)
	return root
}

// jobFlags binds the run/plan flags to o; the YAML job file named by --config
// fills the keys the command line left unset (flags win over the file).
type jobFlags struct {
	config string
	events []string
	o      jobs.Options
}

func (f *jobFlags) bind(fs *pflag.FlagSet) {
	o := &f.o
	fs.StringVar(&f.config, "config", "", "YAML job file (same keys as the flags)")
	fs.StringVar(&o.Kind, "job", "", "kind of job: backfill (default), audience or migration")
	fs.StringArrayVar(&o.Sources, "source", nil, "source URI: a path, file://… or gs://bucket/prefix (repeatable)")
	fs.StringVar(&o.State, "state", "", "state location for the manifest, report and dead letters: a path or gs://… (default ./.convertro-state)")
	fs.StringVar(&o.Endpoint, "endpoint", "", "Convertro base URL (overrides https://{domain})")
	fs.StringVar(&o.Account, "account", "", "Convertro account name")
	fs.StringVar(&o.ClientName, "client-name", "", "Convertro client name")
	fs.StringVar(&o.SiteID, "site-id", "", "Convertro site id")
	fs.StringVar(&o.Domain, "domain", "", "Convertro tracking domain, e.g. acme.sp1.convertro.com")
	fs.StringArrayVar(&f.events, "event", nil, `event mapping "Segment name=Convertro name" (repeatable)`)
	fs.BoolVar(&o.Hybrid, "hybrid", false, "hybrid attribution model: also send sale with sale.new/sale.repeat")
	fs.BoolVar(&o.DryRun, "dry-run", false, "send nothing; write the requests to --out")
	fs.StringVar(&o.Out, "out", "", "dry-run output file, one JSON line per request (- for stdout)")
	fs.StringVar(&o.From, "from", "", "first partition day to read (YYYY-MM-DD, today, yesterday)")
	fs.StringVar(&o.To, "to", "", "last partition day to read, inclusive")
	fs.StringVar(&o.Type, "type", "", "message type for files whose type cannot be detected (identify, track)")
	fs.IntVar(&o.Concurrency, "concurrency", 0, "requests in flight at once (default 64)")
	fs.IntVar(&o.Decoders, "decoders", 0, "row groups decoded at once (default: number of CPUs)")
	fs.Float64Var(&o.Rate, "rate", 0, "requests per second across all senders (0 = unlimited)")
	fs.Int64Var(&o.MaxRequestsPerDay, "max-requests-per-day", 0, "stop (resumably, exit 3) when this many requests were sent in the UTC day; the next day's run continues (0 = no cap)")
	fs.DurationVar(&o.Timeout, "timeout", 0, "per-request timeout (default 10s)")
	fs.IntVar(&o.MaxAttempts, "max-attempts", 0, "attempts per request before the run stops (default 8)")
	fs.BoolVar(&o.FixedRate, "fixed-rate", false, "keep --rate as given: no slowing down when Convertro answers 429")
	fs.DurationVar(&o.DownAfter, "down-after", 0, "stop (resumably) when Convertro has failed every request this long (default 5m)")
	fs.DurationVar(&o.LeaseTTL, "lease-ttl", 0, "how long the lease outlives the last commit (default 30s)")
	fs.StringVar(&o.Shard, "shard", "", "this process's shard i/n (default 0/1, or from JOB_COMPLETION_INDEX / CLOUD_RUN_TASK_INDEX)")
	fs.IntVar(&o.Shards, "shards", 0, "shard count when the index comes from JOB_COMPLETION_INDEX")
	fs.StringVar(&o.OnBadFile, "on-bad-file", "", "what a bad input file does: fail (default) or skip")
	fs.BoolVar(&o.Fresh, "fresh", false, "discard the state's manifest and start over")
	fs.StringVar(&o.MetricsPush, "metrics-push", "", "Prometheus Pushgateway URL to push the run's counters to at the end")
	fs.StringArrayVar(&o.Audiences, "audience", nil, "audience job: audience key the sync covers (repeatable; names the columns of an identifies export)")
	fs.StringVar(&o.Devices, "devices", "", "audience job: identifies export giving each user's latest device id (a path or gs://…)")
}

// options merges the job file under the flags that were set.
func (f *jobFlags) options(fs *pflag.FlagSet) (jobs.Options, error) {
	o := f.o
	if f.config != "" {
		file, err := jobs.LoadFile(f.config)
		if err != nil {
			return o, err
		}
		o = jobs.Merge(file, o, func(name string) bool { return fs.Changed(name) })
	}
	for _, e := range f.events {
		if err := o.AddEvent(e); err != nil {
			return o, err
		}
	}
	return o, nil
}

func stdoutOr(path string, stdout io.Writer) (io.WriteCloser, error) {
	if path == "-" {
		return nopCloser{stdout}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	return f, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
