package readers

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

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
	// maxFooterSize bounds the footer (FileMetaData) the library decodes, in
	// bytes, once long statistics values are left out (see maxStatBytes).
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
	// (Arrow's default is 16 MiB.) Such values are stepped over, not read,
	// and left out of the header the library decodes (see pageGuard).
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

// thriftError is a violation found by a walk.
type thriftError struct{ msg string }

func (e *thriftError) Error() string { return e.msg }

// compactWalk walks Thrift compact-protocol bytes without decoding them,
// checking every length and count against the bytes left, and estimates
// what a decoder allocates. With ints set it records the page header fields
// among the integer fields of the top two struct levels.
//
// The bytes are b (r nil), or are read from r through b as a window of
// walkWindow bytes, so that a string is stepped over without being read: a
// 50 MiB value in a footer's or a page header's statistics costs a window,
// not a buffer of its size.
//
// With stats set, a min or max value longer than maxStatBytes in the
// Statistics structs found at those paths (field ids from the top struct)
// is left out of a copy of the bytes, out, which the walk starts at the
// first such value: out stays nil when nothing is left out.
type compactWalk struct {
	r     io.ReaderAt
	b     []byte
	base  int64 // offset of b[0]
	start int64 // offset of the walk's first byte
	pos   int64 // offset of the next byte
	end   int64 // the walk reads no byte at or past end
	cost  int64
	ints  *pageFields

	buf    []byte // the window's memory once the walk reads (b may be a caller's)
	window int    // bytes per read; 0: walkWindow
	stats  [][]int16
	// path holds the field ids down to the struct being walked, depth of
	// them (kept only with stats; structures nest at most maxThriftDepth).
	path   [maxThriftDepth + 1]int16
	depth  int
	out    []byte
	copied int64 // the bytes before copied are in out, or left out
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

// walkWindow is the size of a compactWalk's reads.
const walkWindow = 64 << 10

// maxStatBytes bounds a min or max value kept from a column chunk's or a
// page's statistics. These readers use no statistics value (only their
// presence, see FieldNulls), and a writer that records a huge value whole
// (parquet-go does, in the footer and in the page header) would otherwise
// make its bytes decoded, and kept, once per copy. Arrow's writers drop
// statistics over 4 KiB too.
const maxStatBytes = 4 << 10

// Statistics fields holding a min or max value: max, min (deprecated
// forms), max_value, min_value.
func isStatValue(id int64) bool { return id == 1 || id == 2 || id == 5 || id == 6 }

// memWalk walks b, all in memory.
func memWalk(b []byte) compactWalk {
	return compactWalk{b: b, end: int64(len(b))}
}

func (w *compactWalk) fail(format string, args ...any) error {
	return &thriftError{msg: fmt.Sprintf("at byte %d: ", w.pos-w.start) + fmt.Sprintf(format, args...)}
}

func (w *compactWalk) left() int64 { return w.end - w.pos }

// errWalkRead wraps a failed read of r during a walk.
type errWalkRead struct{ err error }

func (e *errWalkRead) Error() string { return e.err.Error() }
func (e *errWalkRead) Unwrap() error { return e.err }

func (w *compactWalk) byte() (byte, error) {
	if w.pos >= w.end {
		return 0, w.fail("truncated")
	}
	i := w.pos - w.base
	if i < 0 || i >= int64(len(w.b)) {
		if err := w.slide(); err != nil {
			return 0, err
		}
		i = 0
	}
	w.pos++
	return w.b[i], nil
}

// slide moves the window to pos, keeping what the copy still needs.
func (w *compactWalk) slide() error {
	if w.r == nil {
		return w.fail("truncated")
	}
	if err := w.flush(w.pos); err != nil {
		return err
	}
	size := int64(cmp.Or(w.window, walkWindow))
	n := min(size, w.end-w.pos)
	if w.buf == nil {
		w.buf = make([]byte, size)
	}
	w.b = w.buf[:n]
	m, err := w.r.ReadAt(w.b, w.pos)
	if m < len(w.b) {
		return &errWalkRead{fmt.Errorf("read %d bytes at %d: %w", n, w.pos, cmp.Or(err, io.ErrUnexpectedEOF))}
	}
	w.base = w.pos
	return nil
}

// flush appends the bytes from copied up to to to the copy, if one was
// started.
func (w *compactWalk) flush(to int64) error {
	for w.out != nil && w.copied < to {
		if i := w.copied - w.base; i >= 0 && i < int64(len(w.b)) {
			n := min(int64(len(w.b))-i, to-w.copied)
			w.out = append(w.out, w.b[i:i+n]...)
			w.copied += n
			continue
		}
		n := to - w.copied
		w.out = slices.Grow(w.out, int(n))
		m, err := w.r.ReadAt(w.out[len(w.out):len(w.out)+int(n)], w.copied)
		if int64(m) < n {
			return &errWalkRead{fmt.Errorf("read %d bytes at %d: %w", n, w.copied, cmp.Or(err, io.ErrUnexpectedEOF))}
		}
		w.out = w.out[:len(w.out)+int(n)]
		w.copied = to
	}
	return nil
}

// leaveOut drops the bytes from..to from the copy, starting it if need be.
func (w *compactWalk) leaveOut(from, to int64) error {
	if w.out == nil {
		w.out, w.copied = make([]byte, 0, 4<<10), w.start
	}
	if err := w.flush(from); err != nil {
		return err
	}
	w.copied = to
	return nil
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
	return 0, w.fail("varint longer than 10 bytes")
}

// take returns the n bytes at pos, n at most the window's size, and steps
// over them.
func (w *compactWalk) take(n int64) ([]byte, error) {
	if n < 0 || n > w.left() {
		return nil, w.fail("%d bytes needed, %d left", n, w.left())
	}
	i := w.pos - w.base
	if i < 0 || i+n > int64(len(w.b)) {
		if err := w.slide(); err != nil {
			return nil, err
		}
		if i = 0; n > int64(len(w.b)) {
			return nil, w.fail("%d bytes at once", n)
		}
	}
	w.pos += n
	return w.b[i : i+n], nil
}

// zigzag reads a zigzag varint.
func (w *compactWalk) zigzag() (int64, error) {
	u, err := w.uvarint()
	return int64(u>>1) ^ -int64(u&1), err
}

func (w *compactWalk) skip(n int64) error {
	if n > w.left() {
		return w.fail("%d bytes needed, %d left", n, w.left())
	}
	w.pos += n
	return nil
}

// minSize is the fewest bytes one element of a container takes.
func minSize(t byte) int64 {
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
			w.ints.set(key, int64(u>>1)^-int64(u&1))
		}
		return nil
	case ctDouble:
		return w.skip(8)
	case ctUUID:
		return w.skip(16)
	case ctBinary:
		n, err := w.binaryLen()
		if err != nil {
			return err
		}
		w.cost += n
		w.pos += n
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
			return w.fail("nested deeper than %d", maxThriftDepth)
		}
		kt, vt := kv>>4, kv&0x0f
		if need := uint64(minSize(kt) + minSize(vt)); n > uint64(w.left())/need {
			return w.fail("map of %d entries with %d bytes left", n, w.left())
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
	return w.fail("unknown type %d", t)
}

