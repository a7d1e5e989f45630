// Command duckdbbench weighs the job's dry run against DuckDB reading the
// same Parquet files, in one process and one run, and prints the rows a
// second of four sides and their ratios:
//
//   - the dry run: jobs.Run with DryRun, the requests written to a file
//     (list, footers, decode, skips, mapping, URL encoding, JSON lines);
//   - a DuckDB scan of the same columns: for every file, the columns the
//     job's reader resolves (readers.ParquetFile.Columns), read by
//     read_parquet over the files that share that set of columns and
//     consumed whole (the byte length of every string, a hash of every
//     other value, aggregated, so that no statistic can answer it), with
//     as many DuckDB threads as GOMAXPROCS;
//   - the job's reader alone: every row group decoded into segment.Message
//     batches with the job's batch size and parallelism, and dropped, so
//     that the table says whether a gap to DuckDB is in the decoding
//     (reader/scan) or in what the job does with the rows (dry/reader);
//   - DuckDB doing the dry run's whole job in SQL (wholejob.go): the same
//     skips, the mapping of events, values, event ids and times, the URL
//     encoding, and COPY ... TO a JSON-lines file, for the settings of
//     jobs.DemoOptions. Its rate is in rows of the input a second, as the
//     others'. The first output of each is kept and compared, line for
//     line as multisets (DuckDB writes in its own order): a run whose
//     outputs differ in any line fails, naming some of them.
//
// The inputs are exports written by the project's generator (the
// warehouse and datalake layouts, 10,000-row row groups) and one wide file
// written here (wide.go): the 37 columns of a generated warehouse tracks
// file and four more a wider tracks table carries, 41 in all, of which the
// job reads 14, in row groups of 131,072 rows. The sides alternate -reps times, starting
// with another side each time, and each keeps its best run, so
// that the page cache and bursts of load on a shared machine favour
// none. A side that counts other rows than another read fails the run.
//
// Two tables come out: rows a second of wall clock, which the goals are
// about, and rows a CPU second (the process's user and system time while
// the side ran, DuckDB's threads included). On a machine other work loads,
// the best of a few runs is still noisy in wall clock (the load average is
// printed at the start and the end); CPU time moves much less, and its
// ratios say which side spends less work on the same rows. Compare ratios
// from the same run only. DuckDB caches neither local files nor Parquet
// footers between queries (cache_local_files and parquet_metadata_cache
// are set off, as they are by default), so each of its runs reads the
// footers again, as each dry run does.
//
// -explain prints each scan query and DuckDB's EXPLAIN ANALYZE of it, to
// see what DuckDB did (it evaluates strlen of a dictionary column on the
// dictionary, for example). -cpuprofile PREFIX writes a CPU profile of the
// first dry run of each input (PREFIX-1.pprof, -2, -3 in table order), for
// `go tool pprof`.
//
// It is a module of its own because the DuckDB driver needs cgo and
// carries a prebuilt libduckdb: the product's go.mod never names it, and
// `go test ./...` in the repository root does not reach this folder. Its
// go.mod requires the product through a replace of the repository root, so
// it measures the job of the same checkout. `make bench-duckdb` runs it;
// by hand:
//
//	cd internal/duckdbbench && CGO_ENABLED=1 go run . -reps 3
//
// Exports are generated once into -work (default: the user cache folder)
// and reused while their parameters, recorded beside them, hold.
package main
