package jobs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go/deprecated"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/pipeline"
)

// traitRow is a row of a computed traits table: numbers in value_number,
// text in value_string, both NULL for a removed trait.
type traitRow struct {
	UserID    string    `parquet:"user_id"`
	Trait     string    `parquet:"trait"`
	Number    *float64  `parquet:"value_number,optional"`
	Text      *string   `parquet:"value_string,optional"`
	DeviceID  *string   `parquet:"device_id,optional"`
	Timestamp time.Time `parquet:"timestamp,timestamp(microsecond)"`
}

func fptr(f float64) *float64 { return &f }

// traitT0 is the time of every trait row: ts is its whole seconds, floored.
var traitT0 = time.Date(2024, 3, 1, 10, 0, 0, 700_000_000, time.UTC)

const traitTS = "1709287200"

func num(user, trait string, v float64) traitRow {
	return traitRow{UserID: user, Trait: trait, Number: fptr(v), DeviceID: ptr("d-" + user), Timestamp: traitT0}
}

func text(user, trait, v string) traitRow {
	return traitRow{UserID: user, Trait: trait, Text: ptr(v), DeviceID: ptr("d-" + user), Timestamp: traitT0}
}

func removed(user, trait string) traitRow {
	return traitRow{UserID: user, Trait: trait, DeviceID: ptr("d-" + user), Timestamp: traitT0}
}

// traitsSource writes rows as one computed traits table in a new folder.
func traitsSource(t *testing.T, rows ...traitRow) string {
	t.Helper()
	dir := t.TempDir()
	writeAudienceParquet(t, filepath.Join(dir, "traits.parquet"), rows)
	return dir
}

// sentProps reads requests (canonical "path?query" strings) as
// "user sid ts trait=value" strings, sorted, with the value unescaped.
func sentProps(t *testing.T, reqs []string) []string {
	t.Helper()
	var out []string
	for _, u := range userRequests(t, reqs) {
		if len(u.props) != 1 {
			t.Fatalf("request of %s sets %d properties, want 1", u.id, len(u.props))
		}
		out = append(out, u.id+" "+u.sid+" "+u.ts+" "+u.props[0])
	}
	slices.Sort(out)
	return out
}

// prop is the sentProps form of one request of a trait row.
func prop(user, keyValue string) string { return user + " d-" + user + " " + traitTS + " " + keyValue }

// clockEnv is a test Env whose clock stands still at tm: the ts of a change
// whose source row has no time (a trait that left the table) is the sync's.
func clockEnv(t *testing.T, tm time.Time) Env {
	env := testEnv(t)
	env.Now = func() time.Time { return tm }
	return env
}

func props(p ...string) []string {
	slices.Sort(p)
	return p
}

