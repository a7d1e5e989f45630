package readers

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"

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
	dict     parquet.Dictionary
	dictView view
	gather   []int32
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
	c.dict, c.dictView, c.v, c.idx, c.defs = nil, view{}, view{}, nil, nil
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
	if c.levels < 0 {
		return errCorrupt
	}
	if dict := page.Dictionary(); dict != nil {
		data := page.Data()
		c.idx = data.Int32()
		if len(c.idx) < nonNull {
			return fmt.Errorf("%w: %d dictionary indexes for %d values", errCorrupt, len(c.idx), nonNull)
		}
		if dict != c.dict { // one dictionary serves every page of the chunk
			dv := dict.Page().Data()
			c.dictView, err = viewOf(c.cp.kind, c.cp.size, &dv)
			c.dict = dict
		}
		c.v = c.dictView
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

// next gathers up to len(c.gather) rows of the current page (loading the
// next page when this one is done) and returns how many.
func (c *cursor) next(k int) (int, error) {
	for c.lvl >= c.levels {
		if err := c.loadPage(); err != nil {
			return 0, err
		}
	}
	m := min(k, c.levels-c.lvl)
	g := c.gather[:m]
	val := c.val
	if c.cp.maxDef == 0 {
		if c.idx != nil {
			n := uint32(c.v.n)
			for j := range g {
				x := c.idx[val+j]
				if uint32(x) >= n {
					return 0, fmt.Errorf("%w: dictionary index %d out of %d", errCorrupt, x, n)
				}
				g[j] = x
			}
		} else {
			for j := range g {
				g[j] = int32(val + j)
			}
		}
		val += m
	} else {
		defs := c.defs[c.lvl : c.lvl+m]
		maxDef := c.cp.maxDef
		if c.idx != nil {
			n := uint32(c.v.n)
			for j, d := range defs {
				if d != maxDef {
					g[j] = -1
					continue
				}
				x := c.idx[val]
				if uint32(x) >= n {
					return 0, fmt.Errorf("%w: dictionary index %d out of %d", errCorrupt, x, n)
				}
				g[j] = x
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
	return m, nil
}

// span is a value's place in the batch arena; NULL is an empty span.
type span struct{ off, end uint32 }

// stage holds one column's values for the current batch.
type stage struct {
	spans []span
	nums  []segment.Number
	times []segment.Time
	bools []segment.Bool
	types []segment.Type
}

func newStage(sem semantic, n int) stage {
	var s stage
	switch sem {
	case semBytes:
		s.spans = make([]span, n)
	case semNumber:
		s.nums = make([]segment.Number, n)
	case semTime:
		s.times = make([]segment.Time, n)
	case semBool:
		s.bools = make([]segment.Bool, n)
	case semType:
		s.types = make([]segment.Type, n)
	}
	return s
}

// fill decodes n rows of c into s (from index 0), appending bytes to arena.
func (c *cursor) fill(s *stage, n int, arena []byte) ([]byte, error) {
	sem := fieldSpecs[c.cp.field].sem
	for o := 0; o < n; {
		m, err := c.next(n - o)
		if err != nil {
			return arena, err
		}
		g := c.gather[:m]
		switch sem {
		case semBytes:
			arena = c.bytesInto(s.spans[o:o+m], g, arena)
		case semNumber:
			c.numbersInto(s.nums[o:o+m], g)
		case semTime:
			c.timesInto(s.times[o:o+m], g)
		case semBool:
			c.boolsInto(s.bools[o:o+m], g)
		case semType:
			c.typesInto(s.types[o:o+m], g)
		}
		o += m
	}
	return arena, nil
}

func (c *cursor) bytesInto(out []span, g []int32, arena []byte) []byte {
	v := &c.v
	switch {
	case c.cp.phys == physInt && c.cp.kind == parquet.Int32:
		for j, x := range g {
			s := uint32(len(arena))
			if x >= 0 {
				arena = strconv.AppendInt(arena, int64(v.i32[x]), 10)
			}
			out[j] = span{s, uint32(len(arena))}
		}
	case c.cp.phys == physInt:
		for j, x := range g {
			s := uint32(len(arena))
			if x >= 0 {
				arena = strconv.AppendInt(arena, v.i64[x], 10)
			}
			out[j] = span{s, uint32(len(arena))}
		}
	case c.cp.kind == parquet.FixedLenByteArray:
		for j, x := range g {
			s := uint32(len(arena))
			if x >= 0 {
				arena = append(arena, v.flba[int(x)*v.size:int(x+1)*v.size]...)
			}
			out[j] = span{s, uint32(len(arena))}
		}
	default:
		data, offs := v.bytes, v.offs
		for j, x := range g {
			s := uint32(len(arena))
			if x >= 0 {
				arena = append(arena, data[offs[x]:offs[x+1]]...)
			}
			out[j] = span{s, uint32(len(arena))}
		}
	}
	return arena
}

func (c *cursor) rawBytes(x int32) []byte {
	if c.cp.kind == parquet.FixedLenByteArray {
		return c.v.flba[int(x)*c.v.size : int(x+1)*c.v.size]
	}
	return c.v.bytes[c.v.offs[x]:c.v.offs[x+1]]
}

func (c *cursor) numbersInto(out []segment.Number, g []int32) {
	v := &c.v
	switch c.cp.phys {
	case physInt, physDecimal:
		div := 1.0
		if c.cp.phys == physDecimal {
			div = math.Pow10(int(c.cp.scale))
		}
		switch c.cp.kind {
		case parquet.Int32:
			for j, x := range g {
				if x < 0 {
					out[j] = segment.Number{}
					continue
				}
				out[j] = segment.Num(float64(v.i32[x]) / div)
			}
		case parquet.Int64:
			for j, x := range g {
				if x < 0 {
					out[j] = segment.Number{}
					continue
				}
				out[j] = segment.Num(float64(v.i64[x]) / div)
			}
		default: // DECIMAL over FIXED_LEN_BYTE_ARRAY or BYTE_ARRAY
			for j, x := range g {
				if x < 0 {
					out[j] = segment.Number{}
					continue
				}
				out[j] = finite(bigEndianFloat(c.rawBytes(x)) / div)
			}
		}
	case physFloat:
		if c.cp.kind == parquet.Float {
			for j, x := range g {
				if x < 0 {
					out[j] = segment.Number{}
					continue
				}
				out[j] = finite(float64(v.f32[x]))
			}
			return
		}
		for j, x := range g {
			if x < 0 {
				out[j] = segment.Number{}
				continue
			}
			out[j] = finite(v.f64[x])
		}
	default: // text
		for j, x := range g {
			if x < 0 {
				out[j] = segment.Number{}
				continue
			}
			f, ok := ParseNumber(c.rawBytes(x))
			out[j] = segment.Number{Value: f, Valid: ok}
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
// (a DECIMAL's unscaled value) as a float64.
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
	neg := b[0]&0x80 != 0
	var f float64
	if !neg {
		for _, c := range b {
			f = f*256 + float64(c)
		}
		return f
	}
	// Magnitude of a negative value: invert the bits and add one.
	carry := 1
	var mag float64
	var tmp [64]byte
	if len(b) > len(tmp) {
		b = b[len(b)-len(tmp):]
	}
	t := tmp[:len(b)]
	for i := len(b) - 1; i >= 0; i-- {
		s := int(^b[i]) + carry
		t[i] = byte(s)
		carry = s >> 8
	}
	for _, c := range t {
		mag = mag*256 + float64(c)
	}
	return -mag
}

func validMicros(us int64) segment.Time {
	if us < minMicros || us > maxMicros {
		return segment.Time{}
	}
	return segment.At(us)
}

func (c *cursor) timesInto(out []segment.Time, g []int32) {
	v := &c.v
	switch c.cp.phys {
	case physInt:
		mul := c.cp.timeMul
		if c.cp.kind == parquet.Int32 { // DATE: days
			for j, x := range g {
				if x < 0 {
					out[j] = segment.Time{}
					continue
				}
				out[j] = validMicros(int64(v.i32[x]) * mul)
			}
			return
		}
		switch {
		case mul == 1:
			for j, x := range g {
				if x < 0 {
					out[j] = segment.Time{}
					continue
				}
				out[j] = validMicros(v.i64[x])
			}
		case mul > 1:
			lo, hi := minMicros/mul, maxMicros/mul
			for j, x := range g {
				if x < 0 || v.i64[x] < lo || v.i64[x] > hi {
					out[j] = segment.Time{}
					continue
				}
				out[j] = segment.At(v.i64[x] * mul)
			}
		default:
			d := -mul
			for j, x := range g {
				if x < 0 {
					out[j] = segment.Time{}
					continue
				}
				t := v.i64[x]
				q := t / d
				if t%d < 0 {
					q--
				}
				out[j] = validMicros(q)
			}
		}
	case physInt96:
		for j, x := range g {
			if x < 0 {
				out[j] = segment.Time{}
				continue
			}
			out[j] = int96Micros(v.i96[x])
		}
	default:
		for j, x := range g {
			if x < 0 {
				out[j] = segment.Time{}
				continue
			}
			us, ok := ParseTimestamp(c.rawBytes(x))
			out[j] = segment.Time{Micros: us, Valid: ok}
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

func (c *cursor) boolsInto(out []segment.Bool, g []int32) {
	v := &c.v
	if c.cp.phys == physBool {
		for j, x := range g {
			switch {
			case x < 0:
				out[j] = segment.Absent
			case v.bits[x>>3]>>(x&7)&1 != 0:
				out[j] = segment.True
			default:
				out[j] = segment.False
			}
		}
		return
	}
	for j, x := range g {
		if x < 0 {
			out[j] = segment.Absent
			continue
		}
		out[j] = ParseBool(c.rawBytes(x))
	}
}

func (c *cursor) typesInto(out []segment.Type, g []int32) {
	if c.cp.phys != physBytes {
		clear(out)
		return
	}
	for j, x := range g {
		if x < 0 {
			out[j] = segment.TypeUnknown
			continue
		}
		out[j] = parseTypeBytes(c.rawBytes(x))
	}
}
