package convertro

import (
	"errors"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// ErrInvalidSettings is the kind of every error from Settings.Validate,
// NewMapper and ValidateAudience. The concrete error is a *SettingError (or
// several, joined), which names the setting.
var ErrInvalidSettings = errors.New("invalid Convertro settings")

// SettingError names one missing or malformed setting by its key in Segment's
// catalog (account, clientName, siteId, domain, events) or "endpoint" for the
// base URL override.
type SettingError struct {
	Setting string
	Problem string
}

func (e *SettingError) Error() string {
	return "invalid Convertro setting " + e.Setting + ": " + e.Problem
}

// Unwrap makes errors.Is(err, ErrInvalidSettings) hold.
func (e *SettingError) Unwrap() error { return ErrInvalidSettings }

// Settings are the Convertro destination settings of the seed, under the
// names of Segment's catalog, plus the base URL override.
type Settings struct {
	Account    string // required; validated and reported, not sent by the server API
	ClientName string // path segment of every request; required to deliver
	SiteID     string // path segment of every request; required to deliver
	Domain     string // tracking host, e.g. acme.sp1.convertro.com; "" = sp1.convertro.com

	// Events maps a Segment event name to the Convertro names it is sent as
	// (rule 13). Names match after normalisation, so "Signed Up" and
	// "signed_up" are one key. Empty: every track is sent under its own name
	// (rule 12).
	Events map[string][]string

	// HybridAttributionModel sends "sale" after "sale.new" or "sale.repeat"
	// (rules 7 and 8).
	HybridAttributionModel bool

	// Endpoint overrides the base URL (--endpoint), e.g. http://127.0.0.1:8080
	// for the simulator. It wins over Domain.
	Endpoint string

	// AnonymousIDAsDeviceID sends a message that has no device id but an
	// anonymousId with the anonymousId as sid (--anonymous-id-as-device-id;
	// not a setting of the seed). Web (analytics.js) rows carry no
	// context.device.id, so without it every one of them is skipped
	// (SkipMissingDeviceIDHasAnonymousID). It is off by default because the
	// anonymousId is not the visitor id Convertro's own browser tag sets:
	// events sent under it are not joined to the visits that tag recorded.
	AnonymousIDAsDeviceID bool
}

// AddEvent maps one more Convertro name to a Segment event name, creating the
// map if needed. A pair already present is not added twice.
func (s *Settings) AddEvent(segmentName, convertroName string) {
	if s.Events == nil {
		s.Events = make(map[string][]string)
	}
	if !slices.Contains(s.Events[segmentName], convertroName) {
		s.Events[segmentName] = append(s.Events[segmentName], convertroName)
	}
}

// Validate reports every missing or malformed setting, each as a
// *SettingError wrapping ErrInvalidSettings (joined when there are several).
// With delivery false (a dry run) clientName and siteId may be empty.
//
// account is required; clientName and siteId, when set, must each be one
// safe path segment (not "." or "..", no / \ ? # % or control characters);
// domain, when set, must be a host name (a scheme and a
// trailing slash are tolerated and stripped); endpoint, when set, must be an
// http or https URL without query; event names on both sides must be
// non-empty.
func (s Settings) Validate(delivery bool) error {
	var errs []error
	bad := func(setting, problem string) {
		errs = append(errs, &SettingError{Setting: setting, Problem: problem})
	}
	if strings.TrimSpace(s.Account) == "" {
		bad("account", "required (your Convertro account name)")
	}
	for _, p := range []struct{ key, v string }{{"clientName", s.ClientName}, {"siteId", s.SiteID}} {
		switch {
		case strings.TrimSpace(p.v) == "":
			if delivery {
				bad(p.key, "required to deliver requests (a dry run does not need it)")
			}
		case strings.TrimSpace(p.v) != p.v:
			bad(p.key, "has leading or trailing spaces: "+strconv.Quote(p.v))
		default:
			if problem := checkSegment(p.v); problem != "" {
				bad(p.key, problem)
			}
		}
	}
	if s.Domain != "" {
		if h := stripDomain(s.Domain); !isHost(h) {
			bad("domain", "must be a host name such as acme.sp1.convertro.com, not "+strconv.Quote(RedactURL(s.Domain)))
		}
	}
	if s.Endpoint != "" {
		if err := checkEndpoint(s.Endpoint); err != "" {
			bad("endpoint", err)
		}
	}
	if err := checkEvents(s.Events); err != nil {
		errs = append(errs, err...)
	}
	return errors.Join(errs...)
}

// checkSegment returns what keeps v from being one path segment of every
// request, or "". Escaping alone would not do: ".." and "." are path steps
// (/api/user/../../ leaves the API), and a server or proxy that decodes %2F
// or treats a backslash as a slash would see two segments where we sent one.
func checkSegment(v string) string {
	if v == "." || v == ".." {
		return "must be a single path segment, not " + strconv.Quote(v)
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c < 0x20 || c == 0x7f:
			return "must not hold control characters: " + strconv.Quote(v)
		case strings.IndexByte(`/\?#%`, c) >= 0:
			return "must be a single path segment, without / \\ ? # or %: " + strconv.Quote(v)
		}
	}
	return ""
}

