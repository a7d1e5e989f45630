package readers

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"

	"github.com/convertro-etl/convertro-etl/internal/segment"
)

// hugeListParquet is a 23-byte Parquet file whose footer (Thrift compact
// FileMetaData) says version 1 and then a schema list of 2^31-1 structs;
// parquet-go allocates them all before reading one, and the process died
// of "fatal error: runtime: out of memory".
func hugeListParquet() []byte {
	footer := []byte{
		0x15, 0x02, // field 1 (i32) version = 1
		0x19, 0xfc, // field 2 (list): size follows, elements are structs
		0xff, 0xff, 0xff, 0xff, 0x07, // 2^31-1 elements
		0x00, 0x00, // what would be the first element's stop, and the end
	}
	b := []byte("PAR1")
	b = append(b, footer...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(footer)))
	return append(b, "PAR1"...)
}

func TestParquetFooterHugeList(t *testing.T) {
	data := hugeListParquet()
	if len(data) != 23 {
		t.Fatalf("%d bytes, want 23", len(data))
	}
	ctx := context.Background()
	o := Object{URI: "huge.parquet", Partition: Partition{Table: "tracks"}}
	_, err := OpenParquet(ctx, bytesFile{bytes.NewReader(data)}, o, Hint{})
	if !errors.Is(err, ErrBadFile) || !strings.Contains(err.Error(), "huge.parquet") || !strings.Contains(err.Error(), "list of 2147483647 elements") {
		t.Errorf("OpenParquet: %v, want ErrBadFile naming the object and the list", err)
	}
	_, err = OpenTable(ctx, bytesFile{bytes.NewReader(data)}, o)
	if !errors.Is(err, ErrBadFile) || !strings.Contains(err.Error(), "huge.parquet") {
		t.Errorf("OpenTable: %v, want ErrBadFile naming the object", err)
	}
}

// Every count and length in a footer is checked against the bytes left,
// whatever the field: a string, a list nested in a struct, a map, depth.
func TestFooterWalkRefuses(t *testing.T) {
	tests := []struct {
		name   string
		footer []byte
		want   string
	}{
		{"string longer than the footer", []byte{0x18, 0xff, 0xff, 0xff, 0xff, 0x07, 0x00}, "string of 2147483647 bytes"},
		{"list in a nested struct", []byte{0x1c, 0x19, 0xf5, 0xff, 0xff, 0x03, 0x00, 0x00}, "list of 65535 elements"},
		{"list of doubles, 8 bytes each", []byte{0x19, 0x37, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0x00}, "list of 3 elements"},
		{"map", []byte{0x1b, 0xff, 0x7f, 0x55, 0x00}, "map of 16383 entries"},
		{"nesting", bytes.Repeat([]byte{0x1c}, 40), "nested deeper"},
		{"truncated", []byte{0x15}, "truncated"},
		{"unknown type", []byte{0x1e, 0x00}, "unknown type 14"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkFooterBytes(tt.footer)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("checkFooterBytes: %v, want %q", err, tt.want)
			}
		})
	}
	// A footer within its bytes but whose decoding would take too much
	// memory: 700,000 empty structs in a list, 700 KB of footer.
	n := 700_000
	b := []byte{0x19, 0xfc}
	b = binary.AppendUvarint(b, uint64(n))
	b = append(b, make([]byte, n+1)...)
	if err := checkFooterBytes(b); err == nil || !strings.Contains(err.Error(), "MiB to decode") {
		t.Errorf("700,000 structs: %v, want a memory refusal", err)
	}
	// A real footer passes: every file the other tests read went through it.
}

