//go:build unix

package main

// Case (f): the Indexed Job at scale. The year of hourly partitions (e3's
// export) is run as a Kubernetes Indexed Job runs it: one CLI process per
// completion index, all at once, each told its index by
// JOB_COMPLETION_INDEX and the count by --shards, on one state. Some shards
// are SIGKILLed once their manifest records acknowledged requests, and their
// index is started again at once (backoffLimitPerIndex). The simulator,
// in this process, records every request it accepts; the single-process dry
// run of the same job says which requests there must be. The figures: the
// wall time and rate of the whole job, the repeats against the bound the
// shards' reports give together, and the footers each shard read.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/pipeline"
)

// requestSet counts requests by a hash of path?query: a million URLs as
// strings would weigh more than the job being measured. Every set hashes
// with requestSeed, so that sets compare.
type requestSet struct {
	mu   sync.Mutex
	n    map[uint64]int
	rest []byte // a record line not yet ended
	err  error
}

var requestSeed = maphash.MakeSeed()

func newRequestSet() *requestSet { return &requestSet{n: map[uint64]int{}} }

func (s *requestSet) add(pathQuery string) {
	s.mu.Lock()
	s.n[maphash.String(requestSeed, pathQuery)]++
	s.mu.Unlock()
}

// Write takes the simulator's record lines, {"path":…,"raw":…}.
func (s *requestSet) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.rest = append(s.rest, p...)
	var lines [][]byte
	for {
		i := bytes.IndexByte(s.rest, '\n')
		if i < 0 {
			break
		}
		lines = append(lines, bytes.Clone(s.rest[:i]))
		s.rest = s.rest[i+1:]
	}
	s.mu.Unlock()
	for _, l := range lines {
		var rec struct{ Path, Raw string }
		if err := json.Unmarshal(l, &rec); err != nil {
			s.mu.Lock()
			s.err = fmt.Errorf("record line %q: %w", l, err)
			s.mu.Unlock()
			continue
		}
		s.add(rec.Path + "?" + rec.Raw)
	}
	return len(p), nil
}

// dryRunSet runs the single-process dry run of the job over dir and counts
// its requests.
func dryRunSet(ctx context.Context, c config, dir, scratch string) (*requestSet, error) {
	out := filepath.Join(scratch, "f-dry.jsonl")
	defer os.Remove(out)
	r, err := runCLI(ctx, c.bin, append([]string{"run", "--dry-run", "--out", out, "--state", filepath.Join(scratch, "state-f-dry")},
		jobArgs(dir, placeholder)...), nil)
	if err != nil {
		return nil, err
	}
	if r.code != 0 {
		return nil, fmt.Errorf("dry run over %s exited %d:\n%s", dir, r.code, tail(r.stderr))
	}
	f, err := os.Open(out)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	set := newRequestSet()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct{ URL string }
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return nil, fmt.Errorf("dry-run line %q: %w", sc.Text(), err)
		}
		set.add(strings.TrimPrefix(line.URL, placeholder))
	}
	return set, sc.Err()
}

// shardProc is one pod of the Indexed Job.
type shardProc struct {
	index  int
	cmd    *exec.Cmd
	stderr bytes.Buffer
	done   chan struct{}
}

