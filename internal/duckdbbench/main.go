package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"text/tabwriter"
	"time"

	_ "github.com/duckdb/duckdb-go/v2"

	"github.com/convertro-etl/convertro-etl/jobs"
	"github.com/convertro-etl/convertro-etl/writers/generate"
)

// placeholder is the endpoint of the dry runs, which never dial it.
const placeholder = "http://convertro.bench.invalid"

type config struct {
	work             string
	rows, wideRows   int
	wideRowGroupRows int
	reps             int
	seed             int64
	exportGoal       float64
	wideGoal         float64
	explain          bool
	cpuprofile       string
}

func main() {
	var c config
	flag.StringVar(&c.work, "work", "", "folder for the inputs and scratch files (default: the user cache folder)")
	flag.IntVar(&c.rows, "rows", 2_000_000, "rows of each generated export")
	flag.IntVar(&c.wideRows, "wide-rows", 8*131_072, "rows of the wide file")
	flag.IntVar(&c.wideRowGroupRows, "wide-row-group-rows", 131_072, "rows per row group of the wide file")
	flag.IntVar(&c.reps, "reps", 3, "runs of each side, alternated; the best counts")
	flag.Int64Var(&c.seed, "seed", 1, "generator seed")
	flag.Float64Var(&c.exportGoal, "export-goal", 0.8, "goal of dry run / scan on the generated exports")
	flag.Float64Var(&c.wideGoal, "wide-goal", 0.5, "goal of dry run / scan on the wide file")
	flag.BoolVar(&c.explain, "explain", false, "print each scan query and DuckDB's EXPLAIN ANALYZE of it to stderr")
	flag.StringVar(&c.cpuprofile, "cpuprofile", "", "write a CPU profile of the first dry run of each input to PREFIX-<n>.pprof (n: 1, 2, 3 in table order)")
	flag.Parse()
	c.reps = max(c.reps, 1)
	if c.work == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			dir = os.TempDir()
		}
		c.work = filepath.Join(dir, "convertro-etl-bench")
	}
	if err := run(context.Background(), os.Stdout, c); err != nil {
		fmt.Fprintln(os.Stderr, "duckdbbench:", err)
		os.Exit(1)
	}
}

// input is one thing both sides read.
type input struct {
	name, dir string
	layout    string // the generator's layout, for the whole job in SQL
	goal      float64
	profile   string // CPU profile of the first dry run, if not ""
}

// result is one input's best of each side.
type result struct {
	input
	rows        int64
	dry, scan   rate
	decode      rate // the reader alone
	sql         rate // DuckDB doing the whole job in SQL, rows of the input a second
	lines       int64
	scanColumns int // distinct columns the scan reads
}

