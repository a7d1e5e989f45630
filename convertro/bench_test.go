package convertro

import (
	"fmt"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"testing"

	"github.com/convertro-etl/convertro-etl/internal/segment"
)

// The benchmarks measure what a backfill pays per request: mapping a message
// and writing each delivery's URL into a reused buffer. They report ns and
// allocations per delivery (a hybrid sale makes two), next to a reference
// that builds the same URLs with net/url.Values and fmt.

type benchCase struct {
	name       string
	s          Settings
	msg        *segment.Message
	deliveries int
}

func benchCases() []benchCase {
	s := Settings{Account: "acme", ClientName: "acme", SiteID: "42", Domain: "acme.sp1.convertro.com"}
	hybrid := s
	hybrid.HybridAttributionModel = true
	const chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
	return []benchCase{
		{"order_completed_cua_cip", s,
			track("Order Completed", order("order-8d1f3a"), total(1299.5), ua(chrome), ip("203.0.113.7")), 1},
		{"hybrid_two_deliveries", hybrid,
			track("Order Completed", order("order-8d1f3a"), total(49.99), repeat(segment.True), ua(chrome), ip("203.0.113.7")), 2},
		{"identify", s,
			identify("user-5c2e91", ua(chrome), ip("203.0.113.7")), 1},
	}
}

// perDelivery runs body b.N times and reports ns and allocations per
// delivery. Allocations are counted from the runtime's totals, since the
// standard allocs/op is per message.
func perDelivery(b *testing.B, deliveries int, body func()) {
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for b.Loop() {
		body()
	}
	runtime.ReadMemStats(&after)
	n := float64(b.N * deliveries)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/delivery")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/n, "allocs/delivery")
}

var sink int

func BenchmarkMapAndEncode(b *testing.B) {
	for _, bc := range benchCases() {
		b.Run(bc.name, func(b *testing.B) {
			m, err := NewMapper(bc.s)
			if err != nil {
				b.Fatal(err)
			}
			w := NewWire(bc.s)
			ds := make([]Delivery, 0, 4)
			buf := make([]byte, 0, 512)
			perDelivery(b, bc.deliveries, func() {
				ds, _ = m.Map(ds[:0], bc.msg)
				for i := range ds {
					buf = w.AppendURL(buf[:0], &ds[i])
					sink += len(buf)
				}
			})
			if len(ds) != bc.deliveries {
				b.Fatalf("%d deliveries, want %d", len(ds), bc.deliveries)
			}
		})
	}
}

// BenchmarkReferenceNetURL maps the same messages and builds the same URLs
// the conventional way (url.Values, whose Encode sorts the parameters, and
// fmt), to show what the hand-written encoder saves.
func BenchmarkReferenceNetURL(b *testing.B) {
	for _, bc := range benchCases() {
		b.Run(bc.name, func(b *testing.B) {
			m, err := NewMapper(bc.s)
			if err != nil {
				b.Fatal(err)
			}
			base := NewWire(bc.s).BaseURL()
			ds := make([]Delivery, 0, 4)
			perDelivery(b, bc.deliveries, func() {
				ds, _ = m.Map(ds[:0], bc.msg)
				for i := range ds {
					sink += len(referenceURL(base, bc.s, &ds[i]))
				}
			})
		})
	}
}

func referenceURL(base string, s Settings, d *Delivery) string {
	v := url.Values{}
	v.Set(ParamSID, string(d.SID))
	switch d.Kind {
	case KindUser:
		v.Set(ParamID, string(d.ID))
		if d.Trait != "" {
			v.Set(d.Trait, string(d.TraitValue))
		}
	case KindHit:
		v.Set(ParamTyp, string(d.Typ))
		v.Set(ParamVal, strconv.FormatFloat(d.Val.Value, 'f', -1, 64))
		v.Set(ParamEID, string(d.EID))
	case KindInstall:
		v.Set(ParamEID, string(d.EID))
	}
	v.Set(ParamTS, strconv.FormatInt(d.TS, 10))
	if len(d.CUA) > 0 {
		v.Set(ParamCUA, string(d.CUA))
	}
	if len(d.CIP) > 0 {
		v.Set(ParamCIP, string(d.CIP))
	}
	return fmt.Sprintf("%s/api/%s/%s/%s/?%s", base, d.Kind, url.PathEscape(s.ClientName), url.PathEscape(s.SiteID), v.Encode())
}

