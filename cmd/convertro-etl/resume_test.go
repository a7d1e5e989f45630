//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/objstore/objstoretest"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/writers/generate"
)

// command starts this test binary as the convertro-etl command.
func command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "CONVERTRO_ETL_MAIN=1")
	return cmd
}

// killWhen starts the program with args and SIGKILLs it as soon as ready
// reports true, polling every few milliseconds; what names the process in
// the failure when it exits on its own first. SIGKILL leaves it no chance to
// commit anything more.
func killWhen(t *testing.T, ctx context.Context, what string, ready func() bool, args ...string) {
	t.Helper()
	cmd := command(ctx, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for {
		select {
		case err := <-exited:
			t.Fatalf("%s ended before it could be killed (%v):\n%s", what, err, stderr.String())
		case <-time.After(5 * time.Millisecond):
			if ready() {
				cmd.Process.Kill()
				<-exited
				return
			}
		}
	}
}

// TestResumeAfterKill kills the running program with SIGKILL in the middle of
// delivery, runs it again, and checks from the simulator's record and the
// report alone: every expected request recorded at least once, nothing
// unexpected, and no more repeats than the report's bound.
func TestResumeAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the program as a subprocess")
	}
	dir := t.TempDir()
	export := filepath.Join(dir, "export")
	if _, err := generate.Generate(context.Background(), generate.Options{Out: export, Rows: 12000, Seed: 11, RowGroupRows: 500}); err != nil {
		t.Fatal(err)
	}
	testResumeAfterKill(t, export, filepath.Join(dir, "state"), 4*time.Millisecond, 8)
}

// TestResumeAfterKillRemote is TestResumeAfterKill with the export and the
// state in a bucket of each object store, which the processes reach through
// the environment the emulators set. The export is small, in few objects,
// and slow answers stretch its delivery over several commits.
func TestResumeAfterKillRemote(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the program as a subprocess")
	}
	export := leaseExport(t, 800)
	for _, name := range slices.Sorted(maps.Keys(remoteBackends)) {
		t.Run(name, func(t *testing.T) {
			root := remoteBackends[name](t)
			objstoretest.PutTree(t, export, root+"/export")
			testResumeAfterKill(t, root+"/export", root+"/state", 15*time.Millisecond, 4)
		})
	}
}

// testResumeAfterKill runs the job of source with its state in state
// against a simulator answering after delay, kills it once a third of the
// requests are in and a commit has recorded progress, and resumes it.
func testResumeAfterKill(t *testing.T, source, state string, delay time.Duration, concurrency int) {
	ctx := context.Background()
	record := &syncBuffer{}
	sim := simulator.New(simulator.Options{ClientName: "acme", SiteID: "12", Record: record, Delay: delay})
	srv := httptest.NewServer(sim)
	defer srv.Close()

	args := []string{"run", "--source", source, "--state", state, "--endpoint", srv.URL,
		"--account", "acme", "--client-name", "acme", "--site-id", "12",
		"--event", "Signed Up=signup", "--event", "Added to Cart=add_to_cart", "--concurrency", strconv.Itoa(concurrency)}

	// What a complete run sends, from the program's own dry run.
	dry := filepath.Join(t.TempDir(), "dry.jsonl")
	if out, err := command(ctx, append(clone(args), "--dry-run", "--out", dry)...).CombinedOutput(); err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	want := map[string]int{}
	f, err := os.Open(dry)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var line struct{ URL string }
		json.Unmarshal(sc.Bytes(), &line)
		u, _ := url.Parse(line.URL)
		want[canonical(u.Path, u.Query())]++
	}
	f.Close()
	total := 0
	for _, n := range want {
		total += n
	}

	// First run: killed once a third of the requests are in and the state
	// has recorded some of them, so that the second run resumes rather
	// than starts over.
	st, err := pipeline.OpenState(ctx, state)
	if err != nil {
		t.Fatal(err)
	}
	shard := pipeline.Shard{Index: 0, Count: 1}
	committed := func() bool {
		m, err := pipeline.ReadManifest(ctx, st, shard)
		return err == nil && m.Counts.RequestsAcked > 0
	}
	killWhen(t, ctx, "the first run", func() bool { return sim.Stats().Accepted >= int64(total/3) && committed() }, args...)
	acceptedAtKill := sim.Stats().Accepted

	// Second run: resumes and finishes.
	second := command(ctx, args...)
	out, err := second.CombinedOutput()
	if err != nil {
		t.Fatalf("resumed run: %v\n%s", err, out)
	}
	sim.Flush()

	got := map[string]int{}
	for _, l := range record.lines() {
		var line struct {
			Path  string            `json:"path"`
			Query map[string]string `json:"query"`
		}
		if err := json.Unmarshal(l, &line); err != nil {
			t.Fatalf("record line %q: %v", l, err)
		}
		q := url.Values{}
		for k, v := range line.Query {
			q.Set(k, v)
		}
		got[canonical(line.Path, q)]++
	}
	repeats := 0
	for k, n := range want {
		if got[k] < n {
			t.Errorf("expected request recorded %d times, want at least %d: %s", got[k], n, k)
		}
	}
	for k, n := range got {
		w, ok := want[k]
		if !ok {
			t.Errorf("unexpected request recorded: %s", k)
			continue
		}
		repeats += max(0, n-w)
	}

	var rep struct {
		Runs        int   `json:"runs"`
		RepeatBound int64 `json:"repeat_bound"`
		Counts      struct {
			RequestsSent int64 `json:"requests_sent"`
		} `json:"counts"`
	}
	data, _, err := st.Read(ctx, pipeline.ReportName(shard))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Runs != 2 {
		t.Errorf("report counts %d runs, want 2 (one killed, one resumed)", rep.Runs)
	}
	if int64(repeats) > rep.RepeatBound {
		t.Errorf("%d requests repeated, more than the report's bound %d", repeats, rep.RepeatBound)
	}
	if rep.Counts.RequestsSent != int64(total) {
		t.Errorf("report counts %d requests sent, want %d", rep.Counts.RequestsSent, total)
	}
	t.Logf("%d requests expected; %d accepted before the kill; %d repeated after it (bound %d)", total, acceptedAtKill, repeats, rep.RepeatBound)
}

func clone(s []string) []string { return append([]string(nil), s...) }