func run(ctx context.Context, w io.Writer, c config) error {
	load0 := loadavg()
	if err := os.MkdirAll(c.work, 0o755); err != nil {
		return err
	}
	scratch, err := os.MkdirTemp(c.work, "duckdbbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)

	var inputs []input
	for _, layout := range []string{generate.LayoutWarehouse, generate.LayoutDatalake} {
		dir, err := exportDir(ctx, c, layout)
		if err != nil {
			return err
		}
		inputs = append(inputs, input{name: fmt.Sprintf("%s export, %s rows, 10k-row groups", layout, human(float64(c.rows))), dir: dir, layout: layout, goal: c.exportGoal})
	}
	wide, err := wideDir(ctx, c)
	if err != nil {
		return err
	}
	inputs = append(inputs, input{name: fmt.Sprintf("wide file, %d columns, %s rows, %s-row groups", wideColumns, human(float64(c.wideRows)), human(float64(c.wideRowGroupRows))), dir: wide, layout: generate.LayoutWarehouse, goal: c.wideGoal})

	db, err := sql.Open("duckdb", "")
	if err != nil {
		return fmt.Errorf("open duckdb: %w", err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("open duckdb: %w", err)
	}
	defer conn.Close()
	threads := runtime.GOMAXPROCS(0)
	// No cache of file bytes or footers across queries: each scan reads
	// the files again, as each dry run does (both are DuckDB's defaults for
	// local files; set here so that a change of default does not change
	// the comparison).
	// The whole job's COPY may write in any order (its lines are compared
	// as a set): keeping the input's order would only slow DuckDB down.
	for _, set := range []string{fmt.Sprintf("SET threads = %d", threads), "SET cache_local_files = false", "SET parquet_metadata_cache = false",
		"SET preserve_insertion_order = false"} {
		if _, err := conn.ExecContext(ctx, set); err != nil {
			return fmt.Errorf("duckdb: %s: %w", set, err)
		}
	}
	if err := createMacros(ctx, conn); err != nil {
		return err
	}
	var version string
	if err := conn.QueryRowContext(ctx, "SELECT version()").Scan(&version); err != nil {
		return fmt.Errorf("duckdb: version: %w", err)
	}

	var results []result
	for n, in := range inputs {
		if c.cpuprofile != "" {
			in.profile = fmt.Sprintf("%s-%d.pprof", c.cpuprofile, n+1)
		}
		r, err := measure(ctx, conn, c, in, scratch)
		if err != nil {
			return fmt.Errorf("%s: %w", in.name, err)
		}
		results = append(results, r)
	}

	fmt.Fprintf(w, "dry run vs DuckDB %s scanning the same columns and doing the whole job in SQL: GOMAXPROCS %d, DuckDB threads %d, best of %d alternated runs of each side, load average %s at the start, %s at the end\n",
		version, threads, threads, c.reps, load0, loadavg())
	for _, per := range []struct {
		title string
		of    func(rate) float64
		goal  bool
	}{
		{"rows a second (wall clock); the goal is on these", func(r rate) float64 { return r.wall }, true},
		{"rows a CPU second (user and system time of the process while the side ran)", func(r rate) float64 { return r.cpu }, false},
	} {
		fmt.Fprintf(w, "\n%s:\n", per.title)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "input\tcolumns\tdry run\tDuckDB scan\tdry/scan\tgoal\treader alone\tdry/reader\treader/scan\tDuckDB whole job\tdry/whole job\t")
		for _, r := range results {
			dry, scan, dec, whole := per.of(r.dry), per.of(r.scan), per.of(r.decode), per.of(r.sql)
			goal := "-"
			if per.goal {
				verdict := "below"
				if dry/scan >= r.goal {
					verdict = "met"
				}
				goal = fmt.Sprintf(">= %.2f %s", r.goal, verdict)
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%.2f\t%s\t%s\t%.2f\t%.2f\t%s\t%.2f\t\n",
				r.name, r.scanColumns, human(dry), human(scan), dry/scan, goal, human(dec), dry/dec, dec/scan, human(whole), dry/whole)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "\nmemory each side touched that was not mapped yet (minor page faults x %d KiB, fewest of the runs):\n", os.Getpagesize()>>10)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "input\tdry run\tDuckDB scan\treader alone\tDuckDB whole job\t")
	mib := func(r rate) string { return fmt.Sprintf("%.1f MiB", float64(r.faults*int64(os.Getpagesize()))/(1<<20)) }
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", r.name, mib(r.dry), mib(r.scan), mib(r.decode), mib(r.sql))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nThe whole job in SQL wrote the same lines as the dry run (compared as sets, as DuckDB writes in its own order):")
	for _, r := range results {
		fmt.Fprintf(w, "  %s: %d lines, identical\n", r.name, r.lines)
	}
	return nil
}

// measure alternates the dry run, the scan and the reader alone over one
// input, the first side changing each time, and keeps the best of each.
func measure(ctx context.Context, conn *sql.Conn, c config, in input, scratch string) (result, error) {
	r := result{input: in}
	q, err := planScan(ctx, conn, in.dir)
	if err != nil {
		return r, err
	}
	r.scanColumns = q.columns
	if c.explain {
		var kind, plan string
		if err := conn.QueryRowContext(ctx, "EXPLAIN ANALYZE "+q.query).Scan(&kind, &plan); err != nil {
			return r, fmt.Errorf("duckdb explain: %w", err)
		}
		fmt.Fprintf(os.Stderr, "%s: %s\n%s\n", in.name, q.query, plan)
	}
	whole, err := planWholeJob(ctx, conn, in.dir, in.layout, placeholder, demoEvents())
	if err != nil {
		return r, err
	}
	// The first output of the dry run and of the SQL are kept, and
	// compared once the timings are done.
	dryFirst, sqlFirst := filepath.Join(scratch, "dry-first.jsonl"), filepath.Join(scratch, "sql-first.jsonl")
	defer os.Remove(dryFirst)
	defer os.Remove(sqlFirst)
	var sqlLines rate // lines a second of the SQL: the statement counts lines, not rows
	sides := []func() (int64, rate, error){
		func() (int64, rate, error) {
			profile := in.profile
			in.profile = ""
			out := filepath.Join(scratch, "dry.jsonl")
			if _, err := os.Stat(dryFirst); err != nil {
				out = dryFirst
			} else {
				defer os.Remove(out)
			}
			rows, got, err := dryRun(ctx, in.dir, filepath.Join(scratch, "state"), out, profile)
			r.dry = r.dry.best(got)
			return rows, got, err
		},
		func() (int64, rate, error) {
			out := filepath.Join(scratch, "sql.jsonl")
			if _, err := os.Stat(sqlFirst); err != nil {
				out = sqlFirst
			} else {
				defer os.Remove(out)
			}
			lines, got, err := whole.run(ctx, conn, out)
			if err != nil {
				return 0, got, err
			}
			if r.lines != 0 && lines != r.lines {
				return 0, got, fmt.Errorf("the whole job in SQL wrote %d lines, then %d", r.lines, lines)
			}
			r.lines = lines
			sqlLines = sqlLines.best(got)
			return -1, got, nil // not rows read: left out of the check below
		},
		func() (int64, rate, error) {
			rows, got, err := q.run(ctx, conn)
			r.scan = r.scan.best(got)
			return rows, got, err
		},
		func() (int64, rate, error) {
			rows, got, err := decodeOnly(ctx, in.dir)
			r.decode = r.decode.best(got)
			return rows, got, err
		},
	}
	for i := range c.reps {
		for k := range sides {
			// Each repetition starts with another side.
			rows, _, err := sides[(k+i)%len(sides)]()
			if err != nil {
				return r, err
			}
			if rows < 0 {
				continue
			}
			if r.rows != 0 && rows != r.rows {
				return r, fmt.Errorf("one side read %d rows, another %d", rows, r.rows)
			}
			r.rows = rows
		}
	}
	// The SQL's rate in rows of the input a second, as the other sides'.
	perLine := float64(r.rows) / float64(max(r.lines, 1))
	r.sql = rate{sqlLines.wall * perLine, sqlLines.cpu * perLine, sqlLines.faults}
	onlyDry, onlySQL, n, err := sameLines(dryFirst, sqlFirst, 5)
	if err != nil {
		return r, fmt.Errorf("compare the outputs: %w", err)
	}
	if n > 0 {
		return r, fmt.Errorf("the whole job in SQL and the dry run differ in %d lines; only in the dry run, e.g.:\n  %s\nonly in the SQL's, e.g.:\n  %s",
			n, strings.Join(onlyDry, "\n  "), strings.Join(onlySQL, "\n  "))
	}
	return r, nil
}

