package pipeline

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/convertro-etl/convertro-etl/objstore"
)

// withDeadLetters runs the test job in dir, its requests aimed at a host
// that is gone, with a sender that refuses the user update of every row%10
// == 0 (each such row also has an acked hit), and returns the dead letters
// it wrote and the manifest. (In process: the lease test runs it inside its
// bubble, as writes to one name are paced on the clock.)
func withDeadLetters(t *testing.T, dir string) ([]DeadLetter, *Manifest) {
	t.Helper()
	refusing := funcSender(func(_ context.Context, u string) Outcome {
		p, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, row := parseMsgID(t, p.Query().Get("eid")); strings.HasPrefix(p.Path, "/api/user/") && row%10 == 0 {
			return Outcome{Status: 400, Attempts: 1, Body: []byte("status 400"), Err: errors.New("refused"), Permanent: true}
		}
		return Outcome{Status: 200, Attempts: 1}
	})
	st, cp, prev := openShard(t, dir)
	dl := &memDeadLetters{}
	_, err := Run(context.Background(), Config{Job: testJob, Objects: testObjects()[:2], Decoders: 2, Concurrency: 4},
		Deps{Decoder: &memDecoder{batch: 5}, NewTransform: newTestTransform("http://gone.invalid"), Sender: refusing,
			DeadLetters: dl, Checkpoint: cp, Previous: prev, State: st})
	if !errors.Is(err, ErrIncomplete) {
		t.Fatalf("run: %v, want ErrIncomplete", err)
	}
	m := readManifest(t, dir, Shard{0, 1})
	if len(dl.got) < 4 || m.Counts.RequestsDeadLettered != int64(len(dl.got)) || len(m.DeadLetterFiles) == 0 {
		t.Fatalf("the run left %d dead letters, counted %d, files %v", len(dl.got), m.Counts.RequestsDeadLettered, m.DeadLetterFiles)
	}
	return dl.got, m
}

type funcSender func(ctx context.Context, url string) Outcome

func (f funcSender) Send(ctx context.Context, u string) Outcome { return f(ctx, u) }

// replayTest replays letters from the state in dir to stub, each URL
// re-aimed at it; letters whose row is in unsendable are refused by
// Retarget. record is deps.Record (nil: records the files given).
func replayTest(t *testing.T, ctx context.Context, dir string, stub string, sender Sender, letters []DeadLetter,
	unsendable func(DeadLetter) bool, record func(context.Context, *ReplayResult) ([]string, error)) (*ReplayResult, error) {
	t.Helper()
	_, cp, prev := openShard(t, dir)
	if record == nil {
		record = func(context.Context, *ReplayResult) ([]string, error) {
			return []string{"dead-letters/left.parquet"}, nil
		}
	}
	return Replay(ctx, Config{Concurrency: 3}, ReplayDeps{
		Sender: sender, Checkpoint: cp, Previous: prev,
		Retarget: func(u string) (string, error) {
			for _, d := range letters {
				if d.URL == u && unsendable != nil && unsendable(d) {
					return "", errors.New("not a request URL")
				}
			}
			return strings.Replace(u, "http://gone.invalid", stub, 1), nil
		},
		Letters: func(_ context.Context, m *Manifest) ([]DeadLetter, error) {
			if len(m.DeadLetterFiles) == 0 {
				t.Error("Letters got a manifest without its dead-letter files")
			}
			return slices.Clone(letters), nil
		},
		Record: record,
	})
}