func startShardProc(c config, args []string, index, shards int) (*shardProc, error) {
	p := &shardProc{index: index, done: make(chan struct{})}
	p.cmd = exec.Command(c.bin, append(args, "--shards", strconv.Itoa(shards), "--log-format", "json")...)
	p.cmd.Env = append(os.Environ(), "JOB_COMPLETION_INDEX="+strconv.Itoa(index))
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *shardProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// footers is what the shard's "planned" log line says it read.
func (p *shardProc) footers() float64 {
	for _, line := range bytes.Split(p.stderr.Bytes(), []byte("\n")) {
		var rec map[string]any
		if json.Unmarshal(line, &rec) == nil && rec["msg"] == "planned" {
			return num(rec, "footers_read")
		}
	}
	return -1
}

func caseF(ctx context.Context, c config, x scaleExports, scratch string) ([]row, error) {
	want, err := dryRunSet(ctx, c, x.year, scratch)
	if err != nil {
		return nil, fmt.Errorf("(f): %w", err)
	}
	var total int
	for _, n := range want.n {
		total += n
	}
	got := newRequestSet()
	endpoint, sim, stop, err := serve(simulator.Options{ClientName: "demo", SiteID: "1", Record: got})
	if err != nil {
		return nil, err
	}
	defer stop()
	state := filepath.Join(scratch, "state-f")
	if err := os.RemoveAll(state); err != nil {
		return nil, err
	}
	args := append([]string{"run", "--state", state}, jobArgs(x.year, endpoint)...)
	shards := c.scaleShards
	kill := map[int]bool{}
	for _, i := range []int{shards / 4, 3 * shards / 4} {
		kill[i] = true
	}
	start := time.Now()
	procs := make([]*shardProc, shards)
	for i := range procs {
		if procs[i], err = startShardProc(c, args, i, shards); err != nil {
			return nil, err
		}
	}
	defer func() {
		for _, p := range procs {
			if p != nil && !p.exited() {
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
	}()
	st, err := pipeline.OpenState(ctx, state)
	if err != nil {
		return nil, err
	}
	killed := map[int]int64{}
	var first []*shardProc // the killed pods, for their footer counts
	for len(killed) < len(kill) {
		if time.Since(start) > 10*time.Minute {
			return nil, fmt.Errorf("(f): shards %v did not commit progress within 10 minutes", kill)
		}
		time.Sleep(100 * time.Millisecond)
		ms, err := pipeline.ListManifests(ctx, st)
		if err != nil {
			continue // a manifest mid-write is read again next time
		}
		for _, m := range ms {
			i := m.Shard.Index
			if m.Shard.Count != shards || !kill[i] || killed[i] > 0 || m.Status != pipeline.StatusRunning || m.Counts.RequestsAcked == 0 {
				continue
			}
			if procs[i].exited() {
				return nil, fmt.Errorf("(f): shard %d ended before it could be killed:\n%s", i, tail(procs[i].stderr.String()))
			}
			_ = procs[i].cmd.Process.Signal(syscall.SIGKILL)
			<-procs[i].done
			killed[i] = m.Counts.RequestsAcked
			first = append(first, procs[i])
			if procs[i], err = startShardProc(c, args, i, shards); err != nil {
				return nil, err
			}
		}
	}
	// A pod that exits 1 (failed or stopped) is started again, as the
	// Job's backoffLimitPerIndex does, up to its 3 retries; exit 3 (held
	// by another process) is started again without counting, as the
	// podFailurePolicy's Ignore does; exit 2 fails the index, and the case.
	var failures []string
	retries := make([]int, shards)
	for i := range procs {
		for {
			<-procs[i].done
			code := procs[i].cmd.ProcessState.ExitCode()
			if code == 0 {
				break
			}
			if code != 1 && code != 3 || retries[i] == 3 {
				return nil, fmt.Errorf("(f): shard %d exited %d:\n%s", i, code, tail(procs[i].stderr.String()))
			}
			if code == 1 {
				retries[i]++
			}
			failures = append(failures, fmt.Sprintf("shard %d exited %d (%s)", i, code, lastLine(procs[i].stderr.String())))
			if procs[i], err = startShardProc(c, args, i, shards); err != nil {
				return nil, err
			}
		}
	}
	wall := time.Since(start)
	if err := sim.Flush(); err != nil {
		return nil, err
	}
	if got.err != nil {
		return nil, got.err
	}

	missing, extra, repeats := 0, 0, 0
	for k, n := range want.n {
		switch g := got.n[k]; {
		case g < n:
			missing += n - g
		case g > n:
			repeats += g - n
		}
	}
	for k, n := range got.n {
		if _, ok := want.n[k]; !ok {
			extra += n
		}
	}
	var bound int64
	var footers []string
	for i, p := range procs {
		data, _, err := st.Read(ctx, pipeline.ReportName(pipeline.Shard{Index: i, Count: shards}))
		if err != nil {
			return nil, err
		}
		var rep struct {
			RepeatBound int64 `json:"repeat_bound"`
		}
		if err := json.Unmarshal(data, &rep); err != nil {
			return nil, err
		}
		bound += rep.RepeatBound
		footers = append(footers, fmt.Sprintf("%.0f", p.footers()))
	}
	details = append(details, fmt.Sprintf("(f) %d shards over %s objects: killed %d and %d at %d and %d acknowledged requests and started them again; "+
		"%d requests expected, %d missing, %d not expected, %d repeated (the reports' bounds sum to %d); footers read by each shard's last process (a restarted one plans from its manifest): %s",
		shards, human(float64(x.yearObjects)), shards/4, 3*shards/4, killed[shards/4], killed[3*shards/4],
		total, missing, extra, repeats, bound, strings.Join(footers, " ")))
	if len(failures) > 0 {
		details = append(details, "(f) pods that exited on their own and were started again: "+strings.Join(failures, "; "))
	}
	return []row{{
		name: fmt.Sprintf("(f) Indexed Job, %d processes, 2 killed and restarted, %d restarted after a failure, %s objects",
			shards, len(failures), human(float64(x.yearObjects))),
		figure:    fmt.Sprintf("%.1f s, %s req/s", wall.Seconds(), human(float64(total)/wall.Seconds())),
		reference: fmt.Sprintf("%d repeats (bound %d)", repeats, bound),
		ratio:     fmt.Sprintf("%d missing, %d extra", missing, extra),
		target:    "0 missing, 0 extra, repeats ≤ bound",
		verdict:   verdict(missing == 0 && extra == 0 && int64(repeats) <= bound),
	}}, nil
}

// lastLine is the last line of a pod's log that is not empty: its error.
func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndexByte(s, '\n')+1:]
}