// TestReferenceURLAgrees makes sure the reference benchmark builds the same
// request (same path, same parameters) as AppendURL, so the comparison is
// fair.
func TestReferenceURLAgrees(t *testing.T) {
	for _, bc := range benchCases() {
		m, _ := NewMapper(bc.s)
		w := NewWire(bc.s)
		ds, _ := m.Map(nil, bc.msg)
		for i := range ds {
			ours, err := url.Parse(string(w.AppendURL(nil, &ds[i])))
			if err != nil {
				t.Fatal(err)
			}
			ref, err := url.Parse(referenceURL(w.BaseURL(), bc.s, &ds[i]))
			if err != nil {
				t.Fatal(err)
			}
			if ours.Path != ref.Path || ours.Query().Encode() != ref.Query().Encode() {
				t.Errorf("%s: AppendURL %s and reference %s differ", bc.name, ours, ref)
			}
		}
	}
}

// BenchmarkAppendEscaped measures the query escaper on the values a request
// carries, against three references in the same run: url.QueryEscape; an
// escaper that writes three bytes for every byte and keeps one
// (escapeEveryByte); and the one this replaced, which copied each run of
// bytes that need no escape at once (escapeRuns). Compare impl=encoder
// with impl=runs: on user agents, which escape every few bytes, it takes
// half the time or less; on ids, one long run, a little less.
func BenchmarkAppendEscaped(b *testing.B) {
	values := []struct{ name, v string }{
		{"device_id", "6f1c2a4e-9b7d-4c1e-8a55-0d3f2b9c7e11"},
		{"user_agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"},
		{"android_user_agent", "Dalvik/2.1.0 (Linux; U; Android 14; Pixel 8 Build/UQ1A.240205.004)"},
		{"ip", "203.0.113.7"},
		{"non_ascii", "Größenänderung des Warenkorbs – Bestellung abgeschlossen"},
	}
	for _, v := range values {
		dst := make([]byte, 0, 3*len(v.v))
		b.Run(v.name+"/impl=encoder", func(b *testing.B) {
			b.SetBytes(int64(len(v.v)))
			for b.Loop() {
				dst = appendEscaped(dst[:0], v.v)
			}
		})
		b.Run(v.name+"/impl=runs", func(b *testing.B) {
			b.SetBytes(int64(len(v.v)))
			for b.Loop() {
				dst = escapeRuns(dst[:0], v.v)
			}
		})
		b.Run(v.name+"/impl=every-byte", func(b *testing.B) {
			b.SetBytes(int64(len(v.v)))
			for b.Loop() {
				dst = escapeEveryByte(dst[:0], v.v)
			}
		})
		b.Run(v.name+"/impl=net-url", func(b *testing.B) {
			b.SetBytes(int64(len(v.v)))
			for b.Loop() {
				sink += len(url.QueryEscape(v.v))
			}
		})
	}
}

// escapeEveryByte is the reference: each byte's escape written
// unconditionally, three bytes at a time, the length kept by its count.
func escapeEveryByte(dst []byte, s string) []byte {
	n := len(dst)
	dst = slices.Grow(dst, 3*len(s))
	dst = dst[:n+3*len(s)]
	for i := 0; i < len(s); i++ {
		e := escapes[s[i]]
		w := dst[n : n+3 : n+3]
		w[0], w[1], w[2] = byte(e), byte(e>>8), byte(e>>16)
		n += int(e >> 24)
	}
	return dst[:n]
}

// escapeRuns is the reference escaper that copies each run of bytes that
// need no escape whole (a scan, then a copy) and writes the escape of each
// byte that does.
func escapeRuns(dst []byte, s string) []byte {
	dst = slices.Grow(dst, 3*len(s))
	for i := 0; i < len(s); i++ {
		j := i
		for j < len(s) && escapes[s[j]] == 1<<24|uint32(s[j]) {
			j++
		}
		dst = append(dst, s[i:j]...)
		if j == len(s) {
			break
		}
		e := escapes[s[j]]
		dst = append(dst, byte(e), byte(e>>8), byte(e>>16))
		dst = dst[:len(dst)-3+int(e>>24)]
		i = j
	}
	return dst
}

// TestEscapeReferencesAgree makes sure the escaper and its references in
// BenchmarkAppendEscaped write the same bytes, so that the comparison is
// fair.
func TestEscapeReferencesAgree(t *testing.T) {
	var all []byte
	for c := range 256 {
		all = append(all, byte(c))
	}
	for _, v := range []string{"", "6f1c2a4e-9b7d", "a b+c/d", string(all), "Größe ~x~"} {
		want := url.QueryEscape(v)
		for name, got := range map[string]string{
			"encoder":    string(appendEscaped([]byte("x"), v)[1:]),
			"runs":       string(escapeRuns(nil, v)),
			"every-byte": string(escapeEveryByte(nil, v)),
		} {
			if got != want {
				t.Errorf("%s(%q) = %q, want %q", name, v, got, want)
			}
		}
	}
}
