//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/objstore"
	"github.com/convertro-etl/convertro-etl/objstore/objstoretest"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/writers/generate"
)

// The lease tests start the real program as several processes on one job's
// state, a local folder and a bucket of each object store's emulator
// process, and check the lease from the outside: exit codes, stderr, the
// manifest in the state and what the simulator recorded.

// leaseBackend is where a test's jobs keep their state, and where they read
// the export from.
type leaseBackend struct {
	name   string
	source string // the export: a folder or a bucket's prefix
	root   string // state locations are root + "/" + a name per job
}

// open opens a job's state the way the program does, for reading and
// hand-editing the manifest.
func (b leaseBackend) open(t *testing.T, uri string) pipeline.StateStore {
	st, err := pipeline.OpenState(context.Background(), uri)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// names lists the objects of a job's state (relative names).
func (b leaseBackend) names(t *testing.T, uri string) []string {
	st, err := objstore.Open(context.Background(), uri)
	if err != nil {
		t.Fatal(err)
	}
	names, err := st.ListKeys(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// remoteBackends are the object stores the process tests run on, each an
// emulator process the subprocesses reach through the environment that
// objstoretest set, as users point the real clients at an emulator.
var remoteBackends = map[string]func(testing.TB) string{
	"gcs":   objstoretest.GCS,
	"azure": objstoretest.Azure,
	"s3":    objstoretest.S3,
}

// leaseBackends builds the local backend and each remote one over the same
// export.
func leaseBackends(t *testing.T, export string) []leaseBackend {
	t.Helper()
	bs := []leaseBackend{{name: "local", source: export, root: filepath.Join(t.TempDir(), "state")}}
	for _, name := range slices.Sorted(maps.Keys(remoteBackends)) {
		root := remoteBackends[name](t)
		objstoretest.PutTree(t, export, root+"/export")
		bs = append(bs, leaseBackend{name: name, source: root + "/export", root: root + "/state"})
	}
	return bs
}

// leaseJob is one job's state on a backend, with a simulator of its own.
type leaseJob struct {
	b      leaseBackend
	state  string
	st     pipeline.StateStore
	sim    *simulator.Simulator
	record *syncBuffer
	args   []string
}

// newLeaseJob prepares a job named name; delay slows every answer of the
// simulator so that runs last long enough to be raced, stopped and killed.
func newLeaseJob(t *testing.T, b leaseBackend, name string, delay time.Duration) *leaseJob {
	t.Helper()
	state := b.root + "/" + name
	if b.name == "local" {
		state = filepath.Join(b.root, name)
	}
	record := &syncBuffer{}
	sim := simulator.New(simulator.Options{ClientName: "acme", SiteID: "12", Record: record, Delay: delay})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return &leaseJob{b: b, state: state, st: b.open(t, state), sim: sim, record: record,
		args: append(leaseArgs(b.source, srv.URL), "--state", state)}
}

// leaseArgs is the run command line shared by the live runs and the dry run.
func leaseArgs(source, endpoint string) []string {
	return []string{"run", "--source", source, "--endpoint", endpoint,
		"--account", "acme", "--client-name", "acme", "--site-id", "12",
		"--event", "Signed Up=signup", "--event", "Added to Cart=add_to_cart",
		"--concurrency", "2", "--decoders", "1"}
}

// leaseProc is one run of the program.
type leaseProc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
	ended  time.Time // when Wait returned
}

// start starts the program on the job with the lease ttl given.
func (j *leaseJob) start(t *testing.T, ttl time.Duration) *leaseProc {
	t.Helper()
	return startProc(t, command(context.Background(), append(clone(j.args), "--lease-ttl", ttl.String())...))
}

// startProc starts cmd, killed at the end of the test if still running.
func startProc(t *testing.T, cmd *exec.Cmd) *leaseProc {
	t.Helper()
	p := &leaseProc{cmd: cmd, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		cmd.Wait()
		p.ended = time.Now()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			cmd.Process.Kill() // also ends a stopped process
			<-p.done
		}
	})
	return p
}

func (p *leaseProc) pid() int { return p.cmd.Process.Pid }