// checkEvents reports empty names in an events map, in a stable order.
func checkEvents(events map[string][]string) []error {
	var errs []error
	for _, k := range sortedKeys(events) {
		if NormalizeEventName(k) == "" {
			errs = append(errs, &SettingError{"events", "empty Segment event name " + strconv.Quote(k)})
			continue
		}
		if len(events[k]) == 0 {
			errs = append(errs, &SettingError{"events", "no Convertro name for " + strconv.Quote(k)})
		}
		for _, v := range events[k] {
			if strings.TrimSpace(v) == "" {
				errs = append(errs, &SettingError{"events", "empty Convertro name for " + strconv.Quote(k)})
				break
			}
		}
	}
	return errs
}

func sortedKeys(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// stripDomain removes an http(s) scheme and trailing slashes: operators paste
// "https://acme.sp1.convertro.com/" as often as the bare host.
func stripDomain(d string) string {
	d = strings.TrimSpace(d)
	for _, scheme := range []string{"https://", "http://"} {
		if len(d) >= len(scheme) && strings.EqualFold(d[:len(scheme)], scheme) {
			d = d[len(scheme):]
			break
		}
	}
	return strings.TrimRight(d, "/")
}

// isHost reports whether h is host[:port] with a DNS name, an IPv4 address or
// a bracketed IPv6 address.
func isHost(h string) bool {
	host, port := h, ""
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
		host, port = h[:i], h[i+1:]
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '+' {
			return false
		}
	}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		ip := net.ParseIP(host[1 : len(host)-1])
		return ip != nil && ip.To4() == nil
	}
	if host == "" || len(host) > 253 {
		return false
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// checkEndpoint returns what is wrong with a base URL override, or "". The
// message shows the URL redacted: a password in it is refused, not printed.
func checkEndpoint(e string) string {
	const want = "must be an http(s) base URL such as http://127.0.0.1:8080, not "
	u, err := url.Parse(e)
	if err == nil && u.User != nil {
		return "must not hold a user name or password (Convertro's API takes none): " + strconv.Quote(RedactURL(e))
	}
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.RawQuery != "" || u.Fragment != "" || !isHost(u.Host) {
		return want + strconv.Quote(RedactURL(e))
	}
	return ""
}

// redactedMark stands for a secret taken out of a URL.
const redactedMark = "xxxxx"

// RedactURL returns raw fit to print: its userinfo is replaced (like
// url.URL.Redacted does for the password, but the user name too, which often
// is a token) and so is every query value, where tokens go.
// Text that does not parse as a URL loses whatever stands before an '@' that
// could be userinfo. Use it wherever an endpoint or a URL from the settings
// or the command line is logged or put in a message.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		rest, scheme := raw, ""
		if i := strings.Index(raw, "://"); i >= 0 {
			scheme, rest = raw[:i+3], raw[i+3:]
		}
		if end := strings.IndexAny(rest, "/?#"); end >= 0 {
			if at := strings.LastIndexByte(rest[:end], '@'); at >= 0 {
				return scheme + redactedMark + rest[at:]
			}
		} else if at := strings.LastIndexByte(rest, '@'); at >= 0 {
			return scheme + redactedMark + rest[at:]
		}
		return raw
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k, vs := range q {
			for i := range vs {
				vs[i] = redactedMark
			}
			q[k] = vs
		}
		u.RawQuery = q.Encode()
	}
	if u.User == nil && u.Opaque != "" && strings.Contains(u.Opaque, "@") {
		// "user:pass@host" without a scheme parses as scheme "user", opaque "pass@host".
		return redactedMark + u.Opaque[strings.LastIndexByte(u.Opaque, '@'):]
	}
	if u.User != nil {
		// The whole userinfo: a token is often passed as the user name.
		u.User = url.User(redactedMark)
	}
	return u.String()
}
