package readers

import (
	"fmt"
	"strings"

	"github.com/parquet-go/parquet-go"

	"github.com/convertro-etl/convertro-etl/internal/segment"
)

// field is one segment.Message field the decoder can fill.
type field uint8

const (
	fType field = iota
	fMessageID
	fUserID
	fAnonymousID
	fDeviceID
	fEventText
	fEvent
	fOrderID
	fTotal
	fRevenue
	fRepeat
	fTimestamp
	fOriginalTimestamp
	fSentAt
	fReceivedAt
	fUserAgent
	fIP
	fIntegrationsAll
	fIntegrationsConvertro
	numFields
)

// semantic is what a field holds, whatever the column's physical type.
type semantic uint8

const (
	semBytes semantic = iota
	semNumber
	semTime
	semBool
	semType
)

type fieldSpec struct {
	name string // warehouse name, used in messages
	sem  semantic
	// candidates are the column paths to try, in order, each compared
	// case-insensitively with the dotted path of a schema node.
	candidates []string
}

// fieldSpecs lists, for every field, the warehouse name, the Data Lakes
// prefixed name, the camelCase name and the nested paths, in that order.
var fieldSpecs = [numFields]fieldSpec{
	fType:                  {"type", semType, []string{"type"}},
	fMessageID:             {"id", semBytes, []string{"id", "message_id", "messageId"}},
	fUserID:                {"user_id", semBytes, []string{"user_id", "userId"}},
	fAnonymousID:           {"anonymous_id", semBytes, []string{"anonymous_id", "anonymousId"}},
	fDeviceID:              {"context_device_id", semBytes, []string{"context_device_id", "contextDeviceId", "context.device.id"}},
	fEventText:             {"event_text", semBytes, []string{"event_text", "eventText"}},
	fEvent:                 {"event", semBytes, []string{"event"}},
	fOrderID:               {"order_id", semBytes, []string{"order_id", "properties_order_id", "properties_orderId", "orderId", "properties.order_id", "properties.orderId"}},
	fTotal:                 {"total", semNumber, []string{"total", "properties_total", "properties.total"}},
	fRevenue:               {"revenue", semNumber, []string{"revenue", "properties_revenue", "properties.revenue"}},
	fRepeat:                {"repeat", semBool, []string{"repeat", "properties_repeat", "properties.repeat"}},
	fTimestamp:             {"timestamp", semTime, []string{"timestamp"}},
	fOriginalTimestamp:     {"original_timestamp", semTime, []string{"original_timestamp", "originalTimestamp"}},
	fSentAt:                {"sent_at", semTime, []string{"sent_at", "sentAt"}},
	fReceivedAt:            {"received_at", semTime, []string{"received_at", "receivedAt"}},
	fUserAgent:             {"context_user_agent", semBytes, []string{"context_user_agent", "contextUserAgent", "context.userAgent", "context.user_agent"}},
	fIP:                    {"context_ip", semBytes, []string{"context_ip", "contextIp", "context.ip"}},
	fIntegrationsAll:       {"integrations_all", semBool, []string{"integrations_all", "integrationsAll", "integrations.All"}},
	fIntegrationsConvertro: {"integrations_convertro", semBool, []string{"integrations_convertro", "integrationsConvertro", "integrations.Convertro"}},
}

// In the `users` table `id` is the user id and there is no message id.
var usersUserID = []string{"id", "user_id", "userId"}

// physical is how a column's values are stored and what they mean, fixed
// per file from the footer.
type physical uint8

const (
	physBytes   physical = iota // BYTE_ARRAY or FIXED_LEN_BYTE_ARRAY as raw bytes/text
	physInt                     // INT32/INT64 plain integers
	physFloat                   // FLOAT/DOUBLE
	physDecimal                 // DECIMAL(scale) over INT32/INT64/FIXED_LEN_BYTE_ARRAY/BYTE_ARRAY
	physBool                    // BOOLEAN
	physInt96                   // INT96 timestamps
	physIgnore                  // a usable column that can never hold this field's value: all absent
)

