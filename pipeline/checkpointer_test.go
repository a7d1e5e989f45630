package pipeline

import (
	"cmp"
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/convertro-etl/convertro-etl/objstore"
)

// pacedSender answers each request after d, as a Convertro at a steady
// latency does, and those after the first fast ones after slow instead; in
// a synctest bubble the run's time is then exact.
type pacedSender struct {
	d, slow time.Duration
	fast    int64 // requests answered after d; 0: all
	n       atomic.Int64
}

func (s *pacedSender) Send(ctx context.Context, _ string) Outcome {
	d := s.d
	if n := s.n.Add(1); s.fast > 0 && n > s.fast {
		d = s.slow
	}
	select {
	case <-time.After(d):
		return Outcome{Status: 200, Attempts: 1}
	case <-ctx.Done():
		return Outcome{Err: ctx.Err()}
	}
}

// pacedWrites turns objstore's pacing of writes to one name on for the
// test: it is what a commit made too soon waits out (TestMain lifts it for
// the other tests). No test that calls it runs in parallel.
func pacedWrites(t *testing.T) {
	objstore.MinWriteInterval = time.Second
	t.Cleanup(func() { objstore.MinWriteInterval = 0 })
}

// runTimed runs objs live on a fresh local state with send's answers, and
// returns the report, how long the run took, and the writes to its
// manifest.
func runTimed(t *testing.T, objs []Object, window int, concurrency int, send Sender) (*Report, time.Duration, objstore.WriteStat) {
	t.Helper()
	st, cp, prev := openShard(t, t.TempDir())
	start := time.Now()
	rep, err := Run(context.Background(), Config{Job: testJob, Objects: objs, Decoders: 1, Concurrency: concurrency, Window: window},
		Deps{Decoder: &memDecoder{batch: 10}, NewTransform: oneRequestPerRow, Sender: send,
			DeadLetters: &memDeadLetters{}, Checkpoint: cp, Previous: prev, State: st})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	return rep, took, objstore.WriteStats(st.URI(ManifestName(Shard{0, 1})))
}

// TestRunEndsWithItsLastRow: a run commits its progress every second
// until what looks like its last second, which it leaves to the final
// commit; that commit then has no pacing to wait out, and the run ends
// when its last row is acknowledged. One request at a time:
//   - steady: 4,500 at 1 ms end at 4.5 s, not at 5 s after a commit at 4;
//   - slower at the end than its rate so far: 3,950 at 1 ms and 950 at
//     1.5 ms. At 4 s the 917 rows left look like 0.92 s and take 1.375 s:
//     the run ends at 5.375 s, not at 6 s after a commit forced at 5.
func TestRunEndsWithItsLastRow(t *testing.T) {
	pacedWrites(t)
	for _, c := range []struct {
		name string
		last int64 // rows of the last row group, after four of 1,000
		send *pacedSender
		took time.Duration
	}{
		{"steady", 500, &pacedSender{d: time.Millisecond}, 4500 * time.Millisecond},
		{"slower at the end", 900, &pacedSender{d: time.Millisecond, fast: 3950, slow: 1500 * time.Microsecond}, 5375 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				objs := []Object{{URI: "mem://o", Key: "o", RowGroups: []int64{1000, 1000, 1000, 1000, c.last}}}
				rep, took, w := runTimed(t, objs, 0, 1, c.send)
				if want := 4000 + c.last; rep.Counts.RowsDelivered != want {
					t.Fatalf("%d rows delivered, want %d", rep.Counts.RowsDelivered, want)
				}
				if took != c.took {
					t.Errorf("the run took %v; its requests, one at a time, take %v", took, c.took)
				}
				// Begin, the commits at 1, 2 and 3 s, and the final one.
				if w.Writes != 5 || w.MinGap < time.Second {
					t.Errorf("%d manifest writes, at least %v apart; want 5, a second apart", w.Writes, w.MinGap)
				}
			})
		})
	}
}

// TestRunEndingSoonStillGivesTheWindowBack: near its end a run defers its
// commits, but not while decoders wait for the window permits that only a
// commit gives back. 1,500 rows at 4,000 a second through a window of
// 1,000: the window is full at 0.25 s with half a second of rows left; the
// commit at 1 s lets the rest go (the run ends at 1.125 s), where deferring
// it would end the run after 2 s.
func TestRunEndingSoonStillGivesTheWindowBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		objs := []Object{{URI: "mem://o", Key: "o", RowGroups: []int64{1500}}}
		rep, took, _ := runTimed(t, objs, 1000, 4, &pacedSender{d: time.Millisecond})
		if rep.Counts.RowsDelivered != 1500 {
			t.Fatalf("%d rows delivered, want 1500", rep.Counts.RowsDelivered)
		}
		if took > 1500*time.Millisecond {
			t.Errorf("the run took %v, want about 1.125 s: the commit at 1 s gives the window back", took)
		}
	})
}

