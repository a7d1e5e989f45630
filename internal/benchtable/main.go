// Command benchtable measures the whole job against references taken in the
// same run, and prints one table; `make bench` runs it after the package
// benchmarks. Every figure is a ratio to its reference, so that a shared or
// loaded machine slows both sides alike and the verdicts stay meaningful:
//
//	(a) dry-run rows/s of the whole job (list, decode, transform, encode,
//	    write a file) over a generated 2M-row warehouse export, next to a
//	    decode-only pass over the same files with the same parallelism;
//	(b) live requests/s of the job against the in-process simulator, next to
//	    a plain loop of the same GETs (the URLs of the dry run) from as many
//	    goroutines over one keep-alive transport sized like the client's;
//	(c) live requests/s of the job at --concurrency 256 against a simulator
//	    that answers 50 ms late, next to the ideal 256 / 50 ms;
//	(d) peak RSS (the subprocess's maxrss) of the built CLI's dry run over a
//	    1M-row and a 4M-row export, which should barely differ.
//
// Exports are generated once into -work and reused while their parameters
// (recorded beside them) do not change. -cpuprofile PREFIX writes one CPU
// profile per in-process job run (PREFIX-a.pprof, -b, -c), without the
// references, for `go tool pprof`.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/internal/segment"
	"github.com/convertro-etl/convertro-etl/jobs"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/readers"
	"github.com/convertro-etl/convertro-etl/writers/generate"
)

// placeholder is the endpoint of the dry runs; the plain loop swaps it for
// the simulator's address.
const placeholder = "http://convertro.bench.invalid"

type config struct {
	work, goCmd, cpuprofile, only string
	seed                          int64
	rowsA, rowsLive, rowsSmall    int
	rowsLarge                     int
	concurrency, slowConcurrency  int
	delay                         time.Duration
}

type row struct {
	name, figure, reference, ratio, target, verdict string
}

func main() {
	var c config
	flag.StringVar(&c.work, "work", "", "folder for exports and scratch files (default: the user cache folder)")
	flag.StringVar(&c.goCmd, "go", "go", "go command used to build the CLI for (d)")
	flag.StringVar(&c.cpuprofile, "cpuprofile", "", "write a CPU profile of each in-process job run to PREFIX-<case>.pprof")
	flag.StringVar(&c.only, "only", "abcd", "cases to run")
	flag.Int64Var(&c.seed, "seed", 1, "generator seed")
	flag.IntVar(&c.rowsA, "rows-a", 2_000_000, "rows of the dry-run export (a)")
	flag.IntVar(&c.rowsLive, "rows-live", 100_000, "rows of the live export (b, c)")
	flag.IntVar(&c.rowsSmall, "rows-small", 1_000_000, "rows of the smaller RSS export (d)")
	flag.IntVar(&c.rowsLarge, "rows-large", 4_000_000, "rows of the larger RSS export (d)")
	flag.IntVar(&c.concurrency, "concurrency", 64, "senders of (b), the job's default")
	flag.IntVar(&c.slowConcurrency, "slow-concurrency", 256, "senders of (c)")
	flag.DurationVar(&c.delay, "delay", 50*time.Millisecond, "simulator delay of (c)")
	flag.Parse()
	if c.work == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			dir = os.TempDir()
		}
		c.work = filepath.Join(dir, "convertro-etl-bench")
	}
	if err := run(context.Background(), c); err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c config) error {
	start := time.Now()
	load0 := loadavg()
	if err := os.MkdirAll(c.work, 0o755); err != nil {
		return err
	}
	scratch, err := os.MkdirTemp(c.work, "run-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)

	var rows []row
	has := func(k string) bool { return strings.Contains(c.only, k) }

	if has("a") {
		dir, err := export(ctx, c, c.rowsA)
		if err != nil {
			return err
		}
		r, err := caseA(ctx, c, dir, scratch)
		if err != nil {
			return fmt.Errorf("(a): %w", err)
		}
		rows = append(rows, r)
	}
	if has("b") || has("c") {
		dir, err := export(ctx, c, c.rowsLive)
		if err != nil {
			return err
		}
		urls, err := dryURLs(ctx, dir, scratch)
		if err != nil {
			return fmt.Errorf("(b): %w", err)
		}
		if has("b") {
			r, err := caseB(ctx, c, dir, scratch, urls)
			if err != nil {
				return fmt.Errorf("(b): %w", err)
			}
			rows = append(rows, r)
		}
		if has("c") {
			r, err := caseC(ctx, c, dir, scratch, len(urls))
			if err != nil {
				return fmt.Errorf("(c): %w", err)
			}
			rows = append(rows, r)
		}
	}
	if has("d") {
		small, err := export(ctx, c, c.rowsSmall)
		if err != nil {
			return err
		}
		large, err := export(ctx, c, c.rowsLarge)
		if err != nil {
			return err
		}
		r, err := caseD(ctx, c, small, large, scratch)
		if err != nil {
			return fmt.Errorf("(d): %w", err)
		}
		rows = append(rows, r)
	}

	printTable(os.Stdout, rows)
	fmt.Printf("\nmachine: nproc %d, GOMAXPROCS %d, %s %s/%s; load average %s at start, %s at end; %s in all\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH,
		load0, loadavg(), time.Since(start).Round(time.Second))
	fmt.Println("note: the machine may be shared and loaded; absolute figures vary with the load, the ratios")
	fmt.Println("      compare runs made side by side in this process and are what the targets judge.")
	return nil
}

// --- exports ---------------------------------------------------------------

// export returns a warehouse export of rows rows under c.work, generating it
// unless one with the same parameters is already there.
func export(ctx context.Context, c config, rows int) (string, error) {
	o := generate.Options{Rows: rows, Seed: c.seed, Layout: generate.LayoutWarehouse}
	name := fmt.Sprintf("warehouse-%d-seed%d", rows, c.seed)
	dir := filepath.Join(c.work, "exports", name)
	marker := dir + ".json"
	want, _ := json.Marshal(struct {
		Version int
		Options generate.Options
	}{1, o})
	if got, err := os.ReadFile(marker); err == nil && bytes.Equal(bytes.TrimSpace(got), want) {
		if _, err := os.Stat(dir); err == nil {
			return dir, nil
		}
	}
	_ = os.Remove(marker)
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "benchtable: generating %s (once; reused while its parameters hold)\n", name)
	t := time.Now()
	o.Out = dir
	if _, err := generate.Generate(ctx, o); err != nil {
		return "", fmt.Errorf("generate %s: %w", dir, err)
	}
	fmt.Fprintf(os.Stderr, "benchtable: generated %d rows in %s\n", rows, time.Since(t).Round(time.Second))
	if err := os.WriteFile(marker, append(want, '\n'), 0o644); err != nil {
		return "", err
	}
	return dir, nil
}

