package convertro

import (
	"bytes"
	"math"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/convertro-etl/convertro-etl/internal/segment"
)

func TestBaseURL(t *testing.T) {
	cases := []struct {
		name string
		s    Settings
		want string
	}{
		{"default host", Settings{}, "https://sp1.convertro.com"},
		{"domain", Settings{Domain: "acme.sp1.convertro.com"}, "https://acme.sp1.convertro.com"},
		{"domain with https scheme and slash", Settings{Domain: "https://acme.sp1.convertro.com/"}, "https://acme.sp1.convertro.com"},
		{"domain with http scheme is sent over https", Settings{Domain: "http://acme.sp1.convertro.com//"}, "https://acme.sp1.convertro.com"},
		{"blank domain", Settings{Domain: "  "}, "https://sp1.convertro.com"},
		{"endpoint wins over domain", Settings{Domain: "acme.sp1.convertro.com", Endpoint: "http://127.0.0.1:8080/"}, "http://127.0.0.1:8080"},
		{"endpoint with a path prefix", Settings{Endpoint: "https://proxy.example/convertro/"}, "https://proxy.example/convertro"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := NewWire(tc.s)
			if got := w.BaseURL(); got != tc.want {
				t.Errorf("BaseURL() = %q, want %q", got, tc.want)
			}
			d := Delivery{Kind: KindHit, SID: []byte("d"), Typ: []byte("t"), Val: segment.Num(1), TS: 2}
			if got := string(w.AppendURL(nil, &d)); !strings.HasPrefix(got, tc.want+"/api/hit/") {
				t.Errorf("URL %q does not start with the base URL", got)
			}
		})
	}
}

// TestAppendURLOrder spells out the fixed parameter order of each kind, with
// every optional parameter present and then absent.
func TestAppendURLOrder(t *testing.T) {
	w := NewWire(Settings{ClientName: "acme", SiteID: "42"})
	const base = "https://sp1.convertro.com/api/"
	full := Delivery{SID: []byte("d1"), ID: []byte("u1"), Typ: []byte("sale"), EID: []byte("o1"),
		CUA: []byte("UA"), CIP: []byte("10.0.0.1"), Val: segment.Num(49.99), TS: 1700000000}
	cases := []struct {
		name string
		d    func() Delivery
		want string
	}{
		{"user, all", func() Delivery { d := full; d.Kind = KindUser; return d },
			base + "user/acme/42/?sid=d1&id=u1&ts=1700000000&cua=UA&cip=10.0.0.1"},
		{"user with trait", func() Delivery { d := full; d.Kind, d.Trait, d.TraitValue = KindUser, "vip", []byte("true"); return d },
			base + "user/acme/42/?sid=d1&id=u1&ts=1700000000&vip=true&cua=UA&cip=10.0.0.1"},
		{"user with trait, left the audience", func() Delivery {
			return AudienceDelivery([]byte("u1"), []byte("d1"), 1, "vip", false)
		}, base + "user/acme/42/?sid=d1&id=u1&ts=1&vip=false"},
		{"user with a computed trait, escaped", func() Delivery {
			return Delivery{Kind: KindUser, SID: []byte("d1"), ID: []byte("u1"), TS: 1, Trait: "favorite_category", TraitValue: []byte("shoes & socks")}
		}, base + "user/acme/42/?sid=d1&id=u1&ts=1&favorite_category=shoes+%26+socks"},
		{"user with a removed computed trait", func() Delivery {
			return Delivery{Kind: KindUser, SID: []byte("d1"), ID: []byte("u1"), TS: 1, Trait: "lifetime_value", TraitValue: []byte{}}
		}, base + "user/acme/42/?sid=d1&id=u1&ts=1&lifetime_value="},
		{"user, bare", func() Delivery { return Delivery{Kind: KindUser, SID: []byte("d1"), ID: []byte("u1"), TS: 1} },
			base + "user/acme/42/?sid=d1&id=u1&ts=1"},
		{"hit, all", func() Delivery { d := full; d.Kind = KindHit; return d },
			base + "hit/acme/42/?sid=d1&typ=sale&val=49.99&eid=o1&ts=1700000000&cua=UA&cip=10.0.0.1"},
		{"hit without eid, cua, cip", func() Delivery {
			return Delivery{Kind: KindHit, SID: []byte("d1"), Typ: []byte("x"), Val: segment.Num(1), TS: 1}
		},
			base + "hit/acme/42/?sid=d1&typ=x&val=1&ts=1"},
		{"install, all", func() Delivery { d := full; d.Kind = KindInstall; return d },
			base + "install/acme/42/?sid=d1&eid=o1&ts=1700000000&cua=UA&cip=10.0.0.1"},
		{"install, bare", func() Delivery { return Delivery{Kind: KindInstall, SID: []byte("d1"), TS: 1} },
			base + "install/acme/42/?sid=d1&ts=1"},
	}
	for _, tc := range cases {
		d := tc.d()
		if got := string(w.AppendURL(nil, &d)); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}

func TestAppendURLEscapesPathAndValues(t *testing.T) {
	w := NewWire(Settings{ClientName: "Acme Corp/EU", SiteID: "4 2?"})
	d := Delivery{Kind: KindHit, SID: []byte("dev 1/é"), Typ: []byte("Sign Up & Go=+1"), EID: []byte("a%b"),
		CUA: []byte("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)"), CIP: []byte("2001:db8::1"), Val: segment.Num(1), TS: 1}
	want := "https://sp1.convertro.com/api/hit/Acme%20Corp%2FEU/4%202%3F/?" +
		"sid=dev+1%2F%C3%A9&typ=Sign+Up+%26+Go%3D%2B1&val=1&eid=a%25b&ts=1" +
		"&cua=Mozilla%2F5.0+%28iPhone%3B+CPU+iPhone+OS+17_0+like+Mac+OS+X%29&cip=2001%3Adb8%3A%3A1"
	if got := string(w.AppendURL(nil, &d)); got != want {
		t.Errorf("\n got %s\nwant %s", got, want)
	}
	u, err := url.Parse(want)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	for k, v := range map[string]string{"sid": "dev 1/é", "typ": "Sign Up & Go=+1", "eid": "a%b", "cip": "2001:db8::1"} {
		if q.Get(k) != v {
			t.Errorf("query %s reads back as %q, want %q", k, q.Get(k), v)
		}
	}
}

func TestAppendURLAppends(t *testing.T) {
	w := NewWire(Settings{ClientName: "a", SiteID: "b"})
	d := Delivery{Kind: KindInstall, SID: []byte("s"), TS: 1}
	got := string(w.AppendURL([]byte("GET "), &d))
	if want := "GET https://sp1.convertro.com/api/install/a/b/?sid=s&ts=1"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestAppendURLPanicsOnUnknownKind(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "kind(7)") {
			t.Errorf("recover() = %v, want a panic naming kind(7)", r)
		}
	}()
	NewWire(Settings{}).AppendURL(nil, &Delivery{Kind: 7})
}

