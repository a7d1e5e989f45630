package generate

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"strings"
	"time"
	"unsafe"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/snappy"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/deprecated"
	"github.com/parquet-go/parquet-go/encoding"
	"github.com/parquet-go/parquet-go/format"

	"github.com/convertro-etl/convertro-etl/internal/segment"
)

// The layouts.
const (
	LayoutWarehouse = "warehouse" // BigQuery-style export of Segment warehouse tables
	LayoutDatalake  = "datalake"  // Segment Data Lakes
	LayoutUpper     = "upper"     // Snowflake COPY INTO: UPPER CASE names
	LayoutNested    = "nested"    // raw Segment JSON converted to Parquet
)

// rowArena holds the bytes of values built while encoding a batch of rows
// (ISO text, decimals). parquet-go copies values when rows are written, so
// the arena is reset after each WriteRows.
type rowArena struct{ b []byte }

func (a *rowArena) bytes(n int) []byte {
	if cap(a.b)-len(a.b) < n {
		// A new chunk: values already handed out keep the old one alive.
		a.b = make([]byte, 0, max(64<<10, n))
	}
	s := len(a.b)
	a.b = a.b[:s+n]
	return a.b[s : s+n : s+n]
}

// getter encodes one column of an event; parquet.NullValue() is NULL.
type getter func(e *Event, a *rowArena) parquet.Value

// node is one field of a layout's schema: a leaf with a getter, or a group.
type node struct {
	name     string
	leaf     parquet.Node
	required bool
	get      getter
	str      func(e *Event) string // string leaves: a direct accessor, for the hot loop
	children []*node
	present  func(e *Event) bool // groups: nil = always present
}

// orderedGroup is a group whose fields keep the order they were declared in
// (parquet.Group sorts them by name), so files list columns the way real
// exports do.
type orderedGroup []parquet.Field

type namedField struct {
	parquet.Node
	name string
}

func (f *namedField) Name() string                      { return f.name }
func (f *namedField) Value(reflect.Value) reflect.Value { return reflect.Value{} }
func (g orderedGroup) ID() int                          { return 0 }
func (g orderedGroup) Type() parquet.Type               { return parquet.Group{}.Type() }
func (g orderedGroup) Optional() bool                   { return false }
func (g orderedGroup) Repeated() bool                   { return false }
func (g orderedGroup) Required() bool                   { return true }
func (g orderedGroup) Leaf() bool                       { return false }
func (g orderedGroup) Fields() []parquet.Field          { return g }
func (g orderedGroup) Encoding() encoding.Encoding      { return nil }
func (g orderedGroup) Compression() compress.Codec      { return nil }
func (g orderedGroup) String() string {
	var b strings.Builder
	_ = parquet.PrintSchema(&b, "", g)
	return b.String()
}
func (g orderedGroup) GoType() reflect.Type {
	m := parquet.Group{}
	for _, f := range g {
		m[f.Name()] = f
	}
	return m.GoType()
}

// leafCol is a compiled leaf column: its getter and the presence tests of
// its optional ancestor groups, for the definition level.
type leafCol struct {
	path     string
	get      getter
	str      func(e *Event) string
	parents  []func(e *Event) bool // one per optional ancestor group; nil = always present
	optional bool
}

// fileSchema is a compiled schema with its leaf columns in column order.
type fileSchema struct {
	schema *parquet.Schema
	cols   []leafCol
	// noBounds lists the dictionary-encoded columns: their page min/max
	// would cost a tenth of the run in string comparisons and no reader of
	// these exports filters on them. The other columns keep statistics.
	noBounds []parquet.WriterOption
}

