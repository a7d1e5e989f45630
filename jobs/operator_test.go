package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
	"github.com/convertro-etl/convertro-etl/objstore"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/writers"
	"github.com/convertro-etl/convertro-etl/writers/generate"
)

// gatewayPush is one push a test Pushgateway received.
type gatewayPush struct {
	method, path string
	user, pass   string
	families     map[string]*dto.MetricFamily
}

func (p gatewayPush) value(t *testing.T, name string) float64 {
	t.Helper()
	mf := p.families[name]
	if mf == nil || len(mf.GetMetric()) == 0 {
		t.Errorf("push %s lacks %s", p.path, name)
		return -1
	}
	return mf.GetMetric()[0].GetGauge().GetValue()
}

// pushgateway is an httptest server acting as a Prometheus Pushgateway: it
// decodes every push, answers the first one 500 (so that the pusher logs a
// failure) and the others 200, and closes reading when the first push that
// counts rows read arrives (a run that plans while it sends may push before
// it has read any).
type pushgateway struct {
	*httptest.Server
	mu      sync.Mutex
	pushes  []gatewayPush
	reading chan struct{}
	read    bool
}

func newPushgateway(t *testing.T) *pushgateway {
	g := &pushgateway{reading: make(chan struct{})}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := gatewayPush{method: r.Method, path: r.URL.Path, families: map[string]*dto.MetricFamily{}}
		p.user, p.pass, _ = r.BasicAuth()
		dec := expfmt.NewDecoder(r.Body, expfmt.ResponseFormat(r.Header))
		for {
			var mf dto.MetricFamily
			if err := dec.Decode(&mf); err != nil {
				if !errors.Is(err, io.EOF) {
					t.Errorf("decode push body: %v", err)
				}
				break
			}
			p.families[mf.GetName()] = &mf
		}
		g.mu.Lock()
		g.pushes = append(g.pushes, p)
		n := len(g.pushes)
		if rows := p.families["convertro_etl_rows_read_total"]; !g.read && rows != nil && len(rows.GetMetric()) > 0 &&
			rows.GetMetric()[0].GetGauge().GetValue() > 0 {
			g.read = true
			close(g.reading)
		}
		g.mu.Unlock()
		if n == 1 {
			http.Error(w, "gateway hiccup", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(g.Close)
	return g
}

func (g *pushgateway) received() []gatewayPush {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]gatewayPush(nil), g.pushes...)
}

