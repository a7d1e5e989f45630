package readers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/deprecated"

	"github.com/convertro-etl/convertro-etl/internal/segment"
)

// localFile adapts an *os.File to File for tests.
type localFile struct {
	*os.File
	size int64
}

func (f localFile) Size() int64 { return f.size }

func openLocal(t testing.TB, path string) File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return localFile{f, st.Size()}
}

func objectFor(path, table, segmentType string) Object {
	return Object{URI: path, Key: filepath.Base(path), Partition: Partition{Table: table, SegmentType: segmentType, Hour: -1}}
}

func open(t testing.TB, path string, o Object, h Hint) (*ParquetFile, error) {
	t.Helper()
	return OpenParquet(context.Background(), openLocal(t, path), o, h)
}

// tcol is one column of a test file: a dotted path (nested groups are
// made from the dots) and its leaf node.
type tcol struct {
	path string
	node parquet.Node
}

type flba []byte // a FIXED_LEN_BYTE_ARRAY value

func toValue(v any) parquet.Value {
	switch v := v.(type) {
	case string:
		return parquet.ByteArrayValue([]byte(v))
	case []byte:
		return parquet.ByteArrayValue(v)
	case flba:
		return parquet.FixedLenByteArrayValue(v)
	case int32:
		return parquet.Int32Value(v)
	case int64:
		return parquet.Int64Value(v)
	case int:
		return parquet.Int64Value(int64(v))
	case float32:
		return parquet.FloatValue(v)
	case float64:
		return parquet.DoubleValue(v)
	case bool:
		return parquet.BooleanValue(v)
	case deprecated.Int96:
		return parquet.Int96Value(v)
	}
	panic(fmt.Sprintf("toValue: %T", v))
}

// buildGroup nests leaves by their dotted paths; every group is optional.
func buildGroup(cols []tcol) parquet.Group {
	g := parquet.Group{}
	sub := map[string][]tcol{}
	var order []string
	for _, c := range cols {
		head, rest, nested := strings.Cut(c.path, ".")
		if !nested {
			g[head] = c.node
			continue
		}
		if _, ok := sub[head]; !ok {
			order = append(order, head)
		}
		sub[head] = append(sub[head], tcol{rest, c.node})
	}
	for _, h := range order {
		g[h] = parquet.Optional(buildGroup(sub[h]))
	}
	return g
}

