package main

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"hash/maphash"
	"os"
	"path/filepath"
	"strings"

	"github.com/convertro-etl/convertro-etl/convertro"
	"github.com/convertro-etl/convertro-etl/writers/generate"
)

// The fourth side: DuckDB doing the dry run's whole job in SQL over an
// export the generator wrote (or the wide file, a warehouse tracks table),
// for the settings of jobs.DemoOptions, and writing the same lines with
// COPY ... TO a JSON-lines file. The query applies, per table, what the job
// applies per row (convertro.Mapper):
//
//   - rule 19: integrations_convertro false, or integrations_all false
//     without integrations_convertro true, skips the row (the columns are
//     absent from some files: union_by_name reads them as NULL);
//   - rule 16: only identifies and tracks are sent (the pages table is
//     not read: its every row is skipped by type);
//   - rule 2: an identify needs a user_id; rule 3: every row a
//     context_device_id (anonymous_id is not used as a device id by
//     default); rule 17: the first present of timestamp,
//     original_timestamp, sent_at and received_at, in whole Unix seconds,
//     floored;
//   - tracks: the name is event_text unless it normalises to nothing, then
//     event; normalised as the Mapper does for ASCII names (camelCase
//     split, '_', '-', '.' and white space folded to one space, trimmed,
//     lower case); a `tracks` row whose event has a table of its own is
//     skipped (in_event_table); the settings' events map gives one hit per
//     mapped name, val 1 (the generator's tracks have no revenue column,
//     so the query reads none), eid the message id;
//     unmapped names are skipped;
//   - Order Completed: order_id needed; val the total if it is a number,
//     else the revenue, else 1; typ sale.repeat, sale.new or sale from
//     repeat; eid the order_id;
//   - Application Installed: an install with the message id as eid;
//   - the URL: the wire's paths and parameter order, values escaped as
//     url.QueryEscape does (url_encode with '+' for a space), cua and cip
//     left out when empty, numbers in their shortest decimal form.
//
// Number text (the warehouse order_completed files of the second day) is
// read as readers.ParseNumber reads the forms the generator writes ("NA",
// "$1,299.50", " 12.5 "). Every value the generator writes is whole cents
// below 2^53 cents, for which the shortest decimal of the float64 is the
// decimal the job writes from the text too; the output check in measure
// (and TestWholeJobSQLWritesTheDryRunLines) compares every line.
//
// What the generator never writes the query does not do, so its output
// equals the dry run's on generated exports only: the event id the job
// derives for a row without message id (row- and a SHA-256 over a binary
// form of the row's values), the dead letter of a URL over 16 KiB, number
// text in other forms ("-$5", exponents), non-ASCII event names, and
// settings other than the demo's (hybrid sales, anonymous ids as device
// ids, an empty events map, a time range).

// sqlLayout names the folders and columns that differ between the two
// layouts the query knows.
type sqlLayout struct {
	glob                               string // below a table's folder
	orderTable, installTable           string
	orderID, total, revenue, repeatCol string
}

var sqlLayouts = map[string]sqlLayout{
	generate.LayoutWarehouse: {glob: "**/*.parquet", orderTable: "order_completed", installTable: "application_installed",
		orderID: "order_id", total: "total", revenue: "revenue", repeatCol: "repeat"},
	generate.LayoutDatalake: {glob: "**/*.parquet", orderTable: "track_order_completed", installTable: "track_application_installed",
		orderID: "properties_order_id", total: "properties_total", revenue: "properties_revenue", repeatCol: "properties_repeat"},
}

// sqlMacros are the helpers the whole-job query uses, created once per
// connection.
var sqlMacros = []string{
	// url.QueryEscape: url_encode leaves letters, digits and -_.~ as they
	// are and writes %XX with upper-case hex, as Go does, but a space as
	// %20 where Go writes '+'.
	`CREATE OR REPLACE TEMP MACRO qe(s) AS replace(url_encode(s), '%20', '+')`,
	// AppendValue: the shortest decimal, no ".0" for a whole number, -0 as 0.
	`CREATE OR REPLACE TEMP MACRO num(x) AS CASE WHEN x = trunc(x) AND abs(x) < 1e15 THEN CAST(CAST(x AS BIGINT) AS VARCHAR) ELSE CAST(x AS VARCHAR) END`,
	// readers.ParseNumber for the generator's text amounts; NaN and ±Inf
	// count as absent (the Mapper's value). (A scalar subquery naming the
	// parsed value once made the whole statement ten times slower.)
	`CREATE OR REPLACE TEMP MACRO amount(s) AS CASE WHEN isfinite(TRY_CAST(replace(replace(trim(CAST(s AS VARCHAR)), '$', ''), ',', '') AS DOUBLE))
	                                                THEN TRY_CAST(replace(replace(trim(CAST(s AS VARCHAR)), '$', ''), ',', '') AS DOUBLE) END`,
	// NormalizeEventName, for ASCII names.
	`CREATE OR REPLACE TEMP MACRO norm(s) AS lower(trim(regexp_replace(regexp_replace(regexp_replace(coalesce(s, ''), '([a-z0-9])([A-Z])', '\1 \2', 'g'), '([A-Z])([A-Z][a-z])', '\1 \2', 'g'), '[\s_.-]+', ' ', 'g')))`,
	// The event time in whole Unix seconds, floored.
	`CREATE OR REPLACE TEMP MACRO secs(t) AS CASE WHEN epoch_us(t) >= 0 THEN epoch_us(t) // 1000000 ELSE -((999999 - epoch_us(t)) // 1000000) END`,
	// The optional tail of every request.
	`CREATE OR REPLACE TEMP MACRO tail(cua, cip) AS CASE WHEN coalesce(cua, '') = '' THEN '' ELSE '&cua=' || qe(cua) END || CASE WHEN coalesce(cip, '') = '' THEN '' ELSE '&cip=' || qe(cip) END`,
}

