package writers

import (
	"bufio"
	"fmt"
	"io"
	"unicode/utf8"
)

// DryRun writes the requests a run would send, one JSON line each:
// {"method":"GET","url":"…"}. Lines are buffered: call Flush before the
// underlying writer is closed or read.
//
// A DryRun is not safe for concurrent use: the pipeline hands it requests in
// their final order from one goroutine, and a lock here would only hide a
// second writer whose lines would interleave unpredictably.
type DryRun struct {
	w    *bufio.Writer
	line []byte // scratch, reused for every line
	err  error  // first write error, returned by every later call
}

// NewDryRun returns a DryRun writing to w.
func NewDryRun(w io.Writer) *DryRun {
	return &DryRun{w: bufio.NewWriterSize(w, 64<<10)}
}

// Write appends one line for a GET of url (see AppendDryRunLine). It does
// not allocate once its scratch buffer has grown to the longest URL.
func (d *DryRun) Write(url []byte) error {
	if d.err != nil {
		return d.err
	}
	d.line = AppendDryRunLine(d.line[:0], url)
	if _, err := d.w.Write(d.line); err != nil {
		d.err = fmt.Errorf("write dry-run line: %w", err)
		return d.err
	}
	return nil
}

// Flush writes buffered lines to the underlying writer.
func (d *DryRun) Flush() error {
	if d.err != nil {
		return d.err
	}
	if err := d.w.Flush(); err != nil {
		d.err = fmt.Errorf("flush dry-run output: %w", err)
		return d.err
	}
	return nil
}

// AppendDryRunLine appends one line of a dry run's output,
// {"method":"GET","url":"…"} and a newline, to dst. The URL is escaped
// exactly as encoding/json escapes a string with HTML escaping off ('&', '<'
// and '>' stay as they are, so the lines remain readable): quotes,
// backslashes and control characters are escaped, U+2028 and U+2029 too, and
// invalid UTF-8 becomes U+FFFD. It allocates nothing once dst has room: dry
// runs write millions of lines.
func AppendDryRunLine(dst, url []byte) []byte {
	dst = append(dst, `{"method":"GET","url":"`...)
	dst = appendJSONString(dst, url)
	return append(dst, "\"}\n"...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends the JSON string body of s (without quotes). Runs
// of bytes that need no escaping are copied at once; URLs from the wire
// encoder are plain ASCII, so this is usually a single copy.
func appendJSONString(dst, s []byte) []byte {
	start := 0
	for i := 0; i < len(s); {
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
