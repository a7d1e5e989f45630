//go:build unix

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/writers"
)

// TestAudienceResumeAfterKill kills an audience sync with SIGKILL in the
// middle of delivery and runs the same command again: every member is told
// at least once, and the committed snapshot holds exactly the source. The
// killed sync's scratch folder (its spill) is left in TMPDIR, and the rerun
// removes it.
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

	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", tmp)

	killWhen(t, ctx, "the first sync", func() bool { return sim.Stats().Accepted >= 200 }, args...)
	atKill := sim.Stats().Accepted
	left := scratchFolders(t, tmp)
	if len(left) != 1 {
		t.Fatalf("after the kill, scratch folders %q in TMPDIR, want the killed sync's", left)
	}
	// As if the kill were yesterday: a folder younger than a minute may be
	// one its process is about to lock.
	yesterday := time.Now().Add(-24 * time.Hour)
	for _, p := range []string{filepath.Join(left[0], ".lock"), left[0]} {
		if err := os.Chtimes(p, yesterday, yesterday); err != nil {
			t.Fatal(err)
		}
	}
	out, err := command(ctx, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("rerun: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("removed the scratch folder of an earlier run")) || !bytes.Contains(out, []byte(left[0])) {
		t.Errorf("the rerun did not say it removed %s:\n%s", left[0], out)
	}
	if got := scratchFolders(t, tmp); len(got) != 0 {
		t.Errorf("scratch folders %q left after the rerun", got)
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

// scratchFolders lists the audience syncs' scratch folders in tmp.
func scratchFolders(t *testing.T, tmp string) []string {
	t.Helper()
	entries, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), "convertro-etl-scratch-audience-") {
			dirs = append(dirs, filepath.Join(tmp, e.Name()))
		}
	}
	return dirs
}
