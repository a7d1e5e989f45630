package writers

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestDryRunLineEscaping(t *testing.T) {
	for _, s := range []string{
		"http://x/a?b=c&d=e<f>",
		`q="quoted"\back`,
		"tab\tnew\nline\r\x00\x1f\x7f",
		"unicode é 日本 \u2028 \u2029",
		"bad utf8 \xff\xfe end",
	} {
		line := AppendDryRunLine(nil, []byte(s))
		var got struct {
			Method string `json:"method"`
			URL    string `json:"url"`
		}
		if err := json.Unmarshal(line, &got); err != nil {
			t.Fatalf("%q: line %s is not JSON: %v", s, line, err)
		}
		// encoding/json's reading of the same string is the reference.
		ref, _ := json.Marshal(s)
		var want string
		json.Unmarshal(ref, &want)
		if got.Method != "GET" || got.URL != want || line[len(line)-1] != '\n' {
			t.Errorf("%q: decoded %+v", s, got)
		}
		if bytes.Contains(line, []byte(`\u0026`)) {
			t.Errorf("%q: & escaped as HTML", s)
		}
	}
}
