package writers

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/parquet-go/parquet-go"
)

// DeadLetter is one request that Convertro refused permanently, with where its
// row came from, so that an operator can find the row, fix the cause and
// replay it.
type DeadLetter struct {
	MessageID string    `parquet:"message_id"`
	Object    string    `parquet:"object"`
	RowGroup  int32     `parquet:"row_group"`
	Row       int64     `parquet:"row"`
	URL       string    `parquet:"url"`
	Status    int32     `parquet:"status"`
	Response  string    `parquet:"response"` // the first 1 KiB of Convertro's answer
	Reason    string    `parquet:"reason"`
	Attempts  int32     `parquet:"attempts"`
	Time      time.Time `parquet:"time,timestamp(millisecond)"`
}

// EncodeDeadLetters writes rows to w as one Snappy-compressed Parquet file.
func EncodeDeadLetters(w io.Writer, rows []DeadLetter) error {
	pw := parquet.NewGenericWriter[DeadLetter](w, parquet.Compression(&parquet.Snappy))
	if _, err := pw.Write(rows); err != nil {
		return fmt.Errorf("encode dead letters: %w", err)
	}
	if err := pw.Close(); err != nil {
		return fmt.Errorf("encode dead letters: %w", err)
	}
	return nil
}

// DeadLetterFile returns rows encoded as a Parquet file's bytes.
func DeadLetterFile(rows []DeadLetter) ([]byte, error) {
	var b bytes.Buffer
	err := EncodeDeadLetters(&b, rows)
	return b.Bytes(), err
}

// DecodeDeadLetters decodes one dead-letter file held in memory (read from a
// state store); name is for messages. Times come back in UTC, to the
// millisecond.
func DecodeDeadLetters(name string, data []byte) ([]DeadLetter, error) {
	rows, err := parquet.Read[DeadLetter](bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("read dead letters %s: %w", name, err)
	}
	utc(rows)
	return rows, nil
}

// ReadDeadLetters reads one dead-letter file from the local file system.
// Times come back in UTC, to the millisecond.
func ReadDeadLetters(path string) ([]DeadLetter, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read dead letters: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read dead letters: %w", err)
	}
	rows, err := parquet.Read[DeadLetter](f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("read dead letters %s: %w", path, err)
	}
	utc(rows)
	return rows, nil
}

func utc(rows []DeadLetter) {
	for i := range rows {
		rows[i].Time = rows[i].Time.UTC()
	}
}

// MergeDeadLetters joins the rows of several files in the order of their
// rows' origin (object, row group, row, URL), keeping one row per request: a
// run killed after storing a file but before committing its manifest writes
// the same dead letters again on resume.
func MergeDeadLetters(files ...[]DeadLetter) []DeadLetter {
	var all []DeadLetter
	for _, f := range files {
		all = append(all, f...)
	}
	key := func(a, b DeadLetter) int {
		return cmp.Or(cmp.Compare(a.Object, b.Object), cmp.Compare(a.RowGroup, b.RowGroup),
			cmp.Compare(a.Row, b.Row), cmp.Compare(a.URL, b.URL))
	}
	slices.SortStableFunc(all, key)
	return slices.CompactFunc(all, func(a, b DeadLetter) bool { return key(a, b) == 0 })
}
