package readers

import (
	"errors"
	"io"
	"time"

	"github.com/convertro-etl/convertro-etl/objstore"
)

// Object is one object of a source as listed: a local file or an object in a bucket.
type Object struct {
	// URI names the object for people and for the manifest: a local path or scheme://bucket/key.
	URI string
	// Key is the object's path relative to the source root (slash-separated).
	Key  string
	Size int64
	// Version pins the version that was planned, opaquely (objstore.Attrs):
	// a GCS generation, an S3 or Azure ETag, a local modification time.
	Version string
	// Partition is what the object's path says about its date, hour and message type.
	Partition Partition
	// Carried marks a Delta table's file whose rows were delivered already,
	// as the files an OPTIMIZE since then compacted into it (see
	// SourceOptions.Since): it need not be read.
	Carried bool
}

// File is an opened object: random access by ranges, so that Parquet readers
// fetch the footer first and then only the column chunks they need.
type File interface {
	io.ReaderAt
	Size() int64
	Close() error
}

// Error kinds. Callers test them with errors.Is; the wrapped message names the object.
var (
	// ErrNotFound: the object (or source) does not exist. It is the
	// storage layer's kind, so that either package's test finds it.
	ErrNotFound = objstore.ErrNotFound
	// ErrChanged: the object was rewritten since it was planned (new generation or size).
	ErrChanged = errors.New("object changed since it was planned")
	// ErrBadFile: the object is not a Parquet file the readers can use (not Parquet,
	// truncated, corrupt footer, column of an unusable type, undetectable message type).
	ErrBadFile = errors.New("bad file")
)

// Partition is what an object's path says about it: Hive-style key=value
// segments (day=, hr=, dt=, date=, year=/month=/day=/hour=, segment_type=) or
// plain YYYY/MM/DD[/HH] folders, and the table folder name.
type Partition struct {
	// Day is the partition's date at UTC midnight; valid when HasDay.
	Day    time.Time
	HasDay bool
	// Hour is 0–23, or -1 when the path names no hour.
	Hour int
	// SegmentType is the value of a segment_type= segment, lower case ("" if none).
	SegmentType string
	// Table is the nearest folder name that is neither a key=value partition
	// nor a date folder, lower case ("" if none): "tracks" for
	// .../tracks/2024/01/02/x.parquet, "order_completed" for
	// dataset/order_completed/000000000000.parquet, "track_order_completed"
	// as is. Where the layout has one it names a Segment table (identifies,
	// users, tracks, an event table); elsewhere it may be a dataset or a
	// source id, so the Parquet reader, which uses it to detect the message
	// type, weighs it after a segment_type= partition.
	Table string
}
