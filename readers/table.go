package readers

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/convertro-etl/convertro-etl/internal/segment"
)

// Table is a Parquet object read as plain named columns, for the inputs that
// are not Segment messages: audience memberships, device lookups, and the
// job's own state files. Columns are found by name case-insensitively; a
// nested column is named by its dotted path, or by the same path joined with
// underscores (context_device_id finds context.device.id).
type Table struct {
	uri    string
	r      *trackedReader
	pf     *parquet.File
	cols   map[string]*parquet.Column
	groups []int64
}

// ColumnKind is how a Table column's values are read.
type ColumnKind uint8

const (
	ColumnText ColumnKind = iota // BYTE_ARRAY and FIXED_LEN_BYTE_ARRAY
	ColumnBool
	ColumnInt
	ColumnFloat
	ColumnTime    // timestamps and dates, as microseconds
	ColumnDecimal // DECIMAL of any backing, as its exact decimal text
)

// Cell is one value of a row read from a Table. Text holds the value as text
// for every kind (a BOOLEAN as "true"/"false", a timestamp in RFC 3339, a
// DECIMAL with every digit of its scale: "27.50"), valid
// until the next call of the row callback. Bool is set for BOOLEAN columns and
// for text that is exactly true/false (ParseBool); Time for timestamp columns
// and for text that ParseTimestamp accepts.
type Cell struct {
	Null bool
	Text []byte
	Bool segment.Bool
	Time segment.Time
}

// OpenTable reads the footer of f (the object o). Errors wrap ErrBadFile and
// name o.URI when the object is not a usable Parquet file; errors of f are
// returned wrapped with the operation and the object.
func OpenTable(ctx context.Context, f File, o Object) (t *Table, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := &trackedReader{r: f, size: f.Size()}
	defer func() {
		if v := recover(); v != nil {
			t, err = nil, fmt.Errorf("open %s: %w: footer decoder failed: %v", o.URI, ErrBadFile, v)
		}
	}()
	pf, _, err := openFooter(r, nil)
	if err != nil {
		if ioErr := r.failure(); ioErr != nil {
			return nil, fmt.Errorf("open %s: %w", o.URI, ioErr)
		}
		return nil, fmt.Errorf("open %s: %w: %w", o.URI, ErrBadFile, err)
	}
	t = &Table{uri: o.URI, r: r, pf: pf, cols: map[string]*parquet.Column{}}
	for p, c := range nodeIndex(pf.Root()) {
		if !c.Leaf() || c.MaxRepetitionLevel() > 0 {
			continue
		}
		t.cols[p] = c
		flat := strings.ReplaceAll(p, ".", "_")
		if _, dup := t.cols[flat]; !dup {
			t.cols[flat] = c
		}
	}
	var cols []groupColumn
	for leaf, path := range pf.Schema().Columns() {
		cols = append(cols, groupColumn{leaf, strings.Join(path, ".")})
	}
	groups, err := checkGroups(o.URI, pf, r.size, cols)
	if err != nil {
		return nil, err
	}
	for _, g := range groups {
		t.groups = append(t.groups, g.Rows)
	}
	return t, nil
}

// URI names the table's object.
func (t *Table) URI() string { return t.uri }

// RowGroups returns the number of rows of each row group.
func (t *Table) RowGroups() []int64 { return t.groups }

// Rows returns the number of rows of the whole table.
func (t *Table) Rows() int64 {
	var n int64
	for _, g := range t.groups {
		n += g
	}
	return n
}

// Column reports whether the table has a flat column of that name, and its kind.
func (t *Table) Column(name string) (ColumnKind, bool) {
	c, ok := t.cols[strings.ToLower(name)]
	if !ok {
		return 0, false
	}
	return kindOf(c), true
}

