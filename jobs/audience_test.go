package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/objstore/objstoretest"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/writers"
)

type memberRow struct {
	UserID   string  `parquet:"user_id"`
	Audience string  `parquet:"audience"`
	Member   bool    `parquet:"member"`
	DeviceID *string `parquet:"device_id,optional"`
}

func ptr(s string) *string { return &s }

func writeAudienceParquet[T any](t *testing.T, path string, rows []T) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := parquet.WriteFile(path, rows); err != nil {
		t.Fatal(err)
	}
}

// membersSource writes a membership table (input kind c) of audience
// "High Value": users listed in members are in, the others listed in out
// are rows with member=false. Device ids are "d-" + user id.
func membersSource(t *testing.T, members, out []string) string {
	t.Helper()
	dir := t.TempDir()
	var rows []memberRow
	for _, u := range members {
		rows = append(rows, memberRow{u, "High Value", true, ptr("d-" + u)})
	}
	for _, u := range out {
		rows = append(rows, memberRow{u, "High Value", false, ptr("d-" + u)})
	}
	writeAudienceParquet(t, filepath.Join(dir, "memberships.parquet"), rows)
	return dir
}

func audienceOptions(source, state, endpoint string) Options {
	return Options{Kind: "audience", Sources: []string{source}, State: state, Endpoint: endpoint,
		Account: "acme", ClientName: "acme", SiteID: "12", Concurrency: 4}
}

func users(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s%02d", prefix, i))
	}
	return out
}

// userRequest is one recorded user request: its id, sid, ts and the
// user properties it sets ("key=value", unescaped).
type userRequest struct {
	id, sid, ts string
	props       []string
}

// userRequests parses recorded requests ("path?query"), each of which must
// be a user request.
func userRequests(t *testing.T, reqs []string) []userRequest {
	t.Helper()
	var out []userRequest
	for _, r := range reqs {
		path, query, _ := strings.Cut(r, "?")
		if path != "/api/user/acme/12/" {
			t.Fatalf("request to %s, want /api/user/acme/12/", path)
		}
		q, err := url.ParseQuery(query)
		if err != nil {
			t.Fatal(err)
		}
		u := userRequest{id: q.Get("id"), sid: q.Get("sid"), ts: q.Get("ts")}
		for k, v := range q {
			switch k {
			case "sid", "id", "ts":
			default:
				u.props = append(u.props, k+"="+v[0])
			}
		}
		slices.Sort(u.props)
		out = append(out, u)
	}
	return out
}

// sentTraits reads the recorded requests as "user sid trait=value" strings.
func sentTraits(t *testing.T, reqs []string) []string {
	t.Helper()
	var out []string
	for _, u := range userRequests(t, reqs) {
		if u.ts == "" {
			t.Fatalf("request of %s has no ts", u.id)
		}
		out = append(out, u.id+" "+u.sid+" "+strings.Join(u.props, "&"))
	}
	slices.Sort(out)
	return out
}

func want(members []string, value string) []string {
	var out []string
	for _, u := range members {
		out = append(out, u+" d-"+u+" high_value="+value)
	}
	return out
}

