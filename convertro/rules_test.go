package convertro

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"testing"

	"github.com/convertro-etl/convertro-etl/internal/segment"
)

// The request prefixes for the settings every rule case uses (clientName
// "acme", siteId "42", domain acme.sp1.convertro.com). Expected URLs are
// spelled out in full after them.
const (
	U = "https://acme.sp1.convertro.com/api/user/acme/42/?"
	H = "https://acme.sp1.convertro.com/api/hit/acme/42/?"
	I = "https://acme.sp1.convertro.com/api/install/acme/42/?"
)

// tsMicros is 2024-01-02T03:04:05.678Z; its floored Unix seconds are
// 1704164645, the ts of every request below unless a case says otherwise.
const tsMicros = 1704164645678000

// A message builder that reads like the seed: track("Order Completed",
// order("o-1"), total(49.99)). Every message has messageId msg-1, device id
// dev-1 and a timestamp unless an option removes them.
type opt func(*segment.Message)

func newMsg(t segment.Type, opts []opt) *segment.Message {
	m := &segment.Message{
		Type:      t,
		MessageID: []byte("msg-1"),
		DeviceID:  []byte("dev-1"),
		Timestamp: segment.At(tsMicros),
	}
	for _, o := range opts {
		o(m)
	}
	return m
}

func track(event string, opts ...opt) *segment.Message {
	return newMsg(segment.TypeTrack, append([]opt{func(m *segment.Message) { m.EventText = []byte(event) }}, opts...))
}
func identify(userID string, opts ...opt) *segment.Message {
	return newMsg(segment.TypeIdentify, append([]opt{func(m *segment.Message) { m.UserID = []byte(userID) }}, opts...))
}
func strPtr(s string) *string                             { return &s }
func ofType(t segment.Type, opts ...opt) *segment.Message { return newMsg(t, opts) }

// slugOnly leaves event_text empty and sets the `event` column (the slug).
func slugOnly(slug string) opt {
	return func(m *segment.Message) { m.EventText, m.Event = nil, []byte(slug) }
}
func slug(s string) opt         { return func(m *segment.Message) { m.Event = []byte(s) } }
func order(id string) opt       { return func(m *segment.Message) { m.OrderID = []byte(id) } }
func total(v float64) opt       { return func(m *segment.Message) { m.Total = segment.Num(v) } }
func revenue(v float64) opt     { return func(m *segment.Message) { m.Revenue = segment.Num(v) } }
func repeat(b segment.Bool) opt { return func(m *segment.Message) { m.Repeat = b } }
func userID(s string) opt       { return func(m *segment.Message) { m.UserID = []byte(s) } }
func ua(s string) opt           { return func(m *segment.Message) { m.UserAgent = []byte(s) } }
func ip(s string) opt           { return func(m *segment.Message) { m.IP = []byte(s) } }
func messageID(s string) opt    { return func(m *segment.Message) { m.MessageID = []byte(s) } }
func noDevice() opt             { return func(m *segment.Message) { m.DeviceID = nil } }
func noTimestamp() opt          { return func(m *segment.Message) { m.Timestamp = segment.Time{} } }
func timestamp(us int64) opt    { return func(m *segment.Message) { m.Timestamp = segment.At(us) } }
func originalTS(us int64) opt {
	return func(m *segment.Message) { m.OriginalTimestamp = segment.At(us) }
}
func sentAt(us int64) opt     { return func(m *segment.Message) { m.SentAt = segment.At(us) } }
func receivedAt(us int64) opt { return func(m *segment.Message) { m.ReceivedAt = segment.At(us) } }
func integrations(all, cvt segment.Bool) opt {
	return func(m *segment.Message) { m.IntegrationsAll, m.IntegrationsConvertro = all, cvt }
}

// web is a row of analytics.js, Segment's browser library: an anonymousId
// and no context.device.id.
func web(anonymousID string) opt {
	return func(m *segment.Message) { m.DeviceID, m.AnonymousID = nil, []byte(anonymousID) }
}

// totalFloat32 is a FLOAT total as the reader gives it: the 32-bit value,
// marked as one. decimal is an exact decimal as the reader gives a DECIMAL
// column, an INT64 past 2^53 or a text column ("$1,299.50" as "1299.50").
func totalFloat32(v float32) opt {
	return func(m *segment.Message) { m.Total = segment.Number{Value: float64(v), Valid: true, Float32: true} }
}
func decimal(digits string) segment.Number {
	f, _ := strconv.ParseFloat(digits, 64)
	return segment.Number{Value: f, Valid: true, Decimal: []byte(digits)}
}
func totalDecimal(digits string) opt { return func(m *segment.Message) { m.Total = decimal(digits) } }
func revenueDecimal(digits string) opt {
	return func(m *segment.Message) { m.Revenue = decimal(digits) }
}

// The reader's view of text values, as the mapping receives them: text
// "TRUE" in a string repeat column is a real boolean (exactly true/false, any
// case) and arrives as segment.True, while "yes" arrives as segment.Absent;
// "$1,299.50" arrives as its digits 1299.50 and "NA" as an absent Number.
var (
	repeatTextTRUE = repeat(segment.True)
	repeatTextYes  = repeat(segment.Absent)
	totalText1299  = totalDecimal("1299.50")
	totalTextNA    = func(m *segment.Message) { m.Total = segment.Number{} }
)

type ruleCase struct {
	name   string
	hybrid bool
	// anonSID: --anonymous-id-as-device-id
	anonSID bool
	events  map[string][]string
	msg     *segment.Message

	// rule 18: map msg as an audience membership change instead
	audience string
	member   bool
	// rule 20: with audience as the trait's name, map msg as a computed
	// trait set to *value instead
	value *string

	want []string   // every request, in order, as AppendURL writes it
	skip SkipReason // when want is empty
}