// TestTraitSyncSendsOnlyChangedValues: two successive exports of a computed
// traits table; the second sync sends exactly the values that changed: a new
// value, a change of type alone, a trait removed by a NULL value, a trait
// removed by leaving the table, and a new user. Unchanged values, and a
// trait that is NULL and was never set, send nothing. The dry run before it
// lists exactly what it sends.
func TestTraitSyncSendsOnlyChangedValues(t *testing.T) {
	ctx := context.Background()
	state := t.TempDir()
	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})

	first := traitsSource(t,
		num("u1", "Lifetime Value", 1234.5), text("u1", "Favorite Category", "shoes"), num("u1", "tier", 1),
		num("u2", "Lifetime Value", 10), text("u2", "Favorite Category", "hats"),
		text("u3", "favoriteCategory", "bags"),
		removed("u4", "Lifetime Value"),
	)
	o := audienceOptions(first, state, rec.srv.URL)
	sync1, sync2, sync3, sync4 := traitT0.Add(24*time.Hour), traitT0.Add(48*time.Hour), traitT0.Add(72*time.Hour), traitT0.Add(96*time.Hour)
	rep, err := Run(ctx, o, clockEnv(t, sync1))
	if err != nil {
		t.Fatalf("first sync: %v", err)
	}
	diffRequests(t, "first sync", sentProps(t, rec.requests(t)), props(
		prop("u1", "lifetime_value=1234.5"), prop("u1", "favorite_category=shoes"), prop("u1", "tier=1"),
		prop("u2", "lifetime_value=10"), prop("u2", "favorite_category=hats"),
		prop("u3", "favorite_category=bags"),
	))
	if rep.Counts.RowsDelivered != 6 {
		t.Errorf("first sync delivered %d rows, want 6", rep.Counts.RowsDelivered)
	}

	second := traitsSource(t,
		num("u1", "Lifetime Value", 1300), text("u1", "Favorite Category", "shoes"), text("u1", "tier", "1"),
		removed("u2", "Lifetime Value"), // and no Favorite Category row for u2 any more
		text("u3", "Favorite Category", "bags"),
		removed("u4", "Lifetime Value"),
		text("u5", "Favorite Category", "socks & sandals"),
	)
	wantSecond := props(
		prop("u1", "lifetime_value=1300"), prop("u1", "tier=1"),
		prop("u2", "lifetime_value="),
		"u2 d-u2 "+fmt.Sprint(sync2.Unix())+" favorite_category=", // no row: the sync's time
		prop("u5", "favorite_category=socks & sandals"),
	)
	rec.reset()
	o.Sources = []string{second}
	dry := o
	dry.DryRun, dry.Out = true, filepath.Join(t.TempDir(), "requests.jsonl")
	if _, err := Run(ctx, dry, clockEnv(t, sync2)); err != nil {
		t.Fatalf("dry run: %v", err)
	}
	dryRun := dryRunRequests(t, dry.Out)
	diffRequests(t, "dry run of the second sync", sentProps(t, dryRun), wantSecond)
	if got := rec.requests(t); len(got) != 0 {
		t.Fatalf("the dry run sent %d requests", len(got))
	}

	if _, err := Run(ctx, o, clockEnv(t, sync2)); err != nil {
		t.Fatalf("second sync: %v", err)
	}
	live := rec.requests(t)
	diffRequests(t, "second sync", sentProps(t, live), wantSecond)
	diffRequests(t, "second sync against its dry run, URL for URL", live, dryRun)

	// The same export again: nothing changed, nothing sent; the removed
	// traits stay removed.
	rec.reset()
	if _, err := Run(ctx, o, clockEnv(t, sync3)); err != nil {
		t.Fatalf("third sync: %v", err)
	}
	if got := rec.requests(t); len(got) != 0 {
		t.Errorf("a sync with nothing changed sent %d requests: %v", len(got), got)
	}

	// A removed trait set again is sent again.
	rec.reset()
	o.Sources = []string{traitsSource(t, num("u2", "Lifetime Value", 10), text("u1", "Favorite Category", "shoes"))}
	o.Traits = []string{"Lifetime Value"} // u1's other traits are out of scope: kept as they are
	if _, err := Run(ctx, o, clockEnv(t, sync4)); err != nil {
		t.Fatalf("fourth sync: %v", err)
	}
	diffRequests(t, "fourth sync", sentProps(t, rec.requests(t)),
		props("u1 d-u1 "+fmt.Sprint(sync4.Unix())+" lifetime_value=", prop("u2", "lifetime_value=10")))
}

// typedTraits is an identifies export with one computed trait column per
// Parquet type.
type typedTraits struct {
	UserID    string            `parquet:"user_id"`
	DeviceID  string            `parquet:"context_device_id"`
	Timestamp time.Time         `parquet:"timestamp,timestamp(microsecond)"`
	I32       *int32            `parquet:"i32,optional"`
	I64       *int64            `parquet:"i64,optional"`
	F32       *float32          `parquet:"f32,optional"`
	F64       *float64          `parquet:"f64,optional"`
	D32       *int32            `parquet:"d32,optional,decimal(2:9)"`
	D64       *int64            `parquet:"d64,optional,decimal(3:18)"`
	DFixed    *[16]byte         `parquet:"dfixed,optional,decimal(2:38)"`
	Flag      *bool             `parquet:"flag,optional"`
	Name      *string           `parquet:"name,optional"`
	TMicros   *time.Time        `parquet:"t_micros,optional,timestamp(microsecond)"`
	TMillis   *int64            `parquet:"t_millis,optional,timestamp(millisecond)"`
	TNanos    *int64            `parquet:"t_nanos,optional,timestamp(nanosecond)"`
	T96       *deprecated.Int96 `parquet:"t_int96,optional"`
	Day       *int32            `parquet:"day,optional,date"`
}

