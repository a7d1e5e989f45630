package readers

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"slices"
	"strings"
	"sync"

	"github.com/parquet-go/parquet-go"

	"github.com/convertro-etl/convertro-etl/internal/segment"
)

// Hint carries what the operator knows better than the data.
type Hint struct {
	// Type is the message type of a file whose type cannot be told (no
	// `type` column, segment_type=, table folder or event column), and of
	// the rows of a `type` column that are NULL in such a file. It never
	// overrides a detected type. TypeUnknown: such a file is refused.
	Type segment.Type
}

// RowGroup describes one row group of a Parquet file: the unit of work.
type RowGroup struct {
	Rows int64
	// CompressedBytes is the compressed size of the column chunks this
	// reader fetches for the row group (not of the columns it ignores).
	CompressedBytes int64
}

// DefaultBatchSize is the batch size ReadRowGroup uses when given 0 or less.
const DefaultBatchSize = 1024

// readBufferSize is the read size for column chunks: large enough that a
// remote object is fetched in a few ranged reads rather than 4 KiB ones.
const readBufferSize = 256 << 10

// chunkBufferSize is the library's read buffer for the column chunks of a
// file of size bytes: readBufferSize, or for a smaller file the power of
// two that holds it (at least 4 KiB), which still reads any of its chunks
// in one piece. The library keeps a buffer for each column a decoder
// reads: on objects of 23 rows, 18 of 256 KiB for chunks of a few hundred
// bytes.
func chunkBufferSize(size int64) int {
	if size >= readBufferSize {
		return readBufferSize
	}
	return max(4<<10, 1<<bits.Len64(uint64(size-1)))
}

// ParquetFile is an opened Parquet object with its decoding plan.
type ParquetFile struct {
	uri      string
	f        File
	size     int64
	pf       *parquet.File
	plan     plan
	perRow   bool // rows carry their own type (a `type` column)
	fileType segment.Type
	groups   []RowGroup
	maxRows  int64
	// free holds the states of finished ReadRowGroup calls for the next
	// ones. A plain list and not a sync.Pool: a pool keeps what it holds,
	// and through a state's cursors the file's metadata, reachable for two
	// garbage collections after the file is dropped, which over many small
	// files added up to most of the heap.
	mu   sync.Mutex
	free []*rgState
	// fetches are the row groups prefetched or being read (rangeread.go).
	fetches map[int]*fetch
}

// OpenParquet reads the footer of f (the object o), resolves the columns the
// mapping needs and detects the message type. It reads no data pages.
//
// Errors wrap ErrBadFile and name o.URI (and the column, where one is at
// fault) when the object is not a usable Parquet file; an error of the
// underlying File (a failed or changed read) is returned as it is, wrapped
// with the operation and the object.
func OpenParquet(ctx context.Context, f File, o Object, h Hint) (p *ParquetFile, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := &trackedReader{r: f, size: f.Size()}
	defer func() {
		if v := recover(); v != nil {
			p, err = nil, fmt.Errorf("open %s: %w: footer decoder failed: %v", o.URI, ErrBadFile, v)
		}
	}()
	fc, _ := f.(ioFile)
	var cached []byte
	if fc != nil {
		cached = fc.cachedFooter()
	}
	ts := &defaultTails
	if fc != nil {
		ts = fc.tails()
	}
	pf, footer, err := openFooterSized(r, cached, ts)
	if err != nil {
		if ioErr := r.failure(); ioErr != nil {
			return nil, fmt.Errorf("open %s: %w", o.URI, ioErr)
		}
		return nil, fmt.Errorf("open %s: %w: %w", o.URI, ErrBadFile, err)
	}
	p = &ParquetFile{uri: o.URI, f: f, size: r.size, pf: pf}
	users := strings.EqualFold(o.Partition.Table, "users")
	pl, found, err := buildPlan(pf.Root(), users)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w: %w", o.URI, ErrBadFile, err)
	}
	p.plan = pl
	if err := p.detect(o, found, h, users); err != nil {
		return nil, err
	}
	if err := p.checkRowGroups(); err != nil {
		return nil, err
	}
	if fc != nil && cached == nil {
		fc.keepFooter(footer)
	}
	return p, nil
}