func kindOf(c *parquet.Column) ColumnKind {
	typ := c.Type()
	lt := typ.LogicalType()
	ct := deprecatedConverted(0)
	if cc := typ.ConvertedType(); cc != nil {
		ct = *cc
	}
	if lt != nil && asDecimal(lt) != nil {
		switch typ.Kind() {
		case parquet.Int32, parquet.Int64, parquet.FixedLenByteArray, parquet.ByteArray:
			return ColumnDecimal
		}
	}
	switch typ.Kind() {
	case parquet.Boolean:
		return ColumnBool
	case parquet.Int32:
		if isDate(lt, ct) {
			return ColumnTime
		}
		return ColumnInt
	case parquet.Int64:
		if isTemporal(lt, ct) && timestampMultiplier(lt, ct) != 0 {
			return ColumnTime
		}
		return ColumnInt
	case parquet.Int96:
		return ColumnTime
	case parquet.Float, parquet.Double:
		return ColumnFloat
	}
	return ColumnText
}

// ReadRowGroup reads row group i, calling fn once per row with the cells of
// the named columns, in the order named (a column the table lacks reads as
// NULL). cells and the bytes they hold are valid only during fn. Errors wrap
// ErrBadFile and name the object, row group and column when the data is
// corrupt; an error returned by fn is returned as is.
func (t *Table) ReadRowGroup(ctx context.Context, i int, names []string, fn func(row int64, cells []Cell) error) (err error) {
	groups := t.pf.RowGroups()
	if i < 0 || i >= len(groups) {
		return fmt.Errorf("read %s row group %d: no such row group", t.uri, i)
	}
	rg := groups[i]
	chunks := rg.ColumnChunks()
	type colReader struct {
		name  string
		col   *parquet.Column
		kind  ColumnKind
		mul   int64 // timestamps: to microseconds; decimals: the scale; integers: 1 if unsigned
		pages parquet.Pages
		guard *pageGuard
		vr    parquet.ValueReader
		buf   []parquet.Value
	}
	readers := make([]*colReader, len(names))
	for j, n := range names {
		cr := &colReader{name: n}
		if c, ok := t.cols[strings.ToLower(n)]; ok {
			cr.col, cr.kind = c, kindOf(c)
			typ := c.Type()
			ct := deprecatedConverted(0)
			if cc := typ.ConvertedType(); cc != nil {
				ct = *cc
			}
			cr.mul = timestampMultiplier(typ.LogicalType(), ct)
			switch cr.kind {
			case ColumnDecimal:
				cr.mul = int64(asDecimal(typ.LogicalType()).Scale)
			case ColumnInt:
				cr.mul = 0
				if isUnsigned(typ.LogicalType(), ct) {
					cr.mul = 1
				}
			}
			if fc, ok := chunks[c.Index()].(*parquet.FileColumnChunk); ok {
				cr.pages, cr.guard = guardPages(t.r, fc, &t.pf.Metadata().RowGroups[i].Columns[c.Index()].MetaData, rg.NumRows())
			} else {
				cr.pages = chunks[c.Index()].Pages()
			}
		}
		readers[j] = cr
	}
	defer func() {
		for _, cr := range readers {
			if cr.pages != nil {
				cr.pages.Close()
			}
		}
		if v := recover(); v != nil {
			err = fmt.Errorf("read %s row group %d: %w: decoder failed: %v", t.uri, i, ErrBadFile, v)
		}
	}()
	// next fills cr.buf with up to k values, crossing page boundaries.
	next := func(cr *colReader, k int) error {
		cr.buf = cr.buf[:0]
		if cr.pages == nil {
			return nil
		}
		for len(cr.buf) < k {
			if cr.vr == nil {
				p, err := cr.pages.ReadPage()
				if err != nil {
					if ioErr := t.r.failure(); ioErr != nil {
						return fmt.Errorf("read %s row group %d column %s: %w", t.uri, i, cr.name, ioErr)
					}
					if cr.guard != nil && cr.guard.failure() != nil {
						err = cr.guard.failure()
					} else if errors.Is(err, io.EOF) {
						return fmt.Errorf("read %s row group %d column %s: %w: fewer values than rows", t.uri, i, cr.name, ErrBadFile)
					}
					return fmt.Errorf("read %s row group %d column %s: %w: %w", t.uri, i, cr.name, ErrBadFile, err)
				}
				cr.vr = p.Values()
			}
			start := len(cr.buf)
			cr.buf = cr.buf[:k]
			n, err := cr.vr.ReadValues(cr.buf[start:])
			cr.buf = cr.buf[:start+n]
			if errors.Is(err, io.EOF) {
				cr.vr = nil
			} else if err != nil {
				return fmt.Errorf("read %s row group %d column %s: %w: %w", t.uri, i, cr.name, ErrBadFile, err)
			}
		}
		return nil
	}
	const batch = 1024
	for _, cr := range readers {
		cr.buf = make([]parquet.Value, 0, batch)
	}
	cells := make([]Cell, len(names))
	var text []byte
	rows := rg.NumRows()
	for first := int64(0); first < rows; first += batch {
		if err := ctx.Err(); err != nil {
			return err
		}
		k := int(min(batch, rows-first))
		for _, cr := range readers {
			if err := next(cr, k); err != nil {
				return err
			}
		}
		// A failed read may have come back with all its bytes and its
		// error dropped by the library: no row past it (see ReadAt).
		if ioErr := t.r.failure(); ioErr != nil {
			return fmt.Errorf("read %s row group %d: %w", t.uri, i, ioErr)
		}
		for r := range k {
			text = text[:0]
			for j, cr := range readers {
				c := Cell{Null: true}
				if cr.pages != nil && !cr.buf[r].IsNull() {
					c, text = cellOf(cr.buf[r], cr.kind, cr.mul, text)
				}
				cells[j] = c
			}
			if err := fn(first+int64(r), cells); err != nil {
				return err
			}
		}
	}
	return nil
}