func compile(name string, fields []*node) *fileSchema {
	fs := &fileSchema{}
	var build func(ns []*node, parents []func(*Event) bool, prefix string) parquet.Node
	build = func(ns []*node, parents []func(*Event) bool, prefix string) parquet.Node {
		g := make(orderedGroup, 0, len(ns))
		for _, n := range ns {
			var pn parquet.Node
			if n.leaf != nil {
				pn = n.leaf
				if !n.required {
					pn = parquet.Optional(pn)
				}
				fs.cols = append(fs.cols, leafCol{path: prefix + n.name, get: n.get, str: n.str, parents: parents, optional: !n.required})
				if n.leaf.Encoding() != nil {
					path := strings.Split(prefix+n.name, ".")
					fs.noBounds = append(fs.noBounds, parquet.SkipPageBounds(path...), parquet.SkipPageStatistics(path...))
				}
			} else {
				pn = parquet.Optional(build(n.children, append(parents[:len(parents):len(parents)], n.present), prefix+n.name+"."))
			}
			g = append(g, &namedField{Node: pn, name: n.name})
		}
		return g
	}
	root := build(fields, nil, "")
	fs.schema = parquet.NewSchema(name, root)
	// The column indexes of parquet-go must be the order compile walked.
	cols := fs.schema.Columns()
	if len(cols) != len(fs.cols) {
		panic(fmt.Sprintf("generate: schema %s has %d columns, compiled %d", name, len(cols), len(fs.cols)))
	}
	for i, c := range cols {
		if strings.Join(c, ".") != fs.cols[i].path {
			panic(fmt.Sprintf("generate: schema %s column %d is %v, compiled %s", name, i, c, fs.cols[i].path))
		}
	}
	return fs
}

// appendColumn encodes column i of every event of batch, with its
// definition levels, onto vals.
func (fs *fileSchema) appendColumn(vals []parquet.Value, i int, batch []Event, a *rowArena) []parquet.Value {
	c := &fs.cols[i]
	get := c.get
	if str := c.str; str != nil && len(c.parents) == 0 {
		def := 0
		if c.optional {
			def = 1
		}
		for k := range batch {
			v := parquet.NullValue()
			if s := str(&batch[k]); s != "" {
				v = parquet.ByteArrayValue(unsafe.Slice(unsafe.StringData(s), len(s)))
				v.SetDefinitionLevel(def)
			}
			v.SetColumnIndex(i)
			vals = append(vals, v)
		}
		return vals
	}
	if len(c.parents) == 0 {
		for k := range batch {
			v := get(&batch[k], a)
			if c.optional && !v.IsNull() {
				v.SetDefinitionLevel(1)
			}
			v.SetColumnIndex(i)
			vals = append(vals, v)
		}
		return vals
	}
	for k := range batch {
		e := &batch[k]
		def := 0
		absent := false
		for _, p := range c.parents {
			if p != nil && !p(e) {
				absent = true
				break
			}
			def++
		}
		v := parquet.NullValue()
		if !absent {
			v = get(e, a)
			if c.optional && !v.IsNull() {
				def++
			}
		}
		v.SetDefinitionLevel(def)
		v.SetColumnIndex(i)
		vals = append(vals, v)
	}
	return vals
}

// snappyCodec is Parquet's SNAPPY codec with the faster of the two snappy
// encoders (parquet-go's spends twice the time for a few percent smaller
// pages; generated exports favour speed). The output is plain snappy.
type snappyCodec struct{}

func (snappyCodec) String() string                            { return "SNAPPY" }
func (snappyCodec) CompressionCodec() format.CompressionCodec { return format.Snappy }
func (snappyCodec) Encode(dst, src []byte) ([]byte, error) {
	return s2.EncodeSnappy(dst[:cap(dst)], src), nil
}
func (snappyCodec) Decode(dst, src []byte) ([]byte, error) { return snappy.Decode(dst[:cap(dst)], src) }

// Value helpers.

func strValue(s string) parquet.Value {
	if s == "" {
		return parquet.NullValue()
	}
	return parquet.ByteArrayValue(unsafe.Slice(unsafe.StringData(s), len(s)))
}

func numValue(n segment.Number) parquet.Value {
	if !n.Valid {
		return parquet.NullValue()
	}
	return parquet.DoubleValue(n.Value)
}

func boolValue(b segment.Bool) parquet.Value {
	if b == segment.Absent {
		return parquet.NullValue()
	}
	return parquet.BooleanValue(b == segment.True)
}

