// Command convertro-etl reads Segment events exported as Parquet, turns them
// into the requests Segment's Convertro destination sends, delivers them, and
// keeps a checkpoint manifest so that a killed run resumes.
//
// main only wires the process (signals, standard streams, exit code) into run,
// which tests call directly.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

func main() {
	// A crash (an unrecovered panic, a fatal runtime error such as running
	// out of memory) must not exit with a status the exit codes give a
	// meaning to: Go exits 2 by default, "finished, with skipped objects".
	// "crash" makes the runtime abort with SIGABRT instead, after printing
	// every goroutine's stack.
	debug.SetTraceback("crash")
	crashForTests()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal cancels the run gracefully; a second one gets the
	// default action, so an operator can always get out.
	context.AfterFunc(ctx, stop)
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