// cellOf converts one non-null value. Formatted text is appended to buf, and
// the cell's Text is a full slice expression of it, so a later append that
// reallocates buf leaves the earlier cells' bytes intact.
func cellOf(v parquet.Value, kind ColumnKind, mul int64, buf []byte) (Cell, []byte) {
	var c Cell
	start := len(buf)
	switch kind {
	case ColumnBool:
		b := v.Boolean()
		c.Bool = segment.False
		if b {
			c.Bool = segment.True
		}
		buf = strconv.AppendBool(buf, b)
	case ColumnInt:
		switch {
		case v.Kind() == parquet.Int32 && mul == 1:
			buf = strconv.AppendUint(buf, uint64(uint32(v.Int32())), 10)
		case v.Kind() == parquet.Int32:
			buf = strconv.AppendInt(buf, int64(v.Int32()), 10)
		case mul == 1:
			buf = strconv.AppendUint(buf, uint64(v.Int64()), 10)
		default:
			buf = strconv.AppendInt(buf, v.Int64(), 10)
		}
	case ColumnFloat:
		if v.Kind() == parquet.Float {
			buf = strconv.AppendFloat(buf, float64(v.Float()), 'g', -1, 32)
		} else {
			buf = strconv.AppendFloat(buf, v.Double(), 'g', -1, 64)
		}
	case ColumnDecimal:
		var unscaled [8]byte
		switch v.Kind() {
		case parquet.Int32:
			buf = appendDecimal(buf, binary.BigEndian.AppendUint32(unscaled[:0], uint32(v.Int32())), int32(mul))
		case parquet.Int64:
			buf = appendDecimal(buf, binary.BigEndian.AppendUint64(unscaled[:0], uint64(v.Int64())), int32(mul))
		default:
			buf = appendDecimal(buf, v.ByteArray(), int32(mul))
		}
	case ColumnTime:
		switch v.Kind() {
		case parquet.Int32: // DATE: days
			c.Time = validMicros(int64(v.Int32()) * 86400e6)
		case parquet.Int96:
			c.Time = int96Micros(v.Int96())
		default:
			switch x := v.Int64(); {
			case mul >= 1:
				c.Time = validMicros(x * mul)
			case mul < 0:
				q := x / -mul
				if x%-mul < 0 {
					q--
				}
				c.Time = validMicros(q)
			}
		}
		if c.Time.Valid {
			buf = time.UnixMicro(c.Time.Micros).UTC().AppendFormat(buf, time.RFC3339Nano)
		}
	default:
		c.Text = v.ByteArray()
		c.Bool = ParseBool(c.Text)
		c.Time.Micros, c.Time.Valid = ParseTimestamp(c.Text)
		return c, buf
	}
	c.Text = buf[start:len(buf):len(buf)]
	return c, buf
}
