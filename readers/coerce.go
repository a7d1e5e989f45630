package readers

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"strconv"
	"sync"
	"unsafe"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/deprecated"
	"github.com/parquet-go/parquet-go/encoding"
	"github.com/parquet-go/parquet-go/format"

	"github.com/convertro-etl/convertro-etl/internal/segment"
)

// Coercion from Parquet pages to Message fields. A cursor walks the pages of
// one column chunk; for each slice of rows it first gathers, per row, the
// index of its value (in the page, or in the dictionary for dictionary
// pages; -1 for NULL), then one tight loop per (field kind, physical type)
// turns those values into staged field values. The type switch happens once
// per page slice, never per value.

type deprecatedConverted = deprecated.ConvertedType

type formatDecimal = format.DecimalType

func asDecimal(lt *format.LogicalType) *format.DecimalType {
	d, _ := lt.Value.(*format.DecimalType)
	return d
}

func isDate(lt *format.LogicalType, ct deprecatedConverted) bool {
	if lt != nil {
		if _, ok := lt.Value.(*format.DateType); ok {
			return true
		}
	}
	return ct == deprecated.Date
}

func isTemporal(lt *format.LogicalType, ct deprecatedConverted) bool {
	if lt != nil {
		switch lt.Value.(type) {
		case *format.DateType, *format.TimeType, *format.TimestampType:
			return true
		}
	}
	switch ct {
	case deprecated.Date, deprecated.TimeMillis, deprecated.TimeMicros, deprecated.TimestampMillis, deprecated.TimestampMicros:
		return true
	}
	return false
}

// isUnsigned reports an INT32 or INT64 column of unsigned integers (logical
// INT(bits, false), or converted UINT_8 to UINT_64), whose values are read
// as unsigned: a UINT64 of 2^63 is not -2^63.
func isUnsigned(lt *format.LogicalType, ct deprecatedConverted) bool {
	if lt != nil {
		if it, ok := lt.Value.(*format.IntType); ok {
			return !it.IsSigned
		}
	}
	switch ct {
	case deprecated.Uint8, deprecated.Uint16, deprecated.Uint32, deprecated.Uint64:
		return true
	}
	return false
}

// timestampMultiplier says how an INT64 column becomes microseconds:
// multiply by a positive result, divide by minus a negative one; 0 means the
// column is not an instant (a DECIMAL, a time of day).
func timestampMultiplier(lt *format.LogicalType, ct deprecatedConverted) int64 {
	if lt != nil && lt.Value != nil {
		switch v := lt.Value.(type) {
		case *format.TimestampType:
			switch v.Unit.Value.(type) {
			case *format.MilliSeconds:
				return 1000
			case *format.MicroSeconds:
				return 1
			case *format.NanoSeconds:
				return -1000
			}
			return 0
		case *format.IntType:
			return 1
		default:
			return 0
		}
	}
	switch ct {
	case deprecated.TimestampMillis:
		return 1000
	case 0, deprecated.TimestampMicros, deprecated.Int64:
		// 0 is both "no converted type" and UTF8; an INT64 cannot be UTF8.
		return 1
	}
	return 0
}

// errCorrupt marks data that contradicts itself (more rows than values, a
// dictionary index out of range). It is always reported with ErrBadFile.
var errCorrupt = errors.New("corrupt column chunk")

// view is a typed window on the values of a page or of a dictionary.
type view struct {
	bytes []byte
	offs  []uint32
	flba  []byte
	size  int
	i32   []int32
	i64   []int64
	f32   []float32
	f64   []float64
	i96   []deprecated.Int96
	bits  []byte
	n     int // number of values
}

func viewOf(kind parquet.Kind, size int, d *encoding.Values) (view, error) {
	var v view
	switch kind {
	case parquet.ByteArray:
		v.bytes, v.offs = d.ByteArray()
		if len(v.offs) > 0 {
			v.n = len(v.offs) - 1
			// Offsets must be ordered and inside the data.
			prev := v.offs[0]
			for _, o := range v.offs {
				if o < prev {
					return v, errCorrupt
				}
				prev = o
			}
			if int(prev) > len(v.bytes) {
				return v, errCorrupt
			}
		}
	case parquet.FixedLenByteArray:
		v.flba, v.size = d.FixedLenByteArray()
		if v.size <= 0 {
			v.size = size
		}
		if v.size > 0 {
			v.n = len(v.flba) / v.size
		}
	case parquet.Int32:
		v.i32 = d.Int32()
		v.n = len(v.i32)
	case parquet.Int64:
		v.i64 = d.Int64()
		v.n = len(v.i64)
	case parquet.Float:
		v.f32 = d.Float()
		v.n = len(v.f32)
	case parquet.Double:
		v.f64 = d.Double()
		v.n = len(v.f64)
	case parquet.Int96:
		v.i96 = d.Int96()
		v.n = len(v.i96)
	case parquet.Boolean:
		v.bits = d.Boolean()
		v.n = 8 * len(v.bits)
	default:
		return v, fmt.Errorf("%w: unexpected physical type %v", errCorrupt, kind)
	}
	return v, nil
}