// writeParquet writes rows (one value per column, nil = NULL) to dir/name.
func writeParquet(t testing.TB, dir, name string, cols []tcol, rows [][]any, opts ...parquet.WriterOption) string {
	t.Helper()
	schema := parquet.NewSchema("segment", buildGroup(cols))
	rb := parquet.NewRowBuilder(schema)
	idx := make([]int, len(cols))
	for j, c := range cols {
		leaf, ok := schema.Lookup(strings.Split(c.path, ".")...)
		idx[j] = leaf.ColumnIndex
		if !ok && len(rows) > 0 {
			t.Fatalf("no leaf %q", c.path)
		}
	}
	prows := make([]parquet.Row, 0, len(rows))
	for _, r := range rows {
		rb.Reset()
		for j, v := range r {
			if v != nil {
				rb.Add(idx[j], toValue(v))
			}
		}
		prows = append(prows, rb.Row())
	}
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := parquet.NewWriter(f, append([]parquet.WriterOption{schema}, opts...)...)
	if _, err := w.WriteRows(prows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// msg is a comparable copy of a segment.Message.
type msg struct {
	Type                                             segment.Type
	MessageID, UserID, AnonymousID, DeviceID         string
	EventText, Event, OrderID                        string
	Total, Revenue                                   num
	Repeat                                           segment.Bool
	Timestamp, OriginalTimestamp, SentAt, ReceivedAt segment.Time
	UserAgent, IP                                    string
	IntegrationsAll, IntegrationsConvertro           segment.Bool
}

// num is a comparable copy of a segment.Number.
type num struct {
	Value          float64
	Valid, Float32 bool
	Decimal        string
}

func numOf(n segment.Number) num {
	return num{Value: n.Value, Valid: n.Valid, Float32: n.Float32, Decimal: string(n.Decimal)}
}

// numV is a plain number: a DOUBLE, an INT32, an INT64 within 2^53.
func numV(v float64) num { return num{Value: v, Valid: true} }

// numD is an exact decimal, with the float64 nearest to it.
func numD(v float64, digits string) num { return num{Value: v, Valid: true, Decimal: digits} }

// numF is a FLOAT.
func numF(v float32) num { return num{Value: float64(v), Valid: true, Float32: true} }

func copyMsg(m *segment.Message) msg {
	return msg{
		Type: m.Type, MessageID: string(m.MessageID), UserID: string(m.UserID), AnonymousID: string(m.AnonymousID), DeviceID: string(m.DeviceID),
		EventText: string(m.EventText), Event: string(m.Event), OrderID: string(m.OrderID),
		Total: numOf(m.Total), Revenue: numOf(m.Revenue), Repeat: m.Repeat,
		Timestamp: m.Timestamp, OriginalTimestamp: m.OriginalTimestamp, SentAt: m.SentAt, ReceivedAt: m.ReceivedAt,
		UserAgent: string(m.UserAgent), IP: string(m.IP),
		IntegrationsAll: m.IntegrationsAll, IntegrationsConvertro: m.IntegrationsConvertro,
	}
}

// readAll decodes every row group in order with the given batch size.
func readAll(t testing.TB, p *ParquetFile, batchSize int) []msg {
	t.Helper()
	var out []msg
	for i := range p.RowGroups() {
		next := int64(0)
		err := p.ReadRowGroup(context.Background(), i, batchSize, func(first int64, batch []segment.Message) error {
			if first != next {
				t.Fatalf("row group %d: batch starts at %d, want %d", i, first, next)
			}
			next += int64(len(batch))
			for j := range batch {
				out = append(out, copyMsg(&batch[j]))
			}
			return nil
		})
		if err != nil {
			t.Fatalf("ReadRowGroup(%d): %v", i, err)
		}
		if next != p.RowGroups()[i].Rows {
			t.Fatalf("row group %d: read %d rows, footer says %d", i, next, p.RowGroups()[i].Rows)
		}
	}
	return out
}

func mustOpenRead(t *testing.T, path string, o Object) []msg {
	t.Helper()
	p, err := open(t, path, o, Hint{})
	if err != nil {
		t.Fatal(err)
	}
	return readAll(t, p, 0)
}

func micros(s string) segment.Time {
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return segment.At(tm.UnixMicro())
}

// julian builds an INT96 timestamp (nanoseconds of the day, Julian day).
func julian(tm time.Time) deprecated.Int96 {
	tm = tm.UTC()
	days := tm.Unix()/86400 + julianUnixEpoch
	nanos := uint64(tm.UnixNano() - (tm.Unix()/86400)*86400*1e9)
	return deprecated.Int96{uint32(nanos), uint32(nanos >> 32), uint32(days)}
}

// beBytes is v as a big-endian two's complement of n bytes.
func beBytes(v int64, n int) []byte {
	b := make([]byte, n)
	for i := n - 1; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
	return b
}

// bigBytes is the decimal string s as a big-endian two's complement of n bytes.
func bigBytes(s string, n int) []byte {
	v, ok := new(big.Int).SetString(s, 10)
	if !ok {
		panic(s)
	}
	return v.FillBytes(make([]byte, n))
}

func opt(n parquet.Node) parquet.Node { return parquet.Optional(n) }

var (
	strNode  = opt(parquet.String())
	dictNode = opt(parquet.Encoded(parquet.String(), &parquet.RLEDictionary))
)

// base columns every typed-value case carries, so the file is a track file.
var baseCols = []tcol{{"event", strNode}, {"context_device_id", strNode}}

func TestParquetEncodings(t *testing.T) {
	ts := micros("2020-02-11T04:56:55.175116Z")
	tsMilli := micros("2020-02-11T04:56:55.175Z")
	cases := []struct {
		name  string
		col   tcol
		value any
		want  func(m msg) any
		exp   any
	}{
		// strings
		{"string utf8", tcol{"user_id", strNode}, "u-1", func(m msg) any { return m.UserID }, "u-1"},
		{"string dictionary", tcol{"user_id", dictNode}, "u-2", func(m msg) any { return m.UserID }, "u-2"},
		{"plain byte array", tcol{"user_id", opt(parquet.Leaf(parquet.ByteArrayType))}, []byte("u-3"), func(m msg) any { return m.UserID }, "u-3"},
		{"required string", tcol{"user_id", parquet.String()}, "u-4", func(m msg) any { return m.UserID }, "u-4"},
		{"int64 id", tcol{"user_id", opt(parquet.Int(64))}, int64(1234567890123), func(m msg) any { return m.UserID }, "1234567890123"},
		{"int32 id", tcol{"order_id", opt(parquet.Int(32))}, int32(-42), func(m msg) any { return m.OrderID }, "-42"},
		{"decimal(18,0) id", tcol{"user_id", opt(parquet.Decimal(0, 18, parquet.Int64Type))}, int64(42), func(m msg) any { return m.UserID }, "42"},
		{"decimal(9,2) id", tcol{"order_id", opt(parquet.Decimal(2, 9, parquet.Int32Type))}, int32(-105), func(m msg) any { return m.OrderID }, "-1.05"},
		{"decimal(38,0) flba id", tcol{"order_id", opt(parquet.Decimal(0, 38, parquet.FixedLenByteArrayType(16)))}, flba(bigBytes("123456789012345678901234", 16)), func(m msg) any { return m.OrderID }, "123456789012345678901234"},
		{"decimal(38,6) flba negative small id", tcol{"order_id", opt(parquet.Decimal(6, 38, parquet.FixedLenByteArrayType(16)))}, flba(beBytes(-5, 16)), func(m msg) any { return m.OrderID }, "-0.000005"},
		{"null string", tcol{"user_id", strNode}, nil, func(m msg) any { return m.UserID }, ""},
		// timestamps
		{"timestamp millis", tcol{"timestamp", opt(parquet.Timestamp(parquet.Millisecond))}, tsMilli.Micros / 1000, func(m msg) any { return m.Timestamp }, tsMilli},
		{"timestamp micros", tcol{"timestamp", opt(parquet.Timestamp(parquet.Microsecond))}, ts.Micros, func(m msg) any { return m.Timestamp }, ts},
		{"timestamp nanos", tcol{"timestamp", opt(parquet.Timestamp(parquet.Nanosecond))}, ts.Micros*1000 + 999, func(m msg) any { return m.Timestamp }, ts},
		{"timestamp nanos before 1970 floors", tcol{"timestamp", opt(parquet.Timestamp(parquet.Nanosecond))}, int64(-1), func(m msg) any { return m.Timestamp }, segment.At(-1)},
		{"timestamp not UTC-adjusted", tcol{"sent_at", opt(parquet.TimestampAdjusted(parquet.Millisecond, false))}, tsMilli.Micros / 1000, func(m msg) any { return m.SentAt }, tsMilli},
		{"int96", tcol{"received_at", opt(parquet.Leaf(parquet.Int96Type))}, julian(time.UnixMicro(ts.Micros)), func(m msg) any { return m.ReceivedAt }, ts},
		{"plain int64 micros", tcol{"original_timestamp", opt(parquet.Leaf(parquet.Int64Type))}, ts.Micros, func(m msg) any { return m.OriginalTimestamp }, ts},
		{"date", tcol{"timestamp", opt(parquet.Date())}, int32(18303), func(m msg) any { return m.Timestamp }, micros("2020-02-11T00:00:00Z")},
		{"iso text Z", tcol{"timestamp", strNode}, "2020-02-11T04:56:55.175Z", func(m msg) any { return m.Timestamp }, tsMilli},
		{"iso text space micros", tcol{"timestamp", strNode}, "2020-02-11 04:56:55.175116", func(m msg) any { return m.Timestamp }, ts},
		{"iso text offset", tcol{"timestamp", dictNode}, "2019-09-26T06:30:12.984+0530", func(m msg) any { return m.Timestamp }, micros("2019-09-26T01:00:12.984Z")},
		{"iso text date", tcol{"timestamp", strNode}, "2019-09-26", func(m msg) any { return m.Timestamp }, micros("2019-09-26T00:00:00Z")},
		{"bad text timestamp", tcol{"timestamp", strNode}, "yesterday", func(m msg) any { return m.Timestamp }, segment.Time{}},
		// numbers
		{"int32 total", tcol{"total", opt(parquet.Int(32))}, int32(27), func(m msg) any { return m.Total }, numV(27)},
		{"int64 total", tcol{"total", opt(parquet.Int(64))}, int64(-5), func(m msg) any { return m.Total }, numV(-5)},
		{"float total", tcol{"total", opt(parquet.Leaf(parquet.FloatType))}, float32(27.5), func(m msg) any { return m.Total }, numF(27.5)},
		{"double revenue", tcol{"revenue", opt(parquet.Leaf(parquet.DoubleType))}, 49.99, func(m msg) any { return m.Revenue }, numV(49.99)},
		{"double NaN is absent", tcol{"revenue", opt(parquet.Leaf(parquet.DoubleType))}, math.NaN(), func(m msg) any { return m.Revenue }, num{}},
		{"decimal int32", tcol{"total", opt(parquet.Decimal(2, 9, parquet.Int32Type))}, int32(2750), func(m msg) any { return m.Total }, numD(27.5, "27.50")},
		{"decimal int64", tcol{"total", opt(parquet.Decimal(2, 18, parquet.Int64Type))}, int64(129950), func(m msg) any { return m.Total }, numD(1299.5, "1299.50")},
		{"decimal flba 16", tcol{"total", opt(parquet.Decimal(6, 38, parquet.FixedLenByteArrayType(16)))}, flba(beBytes(27500000, 16)), func(m msg) any { return m.Total }, numD(27.5, "27.500000")},
		{"decimal flba negative", tcol{"total", opt(parquet.Decimal(6, 38, parquet.FixedLenByteArrayType(16)))}, flba(beBytes(-1500000, 16)), func(m msg) any { return m.Total }, numD(-1.5, "-1.500000")},
		{"decimal flba 5", tcol{"total", opt(parquet.Decimal(2, 10, parquet.FixedLenByteArrayType(5)))}, flba(beBytes(-2750, 5)), func(m msg) any { return m.Total }, numD(-27.5, "-27.50")},
		{"decimal byte array", tcol{"total", opt(parquet.Decimal(2, 20, parquet.ByteArrayType))}, beBytes(4999, 3), func(m msg) any { return m.Total }, numD(49.99, "49.99")},
		{"text number", tcol{"total", strNode}, "27.50", func(m msg) any { return m.Total }, numD(27.5, "27.50")},
		{"text money", tcol{"total", dictNode}, " $1,299.50 ", func(m msg) any { return m.Total }, numD(1299.5, "1299.50")},
		{"text NA", tcol{"total", strNode}, "NA", func(m msg) any { return m.Total }, num{}},
		{"text empty", tcol{"revenue", strNode}, "", func(m msg) any { return m.Revenue }, num{}},
		{"null number", tcol{"total", opt(parquet.Leaf(parquet.DoubleType))}, nil, func(m msg) any { return m.Total }, num{}},
		{"zero is a value", tcol{"total", opt(parquet.Leaf(parquet.DoubleType))}, 0.0, func(m msg) any { return m.Total }, numV(0)},
		// booleans
		{"boolean true", tcol{"repeat", opt(parquet.Leaf(parquet.BooleanType))}, true, func(m msg) any { return m.Repeat }, segment.True},
		{"boolean false", tcol{"repeat", opt(parquet.Leaf(parquet.BooleanType))}, false, func(m msg) any { return m.Repeat }, segment.False},
		{"text TRUE", tcol{"repeat", strNode}, "TRUE", func(m msg) any { return m.Repeat }, segment.True},
		{"text False", tcol{"integrations_convertro", strNode}, "False", func(m msg) any { return m.IntegrationsConvertro }, segment.False},
		{"text yes is absent", tcol{"repeat", strNode}, "yes", func(m msg) any { return m.Repeat }, segment.Absent},
		{"int repeat is absent", tcol{"repeat", opt(parquet.Int(32))}, int32(1), func(m msg) any { return m.Repeat }, segment.Absent},
		{"null boolean", tcol{"integrations_all", opt(parquet.Leaf(parquet.BooleanType))}, nil, func(m msg) any { return m.IntegrationsAll }, segment.Absent},
	}
	dir := t.TempDir()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cols := append(append([]tcol{}, baseCols...), tc.col)
			// Two rows: the value under test, then a NULL, so that both paths of
			// the definition levels run.
			rows := [][]any{{"order_completed", "d1", tc.value}, {"order_completed", "d2", nil}}
			if tc.col.node.Required() {
				rows[1][2] = tc.value
			}
			path := writeParquet(t, dir, fmt.Sprintf("case%d.parquet", i), cols, rows, parquet.Compression(&parquet.Snappy))
			got := mustOpenRead(t, path, objectFor(path, "", ""))
			if len(got) != 2 {
				t.Fatalf("got %d rows, want 2", len(got))
			}
			if g := tc.want(got[0]); g != tc.exp {
				t.Errorf("value = %#v, want %#v", g, tc.exp)
			}
			if got[0].Type != segment.TypeTrack || got[0].Event != "order_completed" || got[0].DeviceID != "d1" {
				t.Errorf("base columns = %+v", got[0])
			}
			if !tc.col.node.Required() {
				zero := tc.want(msg{})
				if g := tc.want(got[1]); g != zero {
					t.Errorf("NULL row value = %#v, want %#v", g, zero)
				}
			}
		})
	}
}