// colPlan says how to decode one Parquet leaf column into one field.
type colPlan struct {
	field  field
	leaf   int    // index of the leaf column in each row group's ColumnChunks
	name   string // dotted column path as written in the file, for messages
	kind   parquet.Kind
	phys   physical
	maxDef byte
	size   int // FIXED_LEN_BYTE_ARRAY length
	// unsigned: an INT32/INT64 of unsigned integers (physInt only)
	unsigned bool
	scale    int32 // DECIMAL scale
	timeMul  int64 // INT64 timestamps: multiply (>0) or divide (<0) to reach micros; DATE: micros per day
}

// plan is the per-file decoding plan: one entry per resolved field.
type plan struct {
	cols     []colPlan
	fileType segment.Type // type for rows without a per-row type
}

// nodeIndex maps lower-cased dotted paths to schema columns.
func nodeIndex(root *parquet.Column) map[string]*parquet.Column {
	idx := make(map[string]*parquet.Column)
	var walk func(prefix string, c *parquet.Column)
	walk = func(prefix string, c *parquet.Column) {
		for _, ch := range c.Columns() {
			p := strings.ToLower(ch.Name())
			if prefix != "" {
				p = prefix + "." + p
			}
			if _, dup := idx[p]; !dup { // the first of two case-variants wins
				idx[p] = ch
			}
			walk(p, ch)
		}
	}
	walk("", root)
	return idx
}

// resolve finds the column of every field and checks its type. users says the
// file is the `users` table.
func resolve(root *parquet.Column, users bool) map[field]*parquet.Column {
	idx := nodeIndex(root)
	found := make(map[field]*parquet.Column)
	for f := range numFields {
		cands := fieldSpecs[f].candidates
		if users {
			switch f {
			case fMessageID:
				continue
			case fUserID:
				cands = usersUserID
			}
		}
		for _, c := range cands {
			if col, ok := idx[strings.ToLower(c)]; ok {
				found[f] = col
				break
			}
		}
	}
	return found
}

// planColumn checks that col can feed field f and says how.
func planColumn(f field, col *parquet.Column) (colPlan, error) {
	name := strings.Join(col.Path(), ".")
	p := colPlan{field: f, name: name}
	if !col.Leaf() {
		return p, fmt.Errorf("column %q: a nested group or list cannot hold %s", name, fieldSpecs[f].name)
	}
	if col.MaxRepetitionLevel() > 0 {
		return p, fmt.Errorf("column %q: a repeated (list) column cannot hold %s", name, fieldSpecs[f].name)
	}
	if col.MaxDefinitionLevel() > 255 {
		return p, fmt.Errorf("column %q: nested too deeply", name)
	}
	p.leaf = col.Index()
	p.maxDef = byte(col.MaxDefinitionLevel())
	t := col.Type()
	p.kind = t.Kind()
	if p.kind == parquet.FixedLenByteArray {
		p.size = t.Length()
	}
	lt := t.LogicalType()
	var ct deprecatedConverted
	if c := t.ConvertedType(); c != nil {
		ct = deprecatedConverted(*c)
	}
	var dec *formatDecimal
	if lt != nil {
		dec = asDecimal(lt)
	}
	bad := func() (colPlan, error) {
		return p, fmt.Errorf("column %q: type %s cannot hold %s", name, t, fieldSpecs[f].name)
	}

	switch fieldSpecs[f].sem {
	case semBytes, semType:
		switch {
		case dec != nil && fieldSpecs[f].sem == semBytes:
			// Snowflake exports NUMBER ids as DECIMAL(38,0): written as text.
			p.phys, p.scale = physDecimal, dec.Scale
		case p.kind == parquet.ByteArray || p.kind == parquet.FixedLenByteArray:
			p.phys = physBytes
		case p.kind == parquet.Int32 || p.kind == parquet.Int64:
			if isTemporal(lt, ct) {
				return bad()
			}
			p.phys = physInt // ids stored as integers are written as decimal text
			p.unsigned = isUnsigned(lt, ct)
		default:
			return bad()
		}
	case semNumber:
		switch {
		case dec != nil:
			switch p.kind {
			case parquet.Int32, parquet.Int64, parquet.FixedLenByteArray, parquet.ByteArray:
				p.phys, p.scale = physDecimal, dec.Scale
			default:
				return bad()
			}
		case p.kind == parquet.Int32 || p.kind == parquet.Int64:
			if isTemporal(lt, ct) {
				return bad()
			}
			p.phys = physInt
			p.unsigned = isUnsigned(lt, ct)
		case p.kind == parquet.Float || p.kind == parquet.Double:
			p.phys = physFloat
		case p.kind == parquet.ByteArray:
			p.phys = physBytes // text, parsed leniently
		default:
			return bad()
		}
	case semTime:
		switch p.kind {
		case parquet.Int64:
			p.phys = physInt
			p.unsigned = isUnsigned(lt, ct) // its statistics are in another order (EventTimeBounds)
			p.timeMul = timestampMultiplier(lt, ct)
			if p.timeMul == 0 {
				return bad()
			}
		case parquet.Int32:
			if !isDate(lt, ct) {
				return bad()
			}
			p.phys = physInt
			p.timeMul = 86400 * 1e6
		case parquet.Int96:
			p.phys = physInt96
		case parquet.ByteArray:
			if dec != nil {
				return bad()
			}
			p.phys = physBytes
		default:
			return bad()
		}
	case semBool:
		switch p.kind {
		case parquet.Boolean:
			p.phys = physBool
		case parquet.ByteArray:
			p.phys = physBytes
		default:
			// The wire rules count only a real boolean or true/false text;
			// a numeric `repeat` is "absent", not a broken file.
			p.phys = physIgnore
		}
	}
	return p, nil
}