var (
	signup     = map[string][]string{"Signed Up": {"signup"}}
	signupLead = map[string][]string{"Signed Up": {"signup", "lead"}}
	empty      = map[string][]string{}
)

var ruleCases = []ruleCase{
	// Identify.
	{name: "rule 01 identify with userId and device id sends one user request, no traits",
		msg:  identify("user-1"),
		want: []string{U + "sid=dev-1&id=user-1&ts=1704164645"}},
	{name: "rule 01 identify passes context.userAgent and context.ip as cua and cip",
		msg:  identify("user-1", ua("Mozilla/5.0 (X11; Linux)"), ip("203.0.113.7")),
		want: []string{U + "sid=dev-1&id=user-1&ts=1704164645&cua=Mozilla%2F5.0+%28X11%3B+Linux%29&cip=203.0.113.7"}},
	{name: "rule 02 identify without userId sends nothing",
		msg:  identify(""),
		skip: SkipMissingUserID},
	{name: "rule 02 does not apply to track: an anonymous track is sent",
		msg:  track("Signed Up"),
		want: []string{H + "sid=dev-1&typ=Signed+Up&val=1&eid=msg-1&ts=1704164645"}},
	{name: "rule 03 identify without device id sends nothing",
		msg:  identify("user-1", noDevice()),
		skip: SkipMissingDeviceID},
	{name: "rule 03 track without device id sends nothing",
		msg:  track("Order Completed", order("o-1"), noDevice()),
		skip: SkipMissingDeviceID},
	{name: "rule 03 a web track (anonymousId, no device id) sends nothing by default, counted apart",
		msg:  track("Signed Up", web("anon-1")),
		skip: SkipMissingDeviceIDHasAnonymousID},
	{name: "rule 03 a web identify sends nothing by default, counted apart",
		msg:  identify("user-1", web("anon-1")),
		skip: SkipMissingDeviceIDHasAnonymousID},
	{name: "rule 03 with --anonymous-id-as-device-id a web track is sent with sid = anonymousId",
		anonSID: true,
		msg:     track("Signed Up", web("anon-1"), ua("Mozilla/5.0")),
		want:    []string{H + "sid=anon-1&typ=Signed+Up&val=1&eid=msg-1&ts=1704164645&cua=Mozilla%2F5.0"}},
	{name: "rule 03 with --anonymous-id-as-device-id a web identify ties the anonymousId to the userId",
		anonSID: true,
		msg:     identify("user-1", web("anon-1")),
		want:    []string{U + "sid=anon-1&id=user-1&ts=1704164645"}},
	{name: "rule 03 with --anonymous-id-as-device-id a web sale is sent with sid = anonymousId",
		anonSID: true, hybrid: true,
		msg: track("Order Completed", web("anon-1"), order("o-1"), total(49.99), repeat(segment.True)),
		want: []string{
			H + "sid=anon-1&typ=sale.repeat&val=49.99&eid=o-1&ts=1704164645",
			H + "sid=anon-1&typ=sale&val=49.99&eid=o-1&ts=1704164645",
		}},
	{name: "rule 03 with --anonymous-id-as-device-id the device id still wins when present",
		anonSID: true,
		msg:     track("Signed Up", func(m *segment.Message) { m.AnonymousID = []byte("anon-1") }),
		want:    []string{H + "sid=dev-1&typ=Signed+Up&val=1&eid=msg-1&ts=1704164645"}},
	{name: "rule 03 with --anonymous-id-as-device-id a row with neither id sends nothing",
		anonSID: true,
		msg:     track("Signed Up", noDevice()),
		skip:    SkipMissingDeviceID},

	// Order Completed: repeat × hybrid.
	{name: "rule 04 repeat absent hybrid off sends sale",
		msg:  track("Order Completed", order("o-1"), total(49.99)),
		want: []string{H + "sid=dev-1&typ=sale&val=49.99&eid=o-1&ts=1704164645"}},
	{name: "rule 04 repeat absent hybrid on sends sale only",
		hybrid: true,
		msg:    track("Order Completed", order("o-1"), total(49.99)),
		want:   []string{H + "sid=dev-1&typ=sale&val=49.99&eid=o-1&ts=1704164645"}},
	{name: "rule 04 repeat text yes is not a boolean: sale, hybrid on",
		hybrid: true,
		msg:    track("Order Completed", order("o-1"), total(49.99), repeatTextYes),
		want:   []string{H + "sid=dev-1&typ=sale&val=49.99&eid=o-1&ts=1704164645"}},
	{name: "rule 04 Completed Order is Order Completed",
		msg:  track("Completed Order", order("o-1"), total(49.99)),
		want: []string{H + "sid=dev-1&typ=sale&val=49.99&eid=o-1&ts=1704164645"}},
	{name: "rule 04 slug order_completed without event_text is Order Completed",
		msg:  track("", slugOnly("order_completed"), order("o-1"), total(49.99)),
		want: []string{H + "sid=dev-1&typ=sale&val=49.99&eid=o-1&ts=1704164645"}},
	{name: "rule 04 OrderCompleted and ORDER COMPLETED are Order Completed",
		msg:  track("OrderCompleted", slug("ORDER COMPLETED"), order("o-1")),
		want: []string{H + "sid=dev-1&typ=sale&val=1&eid=o-1&ts=1704164645"}},
	{name: "rule 05 repeat true hybrid off sends sale.repeat",
		msg:  track("Order Completed", order("o-1"), total(49.99), repeat(segment.True)),
		want: []string{H + "sid=dev-1&typ=sale.repeat&val=49.99&eid=o-1&ts=1704164645"}},
	{name: "rule 05 repeat text TRUE is a real boolean: sale.repeat",
		msg:  track("Order Completed", order("o-1"), total(49.99), repeatTextTRUE),
		want: []string{H + "sid=dev-1&typ=sale.repeat&val=49.99&eid=o-1&ts=1704164645"}},
	{name: "rule 06 repeat false hybrid off sends sale.new",
		msg:  track("Order Completed", order("o-1"), total(49.99), repeat(segment.False)),
		want: []string{H + "sid=dev-1&typ=sale.new&val=49.99&eid=o-1&ts=1704164645"}},
	{name: "rule 07 repeat true hybrid on sends sale.repeat then sale",
		hybrid: true,
		msg:    track("Order Completed", order("o-1"), total(49.99), repeat(segment.True)),
		want: []string{
			H + "sid=dev-1&typ=sale.repeat&val=49.99&eid=o-1&ts=1704164645",
			H + "sid=dev-1&typ=sale&val=49.99&eid=o-1&ts=1704164645",
		}},
	{name: "rule 07 hybrid pair keeps cua and cip on both hits",
		hybrid: true,
		msg:    track("Completed Order", order("o-1"), total(10), repeat(segment.True), ua("UA"), ip("::1")),
		want: []string{
			H + "sid=dev-1&typ=sale.repeat&val=10&eid=o-1&ts=1704164645&cua=UA&cip=%3A%3A1",
			H + "sid=dev-1&typ=sale&val=10&eid=o-1&ts=1704164645&cua=UA&cip=%3A%3A1",
		}},
	{name: "rule 08 repeat false hybrid on sends sale.new then sale",
		hybrid: true,
		msg:    track("Order Completed", order("o-1"), total(49.99), repeat(segment.False)),
		want: []string{
			H + "sid=dev-1&typ=sale.new&val=49.99&eid=o-1&ts=1704164645",
			H + "sid=dev-1&typ=sale&val=49.99&eid=o-1&ts=1704164645",
		}},

	// Order Completed value.
	{name: "rule 09 total wins over revenue",
		msg:  track("Order Completed", order("o-1"), total(49.99), revenue(40)),
		want: []string{H + "sid=dev-1&typ=sale&val=49.99&eid=o-1&ts=1704164645"}},
	{name: "rule 09 revenue when there is no total",
		msg:  track("Order Completed", order("o-1"), revenue(40)),
		want: []string{H + "sid=dev-1&typ=sale&val=40&eid=o-1&ts=1704164645"}},
	{name: "rule 09 neither total nor revenue sends 1",
		msg:  track("Order Completed", order("o-1")),
		want: []string{H + "sid=dev-1&typ=sale&val=1&eid=o-1&ts=1704164645"}},
	{name: "rule 09 total text $1,299.50 as parsed by the reader",
		msg:  track("Order Completed", order("o-1"), totalText1299, revenue(40)),
		want: []string{H + "sid=dev-1&typ=sale&val=1299.5&eid=o-1&ts=1704164645"}},
	{name: "rule 09 total text NA is absent: revenue",
		msg:  track("Order Completed", order("o-1"), totalTextNA, revenue(40)),
		want: []string{H + "sid=dev-1&typ=sale&val=40&eid=o-1&ts=1704164645"}},
	{name: "rule 09 total 0 is sent as 0, not replaced by revenue",
		msg:  track("Order Completed", order("o-1"), total(0), revenue(40)),
		want: []string{H + "sid=dev-1&typ=sale&val=0&eid=o-1&ts=1704164645"}},
	{name: "rule 09 negative total (a refund) is sent as is",
		msg:  track("Order Completed", order("o-1"), total(-25.5)),
		want: []string{H + "sid=dev-1&typ=sale&val=-25.5&eid=o-1&ts=1704164645"}},
	{name: "rule 09 large total has no exponent",
		msg:  track("Order Completed", order("o-1"), total(1e6)),
		want: []string{H + "sid=dev-1&typ=sale&val=1000000&eid=o-1&ts=1704164645"}},
	{name: "rule 09 a FLOAT total of 49.99 is sent as 49.99, its 32-bit value, not 49.9900016784668",
		msg:  track("Order Completed", order("o-1"), totalFloat32(49.99)),
		want: []string{H + "sid=dev-1&typ=sale&val=49.99&eid=o-1&ts=1704164645"}},
	{name: "rule 09 a DECIMAL(10,2) total of 27.50 is sent as 27.5",
		msg:  track("Order Completed", order("o-1"), totalDecimal("27.50")),
		want: []string{H + "sid=dev-1&typ=sale&val=27.5&eid=o-1&ts=1704164645"}},
	{name: "rule 09 a DECIMAL(38,10) total is sent with every digit, never through a float64",
		msg:  track("Order Completed", order("o-1"), totalDecimal("12345678901234567890.1234567890")),
		want: []string{H + "sid=dev-1&typ=sale&val=12345678901234567890.123456789&eid=o-1&ts=1704164645"}},
	{name: "rule 09 an INT64 total past 2^53 keeps its last digit",
		msg:  track("Order Completed", order("o-1"), totalDecimal("9007199254740993")),
		want: []string{H + "sid=dev-1&typ=sale&val=9007199254740993&eid=o-1&ts=1704164645"}},
	{name: "rule 09 a DECIMAL total of -0.00 is sent as 0, not replaced by revenue",
		msg:  track("Order Completed", order("o-1"), totalDecimal("-0.00"), revenue(40)),
		want: []string{H + "sid=dev-1&typ=sale&val=0&eid=o-1&ts=1704164645"}},
	{name: "rule 10 Order Completed without orderId sends nothing",
		msg:  track("Order Completed", total(49.99)),
		skip: SkipMissingOrderID},
	{name: "rule 10 Completed Order without orderId sends nothing, hybrid on",
		hybrid: true,
		msg:    track("Completed Order", total(49.99), repeat(segment.True)),
		skip:   SkipMissingOrderID},
	{name: "rule 11 an events entry for Order Completed is ignored",
		events: map[string][]string{"Order Completed": {"purchase"}, "Signed Up": {"signup"}},
		msg:    track("Order Completed", order("o-1"), total(49.99), repeat(segment.False)),
		want:   []string{H + "sid=dev-1&typ=sale.new&val=49.99&eid=o-1&ts=1704164645"}},
	{name: "rule 11 Order Completed is sent when a non-empty events map does not name it",
		events: signup,
		msg:    track("Order Completed", order("o-1"), total(49.99)),
		want:   []string{H + "sid=dev-1&typ=sale&val=49.99&eid=o-1&ts=1704164645"}},

	// Other tracks.
	{name: "rule 12 empty events map: typ is the event name as sent, val 1",
		events: empty,
		msg:    track("Signed Up"),
		want:   []string{H + "sid=dev-1&typ=Signed+Up&val=1&eid=msg-1&ts=1704164645"}},
	{name: "rule 12 event_text wins over the slug",
		msg:  track("Signed Up", slug("signed_up")),
		want: []string{H + "sid=dev-1&typ=Signed+Up&val=1&eid=msg-1&ts=1704164645"}},
	{name: "rule 12 the slug when event_text is empty",
		msg:  track("", slugOnly("signed_up")),
		want: []string{H + "sid=dev-1&typ=signed_up&val=1&eid=msg-1&ts=1704164645"}},
	{name: "rule 12 revenue is the value; total is not used outside sales",
		msg:  track("Product Added", revenue(19.9), total(99), order("o-7")),
		want: []string{H + "sid=dev-1&typ=Product+Added&val=19.9&eid=msg-1&ts=1704164645"}},
	{name: "rule 12 zero and negative revenue are sent as they are",
		msg:  track("Refund Issued", revenue(-5)),
		want: []string{H + "sid=dev-1&typ=Refund+Issued&val=-5&eid=msg-1&ts=1704164645"}},
	{name: "rule 12 revenue text $1,299.50 as the reader gives it is sent as 1299.5",
		msg:  track("Product Added", revenueDecimal("1299.50")),
		want: []string{H + "sid=dev-1&typ=Product+Added&val=1299.5&eid=msg-1&ts=1704164645"}},
	{name: "rule 12 names with & = + and unicode are escaped",
		msg:  track("Café & Bar=1+1"),
		want: []string{H + "sid=dev-1&typ=Caf%C3%A9+%26+Bar%3D1%2B1&val=1&eid=msg-1&ts=1704164645"}},
	{name: "rule 13 mapped event is sent under its Convertro name",
		events: signup,
		msg:    track("Signed Up", revenue(5)),
		want:   []string{H + "sid=dev-1&typ=signup&val=5&eid=msg-1&ts=1704164645"}},
	{name: "rule 13 mapping matches the normalised name (slug, camelCase)",
		events: signup,
		msg:    track("", slugOnly("SignedUp")),
		want:   []string{H + "sid=dev-1&typ=signup&val=1&eid=msg-1&ts=1704164645"}},
	{name: "rule 13 multiply mapped event sends one hit per name, in order",
		events: signupLead,
		msg:    track("signed_up"),
		want: []string{
			H + "sid=dev-1&typ=signup&val=1&eid=msg-1&ts=1704164645",
			H + "sid=dev-1&typ=lead&val=1&eid=msg-1&ts=1704164645",
		}},
	{name: "rule 13 eid is the messageId even when an orderId is present",
		events: map[string][]string{"Order Refunded": {"refund"}},
		msg:    track("Order Refunded", order("o-1"), revenue(-49.99), messageID("m-77")),
		want:   []string{H + "sid=dev-1&typ=refund&val=-49.99&eid=m-77&ts=1704164645"}},
	{name: "rule 13 a track whose messageId is NULL gets an eid derived from its values",
		msg:  track("Signed Up", messageID("")),
		want: []string{H + "sid=dev-1&typ=Signed+Up&val=1&eid=row-4a001e660e53209926ef18cfb9faad42&ts=1704164645"}},
	{name: "rule 13 a multiply mapped track without messageId sends one derived eid on every hit",
		events: signupLead,
		msg:    track("signed_up", messageID("")),
		want: []string{
			H + "sid=dev-1&typ=signup&val=1&eid=row-3184fda1437c2b43f04521dc759f484d&ts=1704164645",
			H + "sid=dev-1&typ=lead&val=1&eid=row-3184fda1437c2b43f04521dc759f484d&ts=1704164645",
		}},
	{name: "rule 13 a sale without messageId keeps its orderId as eid",
		msg:  track("Order Completed", order("o-1"), total(10), messageID("")),
		want: []string{H + "sid=dev-1&typ=sale&val=10&eid=o-1&ts=1704164645"}},
	{name: "rule 14 unmapped event under a non-empty events map sends nothing",
		events: signup,
		msg:    track("Product Viewed"),
		skip:   SkipUnmappedEvent},
	{name: "rule 14 a map holding only an ignored Order Completed entry still filters",
		events: map[string][]string{"Order Completed": {"purchase"}},
		msg:    track("Signed Up"),
		skip:   SkipUnmappedEvent},
	{name: "rule 14 a track without any event name sends nothing",
		msg:  track(""),
		skip: SkipUnmappedEvent},

	// Installs.
	{name: "rule 15 Application Installed sends an install request",
		msg:  track("Application Installed", ua("App/1.0"), ip("198.51.100.2")),
		want: []string{I + "sid=dev-1&eid=msg-1&ts=1704164645&cua=App%2F1.0&cip=198.51.100.2"}},
	{name: "rule 15 Application Installed ignores a non-empty events map",
		events: signup,
		msg:    track("", slugOnly("application_installed")),
		want:   []string{I + "sid=dev-1&eid=msg-1&ts=1704164645"}},
	{name: "rule 15 an events entry for Application Installed is ignored",
		events: map[string][]string{"Application Installed": {"install"}},
		msg:    track("Application Installed"),
		want:   []string{I + "sid=dev-1&eid=msg-1&ts=1704164645"}},

	{name: "rule 15 an install whose messageId is NULL gets an eid derived from its values",
		msg:  track("Application Installed", messageID("")),
		want: []string{I + "sid=dev-1&eid=row-fce615978ece2d144c0b1baf2e6729b9&ts=1704164645"}},

	// Types.
	{name: "rule 16 page sends nothing", msg: ofType(segment.TypePage, userID("user-1")), skip: SkipUnsupportedType},
	{name: "rule 16 screen sends nothing", msg: ofType(segment.TypeScreen, userID("user-1")), skip: SkipUnsupportedType},
	{name: "rule 16 group sends nothing", msg: ofType(segment.TypeGroup), skip: SkipUnsupportedType},
	{name: "rule 16 alias sends nothing", msg: ofType(segment.TypeAlias), skip: SkipUnsupportedType},
	{name: "rule 16 unknown type sends nothing", msg: ofType(segment.TypeUnknown), skip: SkipUnsupportedType},

	// Timestamps.
	{name: "rule 17 no timestamp in any column sends nothing",
		msg:  track("Signed Up", noTimestamp()),
		skip: SkipMissingTimestamp},
	{name: "rule 17 identify without timestamp sends nothing",
		msg:  identify("user-1", noTimestamp()),
		skip: SkipMissingTimestamp},
	{name: "rule 17 original_timestamp when timestamp is missing",
		msg:  identify("user-1", noTimestamp(), originalTS(1_000_000_000_999_999), sentAt(5e15), receivedAt(6e15)),
		want: []string{U + "sid=dev-1&id=user-1&ts=1000000000"}},
	{name: "rule 17 sent_at, then received_at",
		msg:  identify("user-1", noTimestamp(), receivedAt(6e15)),
		want: []string{U + "sid=dev-1&id=user-1&ts=6000000000"}},
	{name: "rule 17 sent_at before received_at",
		msg:  identify("user-1", noTimestamp(), sentAt(5e15), receivedAt(6e15)),
		want: []string{U + "sid=dev-1&id=user-1&ts=5000000000"}},
	{name: "rule 17 ts is floored, also before 1970",
		msg:  identify("user-1", timestamp(-1)),
		want: []string{U + "sid=dev-1&id=user-1&ts=-1"}},

	// Audiences.
	{name: "rule 18 audience Order Completed Last 30 Days, member",
		msg: identify("user-1"), audience: "Order Completed Last 30 Days", member: true,
		want: []string{U + "sid=dev-1&id=user-1&ts=1704164645&order_completed_last_30_days=true"}},
	{name: "rule 18 audience orderCompletedLast30Days, no longer a member",
		msg: identify("user-1"), audience: "orderCompletedLast30Days", member: false,
		want: []string{U + "sid=dev-1&id=user-1&ts=1704164645&order_completed_last30_days=false"}},
	{name: "rule 18 the seed's snake_case key is kept",
		msg: identify("user-1", ua("UA")), audience: "order_completed_last_30days", member: true,
		want: []string{U + "sid=dev-1&id=user-1&ts=1704164645&order_completed_last_30days=true&cua=UA"}},
	{name: "rule 18 audience change without userId sends nothing",
		msg: identify(""), audience: "vip", member: true,
		skip: SkipMissingUserID},
	{name: "rule 18 audience change as a track is not an identify",
		msg: track("Audience Entered", userID("user-1")), audience: "vip", member: true,
		skip: SkipUnsupportedType},

	// Computed traits.
	{name: "rule 20 computed trait Lifetime Value, a number",
		msg: identify("user-1"), audience: "Lifetime Value", value: strPtr("1234.5"),
		want: []string{U + "sid=dev-1&id=user-1&ts=1704164645&lifetime_value=1234.5"}},
	{name: "rule 20 computed trait favoriteCategory, text escaped",
		msg: identify("user-1", ip("203.0.113.7")), audience: "favoriteCategory", value: strPtr("shoes & socks/2"),
		want: []string{U + "sid=dev-1&id=user-1&ts=1704164645&favorite_category=shoes+%26+socks%2F2&cip=203.0.113.7"}},
	{name: "rule 20 a removed computed trait is sent with an empty value",
		msg: identify("user-1"), audience: "lifetime_value", value: strPtr(""),
		want: []string{U + "sid=dev-1&id=user-1&ts=1704164645&lifetime_value="}},
	{name: "rule 20 computed trait without device id sends nothing",
		msg: identify("user-1", noDevice()), audience: "lifetime_value", value: strPtr("1"),
		skip: SkipMissingDeviceID},

	// Integrations object.
	{name: "rule 19 Convertro false sends nothing",
		msg:  track("Order Completed", order("o-1"), integrations(segment.Absent, segment.False)),
		skip: SkipDisabledByIntegrations},
	{name: "rule 19 All false sends nothing",
		msg:  identify("user-1", integrations(segment.False, segment.Absent)),
		skip: SkipDisabledByIntegrations},
	{name: "rule 19 All false with Convertro true is sent",
		msg:  identify("user-1", integrations(segment.False, segment.True)),
		want: []string{U + "sid=dev-1&id=user-1&ts=1704164645"}},
	{name: "rule 19 Convertro false wins over All true",
		msg:  identify("user-1", integrations(segment.True, segment.False)),
		skip: SkipDisabledByIntegrations},
	{name: "rule 19 All true is sent",
		msg:  identify("user-1", integrations(segment.True, segment.Absent)),
		want: []string{U + "sid=dev-1&id=user-1&ts=1704164645"}},
	{name: "rule 19 audience change for an excluded user sends nothing",
		msg: identify("user-1", integrations(segment.False, segment.Absent)), audience: "vip", member: true,
		skip: SkipDisabledByIntegrations},

	// Priority when several skips apply: 19, 16, 2, 3, 17, 10, 14.
	{name: "rule 19 before 16: an excluded page is disabled_by_integrations",
		msg:  ofType(segment.TypePage, integrations(segment.Absent, segment.False), noDevice(), noTimestamp()),
		skip: SkipDisabledByIntegrations},
	{name: "rule 16 before 3 and 17: a page without device id or timestamp is unsupported_type",
		msg:  ofType(segment.TypePage, noDevice(), noTimestamp()),
		skip: SkipUnsupportedType},
	{name: "rule 02 before 3 and 17: identify without userId, device id or timestamp",
		msg:  identify("", noDevice(), noTimestamp()),
		skip: SkipMissingUserID},
	{name: "rule 03 before 17 and 10: order without device id, timestamp or orderId",
		msg:  track("Order Completed", noDevice(), noTimestamp()),
		skip: SkipMissingDeviceID},
	{name: "rule 02 before 3: a web identify without userId is missing_user_id",
		msg:  identify("", web("anon-1")),
		skip: SkipMissingUserID},
	{name: "rule 03 before 17: a web order without timestamp or orderId, by default",
		msg:  track("Order Completed", web("anon-1"), noTimestamp()),
		skip: SkipMissingDeviceIDHasAnonymousID},
	{name: "rule 17 before 10: a web order without timestamp or orderId, with --anonymous-id-as-device-id",
		anonSID: true,
		msg:     track("Order Completed", web("anon-1"), noTimestamp()),
		skip:    SkipMissingTimestamp},
	{name: "rule 17 before 10: order without timestamp or orderId",
		msg:  track("Order Completed", noTimestamp()),
		skip: SkipMissingTimestamp},
	{name: "rule 17 before 14: unmapped event without timestamp",
		events: signup,
		msg:    track("Product Viewed", noTimestamp()),
		skip:   SkipMissingTimestamp},
	{name: "rule 10 before 14: order without orderId under a non-empty events map",
		events: signup,
		msg:    track("Order Completed"),
		skip:   SkipMissingOrderID},
}

