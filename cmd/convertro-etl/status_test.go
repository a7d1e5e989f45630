package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/jobs"
	"github.com/convertro-etl/convertro-etl/writers/generate"
)

// TestStatusDoneExitCodes: `status --done` tells the step of a workflow
// that waits on every shard whether the job is done, by exit code, on
// states written by real runs of `run --shard i/2`: 4 while a shard has not
// started, 5 when a shard's run failed, 2 when all finished with dead
// letters, 0 when all finished cleanly; 1 when there is no job. Without
// --done, status only looks and exits 0.
func TestStatusDoneExitCodes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	export := filepath.Join(dir, "export")
	if _, err := generate.Generate(ctx, generate.Options{Out: export, Rows: 300, Seed: 4, RowGroupRows: 50}); err != nil {
		t.Fatal(err)
	}
	job := []string{"--source", export, "--account", "acme", "--client-name", "acme", "--site-id", "12", "--event", "Signed Up=signup"}
	// A device id to refuse: the dry run's first request's.
	var dry bytes.Buffer
	if code := run(ctx, append([]string{"run", "--dry-run", "--out", "-", "--state", filepath.Join(dir, "dry")}, job...), &dry, &bytes.Buffer{}); code != 0 {
		t.Fatalf("dry run: exit %d", code)
	}
	line, _, _ := strings.Cut(dry.String(), "\n")
	_, q, _ := strings.Cut(line, "sid=")
	sid, _, _ := strings.Cut(q, "&")
	endpoint := func(o simulator.Options) string {
		srv := httptest.NewServer(simulator.New(o))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	good := endpoint(simulator.Options{ClientName: "acme", SiteID: "12"})
	rejecting := endpoint(simulator.Options{ClientName: "acme", SiteID: "12", RejectSIDs: []string{sid}})
	refusing := endpoint(simulator.Options{ClientName: "someone-else"})

	runShard := func(state, shard, url string) (int, string) {
		var stderr bytes.Buffer
		code := run(ctx, append([]string{"run", "--state", state, "--shard", shard, "--endpoint", url}, job...), &bytes.Buffer{}, &stderr)
		return code, stderr.String()
	}
	// shard runs a shard to its end (exit 0, or 2 for dead letters).
	shard := func(state, shard, url string) {
		t.Helper()
		if code, stderr := runShard(state, shard, url); code != 0 && code != 2 {
			t.Fatalf("run --shard %s: exit %d\n%s", shard, code, stderr)
		}
	}
	status := func(state string, args ...string) (int, string, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		code := run(ctx, append([]string{"status", "--state", state}, args...), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}

	if code, _, stderr := status(filepath.Join(dir, "none"), "--done"); code != 1 || !strings.Contains(stderr, "no manifest") {
		t.Errorf("status --done of an empty state: exit %d, want 1\n%s", code, stderr)
	}

	// Dead letters: 4 while shard 1 has not started, 2 once both finished.
	dead := filepath.Join(dir, "dead")
	shard(dead, "0/2", rejecting)
	if code, out, stderr := status(dead, "--done"); code != 4 || !strings.Contains(stderr, "1/2 not_started") || !strings.Contains(out, "1/2") {
		t.Errorf("one of two shards run: status --done exit %d, want 4\n%s%s", code, out, stderr)
	}
	if code, _, _ := status(dead); code != 0 {
		t.Errorf("status without --done: exit %d, want 0", code)
	}
	shard(dead, "1/2", rejecting)
	code, out, stderr := status(dead, "--done", "--report")
	if code != 2 || !strings.Contains(stderr, "rows dead-lettered") {
		t.Errorf("both shards finished with dead letters: status --done exit %d, want 2\n%s", code, stderr)
	}
	var rep jobs.JobReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("status --report: %v\n%s", err, out)
	}
	if err := rep.Check(); err != nil || rep.Counts.RowsRead != 300 || rep.DeadLetters == 0 || len(rep.Shards) != 2 || rep.ShardCount != 2 {
		t.Errorf("merged report: check %v, %d rows read, %d dead letters, %d of %d shards", err, rep.Counts.RowsRead, rep.DeadLetters, len(rep.Shards), rep.ShardCount)
	}

	// A shard whose run failed (every request refused: misconfigured).
	failed := filepath.Join(dir, "failed")
	if code, stderr := runShard(failed, "0/2", refusing); code != 1 {
		t.Fatalf("run against a refusing Convertro: exit %d, want 1\n%s", code, stderr)
	}
	shard(failed, "1/2", good)
	if code, _, stderr := status(failed, "--done"); code != 5 || !strings.Contains(stderr, "0/2 failed") {
		t.Errorf("a failed shard: status --done exit %d, want 5\n%s", code, stderr)
	}

	// Both shards clean: 0, and the JSON says so.
	clean := filepath.Join(dir, "clean")
	shard(clean, "0/2", good)
	shard(clean, "1/2", good)
	code, out, stderr = status(clean, "--done", "--json")
	var js jobs.JobStatus
	if err := json.Unmarshal([]byte(out), &js); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if code != 0 || js.Status != jobs.JobFinished || !js.Complete || js.Totals.Counts.RowsRead != 300 {
		t.Errorf("both shards finished cleanly: exit %d, job %s complete %v, %d rows\n%s", code, js.Status, js.Complete, js.Totals.Counts.RowsRead, stderr)
	}
}
