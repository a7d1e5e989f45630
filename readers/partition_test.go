package readers

import (
	"strings"
	"testing"
	"time"
)

func day(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestParsePartition(t *testing.T) {
	tests := []struct {
		name, key string
		want      Partition
	}{
		{"data lakes", "segment-data/data/src1/segment_type=track/day=2024-01-02/hr=05/part-0000.snappy.parquet",
			Partition{Day: day("2024-01-02"), HasDay: true, Hour: 5, SegmentType: "track", Table: "src1"}},
		{"segment_type upper case", "x/SEGMENT_TYPE=Identify/part-0.parquet",
			Partition{Hour: -1, SegmentType: "identify", Table: "x"}},
		{"data lakes event table", "lake/TRACK_Order_Completed/day=2024-03-01/hr=23/p.parquet",
			Partition{Day: day("2024-03-01"), HasDay: true, Hour: 23, Table: "track_order_completed"}},
		{"dt", "exports/tracks/dt=2024-02-29/000000000000.parquet",
			Partition{Day: day("2024-02-29"), HasDay: true, Hour: -1, Table: "tracks"}},
		{"date compact", "t/identifies/date=20240105/a.parquet",
			Partition{Day: day("2024-01-05"), HasDay: true, Hour: -1, Table: "identifies"}},
		{"hive year month day hour", "rudder-datalake/ns/order_completed/year=2023/month=12/day=31/hour=07/f.parquet",
			Partition{Day: day("2023-12-31"), HasDay: true, Hour: 7, Table: "order_completed"}},
		{"hive without day", "ns/pages/year=2023/month=12/f.parquet",
			Partition{Hour: -1, Table: "pages"}},
		{"hive invalid date", "ns/pages/year=2023/month=02/day=30/f.parquet",
			Partition{Hour: -1, Table: "pages"}},
		{"plain YYYY/MM/DD/HH", "p/rudder-datalake/ns/tracks/2024/01/02/13/x.parquet",
			Partition{Day: day("2024-01-02"), HasDay: true, Hour: 13, Table: "tracks"}},
		{"plain YYYY/MM/DD", "tracks/2024/01/02/x.parquet",
			Partition{Day: day("2024-01-02"), HasDay: true, Hour: -1, Table: "tracks"}},
		{"plain YYYY-MM-DD folder", "exports/2024-06-30/users/000000000001.parquet",
			Partition{Day: day("2024-06-30"), HasDay: true, Hour: -1, Table: "users"}},
		{"day folder is not the file name", "tracks/2024/01/02.parquet",
			Partition{Hour: -1, Table: "01"}},
		{"not a date: month 13", "tracks/2024/13/02/x.parquet",
			Partition{Hour: -1, Table: "02"}},
		{"not a date: year 0001, the zero time (found by make fuzz)", "0001-01-01/x.parquet",
			Partition{Hour: -1, Table: "0001-01-01"}},
		{"not a date: year 1899", "t/dt=18991231/x.parquet",
			Partition{Hour: -1, Table: "t"}},
		{"hour 24 is a folder", "tracks/2024/01/02/24/x.parquet",
			Partition{Day: day("2024-01-02"), HasDay: true, Hour: -1, Table: "24"}},
		{"bigquery sharded", "dataset/order_completed/000000000000.parquet",
			Partition{Hour: -1, Table: "order_completed"}},
		{"gs uri drops the bucket", "gs://bucket/order_completed.parquet",
			Partition{Hour: -1}},
		{"gs uri", "gs://bucket/ds/Tracks/000000000000.parquet",
			Partition{Hour: -1, Table: "tracks"}},
		{"nearest date wins", "day=2020-01-01/tracks/dt=2024-05-06/x.parquet",
			Partition{Day: day("2024-05-06"), HasDay: true, Hour: -1, Table: "tracks"}},
		{"bad partition values ignored", "t/day=yesterday/hr=99/x.parquet",
			Partition{Hour: -1, Table: "t"}},
		{"unknown key=value is not a table", "identifies/region=eu/x.parquet",
			Partition{Hour: -1, Table: "identifies"}},
		{"file only", "x.parquet", Partition{Hour: -1}},
		{"empty", "", Partition{Hour: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParsePartition(tt.key); got != tt.want {
				t.Errorf("ParsePartition(%q)\n got %+v\nwant %+v", tt.key, got, tt.want)
			}
		})
	}
}

func TestParseDay(t *testing.T) {
	// 00:30 in UTC+2 is still the previous day in UTC: partitions are UTC days.
	now := time.Date(2024, 3, 1, 0, 30, 0, 0, time.FixedZone("UTC+2", 2*3600))
	tests := []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{in: "2024-01-31", want: day("2024-01-31")},
		{in: " 2024-02-29 ", want: day("2024-02-29")},
		{in: "today", want: day("2024-02-29")},
		{in: "Yesterday", want: day("2024-02-28")},
		{in: "2023-02-29", wantErr: true},
		{in: "2024/01/31", wantErr: true},
		{in: "tomorrow", wantErr: true},
		{in: "", wantErr: true},
		{in: "1900-01-01", want: day("1900-01-01")},
		{in: "2999-12-31", want: day("2999-12-31")},
		{in: "0001-01-01", wantErr: true}, // the zero time: no bound, where it means none selected
		{in: "1899-12-31", wantErr: true},
		{in: "3000-01-01", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseDay(tt.in, now)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseDay(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err != nil {
			if !strings.Contains(err.Error(), "YYYY-MM-DD") {
				t.Errorf("ParseDay(%q) error %q does not say what it wants", tt.in, err)
			}
			continue
		}
		if !got.Equal(tt.want) || got.Location() != time.UTC {
			t.Errorf("ParseDay(%q) = %v, want %v UTC", tt.in, got, tt.want)
		}
	}
}

func FuzzParsePartition(f *testing.F) {
	for _, s := range []string{
		"segment-data/data/s/segment_type=track/day=2024-01-02/hr=05/p.parquet",
		"a/year=2023/month=12/day=31/hour=07/f.parquet",
		"t/2024/01/02/13/x.parquet", "dt=20240101/x", "//", "=/=/=",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		p := ParsePartition(key)
		if p.Hour < -1 || p.Hour > 23 {
			t.Fatalf("hour %d out of range", p.Hour)
		}
		if p.HasDay != !p.Day.IsZero() {
			t.Fatalf("HasDay %v with Day %v", p.HasDay, p.Day)
		}
		if p.HasDay && (p.Day.Location() != time.UTC || p.Day != dayOf(p.Day)) {
			t.Fatalf("day %v is not a UTC midnight", p.Day)
		}
		if strings.Contains(p.Table, "/") || strings.Contains(p.Table, "=") {
			t.Fatalf("table %q", p.Table)
		}
	})
}
