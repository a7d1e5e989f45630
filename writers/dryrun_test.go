package writers

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// wantDryRunLine is what encoding/json writes for the line, without HTML
// escaping, which is the contract of AppendDryRunLine.
func wantDryRunLine(t testing.TB, url string) string {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(struct {
		Method string `json:"method"`
		URL    string `json:"url"`
	}{"GET", url}); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

var dryRunCases = []string{
	"",
	"https://sp1.convertro.com/api/hit/acme/1/?sid=d-1&typ=sale&val=49.99&eid=o%2F1&ts=1704067200",
	`quote " and backslash \ and slash /`,
	"controls \x00\x01\x08\x09\x0a\x0c\x0d\x1f\x7f end",
	"<html> & friends",
	"unicode é ✓ 😀 and line separators \u2028 \u2029",
	"invalid utf-8 \xff\xfe and truncated \xe2\x82 end",
	strings.Repeat("a", 100_000), // longer than the buffer
}

// TestAppendDryRunLineMatchesEncodingJSON: each line is what encoding/json
// writes, appended after what dst held, and & is not escaped as HTML.
func TestAppendDryRunLineMatchesEncodingJSON(t *testing.T) {
	for _, u := range dryRunCases {
		line := AppendDryRunLine([]byte("kept:"), []byte(u))
		want := "kept:" + wantDryRunLine(t, u)
		if string(line) != want {
			t.Errorf("%.40q: got %.80q, want %.80q", u, line, want)
		}
		if bytes.Contains(line, []byte(`\u0026`)) {
			t.Errorf("%.40q: & escaped as HTML", u)
		}
	}
}

// TestAppendPlainDryRunLine: for a URL JSONPlain accepts, the plain line is
// the scanned one; JSONPlain refuses every byte that JSON escapes.
func TestAppendPlainDryRunLine(t *testing.T) {
	for _, u := range []string{"", "https://sp1.convertro.com/api/hit/acme/1/?sid=d%201&typ=sale&val=49.99&eid=o%2F1&ts=1&cua=a+b%28c%29",
		"http://127.0.0.1:8080/collect/api/user/a%20b/1/?sid=x&id=y&ts=2&segment_audience=true"} {
		if !JSONPlain(u) {
			t.Errorf("JSONPlain(%q) = false", u)
		}
		if got, want := string(AppendPlainDryRunLine([]byte("kept:"), []byte(u))), "kept:"+wantDryRunLine(t, u); got != want {
			t.Errorf("plain line %q, want %q", got, want)
		}
	}
	for _, c := range []byte{0x00, 0x1f, '"', '\\', 0x7f + 1, 0xff} {
		if u := "https://x/" + string([]byte{c}) + "/"; JSONPlain(u) {
			t.Errorf("JSONPlain(%q) = true", u)
		}
	}
}

func FuzzDryRunMatchesEncodingJSON(f *testing.F) {
	for _, u := range dryRunCases {
		f.Add(u)
	}
	f.Fuzz(func(t *testing.T, u string) {
		if got, want := string(AppendDryRunLine(nil, []byte(u))), wantDryRunLine(t, u); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})
}

func TestAppendDryRunLineDoesNotAllocate(t *testing.T) {
	dst := make([]byte, 0, 1024)
	url := []byte("https://sp1.convertro.com/api/user/acme/1/?sid=d%201&id=u%22&ts=1704067200&cua=Mozilla%2F5.0")
	if allocs := testing.AllocsPerRun(1000, func() { dst = AppendDryRunLine(dst[:0], url) }); allocs != 0 {
		t.Errorf("AppendDryRunLine allocates %v times per line with room in dst, want 0", allocs)
	}
}

func BenchmarkAppendDryRunLine(b *testing.B) {
	url := []byte("https://sp1.convertro.com/api/hit/acme/1/?sid=6f1c2a4e-9b7d-4c1e-8a55-0d3f2b9c7e11&typ=sale.repeat&val=1299.5&eid=ord-000123456&ts=1704067200&cua=Mozilla%2F5.0%20%28iPhone%29&cip=203.0.113.7")
	dst := make([]byte, 0, 1024)
	b.SetBytes(int64(len(url)))
	b.ReportAllocs()
	for b.Loop() {
		dst = AppendDryRunLine(dst[:0], url)
	}
}

// The URL is scanned eight bytes at a time: a byte that needs escaping (or
// a neighbour that does not) must be found in every lane of a word, in the
// tail after the last whole word, and next to bytes that tempt the word
// test into a wrong answer (0x1f/0x20 and 0x7f/0x80 bounds, '!' and '[',
// the neighbours of '"' and '\\').
func TestAppendDryRunLineEveryPosition(t *testing.T) {
	specials := []byte{0x00, 0x1f, 0x20, '!', '"', '#', '[', '\\', ']', 0x7e, 0x7f, 0x80, 0xc3, 0xe2, 0xff}
	for n := 1; n <= 25; n++ {
		for pos := range n {
			for _, c := range specials {
				u := []byte(strings.Repeat("a%2F", 7)[:n])
				u[pos] = c
				line := AppendDryRunLine(nil, u)
				if want := wantDryRunLine(t, string(u)); string(line) != want {
					t.Fatalf("len %d, %#x at %d: got %q, want %q", n, c, pos, line, want)
				}
			}
		}
	}
}
