// Package readers owns what a source holds: listing with partition
// filters, and Parquet decoding with column resolution and type coercion
// into segment.Message values. It knows nothing of Convertro, and names no
// cloud SDK: every byte comes through the storage layer, objstore.
//
// # Sources
//
// A Source is one --source: a local path, a file:///path URI, or
// scheme://bucket[/prefix] of any store objstore serves (gs://, s3://,
// az://, abfss://). The Source holds the rules (skipping, partitions, the
// date filter, sorting, version pinning, read bounds, error wrapping) over
// an objstore.Store; the listing suite runs on local disk and on each
// store's emulator.
//
// A source naming one object lists that object alone; otherwise it is a
// folder, and a bucket prefix is always a folder (gs://b/tracks does not
// list gs://b/tracks_old/). List returns objects sorted by Key, the path
// relative to the source, with their size and version (objstore.Attrs: the
// GCS generation, the S3 or Azure ETag, the local modification time). Scan
// also says what the date filter did.
//
// Objects that are not data are skipped and returned with a reason, so that
// nothing vanishes unseen: "folder/" placeholders, zero-size objects,
// _delta_log/ contents, _SUCCESS, *.crc, *.json, and names or folders (below
// the source root) starting with "." or "_". Any other object is data,
// whatever its extension: a stray file fails in the Parquet reader, loudly;
// in a Delta table, only the files of the version read are data (see Delta
// tables below).
//
// Partitions come from the object path (ParsePartition): day=, dt=, date=,
// hr=, hour=, year=/month=/day=, segment_type=, plain YYYY/MM/DD[/HH] and
// YYYY-MM-DD folders, and the table folder. SourceOptions.From and To
// (inclusive days, see ParseDay; UTC, as Segment partitions are) keep the
// objects whose day is in range. Objects whose path names no day are kept,
// since nothing says they are out of range, and counted in Listing.Undated so
// that the plan can say so. A year= and month= without a day= is no day.
//
// Open returns a File pinned to the listed version; OpenListed does the same
// without asking the store (the listing gave the version and size), and the
// first read finds a version gone since. In a bucket every ReadAt is one
// ranged read of that version, so a Parquet reader fetches the footer and
// then only the column chunks it decodes; nothing is downloaded whole.
// What the Parquet reader reads is planned in rangeread.go: a footer is one
// read of the file's tail, kept by the Source for the decoders of that
// version (bounded in bytes; a local Source keeps none: one pread costs
// less than holding it); a row group's column chunks are read as a few
// exact ranges (neighbours merged while the gaps add at most 5%, or 128 KiB) in
// parallel, at most SourceOptions.ReadConcurrency reads in flight, and
// ParquetFile.Prefetch reads the next row groups while others decode, as
// many as the budget has room for (MemoryBudget.AheadGroups says how many
// to ask for; Reads how many the decoders found read ahead). What
// is held in memory is bounded by a MemoryBudget (budget.go) shared by a
// job's sources: the row groups decoded and read ahead and the footers
// kept; a row group larger than a decoder's share of it is streamed, a
// window of each column chunk at a time. The buffers of large row groups
// decoded are kept for the next fetches (up to an eighth of the budget
// idle), not left to the collector. Bytes served from memory are
// checked against the version as a read would be. Locally, a version
// cannot be pinned: Open compares size and modification time with the
// listing, and each ReadAt re-checks them with one fstat, which catches a
// file rewritten in place (a file replaced by rename keeps being read from
// the old inode, which is the listed version). A same-size local rewrite
// within the file system's timestamp granularity goes unnoticed. A read
// that failed or saw a change returns no bytes with its error, and the
// decoders check for a failed read after every batch, before handing it
// on: a library that ignores the error of a read that came back full
// (io.ReaderAt allows both) cannot slip bytes of another version through.
//
// # Delta tables
//
// A folder holding _delta_log/ (the source, or any folder below it) is a
// Delta table, read from its log and not as a heap of Parquet files
// (delta.go): the state of one version is the last complete classic
// checkpoint (single- or multi-part Parquet, read with parquet-go after the
// same footer checks as a data file) at or before it and the JSON commits
// after it, add and remove actions reconciled by path and deletion vector.
// The listing, needed for the commits anyway, says which checkpoints exist,
// so _last_checkpoint is not read. Scan lists the table's live files (add
// paths URL-decoded, or absolute URIs inside the table's folder), with
// the day, hour and type their partition values give, and
// skips the files the version does not hold as SkipNotInTable; a live file
// missing from the folder is ErrNotFound. SourceOptions.TableVersions pins
// the version read, and Listing.Tables says which was read, for a resume
// to read the same one. SourceOptions.Since and Delivered let a recurring
// job's next run recognise the files OPTIMIZE compacted from delivered ones
// (Object.Carried), and count the delivered files rewritten by data
// changes (Listing.Rewritten).
//
// What cannot be read correctly is ErrUnsupported, naming why: a live file
// with a deletion vector, column mapping, unknown reader features or a
// reader version above 3, a state only in a v2 (UUID-named or sidecar)
// checkpoint, a data file outside the table's folder, a partition column
// the mapping would read other than the day, hour and type, and an Iceberg
// table (metadata/*.metadata.json with no _delta_log/ beside it).
//
// A symlink loop in a local folder is listed as data, and opening it is
// ErrBadFile ("symlink loop"): set aside or fatal as the caller decides,
// like any unreadable file, instead of aborting the listing.
//
// Clients, credentials and endpoints are objstore's: one client per
// service per process, found the way each ecosystem's tools find them.
//
// Decoding: see the section below.
//
// # Decoding
//
// OpenParquet reads a file's footer and nothing else (the page index and
// bloom filters are skipped). Nothing a file claims is trusted before it is
// checked (bounds.go): the magic bytes and the footer length first, then a
// walk over the footer's Thrift encoding checks every list, string and map
// length against the bytes left, the nesting depth and the memory decoding
// would take, before parquet-go, which allocates whatever a list header
// claims, decodes it. Pages are read through a guard that walks each page
// header before a byte of it reaches parquet-go and checks its sizes and
// counts against the column chunk, the row group and fixed ceilings (1 GiB
// uncompressed, 64 times the compressed size above 16 MiB, values no more
// than the row group's rows, a dictionary no more values than its bytes
// hold). A file beyond them is ErrBadFile, never an allocation. Both walks
// step over strings without reading them, and leave min and max values over
// 4 KiB out of the statistics parquet-go decodes (a writer may record a
// huge value whole there); an uncompressed page of text over 4 MiB holding
// a value longer than MaxValueBytes reaches parquet-go with its values
// already cut (hugepage.go), so such a value is never held whole unless its
// page is compressed. It resolves, once per file, the column behind each field of segment.Message:
// for each field it tries, in order and case-insensitively, the warehouse
// name (context_device_id), the Data Lakes name (properties_total), the
// camelCase name (contextDeviceId) and the nested path (context → device →
// id). In the users table `id` is the user id. A missing column is NULL for
// every row. The column's physical and logical types, read from this file's
// footer (a column may drift between files), choose the decoder: strings
// from BYTE_ARRAY (plain or dictionary), INT32/INT64 or DECIMAL ids as text;
// numbers from INT32/INT64 (signed or unsigned)/FLOAT/DOUBLE, DECIMAL over
// INT32/INT64/FIXED_LEN_BYTE_ARRAY/BYTE_ARRAY, or lenient text
// (ParseNumber), each keeping its own decimal form (segment.Number): a
// DECIMAL's digits come from its unscaled integer and scale, never from a
// float64, as do an INT64's past 2^53 and the text's own digits (without
// `$`, `+` and commas) when it has no exponent, and a FLOAT is marked as
// 32-bit so that it is printed as the value it holds;
// timestamps from INT64 TIMESTAMP(MILLIS/MICROS/NANOS), plain INT64
// microseconds, INT96, DATE or ISO-8601 text (ParseTimestamp), all UTC;
// booleans from BOOLEAN or exactly true/false text (ParseBool), and a
// numeric `repeat` or integrations column counts as absent, as the wire
// rules say. NaN and infinite numbers, and instants outside years 1–9999,
// are absent. The result is a plan of leaf column indexes and decoders: no
// name lookups or reflection per row.
//
// The message type is, first match wins: a `type` column, row by row (rows
// where it is NULL fall back to what follows); the segment_type= partition;
// the table folder (identifies and users: identify; pages, screens, groups,
// aliases; tracks and any other table, such as order_completed or track_*:
// track); the presence of an event or event_text column (track); the
// operator's Hint, only when none of these tells. A track file must have
// event or event_text, an identify file user_id (id in users).
//
// FieldNulls says, from a row group's column statistics alone, how many of
// its rows hold NULL in a field (every row when the file has no column for
// it), or that the statistics do not tell: plans count with it what rows
// will do without reading them. EventTimeBounds says, from the statistics
// of the timestamp columns, between which instants the event times of a
// row group's rows lie, or that they do not tell (text or INT96 timestamps,
// no statistics, rows that may have no event time): plans prune with it.
//
// ReadRowGroup decodes one row group, the unit of work, in batches (1024
// rows by default). It reads only the planned column chunks, page by page,
// with parquet-go's page API, and each column writes its field straight
// into the batch's messages from the page's typed values, dictionary
// indexes and definition levels (pages without NULLs skip the levels).
// Values of plain byte-array pages are copied, one copy per page slice,
// into a per-batch arena of fixed chunks reused batch after batch;
// dictionary values are referenced in the column chunk's dictionary, which
// is immutable. Either way they are valid until fn returns, and nothing is
// allocated per value.
//
// Why parquet-go's pages: on the 1M-row, 40-column Snappy benchmark
// (BenchmarkParquetDecode, 15 columns read, one core) a plain walk over
// parquet-go pages reads about 5M rows/s, arrow-go's typed column chunk
// readers about 1M rows/s with 470 B allocated per row; earlier
// measurements put arrow-go's record path (pqarrow) at 1.0M and parquet-go's
// row reader into structs at 0.55M rows/s. Decoding down to messages runs at 3.5–3.9M rows/s per
// core, 0.7–0.8 of the plain page walk, with about 6 B and 0.008
// allocations per row.
//
// # Tables
//
// OpenTable reads a Parquet object as plain named columns, for inputs that
// are not Segment messages (audience memberships, computed trait values,
// device lookups, a job's own state files): Table.ReadRowGroup streams the
// chosen flat columns, found case-insensitively (a nested column also by its
// path joined with underscores), as Cells holding text (a DECIMAL as its
// exact digits, never through a float), and a Bool and Time where the value
// is or parses as one. Its errors follow OpenParquet's.
//
// # Errors
//
// Errors name the operation and the object once ("open gs://b/k: ...",
// "list gs://b/prefix: ...", "read /data/x.parquet at 4096: ...") and carry
// a kind for errors.Is:
//
//   - ErrNotFound (objstore.ErrNotFound): the object, folder, bucket or
//     prefix does not exist. A source under which nothing at all is listed
//     is ErrNotFound: in a bucket a missing prefix and an empty one are the
//     same thing.
//   - ErrChanged: the object was rewritten since it was listed. In a
//     bucket: the listed version is gone but the object exists (at Open, or
//     during a read). Local: size or modification time differ (at Open, or during a
//     read). The run must stop rather than mix two versions of a file.
//   - ErrUnsupported: a Delta table feature or an Iceberg table that
//     cannot be read correctly (see Delta tables).
//   - ErrBadFile: see the decoding section. OpenParquet and ReadRowGroup
//     return it for an object that is not Parquet, is truncated or has a
//     corrupt footer, a column whose type cannot hold its field (a list, a
//     struct, a BOOLEAN total, ...), a file whose message type cannot be
//     told (the message says how to force it) or that lacks a required
//     column, a corrupt column chunk, a footer or page header claiming more
//     than the file holds or the limits allow, and (Source.Open) a local
//     symlink loop; the message names the object and,
//     where one is at fault, the row group and the column. A panic inside
//     the Parquet library while decoding is recovered and reported the same
//     way. A failing read of the File itself (ErrChanged, ErrNotFound, the
//     network) is returned as that error, not as ErrBadFile.
//
// A server that cannot be reached (an endpoint, an emulator, a credentials'
// token server) is an *objstore.UnreachableError that names it and what
// fixes it; no storage call waits for ever (see objstore). A listing given
// SourceOptions.Logger logs how many objects it has seen about every 10 s.
//
// Other errors (permissions, network, a malformed source URI) are returned
// wrapped as they come.
//
// # Concurrency
//
// A Source and the Files it opens are safe for concurrent use; ReadAt may
// be called from several goroutines at once (each remote read is its own
// ranged request; local reads use pread). The context given to Open governs the
// File's reads, as io.ReaderAt has no context argument: cancel it only when
// done with the File. Close a Source after its Files.
//
// A ParquetFile does not change after OpenParquet: ReadRowGroup may run
// concurrently for different row groups (each call has its own page
// readers, batch and arena), as long as the File allows concurrent ReadAt.
// The batch passed to fn is the caller's only during fn. fn may set Type,
// which each batch resets; it must not change the other fields, which a
// file without their column never rewrites.
package readers