// wholeJob is the SQL side over one input.
type wholeJob struct {
	query string // the COPY, with the output path as its one parameter spot
}

// planWholeJob writes the query for dir, an export of layout (the wide
// file is a warehouse export with a tracks table only). events is the
// settings' events map, base the dry run's base URL.
func planWholeJob(ctx context.Context, conn *sql.Conn, dir, layout, base string, events map[string][]string) (wholeJob, error) {
	l, ok := sqlLayouts[layout]
	if !ok {
		return wholeJob{}, fmt.Errorf("whole job in SQL: no query for the %s layout", layout)
	}
	tables := map[string]string{} // table -> read_parquet
	for _, t := range []string{"identifies", "tracks", l.orderTable, l.installTable} {
		folder := filepath.Join(dir, t)
		if _, err := os.Stat(folder); err != nil {
			continue
		}
		from := fmt.Sprintf("read_parquet(%s, union_by_name = true, hive_partitioning = false)", quoteString(filepath.Join(folder, l.glob)))
		// A table whose files all lack the integrations columns (the
		// generator's application_installed) reads them as NULL, as the
		// job does.
		have, err := describe(ctx, conn, from)
		if err != nil {
			return wholeJob{}, err
		}
		var missing []string
		for _, c := range []string{"integrations_all", "integrations_convertro"} {
			if !have[c] {
				missing = append(missing, "NULL::BOOLEAN AS "+c)
			}
		}
		if len(missing) > 0 {
			from = "(SELECT *, " + strings.Join(missing, ", ") + " FROM " + from + ")"
		}
		tables[t] = from
	}
	if len(tables) == 0 {
		return wholeJob{}, fmt.Errorf("whole job in SQL: no table of the %s layout in %s", layout, dir)
	}
	prefix := func(kind string) string { return quoteString(base + "/api/" + kind + "/demo/1/?") }
	// The rows every kind shares: rules 19, 3 and 17, and the columns.
	common := `CASE WHEN integrations_convertro = false OR (integrations_all = false AND integrations_convertro IS DISTINCT FROM true) THEN 'disabled'
	                WHEN coalesce(context_device_id, '') = '' THEN 'no_device' END AS skip,
	           qe(context_device_id) AS sid, secs(coalesce("timestamp", original_timestamp, sent_at, received_at)) AS ts,
	           tail(context_user_agent, context_ip) AS tl, id`
	var parts []string
	if from, ok := tables["identifies"]; ok {
		parts = append(parts, `SELECT `+prefix("user")+` || 'sid=' || sid || '&id=' || qe(user_id) || '&ts=' || ts || tl AS url
			FROM (SELECT `+common+`, user_id FROM `+from+`)
			WHERE skip IS NULL AND coalesce(user_id, '') <> '' AND ts IS NOT NULL`)
	}
	if from, ok := tables["tracks"]; ok {
		var mapped []string
		for name, typs := range events {
			for _, typ := range typs {
				mapped = append(mapped, fmt.Sprintf("(%s, %s)", quoteString(convertro.NormalizeEventName(name)), quoteString(typ)))
			}
		}
		if len(mapped) == 0 {
			return wholeJob{}, fmt.Errorf("whole job in SQL: an empty events map sends every track under its own name, which the query does not do")
		}
		own := []string{"'order completed'", "'completed order'", "'application installed'"}
		parts = append(parts, `SELECT `+prefix("hit")+` || 'sid=' || sid || '&typ=' || qe(m.typ) || '&val=1&eid=' || qe(id) || '&ts=' || ts || tl AS url
			FROM (SELECT * EXCLUDE (nt, event), CASE WHEN nt <> '' THEN nt ELSE norm(event) END AS name
			      FROM (SELECT `+common+`, norm(event_text) AS nt, event FROM `+from+`)) t
			JOIN (VALUES `+strings.Join(mapped, ", ")+`) AS m(name, typ) ON m.name = t.name
			WHERE skip IS NULL AND ts IS NOT NULL AND t.name NOT IN (`+strings.Join(own, ", ")+`)`)
	}
	if from, ok := tables[l.orderTable]; ok {
		parts = append(parts, `SELECT `+prefix("hit")+` || 'sid=' || sid || '&typ=' || typ || '&val=' || num(coalesce(amount(total), amount(revenue), 1)) || '&eid=' || qe(order_id) || '&ts=' || ts || tl AS url
			FROM (SELECT `+common+`, `+l.orderID+` AS order_id, `+l.total+` AS total, `+l.revenue+` AS revenue,
			             CASE `+l.repeatCol+` WHEN true THEN 'sale.repeat' WHEN false THEN 'sale.new' ELSE 'sale' END AS typ FROM `+from+`)
			WHERE skip IS NULL AND ts IS NOT NULL AND coalesce(order_id, '') <> ''`)
	}
	if from, ok := tables[l.installTable]; ok {
		parts = append(parts, `SELECT `+prefix("install")+` || 'sid=' || sid || '&eid=' || qe(id) || '&ts=' || ts || tl AS url
			FROM (SELECT `+common+` FROM `+from+`)
			WHERE skip IS NULL AND ts IS NOT NULL`)
	}
	return wholeJob{query: `COPY (SELECT 'GET' AS method, url FROM (` + strings.Join(parts, "\nUNION ALL\n") + `)) TO %s (FORMAT json)`}, nil
}