// cursor reads one column chunk of one row group, page by page.
type cursor struct {
	cp       *colPlan
	pages    parquet.Pages
	page     parquet.Page
	defs     []byte
	levels   int // levels (rows) in the current page
	lvl      int // next level
	val      int // next non-NULL value of the page
	idx      []int32
	v        view
	dense    bool // the current page has no NULLs
	dict     parquet.Dictionary
	dictView view
	// dictBytes holds the byte-array dictionary as slices, so that a row
	// costs one load and one store.
	dictBytes [][]byte
	scratch   [8]byte
	fileType  segment.Type // for rows whose `type` is NULL or unknown
	gather    []int32
}

func (c *cursor) close() {
	if c.page != nil {
		parquet.Release(c.page)
		c.page = nil
	}
	if c.pages != nil {
		c.pages.Close()
		c.pages = nil
	}
	clear(c.dictBytes)
	c.dict, c.dictView, c.v, c.idx, c.defs, c.dictBytes = nil, view{}, view{}, nil, nil, c.dictBytes[:0]
}

func (c *cursor) loadPage() error {
	page, err := c.pages.ReadPage()
	if c.page != nil {
		parquet.Release(c.page)
		c.page = nil
	}
	if err != nil {
		if err == io.EOF {
			return fmt.Errorf("%w: the column ends before the row group's last row", errCorrupt)
		}
		return err
	}
	c.page = page
	c.levels = int(page.NumValues())
	c.lvl, c.val = 0, 0
	if c.levels < 0 {
		return errCorrupt
	}
	nonNull := c.levels
	c.defs = nil
	if c.cp.maxDef > 0 {
		c.defs = page.DefinitionLevels()
		if len(c.defs) != c.levels {
			return fmt.Errorf("%w: %d definition levels for %d values", errCorrupt, len(c.defs), c.levels)
		}
		nonNull = 0
		for _, d := range c.defs {
			if d == c.cp.maxDef {
				nonNull++
			}
		}
	}
	// A page without NULLs (the common case even in all-OPTIONAL schemas)
	// skips the definition levels altogether.
	c.dense = nonNull == c.levels
	if dict := page.Dictionary(); dict != nil {
		data := page.Data()
		c.idx = data.Int32()
		if len(c.idx) < nonNull {
			return fmt.Errorf("%w: %d dictionary indexes for %d values", errCorrupt, len(c.idx), nonNull)
		}
		c.idx = c.idx[:nonNull]
		if dict != c.dict { // one dictionary serves every page of the chunk
			dv := dict.Page().Data()
			if c.dictView, err = viewOf(c.cp.kind, c.cp.size, &dv); err != nil {
				return err
			}
			c.dict = dict
			c.dictBytes = c.dictBytes[:0]
			if c.cp.phys == physBytes && c.cp.kind == parquet.ByteArray {
				for i := range c.dictView.n {
					s := c.dictView.offs[i]
					e := min(c.dictView.offs[i+1], s+MaxValueBytes) // cut as plain values are
					c.dictBytes = append(c.dictBytes, c.dictView.bytes[s:e:e])
				}
			}
		}
		c.v = c.dictView
		// Checked once per page, so the row loops index without checks.
		n := uint32(c.v.n)
		for _, x := range c.idx {
			if uint32(x) >= n {
				return fmt.Errorf("%w: dictionary index %d out of %d", errCorrupt, x, n)
			}
		}
	} else {
		c.idx = nil
		data := page.Data()
		c.v, err = viewOf(c.cp.kind, c.cp.size, &data)
		if err == nil && c.v.n < nonNull {
			return fmt.Errorf("%w: %d values for %d non-NULL rows", errCorrupt, c.v.n, nonNull)
		}
	}
	return err
}

