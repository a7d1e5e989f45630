package main

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/convertro-etl/convertro-etl/writers/generate"
)

// TestScanReadsWhatTheDryRunReads checks, on small inputs of every kind
// the benchmark reads (and the nested layout, whose columns are struct
// paths), that the DuckDB scan counts the rows the dry run and the reader
// alone read, over the columns the reader resolves, and that the wide file
// has the shape the table says.
func TestScanReadsWhatTheDryRunReads(t *testing.T) {
	ctx := context.Background()
	c := config{work: t.TempDir(), rows: 3000, wideRows: 2500, wideRowGroupRows: 1000, seed: 3}
	conn := duckConn(t)

	dirs := map[string]string{}
	var err error
	for _, layout := range []string{generate.LayoutWarehouse, generate.LayoutDatalake, generate.LayoutNested} {
		if dirs[layout], err = exportDir(ctx, c, layout); err != nil {
			t.Fatal(err)
		}
	}
	if dirs["wide"], err = wideDir(ctx, c); err != nil {
		t.Fatal(err)
	}
	for name, dir := range dirs {
		t.Run(name, func(t *testing.T) {
			s, err := planScan(ctx, conn, dir)
			if err != nil {
				t.Fatal(err)
			}
			// id, user_id, anonymous_id, the device id, the four times,
			// user agent and ip at least, in every layout.
			if s.columns < 10 {
				t.Errorf("the scan reads %d columns, want the reader's (10 or more):\n%s", s.columns, s.query)
			}
			if name == generate.LayoutNested && !strings.Contains(s.query, `"context"."device"."id"`) {
				t.Errorf("the nested scan does not read context.device.id:\n%s", s.query)
			}
			scanned, _, err := s.run(ctx, conn)
			if err != nil {
				t.Fatal(err)
			}
			tmp := t.TempDir()
			read, _, err := dryRun(ctx, dir, filepath.Join(tmp, "state"), filepath.Join(tmp, "dry.jsonl"), "")
			if err != nil {
				t.Fatal(err)
			}
			decoded, _, err := decodeOnly(ctx, dir)
			if err != nil {
				t.Fatal(err)
			}
			want := int64(c.rows)
			if name == "wide" {
				want = int64(c.wideRows)
			}
			if read != want || scanned != want || decoded != want {
				t.Errorf("the dry run read %d rows, the scan counted %d and the reader alone %d, want %d", read, scanned, decoded, want)
			}
		})
	}

	// The wide file: one file, wideColumns columns, full row groups of
	// wideRowGroupRows rows but the last.
	var files []string
	filepath.WalkDir(dirs["wide"], func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	})
	if len(files) != 1 {
		t.Fatalf("the wide folder holds %v, want one file", files)
	}
	f, err := os.Open(files[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(pf.Schema().Columns()); n != wideColumns {
		t.Errorf("the wide file has %d columns, want %d", n, wideColumns)
	}
	var sizes []int64
	for _, rg := range pf.RowGroups() {
		sizes = append(sizes, rg.NumRows())
	}
	if len(sizes) != 3 || sizes[0] != 1000 || sizes[1] != 1000 || sizes[2] != 500 {
		t.Errorf("the wide file's row groups hold %v rows, want [1000 1000 500]", sizes)
	}
}

// TestWholeJobSQLWritesTheDryRunLines checks that DuckDB doing the whole
// job in SQL writes exactly the dry run's lines, as multisets, on small
// inputs of each kind the benchmark times, and that both write some of
// every request kind (a query that lost a table would still agree on the
// rest).
func TestWholeJobSQLWritesTheDryRunLines(t *testing.T) {
	ctx := context.Background()
	c := config{work: t.TempDir(), rows: 20000, wideRows: 2500, wideRowGroupRows: 1000, seed: 5}
	conn := duckConn(t)
	if err := createMacros(ctx, conn); err != nil {
		t.Fatal(err)
	}
	type in struct{ layout, dir string }
	var ins []in
	for _, layout := range []string{generate.LayoutWarehouse, generate.LayoutDatalake} {
		dir, err := exportDir(ctx, c, layout)
		if err != nil {
			t.Fatal(err)
		}
		ins = append(ins, in{layout, dir})
	}
	wide, err := wideDir(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	ins = append(ins, in{generate.LayoutWarehouse, wide})
	for _, x := range ins {
		t.Run(filepath.Base(x.dir), func(t *testing.T) {
			tmp := t.TempDir()
			dry, sqlOut := filepath.Join(tmp, "dry.jsonl"), filepath.Join(tmp, "sql.jsonl")
			if _, _, err := dryRun(ctx, x.dir, filepath.Join(tmp, "state"), dry, ""); err != nil {
				t.Fatal(err)
			}
			j, err := planWholeJob(ctx, conn, x.dir, x.layout, placeholder, demoEvents())
			if err != nil {
				t.Fatal(err)
			}
			lines, _, err := j.run(ctx, conn, sqlOut)
			if err != nil {
				t.Fatalf("%v\n%s", err, j.query)
			}
			onlyDry, onlySQL, n, err := sameLines(dry, sqlOut, 5)
			if err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				t.Fatalf("%d lines differ; only in the dry run:\n%s\nonly in the SQL's:\n%s", n, strings.Join(onlyDry, "\n"), strings.Join(onlySQL, "\n"))
			}
			b, err := os.ReadFile(sqlOut)
			if err != nil {
				t.Fatal(err)
			}
			if got := int64(strings.Count(string(b), "\n")); got != lines || lines == 0 {
				t.Errorf("DuckDB counted %d lines and wrote %d", lines, got)
			}
			kinds := []string{"/api/hit/", "&typ=cart&", "&cua=", "&cip="}
			if x.dir != wide {
				kinds = append(kinds, "/api/user/", "/api/install/", "&typ=sale&", "&typ=sale.new&", "&typ=sale.repeat&")
			}
			for _, k := range kinds {
				if !strings.Contains(string(b), k) {
					t.Errorf("no line with %q", k)
				}
			}
		})
	}
}

// TestSameLinesFindsEveryDifference checks the comparison itself: the
// order of lines does not matter, a line changed, a line missing and a
// line written twice do.
func TestSameLinesFindsEveryDifference(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, lines ...string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := write("a", "x", "y", "z")
	for _, c := range []struct {
		name  string
		lines []string
		n     int
	}{
		{"reordered", []string{"z", "x", "y"}, 0},
		{"changed", []string{"x", "y", "Z"}, 2},
		{"missing", []string{"x", "y"}, 1},
		{"twice", []string{"x", "y", "z", "z"}, 1},
	} {
		_, _, n, err := sameLines(a, write(c.name, c.lines...), 5)
		if err != nil {
			t.Fatal(err)
		}
		if n != c.n {
			t.Errorf("%s: %d lines differ, want %d", c.name, n, c.n)
		}
	}
}

// duckConn is a connection to an in-memory DuckDB, closed when the test ends.
func duckConn(t *testing.T) *sql.Conn {
	t.Helper()
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
