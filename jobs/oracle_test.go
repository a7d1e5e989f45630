package jobs

// The oracle: an independent, deliberately plain reading of the seed's rules
// over generated Parquet files, used to check what the job sends. It shares
// no code with readers or convertro: it reads every column generically with
// parquet-go, flattens names by its own simple rules, and builds URLs with
// net/url.

import (
	"math"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

// oracleRow is one Parquet row flattened to snake_case warehouse names.
type oracleRow map[string]any

// readOracleRows reads every row of every Parquet file under dir, with the
// table and segment_type its path names.
func readOracleRows(t *testing.T, dir string) (rows []oracleRow) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".parquet") {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		table, segType := "", ""
		for _, part := range strings.Split(filepath.Dir(rel), string(filepath.Separator)) {
			if k, v, ok := strings.Cut(part, "="); ok {
				if k == "segment_type" {
					segType = v
				}
				continue
			}
			if _, err := strconv.Atoi(part); err == nil {
				continue // a YYYY/MM/DD/HH folder
			}
			table = part
		}
		for _, r := range readOracleFile(t, p) {
			r["_table"], r["_segment_type"] = table, segType
			rows = append(rows, r)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func readOracleFile(t *testing.T, path string) []oracleRow {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatalf("oracle: open %s: %v", path, err)
	}
	schema := pf.Schema()
	paths := schema.Columns()
	leaves := make([]parquet.Node, len(paths))
	names := make([]string, len(paths))
	for i, p := range paths {
		leaf, _ := schema.Lookup(p...)
		leaves[i] = leaf.Node
		names[i] = oracleName(p)
	}
	var out []oracleRow
	for _, rg := range pf.RowGroups() {
		rr := rg.Rows()
		buf := make([]parquet.Row, 256)
		for {
			n, err := rr.ReadRows(buf)
			for _, row := range buf[:n] {
				r := oracleRow{}
				for _, v := range row {
					if !v.IsNull() {
						r[names[v.Column()]] = oracleValue(leaves[v.Column()], v)
					}
				}
				out = append(out, r)
			}
			if err != nil {
				break
			}
		}
		rr.Close()
	}
	return out
}

// oracleName flattens a column path to its warehouse name: nested paths
// joined by "_", camelCase to snake_case, lower case, the Data Lakes
// properties_/traits_ prefixes dropped, messageId as the warehouse `id`.
func oracleName(path []string) string {
	var parts []string
	for _, p := range path {
		var b strings.Builder
		prev := rune(0)
		for _, r := range p {
			if unicode.IsUpper(r) && (unicode.IsLower(prev) || unicode.IsDigit(prev)) {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(r))
			prev = r
		}
		parts = append(parts, b.String())
	}
	n := strings.Join(parts, "_")
	for _, prefix := range []string{"properties_", "traits_"} {
		n = strings.TrimPrefix(n, prefix)
	}
	if n == "message_id" {
		n = "id"
	}
	return n
}

// oracleValue turns a value into string, float64, bool or time.Time.
func oracleValue(n parquet.Node, v parquet.Value) any {
	var (
		date  bool
		scale = -1
		unit  time.Duration
	)
	if lt := n.Type().LogicalType(); lt != nil {
		switch x := lt.Value.(type) {
		case *format.DateType:
			date = true
		case *format.DecimalType:
			scale = int(x.Scale)
		case *format.TimestampType:
			unit = x.Unit.Value.Duration()
		}
	}
	switch v.Kind() {
	case parquet.Boolean:
		return v.Boolean()
	case parquet.Int32:
		if date {
			return time.Unix(int64(v.Int32())*86400, 0).UTC()
		}
		if scale >= 0 {
			return float64(v.Int32()) / math.Pow10(scale)
		}
		return float64(v.Int32())
	case parquet.Int64:
		if unit > 0 {
			return time.Unix(0, 0).Add(time.Duration(v.Int64()) * unit).UTC()
		}
		if scale >= 0 {
			return float64(v.Int64()) / math.Pow10(scale)
		}
		return float64(v.Int64())
	case parquet.Int96:
		i := v.Int96()
		nanos := int64(uint64(i[1])<<32 | uint64(i[0]))
		days := int64(i[2]) - 2440588
		return time.Unix(days*86400, nanos).UTC()
	case parquet.Float:
		return float64(v.Float())
	case parquet.Double:
		return v.Double()
	case parquet.ByteArray, parquet.FixedLenByteArray:
		b := v.ByteArray()
		if scale >= 0 {
			x := new(big.Int).SetBytes(b)
			if len(b) > 0 && b[0]&0x80 != 0 {
				x.Sub(x, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
			}
			f, _ := new(big.Float).SetInt(x).Float64()
			return f / math.Pow10(scale)
		}
		return string(b)
	}
	return nil
}

func (r oracleRow) str(k string) string {
	switch v := r[k].(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return ""
}

func (r oracleRow) boolean(k string) (value, ok bool) {
	switch v := r[k].(type) {
	case bool:
		return v, true
	case string:
		switch strings.ToLower(v) {
		case "true":
			return true, true
		case "false":
			return false, true
		}
	}
	return false, false
}

func (r oracleRow) number(k string) (float64, bool) {
	switch v := r[k].(type) {
	case float64:
		return v, !math.IsNaN(v) && !math.IsInf(v, 0)
	case string:
		// A leading $ (after the sign of a refund, "-$79.08"), thousands
		// commas and surrounding space go; anything else that is not a
		// number is absent.
		s := strings.TrimSpace(v)
		sign := ""
		if strings.HasPrefix(s, "-") || strings.HasPrefix(s, "+") {
			sign, s = s[:1], s[1:]
		}
		s = sign + strings.ReplaceAll(strings.TrimPrefix(s, "$"), ",", "")
		f, err := strconv.ParseFloat(s, 64)
		return f, err == nil && !math.IsNaN(f) && !math.IsInf(f, 0)
	}
	return 0, false
}

func (r oracleRow) time(k string) (time.Time, bool) {
	switch v := r[k].(type) {
	case time.Time:
		return v, true
	case string:
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999Z0700", "2006-01-02 15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00", time.DateOnly} {
			if t, err := time.Parse(layout, v); err == nil {
				return t.UTC(), true
			}
		}
	}
	return time.Time{}, false
}

// oracleEventKey is how the oracle matches event names: lower case, with
// camelCase, _ - . and spaces all word breaks.
func oracleEventKey(s string) string {
	var words []string
	var w strings.Builder
	flush := func() {
		if w.Len() > 0 {
			words = append(words, w.String())
			w.Reset()
		}
	}
	prev := rune(0)
	for _, r := range s {
		switch {
		case r == '_' || r == '-' || r == '.' || unicode.IsSpace(r):
			flush()
		case unicode.IsUpper(r) && unicode.IsLower(prev):
			flush()
			w.WriteRune(unicode.ToLower(r))
		default:
			w.WriteRune(unicode.ToLower(r))
		}
		prev = r
	}
	flush()
	return strings.Join(words, " ")
}

// expectRequests applies the seed's rules to rows and returns the requests as
// their exact wire form: path?query, parameters in the wire page's order. events is the events map; it
// skips rows of `tracks` whose event has a table of its own (in_event_table).
func expectRequests(rows []oracleRow, client, site string, events map[string][]string, hybrid bool) []string {
	return expectRequestsWith(rows, client, site, events, hybrid, false)
}

// expectRequestsWith is expectRequests, with anonymousSID standing for
// --anonymous-id-as-device-id: a row without context_device_id is sent
// under its anonymous_id.
func expectRequestsWith(rows []oracleRow, client, site string, events map[string][]string, hybrid, anonymousSID bool) []string {
	mapped := map[string][]string{}
	for k, v := range events {
		mapped[oracleEventKey(k)] = append(mapped[oracleEventKey(k)], v...)
	}
	ownTable := map[string]bool{}
	for _, r := range rows {
		t, _ := r["_table"].(string)
		switch t {
		case "tracks", "identifies", "users", "pages", "screens", "groups", "aliases", "":
		default:
			ownTable[oracleEventKey(strings.TrimPrefix(t, "track_"))] = true
		}
	}
	var out []string
	for _, r := range rows {
		typ := r.str("type")
		if typ == "" {
			typ = r["_segment_type"].(string)
		}
		table := r["_table"].(string)
		if typ == "" {
			switch table {
			case "identifies", "users":
				typ = "identify"
			case "pages":
				typ = "page"
			default:
				typ = "track"
			}
		}
		if conv, ok := r.boolean("integrations_convertro"); ok && !conv {
			continue
		}
		if all, ok := r.boolean("integrations_all"); ok && !all {
			if conv, ok := r.boolean("integrations_convertro"); !ok || !conv {
				continue
			}
		}
		sid := r.str("context_device_id")
		if sid == "" && anonymousSID {
			sid = r.str("anonymous_id")
		}
		var ts time.Time
		found := false
		for _, k := range []string{"timestamp", "original_timestamp", "sent_at", "received_at"} {
			if ts, found = r.time(k); found {
				break
			}
		}
		// add appends one request: path, then the query exactly as the wire
		// page lists it, name=value pairs in the order of kv, then cua and
		// cip, each value escaped by net/url.
		add := func(path string, kv ...string) {
			if ua := r.str("context_user_agent"); ua != "" {
				kv = append(kv, "cua", ua)
			}
			if ip := r.str("context_ip"); ip != "" {
				kv = append(kv, "cip", ip)
			}
			var q strings.Builder
			for i := 0; i < len(kv); i += 2 {
				if i > 0 {
					q.WriteByte('&')
				}
				q.WriteString(kv[i] + "=" + url.QueryEscape(kv[i+1]))
			}
			out = append(out, path+"?"+q.String())
		}
		base := "/" + client + "/" + site + "/"
		unix := strconv.FormatInt(int64(math.Floor(float64(ts.UnixMicro())/1e6)), 10)
		val := func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
		switch typ {
		case "identify":
			if r.str("user_id") == "" || sid == "" || !found {
				continue
			}
			add("/api/user"+base, "sid", sid, "id", r.str("user_id"), "ts", unix)
		case "track":
			if sid == "" || !found {
				continue
			}
			name := r.str("event_text")
			if name == "" {
				name = r.str("event")
			}
			key := oracleEventKey(name)
			if table == "tracks" && ownTable[key] {
				continue
			}
			switch key {
			case "order completed", "completed order":
				orderID := r.str("order_id")
				if orderID == "" {
					continue
				}
				v, ok := r.number("total")
				if !ok {
					if v, ok = r.number("revenue"); !ok {
						v = 1
					}
				}
				repeat, isBool := r.boolean("repeat")
				types := []string{"sale"}
				if isBool {
					kind := "sale.new"
					if repeat {
						kind = "sale.repeat"
					}
					types = []string{kind}
					if hybrid {
						types = append(types, "sale")
					}
				}
				for _, typ := range types {
					add("/api/hit"+base, "sid", sid, "typ", typ, "val", val(v), "eid", orderID, "ts", unix)
				}
			case "application installed":
				add("/api/install"+base, "sid", sid, "eid", r.str("id"), "ts", unix)
			default:
				v, ok := r.number("revenue")
				if !ok {
					v = 1
				}
				names := []string{name}
				if len(events) > 0 {
					names = mapped[key]
				}
				for _, n := range names {
					add("/api/hit"+base, "sid", sid, "typ", n, "val", val(v), "eid", r.str("id"), "ts", unix)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}