// next gathers up to k rows of the current page (loading the next page
// when this one is done) and returns them as value indexes, -1 for NULL.
// The result may alias the page's dictionary indexes: read it, never write.
func (c *cursor) next(k int) ([]int32, error) {
	for c.lvl >= c.levels {
		if err := c.loadPage(); err != nil {
			return nil, err
		}
	}
	m := min(k, c.levels-c.lvl)
	val := c.val
	var g []int32
	switch {
	case c.dense && c.idx != nil:
		g = c.idx[val : val+m]
		val += m
	case c.dense:
		g = c.gather[:m]
		for j := range g {
			g[j] = int32(val + j)
		}
		val += m
	default:
		g = c.gather[:m]
		defs := c.defs[c.lvl : c.lvl+m]
		maxDef := c.cp.maxDef
		if c.idx != nil {
			for j, d := range defs {
				if d != maxDef {
					g[j] = -1
					continue
				}
				g[j] = c.idx[val]
				val++
			}
		} else {
			for j, d := range defs {
				if d != maxDef {
					g[j] = -1
					continue
				}
				g[j] = int32(val)
				val++
			}
		}
	}
	c.val = val
	c.lvl += m
	return g, nil
}

// Fields are written straight into the batch's messages: each decode loop
// gets the byte offset of its field (fieldOffset) and stores through
// fieldAt, so there is no staging copy and no per-row switch on the field.
var fieldOffset = [numFields]uintptr{
	fType:                  unsafe.Offsetof(segment.Message{}.Type),
	fMessageID:             unsafe.Offsetof(segment.Message{}.MessageID),
	fUserID:                unsafe.Offsetof(segment.Message{}.UserID),
	fAnonymousID:           unsafe.Offsetof(segment.Message{}.AnonymousID),
	fDeviceID:              unsafe.Offsetof(segment.Message{}.DeviceID),
	fEventText:             unsafe.Offsetof(segment.Message{}.EventText),
	fEvent:                 unsafe.Offsetof(segment.Message{}.Event),
	fOrderID:               unsafe.Offsetof(segment.Message{}.OrderID),
	fTotal:                 unsafe.Offsetof(segment.Message{}.Total),
	fRevenue:               unsafe.Offsetof(segment.Message{}.Revenue),
	fRepeat:                unsafe.Offsetof(segment.Message{}.Repeat),
	fTimestamp:             unsafe.Offsetof(segment.Message{}.Timestamp),
	fOriginalTimestamp:     unsafe.Offsetof(segment.Message{}.OriginalTimestamp),
	fSentAt:                unsafe.Offsetof(segment.Message{}.SentAt),
	fReceivedAt:            unsafe.Offsetof(segment.Message{}.ReceivedAt),
	fUserAgent:             unsafe.Offsetof(segment.Message{}.UserAgent),
	fIP:                    unsafe.Offsetof(segment.Message{}.IP),
	fIntegrationsAll:       unsafe.Offsetof(segment.Message{}.IntegrationsAll),
	fIntegrationsConvertro: unsafe.Offsetof(segment.Message{}.IntegrationsConvertro),
}

// fieldAt is the field of type T at offset off in m. The offsets come from
// fieldOffset and the types from fieldSpecs; TestFieldOffsets checks that
// they agree.
func fieldAt[T any](m *segment.Message, off uintptr) *T {
	return (*T)(unsafe.Add(unsafe.Pointer(m), off))
}

// arena holds the bytes of one batch's plain (non-dictionary) values in
// chunks that never move, so a value's slice can be stored in its message
// as soon as it is copied. Chunks are reused batch after batch, and handed
// back to chunkPool when a ReadRowGroup call ends (release).
type arena struct {
	chunks [][]byte
	cur    int
}

const arenaChunk = 256 << 10

// chunkPool keeps the arenas' chunks between ReadRowGroup calls, whatever
// the file: a file's states keep none, so that a run over tens of
// thousands of small files reuses a few chunks instead of allocating one
// per file (256 KiB each, which made most of the heap).
var chunkPool = sync.Pool{New: func() any { return new([]byte) }}

// MaxValueBytes is the longest text value a row carries: a longer one is
// cut to its first MaxValueBytes bytes as it is decoded. No request can
// carry such a value (URLs are far shorter), so the cut value cannot be sent
// either, and one huge value costs no copy of it in any later stage; nor,
// in an uncompressed page, its page (see cutPage).
const MaxValueBytes = 64 << 10

