package writers

import (
	"encoding/binary"
	"slices"
	"unicode/utf8"
)

// AppendDryRunLine appends one line of a dry run's output,
// {"method":"GET","url":"…"} and a newline, to dst. The URL is escaped
// exactly as encoding/json escapes a string with HTML escaping off ('&', '<'
// and '>' stay as they are, so the lines remain readable): quotes,
// backslashes and control characters are escaped, U+2028 and U+2029 too, and
// invalid UTF-8 becomes U+FFFD. It allocates nothing once dst has room: dry
// runs write millions of lines.
func AppendDryRunLine(dst, url []byte) []byte {
	// One growth for the whole line when the URL needs no escaping (the
	// usual case), instead of one per append.
	dst = slices.Grow(dst, len(linePrefix)+len(url)+len(lineSuffix))
	dst = append(dst, linePrefix...)
	dst = appendJSONString(dst, url)
	return append(dst, lineSuffix...)
}

const linePrefix, lineSuffix = `{"method":"GET","url":"`, "\"}\n"

// AppendPlainDryRunLine is AppendDryRunLine for a URL known to hold only
// bytes that JSON copies as they are (see JSONPlain): it copies the URL
// without looking at it. A URL from the wire encoder is one when its base
// URL is: the rest is path- and query-escaped ASCII, which never needs a
// JSON escape, so a dry run need not scan each of millions of URLs again.
func AppendPlainDryRunLine(dst, url []byte) []byte {
	dst = slices.Grow(dst, len(linePrefix)+len(url)+len(lineSuffix))
	dst = append(dst, linePrefix...)
	dst = append(dst, url...)
	return append(dst, lineSuffix...)
}

// JSONPlain reports whether s holds only bytes a JSON string copies as they
// are: ASCII from 0x20 up, but '"' and '\\'.
func JSONPlain(s string) bool { return plainPrefix([]byte(s)) == len(s) }

const hexDigits = "0123456789abcdef"

// appendJSONString appends the JSON string body of s (without quotes). Runs
// of bytes that need no escaping are copied at once; URLs from the wire
// encoder are query-escaped ASCII, so this is usually a single copy after
// one fast scan.
func appendJSONString(dst, s []byte) []byte {
	i := plainPrefix(s)
	if i == len(s) {
		return append(dst, s...)
	}
	start := 0
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...) // invalid UTF-8 cannot appear in JSON text
			start = i + size
		case r == '\u2028' || r == '\u2029':
			// Valid JSON, but line terminators for JavaScript readers.
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			start = i + size
		}
		i += size
	}
	return append(dst, s[start:]...)
}

// Broadcast bytes for the word-at-a-time scan of plainPrefix.
const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// plainPrefix returns the length of the longest prefix of s that
// appendJSONString copies as it is: ASCII from 0x20 up, but '"' and '\\'.
// It tests eight bytes at a time, as this scan is the whole cost of a
// dry-run line whose URL needs no escaping.
func plainPrefix(s []byte) int {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := binary.LittleEndian.Uint64(s[i:])
		q, b := x^(lsb*'"'), x^(lsb*'\\')
		// A byte's high bit is set in the result iff some byte of x is
		// below 0x20, non-ASCII, '"' or '\\' (borrows may mark more bytes,
		// never a word without one); the byte loop below finds which.
		if ((x-lsb*0x20)&^x|x|(q-lsb)&^q|(b-lsb)&^b)&msb != 0 {
			break
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' {
			break
		}
	}
	return i
}