// --- the job in-process ----------------------------------------------------

func jobOptions(exportDir, state, endpoint string) jobs.Options {
	o := jobs.DemoOptions(filepath.Dir(exportDir), endpoint)
	o.Sources = []string{exportDir}
	o.State = state
	o.Fresh = true
	return o
}

func quietEnv() (jobs.Env, *bytes.Buffer) {
	var stderr bytes.Buffer
	return jobs.Env{
		Stdout: io.Discard,
		Stderr: &stderr,
		Log:    slog.New(slog.NewTextHandler(&stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}, &stderr
}

// runJob runs the job, profiling it when asked, and returns its report.
func runJob(ctx context.Context, c config, name string, o jobs.Options) (*pipeline.Report, error) {
	runtime.GC()
	env, stderr := quietEnv()
	if c.cpuprofile != "" {
		f, err := os.Create(c.cpuprofile + "-" + name + ".pprof")
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	rep, err := jobs.Run(ctx, o, env)
	if err != nil {
		return rep, fmt.Errorf("job: %w\n%s", err, tail(stderr.String()))
	}
	return rep, nil
}

// --- (a) -------------------------------------------------------------------

func caseA(ctx context.Context, c config, dir, scratch string) (row, error) {
	// Decode before and after the job and keep the mean, so that the page
	// cache and load drift favour neither side.
	ref1, err := decodeOnly(ctx, dir)
	if err != nil {
		return row{}, err
	}
	o := jobOptions(dir, filepath.Join(scratch, "state-a"), placeholder)
	o.DryRun, o.Out = true, filepath.Join(scratch, "dry-a.jsonl")
	rep, err := runJob(ctx, c, "a", o)
	if err != nil {
		return row{}, err
	}
	_ = os.Remove(o.Out)
	ref2, err := decodeOnly(ctx, dir)
	if err != nil {
		return row{}, err
	}
	ref := (ref1 + ref2) / 2
	got := rep.RowsPerSecond
	return row{
		name:      fmt.Sprintf("(a) dry run, %s rows, to a file", human(float64(rep.RowsThisRun))),
		figure:    human(got) + " rows/s",
		reference: human(ref) + " rows/s decode-only",
		ratio:     fmt.Sprintf("%.2f", got/ref),
		target:    "info",
		verdict:   "-",
	}, nil
}

// decodeOnly reads every row group of the export with the job's decoder,
// batch size and parallelism (GOMAXPROCS), and nothing else.
func decodeOnly(ctx context.Context, dir string) (rowsPerSec float64, err error) {
	runtime.GC()
	t := time.Now()
	src, err := readers.OpenSource(ctx, dir, readers.SourceOptions{})
	if err != nil {
		return 0, err
	}
	l, err := src.Scan(ctx)
	if err != nil {
		return 0, err
	}
	type unit struct {
		pf *readers.ParquetFile
		rg int
	}
	var (
		units []unit
		files []readers.File
	)
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, obj := range l.Objects {
		f, err := src.Open(ctx, obj)
		if err != nil {
			return 0, err
		}
		files = append(files, f)
		pf, err := readers.OpenParquet(ctx, f, obj, readers.Hint{})
		if err != nil {
			return 0, err
		}
		for i := range pf.RowGroups() {
			units = append(units, unit{pf, i})
		}
	}
	var (
		next, total atomic.Int64
		wg          sync.WaitGroup
		errOnce     sync.Once
		first       error
	)
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(units) {
					return
				}
				u := units[i]
				err := u.pf.ReadRowGroup(ctx, u.rg, readers.DefaultBatchSize, func(_ int64, b []segment.Message) error {
					total.Add(int64(len(b)))
					return nil
				})
				if err != nil {
					errOnce.Do(func() { first = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return 0, first
	}
	return float64(total.Load()) / time.Since(t).Seconds(), nil
}

// --- (b) -------------------------------------------------------------------

// dryURLs runs the job dry over the live export and returns its URLs, with
// the placeholder endpoint.
func dryURLs(ctx context.Context, dir, scratch string) ([]string, error) {
	o := jobOptions(dir, filepath.Join(scratch, "state-dry"), placeholder)
	o.DryRun, o.Out = true, filepath.Join(scratch, "dry-live.jsonl")
	env, stderr := quietEnv()
	if _, err := jobs.Run(ctx, o, env); err != nil {
		return nil, fmt.Errorf("dry run: %w\n%s", err, tail(stderr.String()))
	}
	f, err := os.Open(o.Out)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var urls []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct{ URL string }
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return nil, fmt.Errorf("dry-run line %q: %w", sc.Text(), err)
		}
		urls = append(urls, line.URL)
	}
	return urls, sc.Err()
}

// serve starts a simulator on a loopback port.
func serve(o simulator.Options) (endpoint string, sim *simulator.Simulator, stop func(), err error) {
	sim = simulator.New(o)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sim.Serve(ctx, ln) }()
	return "http://" + ln.Addr().String(), sim, func() { cancel(); <-done; sim.Close() }, nil
}

func caseB(ctx context.Context, c config, dir, scratch string, urls []string) (row, error) {
	endpoint, _, stop, err := serve(simulator.Options{})
	if err != nil {
		return row{}, err
	}
	ref, failed, err := plainLoop(ctx, endpoint, urls, c.concurrency)
	stop()
	if err != nil {
		return row{}, err
	}
	if failed > 0 {
		return row{}, fmt.Errorf("plain loop: %d of %d requests failed", failed, len(urls))
	}

	endpoint, sim, stop, err := serve(simulator.Options{})
	if err != nil {
		return row{}, err
	}
	defer stop()
	o := jobOptions(dir, filepath.Join(scratch, "state-b"), endpoint)
	o.Concurrency = c.concurrency
	rep, err := runJob(ctx, c, "b", o)
	if err != nil {
		return row{}, err
	}
	if st := sim.Stats(); st.Accepted != int64(len(urls)) {
		return row{}, fmt.Errorf("simulator accepted %d requests, the dry run has %d", st.Accepted, len(urls))
	}
	got := rep.RequestsPerSecond
	return row{
		name:      fmt.Sprintf("(b) live, %s req, %d senders", human(float64(len(urls))), c.concurrency),
		figure:    human(got) + " req/s",
		reference: human(ref) + " req/s plain loop",
		ratio:     fmt.Sprintf("%.2f", got/ref),
		target:    "≥ 0.70",
		verdict:   verdict(got/ref >= 0.7),
	}, nil
}

// plainLoop sends the URLs from n goroutines over one keep-alive transport
// configured like convertro's pooled transport for n senders.
func plainLoop(ctx context.Context, endpoint string, urls []string, n int) (rps float64, failed int64, err error) {
	runtime.GC()
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          n,
		MaxIdleConnsPerHost:   n,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var (
		next atomic.Int64
		wg   sync.WaitGroup
	)
	t := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(urls) {
					return
				}
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+strings.TrimPrefix(urls[i], placeholder), nil)
				if err != nil {
					atomic.AddInt64(&failed, 1)
					continue
				}
				req.Header.Set("User-Agent", "convertro-etl/bench")
				resp, err := hc.Do(req)
				if err != nil {
					atomic.AddInt64(&failed, 1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					atomic.AddInt64(&failed, 1)
				}
			}
		}()
	}
	wg.Wait()
	return float64(len(urls)) / time.Since(t).Seconds(), atomic.LoadInt64(&failed), nil
}