// TestMetricsPushedDuringRun: with --metrics-push, a run pushes its figures
// while it goes, not only at its end, into a group of its own (job, job
// fingerprint, shard), with the URL's password as basic auth and never in
// the logs. Convertro holds every request after the 40th until the gateway
// has had a push that counts rows read, so the run cannot end before one
// arrived.
func TestMetricsPushedDuringRun(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	export := filepath.Join(dir, "export")
	if _, err := generate.Generate(ctx, generate.Options{Out: export, Rows: 600, Seed: 3, RowGroupRows: 100}); err != nil {
		t.Fatal(err)
	}
	gw := newPushgateway(t)
	sim := simulator.New(simulator.Options{ClientName: "acme", SiteID: "12"})
	var mu sync.Mutex
	n := 0
	done := make(chan struct{})
	defer close(done)
	gaveUp := make(chan struct{})
	var giveUp sync.Once
	convertro := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		hold := n > 40
		mu.Unlock()
		if hold {
			// Not forever: a run that pushes only at its end gets on
			// after a while (all held requests at once), and the checks
			// below fail.
			select {
			case <-gw.reading:
			case <-done:
			case <-r.Context().Done():
			case <-gaveUp:
			case <-time.After(5 * time.Second):
				giveUp.Do(func() { close(gaveUp) })
			}
		}
		sim.ServeHTTP(w, r)
	}))
	defer convertro.Close()

	var logs bytes.Buffer
	var logMu sync.Mutex
	env := testEnv(t)
	env.Log = slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))
	env.Stderr = lockedWriter{&logMu, &logs}
	env.MetricsInterval = 5 * time.Millisecond
	o := testOptions(export, filepath.Join(dir, "state"), convertro.URL)
	o.MetricsPush = strings.Replace(gw.URL, "http://", "http://ops:s3cret@", 1)
	rep, err := Run(ctx, o, env)
	if err != nil {
		t.Fatalf("run: %v", err)
	}

	pushes := gw.received()
	if len(pushes) < 2 {
		t.Fatalf("%d pushes, want one during the run and one at its end", len(pushes))
	}
	// The grouping labels follow /metrics/job/convertro-etl in any order.
	wantGroup := map[string]string{"fingerprint": rep.Fingerprint[:16], "shard": "0-of-1"}
	for _, p := range pushes {
		rest, ok := strings.CutPrefix(p.path, "/metrics/job/convertro-etl/")
		group := map[string]string{}
		parts := strings.Split(rest, "/")
		for i := 0; ok && i+1 < len(parts); i += 2 {
			group[parts[i]] = parts[i+1]
		}
		if p.method != http.MethodPut || !ok || len(parts)%2 != 0 || !maps.Equal(group, wantGroup) || p.user != "ops" || p.pass != "s3cret" {
			t.Errorf("push %s %s as %q:%q; want PUT /metrics/job/convertro-etl with %v as ops:s3cret", p.method, p.path, p.user, p.pass, wantGroup)
		}
	}
	// The first push with rows read came while Convertro held the run: a
	// run still going, with some rows done and not all.
	mid := pushes[0]
	for _, p := range pushes {
		if m := p.families["convertro_etl_rows_read_total"]; m != nil && len(m.GetMetric()) > 0 && m.GetMetric()[0].GetGauge().GetValue() > 0 {
			mid = p
			break
		}
	}
	if got := mid.value(t, "convertro_etl_run_running"); got != 1 {
		t.Errorf("first push: run_running = %v, want 1", got)
	}
	if got := mid.value(t, "convertro_etl_rows_read_total"); got <= 0 || got >= float64(rep.Counts.RowsRead) {
		t.Errorf("first push: rows_read = %v, want some of %d", got, rep.Counts.RowsRead)
	}
	last := pushes[len(pushes)-1]
	if got := last.value(t, "convertro_etl_run_finished"); got != 1 {
		t.Errorf("last push: run_finished = %v, want 1", got)
	}
	if got := last.value(t, "convertro_etl_rows_read_total"); got != float64(rep.Counts.RowsRead) {
		t.Errorf("last push: rows_read = %v, want %d", got, rep.Counts.RowsRead)
	}
	logMu.Lock()
	out := logs.String()
	logMu.Unlock()
	if !strings.Contains(out, "metrics push failed") || !strings.Contains(out, "//xxxxx@") {
		t.Errorf("the failed push is not logged with the redacted URL:\n%s", out)
	}
	if strings.Contains(out, "s3cret") {
		t.Errorf("the push password is in the logs:\n%s", out)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestMetricsPushBadURL: a Pushgateway URL that cannot be one is a
// configuration error before anything runs, and its message hides the
// password.
func TestMetricsPushBadURL(t *testing.T) {
	o := testOptions(t.TempDir(), filepath.Join(t.TempDir(), "state"), "http://127.0.0.1:1")
	o.MetricsPush = "ftp://ops:s3cret@gateway:9091"
	_, err := Run(context.Background(), o, testEnv(t))
	if !errors.Is(err, ErrConfig) || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("err = %v, want ErrConfig without the password", err)
	}
}

func writeManifest(t *testing.T, state string, m *pipeline.Manifest) {
	t.Helper()
	st, err := pipeline.OpenState(context.Background(), state)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write(context.Background(), pipeline.ManifestName(m.Shard), data, objstore.Overwrite); err != nil {
		t.Fatal(err)
	}
}