// buildPlan resolves the columns of a file footer into a plan. fileType is
// the detected type (TypeUnknown when rows carry their own).
func buildPlan(root *parquet.Column, users bool) (plan, map[field]*parquet.Column, error) {
	found := resolve(root, users)
	var pl plan
	for f := range numFields {
		col, ok := found[f]
		if !ok {
			continue
		}
		cp, err := planColumn(f, col)
		if err != nil {
			return plan{}, nil, err
		}
		if cp.phys == physIgnore {
			continue
		}
		pl.cols = append(pl.cols, cp)
	}
	return pl, found, nil
}

// warehouseTables are the tables of Segment's common columns as warehouses
// name their folders, with the type of their rows; dataLakesTypes the same
// tables as Data Lakes names its segment_type= partitions. Every other
// table is an event's own table (order_completed, track_order_completed).
var (
	warehouseTables = map[string]segment.Type{
		"tracks": segment.TypeTrack, "identifies": segment.TypeIdentify, "users": segment.TypeIdentify,
		"pages": segment.TypePage, "screens": segment.TypeScreen, "groups": segment.TypeGroup, "aliases": segment.TypeAlias,
	}
	dataLakesTypes = map[string]segment.Type{
		"track": segment.TypeTrack, "identify": segment.TypeIdentify, "page": segment.TypePage,
		"screen": segment.TypeScreen, "group": segment.TypeGroup, "alias": segment.TypeAlias,
	}
)

// EventTable returns the event a table or segment_type= partition is named
// after ("order_completed"; "track_order_completed" in Data Lakes gives
// "order_completed"), or "" for the tables of the common columns (tracks,
// identifies, ...) and for no table.
func EventTable(table string) string {
	if _, ok := warehouseTables[table]; ok || table == "" {
		return ""
	}
	if _, ok := dataLakesTypes[table]; ok {
		return ""
	}
	return strings.TrimPrefix(table, "track_")
}

// tableType maps a table folder name to the message type of its rows.
func tableType(table string) segment.Type {
	table = strings.ToLower(table)
	if t, ok := warehouseTables[table]; ok {
		return t
	}
	if strings.HasPrefix(table, "track_") { // Data Lakes event tables
		return segment.TypeTrack
	}
	// Any other folder may be an event table (order_completed) or just a
	// folder (exports, a dataset, a source id): the event columns decide.
	return segment.TypeUnknown
}
