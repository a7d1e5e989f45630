package readers

import (
	"strconv"

	"github.com/convertro-etl/convertro-etl/internal/segment"
)

// Text coercions. Warehouses turn numbers, booleans and timestamps into text
// when someone alters a column, so every typed field can also come from a
// string column. These functions run once per value on the hot path: they
// never allocate and never use the time package.

// ParseNumber reads a lenient decimal number: surrounding ASCII space, an
// optional sign, a leading `$` and thousands commas are allowed ("27.50",
// " $1,299.50 ", "-$5"). Anything else — "NA", "", "NaN", "Inf", hex — is not
// a number and reports false.
func ParseNumber(b []byte) (float64, bool) {
	var buf [64]byte
	_, _, v, ok := parseNumber(b, &buf)
	return v, ok
}

// parseNumber is ParseNumber, also returning the number as written without
// its space, `$`, `+` and commas (in buf: "-1299.50" for " -$1,299.50 "),
// and whether it has an exponent. Without one that text is the number's
// exact decimal, which a float64 may not hold.
func parseNumber(b []byte, buf *[64]byte) (clean []byte, exp bool, v float64, ok bool) {
	b = trimSpace(b)
	n := 0
	i := 0
	// One sign, before the `$` or after it ("-$5", "$-5"): "+$-5" and
	// "+$+0" are not numbers.
	neg, signed := false, false
	if i < len(b) && (b[i] == '-' || b[i] == '+') {
		neg, signed = b[i] == '-', true
		i++
	}
	if i < len(b) && b[i] == '$' {
		i++
		if !signed && i < len(b) && (b[i] == '-' || b[i] == '+') {
			neg = b[i] == '-'
			i++
		}
	}
	if neg {
		buf[n] = '-'
		n++
	}
	digits, intDigits := 0, 0
	seenDot, seenExp := false, false
	for ; i < len(b); i++ {
		c := b[i]
		switch {
		case '0' <= c && c <= '9':
			digits++
			if !seenDot && !seenExp {
				intDigits++
			}
		case c == ',':
			// Thousands separators only: between digits of the integer part.
			if seenDot || seenExp || intDigits == 0 || i+1 >= len(b) || b[i+1] < '0' || b[i+1] > '9' {
				return nil, false, 0, false
			}
			continue
		case c == '.':
			if seenDot || seenExp {
				return nil, false, 0, false
			}
			seenDot = true
		case c == 'e' || c == 'E':
			if seenExp || digits == 0 {
				return nil, false, 0, false
			}
			seenExp = true
			if i+1 < len(b) && (b[i+1] == '-' || b[i+1] == '+') {
				if n >= len(buf)-1 {
					return nil, false, 0, false
				}
				buf[n] = c
				n++
				i++
				c = b[i]
			}
			digits = 0 // the exponent needs digits of its own
		default:
			return nil, false, 0, false
		}
		if n >= len(buf) {
			return nil, false, 0, false
		}
		buf[n] = c
		n++
	}
	if digits == 0 {
		return nil, false, 0, false
	}
	v, err := strconv.ParseFloat(string(buf[:n]), 64)
	if err != nil { // out of range
		return nil, false, 0, false
	}
	return buf[:n], seenExp, v, true
}

// ParseBool reads a boolean written as text: exactly "true" or "false" in any
// case. Anything else, surrounding space included, is segment.Absent, as the
// wire rules demand for `repeat`.
func ParseBool(b []byte) segment.Bool {
	switch len(b) {
	case 4:
		if lower(b[0]) == 't' && lower(b[1]) == 'r' && lower(b[2]) == 'u' && lower(b[3]) == 'e' {
			return segment.True
		}
	case 5:
		if lower(b[0]) == 'f' && lower(b[1]) == 'a' && lower(b[2]) == 'l' && lower(b[3]) == 's' && lower(b[4]) == 'e' {
			return segment.False
		}
	}
	return segment.Absent
}

// Range of instants a segment.Time may hold: years 1 to 9999.
const (
	minMicros = -62135596800 * 1e6
	maxMicros = 253402300800*1e6 - 1
)