// TestRunEndingSoonCommitsForTheRowsToCome: a run that looks set to end
// within the second still commits when the rows it has yet to decode need
// more window permits than are free, since a commit must come first; made
// when the pacing allows, it keeps the decoders from waiting for it. 7,600
// rows at 4,000 a second through a window of 5,000: at 1 s, 3,600 rows
// are left (0.9 s) and 1,000 permits free. Committing then, the last row
// is acknowledged at 1.9 s and the final commit, a second after, ends the
// run at 2 s; deferring, the decoders wait from 1.25 s for the commit the
// full window forces, and the run ends a second after that.
func TestRunEndingSoonCommitsForTheRowsToCome(t *testing.T) {
	pacedWrites(t)
	synctest.Test(t, func(t *testing.T) {
		objs := []Object{{URI: "mem://o", Key: "o", RowGroups: []int64{7600}}}
		rep, took, w := runTimed(t, objs, 5000, 4, &pacedSender{d: time.Millisecond})
		if rep.Counts.RowsDelivered != 7600 {
			t.Fatalf("%d rows delivered, want 7600", rep.Counts.RowsDelivered)
		}
		if took != 2*time.Second || w.Writes != 3 {
			t.Errorf("the run took %v with %d manifest writes, want 2s with 3: Begin, the commit at 1 s, the final one", took, w.Writes)
		}
	})
}

// TestRunCommitsOnceASecond: the commit armed for a half-full window
// (soon) and the ticker's fall due at the same moment every second here,
// while the checkpointer takes the acknowledgements of that moment, so
// either may come first. Whichever does commits, and the other finds
// nothing due: were it to commit too, its write would wait out a second of
// pacing with the checkpointer, and so every sender, held. 60,000 rows at
// 6,400 a second through a window of 10,000 (half full 0.78 s after each
// commit): a commit each second from 1 s to 8 s, and the last row,
// acknowledged at 9.38 s, ends the run with the final commit. (With both
// committing, the run took 10.4 to 14.3 s in 20 of 20 tries.)
func TestRunCommitsOnceASecond(t *testing.T) {
	pacedWrites(t)
	synctest.Test(t, func(t *testing.T) {
		objs := []Object{{URI: "mem://o", Key: "o", RowGroups: []int64{60000}}}
		rep, took, w := runTimed(t, objs, 10000, 64, &pacedSender{d: 10 * time.Millisecond})
		if rep.Counts.RowsDelivered != 60000 {
			t.Fatalf("%d rows delivered, want 60000", rep.Counts.RowsDelivered)
		}
		if took != 9380*time.Millisecond || w.Writes != 10 {
			t.Errorf("the run took %v with %d manifest writes, want 9.38s with 10: Begin, a commit each second to 8 s, the final one", took, w.Writes)
		}
	})
}

func TestEndingSoon(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	cases := []struct {
		name        string
		whole       bool
		done, total int64 // rows this run, rows in the plan (none before it)
		now, last   float64
		waiting     int64
		held, rows  int64 // window permits taken, by rows not yet done (of a window of window)
		window      int
		replay      bool
		want        bool
	}{
		{name: "half a second of rows left", whole: true, done: 2000, total: 2500, now: 2, last: 1, want: true},
		{name: "a second and more left", whole: true, done: 2000, total: 4000, now: 2, last: 1, want: false},
		{name: "the plan still grows", whole: false, done: 2000, total: 2500, now: 2, last: 1, want: false},
		{name: "a decoder waits for the window", whole: true, done: 2000, total: 2500, now: 2, last: 1, waiting: 1, want: false},
		{name: "the last commit two intervals old", whole: true, done: 3000, total: 3500, now: 3, last: 1, want: true},
		{name: "the last commit three intervals old", whole: true, done: 4000, total: 4500, now: 4, last: 1, want: false},
		{name: "nothing left, the last commit three intervals old", whole: true, done: 4000, total: 4000, now: 4, last: 1, want: true},
		{name: "nothing done yet", whole: true, done: 0, total: 10, now: 0.5, last: 0, want: false},
		{name: "nothing left", whole: true, done: 10, total: 10, now: 0.5, last: 0, want: true},
		{name: "the rows left need more permits than are free", whole: true, done: 2000, total: 2500, now: 2, last: 1,
			window: 1000, held: 800, rows: 100, want: false},
		{name: "the rows left fit in the permits free", whole: true, done: 2000, total: 2500, now: 2, last: 1,
			window: 1000, held: 600, rows: 100, want: true},
		{name: "the rows left hold their permits already", whole: true, done: 2000, total: 2500, now: 2, last: 1,
			window: 1000, held: 1000, rows: 500, want: true},
		{name: "a replay", whole: true, done: 2000, total: 2500, now: 2, last: 1, replay: true, want: false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := &liveRun{cfg: Config{CommitInterval: time.Second, Window: cmp.Or(c.window, 1<<20)}, view: newPlanView(nil, nil, c.whole),
				prog: newProgress(nil, time.Now, time.Second, c.total, 0)}
			r.prog.began = t0
			r.prog.rows.Store(c.done)
			r.windowWaits.Store(c.waiting)
			r.windowHeld.Store(c.held)
			r.windowRows.Store(c.rows)
			if c.replay {
				r.replay = &replaying{}
			}
			k := &checkpointer{r: r, last: at(c.last)}
			if got := k.endingSoon(at(c.now)); got != c.want {
				t.Errorf("endingSoon = %v, want %v", got, c.want)
			}
		})
	}
}