func p[T any](v T) *T { return &v }

// TestTraitValueEncoding: what each Parquet type of a computed trait is sent
// as. Numbers in their shortest decimal form, never with an exponent;
// timestamps and dates as whole Unix seconds, floored; text as it is.
func TestTraitValueEncoding(t *testing.T) {
	t0 := time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)
	int96 := func(tm time.Time) *deprecated.Int96 {
		days := tm.Unix()/86400 + 2440588
		nanos := uint64(tm.UnixNano() - (tm.Unix()/86400)*86400*1e9)
		return &deprecated.Int96{uint32(nanos), uint32(nanos >> 32), uint32(days)}
	}
	rows := []typedTraits{{
		UserID: "u1", DeviceID: "d-u1", Timestamp: t0,
		I32: p(int32(-5)), I64: p(int64(9007199254740993)), F32: p(float32(49.99)), F64: p(1234567.5),
		D32: p(int32(2750)), D64: p(int64(-1500)), DFixed: &[16]byte{14: 0x27, 15: 0x10}, // 100.00
		Flag: p(true), Name: p("shoes & socks"),
		TMicros: p(time.Date(2024, 1, 2, 3, 4, 5, 999_999_000, time.UTC)),
		TMillis: p(int64(1704164645123)), TNanos: p(int64(-1)), T96: int96(time.Date(2024, 1, 2, 3, 4, 5, 500_000_000, time.UTC)),
		Day: p(int32(19724)), // 2024-01-02
	}, {
		UserID: "u2", DeviceID: "d-u2", Timestamp: t0,
		I32: p(int32(0)), I64: p(int64(-42)), F32: p(float32(1e6)), F64: p(1e-7),
		D32: p(int32(-1)), D64: p(int64(0)),
		Flag: p(false), Name: p(""),
		Day: p(int32(-1)), // 1969-12-31
	}}
	src := t.TempDir()
	writeAudienceParquet(t, filepath.Join(src, "identifies", "part-0.parquet"), rows)

	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	o := audienceOptions(src, t.TempDir(), rec.srv.URL)
	o.Traits = []string{"i32", "i64", "f32", "f64", "d32", "d64", "dfixed", "flag", "name", "t_micros", "t_millis", "t_nanos", "t_int96", "day"}
	if _, err := Run(context.Background(), o, testEnv(t)); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range sentProps(t, rec.requests(t)) {
		f := strings.Fields(r)
		k, v, _ := strings.Cut(strings.Join(f[3:], " "), "=")
		got[f[0]+" "+k] = v
	}
	cases := []struct{ name, user, trait, want string }{
		{"INT32", "u1", "i32", "-5"},
		{"INT32 zero", "u2", "i32", "0"},
		{"INT64 past 2^53, exact", "u1", "i64", "9007199254740993"},
		{"INT64 negative", "u2", "i64", "-42"},
		{"FLOAT, its own shortest form", "u1", "f32", "49.99"},
		{"FLOAT 1e6, no exponent", "u2", "f32", "1000000"},
		{"DOUBLE", "u1", "f64", "1234567.5"},
		{"DOUBLE 1e-7, no exponent", "u2", "f64", "0.0000001"},
		{"DECIMAL(9,2) over INT32, trailing zero dropped", "u1", "d32", "27.5"},
		{"DECIMAL(9,2) negative below one", "u2", "d32", "-0.01"},
		{"DECIMAL(18,3) over INT64", "u1", "d64", "-1.5"},
		{"DECIMAL(18,3) zero", "u2", "d64", "0"},
		{"DECIMAL(38,2) over FIXED_LEN_BYTE_ARRAY, 100.00", "u1", "dfixed", "100"},
		{"BOOLEAN true", "u1", "flag", "true"},
		{"BOOLEAN false", "u2", "flag", "false"},
		{"STRING, escaped on the wire", "u1", "name", "shoes & socks"},
		{"STRING empty", "u2", "name", ""},
		{"TIMESTAMP(MICROS), floored", "u1", "t_micros", "1704164645"},
		{"TIMESTAMP(MILLIS)", "u1", "t_millis", "1704164645"},
		{"TIMESTAMP(NANOS) before 1970, floored", "u1", "t_nanos", "-1"},
		{"INT96", "u1", "t_int96", "1704164645"},
		{"DATE, its midnight UTC", "u1", "day", "1704153600"},
		{"DATE before 1970", "u2", "day", "-86400"},
	}
	for _, tc := range cases {
		v, ok := got[tc.user+" "+tc.trait]
		if !ok || v != tc.want {
			t.Errorf("%s: %s=%q (sent: %v), want %q", tc.name, tc.trait, v, ok, tc.want)
		}
		delete(got, tc.user+" "+tc.trait)
	}
	// u2's NULL cells (dfixed, the timestamps) are identifies that did not
	// carry the trait: nothing sent.
	if len(got) != 0 {
		t.Errorf("requests no case expects: %v", got)
	}
}

