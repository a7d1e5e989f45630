package convertro

import (
	"encoding/hex"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/convertro-etl/convertro-etl/internal/segment"
)

// Everything that is wire format lives in this file, behind names, so that
// someone holding Convertro's private API documentation can change a path or
// a parameter name in one line. Sources: convertro code (live.js and a
// tag-manager plugin) for the paths and names, except the install path,
// which is inferred.

// DefaultBaseURL is used when neither Endpoint nor Domain is set.
const DefaultBaseURL = "https://sp1.convertro.com"

// MaxURLBytes is the longest request URL that is ever sent; a longer one (a
// 1 MiB user agent makes a URL of up to 3 MiB) is dead-lettered without
// being sent. Servers refuse such URLs anyway, and not always with an
// answer: over HTTP/1.1 Go's server answers 431 past 1 MiB, but over HTTP/2
// Go's client fails the request itself when it exceeds the header list
// size the server advertises, an error it retries until it gives up, which
// would stop the run on every resume. 16 KiB is far above any real row's
// URL and at or below common front-end limits.
const MaxURLBytes = 16 << 10

// The request paths are "/api/" + kind path + "/" + clientName + "/" + siteId
// + "/", with clientName and siteId path-escaped.
const (
	apiPrefix   = "/api/"
	pathUser    = "user"    // convertro code
	pathHit     = "hit"     // convertro code
	pathInstall = "install" // inferred
)

// The query parameter names.
const (
	ParamSID = "sid" // device id, Convertro's visitor key
	ParamID  = "id"  // userId
	ParamTyp = "typ" // Convertro event name
	ParamVal = "val" // event value
	ParamEID = "eid" // event id; Convertro de-duplicates on it
	ParamTS  = "ts"  // event time, whole Unix seconds
	ParamCUA = "cua" // client user agent
	ParamCIP = "cip" // client IP
	// An Engage user property is its own parameter: {trait}=true|false for
	// an audience (rule 18), {trait}={value} for a computed trait (rule 20).
)

// eidDerivedPrefix starts an event id derived from a row without messageId
// (then 32 lower-case hex digits), so that it is told at a glance from a
// Segment messageId or an orderId, in Convertro as in a dry run's output.
const eidDerivedPrefix = "row-"

// Wire encodes deliveries as Convertro request URLs. Build it once with
// NewWire; it is immutable afterwards.
//
// Parameter order is fixed, so that equal deliveries give byte-equal URLs
// (dry-run output can be diffed, and the dead-letter file replays exactly):
//
//	user:    sid, id, ts [, {trait}] [, cua] [, cip]
//	hit:     sid, typ, val [, eid], ts [, cua] [, cip]
//	install: sid [, eid], ts [, cua] [, cip]
//
// Bracketed parameters are left out when empty. The Mapper gives every hit
// and install an eid: orderId for sales, which rule 10 requires; else the
// messageId; else, for a row whose messageId is NULL, eidDerivedPrefix and
// the 32 hex digits of the id derived from the row's values (eventid.go).
// Only a hand-made Delivery can lack one, and then eid is left out rather
// than sent empty, because Convertro de-duplicates on it and an empty eid
// would fold unrelated events into one.
type Wire struct {
	base   string
	prefix [len(kindNames)]string // base + path + "?" per Kind
}

// NewWire builds the base URL and the three request paths from s: the
// Endpoint override, else https://{Domain} (a scheme and trailing slashes
// stripped), else DefaultBaseURL. It does not validate s (Settings.Validate
// does): in a dry run an empty clientName gives an empty path segment.
func NewWire(s Settings) *Wire {
	base := DefaultBaseURL
	switch {
	case strings.TrimSpace(s.Endpoint) != "":
		base = strings.TrimRight(strings.TrimSpace(s.Endpoint), "/")
	case stripDomain(s.Domain) != "":
		base = "https://" + stripDomain(s.Domain)
	}
	w := &Wire{base: base}
	tail := "/" + url.PathEscape(s.ClientName) + "/" + url.PathEscape(s.SiteID) + "/?"
	for k, p := range [len(kindNames)]string{KindUser: pathUser, KindHit: pathHit, KindInstall: pathInstall} {
		w.prefix[k] = base + apiPrefix + p + tail
	}
	return w
}

// BaseURL is the scheme and host (and any path of the Endpoint override)
// that every request URL starts with, without a trailing slash.
func (w *Wire) BaseURL() string { return w.base }

