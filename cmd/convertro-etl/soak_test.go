//go:build unix

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/internal/segment"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/readers"
	"github.com/convertro-etl/convertro-etl/writers"
	"github.com/convertro-etl/convertro-etl/writers/generate"
)

// The soak's size. CI runs the defaults; `make soak` runs 300,000 rows and 10
// kills.
var (
	soakRows  = flag.Int("soak.rows", 20000, "rows of the soak test's export")
	soakKills = flag.Int("soak.kills", 3, "SIGKILLs the soak test deals the job before letting it finish")
	soakSeed  = flag.Int64("soak.seed", 1, "seed of the soak test's export, faults and kill moments")
	// The job adapts its rate to 429s by default, as in production; the
	// simulator's 2% random 429s are a steady background the throttle must
	// ride out without slowing down. -soak.max-rps adds a hard ceiling, so
	// that the summary shows the rate adapting to a Convertro that sheds load.
	soakAdaptive = flag.Bool("soak.adaptive", true, "let the job adapt its rate to the simulator's 429s (false: --fixed-rate)")
	soakMaxRPS   = flag.Int("soak.max-rps", 0, "hard requests-per-second ceiling of the simulator, answered 429 (0 = none)")
)

// soakRejected is how many device ids the simulator refuses for good.
const soakRejected = 3

