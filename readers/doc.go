// Package readers owns object storage (local folders, file:// and gs://),
// listing with partition filters, and Parquet decoding with column resolution
// and type coercion into segment.Message values. It knows nothing of Convertro.
//
// # Storage
//
// A Source is one --source: a local path, a file:///path URI, or
// gs://bucket[/prefix]. One concrete type holds the rules (skipping,
// partitions, the date filter, sorting, version pinning, read bounds, error
// wrapping) over a tiny unexported driver per backend (dir.go, gcs.go), and
// one conformance suite runs against both.
//
// A source naming one object lists that object alone; otherwise it is a
// folder, and a GCS prefix is always a folder (gs://b/tracks does not list
// gs://b/tracks_old/). List returns objects sorted by Key, the path relative
// to the source, with their size and version: the GCS generation, or the
// local modification time in nanoseconds. Scan also says what the date
// filter did.
//
// Objects that are not data are skipped and returned with a reason, so that
// nothing vanishes unseen: "folder/" placeholders, zero-size objects,
// _delta_log/ contents, _SUCCESS, *.crc, *.json, and names or folders (below
// the source root) starting with "." or "_". Any other object is data,
// whatever its extension: a stray file fails in the Parquet reader, loudly.
//
// Partitions come from the object path (ParsePartition): day=, dt=, date=,
// hr=, hour=, year=/month=/day=, segment_type=, plain YYYY/MM/DD[/HH] and
// YYYY-MM-DD folders, and the table folder. SourceOptions.From and To
// (inclusive days, see ParseDay; UTC, as Segment partitions are) keep the
// objects whose day is in range. Objects whose path names no day are kept,
// since nothing says they are out of range, and counted in Listing.Undated so
// that the plan can say so. A year= and month= without a day= is no day.
//
// Open returns a File pinned to the listed version. On GCS every ReadAt is
// one ranged read of that generation, so a Parquet reader fetches the footer
// and then only the column chunks it decodes; nothing is downloaded whole or
// held in memory here, and the reader above chooses the read sizes (ranges
// of a few hundred KiB keep the request count low). Locally, a version
// cannot be pinned: Open compares size and modification time with the
// listing, and each ReadAt re-checks them with one fstat, which catches a
// file rewritten in place (a file replaced by rename keeps being read from
// the old inode, which is the listed version). A same-size local rewrite
// within the file system's timestamp granularity goes unnoticed.
//
// GCS clients come from NewGCSClient: Application Default Credentials, or
// the emulator named by STORAGE_EMULATOR_HOST without credentials. A
// command line creates one and passes it in SourceOptions.GCSClient to every
// source; a Source given none creates its own and closes it in Close.
//
// Decoding: see the section below.
//
// # Errors
//
// Errors name the operation and the object once ("open gs://b/k: ...",
// "list gs://b/prefix: ...", "read /data/x.parquet at 4096: ...") and carry
// a kind for errors.Is:
//
//   - ErrNotFound: the object, folder, bucket or prefix does not exist (GCS
//     ErrObjectNotExist and ErrBucketNotExist map to it). A source under
//     which nothing at all is listed is ErrNotFound: on GCS a missing prefix
//     and an empty one are the same thing.
//   - ErrChanged: the object was rewritten since it was listed. GCS: the
//     listed generation is gone but the object exists (at Open, or during a
//     read). Local: size or modification time differ (at Open, or during a
//     read). The run must stop rather than mix two versions of a file.
//   - ErrBadFile: see the decoding section.
//
// Other errors (permissions, network, a malformed source URI) are returned
// wrapped as they come.
//
// # Concurrency
//
// A Source and the Files it opens are safe for concurrent use; ReadAt may
// be called from several goroutines at once (each GCS call is its own ranged
// request; local reads use pread). The context given to Open governs the
// File's reads, as io.ReaderAt has no context argument: cancel it only when
// done with the File. Close a Source after its Files.
package readers