func TestRules(t *testing.T) {
	for _, tc := range ruleCases {
		t.Run(tc.name, func(t *testing.T) {
			s := Settings{Account: "acme", ClientName: "acme", SiteID: "42", Domain: "acme.sp1.convertro.com",
				Events: tc.events, HybridAttributionModel: tc.hybrid, AnonymousIDAsDeviceID: tc.anonSID}
			m, err := NewMapper(s)
			if err != nil {
				t.Fatal(err)
			}
			w := NewWire(s)
			prior := []Delivery{{Kind: KindHit, Typ: []byte("earlier")}} // Map must append, not overwrite
			var got []Delivery
			var skip SkipReason
			switch {
			case tc.value != nil:
				got, skip = m.MapTrait(prior, tc.msg, tc.audience, []byte(*tc.value))
			case tc.audience != "":
				got, skip = m.MapAudience(prior, tc.msg, tc.audience, tc.member)
			default:
				got, skip = m.Map(prior, tc.msg)
			}
			if len(got) == 0 || string(got[0].Typ) != "earlier" {
				t.Fatalf("Map did not keep what dst held: %+v", got)
			}
			got = got[1:]
			var urls []string
			for i := range got {
				urls = append(urls, string(w.AppendURL(nil, &got[i])))
			}
			if skip != tc.skip || !slices.Equal(urls, tc.want) {
				t.Errorf("got skip %q and\n%s\nwant skip %q and\n%s", skip, lines(urls), tc.skip, lines(tc.want))
			}
			if (skip == SkipNone) != (len(got) > 0) {
				t.Errorf("skip %q with %d deliveries: a message is either sent or skipped", skip, len(got))
			}
		})
	}
}

