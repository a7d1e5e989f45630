package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/jobs"
	"github.com/convertro-etl/convertro-etl/writers/generate"
)

func newRunCmd(env func() jobs.Env, lookup func(string) (string, bool)) *cobra.Command {
	var f *jobFlags
	cmd := &cobra.Command{
		Use:   "run [--config job.yaml] [flags]",
		Short: "Run or resume a job; with no arguments, run the bundled sample against the built-in simulator",
		Example: examples(
			"# the bundled sample against the built-in simulator",
			"convertro-etl run",
			"# yesterday's partitions, every night",
			"convertro-etl run --source gs://acme-exports/segment/tracks --state gs://acme-exports/state/nightly \\",
			"  --from yesterday --to yesterday --account acme --client-name acme --site-id 12 --event 'Signed Up=signup'",
			"# the requests a run would send, and its report as JSON, sending nothing",
			"convertro-etl run --config job.yaml --dry-run --out requests.jsonl --report-json -",
		),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, given, err := f.options()
			if err != nil {
				return err
			}
			e := env()
			if !given {
				return jobs.Demo(cmd.Context(), e)
			}
			rep, err := jobs.Run(cmd.Context(), o, e)
			return withReport(o, e, rep, err)
		},
	}
	f = bindJobFlags(cmd.Flags(), jobs.CmdRun, lookup)
	return cmd
}

func newPlanCmd(env func() jobs.Env, lookup func(string) (string, bool)) *cobra.Command {
	var f *jobFlags
	cmd := &cobra.Command{
		Use:   "plan [--config job.yaml] [flags]",
		Short: "Show what a run would read: files, row groups, rows, shards",
		Example: examples(
			"convertro-etl plan --config job.yaml",
			"convertro-etl plan --source gs://acme-exports/segment --from 2024-01-01 --to 2024-01-31 --shard 0/4",
		),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, _, err := f.options()
			if err != nil {
				return err
			}
			return jobs.PrintPlan(cmd.Context(), o, env())
		},
	}
	f = bindJobFlags(cmd.Flags(), jobs.CmdPlan, lookup)
	return cmd
}

func newStatusCmd(env func() jobs.Env, lookup func(string) (string, bool)) *cobra.Command {
	var f *jobFlags
	var so jobs.StatusOptions
	cmd := &cobra.Command{
		Use:   "status --state URI",
		Short: "Progress and counts of a job across its shards; --done exits 0 only when all are finished",
		Long: `status reads every shard's manifest in the state location and shows one job:
each shard of the count the state records (finished, running with its lease
holder, stopped, stopped uncleanly, failed, or not started), their summed
counts, and the job's progress and ETA. It writes nothing.

With --done its exit code says whether the whole job is done, for the step of a
workflow that waits on all shards: 0 every shard finished, 2 every shard
finished but rows were dead-lettered or objects set aside, 4 not finished yet
(shards running, stopped or not started), 5 a shard's last run failed, 1 the
state could not be read.`,
		Example: examples(
			"convertro-etl status --state gs://acme-exports/state/nightly",
			"convertro-etl status --state ./.convertro-state --json",
			"# the step after the shards: exit 0 only when all finished, the merged report on stdout",
			"convertro-etl status --state gs://acme-exports/state/nightly --done --report > report.json",
		),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, _, err := f.options()
			if err != nil {
				return err
			}
			so.State = o.State
			return jobs.Status(cmd.Context(), so, env())
		},
	}
	f = bindJobFlags(cmd.Flags(), jobs.CmdStatus, lookup)
	fs := cmd.Flags()
	fs.BoolVar(&so.JSON, "json", false, "print the job's status (every shard, the totals) as JSON")
	fs.BoolVar(&so.Report, "report", false, "print the job's report merged from its shards as JSON (counts summed; they add up as a run's do)")
	fs.BoolVar(&so.Done, "done", false, "exit 0 only if every shard finished: 2 with dead letters or objects set aside, 4 not finished yet, 5 a shard failed")
	return cmd
}