// TestStatusLease: status tells a run that holds its lease from one that
// died: a manifest left "running" with an expired lease shows as stopped
// uncleanly, with what to do, never as running.
func TestStatusLease(t *testing.T) {
	d := runWithDeadLetters(t, 1)
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	status := func(m *pipeline.Manifest) (string, map[string]any) {
		t.Helper()
		writeManifest(t, d.state, m)
		var text, js bytes.Buffer
		env := testEnv(t)
		env.Now = func() time.Time { return now }
		env.Stdout = &text
		if err := Status(context.Background(), StatusOptions{State: d.state}, env); err != nil {
			t.Fatal(err)
		}
		env.Stdout = &js
		if err := Status(context.Background(), StatusOptions{State: d.state, JSON: true}, env); err != nil {
			t.Fatal(err)
		}
		var out struct {
			Shards []map[string]any `json:"shards"`
		}
		if err := json.Unmarshal(js.Bytes(), &out); err != nil || len(out.Shards) != 1 {
			t.Fatalf("status --json: %v\n%s", err, js.String())
		}
		return text.String(), out.Shards[0]
	}
	m := *d.before
	m.Status = pipeline.StatusRunning
	m.Lease = pipeline.Lease{Owner: "far-away/7/abc", Host: "far-away", PID: 7, Expires: now.Add(time.Minute)}
	text, js := status(&m)
	if !strings.Contains(text, "shard 0/1: running (lease held by far-away pid 7 until 2026-03-04T05:07:07Z)") ||
		js["status"] != "running" || js["lease_live"] != true {
		t.Errorf("live lease: status\n%s\njson %v", text, js)
	}

	m.Lease.Expires = now.Add(-time.Minute)
	text, js = status(&m)
	if !strings.Contains(text, "shard 0/1: stopped uncleanly (lease expired at 2026-03-04T05:05:07Z): run the same command to resume") ||
		strings.Contains(text, " running ") || js["status"] != StatusStoppedUncleanly || js["manifest_status"] != "running" || js["lease_live"] != false {
		t.Errorf("expired lease: status\n%s\njson %v", text, js)
	}
}

