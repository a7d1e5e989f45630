package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/objstore"
)

// testClock is the injected clock of the lease tests.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock {
	return &testClock{t: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const testTTL = 30 * time.Second

var shard01 = Shard{Index: 0, Count: 1}

// begin opens shard 0/1 for owner and begins a manifest, failing the test on
// any error.
func begin(t *testing.T, st StateStore, owner Lease, clk *testClock) (*Checkpoint, *Manifest) {
	t.Helper()
	ctx := context.Background()
	c, prev, err := OpenCheckpoint(ctx, st, shard01, owner, clk.now, testTTL)
	if err != nil {
		t.Fatalf("OpenCheckpoint(%s): %v", owner.Owner, err)
	}
	m := prev
	if m == nil {
		m = &Manifest{Job: JobID{Kind: "backfill", Fingerprint: "f1"}, Units: []UnitProgress{{Rows: 10}}}
	}
	if err := c.Begin(ctx, m); err != nil {
		t.Fatalf("Begin(%s): %v", owner.Owner, err)
	}
	return c, m
}

func rawManifest(t *testing.T, st StateStore) []byte {
	t.Helper()
	data, _, err := st.Read(context.Background(), ManifestName(shard01))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// deadPID is the PID of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatalf("run true: %v", err)
	}
	return cmd.Process.Pid
}

func TestLeaseCheckpoint(t *testing.T) {
	for _, s := range stateStores {
		t.Run(s.name, func(t *testing.T) {
			t.Run("FirstRun", func(t *testing.T) { testCheckpointFirstRun(t, s.open(t)) })
			t.Run("LiveLeaseHeld", func(t *testing.T) { testLeaseHeld(t, s.open(t)) })
			t.Run("CommitRenews", func(t *testing.T) { testCommitRenews(t, s.open(t)) })
			t.Run("ExpiredTakeoverFencesOldOwner", func(t *testing.T) { testTakeoverFences(t, s.open(t)) })
			t.Run("SameHostDeadPID", func(t *testing.T) { testDeadPID(t, s.open(t)) })
			t.Run("SamePIDEarlierProcess", func(t *testing.T) { testSamePIDEarlierProcess(t, s.open(t)) })
			t.Run("FinishReleases", func(t *testing.T) { testFinishReleases(t, s.open(t)) })
			t.Run("RacingTakeovers", func(t *testing.T) { testRacingTakeovers(t, s.open(t)) })
			t.Run("LostAnswerAdopted", func(t *testing.T) { testLostAnswer(t, s.open(t)) })
		})
	}
}

func testCheckpointFirstRun(t *testing.T, st StateStore) {
	ctx := context.Background()
	clk := newTestClock()
	owner := NewLease()
	c, prev, err := OpenCheckpoint(ctx, st, shard01, owner, clk.now, testTTL)
	if err != nil || prev != nil {
		t.Fatalf("OpenCheckpoint on empty state = %v, %v; want no manifest", prev, err)
	}
	if err := c.Commit(ctx); err == nil {
		t.Error("Commit before Begin succeeded")
	}
	m := &Manifest{Job: JobID{Kind: "backfill", Fingerprint: "f1"}, Units: []UnitProgress{{Rows: 10}}}
	if err := c.Begin(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := c.Begin(ctx, m); err == nil {
		t.Error("second Begin succeeded")
	}
	m.Units[0].MarkDone(0)
	m.Counts.RowsRead = 1
	clk.advance(time.Second)
	if err := c.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := ReadManifest(ctx, st, shard01)
	if err != nil {
		t.Fatal(err)
	}
	want := clk.now().Add(testTTL)
	if got.Version != ManifestVersion || got.Status != "running" || got.Runs != 1 || got.Shard != shard01 ||
		got.Lease.Owner != owner.Owner || !got.Lease.Expires.Equal(want) || got.Units[0].Watermark != 1 || got.Counts.RowsRead != 1 {
		t.Errorf("committed manifest = %+v; want version %d, running, 1 run, owner %s until %v, watermark 1",
			got, ManifestVersion, owner.Owner, want)
	}
	if !got.Created.Equal(clk.now().Add(-time.Second)) || !got.Updated.Equal(clk.now()) {
		t.Errorf("created %v updated %v", got.Created, got.Updated)
	}
}

func testLeaseHeld(t *testing.T, st StateStore) {
	clk := newTestClock()
	first := NewLease()
	begin(t, st, first, clk)
	before := rawManifest(t, st)
	clk.advance(testTTL - time.Second)

	_, _, err := OpenCheckpoint(context.Background(), st, shard01, NewLease(), clk.now, testTTL)
	if !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("second OpenCheckpoint while the first is live: err = %v, want ErrLeaseHeld", err)
	}
	var le *LeaseError
	if !errors.As(err, &le) || le.Holder.Owner != first.Owner {
		t.Fatalf("error %v does not carry the holder %s", err, first.Owner)
	}
	msg := err.Error()
	for _, want := range []string{
		"host " + first.Host, "pid " + strconv.Itoa(first.PID), first.Owner,
		"until 2026-11-29T12:00:30Z", "run again later", st.URI(ManifestName(shard01)),
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not contain %q", msg, want)
		}
	}
	if !bytes.Equal(before, rawManifest(t, st)) {
		t.Error("a refused OpenCheckpoint changed the manifest")
	}
}