// binaryLen reads the length of a string and checks it against the bytes
// left.
func (w *compactWalk) binaryLen() (int64, error) {
	n, err := w.uvarint()
	if err != nil {
		return 0, err
	}
	if n > uint64(w.left()) {
		return 0, w.fail("string of %d bytes with %d bytes left", n, w.left())
	}
	return int64(n), nil
}

// elements walks a list of n elements of type et. Each element takes at
// least one byte, so a count above the bytes left is refused before the
// decoder can allocate for it.
func (w *compactWalk) elements(n uint64, et byte, depth int) error {
	if depth+1 > maxThriftDepth {
		return w.fail("nested deeper than %d", maxThriftDepth)
	}
	if et == ctStop || et > ctUUID {
		return w.fail("list of unknown type %d", et)
	}
	if n > uint64(w.left()/minSize(et)) {
		return w.fail("list of %d elements with %d bytes left", n, w.left())
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

// inStats says whether the struct being walked is one of w.stats.
func (w *compactWalk) inStats() bool {
	for _, p := range w.stats {
		if slices.Equal(p, w.path[:w.depth]) {
			return true
		}
	}
	return false
}

// structure walks the fields of a struct up to its stop byte. In a
// Statistics struct of w.stats it leaves a long min or max out of the copy,
// and then writes the header of each later field anew: a compact field
// header holds the difference from the previous field's id.
func (w *compactWalk) structure(depth int, key uint32) error {
	if depth > maxThriftDepth {
		return w.fail("nested deeper than %d", maxThriftDepth)
	}
	stats := w.stats != nil && w.inStats()
	var id, kept int64
	gap := false // a field was left out since the last one kept
	for {
		hstart := w.pos
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
		hend := w.pos
		if stats && t == ctBinary && isStatValue(id) {
			n, err := w.binaryLen()
			if err != nil {
				return err
			}
			if n > maxStatBytes {
				if err := w.leaveOut(hstart, w.pos+n); err != nil {
					return err
				}
				w.pos += n
				gap = true
				continue
			}
			w.pos = hend // walked again below, as any string
		}
		if gap {
			// A field before this one was left out: the header is
			// written against the last one kept.
			if err := w.leaveOut(hstart, hend); err != nil {
				return err
			}
			w.out = appendFieldHeader(w.out, t, id, kept)
			gap = false
		}
		kept = id
		sub := uint32(0)
		if depth <= 2 && key < 1<<8 && id > 0 && id < 1<<8 {
			sub = key<<8 | uint32(id)
		}
		if w.stats != nil {
			w.path[w.depth] = int16(id)
			w.depth++
		}
		err = w.value(t, depth, sub, false)
		if w.stats != nil {
			w.depth--
		}
		if err != nil {
			return err
		}
	}
}

// appendFieldHeader appends the compact header of field id of type t, the
// previous field of its struct being prev.
func appendFieldHeader(b []byte, t byte, id, prev int64) []byte {
	if d := id - prev; d > 0 && d <= 15 {
		return append(b, byte(d)<<4|t)
	}
	b = append(b, t)
	return binary.AppendUvarint(b, uint64(id<<1^id>>63))
}

// checkFooterBytes walks the FileMetaData footer before parquet-go decodes
// it: every list, string and map fits in the footer, nothing nests too
// deep, and the estimated memory stays within maxFooterMemory.
func checkFooterBytes(b []byte) error {
	w := memWalk(b)
	return w.footer()
}

// footerStats is where a footer's column chunk statistics are:
// FileMetaData.row_groups, RowGroup.columns, ColumnChunk.meta_data,
// ColumnMetaData.statistics.
var footerStats = [][]int16{{4, 1, 3, 12}}

// footer walks w as a FileMetaData.
func (w *compactWalk) footer() error {
	if err := w.structure(1, 0); err != nil {
		return fmt.Errorf("corrupt footer of %d bytes: %w", w.end-w.start, err)
	}
	if w.cost > maxFooterMemory {
		return fmt.Errorf("footer would take about %d MiB to decode, more than the %d MiB allowed", w.cost>>20, maxFooterMemory>>20)
	}
	return nil
}

// Page header fields the guard checks (see compactWalk.ints).
const (
	phType = iota
	phUncompressed
	phCompressed
	phV1Values
	phDictValues
	phV2Values
	phV2Nulls
	phV2Rows
	phV2DefLen
	phV2RepLen
	numPageFields
)

// pageFieldPaths are the paths (parent<<8 | field id) of the page header
// fields the guard checks.
var pageFieldPaths = [numPageFields]uint32{
	phType: 1, phUncompressed: 2, phCompressed: 3,
	phV1Values: 5<<8 | 1, phDictValues: 7<<8 | 1,
	phV2Values: 8<<8 | 1, phV2Nulls: 8<<8 | 2, phV2Rows: 8<<8 | 3, phV2DefLen: 8<<8 | 5, phV2RepLen: 8<<8 | 6,
}

// pageFields holds a page header's fields that the guard checks, zero when
// absent: an array, so that walking a header allocates nothing.
type pageFields [numPageFields]int64

func (f *pageFields) set(path uint32, v int64) {
	for i, p := range pageFieldPaths {
		if p == path {
			f[i] = v
			return
		}
	}
}

const (
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
// A header holding a min or max value longer than maxStatBytes in its
// statistics (parquet-go's writer records a value whole there, twice) is
// handed out without those values, so the library never decodes them: the
// guard serves offsets as if the file held the shorter header (a splice),
// and the pages after it shifted to match. The library reads a chunk
// through a section of TotalCompressedSize bytes from the chunk's start, in
// these offsets, and stops at the row group's last page, so the chunk's
// end coming earlier is never seen.
//
// Reads of a chunk's pages go forward; the dictionary is re-read from the
// chunk's start, which was checked already. A guard serves one column
// chunk in one goroutine.
type pageGuard struct {
	r          io.ReaderAt
	start, end int64 // the column chunk, in the file
	next       int64 // the first page header not yet checked, in the file
	// shift is what the headers handed out so far are shorter by: a file
	// offset past the last splice is handed out at shift bytes less.
	shift   int64
	splices []splice
	rows    int64 // of the row group
	kind    parquet.Kind
	codec   format.CompressionCodec
	// cut: the chunk is uncompressed text whose huge pages are cut (see
	// cutPage); maxDef is its column's maximum definition level.
	cut    bool
	maxDef byte
	fields pageFields // of the page being checked
	length int        // of a FIXED_LEN_BYTE_ARRAY
	err    error
}

// splice is a header (or a page) handed out at offset at in place of a
// longer one; what follows it is the file's from offset data on.
type splice struct {
	at   int64
	hdr  []byte
	data int64
}

// pageStats is where a page header's statistics are:
// data_page_header.statistics and data_page_header_v2.statistics.
var pageStats = [][]int16{{5, 5}, {8, 8}}

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
		kind: chunk.Type().Kind(), length: chunk.Type().Length(), codec: m.Codec}
	return chunk.PagesFrom(g), g
}

// cutValues has the guard cut the chunk's huge pages (see cutPage), if it
// can: the values of its column, whose maximum definition level is maxDef,
// are read cut to MaxValueBytes.
func (g *pageGuard) cutValues(maxDef byte) {
	g.cut, g.maxDef = g.kind == parquet.ByteArray && g.codec == format.Uncompressed, maxDef
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

// locate says what is handed out at offset v: the rest of a splice's
// header, or the file's bytes from offset file on, room of them before the
// next splice.
func (g *pageGuard) locate(v int64) (hdr []byte, file, room int64) {
	file, room = v+g.shift, math.MaxInt64
	for i := len(g.splices) - 1; i >= 0; i-- {
		s := &g.splices[i]
		if v < s.at {
			file, room = v, s.at-v
			continue
		}
		n := int64(len(s.hdr))
		if v < s.at+n {
			return s.hdr[v-s.at:], 0, 0
		}
		return nil, s.data + v - s.at - n, room
	}
	return nil, file, room
}

func (g *pageGuard) ReadAt(p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		hdr, file, room := g.locate(off + int64(done))
		if hdr != nil {
			done += copy(p[done:], hdr)
			continue
		}
		q := p[done:]
		if int64(len(q)) > room {
			q = q[:room]
		}
		n, err := g.r.ReadAt(q, file)
		spliced := false
		for g.err == nil && g.next < file+int64(n) && g.next < g.end {
			at := g.next
			size, short, herr := g.page(q[:n], file)
			if errors.Is(herr, errRead) {
				return done, herr
			}
			if herr != nil {
				g.err = herr
				break
			}
			g.next += size
			if short != nil {
				// From the header on, the bytes read are not what is
				// handed out: the next round serves the splice.
				g.splices = append(g.splices, splice{at: at - g.shift, hdr: short.hdr, data: at + short.long})
				g.shift += short.long - int64(len(short.hdr))
				n, err, spliced = int(max(at-file, 0)), nil, true
				break
			}
		}
		if g.err != nil && g.next < file+int64(n) {
			return done + int(max(g.next-file, 0)), g.err
		}
		done += n
		if err != nil {
			return done, err
		}
		if n < len(q) && !spliced {
			return done, io.ErrUnexpectedEOF
		}
	}
	return done, nil
}

// errRead marks a failure of the underlying read while checking a header:
// the File's error, not the page's.
var errRead = errors.New("read failed")

// shortHeader is what is handed out (hdr) in place of the first long bytes
// of a page in the file: its header with the long statistics values left
// out, or the whole page with its long values cut (see cutPage).
type shortHeader struct {
	hdr  []byte
	long int64
}

// page checks the page whose header starts at g.next, walking it from the
// bytes just read (p at off) and reading on where they end. It returns the
// page's length in the file, header included, and what to hand out instead
// when its statistics hold a long value or the page is a huge one cut.
func (g *pageGuard) page(p []byte, off int64) (int64, *shortHeader, error) {
	g.fields = pageFields{}
	w := compactWalk{r: g.r, start: g.next, pos: g.next, end: g.next + min(maxPageHeaderSize, g.end-g.next),
		ints: &g.fields, stats: pageStats}
	if g.next >= off && g.next < off+int64(len(p)) {
		w.b, w.base = p[g.next-off:], g.next
	}
	if err := w.structure(1, 0); err != nil {
		var re *errWalkRead
		if errors.As(err, &re) {
			return 0, nil, fmt.Errorf("%w: %w", errRead, re.err)
		}
		return 0, nil, fmt.Errorf("page header at offset %d: %w", g.next, err)
	}
	long := w.pos - g.next
	if err := g.checkPage(w.ints, long); err != nil {
		return 0, nil, fmt.Errorf("page at offset %d: %w", g.next, err)
	}
	var short *shortHeader
	if w.out != nil {
		if err := w.flush(w.pos); err != nil {
			return 0, nil, fmt.Errorf("%w: %w", errRead, err)
		}
		short = &shortHeader{hdr: w.out, long: long}
	}
	comp := w.ints[phCompressed]
	if t := w.ints[phType]; g.cut && w.ints[phUncompressed] > hugePageBytes && (t == pageData || t == pageDataV2 || t == pageDictionary) {
		hdr := w.out
		if hdr == nil {
			hdr = make([]byte, long)
			if n, err := g.r.ReadAt(hdr, g.next); int64(n) < long {
				return 0, nil, fmt.Errorf("%w: %w", errRead, err)
			}
		}
		page, err := g.cutPage(hdr, g.next+long, comp)
		switch {
		case err == nil:
			short = &shortHeader{hdr: page, long: long + comp}
		case !errors.Is(err, errNoCut):
			return 0, nil, fmt.Errorf("%w: %w", errRead, err)
		}
	}
	return long + comp, short, nil
}

// checkPage checks a page header's numbers against the chunk, the row
// group and the limits above.
func (g *pageGuard) checkPage(h *pageFields, headerLen int64) error {
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