// --- (c) -------------------------------------------------------------------

func caseC(ctx context.Context, c config, dir, scratch string, requests int) (row, error) {
	endpoint, sim, stop, err := serve(simulator.Options{Delay: c.delay})
	if err != nil {
		return row{}, err
	}
	defer stop()
	o := jobOptions(dir, filepath.Join(scratch, "state-c"), endpoint)
	o.Concurrency = c.slowConcurrency
	rep, err := runJob(ctx, c, "c", o)
	if err != nil {
		return row{}, err
	}
	if st := sim.Stats(); st.Accepted != int64(requests) {
		return row{}, fmt.Errorf("simulator accepted %d requests, the dry run has %d", st.Accepted, requests)
	}
	ideal := float64(c.slowConcurrency) / c.delay.Seconds()
	got := rep.RequestsPerSecond
	return row{
		name:      fmt.Sprintf("(c) live +%s, %s req, %d senders", c.delay, human(float64(requests)), c.slowConcurrency),
		figure:    human(got) + " req/s",
		reference: fmt.Sprintf("%s req/s ideal %d/%s", human(ideal), c.slowConcurrency, c.delay),
		ratio:     fmt.Sprintf("%.2f", got/ideal),
		target:    "≥ 0.90",
		verdict:   verdict(got/ideal >= 0.9),
	}, nil
}