func newSimulateCmd(env func() jobs.Env) *cobra.Command {
	var (
		listen, record string
		o              simulator.Options
		rejectSIDs     []string
	)
	cmd := &cobra.Command{
		Use:   "simulate --listen ADDR --record FILE",
		Short: "Serve a Convertro simulator over HTTP (validation, record file, /_stats, faults)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e := env()
			if record != "" {
				f, err := os.Create(record)
				if err != nil {
					return fmt.Errorf("create record file %s: %w", record, err)
				}
				defer f.Close()
				o.Record = f
			}
			o.RejectSIDs = rejectSIDs
			sim := simulator.New(o)
			defer sim.Close()
			// SIGTERM and SIGINT end the server; the record file is flushed on the way out.
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// Listening before logging names the real address when --listen
			// asks for port 0 (a free port, as tests do).
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("simulator listen %s: %w", listen, err)
			}
			e.Log.Info("simulator listening", "addr", ln.Addr().String(), "record", record)
			return sim.Serve(ctx, ln)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&listen, "listen", "127.0.0.1:8080", "address to listen on (port 0: a free port, logged)")
	fs.StringVar(&record, "record", "", "file to write one JSON line per accepted request to (created afresh)")
	fs.StringVar(&o.ClientName, "client-name", "", "accept only this client name (default: any)")
	fs.StringVar(&o.SiteID, "site-id", "", "accept only this site id (default: any)")
	fs.Int64Var(&o.Seed, "seed", 1, "seed for the deterministic faults")
	fs.Float64Var(&o.Fail500, "fail-500", 0, "share of requests answered 500")
	fs.Float64Var(&o.Fail429, "fail-429", 0, "share of requests answered 429")
	fs.DurationVar(&o.RetryAfter, "retry-after", time.Second, "Retry-After sent with 429s")
	fs.Float64Var(&o.Slow, "slow", 0, "share of requests answered after --slow-delay")
	fs.DurationVar(&o.SlowDelay, "slow-delay", 15*time.Second, "delay of slow answers")
	fs.Float64Var(&o.Drop, "drop", 0, "share of connections dropped without an answer")
	fs.DurationVar(&o.Delay, "delay", 0, "added to every answer (a far-away Convertro)")
	fs.Float64Var(&o.MaxRPS, "max-rps", 0, "hard requests-per-second ceiling, excess answered 429 (0 = none)")
	fs.StringArrayVar(&rejectSIDs, "reject-sid", nil, "device id answered with a permanent 400 (repeatable)")
	return cmd
}

func newGenerateCmd(env func() jobs.Env) *cobra.Command {
	var o generate.Options
	var start string
	cmd := &cobra.Command{
		Use:   "generate --out DIR --rows N",
		Short: "Write a realistic synthetic Segment export as Parquet, for demos and benchmarks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Out == "" {
				return fmt.Errorf("%w: --out DIR is required", jobs.ErrConfig)
			}
			if start != "" {
				t, err := time.Parse(time.DateOnly, start)
				if err != nil {
					return fmt.Errorf("%w: --start %q: want YYYY-MM-DD", jobs.ErrConfig, start)
				}
				o.Start = t
			}
			sum, err := generate.Generate(cmd.Context(), o)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%+v\n", sum)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.Out, "out", "", "output folder")
	fs.IntVar(&o.Rows, "rows", 10000, "rows in all")
	fs.Int64Var(&o.Seed, "seed", 1, "seed (same seed, same files)")
	fs.StringVar(&o.Layout, "layout", "warehouse", "warehouse, datalake, upper or nested")
	fs.StringVar(&start, "start", "", "first day (YYYY-MM-DD)")
	fs.IntVar(&o.Days, "days", 0, "number of daily partitions")
	fs.IntVar(&o.RowGroupRows, "row-group-rows", 0, "rows per row group")
	return cmd
}