func TestAppendValue(t *testing.T) {
	cases := []struct {
		v    float64
		want string
	}{
		{49.99, "49.99"},
		{1, "1"},
		{0, "0"},
		{math.Copysign(0, -1), "0"},
		{-5, "-5"},
		{1234567.5, "1234567.5"},
		{1e6, "1000000"},
		{1e21, "1000000000000000000000"},
		{0.30000000000000004, "0.30000000000000004"}, // 0.1+0.2 at run time
		{1e-7, "0.0000001"},
		{1299.5, "1299.5"},
		{-49.99, "-49.99"},
		{float64(1 << 53), "9007199254740992"},
	}
	for _, tc := range cases {
		if got := string(AppendValue(nil, tc.v)); got != tc.want {
			t.Errorf("AppendValue(%v) = %q, want %q", tc.v, got, tc.want)
		}
		if back, err := strconv.ParseFloat(tc.want, 64); err != nil || back != tc.v {
			t.Errorf("%q reads back as %v, %v; want %v", tc.want, back, err, tc.v)
		}
	}
	// Not produced by the Mapper, but a hand-made Delivery must still give a
	// URL that reads back: "+Inf" unescaped would read as " Inf".
	w := NewWire(Settings{})
	d := Delivery{Kind: KindHit, Val: segment.Num(math.Inf(1))}
	u, err := url.Parse(string(w.AppendURL(nil, &d)))
	if err != nil || u.Query().Get("val") != "+Inf" {
		t.Errorf("val=+Inf reads back as %q (%v)", u.Query().Get("val"), err)
	}
}

