package generate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/convertro-etl/convertro-etl/internal/segment"
	"github.com/convertro-etl/convertro-etl/readers"
)

var layouts = []string{LayoutWarehouse, LayoutDatalake, LayoutUpper, LayoutNested}

// files lists the Parquet files under dir (slash-separated, relative) with
// their bytes.
func files(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if strings.HasPrefix(d.Name(), ".") {
			t.Errorf("temporary file left behind: %s", rel)
		}
		b, err := os.ReadFile(p)
		out[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func generate(t testing.TB, o Options) Summary {
	t.Helper()
	s, err := Generate(context.Background(), o)
	if err != nil {
		t.Fatalf("Generate(%+v): %v", o, err)
	}
	return s
}

func TestDeterministic(t *testing.T) {
	for _, layout := range layouts {
		t.Run(layout, func(t *testing.T) {
			o := Options{Rows: 3000, Seed: 42, Layout: layout, RowGroupRows: 200}
			a, b, c := o, o, o
			a.Out, b.Out, c.Out = t.TempDir(), t.TempDir(), t.TempDir()
			c.Seed = 43
			generate(t, a)
			generate(t, b)
			generate(t, c)
			fa, fb, fc := files(t, a.Out), files(t, b.Out), files(t, c.Out)
			if len(fa) == 0 || len(fa) != len(fb) {
				t.Fatalf("runs wrote %d and %d files", len(fa), len(fb))
			}
			same := 0
			for k, v := range fa {
				if !bytes.Equal(v, fb[k]) {
					t.Errorf("%s differs between two runs with the same options", k)
				}
				if bytes.Equal(v, fc[k]) {
					same++
				}
			}
			if same == len(fa) {
				t.Errorf("another seed wrote the same files")
			}
		})
	}
}

// Expected column types, by column path (per layout naming), as parquet-go
// prints them.
func TestSchemas(t *testing.T) {
	want := map[string]map[string]string{
		LayoutWarehouse: {
			"order_completed/day=2024-01-01:id":                  "BYTE_ARRAY STRING required",
			"order_completed/day=2024-01-01:timestamp":           "INT64 TIMESTAMP(isAdjustedToUTC=true,unit=MICROS)",
			"order_completed/day=2024-01-01:total":               "DOUBLE",
			"order_completed/day=2024-01-01:revenue":             "DOUBLE",
			"order_completed/day=2024-01-02:total":               "BYTE_ARRAY STRING",
			"order_completed/day=2024-01-02:revenue":             "BYTE_ARRAY STRING",
			"order_completed/day=2024-01-01:repeat":              "BOOLEAN",
			"order_completed/day=2024-01-01:order_id":            "BYTE_ARRAY STRING",
			"order_completed/day=2024-01-01:event_text":          "BYTE_ARRAY STRING",
			"tracks/day=2024-01-01:context_device_id":            "BYTE_ARRAY STRING",
			"identifies/day=2024-01-01:user_id":                  "BYTE_ARRAY STRING",
			"identifies/day=2024-01-01:context_screen_width":     "INT64 INT(64,true)",
			"tracks/day=2024-01-01/hr=00:integrations_convertro": "BOOLEAN",
		},
		LayoutDatalake: {
			"track_order_completed:properties_total":    "DOUBLE",
			"track_order_completed:properties_order_id": "BYTE_ARRAY STRING",
			"track_order_completed:properties_repeat":   "BOOLEAN",
			"track_order_completed:timestamp":           "INT96",
			"track_order_completed:received_at":         "INT96",
			"tracks:context_device_id":                  "BYTE_ARRAY STRING",
			"identifies:user_id":                        "BYTE_ARRAY STRING",
		},
		LayoutUpper: {
			"order_completed:TOTAL":                        "FIXED_LEN_BYTE_ARRAY(16) DECIMAL(38,6)",
			"order_completed:REVENUE":                      "DOUBLE",
			"order_completed:TIMESTAMP":                    "INT64 TIMESTAMP(isAdjustedToUTC=true,unit=MILLIS)",
			"order_completed:SENT_AT":                      "BYTE_ARRAY STRING",
			"order_completed:ORIGINAL_TIMESTAMP":           "BYTE_ARRAY STRING",
			"order_completed:CONTEXT_DEVICE_ID":            "BYTE_ARRAY STRING",
			"tracks/day=2024-01-01/hr=00:INTEGRATIONS_ALL": "BYTE_ARRAY STRING",
		},
		LayoutNested: {
			"order_completed:properties.total":       "DOUBLE",
			"order_completed:properties.orderId":     "BYTE_ARRAY STRING",
			"order_completed:properties.repeat":      "BOOLEAN",
			"order_completed:context.device.id":      "BYTE_ARRAY STRING",
			"order_completed:integrations.Convertro": "BOOLEAN",
			"order_completed:messageId":              "BYTE_ARRAY STRING",
			"order_completed:timestamp":              "BYTE_ARRAY STRING",
			"order_completed:type":                   "BYTE_ARRAY STRING",
			"identifies:userId":                      "BYTE_ARRAY STRING",
		},
	}
	for _, layout := range layouts {
		t.Run(layout, func(t *testing.T) {
			o := Options{Out: t.TempDir(), Rows: 6000, Seed: 5, Layout: layout, RowGroupRows: 40}
			sum := generate(t, o)
			fs := files(t, o.Out)
			if sum.Files != len(fs) {
				t.Errorf("Summary.Files = %d, wrote %d", sum.Files, len(fs))
			}
			var total, bytesWritten int64
			rowsByTable := map[string]int64{}
			multiGroup := false
			seen := map[string]bool{}
			for key, b := range fs {
				bytesWritten += int64(len(b))
				pf, err := parquet.OpenFile(bytes.NewReader(b), int64(len(b)))
				if err != nil {
					t.Fatalf("%s: %v", key, err)
				}
				total += pf.NumRows()
				rowsByTable[readers.ParsePartition(key).Table] += pf.NumRows()
				if len(pf.RowGroups()) > 1 {
					multiGroup = true
				}
				for _, rg := range pf.RowGroups() {
					if rg.NumRows() > int64(o.RowGroupRows) {
						t.Errorf("%s: row group of %d rows, want at most %d", key, rg.NumRows(), o.RowGroupRows)
					}
				}
				for _, rg := range pf.Metadata().RowGroups {
					for _, cc := range rg.Columns {
						if c := cc.MetaData.Codec; c.String() != "SNAPPY" {
							t.Fatalf("%s: column %v codec %v, want SNAPPY", key, cc.MetaData.PathInSchema, c)
						}
					}
				}
				if n := len(pf.Schema().Columns()); n < 30 {
					t.Errorf("%s: %d columns, want a wide table (30+)", key, n)
				}
				for where, typ := range want[layout] {
					prefix, col, _ := strings.Cut(where, ":")
					if !strings.HasPrefix(key, prefix) {
						continue
					}
					leaf, ok := pf.Schema().Lookup(strings.Split(col, ".")...)
					if !ok {
						t.Errorf("%s: no column %s", key, col)
						continue
					}
					seen[where] = true
					got := leaf.Node.Type().String()
					if lt := leaf.Node.Type().LogicalType(); lt != nil {
						got = leaf.Node.Type().Kind().String()
						if got == "FIXED_LEN_BYTE_ARRAY" {
							got += fmt.Sprintf("(%d)", leaf.Node.Type().Length())
						}
						got += " " + lt.String()
					}
					if leaf.Node.Required() && !strings.HasSuffix(typ, " required") {
						t.Errorf("%s: column %s is required", key, col)
					}
					if got != strings.TrimSuffix(typ, " required") {
						t.Errorf("%s: column %s is %s, want %s", key, col, got, typ)
					}
				}
			}
			for where := range want[layout] {
				if !seen[where] {
					t.Errorf("no file matched %s", where)
				}
			}
			if total != int64(o.Rows) {
				t.Errorf("files hold %d rows, want %d", total, o.Rows)
			}
			var sumRows int64
			for table, n := range sum.Rows {
				sumRows += n
				if rowsByTable[table] != n {
					t.Errorf("Summary.Rows[%s] = %d, files hold %d", table, n, rowsByTable[table])
				}
			}
			if sumRows != int64(o.Rows) || sum.Bytes != bytesWritten {
				t.Errorf("Summary %+v: rows %d bytes %d, want %d and %d", sum, sumRows, sum.Bytes, o.Rows, bytesWritten)
			}
			if !multiGroup {
				t.Errorf("no file has several row groups")
			}
		})
	}
}

// TestPaths checks that the readers find the table, the message type, the
// day and the hour in every path.
func TestPaths(t *testing.T) {
	for _, layout := range layouts {
		t.Run(layout, func(t *testing.T) {
			o := Options{Out: t.TempDir(), Rows: 6000, Seed: 9, Layout: layout, Start: time.Date(2024, 2, 28, 0, 0, 0, 0, time.UTC), RowGroupRows: 10}
			generate(t, o)
			tables := map[string]bool{}
			shards := false
			for key := range files(t, o.Out) {
				p := readers.ParsePartition(key)
				segs := strings.Split(key, "/")
				tables[p.Table] = true
				if p.Table != segs[0] {
					t.Errorf("%s: table %q, want %q", key, p.Table, segs[0])
				}
				if !p.HasDay || (p.Day != o.Start && p.Day != o.Start.AddDate(0, 0, 1)) {
					t.Errorf("%s: day %v (has %v)", key, p.Day, p.HasDay)
				}
				wantType := ""
				if layout == LayoutDatalake {
					switch p.Table {
					case "identifies":
						wantType = "identify"
					case "pages":
						wantType = "page"
					default:
						wantType = "track"
					}
				}
				if p.SegmentType != wantType {
					t.Errorf("%s: segment type %q, want %q", key, p.SegmentType, wantType)
				}
				if layout == LayoutNested {
					if p.Hour != -1 {
						t.Errorf("%s: hour %d, want none", key, p.Hour)
					}
				} else if want := "hr=" + fmt.Sprintf("%02d", p.Hour); segs[len(segs)-2] != want {
					t.Errorf("%s: hour %d", key, p.Hour)
				}
				base := segs[len(segs)-1]
				if base == "000000000001.parquet" || base == "part-00001.parquet" {
					shards = true
				}
			}
			wantTables := []string{"application_installed", "identifies", "order_completed", "pages", "tracks"}
			for _, w := range wantTables {
				if !tables[TableName(layout, w)] {
					t.Errorf("no table %s", TableName(layout, w))
				}
			}
			if layout != LayoutNested && !shards {
				t.Errorf("no partition was split into a second shard")
			}
		})
	}
}

func share(n, of int) float64 { return float64(n) / float64(max(of, 1)) }

func TestEdgeShares(t *testing.T) {
	o := Options{Rows: 60000, Seed: 3}
	type counter struct{ n, of int }
	c := map[string]*counter{}
	count := func(name string, hit bool) {
		k := c[name]
		if k == nil {
			k = &counter{}
			c[name] = k
		}
		k.of++
		if hit {
			k.n++
		}
	}
	ids := map[string]bool{}
	events := map[string]int{}
	tables := map[string]int{}
	var all int
	for e := range Events(o) {
		all++
		tables[e.Table]++
		if ids[e.MessageID] {
			t.Fatalf("duplicate message id %s", e.MessageID)
		}
		ids[e.MessageID] = true
		if e.Timestamp.Valid && (e.Timestamp.Micros/1000*1000 != e.Timestamp.Micros) {
			t.Fatalf("timestamp %d is not whole milliseconds", e.Timestamp.Micros)
		}
		count("device id missing", e.Context.DeviceID == "")
		count("timestamp missing", !e.Timestamp.Valid)
		count("no time at all", !e.Timestamp.Valid && !e.OriginalTimestamp.Valid && !e.SentAt.Valid && !e.ReceivedAt.Valid)
		switch e.Table {
		case "identifies":
			count("identify without user id", e.UserID == "")
		case "tracks":
			events[e.EventText]++
		case "order_completed":
			count("order without repeat", e.Repeat == segment.Absent)
			count("order repeat true", e.Repeat == segment.True)
			count("order without order id", e.OrderID == "")
			count("order with total", e.Total.Valid)
			count("order with revenue only", !e.Total.Valid && e.Revenue.Valid)
			count("order with neither", !e.Total.Valid && !e.Revenue.Valid)
			count("order total zero", e.Total.Valid && e.Total.Value == 0)
			count("order total negative", e.Total.Valid && e.Total.Value < 0)
		}
		if e.Table != "pages" && e.Table != "application_installed" {
			count("convertro false", e.IntegrationsConvertro == segment.False)
			count("all false", e.IntegrationsAll == segment.False)
			count("all false, convertro true", e.IntegrationsAll == segment.False && e.IntegrationsConvertro == segment.True)
		} else if e.IntegrationsAll != segment.Absent || e.IntegrationsConvertro != segment.Absent {
			t.Fatalf("%s row with integrations, but its files have no such columns", e.Table)
		}
	}
	if all != o.Rows {
		t.Fatalf("Events yielded %d rows, want %d", all, o.Rows)
	}
	want := map[string][2]float64{
		"device id missing":         {0.02, 0.04},
		"timestamp missing":         {0.003, 0.007},
		"no time at all":            {0.00001, 0.001},
		"identify without user id":  {0.08, 0.12},
		"order without repeat":      {0.37, 0.43},
		"order repeat true":         {0.18, 0.24},
		"order without order id":    {0.005, 0.015},
		"order with total":          {0.57, 0.63},
		"order with revenue only":   {0.22, 0.28},
		"order with neither":        {0.12, 0.18},
		"order total zero":          {0.003, 0.02},
		"order total negative":      {0.003, 0.02},
		"convertro false":           {0.005, 0.015},
		"all false":                 {0.005, 0.015},
		"all false, convertro true": {0.002, 0.008},
	}
	for name, r := range want {
		k := c[name]
		if k == nil {
			t.Errorf("%s: never counted", name)
			continue
		}
		if s := share(k.n, k.of); s < r[0] || s > r[1] {
			t.Errorf("%s: %.4f of %d rows, want %.3f–%.3f", name, s, k.of, r[0], r[1])
		}
	}
	for _, te := range trackEvents {
		if events[te.text] == 0 {
			t.Errorf("no %q in tracks", te.text)
		}
	}
	for name := range events {
		if name == "Order Completed" || name == "Application Installed" {
			t.Errorf("tracks holds %q, which has a table of its own", name)
		}
	}
	for _, tb := range tables {
		if tb == 0 {
			t.Errorf("empty table")
		}
	}
	if s := share(tables["identifies"], all); s < 0.18 || s > 0.24 {
		t.Errorf("identifies are %.3f of rows", s)
	}
}

// TestTextMoney reads the warehouse order_completed files: the second day
// stores total and revenue as text, with "$1,299.50" style amounts and "NA".
func TestTextMoney(t *testing.T) {
	o := Options{Out: t.TempDir(), Rows: 20000, Seed: 4}
	generate(t, o)
	texts := map[string]int{}
	for key, b := range files(t, o.Out) {
		if !strings.HasPrefix(key, "order_completed/day=2024-01-02/") {
			continue
		}
		pf, err := parquet.OpenFile(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"total", "revenue"} {
			col, ok := pf.Schema().Lookup(name)
			if !ok || col.Node.Type().Kind() != parquet.ByteArray {
				t.Fatalf("%s: %s is not text", key, name)
			}
			rows := parquet.NewReader(pf)
			buf := make([]parquet.Row, 64)
			for {
				n, err := rows.ReadRows(buf)
				for _, r := range buf[:n] {
					v := r[col.ColumnIndex]
					switch s := v.String(); {
					case v.IsNull():
						texts["null"]++
					case s == "NA":
						texts["NA"]++
					case strings.HasPrefix(s, "$") || strings.HasPrefix(s, "-$"):
						texts["dollar"]++
						if strings.Contains(s, ",") {
							texts["thousands"]++
						}
					default:
						if _, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err != nil {
							t.Errorf("%s: %s = %q", key, name, s)
						}
						texts["plain"]++
					}
				}
				if err != nil {
					break
				}
			}
			rows.Close()
		}
	}
	for _, k := range []string{"null", "NA", "dollar", "thousands", "plain"} {
		if texts[k] == 0 {
			t.Errorf("no %s values among text totals: %v", k, texts)
		}
	}
}

// canonical is what the tests compare of a message.
func canonical(typ segment.Type, id, user, device, event, order []byte, total, revenue segment.Number, repeat segment.Bool,
	times [4]segment.Time, ua, ip []byte, all, conv segment.Bool) string {
	num := func(n segment.Number) string {
		if !n.Valid {
			return "-"
		}
		return strconv.FormatFloat(n.Value, 'g', -1, 64)
	}
	tm := func(t segment.Time) string {
		if !t.Valid {
			return "-"
		}
		return strconv.FormatInt(t.Micros, 10)
	}
	return fmt.Sprintf("%s|%s|%s|%s|%s|%s|%s|%s|%s|%s,%s,%s,%s|%s|%s|%s|%s", typ, id, user, device, event, order,
		num(total), num(revenue), repeat, tm(times[0]), tm(times[1]), tm(times[2]), tm(times[3]), ua, ip, all, conv)
}

func canonicalEvent(e *Event) string {
	name := e.EventText
	if name == "" {
		name = e.Event
	}
	return canonical(e.Type, []byte(e.MessageID), []byte(e.UserID), []byte(e.Context.DeviceID), []byte(name), []byte(e.OrderID),
		e.Total, e.Revenue, e.Repeat, [4]segment.Time{e.Timestamp, e.OriginalTimestamp, e.SentAt, e.ReceivedAt},
		[]byte(e.Context.UserAgent), []byte(e.Context.IP), e.IntegrationsAll, e.IntegrationsConvertro)
}

func canonicalMessage(m *segment.Message) string {
	name := m.EventText
	if len(name) == 0 {
		name = m.Event
	}
	return canonical(m.Type, m.MessageID, m.UserID, m.DeviceID, name, m.OrderID, m.Total, m.Revenue, m.Repeat,
		[4]segment.Time{m.Timestamp, m.OriginalTimestamp, m.SentAt, m.ReceivedAt}, m.UserAgent, m.IP,
		m.IntegrationsAll, m.IntegrationsConvertro)
}

// decoded is one message as the readers decoded it, with where it came from.
type decoded struct {
	where, msg string
}

// readAll decodes every file of an export with the project's readers, in
// the order Generate wrote them (table, then path).
func readAll(t *testing.T, dir, layout string) []decoded {
	t.Helper()
	ctx := context.Background()
	src, err := readers.OpenSource(ctx, dir, readers.SourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	objs, skipped, err := src.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(skipped) > 0 {
		t.Errorf("readers skipped %v", skipped)
	}
	rank := map[string]int{}
	for i := range tables {
		rank[TableName(layout, tables[i].name)] = i
	}
	slices.SortStableFunc(objs, func(a, b readers.Object) int {
		if d := rank[a.Partition.Table] - rank[b.Partition.Table]; d != 0 {
			return d
		}
		return strings.Compare(a.Key, b.Key)
	})
	var out []decoded
	for _, o := range objs {
		f, err := src.Open(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		p, err := readers.OpenParquet(ctx, f, o, readers.Hint{})
		if err != nil {
			t.Fatalf("readers refuse %s: %v", o.Key, err)
		}
		for i := range p.RowGroups() {
			err := p.ReadRowGroup(ctx, i, 100, func(first int64, batch []segment.Message) error {
				for j := range batch {
					out = append(out, decoded{
						where: fmt.Sprintf("%s row group %d row %d", o.Key, i, first+int64(j)),
						msg:   canonicalMessage(&batch[j]),
					})
				}
				return nil
			})
			if err != nil {
				t.Fatalf("read %s: %v", o.Key, err)
			}
		}
		f.Close()
	}
	return out
}

// TestLayoutsDecodeAlike decodes every layout with the readers and checks
// that each yields the messages of Events, in order, and so the same as
// the warehouse layout.
func TestLayoutsDecodeAlike(t *testing.T) {
	base := Options{Rows: 4000, Seed: 77, RowGroupRows: 150}
	var want []string
	for e := range Events(base) {
		want = append(want, canonicalEvent(&e))
	}
	for _, layout := range layouts {
		t.Run(layout, func(t *testing.T) {
			o := base
			o.Layout, o.Out = layout, t.TempDir()
			generate(t, o)
			got := readAll(t, o.Out, layout)
			if len(got) != len(want) {
				t.Fatalf("readers decoded %d messages, want %d", len(got), len(want))
			}
			bad := 0
			for i := range want {
				if got[i].msg != want[i] {
					if bad++; bad <= 5 {
						t.Errorf("%s:\n got %s\nwant %s", got[i].where, got[i].msg, want[i])
					}
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d messages differ", bad, len(want))
			}
		})
	}
}

func TestInvalidOptions(t *testing.T) {
	for _, o := range []Options{
		{Out: t.TempDir(), Rows: 10, Layout: "csv"},
		{Rows: 10},
		{Out: t.TempDir(), Rows: -1},
	} {
		if _, err := Generate(context.Background(), o); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("Generate(%+v) = %v, want ErrInvalidOptions", o, err)
		}
	}
}

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	if _, err := Generate(ctx, Options{Out: dir, Rows: 5000}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Generate with a cancelled context: %v", err)
	}
	files(t, dir) // no temporary file left
}

func BenchmarkGenerate(b *testing.B) {
	for _, layout := range layouts {
		b.Run(layout, func(b *testing.B) {
			const rows = 200_000
			dir := b.TempDir()
			for b.Loop() {
				generate(b, Options{Out: dir, Rows: rows, Seed: 1, Layout: layout})
			}
			b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

func BenchmarkEvents(b *testing.B) {
	const rows = 200_000
	for b.Loop() {
		n := 0
		for range Events(Options{Rows: rows, Seed: 1}) {
			n++
		}
		if n != rows {
			b.Fatalf("%d events", n)
		}
	}
	b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
}

// TestNestedLevels reads the nested layout back with parquet-go and checks
// the definition levels of leaves under optional groups against Events.
func TestNestedLevels(t *testing.T) {
	o := Options{Out: t.TempDir(), Rows: 3000, Seed: 12, Layout: LayoutNested}
	generate(t, o)
	type check struct {
		path  string
		level func(e *Event) int // expected definition level
	}
	checks := []check{
		{"context.device.id", func(e *Event) int { return 2 + b2i(e.Context.DeviceID != "") }},
		{"context.campaign.source", func(e *Event) int {
			if e.Context.CampaignSource == "" {
				return 1
			}
			return 3
		}},
		{"context.screen.width", func(e *Event) int { return 3 }},
		{"integrations.Convertro", func(e *Event) int {
			if e.IntegrationsAll == segment.Absent && e.IntegrationsConvertro == segment.Absent {
				return 0
			}
			return 1 + b2i(e.IntegrationsConvertro != segment.Absent)
		}},
		{"properties.repeat", func(e *Event) int { return 1 + b2i(e.Repeat != segment.Absent) }},
	}
	want := map[string][]int{} // by table and path, in row order
	for e := range Events(o) {
		for _, c := range checks {
			k := e.Table + ":" + c.path
			want[k] = append(want[k], c.level(&e))
		}
	}
	got := map[string][]int{}
	keys := slices.Sorted(maps.Keys(files(t, o.Out)))
	all := files(t, o.Out)
	for _, key := range keys {
		b := all[key]
		pf, err := parquet.OpenFile(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		table := strings.Split(key, "/")[0]
		for _, c := range checks {
			leaf, ok := pf.Schema().Lookup(strings.Split(c.path, ".")...)
			if !ok {
				continue
			}
			for _, rg := range pf.RowGroups() {
				pages := rg.ColumnChunks()[leaf.ColumnIndex].Pages()
				for {
					p, err := pages.ReadPage()
					if err != nil {
						break
					}
					vals := make([]parquet.Value, p.NumValues())
					n, _ := p.Values().ReadValues(vals)
					for _, v := range vals[:n] {
						got[table+":"+c.path] = append(got[table+":"+c.path], v.DefinitionLevel())
					}
				}
				pages.Close()
			}
		}
	}
	checked := 0
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			continue // the table has no such column
		}
		checked++
		if !slices.Equal(g, w) {
			t.Errorf("%s: definition levels differ from the events (%d read, %d expected)", k, len(g), len(w))
		}
	}
	if checked < 10 {
		t.Errorf("only %d columns checked", checked)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
