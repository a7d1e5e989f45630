//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/writers/generate"
)

// TestReplayCommandAfterKill runs the program: a run that dead-letters the
// requests of refused device ids (exit 2), a replay still refused for one of
// them (exit 2), a replay killed with SIGKILL while it sends, and one more
// that delivers the rest (exit 0). The manifest counts each replayed request
// once, however often it was sent.
func TestReplayCommandAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the program as a subprocess")
	}
	ctx := context.Background()
	dir := t.TempDir()
	export, state := filepath.Join(dir, "export"), filepath.Join(dir, "state")
	if _, err := generate.Generate(ctx, generate.Options{Out: export, Rows: 2000, Seed: 5, RowGroupRows: 500}); err != nil {
		t.Fatal(err)
	}
	settings := []string{"--account", "acme", "--client-name", "acme", "--site-id", "12", "--concurrency", "2"}
	args := append([]string{"--source", export, "--state", state,
		"--event", "Signed Up=signup", "--event", "Added to Cart=add_to_cart"}, settings...)

	// The device ids to refuse, and their requests, from the dry run.
	dry := filepath.Join(dir, "dry.jsonl")
	if out, err := command(ctx, append([]string{"run", "--dry-run", "--out", dry}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	var reject []string
	var dead []string
	f, err := os.Open(dry)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var line struct{ URL string }
		json.Unmarshal(sc.Bytes(), &line)
		u, _ := url.Parse(line.URL)
		sid := u.Query().Get("sid")
		if !slices.Contains(reject, sid) && len(reject) < 12 {
			reject = append(reject, sid)
		}
		if slices.Contains(reject, sid) {
			dead = append(dead, canonical(u.Path, u.Query()))
		}
	}
	f.Close()

	exit := func(err error) int {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	}
	manifest := func() *pipeline.Manifest {
		st, err := pipeline.OpenState(ctx, state)
		if err != nil {
			t.Fatal(err)
		}
		m, err := pipeline.ReadManifest(ctx, st, pipeline.Shard{Index: 0, Count: 1})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}

	refusing := httptest.NewServer(simulator.New(simulator.Options{ClientName: "acme", SiteID: "12", RejectSIDs: reject}))
	defer refusing.Close()
	if out, err := command(ctx, append([]string{"run", "--endpoint", refusing.URL}, args...)...).CombinedOutput(); exit(err) != 2 {
		t.Fatalf("run: exit %d, want 2\n%s", exit(err), out)
	}
	before := manifest().Counts
	if before.RequestsDeadLettered != int64(len(dead)) {
		t.Fatalf("run dead-lettered %d requests, want %d", before.RequestsDeadLettered, len(dead))
	}

	// Still refused for four device ids: exit 2, their requests left.
	one := httptest.NewServer(simulator.New(simulator.Options{ClientName: "acme", SiteID: "12", RejectSIDs: reject[:4]}))
	defer one.Close()
	if out, err := command(ctx, append([]string{"replay", "--state", state, "--endpoint", one.URL}, settings...)...).CombinedOutput(); exit(err) != 2 {
		t.Fatalf("partial replay: exit %d, want 2\n%s", exit(err), out)
	}
	mid := manifest().Counts
	if mid.RequestsDeadLettered == 0 || mid.RequestsDeadLettered >= before.RequestsDeadLettered ||
		mid.RequestsReplayed != before.RequestsDeadLettered-mid.RequestsDeadLettered {
		t.Fatalf("counts after the partial replay %+v (before %+v)", mid, before)
	}

	// A replay killed while it sends records nothing...
	record := &syncBuffer{}
	sim := simulator.New(simulator.Options{ClientName: "acme", SiteID: "12", Record: record, Delay: 30 * time.Millisecond})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	replay := append([]string{"replay", "--state", state, "--endpoint", srv.URL}, settings...)
	killWhen(t, ctx, "the replay", func() bool { return sim.Stats().Accepted >= 2 }, replay...)
	killedAt := sim.Stats().Accepted
	if got := manifest().Counts; got.RequestsDeadLettered != mid.RequestsDeadLettered || got.RequestsReplayed != mid.RequestsReplayed {
		t.Fatalf("a killed replay changed the counts: %+v, was %+v", got, mid)
	}

	// ...and the next one, taking the dead process's lease at once, delivers
	// everything left.
	if out, err := command(ctx, replay...).CombinedOutput(); err != nil {
		t.Fatalf("replay after the kill: %v\n%s", err, out)
	}
	m := manifest()
	c := m.Counts
	t.Logf("%d requests dead-lettered; %d left after the partial replay; the killed replay had %d accepted", len(dead), mid.RequestsDeadLettered, killedAt)
	if c.RequestsDeadLettered != 0 || c.RowsDeadLettered != 0 || c.RequestsReplayed != int64(len(dead)) ||
		c.RequestsAcked != c.RequestsSent || c.RequestsSent != before.RequestsSent || len(m.DeadLetterFiles) != 0 {
		t.Errorf("final counts %+v, files %v: want all %d dead letters replayed, each counted once", c, m.DeadLetterFiles, len(dead))
	}
	if m.Status != pipeline.StatusFinished {
		t.Errorf("status %q after the replays, want finished", m.Status)
	}
	sim.Flush()
	got := map[string]bool{}
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
		got[canonical(line.Path, q)] = true
	}
	// The partial replay delivered all but reject[:4]'s requests; the last
	// two replays sent those.
	for _, r := range dead {
		if slices.Contains(reject[:4], sidOfCanonical(r)) && !got[r] {
			t.Errorf("never delivered: %s", r)
		}
	}
	for k := range got {
		if !slices.Contains(reject[:4], sidOfCanonical(k)) || !slices.Contains(dead, k) {
			t.Errorf("replayed a request that was not left dead-lettered: %s", k)
		}
	}
}

func sidOfCanonical(r string) string {
	_, q, _ := bytes.Cut([]byte(r), []byte("?"))
	v, _ := url.ParseQuery(string(q))
	return v.Get("sid")
}
