//go:build unix

package main

// Case (e): the job at scale, the figures of a sharded job of a million row
// groups. Everything the job does runs in the built CLI as a subprocess, so
// that each figure is one fresh process's, as a pod's would be; only the
// manifest's progress is written in-process, through pipeline's Checkpoint
// API.
//
//	(e1) plan time (`plan`, which lists and reads footers as a run does)
//	     over a job of -scale-row-groups row groups, -scale-rg-per-object
//	     one-row row groups per object, local disk: shard 0/1 and shard
//	     0/16 (best of -reps);
//	(e2) one manifest commit of that job's real plan (as a first run
//	     stored it) at 1%, 50% and 99% done: its bytes and its time (best
//	     of -reps); commit bytes at 99% within 2x of those at 1%;
//	(e3) resume of that job 99% done: from the start of `run` to its first
//	     request at the simulator, under 5 s; and the same over a year of
//	     hourly partitions of five tables (43,800 objects), under 2 s;
//	(e4) footers read by each of 16 shards (`plan --shard i/16`, from the
//	     line the job logs when it has planned): about 1/16 of the objects;
//	(e5) peak RSS of the CLI's dry run over the 43,800 objects against one
//	     over 240 objects of the same density (two days), within 1.5x
//	     (medians of max(-reps, 3) alternated runs of each).
//
// A 99%-done job is made the way one happens: a first live run plans the
// job and stores its plan, stopped after one request by a daily cap of 1
// (exit 3); then its manifest is opened with OpenCheckpoint, units in plan
// order are marked done (with their rows counted read and delivered, so
// that the counts stay consistent) and committed, and Finish leaves it
// stopped. Past the done prefix the commits also carry a ragged edge of
// work in flight (inflightUnits: every other unit done, the others half
// done), since a commit's size follows that edge, not the job's.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/parquet-go/parquet-go"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/objstore"
	"github.com/convertro-etl/convertro-etl/pipeline"
)

// inflightUnits is the width of the edge of work in flight past the done
// prefix in the commits of (e2) and (e3).
const inflightUnits = 1000

// scaleExports are the exports of (e): the million row groups (made
// in-process, after (e5)), the year and the two days (by the CLI).
type scaleExports struct {
	rowGroups, year, twoDays string
	// yearObjects and twoDayObjects are the objects the CLI wrote, counted
	// rather than assumed.
	yearObjects, twoDayObjects int
}

// --- exports ---------------------------------------------------------------

// benchRow is a `tracks` row with the columns a Signed Up event needs.
type benchRow struct {
	ID        string `parquet:"id"`
	UserID    string `parquet:"user_id"`
	DeviceID  string `parquet:"context_device_id"`
	Event     string `parquet:"event"`
	EventText string `parquet:"event_text"`
	Timestamp int64  `parquet:"timestamp,timestamp(microsecond)"`
}

// rowGroupExport returns an export of c.scaleRowGroups one-row row groups,
// c.scaleRGPerObject to an object, under c.work: tracks/day=D/hr=H/
// 000000000000.parquet from 2023-01-01 on, one object an hour. It writes it
// with parquet-go unless one with the same parameters is there already.
func rowGroupExport(ctx context.Context, c config) (string, error) {
	objects := c.scaleRowGroups / c.scaleRGPerObject
	name := fmt.Sprintf("rowgroups-%d-by-%d", objects, c.scaleRGPerObject)
	dir := filepath.Join(c.work, "exports", name)
	marker := dir + ".json"
	want, _ := json.Marshal(struct {
		Version          int
		Objects, PerFile int
	}{1, objects, c.scaleRGPerObject})
	if got, err := os.ReadFile(marker); err == nil && bytes.Equal(bytes.TrimSpace(got), want) {
		if _, err := os.Stat(dir); err == nil {
			return dir, nil
		}
	}
	_ = os.Remove(marker)
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "benchtable: writing %s: %d objects of %d one-row row groups (once; reused while its parameters hold)\n",
		name, objects, c.scaleRGPerObject)
	t := time.Now()
	start := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i := range objects {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			hour := start.Add(time.Duration(i) * time.Hour)
			path := filepath.Join(dir, "tracks", "day="+hour.Format(time.DateOnly), fmt.Sprintf("hr=%02d", hour.Hour()), "000000000000.parquet")
			return writeRowGroups(path, i, hour, c.scaleRGPerObject)
		})
	}
	if err := g.Wait(); err != nil {
		return "", err
	}
	took := time.Since(t)
	fmt.Fprintf(os.Stderr, "benchtable: wrote %d objects in %s\n", objects, took.Round(time.Second))
	details = append(details, fmt.Sprintf("(e) generation: %s written in %s (cached in %s)", name, took.Round(time.Millisecond), dir))
	if err := os.WriteFile(marker, append(want, '\n'), 0o644); err != nil {
		return "", err
	}
	return dir, nil
}