// AppendURL appends the full request URL of d to dst and returns the
// extended slice. Every query value, and a trait name, is query-escaped
// exactly as url.QueryEscape would. Reuse the result as the next dst
// (buf = w.AppendURL(buf[:0], &d)) and, once it has grown to fit (each value
// asks for room for its worst case, three bytes per byte), it allocates
// nothing. d.Kind must be one of the three kinds; anything else is a
// programming error and panics.
func (w *Wire) AppendURL(dst []byte, d *Delivery) []byte {
	if int(d.Kind) >= len(w.prefix) {
		panic("convertro: AppendURL of unknown " + d.Kind.String())
	}
	dst = append(dst, w.prefix[d.Kind]...)
	dst = appendParam(dst, ParamSID, d.SID, true)
	switch d.Kind {
	case KindUser:
		dst = appendParam(dst, ParamID, d.ID, false)
		dst = appendTS(dst, d.TS)
		if d.Trait != "" {
			dst = append(dst, '&')
			dst = appendEscaped(dst, d.Trait)
			dst = append(dst, '=')
			dst = appendEscaped(dst, d.TraitValue)
		}
	case KindHit:
		dst = appendParam(dst, ParamTyp, d.Typ, false)
		dst = append(dst, "&"+ParamVal+"="...)
		dst = appendEscapedValue(dst, d.Val)
		dst = appendEID(dst, d)
		dst = appendTS(dst, d.TS)
	case KindInstall:
		dst = appendEID(dst, d)
		dst = appendTS(dst, d.TS)
	}
	if len(d.CUA) > 0 {
		dst = appendParam(dst, ParamCUA, d.CUA, false)
	}
	if len(d.CIP) > 0 {
		dst = appendParam(dst, ParamCIP, d.CIP, false)
	}
	return dst
}

// AppendURLCut appends at most n bytes of d's URL to dst: all of it when it
// is n bytes or shorter, else its first n bytes. Its work and memory are
// bounded by n whatever the size of d's values, so that one huge value (a
// 50 MiB user agent) is never escaped whole only to be refused: pass
// MaxURLBytes+1 and a result longer than MaxURLBytes is a URL that must not
// be sent, cut. Like AppendURL it allocates nothing once dst has room.
func (w *Wire) AppendURLCut(dst []byte, d *Delivery, n int) []byte {
	start := len(dst)
	if w.minURLLen(d) > n {
		// Escaping never shrinks a value, so a value cut to n bytes still
		// fills everything past the first n bytes of the URL: the prefix is
		// the same as the whole URL's.
		c := *d
		for _, f := range [...]*[]byte{&c.SID, &c.ID, &c.Typ, &c.EID, &c.CUA, &c.CIP} {
			if len(*f) > n {
				*f = (*f)[:n]
			}
		}
		if len(c.Trait) > n {
			c.Trait = c.Trait[:n]
		}
		if len(c.TraitValue) > n {
			c.TraitValue = c.TraitValue[:n]
		}
		if len(c.Val.Decimal) > n {
			c.Val.Decimal = c.Val.Decimal[:n]
		}
		d = &c
	}
	dst = w.AppendURL(dst, d)
	if len(dst)-start > n {
		dst = dst[:start+n]
	}
	return dst
}

// minURLLen is a lower bound of the length of d's URL: its values as if no
// byte needed escaping.
func (w *Wire) minURLLen(d *Delivery) int {
	if int(d.Kind) >= len(w.prefix) {
		return 0 // AppendURL panics
	}
	return len(w.prefix[d.Kind]) + len(d.SID) + len(d.ID) + len(d.Typ) + len(d.EID) + len(d.CUA) + len(d.CIP) + len(d.Trait) + len(d.TraitValue) + len(d.Val.Decimal)
}

// appendParam appends name=escaped(value), preceded by '&' unless first.
func appendParam(dst []byte, name string, value []byte, first bool) []byte {
	if !first {
		dst = append(dst, '&')
	}
	dst = append(dst, name...)
	dst = append(dst, '=')
	return appendEscaped(dst, value)
}

// appendEID appends &eid= and d's event id, when it has one.
func appendEID(dst []byte, d *Delivery) []byte {
	switch {
	case len(d.EID) > 0:
		return appendParam(dst, ParamEID, d.EID, false)
	case d.hasEIDSum:
		dst = append(dst, "&"+ParamEID+"="+eidDerivedPrefix...)
		return hex.AppendEncode(dst, d.eidSum[:])
	}
	return dst
}

func appendTS(dst []byte, ts int64) []byte {
	dst = append(dst, "&"+ParamTS+"="...)
	return strconv.AppendInt(dst, ts, 10)
}

// AppendValue appends v in its shortest decimal form, never with an exponent:
// 49.99, 1, -5, 1234567.5, 1000000 (not 1e+06, not 49.990000). The decimal
// is the shortest that reads back as the same float64.
func AppendValue(dst []byte, v float64) []byte {
	if v == 0 {
		v = 0 // -0 as "0"
	}
	return strconv.AppendFloat(dst, v, 'f', -1, 64)
}

