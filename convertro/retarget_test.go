package convertro

import (
	"errors"
	"testing"

	"github.com/convertro-etl/convertro-etl/internal/segment"
)

func TestRetarget(t *testing.T) {
	w := NewWire(Settings{Account: "acme", ClientName: "acme corp", SiteID: "12", Endpoint: "http://127.0.0.1:8080/proxy/"})
	const q = "sid=d%2F1&typ=add_to_cart&val=49.99&eid=m1&ts=1700000000&cua=Mozilla%2F5.0+%28X11%29"
	tests := []struct {
		name, in, want string
	}{
		{"hit, default base", "https://sp1.convertro.com/api/hit/old/9/?" + q,
			"http://127.0.0.1:8080/proxy/api/hit/acme%20corp/12/?" + q},
		{"user with trait", "https://acme.sp1.convertro.com/api/user/acme/12/?sid=d1&id=u1&ts=1&vip_users=true",
			"http://127.0.0.1:8080/proxy/api/user/acme%20corp/12/?sid=d1&id=u1&ts=1&vip_users=true"},
		{"install", "http://10.0.0.1:9/api/install/acme/12/?sid=d1&eid=e&ts=2",
			"http://127.0.0.1:8080/proxy/api/install/acme%20corp/12/?sid=d1&eid=e&ts=2"},
		{"endpoint path and a client named api", "http://h/x/api/api/hit/api/7/?sid=a&typ=t&val=0&ts=1",
			"http://127.0.0.1:8080/proxy/api/hit/acme%20corp/12/?sid=a&typ=t&val=0&ts=1"},
		{"escaped old client name", "http://h/api/hit/a%2Fb/7/?sid=a&typ=t&val=0&ts=1",
			"http://127.0.0.1:8080/proxy/api/hit/acme%20corp/12/?sid=a&typ=t&val=0&ts=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := w.Retarget(tt.in)
			if err != nil || got != tt.want {
				t.Errorf("Retarget(%q)\n got %q, %v\nwant %q", tt.in, got, err, tt.want)
			}
		})
	}
	bad := []string{
		"",
		"not a url at all",
		"/api/hit/acme/12/?sid=a",                    // not absolute
		"http://h/api/hit/acme/12/",                  // no query
		"http://h/api/hit/acme/12?sid=a",             // no trailing slash
		"http://h/api/hit/acme/?sid=a",               // a segment short
		"http://h/api/visit/acme/12/?sid=a",          // unknown kind
		"http://h/apx/hit/acme/12/?sid=a",            // not /api/
		"http://h/api/hit/acme/12/extra/?sid=a",      // a segment too many
		"http://h/%zz/api/hit/acme/12/?sid=a",        // unparseable
		"https://sp1.convertro.com/_stats?sid=a&x=1", // another path
	}
	for _, in := range bad {
		if got, err := w.Retarget(in); !errors.Is(err, ErrNotRequestURL) {
			t.Errorf("Retarget(%q) = %q, %v; want ErrNotRequestURL", in, got, err)
		}
	}
}

// A URL the wire encoded comes back unchanged when the settings are the same.
func TestRetargetRoundTrip(t *testing.T) {
	w := NewWire(Settings{Account: "acme", ClientName: "acme", SiteID: "12"})
	for _, d := range []Delivery{
		{Kind: KindUser, SID: []byte("d 1"), ID: []byte("u/1"), TS: 5, Trait: "vip", TraitValue: []byte("true")},
		{Kind: KindHit, SID: []byte("d1"), Typ: []byte("sale"), Val: segment.Num(1.5), EID: []byte("o#1"), TS: 5, CUA: []byte("ua"), CIP: []byte("::1")},
		{Kind: KindInstall, SID: []byte("d1"), EID: []byte("m1"), TS: 5},
	} {
		in := string(w.AppendURL(nil, &d))
		if got, err := w.Retarget(in); err != nil || got != in {
			t.Errorf("Retarget(%q) = %q, %v; want it unchanged", in, got, err)
		}
	}
}
