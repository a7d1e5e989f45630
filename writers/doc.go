// Package writers owns what the job writes besides Convertro requests:
//
//   - dry-run output: one JSON line per request a run would send,
//     {"method":"GET","url":"…"} (AppendDryRunLine);
//   - dead letters: Parquet files with one row per request Convertro refused
//     for good, with where its row came from (DeadLetter). The files the
//     state holds are made by DeadLetterFile and read back by
//     DecodeDeadLetters (ReadDeadLetters from a local copy); MergeDeadLetters
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
// Errors are wrapped once with the operation and the file ("read dead
// letters <name>: …", "close memberships /s/snapshot.parquet: …");
// underlying kinds stay reachable with errors.Is (os.ErrNotExist for a
// missing folder or file).
//
// # Concurrency
//
// A MembershipWriter is not safe for concurrent use: an audience sync writes
// its rows from one goroutine. The functions keep no state and are safe to
// call concurrently.
package writers