func boolText(b segment.Bool) parquet.Value {
	switch b {
	case segment.True:
		return strValue("true")
	case segment.False:
		return strValue("false")
	}
	return parquet.NullValue()
}

func intValue(v int64) parquet.Value {
	if v == 0 {
		return parquet.NullValue()
	}
	return parquet.Int64Value(v)
}

// julianUnixEpoch is the Julian day of 1970-01-01, the base of INT96 days.
const julianUnixEpoch = 2440588

func int96Value(t segment.Time) parquet.Value {
	if !t.Valid {
		return parquet.NullValue()
	}
	days := t.Micros / 86400e6
	rem := t.Micros % 86400e6
	if rem < 0 {
		days--
		rem += 86400e6
	}
	nanos := uint64(rem) * 1000
	return parquet.Int96Value(deprecated.Int96{uint32(nanos), uint32(nanos >> 32), uint32(days + julianUnixEpoch)})
}

// isoValue writes t as 2020-02-11T04:56:55.175Z (milliseconds, UTC).
func isoValue(t segment.Time, a *rowArena) parquet.Value {
	if !t.Valid {
		return parquet.NullValue()
	}
	tt := time.UnixMicro(t.Micros).UTC()
	b := a.bytes(24)[:0]
	b = tt.AppendFormat(b, "2006-01-02T15:04:05.000Z")
	return parquet.ByteArrayValue(b)
}

// decimal16 writes n as DECIMAL(38,6) unscaled in 16 big-endian bytes.
func decimal16(n segment.Number, a *rowArena) parquet.Value {
	if !n.Valid {
		return parquet.NullValue()
	}
	// Amounts are whole cents: round to cents first so the float's binary
	// error never reaches the sixth decimal.
	var cents int64
	if n.Value < 0 {
		cents = int64(n.Value*100 - 0.5)
	} else {
		cents = int64(n.Value*100 + 0.5)
	}
	u := cents * 10_000
	b := a.bytes(16)
	hi := uint64(0)
	if u < 0 {
		hi = ^uint64(0)
	}
	binary.BigEndian.PutUint64(b[:8], hi)
	binary.BigEndian.PutUint64(b[8:], uint64(u))
	return parquet.FixedLenByteArrayValue(b)
}

// Leaf types.
var (
	tString  = parquet.String()
	tDict    = parquet.Encoded(parquet.String(), &parquet.RLEDictionary)
	tDouble  = parquet.Leaf(parquet.DoubleType)
	tInt64   = parquet.Int(64)
	tBool    = parquet.Leaf(parquet.BooleanType)
	tMicros  = parquet.Timestamp(parquet.Microsecond)
	tMillis  = parquet.Timestamp(parquet.Millisecond)
	tInt96   = parquet.Leaf(parquet.Int96Type)
	tDecimal = parquet.Decimal(6, 38, parquet.FixedLenByteArrayType(16))
)

// Logical fields: warehouse name, value kind and accessor.
type kind uint8

const (
	kStr kind = iota
	kDict
	kTime
	kNum
	kBool
	kInt
)

type field struct {
	name string // warehouse name
	kind kind
	prop bool // an event property (Data Lakes prefix properties_)
	str  func(e *Event) string
	tm   func(e *Event) segment.Time
	num  func(e *Event) segment.Number
	bl   func(e *Event) segment.Bool
	i64  func(e *Event) int64
}

func fStr(name string, dict bool, f func(e *Event) string) field {
	k := kStr
	if dict {
		k = kDict
	}
	return field{name: name, kind: k, str: f}
}
func fTime(name string, f func(e *Event) segment.Time) field {
	return field{name: name, kind: kTime, tm: f}
}
func fNum(name string, f func(e *Event) segment.Number) field {
	return field{name: name, kind: kNum, num: f, prop: true}
}
func fBool(name string, f func(e *Event) segment.Bool) field {
	return field{name: name, kind: kBool, bl: f}
}
func fInt(name string, f func(e *Event) int64) field { return field{name: name, kind: kInt, i64: f} }
func prop(f field) field                             { f.prop = true; return f }