// ParseTimestamp reads the ISO-8601 forms seen in exports and returns
// microseconds since the Unix epoch, UTC:
//
//	2020-02-11T04:56:55.175Z
//	2020-02-11 04:56:55.175116
//	2019-09-26T06:30:12.984+0530   (also +05:30, +05, -0800)
//	2019-09-26
//	2020-02-11 04:56:55.175116 UTC
//
// A time without a zone is UTC. Seconds are optional, fractions beyond
// microseconds are truncated. Surrounding space is allowed.
func ParseTimestamp(b []byte) (micros int64, ok bool) {
	b = trimSpace(b)
	if len(b) < 10 || b[4] != '-' || b[7] != '-' {
		return 0, false
	}
	year, ok1 := digitsN(b[0:4])
	month, ok2 := digitsN(b[5:7])
	day, ok3 := digitsN(b[8:10])
	if !ok1 || !ok2 || !ok3 || year < 1 || month < 1 || month > 12 || day < 1 || day > daysIn(year, month) {
		return 0, false
	}
	var hour, minute, sec, frac int64
	b = b[10:]
	if len(b) > 0 {
		if b[0] != 'T' && b[0] != 't' && b[0] != ' ' || len(b) < 6 || b[3] != ':' {
			return 0, false
		}
		var okh, okm bool
		hour, okh = digitsN(b[1:3])
		minute, okm = digitsN(b[4:6])
		if !okh || !okm || hour > 23 || minute > 59 {
			return 0, false
		}
		b = b[6:]
		if len(b) > 0 && b[0] == ':' {
			if len(b) < 3 {
				return 0, false
			}
			var oks bool
			sec, oks = digitsN(b[1:3])
			if !oks || sec > 60 { // 60: a leap second, folded into the next minute
				return 0, false
			}
			b = b[3:]
			if len(b) > 0 && (b[0] == '.' || b[0] == ',') {
				i := 1
				scale := int64(100000)
				for ; i < len(b) && '0' <= b[i] && b[i] <= '9'; i++ {
					frac += int64(b[i]-'0') * scale
					scale /= 10
				}
				if i == 1 {
					return 0, false
				}
				b = b[i:]
			}
		}
	}
	var offset int64 // seconds east of UTC
	if len(b) > 0 {
		switch {
		case len(b) == 1 && (b[0] == 'Z' || b[0] == 'z'):
		case len(b) == 4 && b[0] == ' ' && lower(b[1]) == 'u' && lower(b[2]) == 't' && lower(b[3]) == 'c':
		case b[0] == '+' || b[0] == '-':
			var oh, om int64
			var okh, okm bool
			switch len(b) {
			case 3: // +05
				oh, okh = digitsN(b[1:3])
				okm = true
			case 5: // +0530
				oh, okh = digitsN(b[1:3])
				om, okm = digitsN(b[3:5])
			case 6: // +05:30
				if b[3] != ':' {
					return 0, false
				}
				oh, okh = digitsN(b[1:3])
				om, okm = digitsN(b[4:6])
			}
			if !okh || !okm || oh > 23 || om > 59 {
				return 0, false
			}
			offset = oh*3600 + om*60
			if b[0] == '-' {
				offset = -offset
			}
		default:
			return 0, false
		}
	}
	secs := daysFromCivil(year, month, day)*86400 + hour*3600 + minute*60 + sec - offset
	micros = secs*1e6 + frac
	if micros < minMicros || micros > maxMicros {
		return 0, false
	}
	return micros, true
}

func digitsN(b []byte) (int64, bool) {
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}

func daysIn(year, month int64) int64 {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil counts days from 1970-01-01 to the proleptic Gregorian date
// (Howard Hinnant's algorithm), without the time package's allocations.
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// parseTypeBytes is segment.ParseType for a value in a decoder buffer,
// without converting it to a string.
func parseTypeBytes(b []byte) segment.Type {
	switch len(b) {
	case 4:
		if equalFoldASCII(b, "page") {
			return segment.TypePage
		}
	case 5:
		switch {
		case equalFoldASCII(b, "track"):
			return segment.TypeTrack
		case equalFoldASCII(b, "group"):
			return segment.TypeGroup
		case equalFoldASCII(b, "alias"):
			return segment.TypeAlias
		}
	case 6:
		if equalFoldASCII(b, "screen") {
			return segment.TypeScreen
		}
	case 8:
		if equalFoldASCII(b, "identify") {
			return segment.TypeIdentify
		}
	}
	return segment.TypeUnknown
}

// equalFoldASCII compares b with the lower-case ASCII string s, ignoring case.
func equalFoldASCII(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if lower(b[i]) != s[i] {
			return false
		}
	}
	return true
}
