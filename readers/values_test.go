package readers

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/convertro-etl/convertro-etl/convertro"
	"github.com/convertro-etl/convertro-etl/internal/segment"
)

// TestValuesInTheirOwnShortestForm is the wire page's value rule, checked
// from the Parquet file to the request: each case writes a real file whose
// `total` column has one physical and logical type, reads it through
// OpenParquet and ReadRowGroup, maps the row as an Order Completed and reads
// `val` back from the request URL. Every numeric type is sent in its own
// shortest decimal form: a FLOAT as the 32-bit value it holds, a DECIMAL of
// any precision and backing from its digits (never through a float64), an
// INT64 past 2^53 whole, text money without its `$` and commas.
func TestValuesInTheirOwnShortestForm(t *testing.T) {
	dec := func(scale, precision int, backing parquet.Type) parquet.Node {
		return opt(parquet.Decimal(scale, precision, backing))
	}
	cases := []struct {
		name  string
		node  parquet.Node
		value any
		want  string // val in the request
	}{
		// FLOAT: the 32-bit value's shortest form.
		{"FLOAT 49.99 is 49.99, not 49.9900016784668", opt(parquet.Leaf(parquet.FloatType)), float32(49.99), "49.99"},
		{"FLOAT 0.1 is 0.1", opt(parquet.Leaf(parquet.FloatType)), float32(0.1), "0.1"},
		{"FLOAT -1234.56 is -1234.56", opt(parquet.Leaf(parquet.FloatType)), float32(-1234.56), "-1234.56"},
		{"FLOAT 3e10 has no exponent", opt(parquet.Leaf(parquet.FloatType)), float32(3e10), "30000000000"},
		{"FLOAT dictionary-encoded 19.99", opt(parquet.Encoded(parquet.Leaf(parquet.FloatType), &parquet.RLEDictionary)), float32(19.99), "19.99"},

		// DOUBLE: the float64's shortest form.
		{"DOUBLE 49.99", opt(parquet.Leaf(parquet.DoubleType)), 49.99, "49.99"},
		{"DOUBLE 0.1+0.2 as computed", opt(parquet.Leaf(parquet.DoubleType)), 0.1 + func() float64 { return 0.2 }(), "0.30000000000000004"},
		{"DOUBLE 1e6 has no exponent", opt(parquet.Leaf(parquet.DoubleType)), 1e6, "1000000"},
		{"DOUBLE -0 is 0", opt(parquet.Leaf(parquet.DoubleType)), -1 * func() float64 { return 0 }(), "0"},

		// INT32 and INT64, signed and unsigned.
		{"INT32 27", opt(parquet.Int(32)), int32(27), "27"},
		{"INT32 -5", opt(parquet.Int(32)), int32(-5), "-5"},
		{"INT(16) 300", opt(parquet.Int(16)), int32(300), "300"},
		{"UINT32 4000000000 is not negative", opt(parquet.Uint(32)), int32(-294967296), "4000000000"},
		{"INT64 123456", opt(parquet.Int(64)), int64(123456), "123456"},
		{"INT64 2^53+1 keeps its last digit", opt(parquet.Int(64)), int64(1<<53 + 1), "9007199254740993"},
		{"INT64 min", opt(parquet.Int(64)), int64(-1 << 63), "-9223372036854775808"},
		{"UINT64 2^64-1", opt(parquet.Uint(64)), int64(-1), "18446744073709551615"},

		// DECIMAL over each backing.
		{"DECIMAL(9,2) INT32 27.50 is 27.5", dec(2, 9, parquet.Int32Type), int32(2750), "27.5"},
		{"DECIMAL(9,2) INT32 100.00 is 100", dec(2, 9, parquet.Int32Type), int32(10000), "100"},
		{"DECIMAL(9,0) INT32 -42", dec(0, 9, parquet.Int32Type), int32(-42), "-42"},
		{"DECIMAL(18,2) INT64 1299.50 is 1299.5", dec(2, 18, parquet.Int64Type), int64(129950), "1299.5"},
		{"DECIMAL(18,4) INT64 beyond a float64's digits", dec(4, 18, parquet.Int64Type), int64(123456789012345678), "12345678901234.5678"},
		{"DECIMAL(18,2) INT64 dictionary-encoded", opt(parquet.Encoded(parquet.Decimal(2, 18, parquet.Int64Type), &parquet.RLEDictionary)), int64(4999), "49.99"},
		{"DECIMAL(38,6) FIXED_LEN_BYTE_ARRAY(16) 27.500000 is 27.5", dec(6, 38, parquet.FixedLenByteArrayType(16)), flba(beBytes(27_500000, 16)), "27.5"},
		{"DECIMAL(38,6) FIXED_LEN_BYTE_ARRAY(16) -0.000005", dec(6, 38, parquet.FixedLenByteArrayType(16)), flba(beBytes(-5, 16)), "-0.000005"},
		{"DECIMAL(38,6) FIXED_LEN_BYTE_ARRAY(16) -0.000000 is 0", dec(6, 38, parquet.FixedLenByteArrayType(16)), flba(beBytes(0, 16)), "0"},
		{"DECIMAL(38,10) FIXED_LEN_BYTE_ARRAY(16) with 30 digits",
			dec(10, 38, parquet.FixedLenByteArrayType(16)), flba(bigBytes("123456789012345678901234567890", 16)), "12345678901234567890.123456789"},
		{"DECIMAL(38,2) FIXED_LEN_BYTE_ARRAY(16) negative beyond int64",
			dec(2, 38, parquet.FixedLenByteArrayType(16)), flba(bigTwos("-99999999999999999999999999999999999999", 16)), "-999999999999999999999999999999999999.99"},
		{"DECIMAL(10,2) FIXED_LEN_BYTE_ARRAY(5) -27.50", dec(2, 10, parquet.FixedLenByteArrayType(5)), flba(beBytes(-2750, 5)), "-27.5"},
		{"DECIMAL(20,2) BYTE_ARRAY 49.99", dec(2, 20, parquet.ByteArrayType), beBytes(4999, 3), "49.99"},
		{"DECIMAL(76,20) BYTE_ARRAY with 70 digits",
			dec(20, 76, parquet.ByteArrayType), bigTwos(strings.Repeat("1234567890", 7), 32), "12345678901234567890123456789012345678901234567890.1234567890123456789"},

		// Text, parsed leniently: its own digits.
		{"text 27.50 is 27.5", strNode, "27.50", "27.5"},
		{"text money $1,299.50 is 1299.5", dictNode, " $1,299.50 ", "1299.5"},
		{"text refund -$5.00 is -5", strNode, "-$5.00", "-5"},
		{"text .5 is 0.5", strNode, ".5", "0.5"},
		{"text with 22 digits keeps them", strNode, "12345678901234567890.12", "12345678901234567890.12"},
		{"text with an exponent 1.5e3 is 1500", strNode, "1.5e3", "1500"},
		{"text NA is absent: the value is 1", strNode, "NA", "1"},
	}
	s := convertro.Settings{ClientName: "acme", SiteID: "42"}
	m, err := convertro.NewMapper(s)
	if err != nil {
		t.Fatal(err)
	}
	w := convertro.NewWire(s)
	dir := t.TempDir()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cols := []tcol{{"event_text", strNode}, {"order_id", strNode}, {"context_device_id", strNode},
				{"timestamp", opt(parquet.Timestamp(parquet.Millisecond))}, {"total", tc.node}}
			// The value under test between two NULLs, so that it is read both
			// from a dense position and after a definition level of NULL.
			rows := [][]any{
				{"Order Completed", "o-0", "d", int64(1704164645678), nil},
				{"Order Completed", "o-1", "d", int64(1704164645678), tc.value},
				{"Order Completed", "o-2", "d", int64(1704164645678), nil},
			}
			path := writeParquet(t, dir, fmt.Sprintf("value%d.parquet", i), cols, rows)
			p, err := open(t, path, objectFor(path, "order_completed", ""), Hint{})
			if err != nil {
				t.Fatal(err)
			}
			var vals []string
			err = p.ReadRowGroup(t.Context(), 0, 0, func(_ int64, batch []segment.Message) error {
				for j := range batch {
					ds, skip := m.Map(nil, &batch[j])
					if skip != convertro.SkipNone || len(ds) != 1 {
						return fmt.Errorf("row %d: skip %q, %d requests", j, skip, len(ds))
					}
					u, err := url.Parse(string(w.AppendURL(nil, &ds[0])))
					if err != nil {
						return err
					}
					vals = append(vals, u.Query().Get("val"))
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if want := []string{"1", tc.want, "1"}; strings.Join(vals, " ") != strings.Join(want, " ") {
				t.Errorf("val of the rows (NULL, value, NULL) = %q, want %q", vals, want)
			}
		})
	}
}