// TestTraitInputIdentifies: an identifies export carries computed traits in
// columns named by --trait. A NULL cell is an identify that did not carry
// the trait, never a removal; the latest identify of a user wins; a value
// that did not change is not sent again.
func TestTraitInputIdentifies(t *testing.T) {
	type identify struct {
		UserID    string    `parquet:"user_id"`
		DeviceID  *string   `parquet:"context_device_id,optional"`
		Timestamp time.Time `parquet:"timestamp,timestamp(microsecond)"`
		LTV       *float64  `parquet:"lifetime_value,optional"`
		Category  *string   `parquet:"favorite_category,optional"`
	}
	t0 := time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)
	day1 := t.TempDir()
	writeAudienceParquet(t, filepath.Join(day1, "identifies", "part-0.parquet"), []identify{
		{"a", ptr("d-a"), t0, fptr(10), ptr("shoes")},
		{"a", ptr("d-a"), t0.Add(time.Hour), fptr(12), nil}, // later: ltv 12, category not carried
		{"b", ptr("d-b"), t0, nil, ptr("hats")},
	})
	state := t.TempDir()
	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	o := audienceOptions(day1, state, rec.srv.URL)
	o.Traits = []string{"lifetime_value", "favorite_category"}
	if _, err := Run(context.Background(), o, testEnv(t)); err != nil {
		t.Fatal(err)
	}
	ts := func(d time.Duration) string { return fmt.Sprint(t0.Add(d).Unix()) }
	diffRequests(t, "first day", sentProps(t, rec.requests(t)), props(
		"a d-a "+ts(time.Hour)+" lifetime_value=12", "a d-a "+ts(0)+" favorite_category=shoes",
		"b d-b "+ts(0)+" favorite_category=hats",
	))

	rec.reset()
	day2 := t.TempDir()
	writeAudienceParquet(t, filepath.Join(day2, "identifies", "part-0.parquet"), []identify{
		{"a", ptr("d-a"), t0.Add(24 * time.Hour), fptr(12), nil},        // unchanged; category not carried
		{"b", ptr("d-b"), t0.Add(24 * time.Hour), fptr(3), ptr("hats")}, // ltv new; category unchanged
	})
	o.Sources = []string{day2}
	if _, err := Run(context.Background(), o, testEnv(t)); err != nil {
		t.Fatal(err)
	}
	diffRequests(t, "second day", sentProps(t, rec.requests(t)), props("b d-b "+ts(24*time.Hour)+" lifetime_value=3"))
}

// TestTraitSyncKilledHalfwayResumes: a trait sync stopped halfway leaves its
// changes pending; the rerun delivers the rest (at most the in-flight window
// twice) and the snapshot then holds every value, so a third run sends
// nothing.
func TestTraitSyncKilledHalfwayResumes(t *testing.T) {
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

	var rows []traitRow
	var wantAll []string
	for i := range 60 {
		u := fmt.Sprintf("u%02d", i)
		rows = append(rows, num(u, "Lifetime Value", float64(i)+0.5))
		wantAll = append(wantAll, prop(u, fmt.Sprintf("lifetime_value=%d.5", i)))
	}
	slices.Sort(wantAll)
	o := audienceOptions(traitsSource(t, rows...), state, srv.URL)
	o.Concurrency = 2
	_, err := Run(ctx, o, testEnv(t))
	if !errors.Is(err, pipeline.ErrStopped) {
		t.Fatalf("killed sync: err = %v, want ErrStopped", err)
	}
	firstRun := sentProps(t, rec.requests(t))
	if len(firstRun) >= len(rows) {
		t.Fatalf("the kill came too late: %d of %d sent", len(firstRun), len(rows))
	}
	if _, err := os.Stat(filepath.Join(state, filepath.FromSlash(audiencePending))); err != nil {
		t.Fatalf("no pending sync after the kill: %v", err)
	}
	if _, err := Run(context.Background(), o, testEnv(t)); err != nil {
		t.Fatalf("rerun: %v", err)
	}
	all := sentProps(t, rec.requests(t))
	diffRequests(t, "values sent at least once over both runs", slices.Compact(slices.Clone(all)), wantAll)
	t.Logf("first run sent %d, rerun sent %d", len(firstRun), len(all)-len(firstRun))

	before := len(all)
	if _, err := Run(context.Background(), o, testEnv(t)); err != nil {
		t.Fatalf("third run: %v", err)
	}
	if n := len(rec.requests(t)) - before; n != 0 {
		t.Errorf("a third run of the same export sent %d requests", n)
	}
}