// snapshotMembers reads the current snapshot's members as "user audience",
// from a state in a folder or a bucket.
func snapshotMembers(t *testing.T, state string) []string {
	t.Helper()
	data, ok := readObject(t, state, audienceCurrent)
	if !ok {
		t.Fatalf("no %s in the state %s", audienceCurrent, state)
	}
	var cur audienceCurrentFile
	if err := json.Unmarshal(data, &cur); err != nil {
		t.Fatal(err)
	}
	data, ok = readObject(t, state, cur.Snapshot)
	if !ok {
		t.Fatalf("no snapshot %s in the state %s", cur.Snapshot, state)
	}
	rows, err := parquet.Read[writers.Membership](bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rows {
		if r.Member {
			out = append(out, r.UserID+" "+r.Audience)
		}
	}
	slices.Sort(out)
	return out
}

func keyed(us []string, audience string) []string {
	var out []string
	for _, u := range us {
		out = append(out, u+" "+audience)
	}
	slices.Sort(out)
	return out
}

func TestAudienceSyncsOnlyChanges(t *testing.T) {
	ctx := context.Background()
	state := t.TempDir()
	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})

	// First sync: every member, trait=true; non-members send nothing.
	first := users("u", 0, 10)
	o := audienceOptions(membersSource(t, first, []string{"u10"}), state, rec.srv.URL)
	rep, err := Run(ctx, o, testEnv(t))
	if err != nil {
		t.Fatalf("first sync: %v", err)
	}
	diffRequests(t, "first sync", sentTraits(t, rec.requests(t)), want(first, "true"))
	if rep.Counts.RowsDelivered != 10 {
		t.Errorf("first sync delivered %d rows, want 10", rep.Counts.RowsDelivered)
	}
	diffRequests(t, "snapshot after the first sync", snapshotMembers(t, state), keyed(first, "high_value"))

	// Second sync: u00, u01 left (rows with member=false), u02 left (no row
	// at all), u10 and u11 joined: exactly 5 requests.
	rec.reset()
	second := users("u", 3, 12)
	o.Sources = []string{membersSource(t, second, []string{"u00", "u01"})}
	if _, err := Run(ctx, o, testEnv(t)); err != nil {
		t.Fatalf("second sync: %v", err)
	}
	wantSecond := append(want([]string{"u00", "u01", "u02"}, "false"), want([]string{"u10", "u11"}, "true")...)
	slices.Sort(wantSecond)
	diffRequests(t, "second sync", sentTraits(t, rec.requests(t)), wantSecond)
	diffRequests(t, "snapshot after the second sync", snapshotMembers(t, state), keyed(second, "high_value"))

	// Third sync, nothing changed: nothing sent.
	rec.reset()
	if _, err := Run(ctx, o, testEnv(t)); err != nil {
		t.Fatalf("third sync: %v", err)
	}
	if got := rec.requests(t); len(got) != 0 {
		t.Errorf("a sync with nothing changed sent %d requests: %v", len(got), got)
	}
	if _, err := os.Stat(filepath.Join(state, filepath.FromSlash(audiencePending))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pending.json left after a finished sync: %v", err)
	}
}

func TestAudienceSyncKilledHalfwayResumes(t *testing.T) {
	state := t.TempDir()
	rec := &recorder{}
	sim := simulator.New(simulator.Options{ClientName: "acme", SiteID: "12", Record: rec})
	rec.sim = sim
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var seen atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if seen.Add(1) == 25 {
			cancel() // the operator's Ctrl-C, halfway through
		}
		sim.ServeHTTP(w, r)
	}))
	defer srv.Close()

	members := users("u", 0, 60)
	o := audienceOptions(membersSource(t, members, nil), state, srv.URL)
	o.Concurrency = 2
	_, err := Run(ctx, o, testEnv(t))
	if !errors.Is(err, pipeline.ErrStopped) {
		t.Fatalf("killed sync: err = %v, want ErrStopped", err)
	}
	firstRun := sentTraits(t, rec.requests(t))
	if len(firstRun) >= len(members) {
		t.Fatalf("the kill came too late: %d of %d sent", len(firstRun), len(members))
	}
	if _, err := os.Stat(filepath.Join(state, filepath.FromSlash(audiencePending))); err != nil {
		t.Fatalf("no pending sync after the kill: %v", err)
	}

	rep, err := Run(context.Background(), o, testEnv(t))
	if err != nil {
		t.Fatalf("rerun: %v", err)
	}
	all := sentTraits(t, rec.requests(t)) // both runs
	got := slices.Compact(slices.Clone(all))
	diffRequests(t, "changes sent at least once over both runs", got, want(members, "true"))
	if rep.Counts.RowsDelivered+int64(len(firstRun)) < int64(len(members)) {
		t.Errorf("rerun delivered %d rows after %d: fewer than %d", rep.Counts.RowsDelivered, len(firstRun), len(members))
	}
	t.Logf("first run sent %d, rerun sent %d (repeats: %d)", len(firstRun), len(all)-len(firstRun), len(all)-len(got))
	diffRequests(t, "snapshot after the rerun", snapshotMembers(t, state), keyed(members, "high_value"))
	if _, err := os.Stat(filepath.Join(state, filepath.FromSlash(audiencePending))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pending.json left after the rerun: %v", err)
	}
}