// AppendNumber appends n in its own shortest decimal form, never with an
// exponent (see segment.Number for where that form comes from):
//
//   - an exact decimal (a DECIMAL column, an INT64 past 2^53, text) as its
//     digits without leading zeros before the point or trailing zeros
//     after it, and no point when nothing follows it: DECIMAL(10,2) 27.50
//     is 27.5, 100.00 is 100, -0.00 is 0, DECIMAL(38,0)
//     12345678901234567890123 is exactly that, never a float64 on the way;
//   - a FLOAT as the shortest decimal that reads back as the same 32-bit
//     value: 49.99, not 49.9900016784668;
//   - anything else as AppendValue writes its float64.
//
// An absent n appends nothing; the Mapper never makes one.
func AppendNumber(dst []byte, n segment.Number) []byte {
	switch {
	case !n.Valid:
		return dst
	case len(n.Decimal) > 0:
		if out, ok := appendDecimal(dst, n.Decimal); ok {
			return out
		}
	case n.Float32:
		v := float64(float32(n.Value))
		if v == 0 {
			v = 0
		}
		return strconv.AppendFloat(dst, v, 'f', -1, 32)
	}
	return AppendValue(dst, n.Value)
}

// appendDecimal appends the decimal text d ("-0027.50", ".5", "5.") in its
// shortest form ("-27.5", "0.5", "5"). It reports false, appending
// nothing, for text that is not an optional '-' then digits with at most
// one '.', so that a malformed Decimal falls back to the float64.
func appendDecimal(dst []byte, d []byte) ([]byte, bool) {
	neg := len(d) > 0 && d[0] == '-'
	if neg {
		d = d[1:]
	}
	intPart, frac := d, []byte(nil)
	for i, c := range d {
		if c == '.' {
			intPart, frac = d[:i], d[i+1:]
			break
		}
	}
	for _, part := range [2][]byte{intPart, frac} {
		for _, c := range part {
			if c < '0' || c > '9' {
				return dst, false
			}
		}
	}
	if len(intPart)+len(frac) == 0 {
		return dst, false
	}
	for len(intPart) > 0 && intPart[0] == '0' {
		intPart = intPart[1:]
	}
	for len(frac) > 0 && frac[len(frac)-1] == '0' {
		frac = frac[:len(frac)-1]
	}
	if len(intPart)+len(frac) == 0 {
		return append(dst, '0'), true // zero, whatever its sign
	}
	if neg {
		dst = append(dst, '-')
	}
	if len(intPart) == 0 {
		dst = append(dst, '0')
	}
	dst = append(dst, intPart...)
	if len(frac) > 0 {
		dst = append(dst, '.')
		dst = append(dst, frac...)
	}
	return dst, true
}

// appendEscapedValue appends AppendNumber(n) query-escaped. The decimal
// form uses only digits, '-' and '.', which need no escaping; only +Inf
// (which the Mapper never produces) starts with a '+' that must not read as
// a space.
func appendEscapedValue(dst []byte, n segment.Number) []byte {
	start := len(dst)
	dst = AppendNumber(dst, n)
	if len(dst) > start && dst[start] == '+' {
		dst = append(dst[:start], "%2B"...)
		dst = append(dst, "Inf"...)
	}
	return dst
}

// escapes holds, for every byte, its query-escaped form as url.QueryEscape
// writes it: up to three bytes in the low 24 bits, their count in the top
// eight. Letters, digits and "-_.~" stand for themselves, space is '+', every
// other byte (reserved, control, non-ASCII) is %XX with upper-case hex.
var escapes = func() (t [256]uint32) {
	const upperHex = "0123456789ABCDEF"
	for c := range t {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '_', c == '.', c == '~':
			t[c] = 1<<24 | uint32(c)
		case c == ' ':
			t[c] = 1<<24 | '+'
		default:
			t[c] = 3<<24 | uint32(upperHex[c&15])<<16 | uint32(upperHex[c>>4])<<8 | '%'
		}
	}
	return t
}()

// appendEscaped appends s query-escaped to dst, byte for byte as
// url.QueryEscape does, without allocating a string. It makes room for the
// worst case once (three bytes per byte), then stores each byte's escape
// straight into it: one byte for a byte that stands for itself (or a
// space's '+'), three for the others. This loop is the hot spot of
// encoding; values are short runs between escapes (a user agent escapes
// every few bytes), which a store per byte writes twice as fast as a copy
// per run (BenchmarkAppendEscaped).
func appendEscaped[T string | []byte](dst []byte, s T) []byte {
	n := len(dst)
	dst = slices.Grow(dst, 3*len(s))[:n+3*len(s)]
	out := dst[n:]
	k := 0
	for i := 0; i < len(s); i++ {
		e := escapes[s[i]]
		if e < 2<<24 { // one byte
			out[k] = byte(e)
			k++
			continue
		}
		w := out[k : k+3 : k+3]
		w[0], w[1], w[2] = byte(e), byte(e>>8), byte(e>>16)
		k += 3
	}
	return dst[:n+k]
}
