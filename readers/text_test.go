package readers

import (
	"math"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/internal/segment"
)

func TestParseNumber(t *testing.T) {
	cases := []struct {
		in     string
		want   float64
		wantOK bool
	}{
		{"27.50", 27.5, true},
		{" $1,299.50 ", 1299.5, true},
		{"$1,299.50", 1299.5, true},
		{"1,234,567.5", 1234567.5, true},
		{"-5", -5, true},
		{"-$5.25", -5.25, true},
		{"$-5.25", -5.25, true},
		{"+$5", 5, true},
		{"$+5", 5, true},
		{"+$+0", 0, false}, // one sign only (found by make fuzz)
		{"+$-5", 0, false},
		{"-$+5", 0, false},
		{"-$-5", 0, false},
		{"+3", 3, true},
		{"0", 0, true},
		{".5", 0.5, true},
		{"5.", 5, true},
		{"1e3", 1000, true},
		{"1.5E-2", 0.015, true},
		{"\t42\n", 42, true},
		{"NA", 0, false},
		{"", 0, false},
		{"   ", 0, false},
		{"$", 0, false},
		{"-", 0, false},
		{".", 0, false},
		{"NaN", 0, false},
		{"Inf", 0, false},
		{"-infinity", 0, false},
		{"0x10", 0, false},
		{"1_000", 0, false},
		{"1,", 0, false},
		{",1", 0, false},
		{"1.2.3", 0, false},
		{"1e", 0, false},
		{"1e+", 0, false},
		{"12abc", 0, false},
		{"1e999", 0, false},
		{"€5", 0, false},
		{"$$5", 0, false},
	}
	for _, tc := range cases {
		got, ok := ParseNumber([]byte(tc.in))
		if ok != tc.wantOK || got != tc.want {
			t.Errorf("ParseNumber(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.wantOK)
		}
	}
}

// TestParseNumberDigits: the digits a number is sent with are the text's
// own, without its space, `$`, `+` and commas; text with an exponent has none
// of its own (it is sent as its float64).
func TestParseNumberDigits(t *testing.T) {
	cases := []struct {
		in, digits string
		exp        bool
	}{
		{"27.50", "27.50", false},
		{" $1,299.50 ", "1299.50", false},
		{"-$5.25", "-5.25", false},
		{"$-5.25", "-5.25", false},
		{"+3", "3", false},
		{".5", ".5", false},
		{"12345678901234567890.12", "12345678901234567890.12", false},
		{"1.5E-2", "1.5E-2", true},
	}
	for _, tc := range cases {
		var buf [64]byte
		digits, exp, _, ok := parseNumber([]byte(tc.in), &buf)
		if !ok || string(digits) != tc.digits || exp != tc.exp {
			t.Errorf("parseNumber(%q) = %q, exponent %v, ok %v; want %q, exponent %v", tc.in, digits, exp, ok, tc.digits, tc.exp)
		}
	}
}

func TestParseNumberDoesNotAllocate(t *testing.T) {
	in := []byte(" $1,299.50 ")
	if n := testing.AllocsPerRun(100, func() { ParseNumber(in) }); n != 0 {
		t.Errorf("ParseNumber allocates %v times per call", n)
	}
}

func TestParseBool(t *testing.T) {
	cases := map[string]segment.Bool{
		"true": segment.True, "TRUE": segment.True, "True": segment.True, "tRuE": segment.True,
		"false": segment.False, "FALSE": segment.False, "False": segment.False,
		"": segment.Absent, "1": segment.Absent, "0": segment.Absent, "yes": segment.Absent, "t": segment.Absent,
		" true": segment.Absent, "true ": segment.Absent, "truee": segment.Absent, "fals": segment.Absent,
	}
	for in, want := range cases {
		if got := ParseBool([]byte(in)); got != want {
			t.Errorf("ParseBool(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestParseTimestamp(t *testing.T) {
	at := func(s string) int64 {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm.UnixMicro()
	}
	cases := []struct {
		in     string
		want   int64
		wantOK bool
	}{
		{"2020-02-11T04:56:55.175Z", at("2020-02-11T04:56:55.175Z"), true},
		{"2020-02-11 04:56:55.175116", at("2020-02-11T04:56:55.175116Z"), true},
		{"2019-09-26T06:30:12.984+0530", at("2019-09-26T01:00:12.984Z"), true},
		{"2019-09-26T06:30:12.984+05:30", at("2019-09-26T01:00:12.984Z"), true},
		{"2019-09-26T06:30:12-08", at("2019-09-26T14:30:12Z"), true},
		{"2019-09-26T06:30:12-0800", at("2019-09-26T14:30:12Z"), true},
		{"2019-09-26", at("2019-09-26T00:00:00Z"), true},
		{"2020-02-11 04:56:55.175116 UTC", at("2020-02-11T04:56:55.175116Z"), true},
		{"2020-02-11T04:56:55.123456789Z", at("2020-02-11T04:56:55.123456Z"), true},
		{"2020-02-11T04:56Z", at("2020-02-11T04:56:00Z"), true},
		{"2020-02-11t04:56:55z", at("2020-02-11T04:56:55Z"), true},
		{" 2020-02-11T04:56:55Z ", at("2020-02-11T04:56:55Z"), true},
		{"2020-02-29", at("2020-02-29T00:00:00Z"), true},
		{"1969-12-31T23:59:59.5Z", -500000, true},
		{"0001-01-01T00:00:00Z", at("0001-01-01T00:00:00Z"), true},
		{"9999-12-31T23:59:59.999999Z", at("9999-12-31T23:59:59.999999Z"), true},
		{"0001-01-01T00:00:00+01:00", 0, false}, // before year 1
		{"2019-02-29", 0, false},
		{"2019-13-01", 0, false},
		{"2019-00-01", 0, false},
		{"2019-01-32", 0, false},
		{"2019-01-01T24:00:00Z", 0, false},
		{"2019-01-01T23:60:00Z", 0, false},
		{"2019-01-01T23:00:00.Z", 0, false},
		{"2019-01-01T23:00:00+2400", 0, false},
		{"2019-01-01T23:00:00 PST", 0, false},
		{"2019-01-01X", 0, false},
		{"2019/01/01", 0, false},
		{"1569479412", 0, false},
		{"", 0, false},
		{"yesterday", 0, false},
	}
	for _, tc := range cases {
		got, ok := ParseTimestamp([]byte(tc.in))
		if ok != tc.wantOK || (ok && got != tc.want) {
			t.Errorf("ParseTimestamp(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.wantOK)
		}
	}
}

func TestDaysFromCivilMatchesTimePackage(t *testing.T) {
	for _, y := range []int64{1, 4, 100, 399, 400, 1600, 1900, 1969, 1970, 2000, 2024, 2100, 9999} {
		for m := int64(1); m <= 12; m++ {
			for _, d := range []int64{1, 15, daysIn(y, m)} {
				want := time.Date(int(y), time.Month(m), int(d), 0, 0, 0, 0, time.UTC).Unix() / 86400
				if got := daysFromCivil(y, m, d); got != want {
					t.Fatalf("daysFromCivil(%d,%d,%d) = %d, want %d", y, m, d, got, want)
				}
			}
		}
	}
}

func TestBigEndianFloat(t *testing.T) {
	cases := []struct {
		in   []byte
		want float64
	}{
		{nil, 0},
		{[]byte{0x01}, 1},
		{[]byte{0xff}, -1},
		{beBytes(-2750, 5), -2750},
		{beBytes(math.MaxInt64, 8), math.MaxInt64},
		{beBytes(27_500_000, 16), 27_500_000},
		{beBytes(-1, 16), -1},
		{beBytes(-27_500_000, 16), -27_500_000},
		{append([]byte{0x01}, make([]byte, 8)...), math.Pow(2, 64)},
	}
	for _, tc := range cases {
		if got := bigEndianFloat(tc.in); got != tc.want {
			t.Errorf("bigEndianFloat(%x) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestParseTypeBytes(t *testing.T) {
	for _, s := range []string{"identify", "track", "page", "screen", "group", "alias", "TRACK", "Identify", "", "tracks", "x"} {
		if got, want := parseTypeBytes([]byte(s)), segment.ParseType(s); got != want {
			t.Errorf("parseTypeBytes(%q) = %v, want %v", s, got, want)
		}
	}
}
