// Package gocloudbench weighs objstore against gocloud.dev/blob, against
// the same emulator processes the conformance suite starts
// (fake-gcs-server, versitygw, Azurite) and local disk. Its figures and
// findings are the ones objstore's package doc gives for keeping our own
// interface:
//
//   - BenchmarkRangedRead reads one 30 MiB object by ranges as the Parquet
//     decoder does, through objstore.Store.Open and Reader.ReadAt and
//     through blob.Bucket.NewRangeReader, plain and pinned to the version
//     (a BeforeRead hook per driver), and reports throughput, allocations
//     and the requests each emulator served;
//   - TestConditionalWrites checks how each conditional write objstore's
//     state needs is expressed through gocloud, driver by driver, and which
//     error codes come back.
//
// It is a module of its own, so that gocloud.dev and its drivers'
// dependencies never enter the product's go.mod: `go test ./...` and
// `go vet ./...` in the repository root do not reach it (a folder with a
// go.mod is another module). Its go.mod requires the product through a
// replace of the repository root, so it measures the objstore of the same
// checkout. `make bench-gocloud` runs the test, then the benchmark six
// times, each a new process taking the ways of reading in the other order
// (-reverse) than the last; compare with `benchstat -col /impl`. By hand:
//
//	cd objstore/internal/gocloudbench
//	go test -count 1 . && go test -run '^$' -bench . -benchmem
//
// The package has no code outside its tests. A test or benchmark fails (it
// is never skipped) when an emulator is missing, with what to run, or when
// a read returns other bytes than were written. The benchmarks run one at
// a time, each reading sequentially from one goroutine.
package gocloudbench
