package readers

import (
	"errors"
	"fmt"
	"io"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

// Limits on what a file may claim before anything is allocated for it.
// parquet-go trusts the counts and lengths in a footer and in page headers
// (a list header of 2^31-1 elements becomes one make of that many structs),
// so every such number is checked here first, against the bytes that
// actually exist and against these ceilings. A file beyond them is a bad
// file. The ceilings are far above what writers produce.
const (
	// maxFooterSize bounds the footer (FileMetaData) in bytes.
	maxFooterSize = 64 << 20
	// maxFooterMemory bounds what decoding the footer may allocate, as
	// estimated by the walk: footerStructCost per struct in a list (a column
	// chunk decodes to about 560 bytes, and parquet-go adds its own per-chunk
	// structures), footerValueCost per other list element, plus every
	// string's length. About 500,000 column chunks fit.
	maxFooterMemory  = 512 << 20
	footerStructCost = 1 << 10
	footerValueCost  = 16
	// maxThriftDepth bounds the nesting of Thrift structs and containers
	// (Parquet's own metadata nests about 6 deep).
	maxThriftDepth = 32

	// maxPageHeaderSize bounds a page header in bytes. A header must also
	// fit in its column chunk, whose bytes exist in the object, so this only
	// caps what an honest header may hold: writers such as parquet-go put a
	// page's min and max values in its header, and a row with a 50 MiB value
	// must be read (and its row dead-lettered), not refuse the whole file.
	// (Arrow's default is 16 MiB.)
	maxPageHeaderSize = 256 << 20
	// maxPageSize bounds a page's uncompressed size.
	maxPageSize = 1 << 30
	// A page may claim at most maxPageRatio times its compressed size
	// uncompressed, or pageRatioFloor whatever its compressed size: small
	// pages of repeated values compress beyond any ratio, and pages larger
	// than the floor must bring bytes in proportion to what they claim.
	maxPageRatio   = 64
	pageRatioFloor = 16 << 20
	// maxPageValues bounds the values a page may claim (parquet-go
	// allocates levels and offsets per value before decoding). A page of a
	// column that is not repeated also holds at most its row group's rows.
	maxPageValues = 1 << 25
	// A row group may claim at most maxRowsPerByte rows per byte of its
	// column chunks, plus minRowsLimit: a Segment row holds ids and times,
	// far more than a byte for every 64 rows, while a crafted footer can
	// claim 2^62 rows in a few bytes.
	maxRowsPerByte = 64
	minRowsLimit   = 1 << 16
)

// thriftError is a violation found by a walk. short means the bytes ran out
// (or a length claimed more than is left), as opposed to a malformed value:
// for a page header read in pieces, more bytes may resolve it.
type thriftError struct {
	msg   string
	short bool
}

func (e *thriftError) Error() string { return e.msg }

// compactWalk walks Thrift compact-protocol bytes without decoding them,
// checking every length and count against the bytes left, and estimates
// what a decoder allocates. With ints set it records the integer fields of
// the top two struct levels by path (parent<<8 | field id).
type compactWalk struct {
	b    []byte
	pos  int
	cost int64
	ints map[uint32]int64
}

const (
	ctStop = iota
	ctTrue
	ctFalse
	ctByte
	ctI16
	ctI32
	ctI64
	ctDouble
	ctBinary
	ctList
	ctSet
	ctMap
	ctStruct
	ctUUID
)

func (w *compactWalk) fail(short bool, format string, args ...any) error {
	return &thriftError{msg: fmt.Sprintf("at byte %d: ", w.pos) + fmt.Sprintf(format, args...), short: short}
}

func (w *compactWalk) left() int { return len(w.b) - w.pos }

func (w *compactWalk) byte() (byte, error) {
	if w.pos >= len(w.b) {
		return 0, w.fail(true, "truncated")
	}
	w.pos++
	return w.b[w.pos-1], nil
}

func (w *compactWalk) uvarint() (uint64, error) {
	var v uint64
	for i := 0; i < 10; i++ {
		c, err := w.byte()
		if err != nil {
			return 0, err
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, nil
		}
	}
	return 0, w.fail(false, "varint longer than 10 bytes")
}

func (w *compactWalk) skip(n int) error {
	if n > w.left() {
		return w.fail(true, "%d bytes needed, %d left", n, w.left())
	}
	w.pos += n
	return nil
}

// minSize is the fewest bytes one element of a container takes.
func minSize(t byte) int {
	switch t {
	case ctDouble:
		return 8
	case ctUUID:
		return 16
	}
	return 1
}

// value walks one value of type t. key is its path for w.ints (0: not
// recorded); inList tells a boolean element (one byte) from a boolean
// field (no bytes: the value is in the field header).
func (w *compactWalk) value(t byte, depth int, key uint32, inList bool) error {
	switch t {
	case ctTrue, ctFalse:
		if inList {
			return w.skip(1)
		}
		return nil
	case ctByte:
		return w.skip(1)
	case ctI16, ctI32, ctI64:
		u, err := w.uvarint()
		if err != nil {
			return err
		}
		if w.ints != nil && key != 0 {
			w.ints[key] = int64(u>>1) ^ -int64(u&1)
		}
		return nil
	case ctDouble:
		return w.skip(8)
	case ctUUID:
		return w.skip(16)
	case ctBinary:
		n, err := w.uvarint()
		if err != nil {
			return err
		}
		if n > uint64(w.left()) {
			return w.fail(true, "string of %d bytes with %d bytes left", n, w.left())
		}
		w.cost += int64(n)
		w.pos += int(n)
		return nil
	case ctStruct:
		return w.structure(depth+1, key)
	case ctList, ctSet:
		h, err := w.byte()
		if err != nil {
			return err
		}
		n, et := uint64(h>>4), h&0x0f
		if n == 15 {
			if n, err = w.uvarint(); err != nil {
				return err
			}
		}
		return w.elements(n, et, depth)
	case ctMap:
		n, err := w.uvarint()
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		kv, err := w.byte()
		if err != nil {
			return err
		}
		if depth+1 > maxThriftDepth {
			return w.fail(false, "nested deeper than %d", maxThriftDepth)
		}
		kt, vt := kv>>4, kv&0x0f
		if need := uint64(minSize(kt) + minSize(vt)); n > uint64(w.left())/need {
			return w.fail(true, "map of %d entries with %d bytes left", n, w.left())
		}
		w.cost += int64(n) * 2 * footerValueCost
		for range n {
			if err := w.value(kt, depth+1, 0, true); err != nil {
				return err
			}
			if err := w.value(vt, depth+1, 0, true); err != nil {
				return err
			}
		}
		return nil
	}
	return w.fail(false, "unknown type %d", t)
}

// elements walks a list of n elements of type et. Each element takes at
// least one byte, so a count above the bytes left is refused before the
// decoder can allocate for it.
func (w *compactWalk) elements(n uint64, et byte, depth int) error {
	if depth+1 > maxThriftDepth {
		return w.fail(false, "nested deeper than %d", maxThriftDepth)
	}
	if et == ctStop || et > ctUUID {
		return w.fail(false, "list of unknown type %d", et)
	}
	if n > uint64(w.left()/minSize(et)) {
		return w.fail(true, "list of %d elements with %d bytes left", n, w.left())
	}
	if et == ctStruct {
		w.cost += int64(n) * footerStructCost
	} else {
		w.cost += int64(n) * footerValueCost
	}
	for range n {
		if err := w.value(et, depth+1, 0, true); err != nil {
			return err
		}
	}
	return nil
}

// structure walks the fields of a struct up to its stop byte.
func (w *compactWalk) structure(depth int, key uint32) error {
	if depth > maxThriftDepth {
		return w.fail(false, "nested deeper than %d", maxThriftDepth)
	}
	var id int64
	for {
		h, err := w.byte()
		if err != nil {
			return err
		}
		t := h & 0x0f
		if t == ctStop {
			return nil
		}
		if d := h >> 4; d != 0 {
			id += int64(d)
		} else {
			u, err := w.uvarint()
			if err != nil {
				return err
			}
			id = int64(u>>1) ^ -int64(u&1)
		}
		sub := uint32(0)
		if depth <= 2 && key < 1<<8 && id > 0 && id < 1<<8 {
			sub = key<<8 | uint32(id)
		}
		if err := w.value(t, depth, sub, false); err != nil {
			return err
		}
	}
}

// checkFooterBytes walks the FileMetaData footer before parquet-go decodes
// it: every list, string and map fits in the footer, nothing nests too
// deep, and the estimated memory stays within maxFooterMemory.
func checkFooterBytes(b []byte) error {
	w := compactWalk{b: b}
	if err := w.structure(1, 0); err != nil {
		return fmt.Errorf("corrupt footer of %d bytes: %w", len(b), err)
	}
	if w.cost > maxFooterMemory {
		return fmt.Errorf("footer would take about %d MiB to decode, more than the %d MiB allowed", w.cost>>20, maxFooterMemory>>20)
	}
	return nil
}

// Page header fields, by path (see compactWalk.ints).
const (
	phType         = 1
	phUncompressed = 2
	phCompressed   = 3
	phV1Values     = 5<<8 | 1
	phDictValues   = 7<<8 | 1
	phV2Values     = 8<<8 | 1
	phV2Nulls      = 8<<8 | 2
	phV2Rows       = 8<<8 | 3
	phV2DefLen     = 8<<8 | 5
	phV2RepLen     = 8<<8 | 6

	pageData       = 0
	pageDictionary = 2
	pageDataV2     = 3
)

// pageGuard is the io.ReaderAt a column chunk's pages are read through. It
// walks each page header (they follow one another: header, compressed
// page, header, ...) before handing out a byte of it, and checks its sizes
// and counts (checkPage). A violating page ends the bytes handed out just
// before its header, with the reason as the read error: parquet-go fails
// there, if it ever reads that far, and ReadRowGroup reports the reason.
//
// Reads of a chunk's pages go forward; the dictionary is re-read from the
// chunk's start, which was checked already. A guard serves one column
// chunk in one goroutine.
type pageGuard struct {
	r          io.ReaderAt
	start, end int64 // the column chunk
	next       int64 // the first page header not yet checked
	rows       int64 // of the row group
	kind       parquet.Kind
	length     int // of a FIXED_LEN_BYTE_ARRAY
	err        error
}

// guardPages returns the pages of a column chunk read through a pageGuard.
// The columns these readers decode are never repeated (OpenParquet and
// OpenTable refuse them), so a page holds at most its row group's rows.
func guardPages(r *trackedReader, chunk *parquet.FileColumnChunk, m *format.ColumnMetaData, rows int64) (*parquet.FilePages, *pageGuard) {
	start := chunkStart(m)
	end := start // a chunk outside the file has no pages
	if start >= 0 && start <= r.size && m.TotalCompressedSize >= 0 {
		end = start + min(m.TotalCompressedSize, r.size-start)
	}
	g := &pageGuard{r: r, start: start, end: end, next: start, rows: rows,
		kind: chunk.Type().Kind(), length: chunk.Type().Length()}
	return chunk.PagesFrom(g), g
}

// chunkStart is where a column chunk's pages begin, by parquet-go's rule:
// the dictionary page when there is one.
func chunkStart(m *format.ColumnMetaData) int64 {
	if m.DictionaryPageOffset != 0 {
		return m.DictionaryPageOffset
	}
	return m.DataPageOffset
}

func (g *pageGuard) failure() error { return g.err }

func (g *pageGuard) ReadAt(p []byte, off int64) (int, error) {
	n, err := g.r.ReadAt(p, off)
	for g.err == nil && g.next < off+int64(n) && g.next < g.end {
		size, herr := g.page(p[:n], off)
		if errors.Is(herr, errRead) {
			return 0, herr
		}
		if herr != nil {
			g.err = herr
			break
		}
		g.next += size
	}
	if g.err != nil && g.next < off+int64(n) {
		return int(max(g.next-off, 0)), g.err
	}
	return n, err
}

// errRead marks a failure of the underlying read while checking a header:
// the File's error, not the page's.
var errRead = errors.New("read failed")

// page checks the page whose header starts at g.next, using the bytes just
// read (p at off) or, when the header is not all in them, reading it. It
// returns the page's length, header included.
func (g *pageGuard) page(p []byte, off int64) (int64, error) {
	limit := int(min(int64(maxPageHeaderSize), g.end-g.next))
	var b []byte
	if g.next >= off {
		b = p[g.next-off:]
		if len(b) > limit {
			b = b[:limit]
		}
	}
	w := compactWalk{b: b, ints: map[uint32]int64{}}
	err := w.structure(1, 0)
	// A header larger than what was read: read more, growing fourfold, so a
	// header of a few MiB does not cost a buffer the size of the chunk.
	for want := 64 << 10; err != nil && isShort(err) && len(b) < limit; want *= 4 {
		b = make([]byte, min(want, limit))
		m, rerr := g.r.ReadAt(b, g.next)
		if m < len(b) {
			return 0, fmt.Errorf("%w: %w", errRead, rerr)
		}
		w = compactWalk{b: b, ints: map[uint32]int64{}}
		err = w.structure(1, 0)
	}
	if err != nil {
		return 0, fmt.Errorf("page header at offset %d: %w", g.next, err)
	}
	if err := g.checkPage(w.ints, int64(w.pos)); err != nil {
		return 0, fmt.Errorf("page at offset %d: %w", g.next, err)
	}
	return int64(w.pos) + w.ints[phCompressed], nil
}

func isShort(err error) bool {
	var te *thriftError
	return errors.As(err, &te) && te.short
}

// checkPage checks a page header's numbers against the chunk, the row
// group and the limits above.
func (g *pageGuard) checkPage(h map[uint32]int64, headerLen int64) error {
	comp, uncomp := h[phCompressed], h[phUncompressed]
	switch {
	case comp < 0 || uncomp < 0:
		return fmt.Errorf("negative page size (%d compressed, %d uncompressed)", comp, uncomp)
	case comp > g.end-g.next-headerLen:
		return fmt.Errorf("page of %d bytes runs past the end of its column chunk (%d bytes left)", comp, g.end-g.next-headerLen)
	case uncomp > maxPageSize:
		return fmt.Errorf("page claims %d bytes uncompressed, more than the %d allowed", uncomp, maxPageSize)
	case uncomp > max(pageRatioFloor, maxPageRatio*comp):
		return fmt.Errorf("page claims %d bytes uncompressed from %d compressed, more than %d times", uncomp, comp, maxPageRatio)
	}
	maxValues := min(int64(maxPageValues), g.rows)
	values := func(name string, v int64) error {
		if v < 0 || v > maxValues {
			return fmt.Errorf("page claims %d %s, more than the %d its row group (or the limit) allows", v, name, maxValues)
		}
		return nil
	}
	switch h[phType] {
	case pageData:
		return values("values", h[phV1Values])
	case pageDataV2:
		if err := values("values", h[phV2Values]); err != nil {
			return err
		}
		if err := values("rows", h[phV2Rows]); err != nil {
			return err
		}
		if nulls := h[phV2Nulls]; nulls < 0 || nulls > h[phV2Values] {
			return fmt.Errorf("page claims %d nulls in %d values", nulls, h[phV2Values])
		}
		if d, r := h[phV2DefLen], h[phV2RepLen]; d < 0 || r < 0 || d+r > comp {
			return fmt.Errorf("page claims %d+%d bytes of levels in %d bytes", d, r, comp)
		}
	case pageDictionary:
		// A dictionary is PLAIN: each value takes at least this many bits.
		n := h[phDictValues]
		bits := int64(32) // lengths of BYTE_ARRAY values, INT32, FLOAT
		switch g.kind {
		case parquet.Boolean:
			bits = 1
		case parquet.Int64, parquet.Double:
			bits = 64
		case parquet.Int96:
			bits = 96
		case parquet.FixedLenByteArray:
			bits = 8 * int64(max(g.length, 1))
		}
		if n < 0 || n > maxPageValues || n > uncomp*8/bits {
			return fmt.Errorf("dictionary page claims %d values in %d bytes", n, uncomp)
		}
	}
	return nil
}