// openFooter checks the magic bytes, the footer length and, walking it
// (compactWalk.footer), every count and length in the footer, before the
// Parquet library allocates anything from them; then it opens the file.
//
// The file's tail is read once (one request for a remote object, beside the
// 4-byte head read at the same time; the whole object when it is small) and
// serves the library's own footer reads; a footer larger than tailSizer
// says is read in a second request when it is at most footerInMemory bytes.
// A longer one is walked by windows, so that a huge min or max value in its
// statistics is never read: the library is given the footer without such
// values (see maxStatBytes), as if the file ended with it.
//
// cached, when not nil, is the footer (its last n+8 bytes, or more of the
// tail) of an earlier open of this version, checked then: nothing is read.
// footer is those bytes, to keep, or nil for a footer that cannot be kept
// (one the library was given reduced).
func openFooter(r *trackedReader, cached []byte) (pf *parquet.File, footer []byte, err error) {
	return openFooterSized(r, cached, &defaultTails)
}

// openFooterSized is openFooter with the first read sized by ts.
func openFooterSized(r *trackedReader, cached []byte, ts *tailSizer) (pf *parquet.File, footer []byte, err error) {
	if r.size < 12 {
		return nil, nil, fmt.Errorf("%d bytes is too short for a Parquet file", r.size)
	}
	tail := cached
	if tail == nil {
		if tail, err = readTail(r, ts); err != nil {
			return nil, nil, err
		}
	}
	if len(tail) < 8 {
		return nil, nil, errors.New("footer of the earlier open lost") // cannot be: a kept footer is n+8 bytes
	}
	n := int64(binary.LittleEndian.Uint32(tail[len(tail)-8:]))
	if n == 0 || n > r.size-12 {
		return nil, nil, fmt.Errorf("footer length %d does not fit in %d bytes: truncated or corrupt footer", n, r.size)
	}
	if cached == nil && n+8 > int64(len(tail)) && n+8 <= footerInMemory {
		tail = make([]byte, n+8)
		if _, err := r.ReadAt(tail, r.size-n-8); err != nil {
			return nil, nil, fmt.Errorf("read footer: %w", err)
		}
	}
	size := r.size // of the file the library reads
	if cached == nil {
		start := r.size - 8 - n
		w := compactWalk{r: r, start: start, pos: start, end: start + n, stats: footerStats,
			b: tail, base: r.size - int64(len(tail)), window: readBufferSize}
		if err := w.footer(); err != nil {
			var re *errWalkRead
			if errors.As(err, &re) {
				return nil, nil, fmt.Errorf("read footer: %w", re.err)
			}
			return nil, nil, err
		}
		kept := n // the footer the library reads
		if w.out != nil {
			if err := w.flush(w.end); err != nil {
				return nil, nil, fmt.Errorf("read footer: %w", err)
			}
			kept = int64(len(w.out))
			tail = binary.LittleEndian.AppendUint32(w.out, uint32(kept))
			tail = append(tail, "PAR1"...)
			size = start + int64(len(tail))
		}
		if kept > maxFooterSize {
			return nil, nil, fmt.Errorf("footer of %d bytes is larger than the %d allowed", kept, maxFooterSize)
		}
		if w.out == nil && n+8 <= int64(len(tail)) {
			// Read whole and given to the library as it is: kept for the
			// next open of this version.
			ts.note(n + 8)
			footer = keptTail(tail, n+8)
		}
	}
	tr := &tailReader{r: r, off: size - int64(len(tail)), tail: tail}
	// The page index and bloom filters are never used: skipping them
	// leaves nothing else unchecked to read.
	pf, err = parquet.OpenFile(tr, size,
		parquet.SkipMagicBytes(true),
		parquet.SkipPageIndex(true),
		parquet.SkipBloomFilters(true),
		parquet.ReadBufferSize(chunkBufferSize(size)),
	)
	tr.tail = nil // the File keeps tr as its reader: drop the tail
	return pf, footer, err
}

// footerInMemory is the longest footer read in one piece: a longer one,
// rare (a wide schema over many row groups) unless it holds a long value,
// costs the library a second read.
const footerInMemory = 1 << 20

// tailReader serves reads within the file's tail, read already, from
// memory.
type tailReader struct {
	r    io.ReaderAt
	off  int64
	tail []byte
}

func (t *tailReader) ReadAt(b []byte, off int64) (int, error) {
	if off >= t.off && off+int64(len(b)) <= t.off+int64(len(t.tail)) {
		return copy(b, t.tail[off-t.off:]), nil
	}
	return t.r.ReadAt(b, off)
}

