package convertro

import (
	"unicode"
	"unicode/utf8"
)

// Event names are matched after normalisation (design page, "Rules"): lower
// case, camelCase split into words, '_', '-', '.' and runs of white space
// folded to one space, trimmed. So "Order Completed", "order_completed",
// "OrderCompleted" and "ORDER COMPLETED" are one name: warehouses keep the
// name as sent (event_text) next to a slug (event), and operators type either.
//
// Audience names (rule 18) are cut into words the same way, except that every
// character that is neither a letter nor a digit separates words, because the
// result is a property key.

// The normalised names that the rules treat specially (rules 4-11 and 15).
const (
	nameOrderCompleted       = "order completed"
	nameCompletedOrder       = "completed order" // the older v1 spec name; the seed's setting table uses it
	nameApplicationInstalled = "application installed"
)

// runeClass says what a rune is for the word splitter.
type runeClass uint8

const (
	classSep   runeClass = iota // separator (and the state before the first word)
	classLower                  // lower-case letter, or a letter without case
	classUpper
	classDigit
	classOther // kept as is, never splits (event names only)
)

// asciiClass caches classify for ASCII, [0] loose and [1] strict: event
// names are nearly always ASCII, and the mapping normalises one per row.
var asciiClass = func() (t [2][utf8.RuneSelf]runeClass) {
	for c := rune(0); c < utf8.RuneSelf; c++ {
		t[0][c], t[1][c] = classify(c, false), classify(c, true)
	}
	return t
}()

// nextRune decodes and classifies the non-ASCII rune at the start of b.
// Bytes that are not UTF-8 are classOther, kept byte for byte so that
// distinct names stay distinct.
func nextRune(b []byte, strict bool) (rune, int, runeClass) {
	r, size := utf8.DecodeRune(b)
	if r == utf8.RuneError && size == 1 {
		return r, size, classOther
	}
	return r, size, classify(r, strict)
}

// classify puts r in its class. With strict set (event names) only white
// space, '_', '-' and '.' separate words; otherwise (audience keys) every rune
// that is not a letter or digit does.
func classify(r rune, strict bool) runeClass {
	if r < utf8.RuneSelf {
		switch {
		case 'a' <= r && r <= 'z':
			return classLower
		case 'A' <= r && r <= 'Z':
			return classUpper
		case '0' <= r && r <= '9':
			return classDigit
		case r == ' ', r == '\t', r == '\n', r == '\r', r == '\v', r == '\f', r == '_', r == '-', r == '.':
			return classSep
		}
		if strict {
			return classOther
		}
		return classSep
	}
	switch {
	case unicode.IsUpper(r) && unicode.ToLower(r) != r:
		return classUpper
	case unicode.IsLetter(r):
		// An upper-case letter with no lower-case form (ϓ, ϒ) stays as
		// it is in the normal form; counted upper, it would start a word
		// there that the input did not ("Aϓ" → "aϓ" → "a ϓ"), and the
		// normal form would not be its own.
		return classLower
	case unicode.IsDigit(r):
		return classDigit
	case unicode.IsSpace(r):
		return classSep
	}
	if strict {
		return classOther
	}
	return classSep
}

// appendWords appends name to dst as lower-case words joined by sep.
//
// A word boundary falls at every run of separators, and inside camelCase
// before an upper-case letter that follows a lower-case letter or a digit
// ("orderCompleted", "Last30Days") or that starts a capitalised word after an
// acronym ("HTMLParser" is "html parser"). Digits do not split off the word
// they follow ("Last30" stays one word), as the design page's
// orderCompletedLast30Days → order_completed_last30_days requires.
//
// It allocates only when dst is too small, so callers pass a stack buffer.
func appendWords(dst, name []byte, sep byte, strict bool) []byte {
	mode := 0
	if strict {
		mode = 1
	}
	start := len(dst)
	prev := classSep
	pending := false // a boundary was seen since the last written rune
	for i := 0; i < len(name); {
		r, size, c := rune(name[i]), 1, asciiClass[mode][name[i]&0x7f] // ASCII inline: names nearly always are
		if r >= utf8.RuneSelf {
			r, size, c = nextRune(name[i:], strict)
		}
		switch c {
		case classSep:
			pending = true
			prev = classSep
			i += size
			continue
		case classUpper:
			switch prev {
			case classLower, classDigit:
				pending = true
			case classUpper:
				if j := i + size; j < len(name) {
					nc := asciiClass[mode][name[j]&0x7f]
					if name[j] >= utf8.RuneSelf {
						_, _, nc = nextRune(name[j:], strict)
					}
					if nc == classLower {
						pending = true
					}
				}
			}
		}
		if pending && len(dst) > start {
			dst = append(dst, sep)
		}
		pending = false
		switch {
		case size == 1 && c == classUpper:
			dst = append(dst, byte(r)+'a'-'A')
		case size == 1:
			dst = append(dst, name[i]) // ASCII, or a byte that is not UTF-8
		default:
			dst = utf8.AppendRune(dst, unicode.ToLower(r))
		}
		prev = c
		i += size
	}
	return dst
}

// appendNormalized appends the normalised event name (words joined by one
// space) to dst.
func appendNormalized(dst, name []byte) []byte {
	return appendWords(dst, name, ' ', true)
}

// NormalizeEventName returns the form under which event names are compared:
// lower case, camelCase split into words, '_', '-', '.' and runs of white
// space folded to one space, trimmed ("OrderCompleted" → "order completed").
func NormalizeEventName(name string) string {
	var buf [128]byte
	return string(appendNormalized(buf[:0], []byte(name)))
}

// SnakeCase turns an Engage audience name into its property key (rule 18):
// the words of the name (split as for event names, with every character that
// is not a letter or digit separating words), lower case, joined by '_'.
//
//	"Order Completed Last 30 Days" → "order_completed_last_30_days"
//	"orderCompletedLast30Days"     → "order_completed_last30_days"
//	"order_completed_last_30days"  → "order_completed_last_30days" (kept)
//
// A key that is already snake_case is returned as it is, without allocating.
func SnakeCase(audienceName string) string {
	if isSnakeCase(audienceName) {
		return audienceName
	}
	var buf [128]byte
	return string(appendWords(buf[:0], []byte(audienceName), '_', false))
}

// isSnakeCase reports whether s is a non-empty run of [a-z0-9] words joined
// by single underscores.
func isSnakeCase(s string) bool {
	if s == "" || s[0] == '_' || s[len(s)-1] == '_' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case c == '_' && s[i-1] != '_':
		default:
			return false
		}
	}
	return true
}