type identifyRow struct {
	UserID    string    `parquet:"user_id"`
	DeviceID  *string   `parquet:"context_device_id,optional"`
	Timestamp time.Time `parquet:"timestamp,timestamp(microsecond)"`
	HighValue *bool     `parquet:"high_value,optional"`
	VIP       *string   `parquet:"vip,optional"` // booleans turned to text by a warehouse
}

func bptr(b bool) *bool { return &b }

func TestAudienceInputIdentifies(t *testing.T) {
	src := t.TempDir()
	t0 := time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)
	writeAudienceParquet(t, filepath.Join(src, "identifies", "part-0.parquet"), []identifyRow{
		{UserID: "a", DeviceID: ptr("d-a"), Timestamp: t0, HighValue: bptr(true)},
		{UserID: "b", DeviceID: ptr("d-b"), Timestamp: t0, HighValue: bptr(true), VIP: ptr("TRUE")},
		// b left high_value later; the trait is absent from this identify for vip
		{UserID: "b", DeviceID: ptr("d-b"), Timestamp: t0.Add(time.Hour), HighValue: bptr(false)},
		{UserID: "c", DeviceID: ptr("d-c"), Timestamp: t0, VIP: ptr("false")},
		{UserID: "c", DeviceID: nil, Timestamp: t0.Add(-time.Hour), VIP: ptr("true")}, // older: loses
	})
	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	o := audienceOptions(src, t.TempDir(), rec.srv.URL)
	o.Audiences = []string{"high_value", "vip"}
	if _, err := Run(context.Background(), o, testEnv(t)); err != nil {
		t.Fatal(err)
	}
	diffRequests(t, "identifies input", sentTraits(t, rec.requests(t)), []string{
		"a d-a high_value=true",
		"b d-b vip=true",
	})
	// ts is the identify's time.
	for _, r := range rec.requests(t) {
		if !strings.Contains(r, fmt.Sprintf("ts=%d", t0.Unix())) {
			t.Errorf("request %s: want ts=%d", r, t0.Unix())
		}
	}

	o.Audiences = nil
	if _, err := Run(context.Background(), o, testEnv(t)); !errors.Is(err, ErrConfig) {
		t.Errorf("identifies without --audience: err = %v, want ErrConfig", err)
	}
}

type audienceEventRow struct {
	UserID      string    `parquet:"user_id"`
	AudienceKey string    `parquet:"audience_key"`
	DeviceID    *string   `parquet:"context_device_id,optional"`
	Timestamp   time.Time `parquet:"timestamp,timestamp(microsecond)"`
}