func lines(ss []string) string {
	if len(ss) == 0 {
		return "  (no requests)"
	}
	out := ""
	for _, s := range ss {
		out += "  " + s + "\n"
	}
	return out
}

// TestRuleCasesCoverEveryRule keeps the table honest: each of the design
// page's rules 1-19 has a case named after it.
func TestRuleCasesCoverEveryRule(t *testing.T) {
	re := regexp.MustCompile(`^rule (\d\d) `)
	seen := map[int]bool{}
	for _, tc := range ruleCases {
		m := re.FindStringSubmatch(tc.name)
		if m == nil {
			t.Errorf("case %q is not named by its rule number", tc.name)
			continue
		}
		n, _ := strconv.Atoi(m[1])
		seen[n] = true
	}
	for n := 1; n <= 19; n++ {
		if !seen[n] {
			t.Errorf("no case for rule %02d", n)
		}
	}
}

func TestSkipReasons(t *testing.T) {
	want := []string{"disabled_by_integrations", "unsupported_type", "missing_user_id",
		"missing_device_id", "missing_device_id_has_anonymous_id", "missing_timestamp", "missing_order_id", "unmapped_event"}
	var got []string
	for _, r := range SkipReasons() {
		got = append(got, r.String())
	}
	if !slices.Equal(got, want) {
		t.Errorf("SkipReasons() = %q, want %q (the design page's priority order)", got, want)
	}
	if SkipNone.String() != "" {
		t.Errorf("SkipNone.String() = %q, want empty", SkipNone.String())
	}
	if got := SkipReason(200).String(); got != "skip(200)" {
		t.Errorf("unknown reason prints %q", got)
	}
	for k, want := range map[Kind]string{KindUser: "user", KindHit: "hit", KindInstall: "install", Kind(9): "kind(9)"} {
		if k.String() != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, k.String(), want)
		}
	}
}