// TestSoak runs the program against a misbehaving simulator, both as
// subprocesses: 5% 500s, 2% 429s with Retry-After, 1% answers slower than the
// client's timeout, 0.5% dropped connections, and a permanent 400 for a few
// device ids. It SIGKILLs the job at -soak.kills moments spread over the run,
// restarting it each time, then lets it finish, and checks from the
// simulator's record file and the job's state folder alone:
//
//   - every request of the dry run was accepted at least once, unless its
//     device id is refused;
//   - the refused ones are all in the dead-letter files the manifest lists,
//     with status 400 and a reason, and nothing else is;
//   - nothing was accepted that the dry run did not call for;
//   - requests accepted more often than the dry run asks: at most the final
//     report's repeat bound;
//   - the report's counts reconcile and cover every row of the export.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the program and the simulator as subprocesses")
	}
	began := time.Now()
	ctx, cancel := soakContext(t)
	defer cancel()
	seed := *soakSeed
	rng := rand.New(rand.NewPCG(uint64(seed), 0x50a4))
	dir := t.TempDir()
	export, state := filepath.Join(dir, "export"), filepath.Join(dir, "state")

	sum, err := generate.Generate(ctx, generate.Options{Out: export, Rows: *soakRows, Seed: seed, RowGroupRows: 2000})
	if err != nil {
		t.Fatal(err)
	}
	var exportRows int64
	for _, n := range sum.Rows {
		exportRows += n
	}
	rejected := soakPickDevices(t, ctx, export, rng, soakRejected)

	// The simulator, on a free port it names in its log.
	recordFile := filepath.Join(dir, "record.jsonl")
	simArgs := []string{"simulate", "--listen", "127.0.0.1:0", "--record", recordFile,
		"--fail-500", "0.05", "--fail-429", "0.02", "--retry-after", "1s",
		"--slow", "0.01", "--slow-delay", "3s", "--drop", "0.005",
		"--seed", fmt.Sprint(seed), "--client-name", "acme", "--site-id", "12"}
	for _, sid := range rejected {
		simArgs = append(simArgs, "--reject-sid", sid)
	}
	if *soakMaxRPS > 0 {
		simArgs = append(simArgs, "--max-rps", fmt.Sprint(*soakMaxRPS))
	}
	sim := startSoakSimulator(t, ctx, simArgs)
	defer sim.stop(t)

	args := []string{"run", "--source", export, "--state", state, "--endpoint", "http://" + sim.addr,
		"--account", "acme", "--client-name", "acme", "--site-id", "12",
		"--event", "Signed Up=signup", "--event", "Added to Cart=add_to_cart",
		"--event", "Product Viewed=product_view", "--event", "Checkout Started=checkout",
		"--concurrency", "32", "--timeout", "1s", "--max-attempts", "20"}
	if !*soakAdaptive {
		args = append(args, "--fixed-rate")
	}

	// What a complete run calls for, from the program's own dry run.
	dry := filepath.Join(dir, "dry.jsonl")
	if out, err := command(ctx, append(clone(args), "--dry-run", "--out", dry)...).CombinedOutput(); err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	want, wantSID := soakReadDryRun(t, dry)
	isRejected := map[string]bool{}
	for _, sid := range rejected {
		isRejected[sid] = true
	}
	var total, refused int
	for k, n := range want {
		total += n
		if isRejected[wantSID[k]] {
			refused += n
		}
	}
	if refused == 0 {
		t.Fatalf("none of the %d expected requests has a refused device id %q: the harness would test nothing", total, rejected)
	}

	// Kill moments: a random share of the expected requests accepted, and a
	// random 0.3–3 s after the start, whichever comes later, so that kills
	// are spread over the whole run and no run is killed before it started.
	shares := make([]float64, *soakKills)
	for i := range shares {
		shares[i] = 0.05 + 0.85*rng.Float64()
	}
	slices.Sort(shares)

	var segments []soakSegment
	var finalExit int
	for run := 0; ; run++ {
		killAt := -1.0
		var minWait time.Duration
		if run < len(shares) {
			killAt = shares[run] * float64(total)
			minWait = 300*time.Millisecond + time.Duration(rng.Int64N(int64(2700*time.Millisecond)))
		}
		seg, code := soakRunOnce(t, ctx, sim, args, filepath.Join(dir, fmt.Sprintf("run-%02d.log", run)), killAt, minWait)
		segments = append(segments, seg)
		if seg.killed {
			continue
		}
		finalExit = code
		break
	}
	kills := 0
	for _, s := range segments {
		if s.killed {
			kills++
		}
	}
	stats := sim.stats(t)
	sim.stop(t) // flushes the record

	if kills < *soakKills {
		t.Errorf("the job finished after %d kills, before the %d asked for", kills, *soakKills)
	}
	if finalExit != exitIncomplete {
		t.Errorf("final run exited %d, want %d (finished with dead letters):\n%s", finalExit, exitIncomplete, segments[len(segments)-1].tail())
	}

	// The simulator's record against the dry run.
	got := soakReadRecord(t, recordFile)
	var repeats, missing, unexpected, recorded int
	for k, n := range want {
		switch {
		case isRejected[wantSID[k]]:
			if got[k] > 0 {
				t.Errorf("request of a refused device id was accepted: %s", k)
			}
		case got[k] < n:
			missing++
			if missing <= 10 {
				t.Errorf("expected request accepted %d times, want at least %d: %s", got[k], n, k)
			}
		}
	}
	for k, n := range got {
		recorded += n
		w, ok := want[k]
		if !ok {
			unexpected++
			if unexpected <= 10 {
				t.Errorf("request accepted that the export does not call for: %s", k)
			}
			continue
		}
		repeats += max(0, n-w)
	}
	if missing > 0 || unexpected > 0 {
		t.Errorf("%d expected requests missing, %d unexpected requests accepted", missing, unexpected)
	}

	// The state folder: report, manifest, dead letters.
	var rep pipeline.Report
	soakReadJSON(t, filepath.Join(state, pipeline.ReportName(pipeline.Shard{Index: 0, Count: 1})), &rep)
	var m pipeline.Manifest
	soakReadJSON(t, filepath.Join(state, pipeline.ManifestName(pipeline.Shard{Index: 0, Count: 1})), &m)
	c := rep.Counts
	var skipped int64
	for _, n := range c.RowsSkipped {
		skipped += n
	}
	if c.RowsRead != c.RowsDelivered+skipped+c.RowsDeadLettered {
		t.Errorf("rows read %d != %d delivered + %d skipped + %d dead-lettered", c.RowsRead, c.RowsDelivered, skipped, c.RowsDeadLettered)
	}
	if c.RequestsSent != c.RequestsAcked+c.RequestsDeadLettered {
		t.Errorf("requests sent %d != %d acked + %d dead-lettered", c.RequestsSent, c.RequestsAcked, c.RequestsDeadLettered)
	}
	if c.RowsRead != exportRows || rep.RowsMarked != exportRows {
		t.Errorf("report: %d rows read, %d marked done; the export has %d", c.RowsRead, rep.RowsMarked, exportRows)
	}
	if c.RequestsSent != int64(total) || c.RequestsDeadLettered != int64(refused) {
		t.Errorf("report: %d requests sent, %d dead-lettered; the dry run calls for %d, %d of them refused",
			c.RequestsSent, c.RequestsDeadLettered, total, refused)
	}
	if rep.Status != pipeline.StatusFinished || rep.Runs != len(segments) {
		t.Errorf("report: status %q after %d runs, want %q after %d", rep.Status, rep.Runs, pipeline.StatusFinished, len(segments))
	}
	if int64(repeats) > rep.RepeatBound {
		t.Errorf("%d requests accepted more often than called for, above the report's bound %d", repeats, rep.RepeatBound)
	}

	var files [][]writers.DeadLetter
	for _, name := range m.DeadLetterFiles {
		rows, err := writers.ReadDeadLetters(filepath.Join(state, filepath.FromSlash(name)))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, rows)
	}
	dead := writers.MergeDeadLetters(files...)
	deadByKey := map[string]int{}
	for _, d := range dead {
		u, err := url.Parse(d.URL)
		if err != nil {
			t.Fatalf("dead letter URL %q: %v", d.URL, err)
		}
		k := canonical(u.Path, u.Query())
		deadByKey[k]++
		if !isRejected[u.Query().Get("sid")] {
			t.Errorf("dead letter of a device id the simulator accepts: %+v", d)
		}
		if d.Status != http.StatusBadRequest || d.Reason == "" || !strings.Contains(d.Response, simulator.ReasonRejectedSID) {
			t.Errorf("dead letter without status 400, a reason and the simulator's answer: %+v", d)
		}
	}
	for k, n := range want {
		if isRejected[wantSID[k]] && deadByKey[k] != n {
			t.Errorf("refused request dead-lettered %d times, want %d: %s", deadByKey[k], n, k)
		}
	}
	if len(dead) != refused {
		t.Errorf("%d dead letters in the manifest's %d files, want %d", len(dead), len(m.DeadLetterFiles), refused)
	}

	t.Log("\n" + soakSummary(soakFigures{
		rows: exportRows, kills: kills, segments: segments, expected: total, refused: refused,
		recorded: recorded, repeats: repeats, rep: &rep, deadLetters: len(dead), deadFiles: len(m.DeadLetterFiles),
		stats: stats, rejected: rejected, wall: time.Since(began),
	}))
}

