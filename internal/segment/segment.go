// Package segment holds the decoded Segment message: the one value that the
// readers fill from a Parquet row and the Convertro mapping reads. It is a
// leaf package so that neither side imports the other.
//
// A Message is built for speed, not comfort: byte-slice fields point into the
// decoder's reusable buffers and stay valid only until the decoder fills the
// next batch. Whoever keeps a value past that point copies it.
//
// # Errors
//
// None: the package holds data and pure helpers.
//
// # Concurrency
//
// A Message is a plain value; it is safe to read from several goroutines as
// long as no one writes to it or to the buffers behind it.
package segment

import "strconv"

// Type is the Segment message type (identify, track, page, ...).
type Type uint8

// The message types. Only Identify and Track are ever sent to Convertro.
const (
	TypeUnknown Type = iota
	TypeIdentify
	TypeTrack
	TypePage
	TypeScreen
	TypeGroup
	TypeAlias
)

var typeNames = [...]string{"unknown", "identify", "track", "page", "screen", "group", "alias"}

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "type(" + strconv.Itoa(int(t)) + ")"
}

// ParseType maps a Segment type name (any case, as in a `type` column or a
// `segment_type=` partition) to a Type; TypeUnknown when it is none of them.
func ParseType(s string) Type {
	for i, n := range typeNames {
		if i > 0 && equalFold(s, n) {
			return Type(i)
		}
	}
	return TypeUnknown
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		ca, cb := a[i], b[i]
		if 'A' <= ca && ca <= 'Z' {
			ca += 'a' - 'A'
		}
		if ca != cb {
			return false
		}
	}
	return true
}

// Bool is a boolean that may be absent. Only a real boolean (a BOOLEAN column,
// or text that is exactly true/false in any case) is True or False; anything
// else, including NULL, is Absent.
type Bool uint8

// The three states of a Bool.
const (
	Absent Bool = iota
	False
	True
)

func (b Bool) String() string {
	switch b {
	case False:
		return "false"
	case True:
		return "true"
	}
	return "absent"
}

// Number is a numeric value that may be absent (NULL, or text that is not a
// number such as "NA").
//
// Value is the number as a float64, for arithmetic. What is sent is the
// number's own decimal form, which a float64 may not hold, so a Number also
// says where that form comes from:
//
//   - Decimal, when not empty, is the exact decimal the column held: a
//     DECIMAL of any precision, an INT64 beyond 2^53, or text without an
//     exponent ("$1,299.50" as "1299.50"). It is an optional '-', digits and
//     an optional '.' with more digits, and may carry leading or trailing
//     zeros; Value is then only its nearest float64 (±Inf past the float64
//     range). Like the Message's byte slices it points into the decoder's
//     buffers.
//   - Float32, when Decimal is empty, says that Value was read from a 32-bit
//     FLOAT, whose own shortest form is the 32-bit value's: a FLOAT 49.99 is
//     49.99, though its float64 widening prints as 49.9900016784668.
//   - Otherwise Value is the number, and its shortest float64 form is its
//     own (DOUBLE, INT32, INT64 within 2^53, text with an exponent).
type Number struct {
	Value   float64
	Valid   bool
	Float32 bool
	Decimal []byte
}

// Num returns a present Number.
func Num(v float64) Number { return Number{Value: v, Valid: true} }

// Time is an instant as microseconds since the Unix epoch (UTC), or absent.
// Microseconds cover years 1 to 9999 in an int64.
type Time struct {
	Micros int64
	Valid  bool
}

// At returns a present Time.
func At(micros int64) Time { return Time{Micros: micros, Valid: true} }

// UnixSeconds is the instant in whole seconds, floored (so 10:00:00.987 is
// 10:00:00, and instants before 1970 round down, not toward zero).
func (t Time) UnixSeconds() int64 {
	s := t.Micros / 1e6
	if t.Micros%1e6 < 0 {
		s--
	}
	return s
}

// Message is one decoded Segment message with just the fields the Convertro
// mapping reads. Empty byte slices mean NULL or empty: Convertro treats both
// as missing.
type Message struct {
	Type Type

	MessageID   []byte // `id` in warehouse tables, `messageId` in raw JSON
	UserID      []byte
	AnonymousID []byte // `anonymous_id`: analytics.js's id of the browser
	DeviceID    []byte // context.device.id

	EventText []byte // the event name as sent (`event_text`, `Order Completed`)
	Event     []byte // the slug (`event`, `order_completed`); used when EventText is empty

	OrderID []byte
	Total   Number
	Revenue Number
	Repeat  Bool

	Timestamp         Time
	OriginalTimestamp Time
	SentAt            Time
	ReceivedAt        Time

	UserAgent []byte // context.userAgent
	IP        []byte // context.ip

	// The sender's Integrations object, for rule 19.
	IntegrationsAll       Bool
	IntegrationsConvertro Bool

	// Property is the one user property an Engage sync sets with this
	// identify. Readers leave it empty: only a sync's own changes decoder
	// fills it.
	Property Property
}

// EventTime is when the event happened: the first present of Timestamp,
// OriginalTimestamp, SentAt and ReceivedAt. It is what a request's ts says,
// and what a date range selects the rows of an object without a day by.
func (m *Message) EventTime() (Time, bool) {
	for _, t := range [...]Time{m.Timestamp, m.OriginalTimestamp, m.SentAt, m.ReceivedAt} {
		if t.Valid {
			return t, true
		}
	}
	return Time{}, false
}

// Property is an Engage user property: its snake_case key and its value as
// sent ("true"/"false" for an audience membership; a computed trait's value
// in its wire form, empty when the trait was removed).
type Property struct {
	Key, Value []byte
}

// Reset clears m for reuse, keeping nothing of the previous row.
func (m *Message) Reset() { *m = Message{} }