// writeRowGroups writes object i: rows one-row row groups of Signed Up
// events with ids of their own, under a temporary name renamed when whole.
func writeRowGroups(path string, i int, hour time.Time, rows int) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	bw := bufio.NewWriterSize(f, 64<<10)
	w := parquet.NewGenericWriter[benchRow](bw, parquet.Compression(&parquet.Snappy))
	for r := range rows {
		row := benchRow{
			ID:        fmt.Sprintf("msg-%07d-%04d", i, r),
			UserID:    fmt.Sprintf("user-%d", (i*rows+r)%50_000),
			DeviceID:  fmt.Sprintf("device-%d", (i*rows+r)%70_000),
			Event:     "signed_up",
			EventText: "Signed Up",
			Timestamp: hour.Add(time.Duration(r) * time.Second).UnixMicro(),
		}
		if _, err := w.Write([]benchRow{row}); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", path, err)
		}
		// A row group per row: the unit of work is a row group.
		if err := w.Flush(); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	if err := w.Close(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// countParquet counts the Parquet files under dir.
func countParquet(dir string) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(d.Name(), ".parquet") {
			n++
		}
		return err
	})
	return n, err
}

// --- the CLI ---------------------------------------------------------------

// jobArgs are the Convertro settings and events of the job over dir, as
// flags.
func jobArgs(dir, endpoint string) []string {
	o := jobOptions(dir, "", endpoint)
	args := []string{"--source", dir, "--account", o.Account, "--client-name", o.ClientName, "--site-id", o.SiteID, "--endpoint", endpoint}
	for _, name := range slices.Sorted(maps.Keys(o.Events)) {
		for _, to := range o.Events[name] {
			args = append(args, "--event", name+"="+to)
		}
	}
	return args
}

// cliRun is one run of the CLI: how long it took, how it ended, what it
// logged as JSON lines, and its maxrss.
type cliRun struct {
	wall   time.Duration
	code   int
	stdout []byte
	logs   []map[string]any
	maxRSS int64
	stderr string
}

// planned is the run's "planned" log record (the job logs one when it has
// planned its shard), or nil.
func (r *cliRun) planned() map[string]any {
	for _, l := range r.logs {
		if l["msg"] == "planned" {
			return l
		}
	}
	return nil
}

// num reads a number from a log record.
func num(rec map[string]any, key string) float64 {
	switch v := rec[key].(type) {
	case float64:
		return v
	case string:
		var f float64
		fmt.Sscan(v, &f)
		return f
	}
	return -1
}

// runCLI runs the CLI with args and --log-format json; started, when not
// nil, is given the moment the process starts and its PID.
func runCLI(ctx context.Context, bin string, args []string, started func(time.Time, int)) (*cliRun, error) {
	cmd := exec.CommandContext(ctx, bin, append(args, "--log-format", "json")...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	if started != nil {
		started(t, cmd.Process.Pid)
	}
	err := cmd.Wait()
	r := &cliRun{wall: time.Since(t), stdout: stdout.Bytes(), stderr: stderr.String()}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return nil, err
	}
	r.code = cmd.ProcessState.ExitCode()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.maxRSS = ru.Maxrss * 1024
	}
	for _, line := range bytes.Split(stderr.Bytes(), []byte("\n")) {
		var rec map[string]any
		if json.Unmarshal(line, &rec) == nil {
			r.logs = append(r.logs, rec)
		}
	}
	return r, nil
}

// --- (e5) ------------------------------------------------------------------

