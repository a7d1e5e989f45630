// Package pipeline runs a job's work: it plans the units, shards them, drives
// the stages that decode, transform and send, keeps the checkpoint manifest
// and its lease, and reports.
//
// It knows nothing of Parquet, GCS or Convertro's rules: it consumes small
// interfaces declared here (Decoder, Transform, Sender, DeadLetterSink,
// StateStore) that the jobs package adapts from readers, convertro and
// writers.
//
// The files follow the responsibilities: run.go the API (Config, Deps, Run)
// and what the engines share; plan.go and shard.go the units; grow.go a
// plan that grows while the run goes (Planner); resume.go the manifest a
// run starts from; live.go the live engine's stages;
// checkpointer.go the goroutine that owns the manifest during a live run;
// replay.go a shard's dead letters sent again on the live engine; dryrun.go
// the dry run; manifest.go, manifeststore.go and lease.go the state;
// report.go, counts.go, progress.go and progressticker.go what a run tells
// (how progress is shown is the caller's: Deps.OnProgress).
//
// # Plan, units and shards
//
// A plan is the listing's objects, each with the rows of its row groups
// (BuildPlan). The unit of work, of checkpointing and of sharding is one row
// group of one object. A shard owns whole objects, by a hash of the object's
// key (Shard.Owns), which the listing alone gives: jobs reads only its own
// objects' footers, and ShardUnits keeps their units. The shards 0..n-1
// together cover every unit exactly once, and each shard has its own
// manifest, lease and report.
//
// A plan may grow while the run goes (Deps.Planner): jobs lists every
// source (the listing stays whole, so that the ledger can tell what is
// gone or rewritten), plans before the run the objects the ledger holds,
// and reads the footers of the others while the first units are decoded
// and sent, handing them over in segments in plan order. The feeder hands
// out a segment's units once the manifest holds it; the dry run's writer
// keeps plan order across segments, so its output is the same whatever
// the segments, and the dry run lets go of a segment once written, its
// Planner waiting while more than a backlog of units (dryBacklog) is not
// written yet; progress totals grow with the plan. A run that reaches the
// day's cap finishes its plan before it stops; a run stopped or killed
// while it plans keeps the segments its last commit named, and the next
// run plans the rest of the listing as new objects.
//
// An object may carry a TimeFilter (jobs sets one on an object whose path
// names no day, in a run with a date range): the row groups it prunes are
// no units, and the plan keeps it with the object, so that a resume reads
// what was planned and a later run knows what the object delivered. A
// finished object listed at the same version with another filter is planned
// again with it (mergeListing).
//
// # The manifest in storage
//
// A shard's manifest is stored apart from its plan (manifeststore.go). The
// plan, its objects and units, is a sequence of immutable parts, each named
// by its content (manifest version 6; a version 5 manifest's one plan is
// read as its only part). A segment a Planner adds writes one part, of its
// own objects, before the commit that names it; Begin writes a part of
// what the listing added, or, when the plan was changed in place (an
// object planned again, the ledger pruned), the whole plan as one part,
// deleting the parts it replaces, and any other part of the shard's
// plans the new manifest does not name: a run killed between storing a
// part and the commit naming it leaves one. The manifest object, rewritten at every
// commit, names the parts and holds the counts, the lease and the progress
// in compact form: runs of units done, and the units with partial
// progress. Units finish in about plan order, so a commit's size follows
// the work in flight, not the job: about 1.2 kB at 1%, 50% and 99% of
// 100,000 units whose plan is 3.4 MB, plus some 50 bytes per part name
// (segments double up to 8192 objects, so a million objects make about
// 130 parts). A commit still walks every unit once to compact them (a few
// milliseconds at a million). ListManifests reads the manifests alone,
// with a summary of the rows done; ReadManifest and OpenCheckpoint load the
// plan too.
// ShardFromEnv picks the shard from --shard i/n, a Kubernetes Indexed Job
// (JOB_COMPLETION_INDEX with --shards n) or Cloud Run Jobs
// (CLOUD_RUN_TASK_INDEX, CLOUD_RUN_TASK_COUNT).
//
// # Stages
//
// Run is one errgroup of stages joined by bounded channels:
//
//	feeder ─units─▶ decode workers (transform inside) ─requests─▶ senders ─acks─▶ checkpointer
//	                                                 ╰─────────skipped rows──────────▶
//
// The feeder passes the units in plan order, leaving out those the manifest
// marks done. Config.Decoders workers each decode one row group at a time (so
// at most that many are in memory), skip rows already done, and run the
// Transform on each row, copying each URL once. Config.Concurrency senders
// send. One checkpointer goroutine owns the manifest: it marks a row done when
// all its requests are acknowledged or dead-lettered (a row with no request at
// once), counts it in the same step, writes dead letters, and commits about
// once a second (Config.CommitInterval), at the end of a unit if a second has
// passed, and when the window is half full once a second has passed: never
// more than once per CommitInterval, the one write a second per object name
// that GCS allows and objstore holds every backend to. In what looks like
// the run's last second (the plan whole, the rows left less than a second
// at the run's rate, no decoder waiting for the window, and the rows not
// yet decoded no more than the window's free permits) it leaves its
// progress to the final commit, which would otherwise wait out the pacing
// after a commit made just before it; it defers by at most two intervals.
//
// A dry run (Deps.DryRun) decodes and transforms the same way but writes the
// requests, one JSON line each, in plan order whatever the number of decode
// workers (a unit's lines wait in reused chunks until its turn, and the
// unit whose turn it is is written as its lines are made, so that a large
// row group never holds its whole output); it takes no lease, writes no state and covers the whole shard
// whatever a manifest says. Its report says so (dry_run) and holds what it
// would send (would_send: requests, and the rows they would deliver), with no
// row delivered and no request sent; skipped objects are reported but do not
// make it fail.
//
// # Replay
//
// Replay sends a shard's dead letters again on the same engine: under the
// shard's lease, through the live run's senders (Config.Concurrency of
// them, the same Sender and so the same retries and the same stop when
// Convertro is down) and its checkpointer, which renews the lease while
// they send. Its source is the letters, each a row of one request, re-aimed
// by ReplayDeps.Retarget, in place of the feeder and decode workers. It
// takes no window and has no misconfiguration guard (a letter refused again
// stays a dead letter): its outcome is written once, in the manifest's
// final write after the sending, so a kill before it records nothing and
// the next replay sends every letter again. One function moves the counts
// (delivered letters from dead-lettered to acknowledged and
// RequestsReplayed, rows with no letter left from dead-lettered to
// delivered, letters refused again to their new group) and runs the count
// check before anything is recorded; ReplayDeps.Record stores the letters
// left and the replay's own record just before the manifest takes it.
//
// # Delivery guarantee
//
// At least once: a row is marked done only after all its requests are
// acknowledged or dead-lettered, so a killed run loses nothing. What it may
// repeat is bounded. Config.Window is the most requests taken for sending
// whose rows are not yet committed: a decode worker takes the permits of a
// row's requests before handing them to the senders, and the checkpointer
// gives them back only when it has committed the row. A kill can therefore
// make the next run send again at most Window requests, and the report's
// repeat_bound is window × resumes + possible_duplicates, the latter being
// retries after a timeout or a dropped connection, which Convertro may have
// received the first time too. The manifest records the largest Window of
// any run.
//
// The counts also group the dead-lettered requests by kind of refusal
// (DeadLetterClass: the status, or for a request refused unsent the error
// that says why), each with the start of its first answer, in a bounded map
// (MaxDeadLetterGroups), so that the report and status say why requests
// were refused without reading the dead-letter files. Deps.Committed, when
// set, gets the report so far after every commit, for figures pushed while
// the run goes.
//
// The counts live in the manifest, so they add up over resumes, and they
// count only completed rows, at the moment they are marked, so they always
// agree with the committed progress: rows read = delivered + skipped (by
// reason) + dead-lettered (a row with any dead-lettered request), and
// requests sent = acknowledged + dead-lettered.
//
// # Errors
//
// Run returns, wrapped once with the shard or the object:
//
//   - ErrStopped: ctx was cancelled; the progress is committed (status
//     "stopped") and the same command resumes.
//   - ErrMisconfigured: 20 requests in a row, at any point of the run, were
//     all refused the same way (a permanent 3xx or 4xx with the same status
//     and body start) with none accepted in between; they were not
//     dead-lettered. A shorter streak, or one that a success ends, is
//     dead-lettered as usual.
//   - ErrIncomplete, with the report: the run finished but rows were
//     dead-lettered or objects skipped. A finished job run again returns it
//     too while objects it set aside are unchanged in the listing; one the
//     listing shows at another version is planned again (its earlier units
//     retired, their counted rows kept) and read whole.
//   - ErrCapReached: the requests of the UTC day reached
//     Config.MaxRequestsPerDay; what was queued is sent and committed
//     (status "stopped") and the same command continues on a later day.
//   - ErrCountsMismatch: the counts do not reconcile (a bug; never success).
//   - ErrInputChanged: an input object differs from the plan the manifest
//     holds.
//   - ErrJobMismatch: the state holds another unfinished job (unless
//     Config.Fresh).
//   - A Planner's error ("plan shard …", wrapping the Planner's, such as a
//     footer that cannot be read): the run stops (status "failed") with the
//     progress of the segments planned before it committed.
//   - ErrLeaseHeld and ErrLeaseLost from the checkpoint, and the first
//     decode or send error that stopped the run (status "failed"). A
//     Decoder error that wraps ErrSkipObject does not stop it: the object
//     is set aside (recorded as skipped in the manifest, counted in
//     objects_skipped), its units not yet started are not read, and the rows
//     it completed stay counted.
//
// The state is an objstore location: its errors are objstore.ErrNotFound,
// objstore.ErrPrecondition and *objstore.UnreachableError, and its writes
// retry transient failures within their context's deadline (a checkpoint
// write allows one lease duration) and are paced to one a second per
// name (see objstore). A finished job run again writes its report if the
// state holds none (a kill between the final commit and the report).
//
// ShardFromEnv returns ErrInvalidShard. The command maps these kinds to exit
// codes in one switch.
//
// # Concurrency
//
// Run uses its own goroutines and returns when all have ended. Every channel
// send selects on the context, so the first error or a cancel stops every
// stage without leaks; in-flight requests finish or are abandoned (and sent
// again on resume), and the last commit is made with a context that is not
// cancelled. Decoder.Decode and Sender.Send are called from several
// goroutines at once; each Transform from one; DeadLetterSink from one (the
// checkpointer); the Planner from one of its own, whose add blocks until
// the run holds the segment. A Checkpoint belongs to the checkpointer
// while Run runs: the checkpointer appends segments to the manifest, and
// the feeder and decoders read the plan through a copy that a lock guards
// and whose elements never change once added.
package pipeline