var (
	idField    = fStr("id", false, func(e *Event) string { return e.MessageID })
	timeFields = []field{
		fTime("received_at", func(e *Event) segment.Time { return e.ReceivedAt }),
		fTime("sent_at", func(e *Event) segment.Time { return e.SentAt }),
		fTime("original_timestamp", func(e *Event) segment.Time { return e.OriginalTimestamp }),
		fTime("timestamp", func(e *Event) segment.Time { return e.Timestamp }),
	}
	userFields = []field{
		fStr("user_id", false, func(e *Event) string { return e.UserID }),
		fStr("anonymous_id", false, func(e *Event) string { return e.AnonymousID }),
	}
	eventFields = []field{
		fStr("event", true, func(e *Event) string { return e.Event }),
		fStr("event_text", true, func(e *Event) string { return e.EventText }),
	}
	contextFields = []field{
		fStr("context_device_id", false, func(e *Event) string { return e.Context.DeviceID }),
		fStr("context_device_type", true, func(e *Event) string { return e.Context.DeviceType }),
		fStr("context_device_model", true, func(e *Event) string { return e.Context.DeviceModel }),
		fStr("context_device_manufacturer", true, func(e *Event) string { return e.Context.DeviceManufacturer }),
		fStr("context_ip", false, func(e *Event) string { return e.Context.IP }),
		fStr("context_user_agent", true, func(e *Event) string { return e.Context.UserAgent }),
		fStr("context_library_name", true, func(e *Event) string { return e.Context.LibraryName }),
		fStr("context_library_version", true, func(e *Event) string { return e.Context.LibraryVersion }),
		fStr("context_os_name", true, func(e *Event) string { return e.Context.OSName }),
		fStr("context_os_version", true, func(e *Event) string { return e.Context.OSVersion }),
		fStr("context_app_name", true, func(e *Event) string { return e.Context.AppName }),
		fStr("context_app_version", true, func(e *Event) string { return e.Context.AppVersion }),
		fStr("context_app_build", true, func(e *Event) string { return e.Context.AppBuild }),
		fStr("context_locale", true, func(e *Event) string { return e.Context.Locale }),
		fStr("context_timezone", true, func(e *Event) string { return e.Context.Timezone }),
		fInt("context_screen_width", func(e *Event) int64 { return e.Context.ScreenWidth }),
		fInt("context_screen_height", func(e *Event) int64 { return e.Context.ScreenHeight }),
		fBool("context_network_wifi", func(e *Event) segment.Bool { return e.Context.NetworkWifi }),
		fStr("context_network_carrier", true, func(e *Event) string { return e.Context.NetworkCarrier }),
		fStr("context_campaign_source", true, func(e *Event) string { return e.Context.CampaignSource }),
		fStr("context_campaign_medium", true, func(e *Event) string { return e.Context.CampaignMedium }),
		fStr("context_campaign_name", true, func(e *Event) string { return e.Context.CampaignName }),
		fStr("context_page_path", false, func(e *Event) string { return e.Context.PagePath }),
		fStr("context_page_url", false, func(e *Event) string { return e.Context.PageURL }),
		fStr("context_page_referrer", true, func(e *Event) string { return e.Context.PageReferrer }),
	}
	uuidTsField       = fTime("uuid_ts", func(e *Event) segment.Time { return e.UUIDTs })
	integrationFields = []field{
		fBool("integrations_all", func(e *Event) segment.Bool { return e.IntegrationsAll }),
		fBool("integrations_convertro", func(e *Event) segment.Bool { return e.IntegrationsConvertro }),
	}
	tableFields = map[string][]field{
		"order_completed": {
			prop(fStr("order_id", false, func(e *Event) string { return e.OrderID })),
			fNum("total", func(e *Event) segment.Number { return e.Total }),
			fNum("revenue", func(e *Event) segment.Number { return e.Revenue }),
			prop(fStr("currency", true, func(e *Event) string { return e.Currency })),
			prop(fBool("repeat", func(e *Event) segment.Bool { return e.Repeat })),
			prop(fStr("products", false, func(e *Event) string { return e.Products })),
			prop(fStr("coupon", true, func(e *Event) string { return e.Coupon })),
			fNum("discount", func(e *Event) segment.Number { return e.Discount }),
			fNum("shipping", func(e *Event) segment.Number { return e.Shipping }),
			fNum("tax", func(e *Event) segment.Number { return e.Tax }),
		},
		"application_installed": {
			prop(fStr("version", true, func(e *Event) string { return e.Version })),
			prop(fStr("build", true, func(e *Event) string { return e.Build })),
		},
		"pages": {
			fStr("name", true, func(e *Event) string { return e.Name }),
			prop(fStr("path", false, func(e *Event) string { return e.Path })),
			prop(fStr("url", false, func(e *Event) string { return e.URL })),
			prop(fStr("title", true, func(e *Event) string { return e.Title })),
		},
		"identifies": {
			fStr("email", false, func(e *Event) string { return e.Email }),
			fStr("name", false, func(e *Event) string { return e.TraitName }),
			fStr("plan", true, func(e *Event) string { return e.Plan }),
		},
	}
)

