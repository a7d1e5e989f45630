package convertro

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// namedSettings lists the settings an error from Validate names, in order.
func namedSettings(err error) []string {
	var out []string
	var walk func(error)
	walk = func(err error) {
		if se, ok := err.(*SettingError); ok {
			out = append(out, se.Setting)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
		}
	}
	walk(err)
	return out
}

func isSettingError(err error, setting string) bool {
	var se *SettingError
	return errors.Is(err, ErrInvalidSettings) && errors.As(err, &se) && se.Setting == setting
}

func TestValidate(t *testing.T) {
	ok := Settings{Account: "acme", ClientName: "acme", SiteID: "42", Domain: "acme.sp1.convertro.com"}
	with := func(f func(*Settings)) Settings { s := ok; f(&s); return s }
	cases := []struct {
		name     string
		s        Settings
		delivery bool
		want     []string // settings named, in order; nil = valid
	}{
		{name: "complete settings deliver", s: ok, delivery: true},
		{name: "no domain uses the default host", s: with(func(s *Settings) { s.Domain = "" }), delivery: true},
		{name: "dry run needs no clientName or siteId",
			s: Settings{Account: "acme"}},
		{name: "delivery needs clientName and siteId",
			s: Settings{Account: "acme"}, delivery: true, want: []string{"clientName", "siteId"}},
		{name: "blank clientName is missing",
			s: with(func(s *Settings) { s.ClientName = "  " }), delivery: true, want: []string{"clientName"}},
		{name: "siteId with surrounding spaces is malformed, even in a dry run",
			s: with(func(s *Settings) { s.SiteID = " 42" }), want: []string{"siteId"}},
		{name: "account is always required",
			s: with(func(s *Settings) { s.Account = "" }), want: []string{"account"}},
		{name: "every problem is named at once",
			s: Settings{Domain: "not a host", Events: map[string][]string{"Signed Up": {""}}}, delivery: true,
			want: []string{"account", "clientName", "siteId", "domain", "events"}},
		{name: "domain with scheme and trailing slash is a host",
			s: with(func(s *Settings) { s.Domain = "HTTPS://acme.sp1.convertro.com/" })},
		{name: "domain with port", s: with(func(s *Settings) { s.Domain = "localhost:8443" })},
		{name: "domain as IPv6 literal", s: with(func(s *Settings) { s.Domain = "[::1]:8443" })},
		{name: "domain with a path is not a host",
			s: with(func(s *Settings) { s.Domain = "acme.sp1.convertro.com/api" }), want: []string{"domain"}},
		{name: "domain with a query is not a host",
			s: with(func(s *Settings) { s.Domain = "acme.com?x=1" }), want: []string{"domain"}},
		{name: "domain with an empty label",
			s: with(func(s *Settings) { s.Domain = "acme..com" }), want: []string{"domain"}},
		{name: "domain with a bad port",
			s: with(func(s *Settings) { s.Domain = "acme.com:99999" }), want: []string{"domain"}},
		{name: "domain with credentials",
			s: with(func(s *Settings) { s.Domain = "user@acme.com" }), want: []string{"domain"}},
		{name: "endpoint http URL", s: with(func(s *Settings) { s.Endpoint = "http://127.0.0.1:8080" })},
		{name: "endpoint without scheme",
			s: with(func(s *Settings) { s.Endpoint = "127.0.0.1:8080" }), want: []string{"endpoint"}},
		{name: "endpoint with another scheme",
			s: with(func(s *Settings) { s.Endpoint = "ftp://example.com" }), want: []string{"endpoint"}},
		{name: "endpoint with a query",
			s: with(func(s *Settings) { s.Endpoint = "https://example.com/?a=b" }), want: []string{"endpoint"}},
		{name: "clientName of two dots would climb out of the API path",
			s: with(func(s *Settings) { s.ClientName = ".." }), delivery: true, want: []string{"clientName"}},
		{name: "siteId of one dot", s: with(func(s *Settings) { s.SiteID = "." }), want: []string{"siteId"}},
		{name: "clientName with a slash", s: with(func(s *Settings) { s.ClientName = "acme/../x" }), want: []string{"clientName"}},
		{name: "clientName with a backslash", s: with(func(s *Settings) { s.ClientName = `acme\x` }), want: []string{"clientName"}},
		{name: "siteId with a question mark", s: with(func(s *Settings) { s.SiteID = "42?x=1" }), want: []string{"siteId"}},
		{name: "siteId with a hash", s: with(func(s *Settings) { s.SiteID = "42#x" }), want: []string{"siteId"}},
		{name: "clientName with a percent sign", s: with(func(s *Settings) { s.ClientName = "acme%2F" }), want: []string{"clientName"}},
		{name: "clientName with a control character", s: with(func(s *Settings) { s.ClientName = "ac\x00me" }), want: []string{"clientName"}},
		{name: "siteId with a newline inside", s: with(func(s *Settings) { s.SiteID = "4\n2" }), want: []string{"siteId"}},
		{name: "both path settings bad at once",
			s: with(func(s *Settings) { s.ClientName, s.SiteID = "..", "a/b" }), want: []string{"clientName", "siteId"}},
		{name: "dots inside a name are fine", s: with(func(s *Settings) { s.ClientName, s.SiteID = "acme.eu", "..42" })},
		{name: "events with names on both sides",
			s: with(func(s *Settings) { s.Events = map[string][]string{"Signed Up": {"signup", "lead"}} })},
		{name: "events with an empty Segment name",
			s: with(func(s *Settings) { s.Events = map[string][]string{" - ": {"signup"}} }), want: []string{"events"}},
		{name: "events with no Convertro name",
			s: with(func(s *Settings) { s.Events = map[string][]string{"Signed Up": nil} }), want: []string{"events"}},
		{name: "events with a blank Convertro name",
			s: with(func(s *Settings) { s.Events = map[string][]string{"Signed Up": {"signup", " "}} }), want: []string{"events"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.Validate(tc.delivery)
			if got := namedSettings(err); !slices.Equal(got, tc.want) {
				t.Fatalf("Validate(%v) = %v\nnames %q, want %q", tc.delivery, err, got, tc.want)
			}
			if err == nil {
				return
			}
			if !errors.Is(err, ErrInvalidSettings) {
				t.Errorf("error %v does not wrap ErrInvalidSettings", err)
			}
			for _, name := range tc.want {
				if !strings.Contains(err.Error(), "setting "+name+":") {
					t.Errorf("message %q does not name %s", err, name)
				}
			}
		})
	}
}

