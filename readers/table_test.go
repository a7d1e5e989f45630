package readers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/convertro-etl/convertro-etl/internal/segment"
)

func TestTableReadsColumnsByName(t *testing.T) {
	dir := t.TempDir()
	ts := parquet.Timestamp(parquet.Millisecond)
	path := writeParquet(t, dir, "m.parquet", []tcol{
		{"User_ID", parquet.String()},
		{"member", opt(parquet.Leaf(parquet.BooleanType))},
		{"in_text", opt(parquet.String())},
		{"seen_at", opt(ts)},
		{"score", opt(parquet.Leaf(parquet.DoubleType))},
		{"context.device.id", opt(parquet.String())},
	}, [][]any{
		{"u1", true, "TRUE", int64(1709287200123), 1.5, "d1"},
		{"u2", false, "no", nil, nil, nil},
		{"u3", nil, "2024-03-01T10:00:00Z", int64(0), 2.0, "d3"},
	}, parquet.MaxRowsPerRowGroup(2))
	o := objectFor(path, "", "")
	tbl, err := OpenTable(context.Background(), openLocal(t, path), o)
	if err != nil {
		t.Fatal(err)
	}
	if got := tbl.RowGroups(); len(got) != 2 || tbl.Rows() != 3 {
		t.Fatalf("row groups %v, rows %d; want [2 1], 3", got, tbl.Rows())
	}
	for name, want := range map[string]ColumnKind{"user_id": ColumnText, "MEMBER": ColumnBool, "seen_at": ColumnTime,
		"score": ColumnFloat, "context_device_id": ColumnText, "context.device.id": ColumnText} {
		if k, ok := tbl.Column(name); !ok || k != want {
			t.Errorf("Column(%q) = %v, %v; want %v, true", name, k, ok, want)
		}
	}
	if _, ok := tbl.Column("missing"); ok {
		t.Error("Column(missing) found")
	}
	type row struct {
		user, text       string
		member, inText   segment.Bool
		seen, inTextTime segment.Time
		null             []bool
	}
	var got []row
	cols := []string{"user_id", "member", "in_text", "seen_at", "context_device_id", "absent"}
	for g := range tbl.RowGroups() {
		err := tbl.ReadRowGroup(context.Background(), g, cols, func(_ int64, c []Cell) error {
			r := row{user: string(c[0].Text), member: c[1].Bool, inText: c[2].Bool, seen: c[3].Time,
				inTextTime: c[2].Time, text: string(c[3].Text)}
			for _, cell := range c {
				r.null = append(r.null, cell.Null)
			}
			got = append(got, r)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 3 {
		t.Fatalf("%d rows, want 3", len(got))
	}
	if got[0].user != "u1" || got[0].member != segment.True || got[0].inText != segment.True ||
		got[0].seen != segment.At(1709287200123000) || got[0].text != "2024-03-01T10:00:00.123Z" {
		t.Errorf("row 0: %+v", got[0])
	}
	if got[1].member != segment.False || got[1].inText != segment.Absent || !got[1].null[3] || !got[1].null[4] {
		t.Errorf("row 1: %+v", got[1])
	}
	if !got[2].null[1] || got[2].inTextTime != segment.At(1709287200000000) || got[2].seen != segment.At(0) {
		t.Errorf("row 2: %+v", got[2])
	}
	for i, r := range got {
		if !r.null[5] {
			t.Errorf("row %d: a column the table lacks is not NULL", i)
		}
	}
}

func TestTableBadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.parquet")
	if err := os.WriteFile(path, []byte("PAR1 this is not parquet PAR1"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := OpenTable(context.Background(), openLocal(t, path), objectFor(path, "", ""))
	if !errors.Is(err, ErrBadFile) {
		t.Fatalf("err = %v, want ErrBadFile", err)
	}
}

// TestTableDecimals: a DECIMAL column reads as its exact decimal text, with
// every digit of its scale, whatever its backing type; never as the
// unscaled integer nor through a float. Unsigned integers read as unsigned.
func TestTableDecimals(t *testing.T) {
	dir := t.TempDir()
	path := writeParquet(t, dir, "d.parquet", []tcol{
		{"d32", opt(parquet.Decimal(2, 9, parquet.Int32Type))},
		{"d64", opt(parquet.Decimal(3, 18, parquet.Int64Type))},
		{"dfixed", opt(parquet.Decimal(10, 38, parquet.FixedLenByteArrayType(16)))},
		{"dbytes", opt(parquet.Decimal(0, 38, parquet.ByteArrayType))},
		{"u32", opt(parquet.Uint(32))},
		{"u64", opt(parquet.Uint(64))},
		{"i64", opt(parquet.Int(64))},
	}, [][]any{
		{int32(2750), int64(-1500), flba(bigBytes("12345678901234567890123456789", 16)), beBytes(-123456789012, 6), int32(-1), int64(-1), int64(-1)},
		{int32(-1), int64(0), flba(beBytes(5, 16)), nil, int32(7), int64(7), int64(7)},
	})
	tbl, err := OpenTable(context.Background(), openLocal(t, path), objectFor(path, "", ""))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"d32", "d64", "dfixed", "dbytes"} {
		if k, ok := tbl.Column(c); !ok || k != ColumnDecimal {
			t.Errorf("Column(%q) = %v, %v; want ColumnDecimal", c, k, ok)
		}
	}
	var got [][]string
	if k, ok := tbl.Column("u64"); !ok || k != ColumnInt {
		t.Errorf("Column(u64) = %v, %v; want ColumnInt", k, ok)
	}
	err = tbl.ReadRowGroup(context.Background(), 0, []string{"d32", "d64", "dfixed", "dbytes", "u32", "u64", "i64"}, func(_ int64, c []Cell) error {
		var r []string
		for _, cell := range c {
			if cell.Null {
				r = append(r, "NULL")
				continue
			}
			r = append(r, string(cell.Text))
		}
		got = append(got, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"27.50", "-1.500", "1234567890123456789.0123456789", "-123456789012", "4294967295", "18446744073709551615", "-1"},
		{"-0.01", "0.000", "0.0000000005", "NULL", "7", "7", "7"},
	}
	for i := range want {
		if i >= len(got) || fmt.Sprint(got[i]) != fmt.Sprint(want[i]) {
			t.Errorf("rows %q, want %q", got, want)
			break
		}
	}
}