// detect decides the file's message type, first match wins (input-schemas.md),
// and checks the columns that type cannot do without.
func (p *ParquetFile) detect(o Object, found map[field]*parquet.Column, h Hint, users bool) error {
	fallback := segment.TypeUnknown
	switch {
	case segment.ParseType(o.Partition.SegmentType) != segment.TypeUnknown:
		fallback = segment.ParseType(o.Partition.SegmentType)
	case tableType(o.Partition.Table) != segment.TypeUnknown:
		fallback = tableType(o.Partition.Table)
	case found[fEvent] != nil || found[fEventText] != nil:
		fallback = segment.TypeTrack
	default: // the operator's hint only where nothing else tells
		fallback = h.Type
	}
	_, hasTypeCol := found[fType]
	p.perRow = hasTypeCol
	if !p.perRow {
		// The type is the file's: no `type` column to read.
		cols := p.plan.cols[:0]
		for _, c := range p.plan.cols {
			if c.field != fType {
				cols = append(cols, c)
			}
		}
		p.plan.cols = cols
	}
	p.fileType = fallback
	p.plan.fileType = fallback
	if !p.perRow && fallback == segment.TypeUnknown {
		return fmt.Errorf("open %s: %w: cannot tell the message type: no type column, no segment_type= partition, "+
			"no table folder (identifies, tracks, ...) and no event column; give its type as a hint (identify or track)", o.URI, ErrBadFile)
	}
	if p.perRow {
		return nil
	}
	switch fallback {
	case segment.TypeTrack:
		if !p.planned(fEvent) && !p.planned(fEventText) {
			return fmt.Errorf("open %s: %w: track file without column %q or %q", o.URI, ErrBadFile, "event_text", "event")
		}
	case segment.TypeIdentify:
		if !p.planned(fUserID) {
			name := "user_id"
			if users {
				name = "id"
			}
			return fmt.Errorf("open %s: %w: identify file without column %q", o.URI, ErrBadFile, name)
		}
	}
	return nil
}

func (p *ParquetFile) planned(f field) bool {
	for _, c := range p.plan.cols {
		if c.field == f {
			return true
		}
	}
	return false
}

// checkRowGroups rejects footers whose row groups point outside the file,
// so that a corrupt footer fails at open rather than as a huge read.
func (p *ParquetFile) checkRowGroups() error {
	cols := make([]groupColumn, len(p.plan.cols))
	for k, c := range p.plan.cols {
		cols[k] = groupColumn{c.leaf, c.name}
	}
	groups, err := checkGroups(p.uri, p.pf, p.size, cols)
	if err != nil {
		return err
	}
	p.groups = groups
	for _, g := range groups {
		p.maxRows = max(p.maxRows, g.Rows)
	}
	return nil
}

// groupColumn is a leaf column a reader will read, for checkGroups.
type groupColumn struct {
	leaf int
	name string
}

// checkGroups checks the row groups of pf, the object uri of size bytes,
// before anything is read from them: rows a row group can hold, and the
// chunks of cols inside the file. It returns the row groups with the
// compressed bytes of cols' chunks. Both readers of Parquet (ParquetFile,
// Table) open through it.
func checkGroups(uri string, pf *parquet.File, size int64, cols []groupColumn) ([]RowGroup, error) {
	md := pf.Metadata()
	rgs := pf.RowGroups()
	if len(md.RowGroups) != len(rgs) {
		return nil, fmt.Errorf("open %s: %w: footer lists %d row groups, %d readable", uri, ErrBadFile, len(md.RowGroups), len(rgs))
	}
	groups := make([]RowGroup, len(rgs))
	for i, rg := range md.RowGroups {
		if rg.NumRows < 0 {
			return nil, fmt.Errorf("open %s: %w: row group %d has %d rows", uri, ErrBadFile, i, rg.NumRows)
		}
		// Every row is encoded in the row group's column chunks, and even
		// a run-length-encoded run of NULLs takes bytes: a row group that
		// claims far more rows than its bytes can hold would only make the
		// reader loop over rows that are not there.
		var chunkBytes int64
		for j := range rg.Columns {
			chunkBytes += max(rg.Columns[j].MetaData.TotalCompressedSize, 0)
		}
		if limit := maxRowsPerByte*chunkBytes + minRowsLimit; rg.NumRows > limit {
			return nil, fmt.Errorf("open %s: %w: row group %d claims %d rows in %d bytes of column chunks (at most %d)",
				uri, ErrBadFile, i, rg.NumRows, chunkBytes, limit)
		}
		groups[i].Rows = rg.NumRows
		if len(rgs[i].ColumnChunks()) != len(rg.Columns) {
			return nil, fmt.Errorf("open %s: %w: row group %d: column chunks do not match the schema", uri, ErrBadFile, i)
		}
		for _, c := range cols {
			if c.leaf < 0 || c.leaf >= len(rg.Columns) {
				return nil, fmt.Errorf("open %s: %w: row group %d has no chunk for column %q", uri, ErrBadFile, i, c.name)
			}
			m := &rg.Columns[c.leaf].MetaData
			start := chunkStart(m)
			if start < 0 || m.TotalCompressedSize < 0 || start > size || m.TotalCompressedSize > size-start {
				return nil, fmt.Errorf("open %s: %w: row group %d column %q: chunk lies outside the file", uri, ErrBadFile, i, c.name)
			}
			groups[i].CompressedBytes += m.TotalCompressedSize
		}
	}
	return groups, nil
}

