//go:build unix

package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/objstore"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/writers"
)

// The audience diff benchmark. The memberships are generated once, then each
// iteration runs the diff of a sync in a child process (this test binary
// re-run with audienceChildEnv set), so that the child's peak RSS, read from
// its rusage, is the diff's alone.
//
//	CONVERTRO_AUDIENCE_ROWS=20000000 go test -run '^$' -bench AudienceDiff -benchtime 1x -timeout 60m ./jobs/
//
// ROWS memberships are in the previous snapshot, spread over four audiences;
// the source has 5% of them left (rows with member=false) and 5% new ones:
// 10% of ROWS change.

const (
	audienceRowsEnv  = "CONVERTRO_AUDIENCE_ROWS"
	audienceChildEnv = "CONVERTRO_AUDIENCE_DIFF_CHILD"
)

var benchAudiences = []string{"high_value", "cart_abandoners", "newsletter", "churn_risk"}

func benchUser(i int) string { return fmt.Sprintf("user-%010d", i) }

func benchDevice(i int) string {
	h := uint64(i)*0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019
	return fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", uint32(h>>32), uint16(h>>16), uint16(h)&0xfff, uint16(h>>4)&0xfff, h&0xffffffffffff)
}

// genAudienceBench writes the previous snapshot into the state (with
// current.json) and the source as files of at most 2M rows; it returns the
// number of changes a diff must find.
func genAudienceBench(tb testing.TB, n int, state, src string) int64 {
	tb.Helper()
	ctx := context.Background()
	st, err := pipeline.OpenState(ctx, state)
	if err != nil {
		tb.Fatal(err)
	}
	local := filepath.Join(tb.TempDir(), "snapshot.parquet")
	w, err := writers.CreateMemberships(local, 0)
	if err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		if err := w.Write(writers.Membership{UserID: benchUser(i), Audience: benchAudiences[i%4], Member: true,
			DeviceID: benchDevice(i), TS: 1700000000}); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	name := "audience/sync-bench/snapshot.parquet"
	if _, err := st.WriteFile(ctx, name, local, objstore.Overwrite); err != nil {
		tb.Fatal(err)
	}
	os.Remove(local)
	cur, _ := json.Marshal(audienceCurrentFile{Snapshot: name, Rows: int64(n), Members: int64(n)})
	if _, err := st.Write(ctx, audienceCurrent, cur, objstore.Overwrite); err != nil {
		tb.Fatal(err)
	}

	if err := os.MkdirAll(src, 0o755); err != nil {
		tb.Fatal(err)
	}
	var changes int64
	var sw *writers.MembershipWriter
	file := 0
	write := func(m writers.Membership) {
		if sw != nil && sw.Rows() >= 2_000_000 {
			if err := sw.Close(); err != nil {
				tb.Fatal(err)
			}
			sw = nil
		}
		if sw == nil {
			file++
			if sw, err = writers.CreateMemberships(filepath.Join(src, fmt.Sprintf("part-%03d.parquet", file)), 0); err != nil {
				tb.Fatal(err)
			}
		}
		if err := sw.Write(m); err != nil {
			tb.Fatal(err)
		}
	}
	for i := range n + n/20 {
		m := writers.Membership{UserID: benchUser(i), Audience: benchAudiences[i%4], Member: true, DeviceID: benchDevice(i)}
		switch {
		case i >= n: // joined
			changes++
		case i%20 == 7: // left
			m.Member = false
			changes++
		}
		write(m)
	}
	if err := sw.Close(); err != nil {
		tb.Fatal(err)
	}
	return changes
}

type benchChildResult struct {
	Changes, Snapshot int64
	Partitions        int
	// Disk: the spill files, and the changes and snapshot files written.
	SpillBytes, ChangesBytes, SnapshotBytes int64
}

func BenchmarkAudienceDiff(b *testing.B) {
	n := 200_000
	if v := os.Getenv(audienceRowsEnv); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatalf("%s: %v", audienceRowsEnv, err)
		}
	}
	dir := b.TempDir()
	state, src := filepath.Join(dir, "state"), filepath.Join(dir, "source")
	start := time.Now()
	want := genAudienceBench(b, n, state, src)
	b.Logf("generated %d memberships (%d changes) in %s", n, want, time.Since(start).Round(time.Millisecond))
	var peak int64
	b.ResetTimer()
	for range b.N {
		out := filepath.Join(dir, "result.json")
		args := []string{"-test.run=^TestAudienceDiffChild$", "-test.count=1"}
		if p := os.Getenv("CONVERTRO_AUDIENCE_CPUPROFILE"); p != "" {
			args = append(args, "-test.cpuprofile="+p) // the child's profile: the diff alone
		}
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), audienceChildEnv+"="+state+"|"+src+"|"+out)
		cmd.Stderr = os.Stderr
		t0 := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatalf("diff child: %v", err)
		}
		wall := time.Since(t0)
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		peak = max(peak, ru.Maxrss*1024) // kilobytes on Linux
		data, err := os.ReadFile(out)
		if err != nil {
			b.Fatal(err)
		}
		var res benchChildResult
		if err := json.Unmarshal(data, &res); err != nil {
			b.Fatal(err)
		}
		if res.Changes != want {
			b.Fatalf("diff found %d changes, want %d", res.Changes, want)
		}
		b.Logf("diff of %d memberships: %d changes, %d partitions, wall %s, peak RSS %.0f MiB, CPU user %s sys %s; "+
			"disk: spill %d MiB, changes %d MiB, snapshot %d MiB",
			n, res.Changes, res.Partitions, wall.Round(time.Millisecond), float64(ru.Maxrss)/1024,
			time.Duration(ru.Utime.Nano()).Round(time.Millisecond), time.Duration(ru.Stime.Nano()).Round(time.Millisecond),
			res.SpillBytes>>20, res.ChangesBytes>>20, res.SnapshotBytes>>20)
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(float64(n), "memberships")
}

// TestAudienceDiffChild is the benchmark's child: it runs one diff and
// writes what it found. Without the benchmark's environment it does nothing.
func TestAudienceDiffChild(t *testing.T) {
	spec := os.Getenv(audienceChildEnv)
	if spec == "" {
		t.Skip("run by BenchmarkAudienceDiff only")
	}
	parts := strings.SplitN(spec, "|", 3)
	if len(parts) != 3 {
		t.Fatalf("%s=%q: want state|source|out", audienceChildEnv, spec)
	}
	state, src, out := parts[0], parts[1], parts[2]
	ctx := context.Background()
	st, err := pipeline.OpenState(ctx, state)
	if err != nil {
		t.Fatal(err)
	}
	o := audienceOptions(src, state, "")
	j := &audienceJob{o: o.withDefaults(), env: testEnv(t).withDefaults(), st: st, work: t.TempDir()}
	cur, err := j.currentSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, changes, snapshot, err := j.diffFiles(ctx, cur)
	if err != nil {
		t.Fatal(err)
	}
	size := func(p string) int64 {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	data, _ := json.Marshal(benchChildResult{Changes: res.Changes, Snapshot: res.Snapshot, Partitions: j.partitions,
		SpillBytes: j.spilled, ChangesBytes: size(changes), SnapshotBytes: size(snapshot)})
	if err := os.WriteFile(out, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