// TestAppendNumber: every number in its own shortest decimal form. A FLOAT
// is formatted as the 32-bit value it is, an exact decimal from its digits
// without ever becoming a float64.
func TestAppendNumber(t *testing.T) {
	dec := func(s string, approx float64) segment.Number {
		return segment.Number{Value: approx, Valid: true, Decimal: []byte(s)}
	}
	f32 := func(v float32) segment.Number { return segment.Number{Value: float64(v), Valid: true, Float32: true} }
	cases := []struct {
		name string
		n    segment.Number
		want string
	}{
		{"FLOAT 49.99 is 49.99, not its float64 widening 49.9900016784668", f32(49.99), "49.99"},
		{"FLOAT 0.1", f32(0.1), "0.1"},
		{"FLOAT 16777217 rounds to the 32-bit 16777216", f32(16777217), "16777216"},
		{"FLOAT 1e10 has no exponent", f32(1e10), "10000000000"},
		{"FLOAT -0 is 0", f32(float32(math.Copysign(0, -1))), "0"},
		{"FLOAT -27.5", f32(-27.5), "-27.5"},
		{"DOUBLE 49.99", segment.Num(49.99), "49.99"},
		{"DOUBLE 0.1+0.2 keeps its 17 digits", segment.Num(0.30000000000000004), "0.30000000000000004"},
		{"DOUBLE 1e21 has no exponent", segment.Num(1e21), "1000000000000000000000"},
		{"INT 42", segment.Num(42), "42"},
		{"INT64 past 2^53 from its digits", dec("9007199254740993", 9007199254740992), "9007199254740993"},
		{"INT64 min", dec("-9223372036854775808", -9223372036854775808), "-9223372036854775808"},
		{"DECIMAL(10,2) 27.50 is 27.5", dec("27.50", 27.5), "27.5"},
		{"DECIMAL(10,2) 100.00 is 100", dec("100.00", 100), "100"},
		{"DECIMAL(10,2) -0.00 is 0", dec("-0.00", 0), "0"},
		{"DECIMAL(38,6) 0.000005", dec("0.000005", 5e-6), "0.000005"},
		{"DECIMAL(38,0) beyond a float64's digits", dec("12345678901234567890123", 1.2345678901234568e22), "12345678901234567890123"},
		{"DECIMAL(38,10) beyond a float64's digits", dec("-1234567890123456789.0123456789", -1.2345678901234568e18), "-1234567890123456789.0123456789"},
		{"DECIMAL past the float64 range", dec("1"+strings.Repeat("0", 400), math.Inf(1)), "1" + strings.Repeat("0", 400)},
		{"text 1299.50 (from $1,299.50)", dec("1299.50", 1299.5), "1299.5"},
		{"text .5", dec(".5", 0.5), "0.5"},
		{"text 5.", dec("5.", 5), "5"},
		{"text 007", dec("007", 7), "7"},
		{"text -0", dec("-0", 0), "0"},
		{"a malformed decimal falls back to the float64", dec("1e3", 1000), "1000"},
		{"absent appends nothing", segment.Number{}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(AppendNumber([]byte("val="), tc.n)); got != "val="+tc.want {
				t.Errorf("AppendNumber = %q, want %q", got, "val="+tc.want)
			}
		})
	}
}

func TestAppendEscaped(t *testing.T) {
	cases := map[string]string{
		"":             "",
		"plain-_.~09":  "plain-_.~09",
		"a b":          "a+b",
		"&=+":          "%26%3D%2B",
		"é":            "%C3%A9",
		"日本":           "%E6%97%A5%E6%9C%AC",
		"/?#%":         "%2F%3F%23%25",
		"\x00\n\xff":   "%00%0A%FF",
		"$,:;@!'()*[]": "%24%2C%3A%3B%40%21%27%28%29%2A%5B%5D",
	}
	for in, want := range cases {
		if got := string(appendEscaped(nil, in)); got != want {
			t.Errorf("appendEscaped(%q) = %q, want %q", in, got, want)
		}
		if got := string(appendEscaped(nil, []byte(in))); got != want {
			t.Errorf("appendEscaped([]byte(%q)) = %q, want %q", in, got, want)
		}
		if q := url.QueryEscape(in); q != want {
			t.Errorf("url.QueryEscape(%q) = %q: the table disagrees with the standard library", in, q)
		}
	}
}

// FuzzQueryEscape checks the escaper against url.QueryEscape byte for byte.
func FuzzQueryEscape(f *testing.F) {
	for _, s := range []string{"", "a b", "&=+", "é", "日本", "\x00\xff", "Mozilla/5.0 (X11)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := string(appendEscaped(nil, []byte(s))), url.QueryEscape(s); got != want {
			t.Errorf("appendEscaped(%q) = %q, url.QueryEscape = %q", s, got, want)
		}
	})
}