// encodeHeader is a page header as a writer encodes it.
func encodeHeader(t *testing.T, h *format.PageHeader) []byte {
	t.Helper()
	b, err := thrift.Marshal(new(thrift.CompactProtocol), h)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The page guard refuses a page header's sizes and counts before
// parquet-go sees a byte of the header.
func TestPageGuardRefuses(t *testing.T) {
	data := func(values int32) thrift.Null[format.DataPageHeader] {
		return thrift.Null[format.DataPageHeader]{V: format.DataPageHeader{NumValues: values}, Valid: true}
	}
	dict := func(values int32) thrift.Null[format.DictionaryPageHeader] {
		return thrift.Null[format.DictionaryPageHeader]{V: format.DictionaryPageHeader{NumValues: values}, Valid: true}
	}
	tests := []struct {
		name string
		h    format.PageHeader
		body int
		kind parquet.Kind
		want string
	}{
		{"a gibibyte uncompressed", format.PageHeader{Type: format.DataPage, UncompressedPageSize: 1<<30 + 1, CompressedPageSize: 100, DataPageHeader: data(10)}, 100, parquet.ByteArray, "more than the 1073741824 allowed"},
		{"ratio", format.PageHeader{Type: format.DataPage, UncompressedPageSize: 100 << 20, CompressedPageSize: 1000, DataPageHeader: data(10)}, 1000, parquet.ByteArray, "more than 64 times"},
		{"past the chunk", format.PageHeader{Type: format.DataPage, UncompressedPageSize: 100, CompressedPageSize: 5000, DataPageHeader: data(10)}, 100, parquet.ByteArray, "runs past the end"},
		{"more values than rows", format.PageHeader{Type: format.DataPage, UncompressedPageSize: 100, CompressedPageSize: 100, DataPageHeader: data(1 << 30)}, 100, parquet.ByteArray, "1073741824 values"},
		{"dictionary values in too few bytes", format.PageHeader{Type: format.DictionaryPage, UncompressedPageSize: 100, CompressedPageSize: 100, DictionaryPageHeader: dict(26)}, 100, parquet.ByteArray, "dictionary page claims 26 values"},
		{"int64 dictionary", format.PageHeader{Type: format.DictionaryPage, UncompressedPageSize: 100, CompressedPageSize: 100, DictionaryPageHeader: dict(13)}, 100, parquet.Int64, "dictionary page claims 13 values"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chunk := append(encodeHeader(t, &tt.h), make([]byte, tt.body)...)
			file := append([]byte("PAR1"), chunk...)
			r := &trackedReader{r: bytes.NewReader(file), size: int64(len(file))}
			g := &pageGuard{r: r, start: 4, end: int64(len(file)), next: 4, rows: 1000, kind: tt.kind}
			buf := make([]byte, len(chunk))
			n, err := g.ReadAt(buf, 4)
			if n != 0 || err == nil || !strings.Contains(err.Error(), tt.want) || g.failure() == nil {
				t.Errorf("ReadAt = %d, %v; want 0 bytes and %q", n, err, tt.want)
			}
		})
	}
	// A good page, header split over two reads: all its bytes come through.
	h := format.PageHeader{Type: format.DataPage, UncompressedPageSize: 100, CompressedPageSize: 100, DataPageHeader: data(10)}
	chunk := append(encodeHeader(t, &h), make([]byte, 100)...)
	r := &trackedReader{r: bytes.NewReader(chunk), size: int64(len(chunk))}
	g := &pageGuard{r: r, end: int64(len(chunk)), rows: 1000, kind: parquet.ByteArray}
	for off := 0; off < len(chunk); off += 3 {
		buf := make([]byte, min(3, len(chunk)-off))
		if n, err := g.ReadAt(buf, int64(off)); n != len(buf) || err != nil {
			t.Fatalf("ReadAt(%d) = %d, %v", off, n, err)
		}
	}
}