// variant is what makes one file's schema differ from its table's others.
type variant struct {
	table        int
	integrations bool
	textMoney    bool // total and revenue as STRING (warehouse, second day of order_completed)
}

// flatFields lists a table's warehouse fields in export order.
func flatFields(t *table, v variant) []field {
	fs := []field{idField}
	fs = append(fs, timeFields...)
	fs = append(fs, userFields...)
	if t.typ == segment.TypeTrack {
		fs = append(fs, eventFields...)
	}
	fs = append(fs, contextFields...)
	fs = append(fs, uuidTsField)
	fs = append(fs, tableFields[t.name]...)
	if v.integrations {
		fs = append(fs, integrationFields...)
	}
	return fs
}

// flatSchema builds the schema of a flat layout (warehouse, datalake, upper).
func flatSchema(layout string, t *table, v variant) *fileSchema {
	var nodes []*node
	for _, f := range flatFields(t, v) {
		name := f.name
		switch layout {
		case LayoutUpper:
			name = strings.ToUpper(name)
		case LayoutDatalake:
			if f.prop {
				name = "properties_" + name
			}
		}
		n := &node{name: name}
		switch f.kind {
		case kStr, kDict:
			n.leaf = tString
			if f.kind == kDict {
				n.leaf = tDict
			}
			get := f.str
			n.get = func(e *Event, _ *rowArena) parquet.Value { return strValue(get(e)) }
			n.str = get
			n.required = f.name == "id" && layout != LayoutDatalake
		case kInt:
			n.leaf = tInt64
			get := f.i64
			n.get = func(e *Event, _ *rowArena) parquet.Value { return intValue(get(e)) }
		case kBool:
			n.leaf = tBool
			get := f.bl
			n.get = func(e *Event, _ *rowArena) parquet.Value { return boolValue(get(e)) }
			if layout == LayoutUpper && strings.HasPrefix(f.name, "integrations_") {
				n.leaf = tString
				n.get = func(e *Event, _ *rowArena) parquet.Value { return boolText(get(e)) }
			}
		case kNum:
			n.leaf = tDouble
			get := f.num
			n.get = func(e *Event, _ *rowArena) parquet.Value { return numValue(get(e)) }
			switch {
			case v.textMoney && f.name == "total":
				n.leaf = tString
				n.get = func(e *Event, _ *rowArena) parquet.Value { return strValue(e.TotalText) }
			case v.textMoney && f.name == "revenue":
				n.leaf = tString
				n.get = func(e *Event, _ *rowArena) parquet.Value { return strValue(e.RevenueText) }
			case layout == LayoutUpper && f.name == "total":
				n.leaf = tDecimal
				n.get = func(e *Event, a *rowArena) parquet.Value { return decimal16(get(e), a) }
			}
		case kTime:
			get := f.tm
			switch {
			case layout == LayoutWarehouse:
				n.leaf = tMicros
				n.get = func(e *Event, _ *rowArena) parquet.Value { return microsValue(get(e)) }
			case layout == LayoutDatalake:
				n.leaf = tInt96
				n.get = func(e *Event, _ *rowArena) parquet.Value { return int96Value(get(e)) }
			case f.name == "timestamp" || f.name == "uuid_ts": // upper
				n.leaf = tMillis
				n.get = func(e *Event, _ *rowArena) parquet.Value { return millisValue(get(e)) }
			default: // upper: Snowflake VARCHAR timestamps
				n.leaf = tString
				n.get = func(e *Event, a *rowArena) parquet.Value { return isoValue(get(e), a) }
			}
		}
		nodes = append(nodes, n)
	}
	return compile(t.name, nodes)
}

