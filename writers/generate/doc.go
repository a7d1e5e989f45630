// Package generate writes realistic synthetic Segment exports as Parquet,
// for demos, end-to-end tests and benchmarks: `convertro-etl generate`.
//
// It owns the logical event model (Event, Events), its random but
// deterministic generation, and four physical layouts of the same events:
//
//   - warehouse: BigQuery EXPORT DATA of Segment warehouse tables,
//     <out>/<table>/day=YYYY-MM-DD/hr=HH/000000000000.parquet, snake_case
//     names, TIMESTAMP(MICROS, UTC), DOUBLE numbers, BOOLEAN repeat; the
//     order_completed files of the second day (when Days > 1) hold total
//     and revenue as STRING ("49.99", "$1,299.50", " 12.5 ", "NA").
//   - datalake: Segment Data Lakes, <out>/<table>/segment_type=<type>/
//     day=YYYY-MM-DD/hr=HH/part-00000.parquet with tables identifies,
//     pages, tracks, track_order_completed, track_application_installed;
//     event properties prefixed properties_; INT96 timestamps.
//   - upper: Snowflake COPY INTO, warehouse paths, UPPER CASE names,
//     TIMESTAMP as TIMESTAMP(MILLIS), the other times as ISO-8601 text,
//     TOTAL as DECIMAL(38,6) over FIXED_LEN_BYTE_ARRAY(16), integrations as
//     "true"/"false" text.
//   - nested: raw Segment JSON converted to Parquet by Spark,
//     <out>/<table>/dt=YYYY-MM-DD/part-00000.snappy.parquet, camelCase
//     names in alphabetical order, nested optional structs (context.device.id,
//     properties.total, integrations.Convertro), a per-row type column, ISO
//     text times.
//
// The same Options but Layout give the same events: message ids, users,
// devices, names, values, times and NULLs. Only names, nesting, physical
// types and paths differ, so every layout must produce the same Convertro
// requests. The same Options give byte-identical files.
//
// Shares: identifies 20%, tracks 35% (Product Viewed, Added to Cart,
// Checkout Started, Signed Up, Promotion Clicked), order_completed 25%,
// application_installed 5%, pages 15%. The tracks table holds only events
// without a table of their own: a real warehouse copies every Order
// Completed into tracks too, which the job must then skip; writing each
// message once keeps the expected requests plain. NULLs where real data has
// them: identifies without user_id (~10%), rows without device id (~3%),
// orders without repeat (~40%), without order_id (~1%), with total (~60%),
// revenue only (~25%) or neither (~15%), zero and negative totals (~1% each;
// refunds are written "-12.50", never "-$12.50", in text amounts),
// rows without timestamp (~0.5%) and, very rarely, without any time at all;
// integrations columns in three files out of four of identifies, tracks and
// order_completed, with Convertro=false (~1%) and All=false (~1%, half of
// them with Convertro=true). Timestamps are whole milliseconds.
//
// Summary.Rows counts rows by the table folder as written (datalake:
// track_order_completed). Events yields the same rows, whatever the layout,
// ordered by table, day, hour and row (the files' order by table and path),
// so tests can compute expectations.
//
// Rows are spread over Days days and 24 hours along a daily traffic curve;
// each (table, day, hour) draws from its own PCG stream seeded from Seed.
// Files are Snappy-compressed, have a row group every RowGroupRows rows, and
// a partition larger than four row groups continues in a new shard file.
//
// # Errors
//
// Generate returns errors wrapping ErrInvalidOptions (the message names the
// option) before writing anything; file errors name the operation and the
// file ("create /out/tracks/...: ..."); a cancelled context returns the
// context's error. Files are written under a temporary dot-name and renamed
// when complete: an interrupted run leaves whole files only (a killed
// process may leave a dot-named temporary, which the readers' listing
// skips). Files of the same names are replaced and nothing else is
// removed, so generate into an empty folder: shards left by an earlier,
// larger run would be read as data.
//
// # Concurrency
//
// Generate writes up to GOMAXPROCS folders at once, each on its own
// goroutine with its own generator and one open file; the first error
// cancels the others and is returned. A folder's content depends only on the
// options, so the bytes do not depend on scheduling. Two calls may run at
// once on different folders. Events returns an iterator for one goroutine
// at a time; each call starts afresh, and the strings it yields stay valid.
package generate