func (a *arena) reset() {
	// A chunk grown past the usual size for one batch of long values is
	// let go, so that the state a pool keeps does not pin it for good.
	keep := a.chunks[:0]
	for _, c := range a.chunks {
		if cap(c) <= arenaChunk {
			keep = append(keep, c[:0])
		}
	}
	clear(a.chunks[len(keep):])
	a.chunks = keep
	a.cur = 0
}

// room returns a chunk with at least n free bytes.
func (a *arena) room(n int) []byte {
	for a.cur < len(a.chunks) {
		if c := a.chunks[a.cur]; cap(c)-len(c) >= n {
			return c
		}
		a.cur++
	}
	var c []byte
	if n <= arenaChunk {
		p := chunkPool.Get().(*[]byte)
		c = (*p)[:0]
		if cap(c) < arenaChunk {
			c = make([]byte, 0, arenaChunk)
		}
	} else {
		c = make([]byte, 0, n)
	}
	a.chunks = append(a.chunks, c)
	return a.chunks[a.cur]
}

// release hands the arena's chunks to chunkPool: no value in them is used
// once the ReadRowGroup call that filled them has returned.
func (a *arena) release() {
	for i, c := range a.chunks {
		if cap(c) == arenaChunk {
			c = c[:0]
			chunkPool.Put(&c)
		}
		a.chunks[i] = nil
	}
	a.chunks = a.chunks[:0]
	a.cur = 0
}

func (a *arena) copy(v []byte) []byte {
	c := a.room(len(v))
	s := len(c)
	c = append(c, v...)
	a.chunks[a.cur] = c
	return c[s:len(c):len(c)]
}

func (a *arena) appendInt(v int64) []byte {
	c := a.room(20)
	s := len(c)
	c = strconv.AppendInt(c, v, 10)
	a.chunks[a.cur] = c
	return c[s:len(c):len(c)]
}

func (a *arena) appendUint(v uint64) []byte {
	c := a.room(20)
	s := len(c)
	c = strconv.AppendUint(c, v, 10)
	a.chunks[a.cur] = c
	return c[s:len(c):len(c)]
}

// unscaled is value x of a DECIMAL column as big-endian two's complement.
func (c *cursor) unscaled(x int32) []byte {
	switch c.cp.kind {
	case parquet.Int32:
		v := uint32(c.v.i32[x])
		return binary.BigEndian.AppendUint32(c.scratch[:0], v)
	case parquet.Int64:
		v := uint64(c.v.i64[x])
		return binary.BigEndian.AppendUint64(c.scratch[:0], v)
	}
	return c.rawBytes(x)
}

// decimal copies the text of a DECIMAL (unscaled big-endian two's
// complement, scale) into the arena and returns it: "12345" scale 2 is
// "123.45".
func (a *arena) decimal(unscaled []byte, scale int32) []byte {
	var buf [48]byte
	return a.copy(appendDecimal(buf[:0], unscaled, scale))
}

// appendDecimal appends the text of a DECIMAL (unscaled big-endian two's
// complement, scale): "12345" scale 2 is "123.45", with every digit the
// scale gives (27.50 stays 27.50).
func appendDecimal(dst, unscaled []byte, scale int32) []byte {
	var digits []byte
	neg := len(unscaled) > 0 && unscaled[0]&0x80 != 0
	if fitsInt64(unscaled) {
		var buf [24]byte
		v := int64(0)
		if neg {
			v = -1
		}
		for _, c := range unscaled {
			v = v<<8 | int64(c)
		}
		digits = strconv.AppendInt(buf[:0], v, 10)
	} else {
		// Wider than 64 bits: rare, and allowed to allocate.
		n := new(big.Int).SetBytes(unscaled)
		if neg {
			n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(8*len(unscaled))))
		}
		digits = n.Append(nil, 10)
	}
	if neg {
		digits = digits[1:]
		dst = append(dst, '-')
	}
	if scale < 0 || scale > 76 {
		scale = 0
	}
	if sc := int(scale); sc > 0 {
		if len(digits) <= sc {
			dst = append(dst, '0', '.')
			for range sc - len(digits) {
				dst = append(dst, '0')
			}
			return append(dst, digits...)
		}
		dst = append(dst, digits[:len(digits)-sc]...)
		dst = append(dst, '.')
		return append(dst, digits[len(digits)-sc:]...)
	}
	return append(dst, digits...)
}