func microsValue(t segment.Time) parquet.Value {
	if !t.Valid {
		return parquet.NullValue()
	}
	return parquet.Int64Value(t.Micros)
}

func millisValue(t segment.Time) parquet.Value {
	if !t.Valid {
		return parquet.NullValue()
	}
	return parquet.Int64Value(t.Micros / 1000)
}

// Nested layout: the raw message as Spark infers it from JSON (fields in
// alphabetical order, every field nullable).

func leafStr(name string, dict bool, f func(e *Event) string) *node {
	l := tString
	if dict {
		l = tDict
	}
	return &node{name: name, leaf: l, get: func(e *Event, _ *rowArena) parquet.Value { return strValue(f(e)) }}
}

func leafISO(name string, f func(e *Event) segment.Time) *node {
	return &node{name: name, leaf: tString, get: func(e *Event, a *rowArena) parquet.Value { return isoValue(f(e), a) }}
}

func leafNum(name string, f func(e *Event) segment.Number) *node {
	return &node{name: name, leaf: tDouble, get: func(e *Event, _ *rowArena) parquet.Value { return numValue(f(e)) }}
}

func leafBool(name string, f func(e *Event) segment.Bool) *node {
	return &node{name: name, leaf: tBool, get: func(e *Event, _ *rowArena) parquet.Value { return boolValue(f(e)) }}
}

func leafInt(name string, f func(e *Event) int64) *node {
	return &node{name: name, leaf: tInt64, get: func(e *Event, _ *rowArena) parquet.Value { return intValue(f(e)) }}
}

func group(name string, present func(e *Event) bool, children ...*node) *node {
	return &node{name: name, present: present, children: children}
}