func testCommitRenews(t *testing.T, st StateStore) {
	ctx := context.Background()
	clk := newTestClock()
	a, _ := begin(t, st, NewLease(), clk)
	clk.advance(20 * time.Second)
	if err := a.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	clk.advance(20 * time.Second) // past the first expiry, within the renewed one
	if _, _, err := OpenCheckpoint(ctx, st, shard01, NewLease(), clk.now, testTTL); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("OpenCheckpoint after a renewal: err = %v, want ErrLeaseHeld", err)
	}
	if got := a.Owner().Expires; !got.Equal(clk.now().Add(10 * time.Second)) {
		t.Errorf("Owner().Expires = %v", got)
	}
}

func testTakeoverFences(t *testing.T, st StateStore) {
	ctx := context.Background()
	clk := newTestClock()
	first := NewLease()
	a, am := begin(t, st, first, clk)
	clk.advance(testTTL + time.Second) // a stalled past its lease

	second := NewLease()
	b, prev, err := OpenCheckpoint(ctx, st, shard01, second, clk.now, testTTL)
	if err != nil {
		t.Fatalf("OpenCheckpoint after expiry: %v", err)
	}
	if b.PreviousLease().Owner != first.Owner {
		t.Errorf("PreviousLease = %v, want %s", b.PreviousLease(), first.Owner)
	}
	if err := b.Begin(ctx, prev); err != nil {
		t.Fatal(err)
	}
	if prev.Runs != 2 {
		t.Errorf("Runs = %d after a takeover, want 2", prev.Runs)
	}
	newOwners := rawManifest(t, st)

	am.Units[0].MarkDone(5) // the fenced process keeps working...
	err = a.Commit(ctx)
	if !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Commit of the taken-over checkpoint: err = %v, want ErrLeaseLost", err)
	}
	if !strings.Contains(err.Error(), second.Owner) || !strings.Contains(err.Error(), "commit manifest "+st.URI(ManifestName(shard01))) {
		t.Errorf("message %q does not name the operation, the manifest and the new owner %s", err, second.Owner)
	}
	if !bytes.Equal(newOwners, rawManifest(t, st)) {
		t.Fatal("the fenced process changed the new owner's manifest")
	}
	if err := a.Commit(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("second Commit after the loss: err = %v, want ErrLeaseLost", err)
	}
	if err := a.Finish(ctx, "stopped"); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("Finish after the loss: err = %v, want ErrLeaseLost", err)
	}
	if !bytes.Equal(newOwners, rawManifest(t, st)) {
		t.Fatal("the fenced process changed the new owner's manifest")
	}
	m, err := ReadManifest(ctx, st, shard01)
	if err != nil {
		t.Fatal(err)
	}
	if m.Lease.Owner != second.Owner || m.Units[0].IsDone(5) {
		t.Errorf("manifest owner %s, row 5 done %v; want %s and not done", m.Lease.Owner, m.Units[0].IsDone(5), second.Owner)
	}
	if err := b.Commit(ctx); err != nil {
		t.Errorf("the new owner's Commit: %v", err)
	}
}