func TestParquetNamingVariants(t *testing.T) {
	ts := micros("2024-01-31T10:00:00.5Z")
	want := msg{
		Type: segment.TypeTrack, MessageID: "m1", UserID: "u1", AnonymousID: "a1", DeviceID: "d1", EventText: "Order Completed", Event: "order_completed",
		OrderID: "o1", Total: numV(27.5), Revenue: numV(25), Repeat: segment.True,
		Timestamp: ts, OriginalTimestamp: ts, SentAt: ts, ReceivedAt: ts, UserAgent: "Mozilla/5.0", IP: "10.0.0.1",
		IntegrationsAll: segment.False, IntegrationsConvertro: segment.True,
	}
	tsNode := opt(parquet.Timestamp(parquet.Microsecond))
	dbl := opt(parquet.Leaf(parquet.DoubleType))
	bl := opt(parquet.Leaf(parquet.BooleanType))
	values := []any{"m1", "u1", "a1", "d1", "Order Completed", "order_completed", "o1", 27.5, 25.0, true,
		ts.Micros, ts.Micros, ts.Micros, ts.Micros, "Mozilla/5.0", "10.0.0.1", false, true}
	nodes := []parquet.Node{strNode, strNode, strNode, dictNode, strNode, dictNode, strNode, dbl, dbl, bl, tsNode, tsNode, tsNode, tsNode, strNode, strNode, bl, bl}
	layouts := map[string][]string{
		"warehouse": {"id", "user_id", "anonymous_id", "context_device_id", "event_text", "event", "order_id", "total", "revenue", "repeat",
			"timestamp", "original_timestamp", "sent_at", "received_at", "context_user_agent", "context_ip", "integrations_all", "integrations_convertro"},
		"datalakes": {"id", "user_id", "anonymous_id", "context_device_id", "event_text", "event", "properties_order_id", "properties_total", "properties_revenue", "properties_repeat",
			"timestamp", "original_timestamp", "sent_at", "received_at", "context_user_agent", "context_ip", "integrations_all", "integrations_convertro"},
		"camel": {"messageId", "userId", "anonymousId", "contextDeviceId", "eventText", "event", "orderId", "total", "revenue", "repeat",
			"timestamp", "originalTimestamp", "sentAt", "receivedAt", "contextUserAgent", "contextIp", "integrationsAll", "integrationsConvertro"},
		"snowflake": {"ID", "USER_ID", "ANONYMOUS_ID", "CONTEXT_DEVICE_ID", "EVENT_TEXT", "EVENT", "ORDER_ID", "TOTAL", "REVENUE", "REPEAT",
			"TIMESTAMP", "ORIGINAL_TIMESTAMP", "SENT_AT", "RECEIVED_AT", "CONTEXT_USER_AGENT", "CONTEXT_IP", "INTEGRATIONS_ALL", "INTEGRATIONS_CONVERTRO"},
		"nested": {"messageId", "userId", "anonymousId", "context.device.id", "eventText", "event", "properties.orderId", "properties.total", "properties.revenue", "properties.repeat",
			"timestamp", "originalTimestamp", "sentAt", "receivedAt", "context.userAgent", "context.ip", "integrations.All", "integrations.Convertro"},
	}
	dir := t.TempDir()
	for name, names := range layouts {
		t.Run(name, func(t *testing.T) {
			cols := make([]tcol, len(names))
			for i, n := range names {
				cols[i] = tcol{n, nodes[i]}
			}
			path := writeParquet(t, dir, name+".parquet", cols, [][]any{values, values})
			got := mustOpenRead(t, path, objectFor(path, "", ""))
			for i, g := range got {
				if g != want {
					t.Errorf("row %d:\n got %+v\nwant %+v", i, g, want)
				}
			}
		})
	}
}