func nestedSchema(t *table, v variant) *fileSchema {
	ctx := group("context", nil,
		group("app", nil,
			leafStr("build", true, func(e *Event) string { return e.Context.AppBuild }),
			leafStr("name", true, func(e *Event) string { return e.Context.AppName }),
			leafStr("version", true, func(e *Event) string { return e.Context.AppVersion })),
		group("campaign", func(e *Event) bool { return e.Context.CampaignSource != "" },
			leafStr("medium", true, func(e *Event) string { return e.Context.CampaignMedium }),
			leafStr("name", true, func(e *Event) string { return e.Context.CampaignName }),
			leafStr("source", true, func(e *Event) string { return e.Context.CampaignSource })),
		group("device", nil,
			leafStr("id", false, func(e *Event) string { return e.Context.DeviceID }),
			leafStr("manufacturer", true, func(e *Event) string { return e.Context.DeviceManufacturer }),
			leafStr("model", true, func(e *Event) string { return e.Context.DeviceModel }),
			leafStr("type", true, func(e *Event) string { return e.Context.DeviceType })),
		leafStr("ip", false, func(e *Event) string { return e.Context.IP }),
		group("library", nil,
			leafStr("name", true, func(e *Event) string { return e.Context.LibraryName }),
			leafStr("version", true, func(e *Event) string { return e.Context.LibraryVersion })),
		leafStr("locale", true, func(e *Event) string { return e.Context.Locale }),
		group("network", nil,
			leafStr("carrier", true, func(e *Event) string { return e.Context.NetworkCarrier }),
			leafBool("wifi", func(e *Event) segment.Bool { return e.Context.NetworkWifi })),
		group("os", nil,
			leafStr("name", true, func(e *Event) string { return e.Context.OSName }),
			leafStr("version", true, func(e *Event) string { return e.Context.OSVersion })),
		group("page", func(e *Event) bool { return e.Context.PagePath != "" },
			leafStr("path", false, func(e *Event) string { return e.Context.PagePath }),
			leafStr("referrer", true, func(e *Event) string { return e.Context.PageReferrer }),
			leafStr("url", false, func(e *Event) string { return e.Context.PageURL })),
		group("screen", func(e *Event) bool { return e.Context.ScreenWidth != 0 },
			leafInt("height", func(e *Event) int64 { return e.Context.ScreenHeight }),
			leafInt("width", func(e *Event) int64 { return e.Context.ScreenWidth })),
		leafStr("timezone", true, func(e *Event) string { return e.Context.Timezone }),
		leafStr("userAgent", true, func(e *Event) string { return e.Context.UserAgent }),
	)
	fields := []*node{
		leafStr("anonymousId", false, func(e *Event) string { return e.AnonymousID }),
		ctx,
	}
	if t.typ == segment.TypeTrack {
		fields = append(fields, leafStr("event", true, func(e *Event) string { return e.EventText }))
	}
	if v.integrations {
		fields = append(fields, group("integrations", func(e *Event) bool {
			return e.IntegrationsAll != segment.Absent || e.IntegrationsConvertro != segment.Absent
		},
			leafBool("All", func(e *Event) segment.Bool { return e.IntegrationsAll }),
			leafBool("Convertro", func(e *Event) segment.Bool { return e.IntegrationsConvertro })))
	}
	fields = append(fields, leafStr("messageId", false, func(e *Event) string { return e.MessageID }))
	if t.name == "pages" {
		fields = append(fields, leafStr("name", true, func(e *Event) string { return e.Name }))
	}
	fields = append(fields, leafISO("originalTimestamp", func(e *Event) segment.Time { return e.OriginalTimestamp }))
	switch t.name {
	case "order_completed":
		fields = append(fields, group("properties", nil,
			leafStr("coupon", true, func(e *Event) string { return e.Coupon }),
			leafStr("currency", true, func(e *Event) string { return e.Currency }),
			leafNum("discount", func(e *Event) segment.Number { return e.Discount }),
			leafStr("orderId", false, func(e *Event) string { return e.OrderID }),
			leafStr("products", false, func(e *Event) string { return e.Products }),
			leafBool("repeat", func(e *Event) segment.Bool { return e.Repeat }),
			leafNum("revenue", func(e *Event) segment.Number { return e.Revenue }),
			leafNum("shipping", func(e *Event) segment.Number { return e.Shipping }),
			leafNum("tax", func(e *Event) segment.Number { return e.Tax }),
			leafNum("total", func(e *Event) segment.Number { return e.Total })))
	case "application_installed":
		fields = append(fields, group("properties", nil,
			leafStr("build", true, func(e *Event) string { return e.Build }),
			leafStr("version", true, func(e *Event) string { return e.Version })))
	case "pages":
		fields = append(fields, group("properties", nil,
			leafStr("path", false, func(e *Event) string { return e.Path }),
			leafStr("title", true, func(e *Event) string { return e.Title }),
			leafStr("url", false, func(e *Event) string { return e.URL })))
	}
	fields = append(fields,
		leafISO("receivedAt", func(e *Event) segment.Time { return e.ReceivedAt }),
		leafISO("sentAt", func(e *Event) segment.Time { return e.SentAt }),
		leafISO("timestamp", func(e *Event) segment.Time { return e.Timestamp }),
	)
	if t.name == "identifies" {
		fields = append(fields, group("traits", nil,
			leafStr("email", false, func(e *Event) string { return e.Email }),
			leafStr("name", false, func(e *Event) string { return e.TraitName }),
			leafStr("plan", true, func(e *Event) string { return e.Plan })))
	}
	fields = append(fields,
		leafStr("type", true, func(e *Event) string { return e.Type.String() }),
		leafStr("userId", false, func(e *Event) string { return e.UserID }),
	)
	return compile(t.name, fields)
}