// bigTwos is the decimal string s, which may be negative, as a big-endian
// two's complement of n bytes.
func bigTwos(s string, n int) []byte {
	neg := strings.HasPrefix(s, "-")
	b := bigBytes(strings.TrimPrefix(s, "-"), n)
	if neg {
		carry := 1
		for i := n - 1; i >= 0; i-- {
			v := int(^b[i]) + carry
			b[i] = byte(v)
			carry = v >> 8
		}
	}
	return b
}

// TestFieldNulls: what the footer alone says of a field's NULLs, for plans.
func TestFieldNulls(t *testing.T) {
	dir := t.TempDir()
	cols := []tcol{{"event", parquet.String()}, {"anonymous_id", strNode}, {"context.device.id", strNode}}
	rows := [][]any{
		{"e", "a-1", nil},
		{"e", "a-2", "d-2"},
		{"e", nil, nil}, // NULL anonymous_id; the device id NULL too
		{"e", "a-4", nil},
		{"e", "a-5", nil}, // second row group: device id NULL throughout
		{"e", "a-6", nil},
	}
	path := writeParquet(t, dir, "nulls.parquet", cols, rows, parquet.MaxRowsPerRowGroup(4))
	p, err := open(t, path, objectFor(path, "tracks", ""), Hint{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		group     int
		field     string
		want      int64
		wantKnown bool
	}{
		{0, "context_device_id", 3, true}, // a nested column, by its warehouse name
		{0, "anonymous_id", 1, true},
		{1, "context_device_id", 2, true},
		{1, "anonymous_id", 0, true}, // 0 believed: the chunk has min and max values
		{0, "event", 0, true},        // REQUIRED
		{0, "user_id", 4, true},      // no column: NULL in every row
		{1, "user_id", 2, true},
		{2, "anonymous_id", 0, false}, // no such row group
	}
	for _, tc := range cases {
		n, known := p.FieldNulls(tc.group, tc.field)
		if n != tc.want || known != tc.wantKnown {
			t.Errorf("FieldNulls(%d, %q) = %d, %v; want %d, %v", tc.group, tc.field, n, known, tc.want, tc.wantKnown)
		}
	}
}

// TestFieldNullsWithoutBounds: a null count of 0 beside no min or max value
// is what a writer that writes no statistics leaves too: not believed.
func TestFieldNullsWithoutBounds(t *testing.T) {
	dir := t.TempDir()
	cols := []tcol{{"event", parquet.String()}, {"anonymous_id", strNode}, {"context_device_id", strNode}}
	rows := [][]any{{"e", "a-1", nil}, {"e", "a-2", nil}}
	path := writeParquet(t, dir, "nobounds.parquet", cols, rows,
		parquet.SkipPageBounds("anonymous_id"), parquet.SkipPageBounds("context_device_id"))
	p, err := open(t, path, objectFor(path, "tracks", ""), Hint{})
	if err != nil {
		t.Fatal(err)
	}
	if n, known := p.FieldNulls(0, "anonymous_id"); known {
		t.Errorf("anonymous_id without bounds: %d NULLs, known; want unknown", n)
	}
	if n, known := p.FieldNulls(0, "context_device_id"); n != 2 || !known {
		t.Errorf("context_device_id all NULL: %d, %v; want 2, known", n, known)
	}
}