func caseE5(ctx context.Context, x scaleExports, bin, scratch string, floor int64, reps int) (row, error) {
	// A peak varies between runs of one binary by a few MiB (how the
	// kernel holds the binary's pages in its cache moves the smaller run's
	// by up to 6 MiB), so each side runs reps times, alternated, and the
	// ratio is of their medians.
	reps = max(reps, 3)
	var small, large, smallRU, largeRU []int64
	for i := range reps {
		s, sru, err := peakHWM(ctx, bin, x.twoDays, filepath.Join(scratch, fmt.Sprintf("state-e5-small-%d", i)))
		if err != nil {
			return row{}, err
		}
		l, lru, err := peakHWM(ctx, bin, x.year, filepath.Join(scratch, fmt.Sprintf("state-e5-large-%d", i)))
		if err != nil {
			return row{}, err
		}
		small, large = append(small, s), append(large, l)
		smallRU, largeRU = append(smallRU, sru), append(largeRU, lru)
	}
	details = append(details, fmt.Sprintf("(e5) peak RSS from the children's own VmHWM, %d alternated runs each: %s (%d objects), %s (%s); their rusage maxrss: %s and %s (this process's own peak, which vfork carries into a child's maxrss: %s)",
		reps, mibs(small), x.twoDayObjects, mibs(large), human(float64(x.yearObjects)), mibs(smallRU), mibs(largeRU), mib(floor)))
	ms, ml := median(small), median(large)
	r := float64(ml) / float64(ms)
	return row{
		name:      fmt.Sprintf("(e5) peak RSS, CLI dry run, %s vs %d objects (medians of %d)", human(float64(x.yearObjects)), x.twoDayObjects, reps),
		figure:    mib(ml) + " (" + human(float64(x.yearObjects)) + ")",
		reference: mib(ms) + fmt.Sprintf(" (%d)", x.twoDayObjects),
		ratio:     fmt.Sprintf("%.2f", r),
		target:    "≤ 1.50",
		verdict:   verdict(r <= 1.5),
	}, nil
}

// median is the middle of vs (the upper one of an even count).
func median(vs []int64) int64 {
	s := slices.Sorted(slices.Values(vs))
	return s[len(s)/2]
}

// mibs is vs in MiB, in the order run.
func mibs(vs []int64) string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = fmt.Sprintf("%.1f", float64(v)/(1<<20))
	}
	return strings.Join(out, ", ") + " MiB"
}

// peakHWM runs the CLI's dry run over dir to /dev/null, as peakRSS does,
// and returns the peak RSS of the child's own memory (VmHWM, polled every
// 10 ms: it only grows, and the last reading before the exit is kept) with
// its rusage maxrss. The maxrss of a child that Go started with vfork
// carries this process's peak (see the package doc); VmHWM belongs to the
// memory the child got at exec, and does not.
func peakHWM(ctx context.Context, bin, dir, state string) (hwm, maxRSS int64, err error) {
	args := append([]string{"run", "--dry-run", "--out", os.DevNull, "--state", state}, jobArgs(dir, placeholder)...)
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if v := vmHWM(status); v > hwm {
			hwm = v
		}
		select {
		case err = <-done:
		case <-tick.C:
			continue
		}
		break
	}
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, tail(stderr.String()))
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		maxRSS = ru.Maxrss * 1024
	}
	if hwm == 0 {
		return 0, 0, errors.New("no VmHWM read from /proc: not Linux?")
	}
	return hwm, maxRSS, nil
}

// vmHWM reads VmHWM (in bytes) from a /proc/PID/status file; 0 if absent.
func vmHWM(status string) int64 {
	b, err := os.ReadFile(status)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kib int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kib)
			return kib * 1024
		}
	}
	return 0
}

// --- (e1), (e4) ------------------------------------------------------------

// planShard runs `plan` for shard s of dir and returns its wall time and
// the footers it read.
func planShard(ctx context.Context, bin, dir, shard string) (time.Duration, *cliRun, error) {
	r, err := runCLI(ctx, bin, []string{"plan", "--source", dir, "--shard", shard, "--account", "demo"}, nil)
	if err != nil {
		return 0, nil, err
	}
	if r.code != 0 {
		return 0, nil, fmt.Errorf("plan --shard %s exited %d:\n%s", shard, r.code, tail(r.stderr))
	}
	if r.planned() == nil {
		return 0, nil, fmt.Errorf("plan --shard %s logged no \"planned\" record:\n%s", shard, tail(r.stderr))
	}
	return r.wall, r, nil
}