// RowGroups lists the file's row groups in order.
func (p *ParquetFile) RowGroups() []RowGroup { return slices.Clone(p.groups) }

// Type is the message type of the file's rows, or TypeUnknown when each row
// carries its own (a `type` column).
func (p *ParquetFile) Type() segment.Type {
	if p.perRow {
		return segment.TypeUnknown
	}
	return p.fileType
}

// Columns lists, for each resolved field, the file's column that feeds it
// ("context_device_id" <- "context.device.id"). It is for plans and logs.
func (p *ParquetFile) Columns() map[string]string {
	m := make(map[string]string, len(p.plan.cols))
	for _, c := range p.plan.cols {
		m[fieldSpecs[c.field].name] = c.name
	}
	return m
}

// FieldNulls says, from the footer alone, how many rows of row group i hold
// NULL in the field named by its warehouse name ("context_device_id",
// "anonymous_id", "user_id"; see Columns): every row when the file has no
// column for the field, none when its column is REQUIRED, else the column
// chunk's statistics. known is false when the statistics do not tell: a
// null count of 0 is believed only beside a min or max value, since a
// writer that writes no statistics leaves the count 0 too (min and max
// values over maxStatBytes are not kept, so a chunk whose values are all
// longer does not tell). (An empty
// string is not NULL here, though the mapping treats it as missing.) It is
// for plans: nothing is read.
func (p *ParquetFile) FieldNulls(i int, field string) (nulls int64, known bool) {
	if i < 0 || i >= len(p.groups) {
		return 0, false
	}
	for _, c := range p.plan.cols {
		if fieldSpecs[c.field].name != field {
			continue
		}
		if c.maxDef == 0 {
			return 0, true
		}
		st := &p.pf.Metadata().RowGroups[i].Columns[c.leaf].MetaData.Statistics
		switch {
		case st.NullCount > 0:
			return min(st.NullCount, p.groups[i].Rows), true
		case len(st.MinValue) > 0 || len(st.MaxValue) > 0 || len(st.Min) > 0 || len(st.Max) > 0:
			return 0, true
		}
		return 0, false
	}
	return p.groups[i].Rows, true
}

// rgState is the reusable memory of one ReadRowGroup call.
type rgState struct {
	batch   []segment.Message
	cursors []cursor
	arena   arena
}

func (p *ParquetFile) getState(batchSize int) *rgState {
	p.mu.Lock()
	var st *rgState
	if n := len(p.free); n > 0 {
		st, p.free[n-1] = p.free[n-1], nil
		p.free = p.free[:n-1]
	}
	p.mu.Unlock()
	if st != nil && len(st.batch) == batchSize {
		return st
	}
	st = &rgState{
		batch:   make([]segment.Message, batchSize),
		cursors: make([]cursor, len(p.plan.cols)),
	}
	for i := range p.plan.cols {
		st.cursors[i] = cursor{cp: &p.plan.cols[i], gather: make([]int32, batchSize), fileType: p.plan.fileType}
	}
	return st
}