func (p *leaseProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to end and returns its exit code (-1 when a
// signal ended it).
func (p *leaseProc) wait(t *testing.T, what string, limit time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(limit):
		p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("%s (pid %d) still running after %s; killed. stderr:\n%s", what, p.pid(), limit, p.stderr.text())
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *leaseProc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to pid %d: %v", sig, p.pid(), err)
	}
}

// manifest reads the job's manifest: nil if there is none yet.
func (j *leaseJob) manifest(t *testing.T) (*pipeline.Manifest, []byte, string) {
	t.Helper()
	data, gen, err := j.st.Read(context.Background(), pipeline.ManifestName(pipeline.Shard{Index: 0, Count: 1}))
	if errors.Is(err, objstore.ErrNotFound) {
		return nil, nil, ""
	}
	if err != nil {
		t.Fatal(err)
	}
	var m pipeline.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("manifest: %v\n%s", err, data)
	}
	return &m, data, gen
}

// waitManifest polls the manifest until ok accepts it, failing after limit
// (or at once if one of the processes in watch ends first).
func (j *leaseJob) waitManifest(t *testing.T, what string, limit time.Duration, ok func(*pipeline.Manifest, string) bool, watch ...*leaseProc) *pipeline.Manifest {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if m, _, gen := j.manifest(t); m != nil && ok(m, gen) {
			return m
		}
		for _, p := range watch {
			if p.exited() {
				t.Fatalf("waiting for %s: pid %d ended (exit %d). stderr:\n%s", what, p.pid(), p.cmd.ProcessState.ExitCode(), p.stderr.text())
			}
		}
		if time.Now().After(deadline) {
			_, data, _ := j.manifest(t)
			t.Fatalf("no %s within %s; manifest:\n%s", what, limit, data)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// snapshot is every object of the job's state by name, as generation and
// content hash: equal snapshots mean nothing was written in between.
func (j *leaseJob) snapshot(t *testing.T) map[string]string {
	t.Helper()
	snap := map[string]string{}
	for _, name := range j.b.names(t, j.state) {
		data, gen, err := j.st.Read(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		snap[name] = fmt.Sprintf("version %s, sha256 %s", gen, hex.EncodeToString(sum[:8]))
	}
	return snap
}

// expectedRequests is what a complete run sends, from the program's own dry
// run (with the extra arguments given, such as a shard), keyed as canonical
// requests.
func expectedRequests(t *testing.T, export string, extra ...string) (want map[string]int, total int) {
	t.Helper()
	dry := filepath.Join(t.TempDir(), "dry.jsonl")
	args := append(leaseArgs(export, "http://127.0.0.1:1"), "--dry-run", "--out", dry)
	if out, err := command(context.Background(), append(args, extra...)...).CombinedOutput(); err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	f, err := os.Open(dry)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want = map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var line struct{ URL string }
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("dry-run line %q: %v", sc.Bytes(), err)
		}
		u, err := url.Parse(line.URL)
		if err != nil {
			t.Fatal(err)
		}
		want[canonical(u.Path, u.Query())]++
		total++
	}
	if total == 0 {
		t.Fatal("the dry run sends nothing")
	}
	return want, total
}

// recorded is what the job's simulator accepted, as canonical requests.
func (j *leaseJob) recorded(t *testing.T) map[string]int {
	t.Helper()
	j.sim.Flush()
	got := map[string]int{}
	for _, l := range j.record.lines() {
		if len(l) == 0 {
			continue
		}
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
	return got
}

// checkDelivered checks the simulator's record against the dry run: every
// expected request at least once (exactly once if exact), nothing else.
func (j *leaseJob) checkDelivered(t *testing.T, want map[string]int, exact bool) {
	t.Helper()
	got := j.recorded(t)
	bad := 0
	for k, n := range want {
		if got[k] < n || (exact && got[k] != n) {
			if bad++; bad <= 5 {
				t.Errorf("expected request recorded %d times, want %d: %s", got[k], n, k)
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			if bad++; bad <= 5 {
				t.Errorf("unexpected request recorded: %s", k)
			}
		}
	}
	if bad > 5 {
		t.Errorf("... %d requests wrong in all", bad)
	}
}

// leaseExport writes a small export in a few files (one per table: one day
// in the nested layout), so that a process's start, which reads every
// footer, stays short next to the lease ttl even on a busy machine.
func leaseExport(t *testing.T, rows int) string {
	t.Helper()
	export := filepath.Join(t.TempDir(), "export")
	o := generate.Options{Out: export, Rows: rows, Seed: 5, Layout: "nested", Days: 1, RowGroupRows: 100}
	if _, err := generate.Generate(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	return export
}

// lastLine is the last line of a process's stderr: its error.
func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}

func pidIn(s string, pid int) bool { return strings.Contains(s, fmt.Sprintf("pid %d", pid)) }

// TestLeaseOneRunnerAtOnce starts two processes on the same job at the same
// moment, several times: exactly one runs the job to the end, the other is
// refused with exit 3 and a message naming the holder, and sends nothing.
func TestLeaseOneRunnerAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the program as subprocesses")
	}
	export := leaseExport(t, 400)
	want, total := expectedRequests(t, export)
	for _, b := range leaseBackends(t, export) {
		t.Run(b.name, func(t *testing.T) {
			for round := range 3 {
				// Slow answers keep the winner busy for a few seconds, well
				// past the moment the loser looks at the state.
				j := newLeaseJob(t, b, fmt.Sprintf("race-%d", round), 20*time.Millisecond)
				p := [2]*leaseProc{j.start(t, 2*time.Second), j.start(t, 2*time.Second)}
				codes := [2]int{p[0].wait(t, "first process", time.Minute), p[1].wait(t, "second process", time.Minute)}
				win, lose := 0, 1
				if codes[0] != 0 {
					win, lose = 1, 0
				}
				if codes[win] != 0 || codes[lose] != exitLater {
					t.Fatalf("round %d: exit codes %v, want one 0 and one %d\nfirst stderr:\n%s\nsecond stderr:\n%s",
						round, codes, exitLater, p[0].stderr.text(), p[1].stderr.text())
				}
				msg := p[lose].stderr.text()
				if !strings.Contains(msg, "holds the lease") || !pidIn(msg, p[win].pid()) {
					t.Errorf("round %d: the refused process does not name the holder (pid %d):\n%s", round, p[win].pid(), msg)
				}
				t.Logf("round %d: refused: %s", round, lastLine(msg))
				m, _, _ := j.manifest(t)
				if m == nil || m.Status != pipeline.StatusFinished || m.Runs != 1 || m.Lease.PID != p[win].pid() {
					t.Errorf("round %d: manifest %+v, want finished by pid %d in 1 run", round, m, p[win].pid())
				}
				// Exactly once: the refused process sent nothing.
				j.checkDelivered(t, want, true)
			}
			t.Logf("%d requests per job", total)
		})
	}
}

// waitTakeover starts processes on the job until one takes the lease over
// (the manifest names its PID) and returns it, with how many were refused
// before. refused checks each refusal's stderr. A process that takes over is
// checked against notBefore: seeing its PID in the manifest earlier than
// that means it took a lease that was still live.
func (j *leaseJob) waitTakeover(t *testing.T, ttl time.Duration, notBefore time.Time, refused func(msg string)) (p *leaseProc, refusals int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		p := j.start(t, ttl)
		for !p.exited() {
			if m, _, _ := j.manifest(t); m != nil && m.Lease.PID == p.pid() {
				if seen := time.Now(); seen.Before(notBefore) {
					t.Errorf("pid %d took the lease over at %s, before the holder's lease expired at %s",
						p.pid(), seen.Format(time.StampMilli), notBefore.Format(time.StampMilli))
				}
				return p, refusals
			}
			if time.Now().After(deadline) {
				t.Fatalf("no process took the lease over within a minute; %d refused. stderr of the last:\n%s", refusals, p.stderr.text())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if code := p.cmd.ProcessState.ExitCode(); code != exitLater {
			t.Fatalf("pid %d exited %d before taking the lease over, want %d while the lease is held. stderr:\n%s", p.pid(), code, exitLater, p.stderr.text())
		}
		refused(p.stderr.text())
		refusals++
		time.Sleep(300 * time.Millisecond)
	}
}

// TestLeaseTakeoverAfterKill kills the running process mid-delivery twice.
// The first time a new process on the same host takes over at once: the dead
// holder's PID frees its lease long before it expires. The second time the
// lease is made to look like another host's (a hand edit of the manifest,
// conditional on its generation), whose life cannot be checked: new
// processes are refused with exit 3 until the lease expires, then one takes
// over and finishes the job with every expected request delivered.
func TestLeaseTakeoverAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the program as subprocesses")
	}
	export := leaseExport(t, 600)
	want, total := expectedRequests(t, export)
	for _, b := range leaseBackends(t, export) {
		t.Run(b.name, func(t *testing.T) {
			j := newLeaseJob(t, b, "kill", 20*time.Millisecond)

			// A long ttl: a takeover before it runs out can only come
			// from seeing that the holder's process is gone.
			first := j.start(t, 30*time.Second)
			j.waitManifest(t, "the first process's lease and a quarter of the requests", time.Minute, func(m *pipeline.Manifest, _ string) bool {
				return m.Lease.PID == first.pid() && j.sim.Stats().Accepted >= int64(total/4)
			}, first)
			first.signal(t, syscall.SIGKILL)
			first.wait(t, "killed first process", time.Minute)
			m1, _, _ := j.manifest(t)
			if m1.Lease.PID != first.pid() || !time.Now().Before(m1.Lease.Expires) {
				t.Fatalf("after the kill the manifest holds lease %+v, want the first process's (pid %d), still live", m1.Lease, first.pid())
			}

			second := j.start(t, 5*time.Second)
			j.waitManifest(t, "the second process to take the lease over", time.Minute, func(m *pipeline.Manifest, _ string) bool {
				return m.Lease.PID == second.pid()
			}, second)
			if seen := time.Now(); !seen.Before(m1.Lease.Expires) {
				t.Errorf("the second process took over at %s, only after the dead process's lease expired at %s: it should not wait for a dead PID",
					seen.Format(time.StampMilli), m1.Lease.Expires.Format(time.StampMilli))
			}
			j.waitManifest(t, "half of the requests", time.Minute, func(*pipeline.Manifest, string) bool {
				return j.sim.Stats().Accepted >= int64(total/2)
			}, second)
			second.signal(t, syscall.SIGKILL)
			second.wait(t, "killed second process", time.Minute)

			// The lease as another host would leave it: same owner and
			// expiry, another host name.
			m2, data, gen := j.manifest(t)
			if m2.Lease.PID != second.pid() || !time.Now().Before(m2.Lease.Expires) {
				t.Fatalf("after the kill the manifest holds lease %+v, want the second process's (pid %d), still live", m2.Lease, second.pid())
			}
			var raw map[string]any
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.UseNumber() // generations are int64s that a float64 would round
			if err := dec.Decode(&raw); err != nil {
				t.Fatal(err)
			}
			raw["lease"].(map[string]any)["host"] = "other-host"
			edited, err := json.Marshal(raw)
			if err != nil {
				t.Fatal(err)
			}
			name := pipeline.ManifestName(pipeline.Shard{Index: 0, Count: 1})
			if _, err := j.st.Write(context.Background(), name, edited, objstore.IfVersion(gen)); err != nil {
				t.Fatalf("hand-edit the manifest's lease: %v", err)
			}

			third, refusals := j.waitTakeover(t, 2*time.Second, m2.Lease.Expires, func(msg string) {
				if !strings.Contains(msg, "holds the lease") || !strings.Contains(msg, "host other-host") {
					t.Errorf("a refused process does not name the other host's lease:\n%s", msg)
				}
			})
			if refusals == 0 {
				t.Errorf("no process was refused while the other host's lease was live (until %s)", m2.Lease.Expires.Format(time.StampMilli))
			}
			if code := third.wait(t, "the process that took over", time.Minute); code != 0 {
				t.Fatalf("the process that took over exited %d, want 0. stderr:\n%s", code, third.stderr.text())
			}
			m3, _, _ := j.manifest(t)
			if m3.Status != pipeline.StatusFinished || m3.Runs != 3 || m3.Lease.PID != third.pid() {
				t.Errorf("final manifest: status %s, %d runs, lease %+v; want finished, 3 runs, pid %d", m3.Status, m3.Runs, m3.Lease, third.pid())
			}
			j.checkDelivered(t, want, false)
			t.Logf("%d requests; %d processes refused before the other host's lease expired", total, refusals)
		})
	}
}

