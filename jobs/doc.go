// Package jobs owns the kinds of job an operator runs — backfill, audience, migration —
// and what each means: which sources to read, which settings apply, and what
// "done" is. A job wires the parts below it together: readers lists and
// decodes the export, convertro maps each row and delivers the requests,
// writers keeps dead letters and dry-run output, and pipeline runs the stages,
// the checkpoint manifest and the report. jobs itself talks neither HTTP nor
// Parquet.
//
// The audience sync (kind "audience", audience.go) keeps Convertro's view of
// Engage audiences, and of Engage computed traits (traits.go: typed values,
// a removed trait sent as an empty value), in step with a source of
// memberships and trait values: it diffs the source
// against a snapshot of what Convertro was last told, partition by partition
// in temporary spill files (audience_diff.go), delivers only the changes on
// the same pipeline, and makes the new snapshot current once every change
// is handled.
//
// Each kind is a Kind (kind.go) registered in one list that --job's help,
// validation, run, plan and replay read; what a kind leaves unset behaves as
// a backfill. Adding a kind is one file declaring its Kind and its line in
// the list.
//
// The migration (kind "migration", migration.go) is a backfill of a long
// history over many invocations: its plan goes oldest partition first, plan
// estimates its requests and the days at the daily cap, and status gives an
// ETA. The cap itself (Options.MaxRequestsPerDay, for backfills too) is
// pipeline.Config.MaxRequestsPerDay.
//
// A date range (--from, --to) selects the objects whose path names a day
// by that day, and the rows of the others by their event time
// (timefilter.go): each such object gets a pipeline.TimeFilter, decided from
// the ledger so that a recurring job reads every instant of an object once,
// whose row groups are pruned by their footer statistics
// (readers.ParquetFile.EventTimeBounds) and whose rows outside it Decode
// marks skipped as SkipOutsideTimeRange.
//
// Options are declared once, in the table of options.go (Table): each
// entry gives an option's flag, job-file key, CONVERTRO_ETL_ environment
// variable, default, help, subcommands and range. The command line binds its
// flags from it; ReadJobFile, FromEnv and Overlay are the layers it stacks
// (flag over environment over job file over default); withDefaults and
// Check read it too. Adding an option is a field and a table entry.
//
// What an operator sees of a job besides its summary: Status (one view of
// the job across its shards: each shard of the count the state records,
// finished, running with its lease holder, stopped cleanly or not, failed
// or not started; progress, counts, dead letters by refusal, the job's
// totals and ETA, a report merged from the shards' manifests, and a verdict
// for a workflow step that waits on every shard), ListDeadLetters (each
// dead letter, URLs only on request, as they hold personal data; parts no
// manifest lists are named as orphaned, and Replay deletes them under the
// lease), and metrics pushed to a Pushgateway during and at the end of a run
// (metrics.go), grouped by job fingerprint and shard.
//
// # Errors
//
// ErrConfig for a job that cannot start as configured (missing setting,
// malformed flag or job file); otherwise the kinds of the packages below,
// wrapped once with what was being done: readers.ErrNotFound, ErrChanged and
// ErrBadFile, convertro.ErrInvalidSettings, the client's convertro.ErrDown,
// ErrUnauthorized and ErrGaveUp (a send that stops the run; its request is
// not dead-lettered), and pipeline's ErrLeaseHeld,
// ErrLeaseLost, ErrJobMismatch, ErrStopped, ErrMisconfigured, ErrIncomplete
// and ErrCapReached (the day's request cap is spent: run again the next day).
// Status with Done returns ErrShardFailed, ErrNotDone or
// pipeline.ErrIncomplete for a job that is not finished and complete.
// The command line maps these kinds to exit codes in one place.
//
// A live run lists its sources whole, plans the objects its ledger holds
// before it starts, and reads the other objects' footers while it sends,
// handing them to the pipeline in segments (pipeline.Planner); plan and
// dry runs read every footer first.
//
// A bad file (readers.ErrBadFile, and a zero-byte object named *.parquet)
// fails the job with OnBadFile "fail" (in a live run, when its footer is
// read: the objects before it may be delivered already); with "skip" it is
// set aside, at
// planning when its footer is bad, or by the pipeline (the Decoder wraps
// pipeline.ErrSkipObject) when a row group turns out bad, and the job ends
// with ErrIncomplete. A URL over MaxURLBytes is dead-lettered unsent, its
// record holding only the URL's start (a dry run does not list it).
// Replay ends with ErrIncomplete while dead letters remain, and with
// pipeline.ErrStopped when cancelled.
//
// # Concurrency
//
// Run, PrintPlan, Status and Demo may be called from several goroutines, each
// with its own Options; two runs on the same state location are kept apart by
// the manifest's lease, not by this package. A run with MetricsPush pushes
// from a goroutine of its own, which it stops before the final push.
package jobs