func testDeadPID(t *testing.T, st StateStore) {
	ctx := context.Background()
	me := NewLease()
	pid := deadPID(t)
	for _, tc := range []struct {
		name     string
		host     string
		wantHeld bool
	}{
		{name: "same host", host: me.Host, wantHeld: false},
		{name: "other host", host: me.Host + "-elsewhere", wantHeld: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st.Delete(ctx, ManifestName(shard01))
			clk := newTestClock()
			crashed := Lease{Owner: fmt.Sprintf("%s/%d/dead", tc.host, pid), Host: tc.host, PID: pid, PIDNS: me.PIDNS}
			begin(t, st, crashed, clk) // then SIGKILLed, lease still live
			clk.advance(time.Second)

			c, prev, err := OpenCheckpoint(ctx, st, shard01, me, clk.now, testTTL)
			if tc.wantHeld {
				if !errors.Is(err, ErrLeaseHeld) {
					t.Fatalf("lease of pid %d on another host: err = %v, want ErrLeaseHeld", pid, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("lease of dead pid %d on this host: %v, want an immediate takeover", pid, err)
			}
			if err := c.Begin(ctx, prev); err != nil {
				t.Fatal(err)
			}
			if m, _ := ReadManifest(ctx, st, shard01); m.Lease.Owner != me.Owner {
				t.Errorf("owner after takeover = %s, want %s", m.Lease.Owner, me.Owner)
			}
		})
	}
}

// testSamePIDEarlierProcess: a lease naming this host and this PID, but an
// owner this process never had, was left by an earlier process with the
// same PID (a restarted container's PID 1).
func testSamePIDEarlierProcess(t *testing.T, st StateStore) {
	ctx := context.Background()
	clk := newTestClock()
	me := NewLease()
	old := sampleManifest()
	old.Shard = shard01
	old.Lease = Lease{Owner: "earlier-incarnation", Host: me.Host, PID: os.Getpid(), PIDNS: me.PIDNS, Expires: clk.now().Add(time.Minute)}
	data, _ := json.Marshal(old)
	mustWrite(t, st, ManifestName(shard01), string(data), objstore.IfAbsent)
	if _, _, err := OpenCheckpoint(ctx, st, shard01, me, clk.now, testTTL); err != nil {
		t.Errorf("lease of an earlier process with this PID: %v, want a takeover", err)
	}
}

func testFinishReleases(t *testing.T, st StateStore) {
	ctx := context.Background()
	clk := newTestClock()
	a, _ := begin(t, st, NewLease(), clk)
	if err := a.Finish(ctx, "finished"); err != nil {
		t.Fatal(err)
	}
	if err := a.Commit(ctx); err == nil {
		t.Error("Commit after Finish succeeded")
	}
	c, m, err := OpenCheckpoint(ctx, st, shard01, NewLease(), clk.now, testTTL)
	if err != nil {
		t.Fatalf("OpenCheckpoint right after Finish: %v", err)
	}
	if m.Status != "finished" || !m.Lease.Expires.IsZero() {
		t.Errorf("finished manifest: status %s, lease expiry %v; want finished and released", m.Status, m.Lease.Expires)
	}
	if err := c.Begin(ctx, m); err != nil {
		t.Fatal(err)
	}
}

// testRacingTakeovers: 8 processes find the same expired lease and all try
// to take it; exactly one may win.
func testRacingTakeovers(t *testing.T, st StateStore) {
	ctx := context.Background()
	clk := newTestClock()
	begin(t, st, NewLease(), clk)
	clk.advance(time.Hour)

	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	owners := make([]Lease, n)
	for i := range n {
		owners[i] = NewLease()
		wg.Go(func() {
			c, m, err := OpenCheckpoint(ctx, st, shard01, owners[i], clk.now, testTTL)
			if err == nil {
				err = c.Begin(ctx, m)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("owners %d and %d both took the lease", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, ErrLeaseHeld):
			t.Errorf("owner %d: err = %v, want ErrLeaseHeld", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("nobody took the lease")
	}
	m, err := ReadManifest(ctx, st, shard01)
	if err != nil {
		t.Fatal(err)
	}
	if m.Lease.Owner != owners[winner].Owner || m.Runs != 2 {
		t.Errorf("manifest owner %s runs %d, want %s and 2", m.Lease.Owner, m.Runs, owners[winner].Owner)
	}
}

// lostAnswerStore injects what the emulator cannot: a write that landed but
// whose answer was lost, so the client's retry failed its precondition.
type lostAnswerStore struct {
	StateStore
	lose bool
}

func (s *lostAnswerStore) Write(ctx context.Context, name string, data []byte, pre objstore.Precondition) (string, error) {
	gen, err := s.StateStore.Write(ctx, name, data, pre)
	if err == nil && s.lose {
		s.lose = false
		return "", fmt.Errorf("write %s: %w", s.URI(name), objstore.ErrPrecondition)
	}
	return gen, err
}

func testLostAnswer(t *testing.T, st StateStore) {
	ctx := context.Background()
	clk := newTestClock()
	ls := &lostAnswerStore{StateStore: st}
	c, _, err := OpenCheckpoint(ctx, ls, shard01, NewLease(), clk.now, testTTL)
	if err != nil {
		t.Fatal(err)
	}
	ls.lose = true
	if err := c.Begin(ctx, &Manifest{Units: []UnitProgress{{Rows: 3}}}); err != nil {
		t.Fatalf("Begin whose write landed but answered 412: %v", err)
	}
	ls.lose = true
	clk.advance(time.Second)
	if err := c.Commit(ctx); err != nil {
		t.Fatalf("Commit whose write landed but answered 412: %v", err)
	}
	clk.advance(time.Second)
	if err := c.Commit(ctx); err != nil {
		t.Fatalf("Commit after an adopted generation: %v", err)
	}
}
