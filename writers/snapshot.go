package writers

import (
	"fmt"

	"github.com/convertro-etl/convertro-etl/internal/localfile"
	"github.com/parquet-go/parquet-go"
)

// Membership is one row of an audience sync's files: in a snapshot, what
// Convertro was last told about one user and one user property (an audience
// or a computed trait, keyed by Audience); in a changes file, one request to
// send. TS (Unix seconds) is the time sent as ts; a snapshot keeps the ts of
// the request that told Convertro.
//
// Value is empty (NULL in the file) for an audience, whose value is Member.
// For a computed trait it is the value's type and its wire form, as the
// sync encodes them ("number:1234.5", "string:shoes", "removed:"), and
// Member says whether the trait is set. Files written before computed
// traits have no value column, which reads as NULL: audiences.
type Membership struct {
	UserID   string `parquet:"user_id"`
	Audience string `parquet:"audience,dict"`
	Member   bool   `parquet:"member"`
	DeviceID string `parquet:"device_id"`
	TS       int64  `parquet:"ts"`
	Value    string `parquet:"value,optional"`
}

// DefaultMembershipRowGroup is the row group size of a membership file when
// none is given: small enough that the writer's buffer stays a few MB.
const DefaultMembershipRowGroup = 128 << 10

// MembershipWriter streams Membership rows into one local Parquet file. Rows
// go to a temporary file next to the destination; Close flushes, fsyncs and
// renames it into place, so a file at the path is always complete. It is not
// safe for concurrent use.
type MembershipWriter struct {
	path string
	f    *localfile.File
	pw   *parquet.GenericWriter[Membership]
	buf  []Membership
	rows int64
}

// CreateMemberships starts a membership file that Close stores at path, with
// at most rowGroupRows rows per row group (0: DefaultMembershipRowGroup).
func CreateMemberships(path string, rowGroupRows int64) (*MembershipWriter, error) {
	if rowGroupRows <= 0 {
		rowGroupRows = DefaultMembershipRowGroup
	}
	f, err := localfile.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create memberships %s: %w", path, err)
	}
	return &MembershipWriter{
		path: path,
		f:    f,
		pw: parquet.NewGenericWriter[Membership](f, parquet.Compression(&parquet.Snappy),
			parquet.MaxRowsPerRowGroup(rowGroupRows)),
		buf: make([]Membership, 0, 1024),
	}, nil
}

// Write adds one row.
func (w *MembershipWriter) Write(m Membership) error {
	w.buf = append(w.buf, m)
	w.rows++
	if len(w.buf) == cap(w.buf) {
		return w.flush()
	}
	return nil
}

// Rows is the number of rows written so far.
func (w *MembershipWriter) Rows() int64 { return w.rows }

func (w *MembershipWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.pw.Write(w.buf)
	clear(w.buf) // drop references to the caller's strings
	w.buf = w.buf[:0]
	if err != nil {
		return fmt.Errorf("write memberships %s: %w", w.path, err)
	}
	return nil
}

// Close completes the file and stores it at its path. On error nothing is
// stored.
func (w *MembershipWriter) Close() error {
	err := w.flush()
	if err == nil {
		err = w.pw.Close()
	}
	if err != nil {
		w.f.Abort()
	} else {
		err = w.f.Commit(true)
	}
	if err != nil {
		return fmt.Errorf("close memberships %s: %w", w.path, err)
	}
	return nil
}

// Abort discards the file.
func (w *MembershipWriter) Abort() { w.f.Abort() }