// fitsInt64 says whether a big-endian two's complement value fits in 64 bits.
func fitsInt64(b []byte) bool {
	if len(b) <= 8 {
		return true
	}
	sign := byte(0)
	if b[0]&0x80 != 0 {
		sign = 0xff
	}
	for _, c := range b[:len(b)-8] {
		if c != sign {
			return false
		}
	}
	return b[len(b)-8]&0x80 == sign&0x80
}

// fill decodes the next len(batch) rows of c into its field of batch.
func (c *cursor) fill(batch []segment.Message, ar *arena) error {
	sem := fieldSpecs[c.cp.field].sem
	off := fieldOffset[c.cp.field]
	for o := 0; o < len(batch); {
		g, err := c.next(len(batch) - o)
		if err != nil {
			return err
		}
		m := len(g)
		out := batch[o : o+m]
		switch sem {
		case semBytes:
			c.bytesInto(out, off, g, ar)
		case semNumber:
			c.numbersInto(out, off, g, ar)
		case semTime:
			c.timesInto(out, off, g)
		case semBool:
			c.boolsInto(out, off, g)
		case semType:
			c.typesInto(out, g)
		}
		o += m
	}
	return nil
}

func (c *cursor) bytesInto(out []segment.Message, off uintptr, g []int32, ar *arena) {
	v := &c.v
	switch {
	case c.cp.phys == physDecimal:
		for j, x := range g {
			var b []byte
			if x >= 0 {
				b = ar.decimal(c.unscaled(x), c.cp.scale)
			}
			*fieldAt[[]byte](&out[j], off) = b
		}
	case c.cp.phys == physInt && c.cp.kind == parquet.Int32:
		for j, x := range g {
			var b []byte
			if x >= 0 {
				if c.cp.unsigned {
					b = ar.appendUint(uint64(uint32(v.i32[x])))
				} else {
					b = ar.appendInt(int64(v.i32[x]))
				}
			}
			*fieldAt[[]byte](&out[j], off) = b
		}
	case c.cp.phys == physInt:
		for j, x := range g {
			var b []byte
			if x >= 0 {
				if c.cp.unsigned {
					b = ar.appendUint(uint64(v.i64[x]))
				} else {
					b = ar.appendInt(v.i64[x])
				}
			}
			*fieldAt[[]byte](&out[j], off) = b
		}
	case c.idx != nil && c.cp.kind == parquet.ByteArray:
		// Dictionary values are referenced, not copied: the dictionary is
		// immutable, garbage-collected memory that outlives the batch.
		dict := c.dictBytes
		for j, x := range g {
			var b []byte
			if x >= 0 {
				b = dict[x]
			}
			*fieldAt[[]byte](&out[j], off) = b
		}
	case c.idx != nil:
		for j, x := range g {
			var b []byte
			if x >= 0 {
				b = c.rawBytes(x)
			}
			*fieldAt[[]byte](&out[j], off) = b
		}
	case c.cp.kind == parquet.FixedLenByteArray:
		n := min(v.size, MaxValueBytes)
		for j, x := range g {
			var b []byte
			if x >= 0 {
				b = ar.copy(v.flba[int(x)*v.size : int(x)*v.size+n])
			}
			*fieldAt[[]byte](&out[j], off) = b
		}
	case hasLongValue(v.offs, g):
		// Value by value, each cut to MaxValueBytes: a 50 MiB value costs
		// 64 KiB here.
		for j, x := range g {
			var b []byte
			if x >= 0 {
				s := v.offs[x]
				b = ar.copy(v.bytes[s:min(v.offs[x+1], s+MaxValueBytes)])
			}
			*fieldAt[[]byte](&out[j], off) = b
		}
	default:
		// Plain pages go back to the library's pool when the next page is
		// read: copy into the arena.
		// The values of a page slice are contiguous: one copy moves them all.
		data, offs := v.bytes, v.offs
		first, last := int32(-1), int32(-1)
		for _, x := range g {
			if x >= 0 {
				first = x
				break
			}
		}
		for j := len(g) - 1; j >= 0; j-- {
			if g[j] >= 0 {
				last = g[j]
				break
			}
		}
		var base []byte
		shift := uint32(0)
		if first >= 0 {
			shift = offs[first]
			base = ar.copy(data[shift:offs[last+1]])
		}
		for j, x := range g {
			var b []byte
			if x >= 0 {
				s, e := offs[x]-shift, offs[x+1]-shift
				b = base[s:e:e]
			}
			*fieldAt[[]byte](&out[j], off) = b
		}
	}
}

