package readers

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/internal/segment"
)

// The seed corpora live in testdata/fuzz/<FuzzName>/; without -fuzz these
// targets run them as plain tests.

func FuzzParseNumber(f *testing.F) {
	for _, s := range []string{"27.50", " $1,299.50 ", "NA", "", "-$5", "1e3", "NaN", "1,2,3", "0x1p-2"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, ok := ParseNumber(b)
		if !ok {
			if v != 0 {
				t.Fatalf("ParseNumber(%q) = %v with ok false", b, v)
			}
			return
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Fatalf("ParseNumber(%q) = %v", b, v)
		}
		// Whatever was accepted, with the decorations removed, is a number
		// strconv agrees on.
		s := strings.TrimSpace(string(b))
		s = strings.Replace(s, "$", "", 1)
		s = strings.ReplaceAll(s, ",", "")
		want, err := strconv.ParseFloat(s, 64)
		if err != nil || want != v {
			t.Fatalf("ParseNumber(%q) = %v; strconv says %v, %v", b, v, want, err)
		}
	})
}

func FuzzParseBool(f *testing.F) {
	for _, s := range []string{"true", "FALSE", "yes", "", " true"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got := ParseBool(b)
		want := segment.Absent
		switch {
		case strings.EqualFold(string(b), "true") && len(b) == 4:
			want = segment.True
		case strings.EqualFold(string(b), "false") && len(b) == 5:
			want = segment.False
		}
		if got != want {
			t.Fatalf("ParseBool(%q) = %v, want %v", b, got, want)
		}
	})
}

func FuzzParseTimestamp(f *testing.F) {
	for _, s := range []string{"2020-02-11T04:56:55.175Z", "2020-02-11 04:56:55.175116", "2019-09-26T06:30:12.984+0530",
		"2019-09-26", "2020-02-11 04:56:55.175116 UTC", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999-23:59"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		us, ok := ParseTimestamp(b)
		if !ok {
			return
		}
		if us < minMicros || us > maxMicros {
			t.Fatalf("ParseTimestamp(%q) = %d, out of range", b, us)
		}
		// Cross-check the RFC 3339 forms with the time package.
		s := strings.TrimSpace(string(b))
		if len(s) > 19 && s[10] == 'T' && (strings.HasSuffix(s, "Z") || s[len(s)-3] == ':') && s[16] == ':' && !strings.Contains(s, ",") {
			tm, err := time.Parse(time.RFC3339Nano, s)
			if err == nil && tm.Second() < 60 {
				want := tm.Unix()*1e6 + int64(tm.Nanosecond()/1000)
				if want != us {
					t.Fatalf("ParseTimestamp(%q) = %d, time.Parse says %d", b, us, want)
				}
			}
		}
	})
}

// bytesFile is a File over a byte slice.
type bytesFile struct{ *bytes.Reader }

func (bytesFile) Close() error { return nil }

func FuzzOpenParquet(f *testing.F) {
	f.Add([]byte("PAR1"))
	f.Add([]byte("PAR1\x00\x00\x00\x00PAR1"))
	f.Add(hugeListParquet()) // also in testdata/fuzz/FuzzOpenParquet/huge_schema_list
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		o := Object{URI: "fuzz.parquet", Partition: Partition{Table: "tracks"}}
		p, err := OpenParquet(ctx, bytesFile{bytes.NewReader(data)}, o, Hint{})
		if err != nil {
			if !errors.Is(err, ErrBadFile) || !strings.Contains(err.Error(), "fuzz.parquet") {
				t.Fatalf("open: %v: want ErrBadFile naming the object", err)
			}
			return
		}
		var rows int64
		for i, rg := range p.RowGroups() {
			if rg.Rows > 1<<20 {
				continue // a footer may claim any count; decoding it all proves nothing more
			}
			err := p.ReadRowGroup(ctx, i, 64, func(_ int64, batch []segment.Message) error {
				rows += int64(len(batch))
				return nil
			})
			if err != nil && (!errors.Is(err, ErrBadFile) || !strings.Contains(err.Error(), "fuzz.parquet")) {
				t.Fatalf("row group %d: %v: want ErrBadFile naming the object", i, err)
			}
		}
	})
}