func TestAudienceInputEvents(t *testing.T) {
	src := t.TempDir()
	t0 := time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)
	writeAudienceParquet(t, filepath.Join(src, "audience_entered", "part-0.parquet"), []audienceEventRow{
		{"a", "high_value", ptr("d-a"), t0},
		{"b", "high_value", ptr("d-b"), t0},
		{"b", "Cart Abandoners", ptr("d-b"), t0},
	})
	writeAudienceParquet(t, filepath.Join(src, "audience_exited", "part-0.parquet"), []audienceEventRow{
		{"b", "high_value", ptr("d-b"), t0.Add(time.Hour)},  // b left after entering
		{"a", "high_value", ptr("d-a"), t0.Add(-time.Hour)}, // before a entered: a stays
	})
	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	o := audienceOptions(src, t.TempDir(), rec.srv.URL)
	if _, err := Run(context.Background(), o, testEnv(t)); err != nil {
		t.Fatal(err)
	}
	diffRequests(t, "audience events input", sentTraits(t, rec.requests(t)), []string{
		"a d-a high_value=true",
		"b d-b cart_abandoners=true",
	})

	// The next day's events alone: a left; silence about b is no news.
	rec.reset()
	next := t.TempDir()
	writeAudienceParquet(t, filepath.Join(next, "audience_exited", "part-0.parquet"), []audienceEventRow{
		{"a", "high_value", ptr("d-a"), t0.Add(24 * time.Hour)},
	})
	o.Sources = []string{next}
	if _, err := Run(context.Background(), o, testEnv(t)); err != nil {
		t.Fatal(err)
	}
	diffRequests(t, "next day's events", sentTraits(t, rec.requests(t)), []string{"a d-a high_value=false"})
	diffRequests(t, "snapshot after the next day", snapshotMembers(t, o.State), []string{"b cart_abandoners"})
}

type renamedRow struct {
	UID     string `parquet:"uid"`
	Segment string `parquet:"segment_name"`
	In      string `parquet:"in_segment"`
}

type deviceRow struct {
	UserID    string    `parquet:"user_id"`
	DeviceID  *string   `parquet:"context_device_id,optional"`
	Timestamp time.Time `parquet:"timestamp,timestamp(microsecond)"`
}

func TestAudienceRenamedColumnsAndDevices(t *testing.T) {
	src, devices := t.TempDir(), t.TempDir()
	writeRenamedAndDevices(t, src, devices)
	testAudienceRenamedColumnsAndDevices(t, src, devices, t.TempDir())
}

// TestAudienceDevicesRemote is TestAudienceRenamedColumnsAndDevices with the
// memberships, the --devices identifies and the state in a bucket of each
// object store.
func TestAudienceDevicesRemote(t *testing.T) {
	src, devices := t.TempDir(), t.TempDir()
	writeRenamedAndDevices(t, src, devices)
	for _, name := range slices.Sorted(maps.Keys(remoteBackends)) {
		t.Run(name, func(t *testing.T) {
			root := remoteBackends[name](t)
			objstoretest.PutTree(t, src, root+"/audiences")
			objstoretest.PutTree(t, devices, root+"/segment")
			testAudienceRenamedColumnsAndDevices(t, root+"/audiences", root+"/segment", root+"/state/audiences")
		})
	}
}

// writeRenamedAndDevices writes a membership table with renamed columns and
// no device ids to src, and an identifies table that has them to devices.
func writeRenamedAndDevices(t *testing.T, src, devices string) {
	writeAudienceParquet(t, filepath.Join(src, "m.parquet"), []renamedRow{
		{"a", "High Value", "true"}, {"b", "High Value", "true"}, {"c", "High Value", "true"},
	})
	t0 := time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)
	writeAudienceParquet(t, filepath.Join(devices, "identifies", "p.parquet"), []deviceRow{
		{"a", ptr("d-a-old"), t0},
		{"a", ptr("d-a"), t0.Add(time.Hour)},
		{"a", nil, t0.Add(2 * time.Hour)}, // a null device id never wins
		{"b", ptr("d-b"), t0},
		// c has no device anywhere
	})
}

