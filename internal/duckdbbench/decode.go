package main

import (
	"context"

	"github.com/convertro-etl/convertro-etl/internal/benchdecode"
)

// decodeOnly reads every row group of dir with the job's reader, batch size
// and parallelism (GOMAXPROCS row groups at once) and does nothing with
// the rows: what the dry run costs before it maps, encodes and writes, and
// the reader's own rate beside DuckDB's scan of the same columns.
func decodeOnly(ctx context.Context, dir string) (int64, rate, error) {
	return timed(func() (int64, error) { return benchdecode.DecodeAll(ctx, dir) })
}
