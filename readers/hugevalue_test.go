package readers

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
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

// hugeValueFile writes rows with a user agent of n bytes in row 1, one of
// n/2 bytes sharing its first 100 in row 2 (for the prefixes of
// DELTA_BYTE_ARRAY), and none in row 3 when ua is OPTIONAL (and parquet-go's statistics, which
// hold the long value whole in the footer and in the page header) and
// returns its bytes.
func hugeValueFile(t *testing.T, n int, ua parquet.Node, opts ...parquet.WriterOption) []byte {
	t.Helper()
	rows := make([][]any, 100)
	for i := range rows {
		rows[i] = []any{fmt.Sprint("m", i), "Signed Up", "Mozilla/5.0 (X11)"}
	}
	rows[1][2] = longUA(n)
	rows[2][2] = longUA(100) + strings.Repeat("Chrome/120.0 ", n/26)
	if ua.Optional() {
		rows[3][2] = nil
	}
	path := writeParquet(t, t.TempDir(), "x.parquet", []tcol{{"message_id", strNode}, {"event", strNode}, {"context_user_agent", ua}}, rows, opts...)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func longUA(n int) string { return strings.Repeat("Mozilla/5.0 ", n/12+1)[:n] }

// A file holding one huge value is opened and read with allocations of
// less than the value's size when its page is uncompressed, in the
// encodings writers use for text (the page is cut before the Parquet
// library reads it), and of less than twice its size otherwise: its copies
// in the statistics are left out before the library decodes them. The rows
// read are the same either way: the long values cut to MaxValueBytes.
// (Before, the file made about 20 times the value's size in allocations.)
func TestParquetHugeValueBounded(t *testing.T) {
	const size = 6 << 20
	plain := parquet.Encoded(parquet.String(), &parquet.Plain)
	delta := parquet.Encoded(parquet.String(), &parquet.DeltaLengthByteArray)
	v1 := parquet.DataPageVersion(1)
	for _, c := range []struct {
		name string
		ua   parquet.Node
		cut  bool // the page is cut before the library reads it
		opts []parquet.WriterOption
	}{
		{"optional delta-length v2", strNode, true, nil},
		{"optional plain v1", opt(plain), true, []parquet.WriterOption{v1}},
		{"required delta-length v1", delta, true, []parquet.WriterOption{v1}},
		{"dictionary v1", dictNode, true, []parquet.WriterOption{v1}},
		{"delta-byte-array", opt(parquet.Encoded(parquet.String(), &parquet.DeltaByteArray)), true, nil},
		{"snappy v1", strNode, false, []parquet.WriterOption{parquet.Compression(&parquet.Snappy), v1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			data := hugeValueFile(t, size, c.ua, c.opts...)
			runtime.GC() // twice: the pools' buffers of the other cases go
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
			// The page holds 1.5 times size of long values.
			if limit := map[bool]uint64{true: size / 2, false: 3 * size}[c.cut]; alloc > limit {
				t.Errorf("%d MiB allocated to read a file with a value of %d MiB, want at most %d", alloc>>20, size>>20, limit>>20)
			}
			if len(uas) != 100 {
				t.Fatalf("%d rows", len(uas))
			}
			for i, ua := range uas {
				want := "Mozilla/5.0 (X11)"
				switch {
				case i == 1:
					want = longUA(MaxValueBytes)
				case i == 2:
					want = (longUA(100) + strings.Repeat("Chrome/120.0 ", MaxValueBytes/13+1))[:MaxValueBytes]
				case i == 3 && c.ua.Optional():
					want = ""
				}
				if ua != want {
					t.Errorf("row %d: %d bytes %.20q, want %d bytes %.20q", i, len(ua), ua, len(want), want)
				}
			}
			var col format.ColumnMetaData
			for _, c := range p.pf.Metadata().RowGroups[0].Columns {
				if c.MetaData.PathInSchema[0] == "context_user_agent" {
					col = c.MetaData
				}
			}
			if st := col.Statistics; len(st.MaxValue) > maxStatBytes || len(st.Max) > maxStatBytes {
				t.Errorf("statistics of %v: max of %d bytes", col.PathInSchema, len(st.MaxValue))
			}
			wantNulls := int64(0)
			if c.ua.Optional() {
				wantNulls = 1
			}
			if nulls, known := p.FieldNulls(0, "context_user_agent"); nulls != wantNulls || !known {
				t.Errorf("FieldNulls = %d, %v; want %d, known", nulls, known, wantNulls)
			}
		})
	}
}

// A huge page whose bytes are damaged is cut or left to the library, never
// a panic or a read past the chunk: the guard reads its lengths and levels
// before anything checks them.
func TestPageGuardCutsDamagedPages(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct {
		name string
		ua   parquet.Node
		opts []parquet.WriterOption
	}{
		{"optional plain v1", opt(parquet.Encoded(parquet.String(), &parquet.Plain)), []parquet.WriterOption{parquet.DataPageVersion(1)}},
		{"optional delta-length v2", strNode, nil},
		{"delta-byte-array v2", opt(parquet.Encoded(parquet.String(), &parquet.DeltaByteArray)), nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := hugeValueFile(t, 5<<20, c.ua, c.opts...)
			p, err := OpenParquet(context.Background(), bytesFile{bytes.NewReader(data)}, Object{URI: "x.parquet", Partition: Partition{Table: "tracks"}}, Hint{})
			if err != nil {
				t.Fatal(err)
			}
			var col *parquet.FileColumnChunk
			var m *format.ColumnMetaData
			for i, cc := range p.pf.Metadata().RowGroups[0].Columns {
				if cc.MetaData.PathInSchema[0] == "context_user_agent" {
					col = p.pf.RowGroups()[0].ColumnChunks()[i].(*parquet.FileColumnChunk)
					m = &p.pf.Metadata().RowGroups[0].Columns[i].MetaData
				}
			}
			start := chunkStart(m)
			hw := memWalk(data[start:])
			if err := hw.structure(1, 0); err != nil {
				t.Fatal(err)
			}
			body := start + hw.pos // of the first page: levels, then values
			for i := range 16 {
				bad := bytes.Clone(data)
				if i < 4 {
					// The first 4 bytes of the body: the length of the
					// definition levels of a v1 page, one of the lengths
					// or the header of the lengths in others.
					n := []uint32{100_000, 5 << 20, 1<<32 - 1, 0}[i]
					binary.LittleEndian.PutUint32(bad[body:], n)
				}
				// A few bytes of the first 4 KiB of the chunk: headers,
				// levels, lengths.
				for range rng.IntN(4) {
					bad[start+rng.Int64N(min(4096, m.TotalCompressedSize))] = byte(rng.IntN(256))
				}
				r := &trackedReader{r: bytes.NewReader(bad), size: int64(len(bad))}
				_, g := guardPages(r, col, m, 100)
				g.cutValues(1)
				buf := make([]byte, readBufferSize)
				for off := start; off < min(start+m.TotalCompressedSize, start+4*readBufferSize); off += readBufferSize {
					if n, err := g.ReadAt(buf, off); err != nil || n < len(buf) {
						break
					}
				}
			}
		})
	}
}
