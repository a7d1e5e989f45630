//go:build unix

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/writers"
)

// TestAudienceResumeAfterKill kills an audience sync with SIGKILL in the
// middle of delivery and runs the same command again: every member is told
// at least once, and the committed snapshot holds exactly the source.
func TestAudienceResumeAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the program as a subprocess")
	}
	ctx := context.Background()
	dir := t.TempDir()
	type row struct {
		UserID   string `parquet:"user_id"`
		Audience string `parquet:"audience"`
		Member   bool   `parquet:"member"`
		DeviceID string `parquet:"device_id"`
	}
	var rows []row
	var want []string
	for i := range 600 {
		u := fmt.Sprintf("user-%04d", i)
		rows = append(rows, row{u, "High Value", true, "dev-" + u})
		want = append(want, u)
	}
	src := filepath.Join(dir, "memberships.parquet")
	if err := parquet.WriteFile(src, rows); err != nil {
		t.Fatal(err)
	}
	record := &syncBuffer{}
	sim := simulator.New(simulator.Options{ClientName: "acme", SiteID: "12", Record: record, Delay: 4 * time.Millisecond})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	state := filepath.Join(dir, "state")
	args := []string{"run", "--job", "audience", "--audience", "High Value", "--source", src, "--state", state,
		"--endpoint", srv.URL, "--account", "acme", "--client-name", "acme", "--site-id", "12", "--concurrency", "4"}

	killWhen(t, ctx, "the first sync", func() bool { return sim.Stats().Accepted >= 200 }, args...)
	atKill := sim.Stats().Accepted
	if out, err := command(ctx, args...).CombinedOutput(); err != nil {
		t.Fatalf("rerun: %v\n%s", err, out)
	}
	sim.Flush()
	got := map[string]int{}
	for _, l := range record.lines() {
		var line struct {
			Query map[string]string `json:"query"`
		}
		if err := json.Unmarshal(l, &line); err != nil {
			t.Fatal(err)
		}
		if line.Query["high_value"] != "true" || line.Query["sid"] != "dev-"+line.Query["id"] {
			t.Errorf("unexpected request %s", l)
		}
		got[line.Query["id"]]++
	}
	repeats := 0
	for _, u := range want {
		if got[u] == 0 {
			t.Errorf("%s never told", u)
		}
		repeats += max(0, got[u]-1)
	}
	var rep struct {
		RepeatBound int64 `json:"repeat_bound"`
	}
	data, err := os.ReadFile(filepath.Join(state, "report-0-of-1.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if int64(repeats) > rep.RepeatBound {
		t.Errorf("%d requests repeated, more than the report's bound %d", repeats, rep.RepeatBound)
	}
	t.Logf("600 members; %d accepted before the kill; %d repeated after it (bound %d)", atKill, repeats, rep.RepeatBound)

	data, err = os.ReadFile(filepath.Join(state, "audience", "current.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cur struct{ Snapshot string }
	if err := json.Unmarshal(data, &cur); err != nil {
		t.Fatal(err)
	}
	snap, err := parquet.ReadFile[writers.Membership](filepath.Join(state, filepath.FromSlash(cur.Snapshot)))
	if err != nil {
		t.Fatal(err)
	}
	var members []string
	for _, m := range snap {
		if m.Member && m.Audience == "high_value" {
			members = append(members, m.UserID)
		}
	}
	slices.Sort(members)
	if !slices.Equal(members, want) {
		t.Errorf("snapshot holds %d members, want the source's %d", len(members), len(want))
	}
	if _, err := os.Stat(filepath.Join(state, "audience", "pending.json")); !os.IsNotExist(err) {
		t.Errorf("pending.json left after the rerun: %v", err)
	}
}