func TestAddEvent(t *testing.T) {
	var s Settings
	s.AddEvent("Signed Up", "signup")
	s.AddEvent("Signed Up", "lead")
	s.AddEvent("Signed Up", "signup")
	if got := s.Events["Signed Up"]; !slices.Equal(got, []string{"signup", "lead"}) {
		t.Errorf("Events[Signed Up] = %q, want signup, lead", got)
	}
}

func TestNormalizeEventName(t *testing.T) {
	cases := map[string]string{
		"Order Completed":          "order completed",
		"order_completed":          "order completed",
		"OrderCompleted":           "order completed",
		"ORDER COMPLETED":          "order completed",
		"orderCompleted":           "order completed",
		"  Order   Completed  ":    "order completed",
		"order-completed":          "order completed",
		"order.completed":          "order completed",
		"Order\tCompleted":         "order completed",
		"__order__completed__":     "order completed",
		"Completed Order":          "completed order",
		"Application Installed":    "application installed",
		"HTMLFormSubmitted":        "html form submitted",
		"OrderID Added":            "order id added",
		"orderCompletedLast30Days": "order completed last30 days",
		"Step 2 Done":              "step 2 done",
		"Café Visité":              "café visité",
		"ÉTÉ Sale":                 "été sale",
		"Sign Up!":                 "sign up!", // other punctuation is part of the name
		"a/b":                      "a/b",
		"":                         "",
		" _-. ":                    "",
		"\xff\xfeBad":              "\xff\xfebad", // not UTF-8: kept byte for byte
	}
	for in, want := range cases {
		if got := NormalizeEventName(in); got != want {
			t.Errorf("NormalizeEventName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSnakeCase(t *testing.T) {
	cases := map[string]string{
		"Order Completed Last 30 Days": "order_completed_last_30_days",
		"orderCompletedLast30Days":     "order_completed_last30_days",
		"order_completed_last_30days":  "order_completed_last_30days", // the seed's key, kept
		"Order Completed Last 30days":  "order_completed_last_30days", // a name that gives the seed's key
		"VIP Customers":                "vip_customers",
		"High-Value: Repeat (EU)":      "high_value_repeat_eu",
		"  spaced  out  ":              "spaced_out",
		"Käufer Letzte 30 Tage":        "käufer_letzte_30_tage",
		"a__b":                         "a_b",
		"":                             "",
	}
	for in, want := range cases {
		if got := SnakeCase(in); got != want {
			t.Errorf("SnakeCase(%q) = %q, want %q", in, got, want)
		}
	}
	if n := testing.AllocsPerRun(10, func() { _ = SnakeCase("order_completed_last_30_days") }); n != 0 {
		t.Errorf("SnakeCase of a snake_case key allocates %v times, want 0", n)
	}
}

// FuzzNormalizeEventName checks the properties matching relies on: the
// normal form is a fixed point, has no stray spaces, and does not depend on
// the spelling style (snake_case, kebab-case, upper case) of its words.
func FuzzNormalizeEventName(f *testing.F) {
	for _, s := range []string{"Order Completed", "orderCompletedLast30Days", "HTMLParser", " _a-b.c_ ", "Café", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := NormalizeEventName(s)
		if again := NormalizeEventName(n); again != n {
			t.Errorf("NormalizeEventName(%q) = %q, but that normalises to %q", s, n, again)
		}
		if strings.HasPrefix(n, " ") || strings.HasSuffix(n, " ") || strings.Contains(n, "  ") {
			t.Errorf("NormalizeEventName(%q) = %q has stray spaces", s, n)
		}
		for _, styled := range []string{strings.ReplaceAll(n, " ", "_"), strings.ReplaceAll(n, " ", "-"), " " + n + "\t"} {
			if got := NormalizeEventName(styled); got != n {
				t.Errorf("NormalizeEventName(%q) = %q, want %q like %q", styled, got, n, s)
			}
		}
		if k := SnakeCase(s); SnakeCase(k) != k {
			t.Errorf("SnakeCase(%q) = %q is not a fixed point", s, k)
		}
	})
}

// TestNormalFormsAreFixedPointsForEveryRune checks the fuzz target's first
// property for every letter, digit and mark beyond ASCII, alone and beside
// ASCII letters of either case, where the splitter's classes decide: an
// upper-case letter with no lower-case form (ϓ, ℂ: 471 of them) once
// normalised "Aϓ" to "aϓ", which normalises to "a ϓ".
func TestNormalFormsAreFixedPointsForEveryRune(t *testing.T) {
	failed := 0
	for r := rune(utf8.RuneSelf); r <= unicode.MaxRune && failed < 10; r++ {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !unicode.IsMark(r) {
			continue
		}
		c := string(r)
		for _, s := range []string{c, "a" + c, "A" + c, c + "a", c + "A", "1" + c, c + c, "A" + c + "a"} {
			if n := NormalizeEventName(s); NormalizeEventName(n) != n {
				failed++
				t.Errorf("NormalizeEventName(%q) = %q (%U), but that normalises to %q", s, n, r, NormalizeEventName(n))
			}
			if k := SnakeCase(s); SnakeCase(k) != k {
				failed++
				t.Errorf("SnakeCase(%q) = %q (%U), but that gives %q", s, k, r, SnakeCase(k))
			}
		}
	}
}

// TestValidateRedactsSecrets: a refused endpoint or domain is named and
// shown, but a password or token in it never is.
func TestValidateRedactsSecrets(t *testing.T) {
	ok := Settings{Account: "acme", ClientName: "acme", SiteID: "42"}
	for _, tc := range []struct {
		name, endpoint, domain, want string
	}{
		{name: "endpoint with a password", endpoint: "https://user:s3cret@example.com", want: "endpoint"},
		{name: "endpoint with only a user name", endpoint: "https://s3cret@example.com", want: "endpoint"},
		{name: "endpoint with a token query", endpoint: "https://example.com/?token=s3cret", want: "endpoint"},
		{name: "endpoint that does not parse", endpoint: "https://user:s3cret@exa mple.com/%zz", want: "endpoint"},
		{name: "domain with a password", domain: "https://user:s3cret@acme.sp1.convertro.com", want: "domain"},
		{name: "domain with a password, no scheme", domain: "user:s3cret@acme.sp1.convertro.com", want: "domain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ok
			s.Endpoint, s.Domain = tc.endpoint, tc.domain
			err := s.Validate(true)
			if got := namedSettings(err); !slices.Equal(got, []string{tc.want}) {
				t.Fatalf("Validate = %v, names %q, want %s", err, got, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the message shows the secret: %v", err)
			}
			if !strings.Contains(err.Error(), "mple.com") && !strings.Contains(err.Error(), "convertro.com") {
				t.Errorf("the message does not show which URL: %v", err)
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:s3cret@push.example.com:9091/": "https://xxxxx@push.example.com:9091/",
		"https://s3cret@push.example.com/":           "https://xxxxx@push.example.com/",
		"http://push.example.com/?token=s3cret&a=b":  "http://push.example.com/?a=xxxxx&token=xxxxx",
		"http://push.example.com:9091":               "http://push.example.com:9091",
		"user:s3cret@host":                           "xxxxx@host",
		"https://user:s3cret@exa mple.com/%zz":       "https://xxxxx@exa mple.com/%zz",
		"":                                           "",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
