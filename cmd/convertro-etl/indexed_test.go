//go:build unix

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/objstore/objstoretest"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/writers/generate"
)

// The Indexed Job test runs the program as a Kubernetes Indexed Job runs
// it: one process per completion index, all at once, each told its index by
// JOB_COMPLETION_INDEX and the count by --shards, on one state in a bucket
// (the GCS emulator process), with the export in the same bucket. A pod
// that dies is started again with the same index (backoffLimitPerIndex), so
// the test SIGKILLs some shards mid-run and restarts their index.

// startShard starts the job's shard index of shards the way an Indexed
// Job's pod does.
func (j *leaseJob) startShard(t *testing.T, index, shards int) *leaseProc {
	t.Helper()
	cmd := command(context.Background(), append(clone(j.args), "--shards", strconv.Itoa(shards))...)
	cmd.Env = append(cmd.Env, "JOB_COMPLETION_INDEX="+strconv.Itoa(index))
	return startProc(t, cmd)
}

// shardManifests reads every shard's manifest summary in the job's state,
// by shard index (shards of count n only).
func (j *leaseJob) shardManifests(t *testing.T, n int) map[int]*pipeline.Manifest {
	t.Helper()
	ms, err := pipeline.ListManifests(context.Background(), j.st)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]*pipeline.Manifest{}
	for _, m := range ms {
		if m.Shard.Count == n {
			out[m.Shard.Index] = m
		}
	}
	return out
}

