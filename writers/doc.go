// Package writers owns what the job writes besides Convertro requests:
//
//   - dry-run output: one JSON line per request a run would send,
//     {"method":"GET","url":"…"} (DryRun, AppendDryRunLine);
//   - dead letters: Parquet files with one row per request Convertro refused
//     for good, with where its row came from (DeadLetter). A local file is
//     streamed with CreateDeadLetters and committed by Close (temporary file,
//     fsync, rename); in-memory files for a state store are made by
//     DeadLetterFile and read back by DecodeDeadLetters; MergeDeadLetters
//     joins the files of several run segments without repeats;
//   - audience sync files: Parquet rows of Membership (user, audience or
//     computed trait, member, device id, ts, a trait's typed value),
//     streamed by CreateMemberships and committed by Close, for an audience
//     job's snapshot and changes;
//   - in the generate subpackage, the synthetic Segment exports used by the
//     demo, the tests and the benchmarks.
//
// It decides nothing about what is sent.
//
// # Errors
//
// Errors are wrapped once with the operation and the file ("close dead
// letters /s/dead-letters-r-1.parquet: …", "read dead letters <name>: …",
// "write dry-run line: …"); underlying kinds stay reachable with errors.Is
// (os.ErrNotExist for a missing folder, the io.Writer's own error for a
// failed dry-run write). ErrClosed marks a Write after Close. A DryRun keeps
// its first write error and returns it from every later call.
//
// # Concurrency
//
// A DeadLetterWriter is safe for concurrent use (a mutex orders the rows).
// A DryRun is not: the pipeline writes its lines from one goroutine, in the
// order it decided. The functions keep no state and are safe to call
// concurrently.
package writers