func TestNewMapperMergesAndIgnores(t *testing.T) {
	m, err := NewMapper(Settings{Events: map[string][]string{
		"Signed Up":             {"signup", "lead"},
		"signed_up":             {"lead", "trial"}, // same event once normalised: merged, "lead" once
		"Order Completed":       {"purchase"},      // rule 11
		"completedOrder":        {"purchase"},      // rule 11, the older name
		"APPLICATION_INSTALLED": {"install"},       // rule 15
	}})
	if err != nil {
		t.Fatal(err)
	}
	got, skip := m.Map(nil, track("SignedUp"))
	var typs []string
	for _, d := range got {
		typs = append(typs, string(d.Typ))
	}
	// Keys are merged in sorted order: "Signed Up" < "signed_up".
	if skip != SkipNone || !slices.Equal(typs, []string{"signup", "lead", "trial"}) {
		t.Errorf("merged mapping sent %q (skip %q), want signup, lead, trial", typs, skip)
	}
	wantIgnored := []string{"APPLICATION_INSTALLED", "Order Completed", "completedOrder"}
	if ig := m.IgnoredEvents(); !slices.Equal(ig, wantIgnored) {
		t.Errorf("IgnoredEvents() = %q, want %q", ig, wantIgnored)
	}
}

func TestNewMapperRejectsEmptyNames(t *testing.T) {
	for _, events := range []map[string][]string{
		{"": {"x"}},
		{"__": {"x"}},
		{"Signed Up": {}},
		{"Signed Up": {" "}},
	} {
		if _, err := NewMapper(Settings{Events: events}); !isSettingError(err, "events") {
			t.Errorf("NewMapper(events %q) = %v, want an events SettingError", events, err)
		}
	}
}