// FuzzAppendURL checks that any delivery gives a URL that parses and reads
// back to the same values under the documented names and order.
func FuzzAppendURL(f *testing.F) {
	f.Add(uint8(1), "dev-1", "user-1", "sale", "o-1", "Mozilla/5.0", "10.0.0.1", "vip", true, 49.99, int64(1704164645), "acme", "42")
	f.Add(uint8(0), "dev 1", "u&=1", "", "", "", "", "Order Completed Last 30 Days", false, 0.0, int64(-1), "Acme Corp", "4/2")
	f.Add(uint8(2), "é", "", "", "m-1", "", "::1", "", false, -5.0, int64(0), "", "")
	f.Fuzz(func(t *testing.T, kind uint8, sid, id, typ, eid, cua, cip, trait string, member bool, val float64, ts int64, client, site string) {
		k := Kind(kind % 3)
		switch trait {
		case ParamSID, ParamID, ParamTyp, ParamVal, ParamEID, ParamTS, ParamCUA, ParamCIP:
			trait = "" // a trait named like a parameter cannot be read back apart from it
		}
		d := Delivery{Kind: k, SID: []byte(sid), ID: []byte(id), Typ: []byte(typ), EID: []byte(eid),
			CUA: []byte(cua), CIP: []byte(cip), Val: segment.Num(val), TS: ts, Trait: trait, TraitValue: []byte(strconv.FormatBool(member))}
		w := NewWire(Settings{ClientName: client, SiteID: site})
		raw := string(w.AppendURL(nil, &d))
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("%q does not parse: %v", raw, err)
		}
		if want := "/api/" + k.String() + "/" + client + "/" + site + "/"; u.Path != want {
			t.Errorf("path %q, want %q", u.Path, want)
		}
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			t.Fatalf("query of %q does not parse: %v", raw, err)
		}
		want := url.Values{ParamSID: {sid}, ParamTS: {strconv.FormatInt(ts, 10)}}
		var order []string
		switch k {
		case KindUser:
			want[ParamID] = []string{id}
			order = []string{ParamSID, ParamID, ParamTS}
			if trait != "" {
				want[trait] = []string{strconv.FormatBool(member)}
				order = append(order, trait)
			}
		case KindHit:
			want[ParamTyp] = []string{typ}
			want[ParamVal] = []string{string(AppendValue(nil, val))}
			order = []string{ParamSID, ParamTyp, ParamVal}
			if eid != "" {
				want[ParamEID] = []string{eid}
				order = append(order, ParamEID)
			}
			order = append(order, ParamTS)
		case KindInstall:
			order = []string{ParamSID}
			if eid != "" {
				want[ParamEID] = []string{eid}
				order = append(order, ParamEID)
			}
			order = append(order, ParamTS)
		}
		for _, p := range []struct{ name, v string }{{ParamCUA, cua}, {ParamCIP, cip}} {
			if p.v != "" {
				want[p.name] = []string{p.v}
				order = append(order, p.name)
			}
		}
		if len(q) != len(want) {
			t.Errorf("%q reads back as %v, want %v", raw, q, want)
		}
		for name, vs := range want {
			if got := q[name]; len(got) != 1 || got[0] != vs[0] {
				t.Errorf("%s reads back as %q, want %q (URL %q)", name, got, vs[0], raw)
			}
		}
		var gotOrder []string
		for _, kv := range strings.Split(u.RawQuery, "&") {
			name, _, _ := strings.Cut(kv, "=")
			name, _ = url.QueryUnescape(name)
			gotOrder = append(gotOrder, name)
		}
		if strings.Join(gotOrder, ",") != strings.Join(order, ",") {
			t.Errorf("parameter order %q, want %q", gotOrder, order)
		}
	})
}

// TestAppendURLCut: a URL that fits comes whole; a longer one comes as its
// first n bytes exactly, however long its values, without escaping them whole.
func TestAppendURLCut(t *testing.T) {
	w := NewWire(Settings{ClientName: "acme", SiteID: "42"})
	huge := bytes.Repeat([]byte("é /"), 1<<20) // 9 MiB escaped
	for _, d := range []Delivery{
		{Kind: KindHit, SID: []byte("d1"), Typ: []byte("Signed Up"), EID: []byte("m1"), Val: segment.Num(1), TS: 5, CUA: []byte("Mozilla/5.0")},
		{Kind: KindHit, SID: []byte("d1"), Typ: []byte("Signed Up"), EID: []byte("m1"), Val: segment.Num(1), TS: 5, CUA: huge, CIP: []byte("10.0.0.1")},
		{Kind: KindUser, SID: huge, ID: []byte("u1"), TS: 5},
		{Kind: KindInstall, SID: []byte("d1"), EID: huge[:MaxURLBytes/3], TS: 5},
	} {
		whole := w.AppendURL(nil, &d)
		for _, n := range []int{10, 200, MaxURLBytes + 1} {
			got := w.AppendURLCut([]byte("x"), &d, n)
			want := append([]byte("x"), whole[:min(n, len(whole))]...)
			if !bytes.Equal(got, want) {
				t.Errorf("AppendURLCut(n=%d) of a %d-byte URL: got %d bytes, not its prefix", n, len(whole), len(got)-1)
			}
			if len(whole) > n && cap(got) > 64*n+1024 {
				t.Errorf("AppendURLCut(n=%d) of a %d-byte URL grew its buffer to %d", n, len(whole), cap(got))
			}
		}
	}
}