// TestIndexedJobShardsKilledAndRestarted starts the four shards of a job at
// once on a GCS state, SIGKILLs two of them once their manifest has
// committed progress, and starts their index again. Every request of the
// single-process dry run must reach the simulator, nothing else, with no
// more repeats than the shards' reports allow together, and the shards not
// killed exactly once; the shards' counts add up to the dry run's. A run of the same job in another number of
// shards is then refused before it sends or writes anything, with a
// message that names the state's count.
func TestIndexedJobShardsKilledAndRestarted(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the program as subprocesses")
	}
	const shards = 4
	kill := []int{1, 3}
	ctx := context.Background()
	// A day of hourly partitions of five tables: about a hundred small
	// objects, so that every shard owns a share of them by key.
	export := filepath.Join(t.TempDir(), "export")
	sum, err := generate.Generate(ctx, generate.Options{Out: export, Rows: 1500, Seed: 7, Days: 1, RowGroupRows: 50})
	if err != nil {
		t.Fatal(err)
	}
	root := objstoretest.GCS(t)
	objstoretest.PutTree(t, export, root+"/export")
	b := leaseBackend{name: "gcs", source: root + "/export", root: root + "/state"}
	want, total := expectedRequests(t, b.source)
	// Each shard's own dry run: together they are the whole job's, each
	// request in exactly one shard.
	byShard := make([]map[string]int, shards)
	union := map[string]int{}
	for i := range shards {
		byShard[i], _ = expectedRequests(t, b.source, "--shard", fmt.Sprintf("%d/%d", i, shards))
		for k, n := range byShard[i] {
			union[k] += n
		}
	}
	if !maps.Equal(union, want) {
		t.Fatalf("the %d shards' dry runs hold %d distinct requests, the whole job's %d: shards overlap or miss some", shards, len(union), len(want))
	}

	// Slow answers stretch each shard's delivery over several commits
	// (one a second at most), so that a kill lands between two of them.
	j := newLeaseJob(t, b, "indexed", 25*time.Millisecond)
	procs := make([]*leaseProc, shards)
	for i := range shards {
		procs[i] = j.startShard(t, i, shards)
	}

	// Kill each chosen shard once its manifest records acknowledged
	// requests, and start its index again at once.
	killedAt := map[int]int64{}
	deadline := time.Now().Add(2 * time.Minute)
	for len(killedAt) < len(kill) {
		if time.Now().After(deadline) {
			t.Fatalf("shards %v did not commit progress within 2 minutes", kill)
		}
		ms := j.shardManifests(t, shards)
		for _, i := range kill {
			if _, done := killedAt[i]; done {
				continue
			}
			p := procs[i]
			if p.exited() {
				t.Fatalf("shard %d ended (exit %d) before it could be killed: slow the simulator down. stderr:\n%s",
					i, p.cmd.ProcessState.ExitCode(), p.stderr.text())
			}
			m := ms[i]
			if m == nil || m.Status != pipeline.StatusRunning || m.Counts.RequestsAcked == 0 {
				continue
			}
			p.signal(t, syscall.SIGKILL)
			if code := p.wait(t, fmt.Sprintf("killed shard %d", i), time.Minute); code != -1 {
				t.Fatalf("shard %d exited %d before the SIGKILL landed: slow the simulator down. stderr:\n%s", i, code, p.stderr.text())
			}
			done, all := m.RowsProgress()
			if done >= all {
				t.Fatalf("shard %d was killed with all its %d rows committed: not mid-run", i, all)
			}
			killedAt[i] = m.Counts.RequestsAcked
			t.Logf("shard %d killed with %d of its %d rows committed (%d requests acknowledged)", i, done, all, m.Counts.RequestsAcked)
			procs[i] = j.startShard(t, i, shards)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i, p := range procs {
		if code := p.wait(t, fmt.Sprintf("shard %d", i), 2*time.Minute); code != exitOK {
			t.Fatalf("shard %d exited %d, want %d. stderr:\n%s", i, code, exitOK, p.stderr.text())
		}
	}

	// Every shard finished; together they sent the dry run's requests.
	ms := j.shardManifests(t, shards)
	if len(ms) != shards {
		t.Fatalf("the state holds %d manifests of %d shards, want %d", len(ms), shards, shards)
	}
	j.checkDelivered(t, want, false)
	got := j.recorded(t)
	repeats := 0
	for k, n := range got {
		repeats += max(0, n-want[k])
	}
	// A kill makes its own shard send again, never another one.
	for i := range shards {
		if slices.Contains(kill, i) {
			continue
		}
		for k, n := range byShard[i] {
			if got[k] != n {
				t.Errorf("shard %d, never killed: request recorded %d times, want %d: %s", i, got[k], n, k)
			}
		}
	}
	var bound, sent int64
	for i := range shards {
		shard := pipeline.Shard{Index: i, Count: shards}
		if m := ms[i]; m.Status != pipeline.StatusFinished || !m.AllDone() {
			t.Errorf("shard %s: manifest status %s, all done %v; want finished", shard, m.Status, m.AllDone())
		}
		data, _, err := j.st.Read(ctx, pipeline.ReportName(shard))
		if err != nil {
			t.Fatal(err)
		}
		var rep struct {
			Runs        int   `json:"runs"`
			RepeatBound int64 `json:"repeat_bound"`
			Counts      struct {
				RequestsSent int64 `json:"requests_sent"`
			} `json:"counts"`
		}
		if err := json.Unmarshal(data, &rep); err != nil {
			t.Fatal(err)
		}
		wantRuns := 1
		if slices.Contains(kill, i) {
			wantRuns = 2
		}
		if rep.Runs != wantRuns {
			t.Errorf("shard %s: report counts %d runs, want %d", shard, rep.Runs, wantRuns)
		}
		if rep.Counts.RequestsSent == 0 {
			t.Errorf("shard %s sent nothing: the export does not spread over %d shards", shard, shards)
		}
		bound += rep.RepeatBound
		sent += rep.Counts.RequestsSent
	}
	if int64(repeats) > bound {
		t.Errorf("%d requests repeated, more than the reports' bounds allow together (%d)", repeats, bound)
	}
	if sent != int64(total) {
		t.Errorf("the shards' reports count %d requests sent, the dry run has %d", sent, total)
	}
	t.Logf("%d objects, %d requests over %d shards; %d repeated after the kills (bounds sum to %d)", sum.Files, total, shards, repeats, bound)

	// The same job in two shards on this state would plan each object
	// again under another owner: refused, before anything is sent.
	accepted := j.sim.Stats().Accepted
	before := j.snapshot(t)
	other := j.startShard(t, 0, 2)
	if code := other.wait(t, "the run with another shard count", time.Minute); code != exitFailed {
		t.Fatalf("a run in 2 shards on the state of 4 exited %d, want %d. stderr:\n%s", code, exitFailed, other.stderr.text())
	}
	msg := other.stderr.text()
	for _, s := range []string{"split into 4 shards", "--shards 4", "give a new --state"} {
		if !strings.Contains(msg, s) {
			t.Errorf("the refusal does not say %q:\n%s", s, msg)
		}
	}
	if n := j.sim.Stats().Accepted; n != accepted {
		t.Errorf("the refused run sent %d requests", n-accepted)
	}
	after := j.snapshot(t)
	for name, v := range after {
		if before[name] != v {
			t.Errorf("the refused run wrote %s", name)
		}
	}
	t.Logf("refused: %s", lastLine(msg))
}