// ReadRowGroup decodes row group i in batches of at most batchSize rows and
// calls fn with each batch and the index (within the row group) of its first
// row. The batch and the byte slices in it are reused: they are valid only
// during fn. An error from fn stops the read and is returned as it is.
//
// Calls for different row groups may run concurrently. Errors in the data
// wrap ErrBadFile and name the object, the row group and the column; a panic
// inside the Parquet decoder is one of them.
func (p *ParquetFile) ReadRowGroup(ctx context.Context, i, batchSize int, fn func(firstRow int64, batch []segment.Message) error) (err error) {
	if i < 0 || i >= len(p.groups) {
		return fmt.Errorf("read %s: row group %d of %d does not exist", p.uri, i, len(p.groups))
	}
	if batchSize <= 0 {
		batchSize = DefaultBatchSize
	}
	// No batch larger than the largest row group: a huge batchSize must not
	// allocate memory no row group can fill.
	batchSize = int(min(int64(batchSize), max(p.maxRows, 1)))
	rows := p.groups[i].Rows
	st := p.getState(batchSize)
	// The chunks are read in a few ranges at once (rangeread.go), or were
	// prefetched; the decoder reads them from memory.
	ft, err := p.takeFetch(ctx, i)
	if err != nil {
		return err
	}
	defer ft.release()
	if err := ft.wait(ctx); err != nil {
		return err
	}
	r := &trackedReader{r: &fetchedReader{ft: ft, f: p.f}, size: p.size}
	chunks := p.pf.RowGroups()[i].ColumnChunks()
	guards := make([]*pageGuard, len(st.cursors))
	for k := range st.cursors {
		c := &st.cursors[k]
		chunk := chunks[c.cp.leaf]
		if fc, ok := chunk.(*parquet.FileColumnChunk); ok {
			m := &p.pf.Metadata().RowGroups[i].Columns[c.cp.leaf].MetaData
			c.pages, guards[k] = guardPages(r, fc, m, rows)
			if fieldSpecs[c.cp.field].sem == semBytes && c.cp.phys == physBytes {
				guards[k].cutValues(c.cp.maxDef) // as the cursor cuts them
			}
		} else {
			c.pages = chunk.Pages()
		}
		c.page, c.levels, c.lvl, c.val = nil, 0, 0, 0
	}
	inFn := false
	column := ""
	ok := false
	defer func() {
		for k := range st.cursors {
			st.cursors[k].close()
		}
		st.arena.release()
		if ok {
			p.mu.Lock()
			p.free = append(p.free, st)
			p.mu.Unlock()
		}
	}()
	defer func() {
		if v := recover(); v != nil {
			if inFn {
				panic(v)
			}
			err = fmt.Errorf("read %s row group %d column %q: %w: decoder failed: %v", p.uri, i, column, ErrBadFile, v)
		}
	}()

	for first := int64(0); first < rows; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := int(min(int64(batchSize), rows-first))
		batch := st.batch[:n]
		// Fields the plan fills are overwritten; the others were zeroed at
		// allocation and only fn could have changed them: Type, which a
		// per-row type column fills, is reset. (Clearing whole messages
		// would cost a quarter of the decoding time.)
		ft := p.plan.fileType
		for j := range batch {
			batch[j].Type = ft
		}
		st.arena.reset()
		for k := range st.cursors {
			c := &st.cursors[k]
			column = c.cp.name
			if err := c.fill(batch, &st.arena); err != nil {
				if ioErr := r.failure(); ioErr != nil {
					return fmt.Errorf("read %s row group %d column %q: %w", p.uri, i, column, ioErr)
				}
				if g := guards[k]; g != nil && g.failure() != nil {
					err = g.failure() // the page refused, not what the library made of it
				}
				return fmt.Errorf("read %s row group %d column %q: %w: %w", p.uri, i, column, ErrBadFile, err)
			}
		}
		// A read may fail with all its bytes delivered (a file changed
		// under an io.ReaderAt that returns n == len(p) with an error),
		// and the library drops such errors: no batch is delivered past
		// a failed read.
		if ioErr := r.failure(); ioErr != nil {
			return fmt.Errorf("read %s row group %d: %w", p.uri, i, ioErr)
		}
		column = ""
		inFn = true
		err := fn(first, batch)
		inFn = false
		if err != nil {
			return err
		}
		first += int64(n)
	}
	ok = true
	return nil
}

// trackedReader bounds reads to the file and remembers the first failure of
// the underlying File, so that a failed or changed read is reported as
// itself and not mistaken for a bad file.
type trackedReader struct {
	r    io.ReaderAt
	size int64
	mu   sync.Mutex
	err  error
}

func (t *trackedReader) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 || off >= t.size {
		return 0, io.EOF
	}
	short := false
	if int64(len(b)) > t.size-off {
		b = b[:t.size-off]
		short = true
	}
	n, err := t.r.ReadAt(b, off)
	if err != nil && err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.mu.Lock()
		if t.err == nil {
			t.err = err
		}
		t.mu.Unlock()
	}
	if err == nil && short {
		err = io.EOF
	}
	return n, err
}

func (t *trackedReader) failure() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}