func caseE1E4(ctx context.Context, c config, dir string) ([]row, error) {
	objects := c.scaleRowGroups / c.scaleRGPerObject
	var one, sixteen time.Duration
	var oneRun *cliRun
	footers := make([]int, c.scaleShards)
	var shardWalls []time.Duration
	for rep := range c.reps {
		d, r, err := planShard(ctx, c.bin, dir, "0/1")
		if err != nil {
			return nil, err
		}
		if one == 0 || d < one {
			one, oneRun = d, r
		}
		if rep == 0 {
			// Every shard once: the footers each reads.
			for i := range c.scaleShards {
				d, r, err := planShard(ctx, c.bin, dir, fmt.Sprintf("%d/%d", i, c.scaleShards))
				if err != nil {
					return nil, err
				}
				footers[i] = int(num(r.planned(), "footers_read"))
				shardWalls = append(shardWalls, d)
				if i == 0 {
					sixteen = d
				}
			}
			continue
		}
		d, _, err = planShard(ctx, c.bin, dir, fmt.Sprintf("0/%d", c.scaleShards))
		if err != nil {
			return nil, err
		}
		sixteen = min(sixteen, d)
	}
	p := oneRun.planned()
	details = append(details,
		fmt.Sprintf("(e1) plan 0/1: %d objects listed, %.0f footers read; listing and reading footers took %ss of the %.2fs the process ran; its maxrss %s (this process's own peak then: %s)",
			int(num(p, "listed")), num(p, "footers_read"), p["seconds"], one.Seconds(), mib(oneRun.maxRSS), mib(selfMaxRSS())),
		fmt.Sprintf("(e1) plan of each of %d shards: %s to %s", c.scaleShards, slices.Min(shardWalls).Round(time.Millisecond), slices.Max(shardWalls).Round(time.Millisecond)))
	sum, most := 0, 0
	for _, f := range footers {
		sum += f
		most = max(most, f)
	}
	share := float64(objects) / float64(c.scaleShards)
	details = append(details, fmt.Sprintf("(e4) footers read by shards 0..%d: %v (sum %d of %d objects)", c.scaleShards-1, footers, sum, objects))
	if sum != objects {
		return nil, fmt.Errorf("(e4): the %d shards read %d footers, the export has %d objects", c.scaleShards, sum, objects)
	}
	rg := human(float64(c.scaleRowGroups))
	return []row{
		{
			name:   fmt.Sprintf("(e1) plan, %s row groups, %s objects, shard 0/1", rg, human(float64(objects))),
			figure: fmt.Sprintf("%.2f s", one.Seconds()), reference: "-", ratio: "-", target: "info", verdict: "-",
		},
		{
			name:      fmt.Sprintf("(e1) plan, %s row groups, shard 0/%d", rg, c.scaleShards),
			figure:    fmt.Sprintf("%.2f s", sixteen.Seconds()),
			reference: fmt.Sprintf("%.2f s shard 0/1", one.Seconds()),
			ratio:     fmt.Sprintf("%.3f", sixteen.Seconds()/one.Seconds()),
			target:    "info", verdict: "-",
		},
		{
			name:      fmt.Sprintf("(e4) footers read per shard, %d shards", c.scaleShards),
			figure:    fmt.Sprintf("max %d, mean %.0f", most, float64(sum)/float64(c.scaleShards)),
			reference: fmt.Sprintf("%.0f = %d objects / %d", share, objects, c.scaleShards),
			ratio:     fmt.Sprintf("%.2f", float64(most)/share),
			target:    "≤ 1.25",
			verdict:   verdict(float64(most) <= 1.25*share),
		},
	}, nil
}

// --- (e2), (e3) ------------------------------------------------------------

// commitFigure is one commit of (e2).
type commitFigure struct {
	done  float64 // share of the units done
	bytes int
	took  time.Duration
}