// demoEvents is the events map of jobs.DemoOptions, which the dry runs use.
func demoEvents() map[string][]string {
	events := map[string][]string{}
	for k, v := range jobs.DemoOptions("", placeholder).Events {
		events[k] = v
	}
	return events
}

// dryRun runs the job dry over dir, its requests written to out, and
// returns the rows it read and their rate over the whole call.
func dryRun(ctx context.Context, dir, state, out, profile string) (int64, rate, error) {
	o := jobs.DemoOptions(filepath.Dir(dir), placeholder)
	o.Sources = []string{dir}
	o.State = state
	o.Fresh = true
	o.DryRun, o.Out = true, out
	defer os.RemoveAll(state)
	var stderr bytes.Buffer
	env := jobs.Env{
		Stdout: io.Discard,
		Stderr: &stderr,
		Log:    slog.New(slog.NewTextHandler(&stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return 0, rate{}, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return 0, rate{}, err
		}
		defer pprof.StopCPUProfile()
	}
	return timed(func() (int64, error) {
		rep, err := jobs.Run(ctx, o, env)
		if err != nil {
			return 0, fmt.Errorf("dry run: %w\n%s", err, stderr.String())
		}
		return rep.Counts.RowsRead, nil
	})
}

// exportDir generates the export of a layout into the work folder, once
// while its parameters hold.
func exportDir(ctx context.Context, c config, layout string) (string, error) {
	o := generate.Options{Rows: c.rows, Seed: c.seed, Layout: layout}
	dir := filepath.Join(c.work, "exports", fmt.Sprintf("%s-%d-seed%d", layout, c.rows, c.seed))
	o.Out = dir
	return dir, cached(dir, struct {
		Version int
		Layout  string
		Rows    int
		Seed    int64
	}{1, layout, c.rows, c.seed}, func() error {
		_, err := generate.Generate(ctx, o)
		return err
	})
}

// cached runs make into an emptied dir unless a marker beside dir records
// the same params and dir exists.
func cached(dir string, params any, make func() error) error {
	want, err := json.Marshal(params)
	if err != nil {
		return err
	}
	marker := dir + ".json"
	if got, err := os.ReadFile(marker); err == nil && bytes.Equal(bytes.TrimSpace(got), want) {
		if _, err := os.Stat(dir); err == nil {
			return nil
		}
	}
	_ = os.Remove(marker)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "duckdbbench: writing %s (once; reused while its parameters hold)\n", dir)
	t := time.Now()
	if err := make(); err != nil {
		return fmt.Errorf("write %s: %w", dir, err)
	}
	fmt.Fprintf(os.Stderr, "duckdbbench: wrote %s in %s\n", filepath.Base(dir), time.Since(t).Round(time.Millisecond))
	return os.WriteFile(marker, append(want, '\n'), 0o644)
}

func human(v float64) string {
	switch {
	case v >= 1e6:
		return strings.TrimSuffix(fmt.Sprintf("%.2f", v/1e6), ".00") + "M"
	case v >= 1e3:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v/1e3), ".0") + "k"
	}
	return fmt.Sprintf("%.0f", v)
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

var errNoColumns = errors.New("no columns to scan")