func testAudienceRenamedColumnsAndDevices(t *testing.T, src, devices, state string) {
	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	o := audienceOptions(src, state, rec.srv.URL)
	o.Membership = MembershipColumns{UserID: "uid", Audience: "segment_name", Member: "in_segment"}
	o.Devices = devices
	rep, err := Run(context.Background(), o, testEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	diffRequests(t, "devices from --devices", sentTraits(t, rec.requests(t)), []string{
		"a d-a high_value=true",
		"b d-b high_value=true",
	})
	if n := rep.Counts.RowsSkipped["missing_device_id"]; n != 1 {
		t.Errorf("missing_device_id = %d, want 1 (report %+v)", n, rep.Counts)
	}
	// c is not recorded as told: the next sync tries again.
	diffRequests(t, "snapshot without c", snapshotMembers(t, state), []string{"a high_value", "b high_value"})
	if _, ok := readObject(t, state, audiencePending); ok {
		t.Errorf("%s left in the state after a finished sync", audiencePending)
	}
	rec.reset()
	rep, err = Run(context.Background(), o, testEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := rec.requests(t); len(got) != 0 {
		t.Errorf("second sync sent %v", got)
	}
	if n := rep.Counts.RowsSkipped["missing_device_id"]; n != 1 {
		t.Errorf("second sync: missing_device_id = %d, want 1", n)
	}
}

// TestAudienceDiffPartitions checks the diff against a plain in-memory
// answer on enough users to spread over several partitions.
func TestAudienceDiffPartitions(t *testing.T) {
	dir := t.TempDir()
	sp, err := newSpill(dir, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	wantChanges := map[string]bool{}
	for i := range 3000 {
		u := fmt.Sprintf("user-%d", i)
		was, is := i%3 != 0, i%5 != 0
		if was {
			sp.add(spillRec{Kind: recSnapshot, UserID: u, Audience: "x", Member: true, DeviceID: "d"})
		}
		sp.add(spillRec{Kind: recSource, UserID: u, Audience: "x", Member: is, DeviceID: "d"})
		if was != is {
			wantChanges[u] = is
		}
	}
	if err := sp.finish(); err != nil {
		t.Fatal(err)
	}
	cw, _ := writers.CreateMemberships(filepath.Join(dir, "c.parquet"), 0)
	sw, _ := writers.CreateMemberships(filepath.Join(dir, "s.parquet"), 0)
	res, err := sp.diff(diffOptions{inScope: func(string) bool { return true }, now: 1, absentLeaves: true}, cw, sw)
	if err != nil {
		t.Fatal(err)
	}
	cw.Close()
	sw.Close()
	got, err := parquet.ReadFile[writers.Membership](filepath.Join(dir, "c.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(wantChanges) || res.Changes != int64(len(wantChanges)) {
		t.Fatalf("%d changes (counted %d), want %d", len(got), res.Changes, len(wantChanges))
	}
	for _, c := range got {
		if w, ok := wantChanges[c.UserID]; !ok || w != c.Member {
			t.Errorf("change %+v not expected", c)
		}
	}
}

// reset forgets what was recorded so far (the simulator's buffered
// records included).
func (r *recorder) reset() {
	r.sim.Flush()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf.Reset()
}

func TestAudienceDeadLettersAreNotRecordedAsSent(t *testing.T) {
	state := t.TempDir()
	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12", RejectSIDs: []string{"d-u03"}})
	members := users("u", 0, 30)
	o := audienceOptions(membersSource(t, members, nil), state, rec.srv.URL)
	rep, err := Run(context.Background(), o, testEnv(t))
	if !errors.Is(err, pipeline.ErrIncomplete) {
		t.Fatalf("err = %v, want ErrIncomplete (counts %+v)", err, rep.Counts)
	}
	if rep.Counts.RowsDeadLettered != 1 || rep.Counts.RowsDelivered != 29 {
		t.Errorf("delivered %d, dead-lettered %d; want 29 and 1", rep.Counts.RowsDelivered, rep.Counts.RowsDeadLettered)
	}
	wantMembers := keyed(slices.DeleteFunc(slices.Clone(members), func(u string) bool { return u == "u03" }), "high_value")
	diffRequests(t, "snapshot without the refused entry", snapshotMembers(t, state), wantMembers)

	// The next sync tries the refused change again, and only it.
	rec.reset()
	rep, err = Run(context.Background(), o, testEnv(t))
	if !errors.Is(err, pipeline.ErrIncomplete) {
		t.Fatalf("second sync: err = %v, want ErrIncomplete", err)
	}
	if rep.Counts.RowsRead != 1 || rep.Counts.RowsDeadLettered != 1 {
		t.Errorf("second sync read %d rows, dead-lettered %d; want 1 and 1", rep.Counts.RowsRead, rep.Counts.RowsDeadLettered)
	}
}

// TestAudienceRemote runs two syncs with the source and the state in a
// bucket of each object store: the snapshot and changes files go through
// the store's streaming methods.
func TestAudienceRemote(t *testing.T) {
	for name, newRoot := range remoteBackends {
		t.Run(name, func(t *testing.T) { testAudienceRemote(t, newRoot(t)) })
	}
}

func testAudienceRemote(t *testing.T, root string) {
	objstoretest.PutTree(t, membersSource(t, users("u", 0, 8), nil), root+"/day1")
	objstoretest.PutTree(t, membersSource(t, users("u", 2, 9), nil), root+"/day2")

	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	env := testEnv(t)
	o := audienceOptions(root+"/day1", root+"/state", rec.srv.URL)
	if _, err := Run(context.Background(), o, env); err != nil {
		t.Fatalf("first sync: %v", err)
	}
	diffRequests(t, "first sync", sentTraits(t, rec.requests(t)), want(users("u", 0, 8), "true"))
	rec.reset()
	o.Sources = []string{root + "/day2"}
	if _, err := Run(context.Background(), o, env); err != nil {
		t.Fatalf("second sync: %v", err)
	}
	wantSecond := append(want([]string{"u00", "u01"}, "false"), want([]string{"u08"}, "true")...)
	slices.Sort(wantSecond)
	diffRequests(t, "second sync", sentTraits(t, rec.requests(t)), wantSecond)
	data, ok := readObject(t, root+"/state", audienceCurrent)
	if !ok {
		t.Fatalf("no current.json in the state %s", root)
	}
	var cur audienceCurrentFile
	if err := json.Unmarshal(data, &cur); err != nil {
		t.Fatal(err)
	}
	if cur.Members != 7 {
		t.Errorf("current snapshot has %d members, want 7", cur.Members)
	}
	if _, ok := readObject(t, root+"/state", audiencePending); ok {
		t.Error("pending.json left in the state")
	}
}

func TestAudienceDryRunChangesNoState(t *testing.T) {
	state := t.TempDir()
	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	o := audienceOptions(membersSource(t, users("u", 0, 5), nil), state, rec.srv.URL)
	if _, err := Run(context.Background(), o, testEnv(t)); err != nil {
		t.Fatal(err)
	}
	rec.reset()
	o.Sources = []string{membersSource(t, users("u", 1, 7), nil)}
	o.DryRun, o.Out = true, filepath.Join(t.TempDir(), "requests.jsonl")
	if _, err := Run(context.Background(), o, testEnv(t)); err != nil {
		t.Fatal(err)
	}
	wantDry := append(want([]string{"u00"}, "false"), want([]string{"u05", "u06"}, "true")...)
	slices.Sort(wantDry)
	diffRequests(t, "dry run", sentTraits(t, dryRunRequests(t, o.Out)), wantDry)
	if got := rec.requests(t); len(got) != 0 {
		t.Errorf("a dry run sent %d requests", len(got))
	}
	diffRequests(t, "snapshot after a dry run", snapshotMembers(t, state), keyed(users("u", 0, 5), "high_value"))
}

// TestAudienceScope: with --audience, only the named audiences are synced;
// the snapshot's other audiences are kept as they are.
func TestAudienceScope(t *testing.T) {
	state := t.TempDir()
	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	src := t.TempDir()
	writeAudienceParquet(t, filepath.Join(src, "m.parquet"), []memberRow{
		{"a", "High Value", true, ptr("d-a")}, {"b", "Churn Risk", true, ptr("d-b")},
	})
	o := audienceOptions(src, state, rec.srv.URL)
	if _, err := Run(context.Background(), o, testEnv(t)); err != nil {
		t.Fatal(err)
	}
	// The next source has only churn_risk rows, and c joined it; a sync of
	// churn_risk alone must not take a out of high_value.
	src2 := t.TempDir()
	writeAudienceParquet(t, filepath.Join(src2, "m.parquet"), []memberRow{
		{"b", "Churn Risk", true, ptr("d-b")}, {"c", "Churn Risk", true, ptr("d-c")},
	})
	rec.reset()
	o.Sources, o.Audiences = []string{src2}, []string{"churn_risk"}
	if _, err := Run(context.Background(), o, testEnv(t)); err != nil {
		t.Fatal(err)
	}
	diffRequests(t, "scoped sync", sentTraits(t, rec.requests(t)), []string{"c d-c churn_risk=true"})
	diffRequests(t, "snapshot after a scoped sync", snapshotMembers(t, state),
		[]string{"a high_value", "b churn_risk", "c churn_risk"})
}

type audienceEventWithNameRow struct {
	UserID      string    `parquet:"user_id"`
	Event       string    `parquet:"event"`
	AudienceKey string    `parquet:"audience_key"`
	DeviceID    *string   `parquet:"context_device_id,optional"`
	Timestamp   time.Time `parquet:"timestamp,timestamp(microsecond)"`
}

// TestAudienceInputEventsOneTable: entered and exited events in one table,
// told apart by their event column.
func TestAudienceInputEventsOneTable(t *testing.T) {
	src := t.TempDir()
	t0 := time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)
	writeAudienceParquet(t, filepath.Join(src, "engage", "part-0.parquet"), []audienceEventWithNameRow{
		{"a", "audience_entered", "vip", ptr("d-a"), t0},
		{"b", "Audience Entered", "vip", ptr("d-b"), t0},
		{"b", "Audience Exited", "vip", ptr("d-b"), t0.Add(time.Minute)},
		{"c", "Order Completed", "vip", ptr("d-c"), t0}, // not an audience event
	})
	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	o := audienceOptions(src, t.TempDir(), rec.srv.URL)
	if _, err := Run(context.Background(), o, testEnv(t)); err != nil {
		t.Fatal(err)
	}
	diffRequests(t, "events in one table", sentTraits(t, rec.requests(t)), []string{"a d-a vip=true"})
}

// TestAudienceDateRange: --from/--to pick the day partitions of the sources.
func TestAudienceDateRange(t *testing.T) {
	src := t.TempDir()
	t0 := time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)
	writeAudienceParquet(t, filepath.Join(src, "audience_entered", "day=2024-03-01", "p.parquet"), []audienceEventRow{
		{"a", "vip", ptr("d-a"), t0},
	})
	writeAudienceParquet(t, filepath.Join(src, "audience_entered", "day=2024-03-02", "p.parquet"), []audienceEventRow{
		{"b", "vip", ptr("d-b"), t0.Add(24 * time.Hour)},
	})
	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	o := audienceOptions(src, t.TempDir(), rec.srv.URL)
	o.From, o.To = "2024-03-02", "2024-03-02"
	if _, err := Run(context.Background(), o, testEnv(t)); err != nil {
		t.Fatal(err)
	}
	diffRequests(t, "one day's events", sentTraits(t, rec.requests(t)), []string{"b d-b vip=true"})

	o.Shard = "1/2"
	if _, err := Run(context.Background(), o, testEnv(t)); !errors.Is(err, ErrConfig) {
		t.Errorf("sharded audience sync: err = %v, want ErrConfig", err)
	}
}