// firstRun makes the job's first run over dir with its state in state: it
// plans the job, stores its plan and stops after one request (a daily cap
// of 1 request: exit 3).
//
// It returns the time from the process's start to its first request at
// the simulator: planning streams, so that request leaves once the listing
// and the first footers are read, not all of them.
func firstRun(ctx context.Context, c config, dir, state string) (*cliRun, time.Duration, error) {
	endpoint, _, tm, stop, err := serveTimed(simulator.Options{ClientName: "demo", SiteID: "1"})
	if err != nil {
		return nil, 0, err
	}
	defer stop()
	var t0 time.Time
	r, err := runCLI(ctx, c.bin, append([]string{"run", "--state", state, "--max-requests-per-day", "1"}, jobArgs(dir, endpoint)...),
		func(t time.Time, _ int) { t0 = t })
	if err != nil {
		return nil, 0, err
	}
	if r.code != 3 {
		return nil, 0, fmt.Errorf("first run over %s exited %d, want 3 (the daily cap):\n%s", dir, r.code, tail(r.stderr))
	}
	tm.mu.Lock()
	first := tm.first
	tm.mu.Unlock()
	if first.IsZero() {
		return nil, 0, fmt.Errorf("the first run over %s sent nothing", dir)
	}
	return r, first.Sub(t0), nil
}

// advance marks the shard's units in plan order done up to the share done
// (and the edge in flight past them), counts their rows, and commits; it
// returns the commit's bytes and time. The commit waits out the pacing of
// writes to one name first, so that only the commit is timed.
func advance(ctx context.Context, cp *pipeline.Checkpoint, st pipeline.StateStore, done float64) (commitFigure, error) {
	m := cp.Manifest()
	before := marked(m.Units)
	n := int(float64(len(m.Units)) * done)
	for i := range m.Units[:n] {
		u := &m.Units[i]
		u.Watermark, u.Above, u.Done = u.Rows, nil, true
	}
	for k, i := 0, n; k < inflightUnits && i < len(m.Units); k, i = k+1, i+1 {
		u := &m.Units[i]
		if k%2 == 0 {
			u.Watermark, u.Above, u.Done = u.Rows, nil, true
		} else if !u.Done {
			u.Watermark = max(u.Watermark, u.Rows/2)
		}
	}
	// The rows marked are counted read and delivered, as a run that
	// delivered them would have: a resume checks the counts against the
	// units.
	delta := marked(m.Units) - before
	m.Counts.RowsRead += delta
	m.Counts.RowsDelivered += delta
	time.Sleep(objstore.MinWriteInterval + 50*time.Millisecond)
	t := time.Now()
	if err := cp.Commit(ctx); err != nil {
		return commitFigure{}, err
	}
	took := time.Since(t)
	data, _, err := st.Read(ctx, pipeline.ManifestName(m.Shard))
	if err != nil {
		return commitFigure{}, err
	}
	return commitFigure{done: done, bytes: len(data), took: took}, nil
}

// marked is the rows the units record as done.
func marked(units []pipeline.UnitProgress) int64 {
	var n int64
	for i := range units {
		if units[i].Done {
			n += units[i].Rows
		} else {
			n += units[i].Acked()
		}
	}
	return n
}

// prepareResume makes the job over dir 99% done in state (see the top of
// this file) and returns the commits made on the way, c.reps at each of
// shares, the last at 99%.
func prepareResume(ctx context.Context, c config, dir, state string, shares []float64) ([]commitFigure, *cliRun, time.Duration, error) {
	first, toFirst, err := firstRun(ctx, c, dir, state)
	if err != nil {
		return nil, nil, 0, err
	}
	figs, err := makeResume(ctx, c, state, shares)
	return figs, first, toFirst, err
}

// makeResume marks the first run's plan done up to each of shares in turn
// (c.reps commits at each) and leaves the manifest stopped.
func makeResume(ctx context.Context, c config, state string, shares []float64) ([]commitFigure, error) {
	st, err := pipeline.OpenState(ctx, state)
	if err != nil {
		return nil, err
	}
	shard := pipeline.Shard{Index: 0, Count: 1}
	cp, m, err := pipeline.OpenCheckpoint(ctx, st, shard, pipeline.NewLease(), nil, 0)
	if err != nil {
		return nil, err
	}
	if m == nil {
		return nil, fmt.Errorf("the first run left no manifest in %s", state)
	}
	if err := cp.Begin(ctx, m); err != nil {
		return nil, err
	}
	var figs []commitFigure
	for _, share := range shares {
		for range c.reps {
			f, err := advance(ctx, cp, st, share)
			if err != nil {
				return nil, err
			}
			figs = append(figs, f)
		}
	}
	if err := cp.Finish(ctx, pipeline.StatusStopped); err != nil {
		return nil, err
	}
	details = append(details, fmt.Sprintf("(e2) the plan of %s is stored in %d parts", filepath.Base(state), len(m.Parts)))
	return figs, nil
}

