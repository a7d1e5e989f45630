package jobs

import (
	"bytes"
	"math"
	"strconv"

	"github.com/convertro-etl/convertro-etl/convertro"
	"github.com/convertro-etl/convertro-etl/internal/segment"
	"github.com/convertro-etl/convertro-etl/readers"
)

// Engage computed traits (rule 20) are synced by the audience job, on the
// same machinery: a computed trait is one more user property, keyed by its
// snake_cased name in the same snapshot, with a typed value where an
// audience has true/false. The diff sends a trait when it is set and was
// not, when its type or value changed, or when it was set and is removed.
//
// Two inputs hold them (detect):
//
//   - a long table with the columns user_id, trait and one or more of the
//     value columns traitValueColumns (plus the optional device_id and
//     timestamp of a membership table, renamed the same way with
//     --membership): one row per user and trait, whose value is the first
//     value column that is not NULL, of any type below, read from each
//     file's own footer (so a table may hold numbers in value_number and
//     text in value_string). It is the whole current state of the traits
//     (not of audiences): a row whose value columns are all NULL, and a
//     trait the table no longer lists for a user, is a removed trait;
//   - an identifies export with one column per trait, named with --trait:
//     a stream of identify calls, where a NULL cell is a call that did not
//     carry the trait (no news), never a removal.
//
// In the snapshot and the changes file a trait's value is stored with its
// type, "number:1234.5", so that a change of type alone (the text "1" after
// the number 1) counts as a change; traitRemoved marks a removed trait.
//
// What is sent (rule 20): one user request, like an audience's, with the
// trait as its own parameter, {snake_cased_name}={value}. A removed trait is
// sent once, with an empty value (lifetime_value=): a URL has no null, an
// empty value is the nearest a query string comes to one, and it overwrites
// the value Convertro held; it is not sent at all for a trait Convertro was
// never told.

// traitValueColumns are the value columns of a computed traits table, in the
// order a row's value is looked for. Their names say nothing of the type:
// each column's Parquet type does.
var traitValueColumns = []string{"value", "value_number", "value_string", "value_boolean", "value_timestamp", "value_date"}

// The type prefixes of a stored trait value.
const (
	traitNumber    = "number:"
	traitString    = "string:"
	traitBoolean   = "boolean:"
	traitTimestamp = "timestamp:"
	traitRemoved   = "removed:"
	// traitUnknown is stored for a trait whose change Convertro refused
	// (revertDeadLetters): it is never sent, and differs from every value.
	traitUnknown = "unknown:"
)

// traitValue is the stored form (type prefix and wire value) of a computed
// trait's non-NULL cell from a column of kind k:
//
//   - INT32, INT64, DECIMAL, FLOAT and DOUBLE: a number in its shortest
//     decimal form, never with an exponent (as convertro.AppendNumber writes
//     event values): 1234.5, 27.5 for DECIMAL 27.50, 1000000;
//   - BOOLEAN: true or false;
//   - TIMESTAMP (any unit, INT96) and DATE: whole Unix seconds, floored, like
//     the ts of every request (a DATE is its midnight UTC);
//   - text: as it is, whatever it looks like ("1234.5" text is the string
//     1234.5, sent the same but stored as a string).
//
// It returns "" for a cell that holds no value Convertro could take: NaN
// and infinities, a timestamp out of range, and a value whose request could
// never be sent (longer than MaxURLBytes); the row is then left out, as if
// the source did not mention the trait.
func traitValue(k readers.ColumnKind, c readers.Cell) string {
	if len(c.Text) > MaxURLBytes {
		return ""
	}
	var b []byte
	switch k {
	case readers.ColumnInt, readers.ColumnDecimal:
		b = convertro.AppendNumber(append(b, traitNumber...), segment.Number{Valid: true, Decimal: c.Text})
	case readers.ColumnFloat:
		f, err := strconv.ParseFloat(string(c.Text), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return ""
		}
		// The text is the column's own shortest form (32-bit for FLOAT);
		// AppendNumber keeps its digits and writes out any exponent.
		b = convertro.AppendNumber(append(b, traitNumber...), segment.Number{Value: f, Valid: true, Decimal: c.Text})
	case readers.ColumnBool:
		b = strconv.AppendBool(append(b, traitBoolean...), c.Bool == segment.True)
	case readers.ColumnTime:
		if !c.Time.Valid {
			return ""
		}
		b = strconv.AppendInt(append(b, traitTimestamp...), c.Time.UnixSeconds(), 10)
	default:
		b = append(append(b, traitString...), c.Text...)
	}
	return string(b)
}

var trueText, falseText = []byte("true"), []byte("false")

// traitWire is the value a stored trait value sends: what follows its type
// prefix (empty for a removed trait). An audience's stored value is empty,
// and it sends its membership.
func traitWire(stored []byte, member bool) []byte {
	if len(stored) == 0 {
		if member {
			return trueText
		}
		return falseText
	}
	if i := bytes.IndexByte(stored, ':'); i >= 0 {
		return stored[i+1:]
	}
	return stored
}
