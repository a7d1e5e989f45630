package main

import (
	"errors"

	"github.com/convertro-etl/convertro-etl/jobs"
	"github.com/convertro-etl/convertro-etl/pipeline"
)

// Exit codes: the contract with schedulers (see README, "Exit codes").
const (
	exitOK         = 0 // every row delivered or skipped for a documented reason
	exitFailed     = 1 // failed or stopped; running the same command again resumes
	exitIncomplete = 2 // finished, but rows were dead-lettered or objects skipped
	exitLater      = 3 // nothing to do now: another run holds the lease, or a cap was reached

	// status --done only: the job across its shards.
	exitNotDone     = 4 // shards running, stopped or not started; none failed
	exitShardFailed = 5 // a shard's last run failed
)

// exitCode is the one place where an outcome becomes an exit code.
func exitCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, pipeline.ErrLeaseHeld):
		return exitLater
	case errors.Is(err, pipeline.ErrCapReached):
		return exitLater
	case errors.Is(err, pipeline.ErrIncomplete):
		return exitIncomplete
	case errors.Is(err, jobs.ErrShardFailed):
		return exitShardFailed
	case errors.Is(err, jobs.ErrNotDone):
		return exitNotDone
	default:
		return exitFailed
	}
}