// run writes the requests to out and returns the lines it wrote and their
// rate (lines a second) over the whole statement.
func (j wholeJob) run(ctx context.Context, conn *sql.Conn, out string) (int64, rate, error) {
	return timed(func() (int64, error) {
		res, err := conn.ExecContext(ctx, fmt.Sprintf(j.query, quoteString(out)))
		if err != nil {
			return 0, fmt.Errorf("duckdb whole job: %w", err)
		}
		lines, err := res.RowsAffected()
		if err != nil {
			return 0, fmt.Errorf("duckdb whole job: %w", err)
		}
		return lines, nil
	})
}

// describe returns the names of the columns of from.
func describe(ctx context.Context, conn *sql.Conn, from string) (map[string]bool, error) {
	r, err := conn.QueryContext(ctx, "SELECT column_name FROM (DESCRIBE SELECT * FROM "+from+")")
	if err != nil {
		return nil, fmt.Errorf("duckdb describe: %w", err)
	}
	defer r.Close()
	cols := map[string]bool{}
	for r.Next() {
		var c string
		if err := r.Scan(&c); err != nil {
			return nil, err
		}
		cols[c] = true
	}
	return cols, r.Err()
}

// createMacros defines the query's helpers on conn.
func createMacros(ctx context.Context, conn *sql.Conn) error {
	for _, m := range sqlMacros {
		if _, err := conn.ExecContext(ctx, m); err != nil {
			return fmt.Errorf("duckdb: %s: %w", m, err)
		}
	}
	return nil
}

// sameLines compares two files of lines as multisets (the dry run writes
// in plan order, DuckDB in its own): it returns the lines of each file
// the other lacks, at most max of each, and how many there are in all.
func sameLines(a, b string, max int) (onlyA, onlyB []string, n int, err error) {
	seed := maphash.MakeSeed()
	counts := map[uint64]int32{}
	each := func(path string, f func(line []byte) error) error {
		fh, err := os.Open(path)
		if err != nil {
			return err
		}
		defer fh.Close()
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			if err := f(sc.Bytes()); err != nil {
				return err
			}
		}
		return sc.Err()
	}
	for _, side := range []struct {
		path string
		d    int32
	}{{a, 1}, {b, -1}} {
		if err := each(side.path, func(line []byte) error {
			counts[maphash.Bytes(seed, line)] += side.d
			return nil
		}); err != nil {
			return nil, nil, 0, err
		}
	}
	left := map[uint64]int32{}
	for h, c := range counts {
		if c != 0 {
			left[h] = c
			n += int(max32(c, -c))
		}
	}
	if n == 0 {
		return nil, nil, 0, nil
	}
	for _, side := range []struct {
		path string
		out  *[]string
		sign int32
	}{{a, &onlyA, 1}, {b, &onlyB, -1}} {
		if err := each(side.path, func(line []byte) error {
			if c := left[maphash.Bytes(seed, line)]; c*side.sign > 0 && len(*side.out) < max {
				*side.out = append(*side.out, string(line))
			}
			return nil
		}); err != nil {
			return nil, nil, 0, err
		}
	}
	return onlyA, onlyB, n, nil
}

func max32(a, b int32) int32 {
	if a > b {
		return a
	}
	return b
}
