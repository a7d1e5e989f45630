package readers

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"

	"github.com/convertro-etl/convertro-etl/internal/segment"
)

// countingReader counts the bytes read through it.
type countingReader struct {
	r    io.ReaderAt
	read atomic.Int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.read.Add(int64(n))
	return n, err
}

// A page header whose statistics hold a long value is handed out without
// it, whatever the sizes of the reads, the page and the pages after it
// coming through as they are; the long values are never read.
func TestPageGuardLeavesOutLongStatistics(t *testing.T) {
	big := bytes.Repeat([]byte("Mozilla/5.0 "), (1<<20)/12)
	stats := format.Statistics{Max: big, Min: []byte("a"), NullCount: 2, MaxValue: big, MinValue: []byte("a")}
	h1 := format.PageHeader{Type: format.DataPage, UncompressedPageSize: 100, CompressedPageSize: 100,
		DataPageHeader: thrift.Null[format.DataPageHeader]{V: format.DataPageHeader{NumValues: 10, Statistics: stats}, Valid: true}}
	h2 := h1
	h2.DataPageHeader.V.Statistics = format.Statistics{Max: []byte("z"), Min: []byte("a"), MaxValue: []byte("z"), MinValue: []byte("a")}
	body1, body2 := bytes.Repeat([]byte{1}, 100), bytes.Repeat([]byte{2}, 100)
	enc2 := encodeHeader(t, &h2)
	chunk := append(append(append(encodeHeader(t, &h1), body1...), enc2...), body2...)
	file := append([]byte("PAR1"), chunk...)

	// Reads of the whole chunk, of a few bytes, and of parquet-go's
	// buffer's size: the long values are read only when asked for.
	for _, piece := range []int{len(chunk), 7, readBufferSize} {
		t.Run(fmt.Sprint("reads of ", piece), func(t *testing.T) {
			cr := &countingReader{r: bytes.NewReader(file)}
			r := &trackedReader{r: cr, size: int64(len(file))}
			g := &pageGuard{r: r, start: 4, end: int64(len(file)), next: 4, rows: 1000, kind: parquet.ByteArray}
			var got []byte
			for off := int64(4); ; off += int64(piece) {
				buf := make([]byte, piece)
				n, err := g.ReadAt(buf, off)
				got = append(got, buf[:n]...)
				if err != nil || n == 0 {
					break
				}
			}
			if g.failure() != nil {
				t.Fatal(g.failure())
			}
			w := memWalk(got)
			if err := w.structure(1, 0); err != nil {
				t.Fatal(err)
			}
			var h format.PageHeader
			if err := thrift.Unmarshal(new(thrift.CompactProtocol), got[:w.pos], &h); err != nil {
				t.Fatal(err)
			}
			st := h.DataPageHeader.V.Statistics
			if st.Max != nil || st.MaxValue != nil || string(st.Min) != "a" || string(st.MinValue) != "a" || st.NullCount != 2 ||
				h.CompressedPageSize != 100 || h.DataPageHeader.V.NumValues != 10 {
				t.Errorf("header handed out: %d values in %d bytes, statistics max %d bytes, min %q, nulls %d",
					h.DataPageHeader.V.NumValues, h.CompressedPageSize, len(st.Max)+len(st.MaxValue), st.Min, st.NullCount)
			}
			rest := got[w.pos:]
			if want := append(append(body1, enc2...), body2...); !bytes.HasPrefix(rest, want) {
				t.Errorf("after the header: %d bytes, not the pages as written", len(rest))
			}
			if n := cr.read.Load(); piece < len(big) && n >= int64(len(big)) {
				t.Errorf("%d bytes read for 2 values of %d", n, len(big))
			}
		})
	}
}

// hugeValueFile writes rows with a user agent of n bytes in row 1 (and
// parquet-go's statistics, which hold it whole in the footer and in the
// page header) and returns its bytes.
func hugeValueFile(t *testing.T, n int, opts ...parquet.WriterOption) []byte {
	t.Helper()
	rows := make([][]any, 100)
	for i := range rows {
		rows[i] = []any{fmt.Sprint("m", i), "Signed Up", "Mozilla/5.0 (X11)"}
	}
	rows[1][2] = strings.Repeat("Mozilla/5.0 ", n/12+1)[:n]
	path := writeParquet(t, t.TempDir(), "x.parquet", []tcol{{"message_id", strNode}, {"event", strNode}, {"context_user_agent", strNode}}, rows, opts...)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A file holding one huge value is opened and read with allocations of
// about the value's size: its copies in the statistics are left out before
// the Parquet library decodes them, and the value itself is cut.
// (Before, a 16 MiB value made about 15 times its size in allocations.)
func TestParquetHugeValueBounded(t *testing.T) {
	const size = 16 << 20
	for _, c := range []struct {
		name string
		opts []parquet.WriterOption
	}{
		{"uncompressed", nil},
		{"snappy v1", []parquet.WriterOption{parquet.Compression(&parquet.Snappy), parquet.DataPageVersion(1)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			data := hugeValueFile(t, size, c.opts...)
			runtime.GC() // twice: the pools' buffers of the other case go
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			p, err := OpenParquet(ctx, bytesFile{bytes.NewReader(data)}, Object{URI: "x.parquet", Partition: Partition{Table: "tracks"}}, Hint{})
			if err != nil {
				t.Fatal(err)
			}
			var uas []string
			err = p.ReadRowGroup(ctx, 0, 0, func(_ int64, batch []segment.Message) error {
				for i := range batch {
					uas = append(uas, string(batch[i].UserAgent))
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			runtime.ReadMemStats(&after)
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%.1f MiB allocated", float64(alloc)/(1<<20))
			if alloc > 2*size {
				t.Errorf("%d MiB allocated to read a file with a value of %d MiB", alloc>>20, size>>20)
			}
			if len(uas) != 100 || len(uas[1]) != MaxValueBytes || !strings.HasPrefix(uas[1], "Mozilla/5.0 Mozilla") || uas[2] != "Mozilla/5.0 (X11)" {
				t.Errorf("%d rows, the long value of %d bytes, the next %q", len(uas), len(uas[1]), uas[min(2, len(uas)-1)])
			}
			var col format.ColumnMetaData
			for _, c := range p.pf.Metadata().RowGroups[0].Columns {
				if c.MetaData.PathInSchema[0] == "context_user_agent" {
					col = c.MetaData
				}
			}
			if st := col.Statistics; len(st.MaxValue) != 0 || len(st.Max) != 0 || string(st.MinValue) != "Mozilla/5.0 (X11)" {
				t.Errorf("statistics of %v: max of %d bytes, min %q", col.PathInSchema, len(st.MaxValue), st.MinValue)
			}
			if nulls, known := p.FieldNulls(0, "context_user_agent"); nulls != 0 || !known {
				t.Errorf("FieldNulls = %d, %v; want 0, known from the min kept", nulls, known)
			}
		})
	}
}