// TestDeadLettersListed: the dead letters of a job are readable without
// Parquet tools: status and the summary group them by refusal, and
// ListDeadLetters lists each (without URLs unless asked). A part that no
// manifest lists is named as orphaned, and replay deletes it.
func TestDeadLettersListed(t *testing.T) {
	ctx := context.Background()
	d := runWithDeadLetters(t, 2)
	n := len(d.dead)
	list := func(o DeadLetterListOptions) (string, string) {
		t.Helper()
		var out, errs bytes.Buffer
		env := testEnv(t)
		env.Stdout, env.Stderr = &out, &errs
		o.State = d.state
		if err := ListDeadLetters(ctx, o, env); err != nil {
			t.Fatal(err)
		}
		return out.String(), errs.String()
	}

	text, _ := list(DeadLetterListOptions{})
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) != n+1 || !strings.HasPrefix(lines[0], "SHARD\tOBJECT\tROW GROUP\tROW\tSTATUS\tREASON\tRESPONSE") {
		t.Fatalf("%d lines for %d dead letters:\n%s", len(lines), n, text)
	}
	for _, l := range lines[1:] {
		f := strings.Split(l, "\t")
		if len(f) != 7 || f[0] != "0/1" || !strings.HasSuffix(f[1], ".parquet") || f[4] != "400" || !strings.Contains(f[5], "<url>") {
			t.Errorf("line %q: want shard, object, row group, row, 400, a reason with <url>, the answer", l)
		}
	}
	if strings.Contains(text, "sid=") || strings.Contains(text, d.o.Endpoint) {
		t.Errorf("the listing shows URLs without --urls:\n%s", text)
	}
	withURLs, _ := list(DeadLetterListOptions{URLs: true})
	if strings.Count(withURLs, "sid=") < n {
		t.Errorf("--urls lists fewer than %d URLs:\n%s", n, withURLs)
	}
	js, _ := list(DeadLetterListOptions{JSON: true})
	var got []DeadLetterLine
	for _, l := range strings.Split(strings.TrimSpace(js), "\n") {
		var dl DeadLetterLine
		if err := json.Unmarshal([]byte(l), &dl); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		got = append(got, dl)
		if dl.Class != "400 Bad Request" || dl.URL != "" || dl.Object == "" || dl.Status != 400 || strings.Contains(dl.Reason, "sid=") {
			t.Errorf("JSON line %+v", dl)
		}
	}
	if len(got) != n {
		t.Errorf("%d JSON lines for %d dead letters", len(got), n)
	}

	// The manifest's counts group them, and status shows the groups.
	if g := d.before.Counts.DeadLetterGroups["400 Bad Request"]; g.Count != int64(n) || g.Status != 400 || g.First == "" {
		t.Errorf("dead-letter groups %+v, want %d × 400 with its answer", d.before.Counts.DeadLetterGroups, n)
	}
	var st bytes.Buffer
	env := testEnv(t)
	env.Stdout = &st
	if err := Status(ctx, StatusOptions{State: d.state}, env); err != nil {
		t.Fatal(err)
	}
	if want := "  " + strconv.Itoa(n) + " × 400 Bad Request \""; !strings.Contains(st.String(), want) {
		t.Errorf("status lacks %q:\n%s", want, st.String())
	}

	// A part stored by a run killed before its commit: listed as orphaned,
	// not read.
	orphan := filepath.Join(d.state, "dead-letters", "0-of-1", "20260101T000000.000000000Z-00009.parquet")
	data, err := writers.DeadLetterFile(listedDeadLetters(t, d.state, d.before)[:1])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(orphan, data, 0o600); err != nil {
		t.Fatal(err)
	}
	text2, errs := list(DeadLetterListOptions{})
	if text2 != text || !strings.Contains(errs, "orphaned dead-letter part of shard 0/1: "+orphan) {
		t.Errorf("with an orphaned part: listing changed (%v) or stderr %q", text2 != text, errs)
	}
	st.Reset()
	if err := Status(ctx, StatusOptions{State: d.state}, env); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.String(), "shard 0/1: 1 orphaned dead-letter parts") {
		t.Errorf("status does not name the orphaned part:\n%s", st.String())
	}

	// Replay, still refused: the orphan goes, the listed parts stay right.
	rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12", RejectSIDs: d.reject})
	o := d.o
	o.Endpoint = rec.srv.URL
	if _, err := Replay(ctx, o, testEnv(t)); !errors.Is(err, pipeline.ErrIncomplete) {
		t.Fatalf("replay: err = %v, want ErrIncomplete", err)
	}
	if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("replay left the orphaned part (%v)", err)
	}
	m := readManifest(t, d.state)
	checkReconciled(t, d.state, m, d.before)
	if g := m.Counts.DeadLetterGroups["400 Bad Request"]; g.Count != int64(n) {
		t.Errorf("groups after a replay refused again: %+v", m.Counts.DeadLetterGroups)
	}

	// Replay delivering all; then an orphan alone is still cleaned, and the
	// manifest's figures do not move.
	ok := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
	o.Endpoint = ok.srv.URL
	if _, err := Replay(ctx, o, testEnv(t)); err != nil {
		t.Fatalf("replay: %v", err)
	}
	after := readManifest(t, d.state)
	if after.Counts.DeadLetterGroups != nil {
		t.Errorf("groups after every dead letter was delivered: %+v", after.Counts.DeadLetterGroups)
	}
	if err := os.WriteFile(orphan, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Replay(ctx, o, testEnv(t)); err != nil {
		t.Fatalf("replay of a shard with only an orphan: %v", err)
	}
	if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("replay left the orphaned part of a shard with nothing listed (%v)", err)
	}
	final := readManifest(t, d.state)
	if final.Status != pipeline.StatusFinished || final.Runs-final.Reopened != after.Runs-after.Reopened ||
		final.Counts.RequestsAcked != after.Counts.RequestsAcked || final.Lease.Expires != (time.Time{}) {
		t.Errorf("cleaning an orphan changed the manifest: %+v -> %+v", after, final)
	}
	if n := len(ok.requests(t)); n != len(d.dead) {
		t.Errorf("the second simulator got %d requests, want %d", n, len(d.dead))
	}
}
