package convertro

import (
	"math"
	"slices"
	"strconv"

	"github.com/convertro-etl/convertro-etl/internal/segment"
)

// Kind is the Convertro endpoint a Delivery goes to.
type Kind uint8

// The three request kinds (see wire.go for their paths and parameters).
const (
	KindUser    Kind = iota // identify, audience membership: /api/user/
	KindHit                 // track: /api/hit/
	KindInstall             // Application Installed: /api/install/
)

var kindNames = [...]string{"user", "hit", "install"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// SkipReason says why a message produced no request. The constants are in
// the design page's priority order: when several apply, the first names the
// skip.
type SkipReason uint8

// The skip reasons, SkipNone first; String gives the counter names of the
// run report. A message without device id that has an anonymousId is
// counted apart from one with neither (SkipMissingDeviceIDHasAnonymousID),
// because Settings.AnonymousIDAsDeviceID would send it.
const (
	SkipNone                          SkipReason = iota
	SkipDisabledByIntegrations                   // rule 19
	SkipUnsupportedType                          // rule 16
	SkipMissingUserID                            // rule 2 (identify only)
	SkipMissingDeviceID                          // rule 3
	SkipMissingDeviceIDHasAnonymousID            // rule 3, for a message with an anonymousId (a web row)
	SkipMissingTimestamp                         // rule 17
	SkipMissingOrderID                           // rule 10
	SkipUnmappedEvent                            // rule 14
)

var skipNames = [...]string{
	"",
	"disabled_by_integrations",
	"unsupported_type",
	"missing_user_id",
	"missing_device_id",
	"missing_device_id_has_anonymous_id",
	"missing_timestamp",
	"missing_order_id",
	"unmapped_event",
}

func (r SkipReason) String() string {
	if int(r) < len(skipNames) {
		return skipNames[r]
	}
	return "skip(" + strconv.Itoa(int(r)) + ")"
}

// SkipReasons lists every reason but SkipNone, in priority order, in a new
// slice the caller may keep.
func SkipReasons() []SkipReason {
	rs := make([]SkipReason, 0, len(skipNames)-1)
	for r := SkipNone + 1; int(r) < len(skipNames); r++ {
		rs = append(rs, r)
	}
	return rs
}

// Delivery is one Convertro request before encoding: which endpoint and the
// values of its parameters (wire.go decides names, order and encoding).
//
// Its byte slices are read-only views: into the message's decoder buffers
// (valid until the decoder's next batch, like the message itself) or into
// the Mapper's names. Copy a Delivery's bytes to keep them longer; encoding
// it with Wire.AppendURL right away is the usual way.
type Delivery struct {
	Kind Kind
	SID  []byte         // device id (all kinds)
	ID   []byte         // userId (user)
	Typ  []byte         // Convertro event name (hit)
	EID  []byte         // orderId for sales, else the messageId (hit, install); see eidSum
	CUA  []byte         // context.userAgent, optional
	CIP  []byte         // context.ip, optional
	Val  segment.Number // event value (hit), never absent: formatted by AppendNumber
	TS   int64          // event time, whole Unix seconds, floored

	// Trait is the snake_case key of the one user property an Engage sync
	// sets (rules 18 and 20), sent as Trait=TraitValue after ts. Empty: no
	// trait. TraitValue is "true" or "false" for an audience membership, a
	// computed trait's value in its wire form, or empty for a computed trait
	// that was removed (Trait= with nothing after it).
	Trait      string
	TraitValue []byte

	// eidSum is the event id of a hit or install whose message has no
	// messageId, derived from the row's values (deriveEventID); it is sent
	// when hasEIDSum is set and EID is empty. It is held here, not in EID,
	// so that mapping such a row allocates nothing.
	eidSum    [eidSumBytes]byte
	hasEIDSum bool
}

// setEventID sets the event id of a hit or install that is not a sale: the
// messageId, else the id derived from the row's values, computed once per
// message however many hits it makes.
func (d *Delivery) setEventID(msg *segment.Message) {
	d.EID = msg.MessageID
	if len(msg.MessageID) == 0 {
		d.eidSum, d.hasEIDSum = deriveEventID(msg), true
	}
}

// The fixed Convertro names of sales (rules 4-8).
var (
	typSale       = []byte("sale")
	typSaleNew    = []byte("sale.new")
	typSaleRepeat = []byte("sale.repeat")
)

// Mapper applies rules 1-19 of the design page to decoded messages. Build it
// once per run with NewMapper; it is immutable afterwards.
type Mapper struct {
	events  map[string][][]byte // normalised Segment name → Convertro names, in settings order, unique
	filter  bool                // the settings' events map is not empty: unmapped events are skipped
	hybrid  bool
	anonSID bool     // Settings.AnonymousIDAsDeviceID
	ignored []string // events entries that rules 11 and 15 override
}

// NewMapper compiles the events map of s (normalising the Segment names and
// merging entries that normalise alike) and the hybrid flag. It fails, with
// ErrInvalidSettings, only on an empty event name; the other settings are
// Validate's business.
func NewMapper(s Settings) (*Mapper, error) {
	if errs := checkEvents(s.Events); errs != nil {
		return nil, errs[0]
	}
	m := &Mapper{
		events: make(map[string][][]byte, len(s.Events)),
		// Emptiness is the settings' own, as the browser code sees it: a map
		// holding only an ignored Order Completed entry still filters.
		filter:  len(s.Events) > 0,
		hybrid:  s.HybridAttributionModel,
		anonSID: s.AnonymousIDAsDeviceID,
	}
	for _, k := range sortedKeys(s.Events) { // sorted: merged entries keep one order from run to run
		n := NormalizeEventName(k)
		switch n {
		case nameOrderCompleted, nameCompletedOrder, nameApplicationInstalled:
			m.ignored = append(m.ignored, k) // rules 11 and 15: the fixed mapping wins
			continue
		}
		for _, v := range s.Events[k] {
			if !slices.ContainsFunc(m.events[n], func(b []byte) bool { return string(b) == v }) {
				m.events[n] = append(m.events[n], []byte(v))
			}
		}
	}
	return m, nil
}

// IgnoredEvents lists the events entries that have no effect because rule 11
// (Order Completed) or rule 15 (Application Installed) decides those events,
// so that the job can warn about them.
func (m *Mapper) IgnoredEvents() []string { return slices.Clone(m.ignored) }

// Map appends to dst the requests that msg makes (none, one, or several for
// a hybrid sale or a multiply mapped event) and returns the extended slice.
// When it appends nothing it says why; SkipNone otherwise.
//
// Map is pure and, once dst has room, allocates nothing. The deliveries point
// into msg's buffers (see Delivery).
//
// Skips are checked in the design page's order, so that a message the sender
// excluded from Convertro counts as excluded whatever else is wrong with it:
// 19 integrations, 16 type, 2 userId (identify), 3 device id, 17 timestamp,
// 10 orderId (sales), 14 unmapped event.
func (m *Mapper) Map(dst []Delivery, msg *segment.Message) ([]Delivery, SkipReason) {
	sid, ts, r := m.check(msg, true)
	if r != SkipNone {
		return dst, r
	}
	d := Delivery{SID: sid, TS: ts, CUA: msg.UserAgent, CIP: msg.IP}

	if msg.Type == segment.TypeIdentify { // rule 1: sid, id, ts; no traits
		d.Kind = KindUser
		d.ID = msg.UserID
		return append(dst, d), SkipNone
	}

	// Track. The name as sent (event_text) wins over the slug (event).
	name := msg.EventText
	var buf [128]byte // normalised name; stays on the stack for names up to 128 bytes
	norm := appendNormalized(buf[:0], name)
	if len(norm) == 0 {
		name = msg.Event
		norm = appendNormalized(buf[:0], name)
	}

	switch string(norm) { // comparing string(bytes) does not allocate
	case nameOrderCompleted, nameCompletedOrder: // rules 4-11
		if len(msg.OrderID) == 0 {
			return dst, SkipMissingOrderID // rule 10: the seed wins over the browser code
		}
		d.Kind = KindHit
		d.EID = msg.OrderID
		d.Val = value(msg.Total, value(msg.Revenue, one)) // rule 9
		switch msg.Repeat {
		case segment.True:
			d.Typ = typSaleRepeat // rules 5, 7
		case segment.False:
			d.Typ = typSaleNew // rules 6, 8
		default:
			d.Typ = typSale // rule 4: absent, or not a real boolean
			return append(dst, d), SkipNone
		}
		dst = append(dst, d)
		if m.hybrid { // rules 7, 8: sale.new/sale.repeat first, then sale (browser code order)
			d.Typ = typSale
			dst = append(dst, d)
		}
		return dst, SkipNone

	case nameApplicationInstalled: // rule 15: not subject to the events map
		d.Kind = KindInstall
		d.setEventID(msg)
		return append(dst, d), SkipNone
	}

	if len(norm) == 0 {
		// A track without a name cannot be mapped, and Convertro refuses an
		// empty typ: skip it rather than dead-letter it (inferred).
		return dst, SkipUnmappedEvent
	}
	d.Kind = KindHit
	d.Val = value(msg.Revenue, one) // rules 12, 13: revenue, else 1
	if !m.filter {                  // rule 12: sent under its own name
		d.setEventID(msg)
		d.Typ = name
		return append(dst, d), SkipNone
	}
	names, ok := m.events[string(norm)] // no allocation: the compiler uses the bytes in place
	if !ok {
		return dst, SkipUnmappedEvent // rule 14
	}
	d.setEventID(msg)
	for _, typ := range names { // rule 13: one hit per mapped name
		d.Typ = typ
		dst = append(dst, d)
	}
	return dst, SkipNone
}

// check applies, in priority order, the skip rules that do not depend on the
// event name, and returns the sid and the event time. Tracks are accepted
// when trackOK is set; identifies always, and they need a userId. The sid is
// the device id; a message without one but with an anonymousId is sent
// under the anonymousId when the settings say so, and is otherwise skipped
// under a reason of its own, so that the run can say what would send it.
func (m *Mapper) check(msg *segment.Message, trackOK bool) ([]byte, int64, SkipReason) {
	sid := msg.DeviceID
	switch {
	case disabled(msg):
		return nil, 0, SkipDisabledByIntegrations // rule 19
	case msg.Type != segment.TypeIdentify && !(trackOK && msg.Type == segment.TypeTrack):
		return nil, 0, SkipUnsupportedType // rule 16
	case msg.Type == segment.TypeIdentify && len(msg.UserID) == 0:
		return nil, 0, SkipMissingUserID // rule 2
	case len(sid) == 0 && len(msg.AnonymousID) == 0:
		return nil, 0, SkipMissingDeviceID // rule 3
	case len(sid) == 0 && !m.anonSID:
		return nil, 0, SkipMissingDeviceIDHasAnonymousID // rule 3, a web row
	case len(sid) == 0:
		sid = msg.AnonymousID
	}
	ts, ok := eventTime(msg)
	if !ok {
		return nil, 0, SkipMissingTimestamp // rule 17
	}
	return sid, ts, SkipNone
}

// MapAudience appends the request of one Engage audience membership change
// (rule 18). Engage sends an identify per user added or removed, so msg is
// an identify: it ties its device id to its userId, and the trait says
// whether the user is in the audience. The identify skips apply, in the same
// order (rules 19, 16, 2, 3, 17). trait is the audience name or key, snake
// cased by AudienceDelivery.
func (m *Mapper) MapAudience(dst []Delivery, msg *segment.Message, trait string, member bool) ([]Delivery, SkipReason) {
	return m.MapTrait(dst, msg, trait, memberText(member))
}

// MapTrait appends the request of one Engage user property change: an
// audience membership (value "true" or "false", rule 18) or a computed
// trait (rule 20: value is the trait's wire form, empty when the trait was
// removed). It is an identify like MapAudience, with the same skips. trait
// is snake cased like an audience name; value is sent as given, escaped.
func (m *Mapper) MapTrait(dst []Delivery, msg *segment.Message, trait string, value []byte) ([]Delivery, SkipReason) {
	sid, ts, r := m.check(msg, false)
	if r != SkipNone {
		return dst, r
	}
	d := Delivery{Kind: KindUser, SID: sid, ID: msg.UserID, TS: ts, Trait: SnakeCase(trait), TraitValue: value}
	d.CUA, d.CIP = msg.UserAgent, msg.IP
	return append(dst, d), SkipNone
}

// AudienceDelivery is the user request of rule 18: sid, id, ts and the
// audience trait, trait=true while the user is a member and trait=false once
// they leave. trait is snake cased with SnakeCase (a no-op, without
// allocation, for a key that already is snake_case); pass the key once
// computed to keep the per-row cost at zero.
func AudienceDelivery(userID, deviceID []byte, ts int64, trait string, member bool) Delivery {
	return Delivery{Kind: KindUser, SID: deviceID, ID: userID, TS: ts, Trait: SnakeCase(trait), TraitValue: memberText(member)}
}

var trueText, falseText = []byte("true"), []byte("false")

// memberText is an audience membership's value; shared, never written to.
func memberText(member bool) []byte {
	if member {
		return trueText
	}
	return falseText
}

// ValidateAudience checks an audience name (or key) before an audience sync
// starts: its snake_case key must not be empty, and must not be one of the
// user request's own parameter names, which would make the URL ambiguous
// ("ID" would become id=true next to id={userId}). The error wraps
// ErrInvalidSettings and names the setting "audience".
func ValidateAudience(name string) error {
	switch key := SnakeCase(name); key {
	case "":
		return &SettingError{"audience", "no letters or digits in " + strconv.Quote(name)}
	case ParamSID, ParamID, ParamTS, ParamCUA, ParamCIP:
		return &SettingError{"audience", strconv.Quote(name) + " becomes " + strconv.Quote(key) +
			", a parameter name Convertro's user request already uses"}
	}
	return nil
}

// disabled applies rule 19: Convertro is off when the Integrations object
// says Convertro: false, or All: false without Convertro: true.
func disabled(msg *segment.Message) bool {
	return msg.IntegrationsConvertro == segment.False ||
		(msg.IntegrationsAll == segment.False && msg.IntegrationsConvertro != segment.True)
}

// eventTime is the first present of timestamp, original_timestamp, sent_at
// and received_at, in whole Unix seconds, floored.
func eventTime(msg *segment.Message) (int64, bool) {
	t, ok := msg.EventTime()
	return t.UnixSeconds(), ok
}

// one is the value of an event without one (rules 9, 12, 13).
var one = segment.Num(1)

// value is n when it holds a number, else fallback. 0 and negative values
// are real values (a refund); NaN and ±Inf, which a FLOAT or DOUBLE column
// can hold but Convertro cannot take, count as absent like "NA" (inferred).
// A number with its own decimal digits is always a real number.
func value(n segment.Number, fallback segment.Number) segment.Number {
	if !n.Valid || len(n.Decimal) == 0 && (math.IsNaN(n.Value) || math.IsInf(n.Value, 0)) {
		return fallback
	}
	return n
}
