package readers

import (
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
)

// TestEventTimeBounds reads the bounds of each row group's event times
// from the footer of real files: each timestamp unit and DATE, NULLs that
// fall through to original_timestamp, and the cases the statistics cannot
// tell (none written, text, INT96, rows without any event time), which
// must never give bounds.
func TestEventTimeBounds(t *testing.T) {
	day := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)
	us := func(d, h int) int64 { return day.AddDate(0, 0, d).Add(time.Duration(h) * time.Hour).UnixMicro() }
	tsMicros := opt(parquet.Timestamp(parquet.Microsecond))
	type bounds struct {
		lo, hi int64
		ok     bool
	}
	none := bounds{}
	cases := []struct {
		name string
		cols []tcol
		rows [][]any // two row groups of two rows each
		opts []parquet.WriterOption
		want [2]bounds
	}{
		{
			name: "micros",
			cols: []tcol{{"event", strNode}, {"timestamp", tsMicros}},
			rows: [][]any{{"e", us(0, 5)}, {"e", us(0, 1)}, {"e", us(2, 3)}, {"e", us(1, 23)}},
			want: [2]bounds{{us(0, 1), us(0, 5), true}, {us(1, 23), us(2, 3), true}},
		},
		{
			name: "millis",
			cols: []tcol{{"event", strNode}, {"timestamp", opt(parquet.Timestamp(parquet.Millisecond))}},
			rows: [][]any{{"e", us(0, 5) / 1000}, {"e", us(0, 1) / 1000}, {"e", us(2, 3) / 1000}, {"e", us(1, 23) / 1000}},
			want: [2]bounds{{us(0, 1), us(0, 5), true}, {us(1, 23), us(2, 3), true}},
		},
		{
			name: "nanos",
			cols: []tcol{{"event", strNode}, {"timestamp", opt(parquet.Timestamp(parquet.Nanosecond))}},
			rows: [][]any{{"e", us(0, 5)*1000 + 999}, {"e", us(0, 1) * 1000}, {"e", us(2, 3) * 1000}, {"e", us(1, 23) * 1000}},
			want: [2]bounds{{us(0, 1), us(0, 5), true}, {us(1, 23), us(2, 3), true}},
		},
		{
			name: "date",
			cols: []tcol{{"event", strNode}, {"timestamp", opt(parquet.Date())}},
			rows: [][]any{{"e", int32(us(0, 0) / 86400e6)}, {"e", int32(us(1, 0) / 86400e6)}, {"e", int32(us(3, 0) / 86400e6)}, {"e", int32(us(3, 0) / 86400e6)}},
			want: [2]bounds{{us(0, 0), us(1, 0), true}, {us(3, 0), us(3, 0), true}},
		},
		{
			// Row group 0: a NULL timestamp falls through to
			// original_timestamp, whose bounds widen the range; row group
			// 1: timestamp entirely NULL, original_timestamp decides.
			name: "null falls through to original_timestamp",
			cols: []tcol{{"event", strNode}, {"timestamp", tsMicros}, {"original_timestamp", tsMicros}},
			rows: [][]any{{"e", us(1, 0), us(0, 4)}, {"e", nil, us(5, 0)}, {"e", nil, us(2, 0)}, {"e", nil, us(2, 7)}},
			want: [2]bounds{{us(0, 4), us(5, 0), true}, {us(2, 0), us(2, 7), true}},
		},
		{
			// A row with none of the four: it must be read and counted.
			name: "a row without any event time",
			cols: []tcol{{"event", strNode}, {"timestamp", tsMicros}},
			rows: [][]any{{"e", us(1, 0)}, {"e", nil}, {"e", us(2, 0)}, {"e", us(2, 1)}},
			want: [2]bounds{none, {us(2, 0), us(2, 1), true}},
		},
		{
			name: "no statistics written",
			cols: []tcol{{"event", strNode}, {"timestamp", tsMicros}},
			rows: [][]any{{"e", us(0, 5)}, {"e", us(0, 1)}, {"e", us(2, 3)}, {"e", us(1, 23)}},
			opts: []parquet.WriterOption{parquet.SkipPageBounds("timestamp")},
			want: [2]bounds{none, none},
		},
		{
			name: "text",
			cols: []tcol{{"event", strNode}, {"timestamp", strNode}},
			rows: [][]any{{"e", "2024-03-01T05:00:00Z"}, {"e", "2024-03-01T01:00:00Z"}, {"e", "2024-03-03T03:00:00Z"}, {"e", "2024-03-02T23:00:00Z"}},
			want: [2]bounds{none, none},
		},
		{
			name: "int96",
			cols: []tcol{{"event", strNode}, {"timestamp", opt(parquet.Leaf(parquet.Int96Type))}},
			rows: [][]any{{"e", julian(time.UnixMicro(us(0, 5)))}, {"e", julian(time.UnixMicro(us(0, 1)))},
				{"e", julian(time.UnixMicro(us(2, 3)))}, {"e", julian(time.UnixMicro(us(1, 23)))}},
			want: [2]bounds{none, none},
		},
		{
			// timestamp has no statistics, but it has no NULL either:
			// what sent_at says cannot bound the rows.
			name: "a later column cannot stand in for one without statistics",
			cols: []tcol{{"event", strNode}, {"timestamp", tsMicros}, {"sent_at", tsMicros}},
			rows: [][]any{{"e", us(0, 5), us(0, 5)}, {"e", us(0, 1), us(0, 1)}, {"e", us(2, 3), us(2, 3)}, {"e", us(1, 23), us(1, 23)}},
			opts: []parquet.WriterOption{parquet.SkipPageBounds("timestamp")},
			want: [2]bounds{none, none},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeParquet(t, t.TempDir(), "x.parquet", c.cols, c.rows, append(c.opts, parquet.MaxRowsPerRowGroup(2))...)
			p, err := open(t, path, objectFor(path, "tracks", ""), Hint{})
			if err != nil {
				t.Fatal(err)
			}
			if n := len(p.RowGroups()); n != 2 {
				t.Fatalf("%d row groups, want 2", n)
			}
			for i, w := range c.want {
				lo, hi, ok := p.EventTimeBounds(i)
				if ok != w.ok || (ok && (lo != w.lo || hi != w.hi)) {
					t.Errorf("row group %d: bounds %v..%v ok %v, want %v..%v ok %v", i,
						time.UnixMicro(lo).UTC(), time.UnixMicro(hi).UTC(), ok, time.UnixMicro(w.lo).UTC(), time.UnixMicro(w.hi).UTC(), w.ok)
				}
			}
		})
	}
}