// hasLongValue reports whether a value of the page slice g (plain byte
// arrays, offsets offs) is longer than MaxValueBytes.
func hasLongValue(offs []uint32, g []int32) bool {
	for _, x := range g {
		if x >= 0 && offs[x+1]-offs[x] > MaxValueBytes {
			return true
		}
	}
	return false
}

func (c *cursor) rawBytes(x int32) []byte {
	if c.cp.kind == parquet.FixedLenByteArray {
		return c.v.flba[int(x)*c.v.size : int(x+1)*c.v.size : int(x+1)*c.v.size]
	}
	e := c.v.offs[x+1]
	return c.v.bytes[c.v.offs[x]:e:e]
}

// maxExactInt is the largest integer magnitude every int64 up to which a
// float64 holds exactly (2^53): an INT64 beyond it keeps its own digits.
const maxExactInt = 1 << 53

// numbersInto decodes numbers. Each keeps its own decimal form (see
// segment.Number): a DECIMAL is never divided into a float64 to be printed,
// a FLOAT is marked as 32-bit, an INT64 past 2^53 and text without an
// exponent keep their digits in the arena.
func (c *cursor) numbersInto(out []segment.Message, off uintptr, g []int32, ar *arena) {
	v := &c.v
	switch c.cp.phys {
	case physInt:
		switch {
		case c.cp.kind == parquet.Int32 && c.cp.unsigned:
			for j, x := range g {
				n := segment.Number{}
				if x >= 0 {
					n = segment.Num(float64(uint32(v.i32[x])))
				}
				*fieldAt[segment.Number](&out[j], off) = n
			}
		case c.cp.kind == parquet.Int32:
			for j, x := range g {
				n := segment.Number{}
				if x >= 0 {
					n = segment.Num(float64(v.i32[x]))
				}
				*fieldAt[segment.Number](&out[j], off) = n
			}
		case c.cp.unsigned:
			for j, x := range g {
				n := segment.Number{}
				if x >= 0 {
					u := uint64(v.i64[x])
					n = segment.Num(float64(u))
					if u > maxExactInt {
						n.Decimal = ar.appendUint(u)
					}
				}
				*fieldAt[segment.Number](&out[j], off) = n
			}
		default:
			for j, x := range g {
				n := segment.Number{}
				if x >= 0 {
					i := v.i64[x]
					n = segment.Num(float64(i))
					if i > maxExactInt || i < -maxExactInt {
						n.Decimal = ar.appendInt(i)
					}
				}
				*fieldAt[segment.Number](&out[j], off) = n
			}
		}
	case physDecimal:
		div := math.Pow10(int(c.cp.scale))
		for j, x := range g {
			n := segment.Number{}
			if x >= 0 {
				u := c.unscaled(x)
				// Valid whatever Value is: past the float64 range it is
				// ±Inf, but the decimal is a real number all the same.
				n = segment.Number{Value: bigEndianFloat(u) / div, Valid: true, Decimal: ar.decimal(u, c.cp.scale)}
			}
			*fieldAt[segment.Number](&out[j], off) = n
		}
	case physFloat:
		if c.cp.kind == parquet.Float {
			for j, x := range g {
				n := segment.Number{}
				if x >= 0 {
					n = finite(float64(v.f32[x]))
					n.Float32 = n.Valid
				}
				*fieldAt[segment.Number](&out[j], off) = n
			}
			return
		}
		for j, x := range g {
			n := segment.Number{}
			if x >= 0 {
				n = finite(v.f64[x])
			}
			*fieldAt[segment.Number](&out[j], off) = n
		}
	default: // text
		var buf [64]byte
		for j, x := range g {
			n := segment.Number{}
			if x >= 0 {
				clean, exp, f, ok := parseNumber(c.rawBytes(x), &buf)
				if ok {
					n = segment.Num(f)
					if !exp {
						n.Decimal = ar.copy(clean)
					}
				}
			}
			*fieldAt[segment.Number](&out[j], off) = n
		}
	}
}

// finite turns NaN and infinities, which no request can carry, into absent.
func finite(f float64) segment.Number {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return segment.Number{}
	}
	return segment.Num(f)
}