// best is the fastest commit at share (the bytes are the same each time).
func best(figs []commitFigure, share float64) commitFigure {
	var b commitFigure
	for _, f := range figs {
		if f.done == share && (b.took == 0 || f.took < b.took) {
			b = f
		}
	}
	return b
}

// resumeRun is one resumed run of (e3).
type resumeRun struct {
	toFirst time.Duration // from the process's start to the first request
	// cpuToFirst is the CPU time (user and system) the process had used
	// when its first request arrived: what the machine's load does not
	// stretch.
	cpuToFirst time.Duration
	run        *cliRun
	requests   int64
}

// resume runs the job over dir once more against a simulator and returns
// the time from the process's start to the first request the simulator
// saw, with the run.
func resume(ctx context.Context, c config, dir, state string) (*resumeRun, error) {
	endpoint, sim, tm, stop, err := serveTimed(simulator.Options{ClientName: "demo", SiteID: "1"})
	if err != nil {
		return nil, err
	}
	defer stop()
	var mu sync.Mutex
	var t0 time.Time
	var pid int
	cpu := time.Duration(-1)
	tm.mu.Lock()
	tm.onFirst = func() {
		mu.Lock()
		defer mu.Unlock()
		cpu = cpuTime(pid)
	}
	tm.mu.Unlock()
	r, err := runCLI(ctx, c.bin, append([]string{"run", "--state", state}, jobArgs(dir, endpoint)...), func(t time.Time, p int) {
		mu.Lock()
		t0, pid = t, p
		mu.Unlock()
	})
	if err != nil {
		return nil, err
	}
	if r.code != 0 {
		return nil, fmt.Errorf("resumed run over %s exited %d:\n%s", dir, r.code, tail(r.stderr))
	}
	tm.mu.Lock()
	first := tm.first
	tm.mu.Unlock()
	if first.IsZero() {
		return nil, fmt.Errorf("the resumed run over %s sent nothing", dir)
	}
	mu.Lock()
	defer mu.Unlock()
	return &resumeRun{toFirst: first.Sub(t0), cpuToFirst: cpu, run: r, requests: sim.Stats().Accepted}, nil
}

// cpuTime is the user and system CPU time process pid has used so far, from
// /proc (in clock ticks of 1/100 s, Linux's USER_HZ); -1 if unknown.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// The fields after the command's name, which is in parentheses and may
	// hold spaces: state is the first, utime the 12th, stime the 13th.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return -1
	}
	var user, sys int64
	if _, err := fmt.Sscan(f[11], &user); err != nil {
		return -1
	}
	if _, err := fmt.Sscan(f[12], &sys); err != nil {
		return -1
	}
	return time.Duration(user+sys) * 10 * time.Millisecond
}

