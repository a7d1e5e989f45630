package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/parquet-go/parquet-go"

	"github.com/convertro-etl/convertro-etl/readers"
)

// scan is the DuckDB side over one input: one query, the UNION ALL of
// one aggregate per set of columns over the files that share it, so that
// the small sets cost no round trip of their own.
type scan struct {
	query   string
	columns int
}

// planScan opens every file of dir with the job's reader, takes the columns
// it resolves, and writes one query for each distinct set of them. This
// happens once, outside the timings, as DuckDB is given the file list and
// the dry run lists the folder itself.
func planScan(ctx context.Context, conn *sql.Conn, dir string) (scan, error) {
	src, err := readers.OpenSource(ctx, dir, readers.SourceOptions{})
	if err != nil {
		return scan{}, err
	}
	l, err := src.Scan(ctx)
	if err != nil {
		return scan{}, err
	}
	groups := map[string][]string{} // column list, joined by \x00 -> files
	var order []string
	for _, obj := range l.Objects {
		f, err := src.Open(ctx, obj)
		if err != nil {
			return scan{}, err
		}
		pf, err := readers.OpenParquet(ctx, f, obj, readers.Hint{})
		f.Close()
		if err != nil {
			return scan{}, err
		}
		var cols []string
		for _, col := range pf.Columns() {
			if !slices.Contains(cols, col) {
				cols = append(cols, col)
			}
		}
		slices.Sort(cols)
		types, err := parquetTypes(objectPath(dir, obj), cols)
		if err != nil {
			return scan{}, err
		}
		// Files whose columns have other types are read apart: a DuckDB
		// read_parquet takes one type per column.
		key := strings.Join(cols, "\x00") + "\x01" + types
		if _, ok := groups[key]; !ok {
			order = append(order, key)
		}
		groups[key] = append(groups[key], objectPath(dir, obj))
	}
	var (
		s     scan
		parts []string
	)
	distinct := map[string]bool{}
	for _, key := range order {
		names, _, _ := strings.Cut(key, "\x01")
		cols := strings.Split(names, "\x00")
		if names == "" {
			cols = nil
		}
		files := groups[key]
		from := "read_parquet([" + strings.Join(mapSlice(files, quoteString), ", ") + "])"
		types, err := columnTypes(ctx, conn, from, cols)
		if err != nil {
			return scan{}, err
		}
		var exprs []string
		for i, col := range cols {
			distinct[col] = true
			ref := columnRef(col)
			switch t := types[i]; {
			case t == "VARCHAR":
				exprs = append(exprs, "sum(strlen("+ref+"))")
			case t == "BLOB":
				exprs = append(exprs, "sum(octet_length("+ref+"))")
			default:
				exprs = append(exprs, "bit_xor(hash("+ref+"))")
			}
		}
		parts = append(parts, "SELECT count(*) AS n, hash("+strings.Join(exprs, ", ")+") AS h FROM "+from)
	}
	s.query = "SELECT sum(n)::BIGINT, bit_xor(h) FROM (" + strings.Join(parts, " UNION ALL ") + ")"
	s.columns = len(distinct)
	if s.columns == 0 {
		return scan{}, fmt.Errorf("scan %s: %w", dir, errNoColumns)
	}
	return s, nil
}

// run runs the query and returns the rows it counted and their rate.
func (s scan) run(ctx context.Context, conn *sql.Conn) (int64, rate, error) {
	return timed(func() (rows int64, err error) {
		var h any
		if err := conn.QueryRowContext(ctx, s.query).Scan(&rows, &h); err != nil {
			return 0, fmt.Errorf("duckdb scan: %w", err)
		}
		return rows, nil
	})
}

// columnTypes asks DuckDB the type it reads each column as.
func columnTypes(ctx context.Context, conn *sql.Conn, from string, cols []string) ([]string, error) {
	q := "DESCRIBE SELECT " + strings.Join(mapSlice(cols, columnRef), ", ") + " FROM " + from
	r, err := conn.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("duckdb describe: %w", err)
	}
	defer r.Close()
	names, err := r.Columns()
	if err != nil {
		return nil, err
	}
	var types []string
	for r.Next() {
		vals := make([]any, len(names))
		ptrs := make([]any, len(names))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := r.Scan(ptrs...); err != nil {
			return nil, err
		}
		types = append(types, fmt.Sprint(vals[1])) // column_name, column_type, ...
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	if len(types) != len(cols) {
		return nil, fmt.Errorf("duckdb describe: %d types for %d columns", len(types), len(cols))
	}
	return types, nil
}

// objectPath is the local path of a listed object of the source dir.
func objectPath(dir string, obj readers.Object) string {
	return filepath.Join(dir, filepath.FromSlash(obj.Key))
}

// columnRef is a column path as the reader names it ("context.device.id"
// for a nested field), quoted for DuckDB part by part.
func columnRef(path string) string {
	return strings.Join(mapSlice(strings.Split(path, "."), func(p string) string {
		return `"` + strings.ReplaceAll(p, `"`, `""`) + `"`
	}), ".")
}

func quoteString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func mapSlice(in []string, f func(string) string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = f(s)
	}
	return out
}

// parquetTypes describes the types of a file's columns, from its footer.
func parquetTypes(path string, cols []string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	pf, err := parquet.OpenFile(f, st.Size(), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return "", fmt.Errorf("read the footer of %s: %w", path, err)
	}
	var b strings.Builder
	for _, col := range cols {
		leaf, ok := pf.Schema().Lookup(strings.Split(col, ".")...)
		if !ok {
			return "", fmt.Errorf("%s: no column %s", path, col)
		}
		fmt.Fprintf(&b, "%s;", leaf.Node.Type())
	}
	return b.String(), nil
}
