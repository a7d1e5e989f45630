package writers

import "unicode/utf8"

// AppendDryRunLine appends one line of a dry run's output,
// {"method":"GET","url":"…"} and a newline, with the URL escaped as a JSON
// string (encoding/json's rules without its HTML escaping, so & stays &).
// It allocates nothing once dst has room: dry runs write millions of lines.
func AppendDryRunLine(dst, url []byte) []byte {
	dst = append(dst, `{"method":"GET","url":`...)
	dst = appendJSONString(dst, url)
	return append(dst, "}\n"...)
}

const hexDigits = "0123456789abcdef"

func appendJSONString(dst, s []byte) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20 || c == 0x7f:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, `\ufffd`...) // invalid UTF-8 cannot appear in JSON text
		case r == '\u2028' || r == '\u2029':
			// Valid JSON, but line terminators for JavaScript readers.
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}