// bigEndianFloat reads a big-endian two's complement integer of any length
// (a DECIMAL's unscaled value) as a float64, exactly up to 2^53 and rounded
// beyond (±Inf past the float64 range).
func bigEndianFloat(b []byte) float64 {
	if len(b) == 0 {
		return 0
	}
	if len(b) <= 8 {
		var u uint64
		for _, c := range b {
			u = u<<8 | uint64(c)
		}
		shift := 64 - 8*uint(len(b))
		return float64(int64(u<<shift) >> shift)
	}
	// A negative value's magnitude is its bits inverted, plus one.
	neg := b[0]&0x80 != 0
	var f float64
	for _, c := range b {
		if neg {
			c = ^c
		}
		f = f*256 + float64(c)
	}
	if neg {
		return -(f + 1)
	}
	return f
}

func validMicros(us int64) segment.Time {
	if us < minMicros || us > maxMicros {
		return segment.Time{}
	}
	return segment.At(us)
}

func (c *cursor) timesInto(out []segment.Message, off uintptr, g []int32) {
	v := &c.v
	switch c.cp.phys {
	case physInt:
		mul := c.cp.timeMul
		if c.cp.kind == parquet.Int32 { // DATE: days
			for j, x := range g {
				t := segment.Time{}
				if x >= 0 {
					t = validMicros(int64(v.i32[x]) * mul)
				}
				*fieldAt[segment.Time](&out[j], off) = t
			}
			return
		}
		switch {
		case mul == 1:
			for j, x := range g {
				t := segment.Time{}
				if x >= 0 {
					t = validMicros(v.i64[x])
				}
				*fieldAt[segment.Time](&out[j], off) = t
			}
		case mul > 1:
			lo, hi := minMicros/mul, maxMicros/mul
			for j, x := range g {
				t := segment.Time{}
				if x >= 0 && v.i64[x] >= lo && v.i64[x] <= hi {
					t = segment.At(v.i64[x] * mul)
				}
				*fieldAt[segment.Time](&out[j], off) = t
			}
		default:
			d := -mul
			for j, x := range g {
				t := segment.Time{}
				if x >= 0 {
					q := v.i64[x] / d
					if v.i64[x]%d < 0 {
						q-- // floor, so instants before 1970 round down
					}
					t = validMicros(q)
				}
				*fieldAt[segment.Time](&out[j], off) = t
			}
		}
	case physInt96:
		for j, x := range g {
			t := segment.Time{}
			if x >= 0 {
				t = int96Micros(v.i96[x])
			}
			*fieldAt[segment.Time](&out[j], off) = t
		}
	default:
		for j, x := range g {
			t := segment.Time{}
			if x >= 0 {
				t.Micros, t.Valid = ParseTimestamp(c.rawBytes(x))
			}
			*fieldAt[segment.Time](&out[j], off) = t
		}
	}
}

// julianUnixEpoch is the Julian day number of 1970-01-01, the base of INT96
// timestamps (nanoseconds of the day, then the Julian day).
const julianUnixEpoch = 2440588

func int96Micros(v deprecated.Int96) segment.Time {
	nanos := int64(uint64(v[1])<<32 | uint64(v[0]))
	days := int64(v[2]) - julianUnixEpoch
	if nanos < 0 || nanos >= 86400*1e9 {
		return segment.Time{}
	}
	return validMicros(days*86400*1e6 + nanos/1000)
}

func (c *cursor) boolsInto(out []segment.Message, off uintptr, g []int32) {
	v := &c.v
	if c.cp.phys == physBool {
		for j, x := range g {
			b := segment.Absent
			if x >= 0 {
				b = segment.False + segment.Bool(v.bits[x>>3]>>(x&7)&1)
			}
			*fieldAt[segment.Bool](&out[j], off) = b
		}
		return
	}
	for j, x := range g {
		b := segment.Absent
		if x >= 0 {
			b = ParseBool(c.rawBytes(x))
		}
		*fieldAt[segment.Bool](&out[j], off) = b
	}
}

// typesInto sets each row's type from a `type` column; NULL or an unknown
// name keeps the file's type, which the batch was initialised with.
func (c *cursor) typesInto(out []segment.Message, g []int32) {
	fallback := c.fileType
	for j, x := range g {
		t := segment.TypeUnknown
		if x >= 0 && c.cp.phys == physBytes {
			t = parseTypeBytes(c.rawBytes(x))
		}
		if t == segment.TypeUnknown {
			t = fallback
		}
		out[j].Type = t
	}
}