// TestMapDoesNotAllocate pins the steady-state promise: mapping and encoding
// into reused buffers allocate nothing.
func TestMapDoesNotAllocate(t *testing.T) {
	s := Settings{ClientName: "acme", SiteID: "42", Events: signupLead, HybridAttributionModel: true}
	m, err := NewMapper(s)
	if err != nil {
		t.Fatal(err)
	}
	w := NewWire(s)
	msgs := []*segment.Message{
		track("Order Completed", order("o-1"), total(49.99), repeat(segment.True), ua("Mozilla/5.0 (X11)"), ip("203.0.113.7")),
		track("signed_up", revenue(3)),
		track("Product Viewed"),
		track("Application Installed"),
		track("Application Installed", messageID("")),
		track("signed_up", messageID(""), revenue(3), ua("Mozilla/5.0 (X11)"), ip("203.0.113.7")),
		identify("user-1"),
		ofType(segment.TypePage),
	}
	ds := make([]Delivery, 0, 8)
	buf := make([]byte, 0, 1024)
	for _, msg := range msgs {
		t.Run(fmt.Sprintf("%s %s", msg.Type, msg.EventText), func(t *testing.T) {
			allocs := testing.AllocsPerRun(100, func() {
				ds, _ = m.Map(ds[:0], msg)
				for i := range ds {
					buf = w.AppendURL(buf[:0], &ds[i])
				}
			})
			if allocs != 0 {
				t.Errorf("%v allocations per message, want 0", allocs)
			}
		})
	}
}