// A page header in a real file claiming more values than its row group
// holds is a bad file, with the guard's reason.
func TestParquetPageHeaderBeyondRowGroup(t *testing.T) {
	dir := t.TempDir()
	rows := make([][]any, 100)
	for i := range rows {
		rows[i] = []any{fmt.Sprintf("m%d", i), "Signed Up"}
	}
	path := writeParquet(t, dir, "x.parquet", []tcol{{"message_id", strNode}, {"event", strNode}}, rows, parquet.DataPageVersion(1))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := OpenParquet(context.Background(), bytesFile{bytes.NewReader(data)}, objectFor(path, "tracks", ""), Hint{})
	if err != nil {
		t.Fatal(err)
	}
	// Rewrite the first data page header of message_id with 8000 values,
	// which encodes in as many bytes as 100.
	m := p.pf.Metadata().RowGroups[0].Columns[0].MetaData
	off := m.DataPageOffset
	w := memWalk(data[off:])
	if err := w.structure(1, 0); err != nil {
		t.Fatal(err)
	}
	var h format.PageHeader
	if err := thrift.Unmarshal(new(thrift.CompactProtocol), data[off:off+int64(w.pos)], &h); err != nil {
		t.Fatal(err)
	}
	if !h.DataPageHeader.Valid || h.DataPageHeader.V.NumValues != 100 {
		t.Fatalf("first page header %+v", h)
	}
	h.DataPageHeader.V.NumValues = 8000
	nh := encodeHeader(t, &h)
	if int64(len(nh)) != w.pos {
		t.Fatalf("header of %d bytes, was %d", len(nh), w.pos)
	}
	copy(data[off:], nh)
	p, err = OpenParquet(context.Background(), bytesFile{bytes.NewReader(data)}, objectFor(path, "tracks", ""), Hint{})
	if err != nil {
		t.Fatal(err)
	}
	err = p.ReadRowGroup(context.Background(), 0, 0, func(int64, []segment.Message) error { return nil })
	if !errors.Is(err, ErrBadFile) || !strings.Contains(err.Error(), "8000 values") {
		t.Errorf("ReadRowGroup: %v, want ErrBadFile with the guard's reason", err)
	}
}