// TestTraitRefusedChangeIsSentAgain: a change Convertro refuses for good
// (dead-lettered) is not recorded as told: the next sync sends it again, a
// value as well as a removal; and a trait whose new value was refused is
// removed by a later sync even though Convertro was never told that value.
func TestTraitRefusedChangeIsSentAgain(t *testing.T) {
	state := t.TempDir()
	refuse := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12", RejectSIDs: []string{"d-u2"}})
	accept := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	step := 0
	sync := func(rec *recorder, rows ...traitRow) []string {
		t.Helper()
		step++
		rec.reset()
		o := audienceOptions(traitsSource(t, rows...), state, rec.srv.URL)
		_, err := Run(context.Background(), o, testEnv(t))
		if rec == refuse && !errors.Is(err, pipeline.ErrIncomplete) {
			t.Fatalf("sync %d: err = %v, want ErrIncomplete (a dead letter)", step, err)
		}
		if rec == accept && err != nil {
			t.Fatalf("sync %d: %v", step, err)
		}
		return sentProps(t, rec.requests(t))
	}
	sync(accept, num("u1", "ltv", 1), num("u2", "ltv", 2))
	sync(refuse, num("u1", "ltv", 1), num("u2", "ltv", 3))
	diffRequests(t, "the value refused, sent again", sync(accept, num("u1", "ltv", 1), num("u2", "ltv", 3)), props(prop("u2", "ltv=3")))

	sync(refuse, num("u1", "ltv", 1), num("u2", "ltv", 4))
	diffRequests(t, "removed after a refused value", sync(accept, num("u1", "ltv", 1), removed("u2", "ltv")), props(prop("u2", "ltv=")))

	sync(accept, num("u1", "ltv", 1), num("u2", "ltv", 5))
	sync(refuse, num("u1", "ltv", 1), removed("u2", "ltv"))
	diffRequests(t, "the removal refused, sent again", sync(accept, num("u1", "ltv", 1), removed("u2", "ltv")), props(prop("u2", "ltv=")))
}

// TestTraitTableLeavesAudiencesAlone: audiences and traits synced into one
// state from separate whole tables. A traits table says nothing about
// audiences, and a membership table nothing about traits: neither takes the
// other's properties away.
func TestTraitTableLeavesAudiencesAlone(t *testing.T) {
	state := t.TempDir()
	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	run := func(src string) []string {
		t.Helper()
		rec.reset()
		if _, err := Run(context.Background(), audienceOptions(src, state, rec.srv.URL), testEnv(t)); err != nil {
			t.Fatal(err)
		}
		return sentTraits(t, rec.requests(t))
	}
	diffRequests(t, "membership table", run(membersSource(t, []string{"u1"}, nil)), []string{"u1 d-u1 high_value=true"})
	diffRequests(t, "traits table", run(traitsSource(t, num("u1", "ltv", 5))), []string{"u1 d-u1 ltv=5"})
	diffRequests(t, "membership table again", run(membersSource(t, []string{"u1"}, nil)), nil)
	diffRequests(t, "membership table without u1", run(membersSource(t, nil, nil)), []string{"u1 d-u1 high_value=false"})
	diffRequests(t, "traits table without u1", run(traitsSource(t, num("u2", "ltv", 1))), []string{"u1 d-u1 ltv=", "u2 d-u2 ltv=1"})
}
