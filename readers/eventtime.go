package readers

import (
	"encoding/binary"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

// eventTimeFields are the columns a message's event time comes from, first
// present wins (segment.Message.EventTime).
var eventTimeFields = [...]field{fTimestamp, fOriginalTimestamp, fSentAt, fReceivedAt}

// EventTimeBounds says, from the footer alone, between which instants
// (microseconds since the Unix epoch, both inclusive) the event time of
// every row of row group i lies; ok is false when the statistics do not
// tell. The event time is the first present of timestamp,
// original_timestamp, sent_at and received_at, so the bounds are those of
// timestamp, widened by the next column's for as long as the column before
// may hold NULL (or values outside years 1–9999, which read as absent). ok
// is false when a row may have no event time at all, so that such rows are
// read and counted, never left out unseen; and when a column on the way
// has no usable statistics: none written, text (ISO-8601 strings do not
// sort as instants), INT96 (its statistics have no defined order) or an
// unsigned integer. It is for plans: nothing is read.
func (p *ParquetFile) EventTimeBounds(i int) (lo, hi int64, ok bool) {
	if i < 0 || i >= len(p.groups) {
		return 0, 0, false
	}
	rows := p.groups[i].Rows
	lo, hi = maxMicros, minMicros
	for _, f := range eventTimeFields {
		c := p.planned1(f)
		if c == nil {
			continue // no column: NULL in every row, the next one decides
		}
		st := &p.pf.Metadata().RowGroups[i].Columns[c.leaf].MetaData.Statistics
		first, last, has := timeStats(c, st)
		nulls, known := int64(0), true
		if c.maxDef > 0 {
			// A null count of 0 is believed only beside a min or max, as
			// in FieldNulls.
			nulls, known = st.NullCount, st.NullCount > 0 || has
		}
		if !has {
			if known && nulls >= rows {
				continue // every row NULL here
			}
			return 0, 0, false
		}
		complete := known && nulls == 0
		if first < minMicros || last > maxMicros {
			complete = false // some values read as absent
		}
		lo, hi = min(lo, max(first, minMicros)), max(hi, min(last, maxMicros))
		if complete {
			return lo, hi, lo <= hi
		}
	}
	return 0, 0, false
}

// planned1 is the plan of field f's column, nil when the file has none.
func (p *ParquetFile) planned1(f field) *colPlan {
	for k := range p.plan.cols {
		if p.plan.cols[k].field == f {
			return &p.plan.cols[k]
		}
	}
	return nil
}

// timeStats reads a time column's min and max as microseconds (floored),
// from the statistics' min_value and max_value or, when a writer set only
// the deprecated min and max, from those: both are in signed order for a
// signed INT32 or INT64, which is an instant's order.
func timeStats(c *colPlan, st *format.Statistics) (first, last int64, ok bool) {
	if c.phys != physInt || c.unsigned {
		return 0, 0, false
	}
	lo, hi := st.MinValue, st.MaxValue
	if len(lo) == 0 || len(hi) == 0 {
		lo, hi = st.Min, st.Max
	}
	var a, b int64
	switch {
	case c.kind == parquet.Int64 && len(lo) == 8 && len(hi) == 8:
		a, b = int64(binary.LittleEndian.Uint64(lo)), int64(binary.LittleEndian.Uint64(hi))
	case c.kind == parquet.Int32 && len(lo) == 4 && len(hi) == 4:
		a, b = int64(int32(binary.LittleEndian.Uint32(lo))), int64(int32(binary.LittleEndian.Uint32(hi)))
	default:
		return 0, 0, false
	}
	if a > b {
		return 0, 0, false // not a min and a max in any order we know
	}
	return toMicros(a, c.timeMul), toMicros(b, c.timeMul), true
}

// toMicros scales v by mul as the decoder does (timesInto), saturating
// past the int64 range so that an out-of-range value stays out of range.
func toMicros(v, mul int64) int64 {
	switch {
	case mul == 1:
		return v
	case mul > 1:
		if v > maxMicros/mul {
			return maxMicros + 1
		}
		if v < minMicros/mul {
			return minMicros - 1
		}
		return v * mul
	}
	d := -mul
	q := v / d
	if v%d < 0 {
		q--
	}
	return q
}