// TestReplayMovesCounts: the letters Convertro now accepts move from
// dead-lettered to acked, and their rows to delivered; one refused again
// with another status moves to that group; one Retarget refuses stays as
// it was, saying why. The counts reconcile and the manifest holds them,
// finished, with Record's files and the lease given back.
func TestReplayMovesCounts(t *testing.T) {
	dir := t.TempDir()
	letters, before := withDeadLetters(t, dir)
	// A message id names its row.
	still := func(d DeadLetter) bool { return d.MessageID == letters[1].MessageID }
	unsendable := func(d DeadLetter) bool { return d.MessageID == letters[2].MessageID }
	stub := newConvertroStub(t, func(r *http.Request, _ int) int {
		if r.URL.Query().Get("eid") == letters[1].MessageID {
			return http.StatusUnprocessableEntity
		}
		return http.StatusOK
	})
	var recorded *ReplayResult
	res, err := replayTest(t, context.Background(), dir, stub.URL, httpSender{stub.Client()}, letters, unsendable,
		func(_ context.Context, r *ReplayResult) ([]string, error) {
			recorded = r
			return []string{"dead-letters/left.parquet"}, nil
		})
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	n := int64(len(letters))
	if recorded != res || res.Letters != len(letters) || int64(len(res.Delivered)) != n-2 || res.StillDead != 2 || res.Unsent != 0 ||
		res.RowsDelivered != n-2 || len(res.Remaining) != 2 || !res.Recorded {
		t.Fatalf("result %+v: want %d delivered, 2 still dead, recorded", res, n-2)
	}
	var wantSent []string
	for _, d := range letters {
		if !unsendable(d) && !still(d) {
			u, _ := url.Parse(d.URL)
			wantSent = append(wantSent, u.RequestURI())
		}
	}
	got := stub.received()
	slices.Sort(got)
	slices.Sort(wantSent)
	if !slices.Equal(got, wantSent) {
		t.Errorf("accepted %v, want %v", got, wantSent)
	}
	for _, d := range res.Remaining {
		switch {
		case still(d):
			if d.Status != 422 || d.Response != "status 422" || !strings.HasPrefix(d.URL, stub.URL) || d.Attempts != 1 {
				t.Errorf("the letter refused again does not hold its new refusal: %+v", d)
			}
		case unsendable(d):
			if d.Status != 400 || !strings.HasPrefix(d.Reason, "replay: ") || d.URL != letters[2].URL {
				t.Errorf("the letter Retarget refused: %+v", d)
			}
		default:
			t.Errorf("a delivered letter is left: %+v", d)
		}
	}

	m := readManifest(t, dir, Shard{0, 1})
	c, b := m.Counts, before.Counts
	if err := m.CheckCounts(); err != nil {
		t.Error(err)
	}
	if c.RequestsDeadLettered != 2 || c.RowsDeadLettered != 2 || c.RequestsReplayed != n-2 ||
		c.RequestsAcked != b.RequestsAcked+n-2 || c.RowsDelivered != b.RowsDelivered+n-2 ||
		c.RowsRead != b.RowsRead || c.RequestsSent != b.RequestsSent {
		t.Errorf("counts %+v, before %+v: want %d moved", c, b, n-2)
	}
	if g := c.DeadLetterGroups; len(g) != 2 || g["400 Bad Request"].Count != 1 || g["422 Unprocessable Entity"].Count != 1 ||
		g["422 Unprocessable Entity"].First != "status 422" {
		t.Errorf("dead-letter groups %+v: want one 400 (not sendable) and one 422", g)
	}
	if !slices.Equal(m.DeadLetterFiles, []string{"dead-letters/left.parquet"}) || m.Status != StatusFinished ||
		!m.Lease.Expires.IsZero() || m.Runs != before.Runs+1 || m.Reopened != before.Reopened+1 {
		t.Errorf("manifest files %v, status %s, lease %v, runs %d, reopened %d", m.DeadLetterFiles, m.Status, m.Lease, m.Runs, m.Reopened)
	}
}

