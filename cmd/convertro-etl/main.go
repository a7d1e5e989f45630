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
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal cancels the run gracefully; a second one gets the
	// default action, so an operator can always get out.
	context.AfterFunc(ctx, stop)
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