func caseE2E3(ctx context.Context, c config, x scaleExports, scratch string) ([]row, error) {
	shares := []float64{0.01, 0.50, 0.99}
	figs, first, toFirst, err := prepareResume(ctx, c, x.rowGroups, filepath.Join(scratch, "state-e3-rowgroups"), shares)
	if err != nil {
		return nil, fmt.Errorf("(e2): %w", err)
	}
	p := first.planned()
	details = append(details, fmt.Sprintf("(e3) first run over the %s row groups (plans, stores the plan, stops at a daily cap of 1): %.2fs, planning %ss, first request %.0f ms after the start",
		human(float64(c.scaleRowGroups)), first.wall.Seconds(), p["seconds"], ms(toFirst)))
	rows := []row{{
		name:   fmt.Sprintf("(e3) first run, %s row groups: start to first request", human(float64(c.scaleRowGroups))),
		figure: fmt.Sprintf("%.2f s", toFirst.Seconds()), reference: fmt.Sprintf("planning %ss", p["seconds"]),
		ratio: "-", target: "< 5s", verdict: verdict(toFirst < 5*time.Second),
	}}
	at1 := best(figs, 0.01)
	for _, share := range shares {
		f := best(figs, share)
		r := row{
			name:      fmt.Sprintf("(e2) commit, %s units, %.0f%% done", human(float64(c.scaleRowGroups)), share*100),
			figure:    fmt.Sprintf("%s in %.1f ms", kib(f.bytes), ms(f.took)),
			reference: "-", ratio: "-", target: "info", verdict: "-",
		}
		if share != 0.01 {
			r.reference = kib(at1.bytes) + " at 1%"
			r.ratio = fmt.Sprintf("%.2f", float64(f.bytes)/float64(at1.bytes))
			r.target, r.verdict = "≤ 2.00 (bytes)", verdict(f.bytes <= 2*at1.bytes)
		}
		rows = append(rows, r)
	}
	for _, e := range []struct {
		what, dir, state string
		target           time.Duration
	}{
		{fmt.Sprintf("%s row groups", human(float64(c.scaleRowGroups))), x.rowGroups, filepath.Join(scratch, "state-e3-rowgroups"), 5 * time.Second},
		{fmt.Sprintf("%s objects", human(float64(x.yearObjects))), x.year, filepath.Join(scratch, "state-e3-year"), 2 * time.Second},
	} {
		if e.dir == x.year {
			yf, yfirst, ytoFirst, err := prepareResume(ctx, c, e.dir, e.state, []float64{0.99})
			if err != nil {
				return nil, fmt.Errorf("(e3): %w", err)
			}
			details = append(details, fmt.Sprintf("(e3) first run over the %s: %.2fs, planning %ss, first request %.0f ms after the start; commit at 99%%: %s in %.1f ms",
				e.what, yfirst.wall.Seconds(), yfirst.planned()["seconds"], ms(ytoFirst), kib(best(yf, 0.99).bytes), ms(best(yf, 0.99).took)))
			rows = append(rows, row{
				name:   fmt.Sprintf("(e3) first run, %s: start to first request", e.what),
				figure: fmt.Sprintf("%.2f s", ytoFirst.Seconds()), reference: fmt.Sprintf("planning %ss", yfirst.planned()["seconds"]),
				ratio: "-", target: "< 2s", verdict: verdict(ytoFirst < 2*time.Second),
			})
		}
		// Each resume finishes the job: every one starts from a copy of
		// the state made 99% done.
		var fastest *resumeRun
		for rep := range c.reps {
			state := fmt.Sprintf("%s-resume%d", e.state, rep)
			if err := copyTree(e.state, state); err != nil {
				return nil, err
			}
			rr, err := resume(ctx, c, e.dir, state)
			if err != nil {
				return nil, fmt.Errorf("(e3): %w", err)
			}
			p := rr.run.planned()
			details = append(details, fmt.Sprintf("(e3) resume over the %s, run %d: first request %.0f ms after the start, with %.0f ms of CPU used by then; listing and planning %ss (%v footers read, %v objects from the ledger); %d requests, %.2fs in all",
				e.what, rep+1, ms(rr.toFirst), ms(rr.cpuToFirst), p["seconds"], p["footers_read"], p["from_ledger"], rr.requests, rr.run.wall.Seconds()))
			if fastest == nil || rr.toFirst < fastest.toFirst {
				fastest = rr
			}
		}
		rows = append(rows, row{
			name:      fmt.Sprintf("(e3) resume 99%% done, %s: start to first request", e.what),
			figure:    fmt.Sprintf("%.2f s", fastest.toFirst.Seconds()),
			reference: fmt.Sprintf("%.2f s of CPU", fastest.cpuToFirst.Seconds()),
			ratio:     "-",
			target:    fmt.Sprintf("< %s", e.target),
			verdict:   verdict(fastest.toFirst < e.target),
		})
	}
	return rows, nil
}

// copyTree copies the files under src to dst, which must not exist.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, data, 0o644)
	})
}

func kib(n int) string { return fmt.Sprintf("%.1f KiB", float64(n)/1024) }