// soakContext ends a minute before the test binary's deadline, so that a hung
// job is reported as such, with its log, rather than as a panic.
func soakContext(t *testing.T) (context.Context, context.CancelFunc) {
	if d, ok := t.Deadline(); ok {
		return context.WithDeadline(context.Background(), d.Add(-time.Minute))
	}
	return context.WithCancel(context.Background())
}

// soakPickDevices reads device ids back from the export's first row group
// and picks n distinct ones at random.
func soakPickDevices(t *testing.T, ctx context.Context, export string, rng *rand.Rand, n int) []string {
	t.Helper()
	src, err := readers.OpenSource(ctx, export, readers.SourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	objs, _, err := src.List(ctx)
	if err != nil || len(objs) == 0 {
		t.Fatalf("list %s: %d objects, %v", export, len(objs), err)
	}
	f, err := src.Open(ctx, objs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := readers.OpenParquet(ctx, f, objs[0], readers.Hint{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	err = p.ReadRowGroup(ctx, 0, 0, func(_ int64, batch []segment.Message) error {
		for i := range batch {
			if id := string(batch[i].DeviceID); id != "" && !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) < n {
		t.Fatalf("%s: %d device ids in the first row group, want %d", objs[0].URI, len(ids), n)
	}
	rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	return slices.Sorted(slices.Values(ids[:n]))
}

// soakReadDryRun counts the dry run's requests by canonical form and notes
// each one's device id.
func soakReadDryRun(t *testing.T, path string) (want map[string]int, sid map[string]string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want, sid = map[string]int{}, map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var line struct{ URL string }
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("dry run line %q: %v", sc.Bytes(), err)
		}
		u, err := url.Parse(line.URL)
		if err != nil {
			t.Fatalf("dry run URL %q: %v", line.URL, err)
		}
		k := canonical(u.Path, u.Query())
		want[k]++
		sid[k] = u.Query().Get("sid")
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return want, sid
}

// soakReadRecord counts the simulator's accepted requests by canonical form.
func soakReadRecord(t *testing.T, path string) map[string]int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var line struct {
			Path  string            `json:"path"`
			Query map[string]string `json:"query"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("record line %q: %v", sc.Bytes(), err)
		}
		q := url.Values{}
		for k, v := range line.Query {
			q.Set(k, v)
		}
		got[canonical(line.Path, q)]++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

func soakReadJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// soakSimulator is `convertro-etl simulate` running as a subprocess.
type soakSimulator struct {
	cmd    *exec.Cmd
	addr   string
	log    *soakLog
	exited chan error
	done   bool
}

var listeningAddr = regexp.MustCompile(`msg="simulator listening" addr=(\S+)`)

func startSoakSimulator(t *testing.T, ctx context.Context, args []string) *soakSimulator {
	t.Helper()
	s := &soakSimulator{cmd: command(ctx, args...), log: &soakLog{}, exited: make(chan error, 1)}
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			s.log.add(sc.Text())
			if m := listeningAddr.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
		s.exited <- s.cmd.Wait()
	}()
	select {
	case s.addr = <-addr:
	case err := <-s.exited:
		t.Fatalf("simulator exited before listening (%v):\n%s", err, s.log.tail())
	case <-time.After(time.Minute):
		s.cmd.Process.Kill()
		t.Fatalf("simulator did not name its address within a minute:\n%s", s.log.tail())
	}
	return s
}

func (s *soakSimulator) stats(t *testing.T) simulator.Stats {
	t.Helper()
	resp, err := http.Get("http://" + s.addr + "/_stats")
	if err != nil {
		t.Fatalf("simulator stats: %v", err)
	}
	defer resp.Body.Close()
	var st simulator.Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("simulator stats: %v", err)
	}
	return st
}

// stop interrupts the simulator, which then flushes its record, and waits.
func (s *soakSimulator) stop(t *testing.T) {
	t.Helper()
	if s.done {
		return
	}
	s.done = true
	s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-s.exited:
		if err != nil {
			t.Errorf("simulator: %v\n%s", err, s.log.tail())
		}
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		t.Errorf("simulator did not stop within 30s of SIGINT:\n%s", s.log.tail())
	}
}

// soakSegment is one run of the job.
type soakSegment struct {
	start, end                 time.Time
	acceptedStart, acceptedEnd int64
	killed                     bool
	logPath                    string
}

func (s soakSegment) tail() string {
	data, _ := os.ReadFile(s.logPath)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}

// soakRunOnce runs the job once, its output in logPath. With killAt ≥ 0 it
// SIGKILLs the job once the simulator has accepted killAt requests in all
// and minWait has passed since the start, unless the job ends first. It
// returns the job's exit code (-1 when killed).
func soakRunOnce(t *testing.T, ctx context.Context, sim *soakSimulator, args []string, logPath string, killAt float64, minWait time.Duration) (soakSegment, int) {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	seg := soakSegment{logPath: logPath, acceptedStart: sim.stats(t).Accepted}
	cmd := command(ctx, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	seg.start = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var werr error
	for waiting := true; waiting; {
		select {
		case werr = <-exited:
			waiting = false
		case <-tick.C:
			if killAt >= 0 && time.Since(seg.start) >= minWait && float64(sim.stats(t).Accepted) >= killAt {
				cmd.Process.Kill() // SIGKILL: nothing more is committed
				werr = <-exited
				seg.killed = true
				waiting = false
			}
		}
	}
	seg.end = time.Now()
	seg.acceptedEnd = sim.stats(t).Accepted
	if ctx.Err() != nil {
		t.Fatalf("the soak ran out of time in %s:\n%s", logPath, seg.tail())
	}
	if seg.killed {
		return seg, -1
	}
	var ee *exec.ExitError
	switch {
	case werr == nil:
		return seg, 0
	case errors.As(werr, &ee) && ee.Exited():
		if code := ee.ExitCode(); code == exitIncomplete || code == exitOK {
			return seg, code
		}
		t.Fatalf("run exited %d:\n%s", ee.ExitCode(), seg.tail())
	default:
		t.Fatalf("run: %v:\n%s", werr, seg.tail())
	}
	return seg, -1
}

// soakLog keeps the last lines of a subprocess's stderr for messages.
type soakLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *soakLog) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, s)
	if len(l.lines) > 200 {
		l.lines = slices.Clone(l.lines[len(l.lines)-100:])
	}
}

func (l *soakLog) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines[max(0, len(l.lines)-30):], "\n")
}

type soakFigures struct {
	rows              int64
	kills             int
	segments          []soakSegment
	expected, refused int
	recorded, repeats int
	rep               *pipeline.Report
	deadLetters       int
	deadFiles         int
	stats             simulator.Stats
	rejected          []string
	wall              time.Duration
}

// soakSummary is the soak on one screen.
func soakSummary(f soakFigures) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	c := f.rep.Counts
	st := f.stats
	w("soak: %d rows, seed %d, %d kills survived, %d runs, wall time %s", f.rows, *soakSeed, f.kills, f.rep.Runs, f.wall.Round(time.Second))
	w("  requests:   %d expected (%d of them refused: sids %s); %d accepted records, %d repeats (bound %d = window %d × %d resumes + %d possible duplicates)",
		f.expected, f.refused, strings.Join(f.rejected, ","), f.recorded, f.repeats, f.rep.RepeatBound, f.rep.Window, f.rep.Resumes, c.PossibleDuplicates)
	w("  simulator:  %d attempts: %d accepted, %d refused; faults %d×500, %d×429, %d slow, %d dropped",
		st.Requests, st.Accepted, st.Rejected, st.Faults.Status500, st.Faults.Status429, st.Faults.Slow, st.Faults.Drop)
	var skipped int64
	for _, n := range c.RowsSkipped {
		skipped += n
	}
	w("  report:     rows %d = %d delivered + %d skipped + %d dead-lettered; requests %d = %d acked + %d dead-lettered; %d retried",
		c.RowsRead, c.RowsDelivered, skipped, c.RowsDeadLettered, c.RequestsSent, c.RequestsAcked, c.RequestsDeadLettered, c.RequestsRetried)
	w("  dead letters: %d in %d files (status 400, %q)", f.deadLetters, f.deadFiles, simulator.ReasonRejectedSID)
	var runs []string
	for i, s := range f.segments {
		secs := s.end.Sub(s.start).Seconds()
		how := "finished"
		if s.killed {
			how = "killed"
		}
		runs = append(runs, fmt.Sprintf("#%d %.1fs %s %.0f/s", i+1, secs, how, float64(s.acceptedEnd-s.acceptedStart)/max(secs, 1e-9)))
	}
	w("  runs (accepted/s): %s", strings.Join(runs, ", "))
	w("  last run:   %.1fs, %d requests, %.0f requests/s", f.rep.WallSeconds, f.rep.RequestsThisRun, f.rep.RequestsPerSecond)
	if h := f.rep.RateHistory; !*soakAdaptive {
		w("  throttle:   fixed rate (--fixed-rate, from -soak.adaptive=false)")
	} else if len(h) == 0 {
		w("  throttle:   no rate changes in the last run (429 share never above the throttle's threshold)")
	} else {
		lo, hi := h[0].Rate, h[0].Rate
		for _, p := range h {
			lo, hi = min(lo, p.Rate), max(hi, p.Rate)
		}
		var pts []string
		for _, p := range h[:min(len(h), 8)] {
			pts = append(pts, fmt.Sprintf("%.0f (429 %.1f%%, %.0f ok/s)", p.Rate, 100*p.Share429, p.Accepted))
		}
		last := h[len(h)-1]
		w("  throttle:   %d rate changes in the last run, %.0f–%.0f/s (0 = unlimited), last %.0f/s; first: %s",
			len(h), lo, hi, last.Rate, strings.Join(pts, " → "))
	}
	return b.String()
}