// waitCommit waits for p's next manifest commit after the one read now, then
// a little more: a process stopped right after a commit is not in the middle
// of a write (the local store holds its lock through the rename and fsync).
func (j *leaseJob) waitCommit(t *testing.T, p *leaseProc, what string) {
	t.Helper()
	_, _, gen := j.manifest(t)
	j.waitManifest(t, what, time.Minute, func(m *pipeline.Manifest, g string) bool {
		return g != gen && m.Lease.PID == p.pid()
	}, p)
	time.Sleep(100 * time.Millisecond)
}

// TestLeaseFencing stops the running process (SIGSTOP) past its lease's
// expiry, lets a second process take the job over, and resumes the first:
// its next commit must fail with a lost lease, and it must exit 1 without
// writing anything to the state. The second process, stopped meanwhile so
// that the state stays still, then finishes the job.
func TestLeaseFencing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the program as subprocesses")
	}
	export := leaseExport(t, 800)
	want, total := expectedRequests(t, export)
	// Long enough that a process started right after the stop reads the
	// manifest while the stopped holder's lease is still live.
	const ttl = 3 * time.Second
	for _, b := range leaseBackends(t, export) {
		t.Run(b.name, func(t *testing.T) {
			j := newLeaseJob(t, b, "fence", 20*time.Millisecond)
			a := j.start(t, ttl)
			j.waitManifest(t, "the first process's lease and a fifth of the requests", time.Minute, func(m *pipeline.Manifest, _ string) bool {
				return m.Lease.PID == a.pid() && j.sim.Stats().Accepted >= int64(total/5)
			}, a)
			j.waitCommit(t, a, "a commit of the first process")
			a.signal(t, syscall.SIGSTOP)
			ma, _, _ := j.manifest(t)
			if ma.Lease.PID != a.pid() || ma.Status != pipeline.StatusRunning {
				t.Fatalf("the stopped process's manifest: status %s, lease %+v; want running, pid %d", ma.Status, ma.Lease, a.pid())
			}

			// Same host, and the stopped process is alive: its lease frees
			// only when it expires.
			bp, refusals := j.waitTakeover(t, ttl, ma.Lease.Expires, func(msg string) {
				if !strings.Contains(msg, "holds the lease") || !pidIn(msg, a.pid()) {
					t.Errorf("a refused process does not name the stopped holder (pid %d):\n%s", a.pid(), msg)
				}
			})
			if refusals == 0 {
				t.Errorf("no process was refused while the stopped process's lease was live (until %s)", ma.Lease.Expires.Format(time.StampMilli))
			}

			// Stop the new holder after a commit of its own, so that only
			// the resumed first process could change the state.
			j.waitCommit(t, bp, "a commit of the process that took over")
			bp.signal(t, syscall.SIGSTOP)
			before := j.snapshot(t)
			_, owned, ownedGen := j.manifest(t)

			a.signal(t, syscall.SIGCONT)
			if code := a.wait(t, "the resumed first process", time.Minute); code != exitFailed {
				t.Errorf("the resumed first process exited %d, want %d (lease lost). stderr:\n%s", code, exitFailed, a.stderr.text())
			}
			if msg := a.stderr.text(); !strings.Contains(msg, "lease lost") || !pidIn(msg, bp.pid()) {
				t.Errorf("the resumed first process does not say it lost the lease to pid %d:\n%s", bp.pid(), msg)
			}
			after := j.snapshot(t)
			if _, data, gen := j.manifest(t); gen != ownedGen || !bytes.Equal(data, owned) {
				t.Errorf("the manifest changed while only the fenced process ran: version %s -> %s\nbefore: %s\nafter:  %s", ownedGen, gen, owned, data)
			}
			for name, v := range after {
				if before[name] != v {
					t.Errorf("the fenced process wrote %s: %s, was %q", name, v, before[name])
				}
			}

			bp.signal(t, syscall.SIGCONT)
			if code := bp.wait(t, "the process that took over", time.Minute); code != 0 {
				t.Fatalf("the process that took over exited %d, want 0. stderr:\n%s", code, bp.stderr.text())
			}
			m, _, _ := j.manifest(t)
			if m.Status != pipeline.StatusFinished || m.Runs != 2 || m.Lease.PID != bp.pid() {
				t.Errorf("final manifest: status %s, %d runs, lease %+v; want finished by pid %d in 2 runs", m.Status, m.Runs, m.Lease, bp.pid())
			}
			j.checkDelivered(t, want, false)
			t.Logf("%d requests; %d processes refused while the stopped process's lease was live; the fenced process said: %s",
				total, refusals, lastLine(a.stderr.text()))
		})
	}
}