// A local file rewritten in place, same size, between two row groups: the
// second read stops with ErrChanged and no row of the new version comes
// out. (Before, the change was noticed but dropped with a full buffer, and
// rows of both versions were delivered.)
func TestParquetLocalRewriteMidRead(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	gen := func(v int) []byte {
		rows := make([][]any, 200)
		for i := range rows {
			rows[i] = []any{fmt.Sprintf("v%d-%06d", v, i), "Signed Up"}
		}
		path := writeParquet(t, t.TempDir(), "x.parquet", []tcol{{"message_id", strNode}, {"event", strNode}}, rows,
			parquet.MaxRowsPerRowGroup(100))
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	v1, v2 := gen(1), gen(2)
	if len(v1) != len(v2) {
		t.Fatalf("versions of %d and %d bytes", len(v1), len(v2))
	}
	path := filepath.Join(dir, "x.parquet")
	if err := os.WriteFile(path, v1, 0o644); err != nil {
		t.Fatal(err)
	}
	// The rewrite gets a later modification time than the listed one,
	// whatever the file system's timestamp granularity.
	past := time.Now().Add(-time.Hour)
	if err := os.Chtimes(path, past, past); err != nil {
		t.Fatal(err)
	}
	src := openSource(t, dir, SourceOptions{})
	p := openOnlyParquet(t, src, false)
	if len(p.RowGroups()) != 2 {
		t.Fatalf("%d row groups, want 2", len(p.RowGroups()))
	}
	var got []string
	collect := func(_ int64, batch []segment.Message) error {
		for i := range batch {
			got = append(got, string(batch[i].MessageID))
		}
		return nil
	}
	if err := p.ReadRowGroup(ctx, 0, 0, collect); err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(v2, 0); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	err = p.ReadRowGroup(ctx, 1, 0, collect)
	if !errors.Is(err, ErrChanged) || !strings.Contains(err.Error(), path) {
		t.Errorf("second row group: %v, want ErrChanged naming the file", err)
	}
	if len(got) != 100 {
		t.Errorf("%d rows delivered, want the 100 of the first row group", len(got))
	}
	for _, id := range got {
		if !strings.HasPrefix(id, "v1-") {
			t.Fatalf("row %q of another version delivered", id)
		}
	}
}

// A symlink loop in a local folder no longer aborts the listing: it is
// listed, and opening it is a bad file naming it, which --on-bad-file
// sets aside or fails on.
func TestStorageDirSymlinkLoop(t *testing.T) {
	ctx := context.Background()
	h := newDirHarness(t)
	h.put(t, "a.parquet", []byte("a"))
	if err := os.Symlink(h.uri("loop2.parquet"), h.uri("loop1.parquet")); err != nil {
		t.Skip("no symlinks:", err)
	}
	if err := os.Symlink(h.uri("loop1.parquet"), h.uri("loop2.parquet")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(h.uri("self"), h.uri("self")); err != nil {
		t.Fatal(err)
	}
	src := openSource(t, h.uri(""), SourceOptions{})
	objs, skipped, err := src.List(ctx)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if got := keys(objs); strings.Join(got, " ") != "a.parquet loop1.parquet loop2.parquet self" {
		t.Errorf("keys %q", got)
	}
	if len(skipped) != 0 {
		t.Errorf("skipped %v", skipped)
	}
	for _, o := range objs[1:] {
		_, err := src.Open(ctx, o)
		if !errors.Is(err, ErrBadFile) || !strings.Contains(err.Error(), o.URI) || !strings.Contains(err.Error(), "symlink loop") {
			t.Errorf("open %s: %v, want ErrBadFile naming it as a symlink loop", o.Key, err)
		}
	}
	// A source that is itself a loop lists it alone, the same way.
	src = openSource(t, h.uri("self"), SourceOptions{})
	objs, _, err = src.List(ctx)
	if err != nil || len(objs) != 1 {
		t.Fatalf("loop as the source: %v %v", objs, err)
	}
	if _, err := src.Open(ctx, objs[0]); !errors.Is(err, ErrBadFile) {
		t.Errorf("open the looping source: %v, want ErrBadFile", err)
	}
}

// TestParquetRowGroupClaimsTooManyRows: a footer whose row group claims
// 2^40 rows in a few hundred bytes of column chunks is a bad file, refused
// when opened, rather than a reader that loops over rows that are not there.
func TestParquetRowGroupClaimsTooManyRows(t *testing.T) {
	dir := t.TempDir()
	rows := make([][]any, 10)
	for i := range rows {
		rows[i] = []any{fmt.Sprintf("m%d", i), "Signed Up"}
	}
	path := writeParquet(t, dir, "x.parquet", []tcol{{"message_id", strNode}, {"event", strNode}}, rows)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := int(binary.LittleEndian.Uint32(data[len(data)-8:]))
	start := len(data) - 8 - n
	var md format.FileMetaData
	if err := thrift.Unmarshal(new(thrift.CompactProtocol), data[start:len(data)-8], &md); err != nil {
		t.Fatal(err)
	}
	md.RowGroups[0].NumRows = 1 << 40
	footer, err := thrift.Marshal(new(thrift.CompactProtocol), &md)
	if err != nil {
		t.Fatal(err)
	}
	crafted := append(append([]byte(nil), data[:start]...), footer...)
	crafted = binary.LittleEndian.AppendUint32(crafted, uint32(len(footer)))
	crafted = append(crafted, "PAR1"...)
	_, err = OpenParquet(context.Background(), bytesFile{bytes.NewReader(crafted)}, objectFor(path, "tracks", ""), Hint{})
	if !errors.Is(err, ErrBadFile) || !strings.Contains(err.Error(), "1099511627776 rows") {
		t.Fatalf("row group claiming 2^40 rows: %v, want a bad file naming the claim", err)
	}
}