// --- (d) -------------------------------------------------------------------

func caseD(ctx context.Context, c config, small, large, scratch string) (row, error) {
	bin := filepath.Join(scratch, "convertro-etl")
	build := exec.CommandContext(ctx, c.goCmd, "build", "-o", bin, "./cmd/convertro-etl")
	if out, err := build.CombinedOutput(); err != nil {
		return row{}, fmt.Errorf("build the CLI: %w\n%s", err, out)
	}
	rssSmall, err := peakRSS(ctx, bin, small, filepath.Join(scratch, "state-d1"))
	if err != nil {
		return row{}, err
	}
	rssLarge, err := peakRSS(ctx, bin, large, filepath.Join(scratch, "state-d4"))
	if err != nil {
		return row{}, err
	}
	r := float64(rssLarge) / float64(rssSmall)
	return row{
		name:      fmt.Sprintf("(d) peak RSS, CLI dry run %s vs %s rows", human(float64(c.rowsLarge)), human(float64(c.rowsSmall))),
		figure:    mib(rssLarge) + " (" + human(float64(c.rowsLarge)) + ")",
		reference: mib(rssSmall) + " (" + human(float64(c.rowsSmall)) + ")",
		ratio:     fmt.Sprintf("%.2f", r),
		target:    "< 1.20",
		verdict:   verdict(r < 1.2),
	}, nil
}

// peakRSS runs the CLI's dry run over dir to /dev/null and returns its
// maxrss in bytes.
func peakRSS(ctx context.Context, bin, dir, state string) (int64, error) {
	o := jobOptions(dir, state, placeholder)
	args := []string{"run", "--dry-run", "--out", os.DevNull, "--source", dir, "--state", state,
		"--account", o.Account, "--client-name", o.ClientName, "--site-id", o.SiteID, "--endpoint", placeholder}
	for name, tos := range o.Events {
		for _, to := range tos {
			args = append(args, "--event", name+"="+to)
		}
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, tail(stderr.String()))
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0, errors.New("no rusage on this platform")
	}
	return ru.Maxrss * 1024, nil // Linux reports KiB
}

// --- output ----------------------------------------------------------------

func printTable(w io.Writer, rows []row) {
	head := row{"case", "figure", "reference", "ratio", "target", "verdict"}
	all := append([]row{head}, rows...)
	width := make([]int, 6)
	cells := func(r row) []string { return []string{r.name, r.figure, r.reference, r.ratio, r.target, r.verdict} }
	for _, r := range all {
		for i, s := range cells(r) {
			width[i] = max(width[i], len([]rune(s)))
		}
	}
	for k, r := range all {
		var b strings.Builder
		for i, s := range cells(r) {
			if i > 0 {
				b.WriteString("  ")
			}
			b.WriteString(s + strings.Repeat(" ", width[i]-len([]rune(s))))
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
		if k == 0 {
			n := 2 * (len(width) - 1)
			for _, x := range width {
				n += x
			}
			fmt.Fprintln(w, strings.Repeat("-", n))
		}
	}
}

func verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISSED"
}

func human(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func tail(s string) string {
	if len(s) > 2000 {
		return "…" + s[len(s)-2000:]
	}
	return s
}