func TestParquetUsersTableIDIsUserID(t *testing.T) {
	dir := t.TempDir()
	path := writeParquet(t, dir, "users.parquet", []tcol{{"id", strNode}, {"context_device_id", strNode}}, [][]any{{"user-7", "d"}})
	got := mustOpenRead(t, path, objectFor(path, "users", ""))
	if got[0].UserID != "user-7" || got[0].MessageID != "" || got[0].Type != segment.TypeIdentify {
		t.Errorf("users row = %+v, want UserID user-7, no MessageID, identify", got[0])
	}
	// In identifies, id is the message id.
	path = writeParquet(t, dir, "identifies.parquet", []tcol{{"id", strNode}, {"user_id", strNode}}, [][]any{{"m-7", "u"}})
	got = mustOpenRead(t, path, objectFor(path, "identifies", ""))
	if got[0].MessageID != "m-7" || got[0].UserID != "u" || got[0].Type != segment.TypeIdentify {
		t.Errorf("identifies row = %+v", got[0])
	}
}

func TestParquetTypeDetection(t *testing.T) {
	dir := t.TempDir()
	withType := writeParquet(t, dir, "typed.parquet", []tcol{{"type", strNode}, {"user_id", strNode}, {"event", strNode}},
		[][]any{{"identify", "u", nil}, {"TRACK", "u", "e"}, {nil, "u", "e"}, {"page", "u", nil}})
	plainTrack := writeParquet(t, dir, "track.parquet", []tcol{{"user_id", strNode}, {"event", strNode}}, [][]any{{"u", "e"}})
	noEvent := writeParquet(t, dir, "noevent.parquet", []tcol{{"user_id", strNode}}, [][]any{{"u"}})
	deviceOnly := writeParquet(t, dir, "device.parquet", []tcol{{"context_device_id", strNode}}, [][]any{{"d"}})

	cases := []struct {
		name      string
		path      string
		o         Object
		h         Hint
		wantFile  segment.Type
		wantRows  []segment.Type
		wantError string
	}{
		{"type column per row, null falls back", withType, objectFor(withType, "identifies", ""), Hint{}, segment.TypeUnknown,
			[]segment.Type{segment.TypeIdentify, segment.TypeTrack, segment.TypeIdentify, segment.TypePage}, ""},
		{"hint does not override the type column", withType, objectFor(withType, "identifies", ""), Hint{Type: segment.TypeTrack}, segment.TypeUnknown,
			[]segment.Type{segment.TypeIdentify, segment.TypeTrack, segment.TypeIdentify, segment.TypePage}, ""},
		{"hint does not override the folder", noEvent, objectFor(noEvent, "identifies", ""), Hint{Type: segment.TypeTrack}, segment.TypeIdentify, nil, ""},
		{"hint does not override the event column", plainTrack, objectFor(plainTrack, "", ""), Hint{Type: segment.TypeIdentify}, segment.TypeTrack, nil, ""},
		{"type column without other clues", withType, objectFor(withType, "", ""), Hint{}, segment.TypeUnknown,
			[]segment.Type{segment.TypeIdentify, segment.TypeTrack, segment.TypeTrack, segment.TypePage}, ""},
		{"segment_type partition", noEvent, objectFor(noEvent, "tracks", "identify"), Hint{}, segment.TypeIdentify, nil, ""},
		{"identifies folder", noEvent, objectFor(noEvent, "identifies", ""), Hint{}, segment.TypeIdentify, nil, ""},
		{"event table folder", plainTrack, objectFor(plainTrack, "completed_order", ""), Hint{}, segment.TypeTrack, nil, ""},
		{"data lakes track_ table", plainTrack, objectFor(plainTrack, "track_order_completed", ""), Hint{}, segment.TypeTrack, nil, ""},
		{"pages folder", noEvent, objectFor(noEvent, "pages", ""), Hint{}, segment.TypePage, nil, ""},
		{"event column", plainTrack, objectFor(plainTrack, "", ""), Hint{}, segment.TypeTrack, nil, ""},
		{"hint types an undetectable file", noEvent, objectFor(noEvent, "", ""), Hint{Type: segment.TypeIdentify}, segment.TypeIdentify, nil, ""},
		{"undetectable", noEvent, objectFor(noEvent, "", ""), Hint{}, 0, nil, "give its type as a hint"},
		// A folder that names no Segment table (a dataset, a source id, "exports")
		// says nothing: the columns decide, and without event columns the file
		// is refused rather than read as tracks.
		{"unknown folder with event columns", plainTrack, objectFor(plainTrack, "exports", ""), Hint{}, segment.TypeTrack, nil, ""},
		{"unknown folder without event columns", noEvent, objectFor(noEvent, "exports", ""), Hint{}, 0, nil, "give its type as a hint"},
		{"track without event", noEvent, objectFor(noEvent, "tracks", ""), Hint{}, 0, nil, `"event_text"`},
		{"identify without user_id", deviceOnly, objectFor(deviceOnly, "users", ""), Hint{}, 0, nil, `column "id"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := open(t, tc.path, tc.o, tc.h)
			if tc.wantError != "" {
				if !errors.Is(err, ErrBadFile) || !strings.Contains(err.Error(), tc.wantError) || !strings.Contains(err.Error(), tc.path) {
					t.Fatalf("err = %v, want ErrBadFile naming %s and %q", err, tc.path, tc.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Type() != tc.wantFile {
				t.Errorf("Type() = %v, want %v", p.Type(), tc.wantFile)
			}
			got := readAll(t, p, 0)
			for i, want := range tc.wantRows {
				if got[i].Type != want {
					t.Errorf("row %d type = %v, want %v", i, got[i].Type, want)
				}
			}
			if tc.wantRows == nil && got[0].Type != tc.wantFile {
				t.Errorf("row type = %v, want %v", got[0].Type, tc.wantFile)
			}
		})
	}
}

// The same column changes physical type from file to file.
func TestParquetTypeDrift(t *testing.T) {
	dir := t.TempDir()
	files := []struct {
		node  parquet.Node
		value any
	}{
		{opt(parquet.Int(64)), int64(27)},
		{opt(parquet.Leaf(parquet.DoubleType)), 27.5},
		{opt(parquet.Decimal(6, 38, parquet.FixedLenByteArrayType(16))), flba(beBytes(27_250000, 16))},
		{strNode, "27.75"},
	}
	want := []float64{27, 27.5, 27.25, 27.75}
	for i, f := range files {
		path := writeParquet(t, dir, fmt.Sprintf("drift%d.parquet", i),
			[]tcol{{"event", strNode}, {"total", f.node}}, [][]any{{"order_completed", f.value}})
		got := mustOpenRead(t, path, objectFor(path, "order_completed", ""))
		if got[0].Total.Value != want[i] || !got[0].Total.Valid {
			t.Errorf("file %d: total = %+v, want %v", i, got[0].Total, want[i])
		}
	}
}

// Struct writers keep field order: two files with the same columns in
// different orders, one with an extra column and one without `revenue`.
type orderA struct {
	Event    string   `parquet:"event"`
	DeviceID string   `parquet:"context_device_id"`
	Total    *float64 `parquet:"total,optional"`
	Revenue  *float64 `parquet:"revenue,optional"`
	Products string   `parquet:"products"`
}

type orderB struct {
	Products string   `parquet:"PRODUCTS"`
	Total    *float64 `parquet:"TOTAL,optional"`
	DeviceID string   `parquet:"CONTEXT_DEVICE_ID,dict"`
	Event    string   `parquet:"EVENT"`
}

func TestParquetColumnOrderAndMissingColumns(t *testing.T) {
	dir := t.TempDir()
	v := 12.5
	pa := filepath.Join(dir, "a.parquet")
	if err := parquet.WriteFile(pa, []orderA{{"order_completed", "d1", &v, &v, `[{"id":1`}}); err != nil {
		t.Fatal(err)
	}
	pb := filepath.Join(dir, "b.parquet")
	if err := parquet.WriteFile(pb, []orderB{{`[{"id":1`, &v, "d1", "order_completed"}}); err != nil {
		t.Fatal(err)
	}
	ga := mustOpenRead(t, pa, objectFor(pa, "", ""))[0]
	gb := mustOpenRead(t, pb, objectFor(pb, "", ""))[0]
	want := msg{Type: segment.TypeTrack, DeviceID: "d1", Event: "order_completed", Total: numV(12.5)}
	wantA := want
	wantA.Revenue = numV(12.5)
	if ga != wantA {
		t.Errorf("file a: %+v, want %+v", ga, wantA)
	}
	if gb != want {
		t.Errorf("file b: %+v, want %+v", gb, want)
	}
}

// genRow is row i of a deterministic synthetic table; some values NULL.
func genRow(i int) []any {
	var total any
	if i%7 != 0 {
		total = float64(i%1000) + 0.25
	}
	var ua any
	if i%3 != 0 {
		ua = fmt.Sprintf("Mozilla/5.0 (agent %d)", i%11)
	}
	return []any{
		fmt.Sprintf("msg-%08d", i),
		fmt.Sprintf("user-%d", i%500),
		fmt.Sprintf("device-%d", i%300),
		[]string{"Order Completed", "Product Viewed", "Signed Up"}[i%3],
		total,
		int64(1_700_000_000_000_000 + int64(i)*1_000_123),
		ua,
	}
}

var genCols = []tcol{
	{"id", strNode},
	{"user_id", dictNode},
	{"context_device_id", strNode},
	{"event_text", dictNode},
	{"total", opt(parquet.Leaf(parquet.DoubleType))},
	{"timestamp", opt(parquet.Timestamp(parquet.Microsecond))},
	{"context_user_agent", dictNode},
}

func genWant(i int) msg {
	r := genRow(i)
	m := msg{Type: segment.TypeTrack, MessageID: r[0].(string), UserID: r[1].(string), DeviceID: r[2].(string), EventText: r[3].(string),
		Timestamp: segment.At(r[5].(int64))}
	if r[4] != nil {
		m.Total = numV(r[4].(float64))
	}
	if r[6] != nil {
		m.UserAgent = r[6].(string)
	}
	return m
}

func writeGen(t testing.TB, dir, name string, n int, opts ...parquet.WriterOption) string {
	rows := make([][]any, n)
	for i := range rows {
		rows[i] = genRow(i)
	}
	return writeParquet(t, dir, name, genCols, rows, opts...)
}

// Many pages per chunk, several row groups, batches that cut across pages:
// every row comes back as written.
func TestParquetRowGroupsPagesAndBatches(t *testing.T) {
	dir := t.TempDir()
	const n = 10_000
	for _, v := range []int{1, 2} {
		path := writeGen(t, dir, fmt.Sprintf("gen-v%d.parquet", v), n,
			parquet.Compression(&parquet.Snappy), parquet.PageBufferSize(4<<10), parquet.MaxRowsPerRowGroup(3000), parquet.DataPageVersion(v))
		p, err := open(t, path, objectFor(path, "tracks", ""), Hint{})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.RowGroups()) != 4 {
			t.Fatalf("row groups = %d, want 4", len(p.RowGroups()))
		}
		for _, bs := range []int{1, 333, 4096} {
			got := readAll(t, p, bs)
			if len(got) != n {
				t.Fatalf("v%d batch %d: %d rows", v, bs, len(got))
			}
			for i := range got {
				if w := genWant(i); got[i] != w {
					t.Fatalf("v%d batch %d row %d:\n got %+v\nwant %+v", v, bs, i, got[i], w)
				}
			}
		}
	}
}

// Row groups read concurrently give the same rows (run with -race).
func TestParquetConcurrentRowGroups(t *testing.T) {
	dir := t.TempDir()
	const n = 8000
	path := writeGen(t, dir, "gen.parquet", n, parquet.MaxRowsPerRowGroup(1000), parquet.PageBufferSize(8<<10))
	p, err := open(t, path, objectFor(path, "tracks", ""), Hint{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(p.RowGroups()))
	for g := range p.RowGroups() {
		wg.Go(func() {
			base := int64(g) * 1000
			errs[g] = p.ReadRowGroup(context.Background(), g, 300, func(first int64, batch []segment.Message) error {
				for j := range batch {
					if got, want := copyMsg(&batch[j]), genWant(int(base+first)+j); got != want {
						return fmt.Errorf("row %d: got %+v want %+v", base+first+int64(j), got, want)
					}
				}
				return nil
			})
		})
	}
	wg.Wait()
	for g, err := range errs {
		if err != nil {
			t.Errorf("row group %d: %v", g, err)
		}
	}
}

func TestParquetAllNullColumnInRowGroup(t *testing.T) {
	dir := t.TempDir()
	rows := make([][]any, 0, 200)
	for i := range 200 {
		var total, ts any
		if i >= 100 { // row group 0: every total and timestamp NULL
			total, ts = float64(i), int64(i)
		}
		rows = append(rows, []any{"e", total, ts, nil})
	}
	cols := []tcol{{"event", strNode}, {"total", opt(parquet.Leaf(parquet.DoubleType))},
		{"timestamp", opt(parquet.Timestamp(parquet.Millisecond))}, {"context_ip", dictNode}}
	path := writeParquet(t, dir, "nulls.parquet", cols, rows, parquet.MaxRowsPerRowGroup(100))
	got := mustOpenRead(t, path, objectFor(path, "", ""))
	for i, g := range got {
		if i < 100 && (g.Total.Valid || g.Timestamp.Valid) {
			t.Fatalf("row %d: want NULL total and timestamp, got %+v", i, g)
		}
		if i >= 100 && (g.Total != numV(float64(i)) || g.Timestamp != segment.At(int64(i)*1000)) {
			t.Fatalf("row %d: got %+v", i, g)
		}
		if g.IP != "" {
			t.Fatalf("row %d: IP %q from an all-NULL column", i, g.IP)
		}
	}
}

// The batch's byte slices stay correct within fn even though the arena is
// reused: values of one batch never show up in another.
func TestParquetArenaReuse(t *testing.T) {
	dir := t.TempDir()
	path := writeGen(t, dir, "gen.parquet", 2000)
	p, err := open(t, path, objectFor(path, "tracks", ""), Hint{})
	if err != nil {
		t.Fatal(err)
	}
	var prev []segment.Message
	err = p.ReadRowGroup(context.Background(), 0, 100, func(first int64, batch []segment.Message) error {
		if prev != nil && &prev[0] != &batch[0] {
			return errors.New("batch slice not reused")
		}
		prev = batch
		for j := range batch {
			if want := genWant(int(first) + j).MessageID; string(batch[j].MessageID) != want {
				return fmt.Errorf("row %d: %q, want %q", int(first)+j, batch[j].MessageID, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A file keeps the state of a finished ReadRowGroup for the next call, but
// not its arena's chunks: those go back to the package's pool, so that a
// run over many small files, each read once, does not hold a chunk for
// every file it has read.
func TestParquetStatesKeepNoArena(t *testing.T) {
	dir := t.TempDir()
	path := writeGen(t, dir, "gen.parquet", 300)
	p, err := open(t, path, objectFor(path, "tracks", ""), Hint{})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		used := 0
		err = p.ReadRowGroup(context.Background(), 0, 100, func(int64, []segment.Message) error {
			used = len(p.free) // the state in use is not on the list
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if used != 0 || len(p.free) != 1 {
			t.Fatalf("%d states free during the read, %d after; want 0 and 1 (the state reused)", used, len(p.free))
		}
		if a := p.free[0].arena; len(a.chunks) != 0 {
			t.Errorf("the state kept by the file holds %d arena chunks, want none", len(a.chunks))
		}
	}
}

func TestParquetCallbackErrorAndCancel(t *testing.T) {
	dir := t.TempDir()
	path := writeGen(t, dir, "gen.parquet", 1000)
	p, err := open(t, path, objectFor(path, "tracks", ""), Hint{})
	if err != nil {
		t.Fatal(err)
	}
	stop := errors.New("stop")
	calls := 0
	err = p.ReadRowGroup(context.Background(), 0, 100, func(int64, []segment.Message) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Errorf("err = %v after %d calls, want the callback's error after 1", err, calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.ReadRowGroup(ctx, 0, 100, func(int64, []segment.Message) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v", err)
	}
	if err := p.ReadRowGroup(context.Background(), 5, 100, func(int64, []segment.Message) error { return nil }); err == nil {
		t.Error("row group 5 of 1: no error")
	}
	// A panic in the callback is the caller's and is not turned into a bad file.
	defer func() {
		if v := recover(); v != "boom" {
			t.Errorf("recovered %v, want the callback's panic", v)
		}
	}()
	_ = p.ReadRowGroup(context.Background(), 0, 100, func(int64, []segment.Message) error { panic("boom") })
}

// failingFile fails every read after the footer was read.
type failingFile struct {
	File
	mu   sync.Mutex
	fail error
}

func (f *failingFile) ReadAt(b []byte, off int64) (int, error) {
	f.mu.Lock()
	err := f.fail
	f.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return f.File.ReadAt(b, off)
}

var errGone = errors.New("object changed")

// A failing read of the File is reported as itself, not as a bad file.
func TestParquetIOErrorIsNotBadFile(t *testing.T) {
	dir := t.TempDir()
	path := writeGen(t, dir, "gen.parquet", 100)
	ff := &failingFile{File: openLocal(t, path)}
	p, err := OpenParquet(context.Background(), ff, objectFor(path, "tracks", ""), Hint{})
	if err != nil {
		t.Fatal(err)
	}
	ff.mu.Lock()
	ff.fail = errGone
	ff.mu.Unlock()
	err = p.ReadRowGroup(context.Background(), 0, 0, func(int64, []segment.Message) error { return nil })
	if !errors.Is(err, errGone) || errors.Is(err, ErrBadFile) || !strings.Contains(err.Error(), path) {
		t.Errorf("err = %v, want the read error (not ErrBadFile) naming the object", err)
	}
	_, err = OpenParquet(context.Background(), ff, objectFor(path, "tracks", ""), Hint{})
	if !errors.Is(err, errGone) || errors.Is(err, ErrBadFile) {
		t.Errorf("open: err = %v, want the read error, not ErrBadFile", err)
	}
}

func TestParquetBadFiles(t *testing.T) {
	dir := t.TempDir()
	good := writeGen(t, dir, "good.parquet", 3000, parquet.MaxRowsPerRowGroup(1000))
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	footerLen := int(data[len(data)-8]) | int(data[len(data)-7])<<8 | int(data[len(data)-6])<<16
	corruptFooter := bytes.Clone(data)
	for i := len(data) - 8 - footerLen; i < len(data)-8; i += 3 {
		corruptFooter[i] = 0xff
	}
	listTS := writeParquet(t, dir, "listts.parquet", []tcol{{"event", strNode}, {"timestamp", opt(parquet.List(parquet.Timestamp(parquet.Millisecond)))}}, nil)
	boolTotal := writeParquet(t, dir, "booltotal.parquet", []tcol{{"event", strNode}, {"total", opt(parquet.Leaf(parquet.BooleanType))}}, nil)
	structTS := writeParquet(t, dir, "structts.parquet", []tcol{{"event", strNode}, {"timestamp.value", strNode}}, nil)
	int32TS := writeParquet(t, dir, "int32ts.parquet", []tcol{{"event", strNode}, {"sent_at", opt(parquet.Int(32))}}, nil)

	cases := []struct {
		name  string
		path  string
		names []string // what the message must name besides the object
	}{
		{"not parquet", write("text.parquet", []byte("id,user_id\n1,2\n")), nil},
		{"empty", write("empty.parquet", nil), nil},
		{"truncated", write("truncated.parquet", data[:len(data)/2]), nil},
		{"truncated footer", write("cut.parquet", data[:len(data)-3]), nil},
		{"corrupt footer", write("corrupt.parquet", corruptFooter), nil},
		{"timestamp is a list", listTS, []string{`"timestamp`}},
		{"timestamp is a struct", structTS, []string{`"timestamp"`}},
		{"total is boolean", boolTotal, []string{`"total"`}},
		{"sent_at is int32", int32TS, []string{`"sent_at"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := open(t, tc.path, objectFor(tc.path, "tracks", ""), Hint{})
			if err == nil {
				err = readAllErr(p)
			}
			if !errors.Is(err, ErrBadFile) {
				t.Fatalf("err = %v, want ErrBadFile", err)
			}
			msg := err.Error()
			for _, n := range append([]string{tc.path}, tc.names...) {
				if !strings.Contains(msg, n) {
					t.Errorf("error %q does not name %s", msg, n)
				}
			}
		})
	}

	// A corrupt column chunk in row group 1: the file opens, row groups 0
	// and 2 read, row group 1 fails naming itself and the column.
	t.Run("corrupt column chunk", func(t *testing.T) {
		pf, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := pf.Schema().Lookup("context_device_id")
		md := pf.Metadata().RowGroups[1].Columns[leaf.ColumnIndex].MetaData
		bad := bytes.Clone(data)
		for i := md.DataPageOffset; i < md.DataPageOffset+md.TotalCompressedSize; i++ {
			bad[i] = 0xfe
		}
		path := write("badchunk.parquet", bad)
		p, err := open(t, path, objectFor(path, "tracks", ""), Hint{})
		if err != nil {
			t.Fatal(err)
		}
		for g := range 3 {
			err := p.ReadRowGroup(context.Background(), g, 0, func(int64, []segment.Message) error { return nil })
			if g != 1 {
				if err != nil {
					t.Errorf("row group %d: %v", g, err)
				}
				continue
			}
			if !errors.Is(err, ErrBadFile) {
				t.Fatalf("row group 1: err = %v, want ErrBadFile", err)
			}
			for _, n := range []string{path, "row group 1", `"context_device_id"`} {
				if !strings.Contains(err.Error(), n) {
					t.Errorf("error %q does not name %s", err, n)
				}
			}
		}
	})
}

func readAllErr(p *ParquetFile) error {
	for i := range p.RowGroups() {
		if err := p.ReadRowGroup(context.Background(), i, 0, func(int64, []segment.Message) error { return nil }); err != nil {
			return err
		}
	}
	return nil
}

func TestParquetColumnsReport(t *testing.T) {
	dir := t.TempDir()
	path := writeParquet(t, dir, "n.parquet", []tcol{{"event", strNode}, {"context.device.id", strNode}}, [][]any{{"e", "d"}})
	p, err := open(t, path, objectFor(path, "", ""), Hint{})
	if err != nil {
		t.Fatal(err)
	}
	cols := p.Columns()
	keys := make([]string, 0, len(cols))
	for k, v := range cols {
		keys = append(keys, k+"<-"+v)
	}
	sort.Strings(keys)
	if got := strings.Join(keys, ","); got != "context_device_id<-context.device.id,event<-event" {
		t.Errorf("Columns() = %s", got)
	}
}

// The decoder stores through fieldOffset: each offset must be the field of
// the Go type its semantic writes.
func TestFieldOffsets(t *testing.T) {
	want := map[semantic]reflect.Type{
		semBytes:  reflect.TypeFor[[]byte](),
		semNumber: reflect.TypeFor[segment.Number](),
		semTime:   reflect.TypeFor[segment.Time](),
		semBool:   reflect.TypeFor[segment.Bool](),
		semType:   reflect.TypeFor[segment.Type](),
	}
	mt := reflect.TypeFor[segment.Message]()
	seen := map[uintptr]bool{}
	for f := range numFields {
		off := fieldOffset[f]
		if seen[off] {
			t.Errorf("field %s: offset %d used twice", fieldSpecs[f].name, off)
		}
		seen[off] = true
		found := false
		for i := range mt.NumField() {
			sf := mt.Field(i)
			if sf.Offset == off {
				found = true
				if sf.Type != want[fieldSpecs[f].sem] {
					t.Errorf("field %s: offset %d is %s of type %s, want %s", fieldSpecs[f].name, off, sf.Name, sf.Type, want[fieldSpecs[f].sem])
				}
			}
		}
		if !found {
			t.Errorf("field %s: offset %d is no field of Message", fieldSpecs[f].name, off)
		}
	}
}

// countingFile records the reads made through it.
type countingFile struct {
	File
	mu    sync.Mutex
	reads [][2]int64 // offset, length
}

func (f *countingFile) ReadAt(b []byte, off int64) (int, error) {
	f.mu.Lock()
	f.reads = append(f.reads, [2]int64{off, int64(len(b))})
	f.mu.Unlock()
	return f.File.ReadAt(b, off)
}

// Opening reads the magic bytes and the footer, in few requests, and no
// column data; reading a row group reads only its own column chunks.
func TestParquetOpenReadsOnlyFooter(t *testing.T) {
	dir := t.TempDir()
	path := writeGen(t, dir, "gen.parquet", 60_000, parquet.MaxRowsPerRowGroup(20_000))
	cf := &countingFile{File: openLocal(t, path)}
	size := cf.Size()
	p, err := OpenParquet(context.Background(), cf, objectFor(path, "tracks", ""), Hint{})
	if err != nil {
		t.Fatal(err)
	}
	if size < 2*readBufferSize {
		t.Fatalf("file of %d bytes too small for this test", size)
	}
	if len(cf.reads) > 3 {
		t.Errorf("open made %d reads, want at most 3: %v", len(cf.reads), cf.reads)
	}
	for _, r := range cf.reads {
		if r[0] != 0 && r[0] < size-readBufferSize {
			t.Errorf("open read %d bytes at %d, inside the data of a %d-byte file", r[1], r[0], size)
		}
	}
	// A row group reads inside its own column chunks only.
	cf.reads = nil
	if err := p.ReadRowGroup(context.Background(), 1, 0, func(int64, []segment.Message) error { return nil }); err != nil {
		t.Fatal(err)
	}
	md := p.pf.Metadata().RowGroups[1]
	var lo, hi int64 = size, 0
	for _, c := range md.Columns {
		start := c.MetaData.DataPageOffset
		if c.MetaData.DictionaryPageOffset > 0 {
			start = min(start, c.MetaData.DictionaryPageOffset)
		}
		lo, hi = min(lo, start), max(hi, start+c.MetaData.TotalCompressedSize)
	}
	for _, r := range cf.reads {
		if r[0] < lo || r[0] >= hi {
			t.Errorf("row group 1 read at %d, outside its chunks [%d, %d)", r[0], lo, hi)
		}
	}
}

// A job may set a row's Type; the next batch starts with the file's again.
func TestParquetBatchStartsClean(t *testing.T) {
	dir := t.TempDir()
	path := writeGen(t, dir, "gen.parquet", 1000)
	p, err := open(t, path, objectFor(path, "tracks", ""), Hint{})
	if err != nil {
		t.Fatal(err)
	}
	err = p.ReadRowGroup(context.Background(), 0, 100, func(first int64, batch []segment.Message) error {
		for j := range batch {
			if batch[j].Type != segment.TypeTrack {
				return fmt.Errorf("row %d: Type %v from an earlier batch", first+int64(j), batch[j].Type)
			}
			batch[j].Type = segment.TypePage
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