// TestConcurrentUse backs the Concurrency promise of the package doc: one
// Mapper and one Wire serve many goroutines, each with its own buffers. Run
// under -race it fails if either holds mutable state.
func TestConcurrentUse(t *testing.T) {
	s := Settings{ClientName: "acme", SiteID: "42", Events: signupLead, HybridAttributionModel: true}
	m, err := NewMapper(s)
	if err != nil {
		t.Fatal(err)
	}
	w := NewWire(s)
	msgs := []*segment.Message{
		track("Order Completed", order("o-1"), total(49.99), repeat(segment.False), ua("UA 1")),
		track("signed_up", revenue(2)),
		identify("user-1", ip("10.0.0.1")),
		track("Application Installed"),
	}
	render := func(ds []Delivery, buf []byte) string {
		out := ""
		for i := range ds {
			buf = w.AppendURL(buf[:0], &ds[i])
			out += string(buf) + "\n"
		}
		return out
	}
	want := make([]string, len(msgs))
	for i, msg := range msgs {
		ds, _ := m.Map(nil, msg)
		want[i] = render(ds, nil)
	}
	done := make(chan error)
	for g := 0; g < 4; g++ {
		go func() {
			ds := make([]Delivery, 0, 4)
			buf := make([]byte, 0, 256)
			for n := 0; n < 200; n++ {
				i := (n + g) % len(msgs)
				ds, _ = m.Map(ds[:0], msgs[i])
				if got := render(ds, buf); got != want[i] {
					done <- fmt.Errorf("goroutine %d: got\n%swant\n%s", g, got, want[i])
					return
				}
			}
			done <- nil
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func TestValidateAudience(t *testing.T) {
	for name, wantErr := range map[string]bool{
		"Order Completed Last 30 Days": false,
		"order_completed_last_30days":  false,
		"VIP":                          false,
		"":                             true,
		"!!!":                          true,
		"ID":                           true,
		"Sid":                          true,
		"ts":                           true,
	} {
		err := ValidateAudience(name)
		if (err != nil) != wantErr {
			t.Errorf("ValidateAudience(%q) = %v, want error: %v", name, err, wantErr)
		}
		if err != nil && !isSettingError(err, "audience") {
			t.Errorf("ValidateAudience(%q) = %v, want an audience SettingError", name, err)
		}
	}
}

// A backfill maps each decoded row and writes each delivery's URL into a
// buffer it reuses.
func ExampleMapper_Map() {
	s := Settings{Account: "acme", ClientName: "acme", SiteID: "42", HybridAttributionModel: true}
	m, err := NewMapper(s)
	if err != nil {
		panic(err)
	}
	w := NewWire(s)
	msg := &segment.Message{
		Type:      segment.TypeTrack,
		MessageID: []byte("msg-1"),
		DeviceID:  []byte("dev-1"),
		EventText: []byte("Order Completed"),
		OrderID:   []byte("o-1"),
		Total:     segment.Num(49.99),
		Repeat:    segment.False,
		Timestamp: segment.At(1704164645678000), // 2024-01-02T03:04:05.678Z
	}
	var ds []Delivery
	var buf []byte
	ds, skip := m.Map(ds[:0], msg)
	for i := range ds {
		buf = w.AppendURL(buf[:0], &ds[i])
		fmt.Println(string(buf))
	}
	fmt.Printf("skip: %q\n", skip)

	msg.OrderID = nil
	_, skip = m.Map(ds[:0], msg)
	fmt.Printf("without orderId, skip: %q\n", skip)
	// Output:
	// https://sp1.convertro.com/api/hit/acme/42/?sid=dev-1&typ=sale.new&val=49.99&eid=o-1&ts=1704164645
	// https://sp1.convertro.com/api/hit/acme/42/?sid=dev-1&typ=sale&val=49.99&eid=o-1&ts=1704164645
	// skip: ""
	// without orderId, skip: "missing_order_id"
}

// TestDerivedEventID: a hit or install without messageId gets an eid that
// is the same for the same row whenever it is mapped (a rerun decodes it
// into other buffers), and differs as soon as any value that says what
// happened, to whom or when differs.
func TestDerivedEventID(t *testing.T) {
	m, err := NewMapper(Settings{ClientName: "acme", SiteID: "42"})
	if err != nil {
		t.Fatal(err)
	}
	w := NewWire(Settings{ClientName: "acme", SiteID: "42"})
	eid := func(msg *segment.Message) string {
		t.Helper()
		ds, skip := m.Map(nil, msg)
		if skip != SkipNone || len(ds) == 0 {
			t.Fatalf("skip %q", skip)
		}
		u, err := url.Parse(string(w.AppendURL(nil, &ds[0])))
		if err != nil {
			t.Fatal(err)
		}
		return u.Query().Get(ParamEID)
	}
	row := func(opts ...opt) *segment.Message {
		base := []opt{messageID(""), userID("u-1"), func(m *segment.Message) { m.AnonymousID = []byte("a-1") },
			revenue(5), ua("UA"), ip("10.0.0.1"), sentAt(tsMicros + 1), receivedAt(tsMicros + 2)}
		return track("Signed Up", append(base, opts...)...)
	}
	first := eid(row())
	if !regexp.MustCompile(`^row-[0-9a-f]{32}$`).MatchString(first) {
		t.Fatalf("derived eid %q, want row- and 32 hex digits", first)
	}
	if again := eid(row()); again != first {
		t.Errorf("the same row mapped again: eid %q, then %q", first, again)
	}

	same := map[string]opt{
		"the Integrations object":                                  integrations(segment.True, segment.True),
		"revenue 5 as a DECIMAL 5.00 (a column that changed type)": revenueDecimal("5.00"),
		"revenue 5 as a FLOAT": func(m *segment.Message) {
			m.Revenue = segment.Number{Value: 5, Valid: true, Float32: true}
		},
	}
	for name, o := range same {
		if got := eid(row(o)); got != first {
			t.Errorf("%s changed the eid: %q, want %q", name, got, first)
		}
	}
	differ := map[string]opt{
		"userId":             userID("u-2"),
		"anonymousId":        func(m *segment.Message) { m.AnonymousID = []byte("a-2") },
		"no anonymousId":     func(m *segment.Message) { m.AnonymousID = nil },
		"device id":          func(m *segment.Message) { m.DeviceID = []byte("dev-2") },
		"event name":         func(m *segment.Message) { m.EventText = []byte("Signed Up ") },
		"event slug":         slug("signed_up"),
		"orderId":            order("o-1"),
		"total":              total(5),
		"revenue":            revenue(6),
		"no revenue":         func(m *segment.Message) { m.Revenue = segment.Number{} },
		"repeat":             repeat(segment.False),
		"timestamp by 1 µs":  timestamp(tsMicros + 1),
		"original_timestamp": originalTS(tsMicros),
		"sent_at":            sentAt(tsMicros),
		"received_at":        receivedAt(tsMicros),
		"user agent":         ua("UA2"),
		"ip":                 ip("10.0.0.2"),
		// Values moved between fields are other rows, not the same bytes.
		"userId and anonymousId swapped": func(m *segment.Message) { m.UserID, m.AnonymousID = m.AnonymousID, m.UserID },
	}
	seen := map[string]string{first: "the row"}
	for name, o := range differ {
		got := eid(row(o))
		if other, dup := seen[got]; dup {
			t.Errorf("%s: eid %q, the same as %s", name, got, other)
		}
		seen[got] = name
	}
	if got := eid(row(messageID("m-1"))); got != "m-1" {
		t.Errorf("a row with messageId m-1 sent eid %q", got)
	}
}
