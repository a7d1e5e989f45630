package convertro

import (
	"crypto/sha256"
	"encoding/binary"

	"github.com/convertro-etl/convertro-etl/internal/segment"
)

// An event id for a hit or install whose message has no messageId (a NULL
// `id` column, or none at all). Convertro de-duplicates on eid, so the id
// must be the same every time the same row is sent (a rerun, a resume, a
// replayed dead letter, the dry run) and differ between rows. It is derived
// from the row's own values, not from where the row was read: a SHA-256 over
// every field of the message that says what happened, to whom and when.
//
//   - In: the message type, userId, anonymousId, device id, event_text and
//     event, orderId, total and revenue (as their decimal form, so a column
//     that changes type between exports gives the same id), repeat, and the
//     four timestamps to the microsecond, user agent and IP.
//   - Out: the Integrations object (it decides whether the row is sent, not
//     which event it is), the object, row group and row number (an export
//     written again, under other names or in another order, must give the
//     same ids, so that Convertro keeps one of each event).
//
// Two rows equal in every one of those values get one id, and Convertro
// keeps one of them: they cannot be told apart, and such a pair is in
// practice one event exported twice (as Segment's duplicate `id`s in
// BigQuery exports are).
//
// The first 16 bytes of the digest are kept (128 bits: a collision among
// 10^12 rows has a chance below 10^-14). Wire writes them as eidDerivedPrefix
// and 32 lower-case hex digits.
const eidSumBytes = 16

// eidDomain starts every digest: a version, so that a future change of the
// inputs can be told apart, and a domain, so that no other use of SHA-256
// over the same bytes gives the same ids.
const eidDomain = "convertro-etl event id v1\x00"

// The field tags of the digest's input. Each field is its tag, then its
// length as a uvarint, then its bytes; an absent number, time or boolean is
// its tag and a zero length. So no two different messages give the same
// input, whatever bytes their values hold.
const (
	eidType byte = iota + 1
	eidUserID
	eidAnonymousID
	eidDeviceID
	eidEventText
	eidEvent
	eidOrderID
	eidTotal
	eidRevenue
	eidRepeat
	eidTimestamp
	eidOriginalTimestamp
	eidSentAt
	eidReceivedAt
	eidUserAgent
	eidIP
)

// deriveEventID returns the event id of msg's row (see above). It is pure,
// and allocates nothing unless a total or revenue has more than 64 digits.
func deriveEventID(msg *segment.Message) (sum [eidSumBytes]byte) {
	h := sha256.New()
	h.Write([]byte(eidDomain))
	var buf [80]byte // a tag, a length and a time or a number's digits
	field := func(b []byte, tag byte, v []byte) []byte {
		b = append(b[:0], tag)
		b = binary.AppendUvarint(b, uint64(len(v)))
		h.Write(b)
		h.Write(v)
		return b
	}
	b := buf[:0]
	b = field(b, eidType, []byte{byte(msg.Type)})
	for _, f := range [...]struct {
		tag byte
		v   []byte
	}{
		{eidUserID, msg.UserID},
		{eidAnonymousID, msg.AnonymousID},
		{eidDeviceID, msg.DeviceID},
		{eidEventText, msg.EventText},
		{eidEvent, msg.Event},
		{eidOrderID, msg.OrderID},
	} {
		b = field(b, f.tag, f.v)
	}
	for _, f := range [...]struct {
		tag byte
		n   segment.Number
	}{{eidTotal, msg.Total}, {eidRevenue, msg.Revenue}} {
		// AppendNumber writes nothing for an absent number; a present one
		// always has at least one digit.
		var digits [64]byte
		b = field(b, f.tag, AppendNumber(digits[:0], f.n))
	}
	var repeat []byte
	if msg.Repeat != segment.Absent {
		repeat = []byte{byte(msg.Repeat)}
	}
	b = field(b, eidRepeat, repeat)
	for _, f := range [...]struct {
		tag byte
		t   segment.Time
	}{
		{eidTimestamp, msg.Timestamp},
		{eidOriginalTimestamp, msg.OriginalTimestamp},
		{eidSentAt, msg.SentAt},
		{eidReceivedAt, msg.ReceivedAt},
	} {
		var micros []byte
		var tb [8]byte
		if f.t.Valid {
			micros = binary.BigEndian.AppendUint64(tb[:0], uint64(f.t.Micros))
		}
		b = field(b, f.tag, micros)
	}
	b = field(b, eidUserAgent, msg.UserAgent)
	field(b, eidIP, msg.IP)
	var full [sha256.Size]byte
	copy(sum[:], h.Sum(full[:0]))
	return sum
}