// TestReplayRecordsNothingOnFailure: a replay whose record cannot be
// written, or whose moves would not reconcile, leaves the manifest's counts
// and files as they were, and gives the lease back.
func TestReplayRecordsNothingOnFailure(t *testing.T) {
	dir := t.TempDir()
	letters, before := withDeadLetters(t, dir)
	stub := newConvertroStub(t, nil)
	unchanged := func(what string) {
		t.Helper()
		m := readManifest(t, dir, Shard{0, 1})
		if !slices.Equal(m.DeadLetterFiles, before.DeadLetterFiles) || m.Counts.RequestsDeadLettered != before.Counts.RequestsDeadLettered ||
			m.Counts.RequestsReplayed != 0 || m.Status != StatusFinished || !m.Lease.Expires.IsZero() {
			t.Errorf("%s: manifest files %v, counts %+v, status %s, lease %v: want those before, finished, released",
				what, m.DeadLetterFiles, m.Counts, m.Status, m.Lease)
		}
	}

	errStore := errors.New("store down")
	_, err := replayTest(t, context.Background(), dir, stub.URL, httpSender{stub.Client()}, letters, nil,
		func(context.Context, *ReplayResult) ([]string, error) { return nil, errStore })
	if !errors.Is(err, errStore) {
		t.Errorf("replay with Record failing: %v", err)
	}
	unchanged("Record failed")

	// Each letter twice: more requests would move than the manifest counts.
	twice := append(slices.Clone(letters), letters...)
	called := false
	_, err = replayTest(t, context.Background(), dir, stub.URL, httpSender{stub.Client()}, twice, nil,
		func(context.Context, *ReplayResult) ([]string, error) { called = true; return nil, nil })
	if !errors.Is(err, ErrCountsMismatch) || called {
		t.Errorf("replay of letters the manifest does not count: %v (Record called: %v), want ErrCountsMismatch", err, called)
	}
	unchanged("counts mismatch")
}

// TestReplayLeaseLostStops: a replay whose lease another process took over
// stops at its next renewal, and writes nothing more: neither its record
// nor the manifest.
func TestReplayLeaseLostStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		letters, _ := withDeadLetters(t, dir)
		st, err := OpenState(context.Background(), dir)
		if err != nil {
			t.Fatal(err)
		}
		// Convertro accepts the first letters, then hangs: what the replay
		// delivered before losing its lease is not recorded either.
		hang := &blockingSender{release: make(chan struct{})}
		var accepted atomic.Int64
		send := funcSender(func(ctx context.Context, u string) Outcome {
			if p, _ := url.Parse(u); p.Query().Get("eid") == letters[0].MessageID || p.Query().Get("eid") == letters[1].MessageID {
				accepted.Add(1)
				return Outcome{Status: 200, Attempts: 1}
			}
			return hang.Send(ctx, u)
		})
		done := make(chan error)
		recorded := false
		go func() {
			_, err := replayTest(t, context.Background(), dir, "http://x", send, letters, nil,
				func(context.Context, *ReplayResult) ([]string, error) { recorded = true; return nil, nil })
			done <- err
		}()
		synctest.Wait()
		// Another process takes the shard over: the manifest changes
		// behind the replay's back.
		data, _, err := st.Read(context.Background(), ManifestName(Shard{0, 1}))
		if err != nil {
			t.Fatal(err)
		}
		taken := []byte(strings.Replace(string(data), `"status":"running"`, `"status":"running" `, 1))
		if _, err := st.Write(context.Background(), ManifestName(Shard{0, 1}), taken, objstore.Overwrite); err != nil {
			t.Fatal(err)
		}
		time.Sleep(DefaultLeaseTTL) // past the next renewal
		err = <-done
		if !errors.Is(err, ErrLeaseLost) || recorded {
			t.Fatalf("replay after losing its lease: %v (recorded: %v), want ErrLeaseLost, nothing recorded", err, recorded)
		}
		now, _, err := st.Read(context.Background(), ManifestName(Shard{0, 1}))
		if err != nil || !bytes.Equal(now, taken) {
			t.Errorf("the manifest changed after the lease was lost (%v)", err)
		}
		if accepted.Load() != 2 || hang.sent.Load() != 0 {
			t.Errorf("%d letters accepted, %d past the hang: want 2 and 0", accepted.Load(), hang.sent.Load())
		}
	})
}
