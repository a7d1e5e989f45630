package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/convertro-etl/convertro-etl/objstore"
	"github.com/convertro-etl/convertro-etl/writers"

	"github.com/convertro-etl/convertro-etl/internal/segment"
)

// The test data: every row's message id names its place ("key|rg|row"), so a
// URL tells which row it came from. Rows with row%7 == 3 have no user id
// (skipped: missing_user_id); of the others, row%13 == 6 is an unmapped event
// (skipped: unmapped_event), row%17 == 9 a heartbeat the transform accepts
// without a request (no_requests), row%5 == 0 an order (two requests: a hit
// and a user update), and the rest one hit.

func testObjects() []Object {
	return []Object{
		{URI: "mem://a.parquet", Key: "a.parquet", Size: 10, Version: "1", RowGroups: []int64{40, 25, 0, 33}},
		{URI: "mem://b.parquet", Key: "b.parquet", Size: 20, Version: "2", RowGroups: []int64{57}},
		{URI: "mem://bad.parquet", Key: "bad.parquet", Size: 5, Version: "3", Skipped: "bad footer"},
		{URI: "mem://c.parquet", Key: "c.parquet", Size: 30, Version: "4", RowGroups: []int64{12, 61, 8}},
	}
}

func msgID(key string, rg int, row int64) string { return fmt.Sprintf("%s|%d|%d", key, rg, row) }

func parseMsgID(t testing.TB, id string) (key string, rg int, row int64) {
	p := strings.Split(id, "|")
	if len(p) != 3 {
		t.Fatalf("bad message id %q", id)
	}
	rg, _ = strconv.Atoi(p[1])
	row, _ = strconv.ParseInt(p[2], 10, 64)
	return p[0], rg, row
}

// memDecoder serves generated rows in batches, reusing its batch and byte
// buffers the way a Parquet decoder does, so that a transform which keeps
// a slice past the batch gets garbage. The function fields inject failures
// and observe progress.
type memDecoder struct {
	batch   int
	before  func(ctx context.Context, obj Object, rg int) error // nil: none
	rows    atomic.Int64                                        // rows handed out
	decodes atomic.Int64
}

func (d *memDecoder) Decode(ctx context.Context, obj Object, rg int, fn func(int64, []segment.Message, []string) error) error {
	d.decodes.Add(1)
	if d.before != nil {
		if err := d.before(ctx, obj, rg); err != nil {
			return err
		}
	}
	size := max(d.batch, 1)
	msgs := make([]segment.Message, size)
	var buf []byte
	n := obj.RowGroups[rg]
	for first := int64(0); first < n; first += int64(size) {
		k := min(int64(size), n-first)
		buf = buf[:0]
		for i := range k {
			row := first + i
			m := &msgs[i]
			m.Reset()
			start := len(buf)
			buf = append(buf, msgID(obj.Key, rg, row)...)
			m.MessageID = buf[start:len(buf):len(buf)]
			m.Type = segment.TypeTrack
			if row%7 != 3 {
				start = len(buf)
				buf = append(buf, "user-"...)
				buf = strconv.AppendInt(buf, row, 10)
				m.UserID = buf[start:len(buf):len(buf)]
			}
			switch {
			case row%13 == 6:
				m.Event = []byte("Signed Up")
			case row%17 == 9:
				m.Event = []byte("Heartbeat")
			case row%5 == 0:
				m.Event = []byte("Order Completed")
			default:
				m.Event = []byte("Page Viewed")
			}
		}
		d.rows.Add(k)
		if err := fn(first, msgs[:k], nil); err != nil {
			return err
		}
		// Scribble over the batch: nothing may still point into it.
		for i := range buf {
			buf[i] = 'X'
		}
	}
	return nil
}

func newTestTransform(base string) func() Transform {
	return func() Transform {
		var b []byte
		return func(m *segment.Message, emit func([]byte)) string {
			switch {
			case len(m.UserID) == 0:
				return "missing_user_id"
			case string(m.Event) == "Signed Up":
				return "unmapped_event"
			case string(m.Event) == "Heartbeat":
				return "" // accepted, but nothing to send
			}
			b = append(b[:0], base...)
			b = append(b, "/api/hit/acme/1/?eid="...)
			b = append(b, url.QueryEscape(string(m.MessageID))...)
			b = append(b, "&sid="...)
			b = append(b, url.QueryEscape(string(m.UserID))...)
			emit(b)
			if string(m.Event) == "Order Completed" {
				b = append(b[:0], base...)
				b = append(b, "/api/user/acme/1/?eid="...)
				b = append(b, url.QueryEscape(string(m.MessageID))...)
				emit(b)
			}
			return ""
		}
	}
}

// expected computes what the transform must produce for objs: the request
// paths+queries in plan order, the rows, and the skips.
type expectation struct {
	requests []string // RequestURI, plan order
	rows     int64
	skipped  int64
	reasons  map[string]int64
}

func expect(objs []Object) expectation {
	e := expectation{reasons: map[string]int64{}}
	for _, u := range BuildPlan(objs) {
		key := objs[u.Object].Key
		for row := range u.Rows {
			e.rows++
			reason := ""
			switch {
			case row%7 == 3:
				reason = "missing_user_id"
			case row%13 == 6:
				reason = "unmapped_event"
			case row%17 == 9:
				reason = SkipNoRequests
			}
			if reason != "" {
				e.skipped++
				e.reasons[reason]++
				continue
			}
			id := url.QueryEscape(msgID(key, u.RowGroup, row))
			e.requests = append(e.requests, "/api/hit/acme/1/?eid="+id+"&sid="+url.QueryEscape("user-"+strconv.FormatInt(row, 10)))
			if row%5 == 0 {
				e.requests = append(e.requests, "/api/user/acme/1/?eid="+id)
			}
		}
	}
	return e
}

// convertroStub is an HTTP server that records every request it gets.
// status decides the answer (nil: 200).
type convertroStub struct {
	*httptest.Server
	mu       sync.Mutex
	got      []string
	status   func(r *http.Request, n int) int // n: this request's 1-based arrival number
	arrivals atomic.Int64
}

func newConvertroStub(t *testing.T, status func(r *http.Request, n int) int) *convertroStub {
	s := &convertroStub{status: status}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(s.arrivals.Add(1))
		code := http.StatusOK
		if s.status != nil {
			code = s.status(r, n)
		}
		if code == http.StatusOK {
			s.mu.Lock()
			s.got = append(s.got, r.URL.RequestURI())
			s.mu.Unlock()
		}
		w.WriteHeader(code)
		fmt.Fprintf(w, "status %d", code)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *convertroStub) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

func (s *convertroStub) reset() {
	s.mu.Lock()
	s.got = nil
	s.mu.Unlock()
}

// httpSender is a plain HTTP client: 2xx acknowledged, 4xx (not 429)
// permanent, anything else stops the run.
type httpSender struct{ c *http.Client }

func (s httpSender) Send(ctx context.Context, u string) Outcome {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Outcome{Err: err, Permanent: true}
	}
	resp, err := s.c.Do(req)
	if err != nil {
		return Outcome{Attempts: 1, Err: err}
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	resp.Body.Close()
	o := Outcome{Status: resp.StatusCode, Attempts: 1, Body: body}
	switch {
	case resp.StatusCode < 300:
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != 429:
		o.Err, o.Permanent = fmt.Errorf("convertro answered %d", resp.StatusCode), true
	default:
		o.Err = fmt.Errorf("convertro answered %d", resp.StatusCode)
	}
	return o
}

type memDeadLetters struct {
	got            []DeadLetter
	pending, parts int
}

func (m *memDeadLetters) WriteDeadLetter(d DeadLetter) error {
	m.got = append(m.got, d)
	m.pending++
	return nil
}

// Flush names a new part for what was written since the last flush, as the
// Parquet sink in jobs does.
func (m *memDeadLetters) Flush(context.Context) (string, error) {
	if m.pending == 0 {
		return "", nil
	}
	m.pending = 0
	m.parts++
	return fmt.Sprintf("dead-letters/part-%d.parquet", m.parts), nil
}

var testJob = JobID{Kind: "backfill", Fingerprint: "f1", Description: "test backfill"}

// liveRun runs (or resumes) the job against the stub with the state in dir.
func runLiveTest(t *testing.T, ctx context.Context, dir string, cfg Config, dec Decoder, stub *convertroStub, dl *memDeadLetters) (*Report, error) {
	t.Helper()
	st, err := OpenState(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	shard := cfg.Shard
	if shard.Count == 0 {
		shard = Shard{0, 1}
	}
	cp, prev, err := OpenCheckpoint(context.Background(), st, shard, NewLease(), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Job.Fingerprint == "" {
		cfg.Job = testJob
	}
	return Run(ctx, cfg, Deps{
		Decoder:      dec,
		NewTransform: newTestTransform(stub.URL),
		Sender:       httpSender{stub.Client()},
		DeadLetters:  dl,
		Checkpoint:   cp,
		Previous:     prev,
		State:        st,
	})
}

func readManifest(t *testing.T, dir string, shard Shard) *Manifest {
	t.Helper()
	st, err := OpenState(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ReadManifest(context.Background(), st, shard)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// checkSentOnce fails t unless each wanted request was received exactly
// once and nothing else was.
func checkSentOnce(t *testing.T, received, want []string) {
	t.Helper()
	got := counts(received)
	for _, r := range want {
		if got[r] != 1 {
			t.Errorf("%s received %d times, want 1", r, got[r])
		}
	}
	if len(got) != len(want) {
		t.Errorf("received %d distinct requests, want %d", len(got), len(want))
	}
}

// checkAllSent fails t for a wanted request never sent, or for one sent
// that is not wanted, and returns how many sends were repeats.
func checkAllSent(t *testing.T, sent map[string]int, want []string) (repeats int) {
	t.Helper()
	for _, r := range want {
		switch n := sent[r]; {
		case n == 0:
			t.Errorf("%s never sent", r)
		case n > 1:
			repeats += n - 1
		}
	}
	if len(sent) != len(want) {
		t.Errorf("%d distinct requests sent, want %d", len(sent), len(want))
	}
	return repeats
}

func counts(list []string) map[string]int {
	m := make(map[string]int, len(list))
	for _, s := range list {
		m[s]++
	}
	return m
}

func TestRunDeliversEveryRequestOnce(t *testing.T) {
	objs := testObjects()
	want := expect(objs)
	stub := newConvertroStub(t, nil)
	dir := t.TempDir()
	dl := &memDeadLetters{}
	cfg := Config{Objects: objs, Decoders: 3, Concurrency: 8, Window: 64}
	rep, err := runLiveTest(t, context.Background(), dir, cfg, &memDecoder{batch: 7}, stub, dl)
	// A skipped object makes the run incomplete, with the report.
	if !errors.Is(err, ErrIncomplete) {
		t.Fatalf("Run error = %v, want ErrIncomplete (one object skipped)", err)
	}
	checkSentOnce(t, stub.received(), want.requests)
	c := rep.Counts
	if c.RowsRead != want.rows || !maps.Equal(c.RowsSkipped, want.reasons) || len(want.reasons) != 3 ||
		c.RowsDelivered != want.rows-want.skipped || c.RowsDeadLettered != 0 {
		t.Errorf("row counts = %+v, want %d read, skipped %v", c, want.rows, want.reasons)
	}
	if c.RequestsSent != int64(len(want.requests)) || c.RequestsAcked != c.RequestsSent || c.ObjectsSkipped != 1 {
		t.Errorf("request counts = %+v, want %d sent and acked, 1 object skipped", c, len(want.requests))
	}
	if err := rep.Check(); err != nil {
		t.Error(err)
	}
	if rep.Status != StatusFinished || rep.Runs != 1 || rep.RepeatBound != 0 || len(rep.SkippedObjects) != 1 {
		t.Errorf("report = %+v", rep)
	}
	m := readManifest(t, dir, Shard{0, 1})
	if m.Status != StatusFinished || unfinishedLive(m) != 0 || m.Counts.RowsRead != want.rows || m.Window != 64 {
		t.Errorf("manifest status %s, %d units unfinished, %d rows read, window %d", m.Status, unfinishedLive(m), m.Counts.RowsRead, m.Window)
	}
	// The report file is in the state.
	st, _ := OpenState(context.Background(), dir)
	data, _, err := st.Read(context.Background(), "report-0-of-1.json")
	if err != nil {
		t.Fatal(err)
	}
	var onDisk Report
	if err := json.Unmarshal(data, &onDisk); err != nil || onDisk.Counts.RowsRead != want.rows {
		t.Errorf("report file: %v, rows read %d", err, onDisk.Counts.RowsRead)
	}

	// The same job again: nothing to do, nothing sent; still incomplete,
	// as the object set aside is unchanged.
	stub.reset()
	rep2, err := runLiveTest(t, context.Background(), dir, cfg, &memDecoder{batch: 7}, stub, dl)
	if !errors.Is(err, ErrIncomplete) || len(stub.received()) != 0 || rep2.Status != StatusFinished {
		t.Errorf("rerun of a finished job: err %v, %d requests, status %s", err, len(stub.received()), rep2.Status)
	}
}

func TestRunShardsTogetherSendEverything(t *testing.T) {
	objs := testObjects()
	want := expect(objs)
	stub := newConvertroStub(t, nil)
	dir := t.TempDir()
	var read int64
	for i := range 3 {
		cfg := Config{Objects: objs, Shard: Shard{i, 3}, Decoders: 2, Concurrency: 4}
		rep, err := runLiveTest(t, context.Background(), dir, cfg, &memDecoder{batch: 16}, stub, &memDeadLetters{})
		if err != nil && !errors.Is(err, ErrIncomplete) {
			t.Fatalf("shard %d: %v", i, err)
		}
		read += rep.Counts.RowsRead
	}
	if got := counts(stub.received()); len(got) != len(want.requests) || len(stub.received()) != len(want.requests) {
		t.Errorf("3 shards sent %d requests (%d distinct), want %d once each", len(stub.received()), len(got), len(want.requests))
	}
	if read != want.rows {
		t.Errorf("3 shards read %d rows, want %d", read, want.rows)
	}
}

func TestRunDeadLetters(t *testing.T) {
	objs := testObjects()[:2]
	want := expect(objs)
	// Order rows 10, 20, 30...: the user update is refused, the hit
	// accepted; so the row is dead-lettered while one request was acked.
	refused := func(r *http.Request) bool {
		_, _, row := parseMsgID(t, r.URL.Query().Get("eid"))
		return strings.HasPrefix(r.URL.Path, "/api/user/") && row%10 == 0
	}
	stub := newConvertroStub(t, func(r *http.Request, _ int) int {
		if refused(r) {
			return http.StatusBadRequest
		}
		return http.StatusOK
	})
	dl := &memDeadLetters{}
	rep, err := runLiveTest(t, context.Background(), t.TempDir(), Config{Objects: objs, Decoders: 2, Concurrency: 8}, &memDecoder{batch: 5}, stub, dl)
	if !errors.Is(err, ErrIncomplete) {
		t.Fatalf("Run error = %v, want ErrIncomplete", err)
	}
	var wantDead []string
	for _, r := range want.requests {
		if u, _ := url.Parse(r); refused(&http.Request{URL: u}) {
			wantDead = append(wantDead, r)
		}
	}
	if len(wantDead) == 0 {
		t.Fatal("test data has no refused request")
	}
	var gotDead []string
	for _, d := range dl.got {
		u, _ := url.Parse(d.URL)
		gotDead = append(gotDead, u.RequestURI())
		key, rg, row := parseMsgID(t, d.MessageID)
		if d.Object != "mem://"+key || d.RowGroup != rg || d.Row != row || d.Status != 400 ||
			d.Attempts != 1 || d.Response != "status 400" || d.Reason == "" || d.Time.IsZero() {
			t.Errorf("dead letter %+v does not describe its row", d)
		}
	}
	slices.Sort(gotDead)
	slices.Sort(wantDead)
	if !slices.Equal(gotDead, wantDead) {
		t.Errorf("dead letters = %v, want %v", gotDead, wantDead)
	}
	c := rep.Counts
	n := int64(len(wantDead))
	if c.RowsDeadLettered != n || c.RequestsDeadLettered != n || rep.DeadLetters != n ||
		c.RequestsAcked != int64(len(want.requests))-n || c.RowsDelivered != want.rows-want.skipped-n {
		t.Errorf("counts = %+v, want %d rows and requests dead-lettered", c, n)
	}
	if err := rep.Check(); err != nil {
		t.Error(err)
	}
	// The manifest groups them by refusal, with the first answer.
	m := rep.Counts.DeadLetterGroups
	if g, ok := m["400 Bad Request"]; len(m) != 1 || !ok || g.Count != n || g.Status != 400 || g.First != "status 400" {
		t.Errorf("dead-letter groups = %+v, want %d × 400 Bad Request \"status 400\"", m, n)
	}
	var sum strings.Builder
	rep.Summary(&sum)
	if want := fmt.Sprintf("%d × 400 Bad Request \"status 400\"", n); !strings.Contains(sum.String(), want) {
		t.Errorf("summary lacks %q:\n%s", want, sum.String())
	}
}

func TestRunMisconfigured(t *testing.T) {
	stub := newConvertroStub(t, func(*http.Request, int) int { return http.StatusForbidden })
	dl := &memDeadLetters{}
	dir := t.TempDir()
	rep, err := runLiveTest(t, context.Background(), dir, Config{Objects: testObjects(), Decoders: 2, Concurrency: 4}, &memDecoder{batch: 8}, stub, dl)
	if !errors.Is(err, ErrMisconfigured) {
		t.Fatalf("Run error = %v, want ErrMisconfigured", err)
	}
	if !strings.Contains(err.Error(), "403") {
		t.Errorf("error %q does not name the status", err)
	}
	if len(dl.got) != 0 {
		t.Errorf("%d dead letters written, want none", len(dl.got))
	}
	m := readManifest(t, dir, Shard{0, 1})
	if m.Status != StatusFailed || m.Counts.RequestsSent != 0 || m.Counts.RowsDelivered != 0 || rep.Status != StatusFailed {
		t.Errorf("manifest status %s, counts %+v", m.Status, m.Counts)
	}
	if err := checkCounts(m.Counts, markedRows(m.Units)); err != nil {
		t.Error(err)
	}
}

// TestRunMisconfiguredMidRun: the guard works at any point of a run, not
// only on its first requests: 120 requests accepted, then every one refused
// the same way stops the run without dead-lettering the streak, and the
// same command finishes the job once the setting is fixed.
func TestRunMisconfiguredMidRun(t *testing.T) {
	var refused atomic.Int64
	stub := newConvertroStub(t, func(_ *http.Request, n int) int {
		if n > 120 {
			refused.Add(1)
			return http.StatusBadRequest
		}
		return http.StatusOK
	})
	dl := &memDeadLetters{}
	dir := t.TempDir()
	cfg := Config{Objects: testObjects(), Decoders: 2, Concurrency: 4}
	_, err := runLiveTest(t, context.Background(), dir, cfg, &memDecoder{batch: 8}, stub, dl)
	if !errors.Is(err, ErrMisconfigured) {
		t.Fatalf("Run error = %v, want ErrMisconfigured", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "20 requests in a row") || !strings.Contains(msg, "status 400") {
		t.Errorf("error %q does not name the streak and its status", msg)
	}
	if len(dl.got) != 0 {
		t.Errorf("%d dead letters written, want none", len(dl.got))
	}
	// At most the streak, plus what the senders had in flight twice: when
	// the first refusal came back (those do not count towards the streak,
	// which counts only requests sent after it) and when the run stopped.
	if n := refused.Load(); n < misconfigRequests || n > misconfigRequests+2*int64(cfg.Concurrency) {
		t.Errorf("%d requests refused before the stop, want %d to %d", n, misconfigRequests, misconfigRequests+2*cfg.Concurrency)
	}
	m := readManifest(t, dir, Shard{0, 1})
	if m.Status != StatusFailed || m.Counts.RequestsDeadLettered != 0 || m.Counts.RequestsAcked == 0 || m.Counts.RequestsAcked > 120 {
		t.Errorf("manifest status %s, counts %+v: want failed, none dead-lettered, 1 to 120 acked", m.Status, m.Counts)
	}
	if err := checkCounts(m.Counts, markedRows(m.Units)); err != nil {
		t.Error(err)
	}

	stub.status = nil
	rep, err := runLiveTest(t, context.Background(), dir, cfg, &memDecoder{batch: 8}, stub, dl)
	// ErrIncomplete for the bad object of the test data, not for dead letters.
	if !errors.Is(err, ErrIncomplete) || rep.Status != StatusFinished || rep.DeadLetters != 0 || rep.Counts.ObjectsSkipped != 1 {
		t.Fatalf("resume: %v, report %+v", err, rep)
	}
	got := counts(stub.received())
	for _, r := range expect(testObjects()).requests {
		if got[r] == 0 {
			t.Errorf("%s never delivered", r)
		}
	}
}

// TestRunShortRefusalStreaksAreDeadLetters: streaks of identical refusals
// shorter than the guard's, or of two different refusals, end in ordinary
// dead letters; a success or another refusal ends a streak. One sender, so
// the outcomes reach the checkpointer in the stub's order.
func TestRunShortRefusalStreaksAreDeadLetters(t *testing.T) {
	stub := newConvertroStub(t, func(_ *http.Request, n int) int {
		switch {
		case n > 50 && n <= 50+misconfigRequests-1: // 19 in a row, then successes
			return http.StatusBadRequest
		case n > 100 && n <= 110: // 10 of one refusal, then 15 of another: 25 refusals in a row
			return http.StatusBadRequest
		case n > 110 && n <= 125:
			return http.StatusNotFound
		}
		return http.StatusOK
	})
	dl := &memDeadLetters{}
	rep, err := runLiveTest(t, context.Background(), t.TempDir(), Config{Objects: testObjects(), Decoders: 1, Concurrency: 1},
		&memDecoder{batch: 8}, stub, dl)
	if !errors.Is(err, ErrIncomplete) {
		t.Fatalf("Run error = %v, want ErrIncomplete", err)
	}
	want := int64(misconfigRequests - 1 + 25)
	if int64(len(dl.got)) != want || rep.Counts.RequestsDeadLettered != want {
		t.Errorf("%d dead letters written, %d counted; want %d", len(dl.got), rep.Counts.RequestsDeadLettered, want)
	}
	if err := rep.Check(); err != nil {
		t.Error(err)
	}
}

func TestRunConvertroDownStopsResumably(t *testing.T) {
	stub := newConvertroStub(t, func(_ *http.Request, n int) int {
		if n > 30 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	dir := t.TempDir()
	_, err := runLiveTest(t, context.Background(), dir, Config{Objects: testObjects(), Decoders: 2, Concurrency: 4}, &memDecoder{batch: 8}, stub, &memDeadLetters{})
	if err == nil || errors.Is(err, ErrStopped) || !strings.Contains(err.Error(), "503") {
		t.Fatalf("Run error = %v, want the send failure", err)
	}
	m := readManifest(t, dir, Shard{0, 1})
	if m.Status != StatusFailed || m.Counts.RequestsSent > 30 {
		t.Errorf("manifest status %s, %d requests counted (at most 30 accepted)", m.Status, m.Counts.RequestsSent)
	}
	if err := checkCounts(m.Counts, markedRows(m.Units)); err != nil {
		t.Error(err)
	}
	// Convertro is back: the same command finishes the job, every request
	// delivered at least once.
	stub.status = nil
	rep, err := runLiveTest(t, context.Background(), dir, Config{Objects: testObjects(), Decoders: 2, Concurrency: 4}, &memDecoder{batch: 8}, stub, &memDeadLetters{})
	if !errors.Is(err, ErrIncomplete) || rep.Status != StatusFinished || rep.Runs != 2 {
		t.Fatalf("resume: %v, report %+v", err, rep)
	}
	got := counts(stub.received())
	for _, r := range expect(testObjects()).requests {
		if got[r] == 0 {
			t.Errorf("%s never delivered", r)
		}
	}
}

func TestRunStopAndResume(t *testing.T) {
	objs := testObjects()
	want := expect(objs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := len(want.requests) / 2
	stub := newConvertroStub(t, func(_ *http.Request, n int) int {
		if n == stop {
			cancel() // a signal, halfway
		}
		return http.StatusOK
	})
	dir := t.TempDir()
	const window = 16
	cfg := Config{Objects: objs, Decoders: 2, Concurrency: 4, Window: window}
	rep1, err := runLiveTest(t, ctx, dir, cfg, &memDecoder{batch: 4}, stub, &memDeadLetters{})
	if !errors.Is(err, ErrStopped) || rep1.Status != StatusStopped {
		t.Fatalf("Run error = %v (status %s), want ErrStopped", err, rep1.Status)
	}
	first := stub.received()
	m1 := readManifest(t, dir, Shard{0, 1})
	if m1.Status != StatusStopped || m1.Counts.RowsRead == 0 || m1.Counts.RowsRead == want.rows {
		t.Fatalf("after the stop: manifest status %s, %d of %d rows done", m1.Status, m1.Counts.RowsRead, want.rows)
	}
	if err := checkCounts(m1.Counts, markedRows(m1.Units)); err != nil {
		t.Error(err)
	}

	stub.reset()
	rep2, err := runLiveTest(t, context.Background(), dir, cfg, &memDecoder{batch: 4}, stub, &memDeadLetters{})
	if !errors.Is(err, ErrIncomplete) || rep2.Status != StatusFinished {
		t.Fatalf("resume: %v, status %s", err, rep2.Status)
	}
	second := stub.received()

	// Nothing the first run committed is sent again.
	done := map[string]bool{}
	for ui, u := range m1.Units {
		key := m1.Objects[u.Object].Key
		for row := range u.Rows {
			if m1.Units[ui].IsDone(row) {
				done[msgID(key, u.RowGroup, row)] = true
			}
		}
	}
	for _, r := range second {
		q, _ := url.ParseQuery(r[strings.IndexByte(r, '?')+1:])
		if done[q.Get("eid")] {
			t.Errorf("resume sent %s again, though its row was committed", r)
		}
	}
	// Together the runs sent everything; the repeats stay within the bound.
	all := counts(slices.Concat(first, second))
	repeats := checkAllSent(t, all, want.requests)
	// A clean stop adds to the bound what it left in flight, never more
	// than the window (a kill would add the window).
	if rep2.Runs != 2 || rep2.Resumes != 1 || rep2.RepeatBound > window || rep2.RepeatBound != m1.MaybeRepeated {
		t.Errorf("report runs %d resumes %d repeat bound %d, want 2, 1, the %d the stop left in flight (at most %d)",
			rep2.Runs, rep2.Resumes, rep2.RepeatBound, m1.MaybeRepeated, window)
	}
	if int64(repeats) > rep2.RepeatBound {
		t.Errorf("%d requests sent twice, more than the bound %d", repeats, rep2.RepeatBound)
	}
	t.Logf("stopped after %d requests; %d rows committed; resume sent %d; %d repeats (bound %d)",
		len(first), m1.Counts.RowsRead, len(second), repeats, rep2.RepeatBound)
	// The counts add up over both runs, with no row counted twice.
	c := rep2.Counts
	if c.RowsRead != want.rows || c.RequestsSent != int64(len(want.requests)) {
		t.Errorf("counts after resume: %d rows, %d requests; want %d, %d", c.RowsRead, c.RequestsSent, want.rows, len(want.requests))
	}
	if err := rep2.Check(); err != nil {
		t.Error(err)
	}
}

func TestRunRefusesAnotherUnfinishedJob(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	stub := newConvertroStub(t, func(_ *http.Request, n int) int {
		if n == 5 {
			cancel()
		}
		return http.StatusOK
	})
	dir := t.TempDir()
	cfg := Config{Objects: testObjects(), Decoders: 1, Concurrency: 2}
	if _, err := runLiveTest(t, ctx, dir, cfg, &memDecoder{batch: 4}, stub, &memDeadLetters{}); !errors.Is(err, ErrStopped) {
		t.Fatalf("first run: %v", err)
	}
	other := cfg
	other.Job = JobID{Kind: "backfill", Fingerprint: "f2", Description: "other"}
	if _, err := runLiveTest(t, context.Background(), dir, other, &memDecoder{batch: 4}, stub, &memDeadLetters{}); !errors.Is(err, ErrJobMismatch) {
		t.Fatalf("other job over an unfinished one: %v, want ErrJobMismatch", err)
	}
	// The same job whose input was rewritten since the plan reads the new
	// version whole, its earlier units retired, rather than block the job.
	changed := cfg
	changed.Objects = testObjects()
	changed.Objects[1].Version += "+"
	rep, err := runLiveTest(t, context.Background(), dir, changed, &memDecoder{batch: 4}, stub, &memDeadLetters{})
	if err != nil && !errors.Is(err, ErrIncomplete) {
		t.Fatalf("rewritten input: %v, want the new version read", err)
	}
	if cerr := rep.Check(); cerr != nil || rep.Status != StatusFinished {
		t.Fatalf("rewritten input: status %s, %v", rep.Status, cerr)
	}
	other.Fresh = true
	if _, err := runLiveTest(t, context.Background(), dir, other, &memDecoder{batch: 4}, stub, &memDeadLetters{}); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("--fresh: %v", err)
	}
}

func TestRunDecodeErrorStops(t *testing.T) {
	boom := errors.New("decode mem://c.parquet row group 1: column id: corrupt page")
	dec := &memDecoder{batch: 8, before: func(_ context.Context, obj Object, rg int) error {
		if obj.Key == "c.parquet" && rg == 1 {
			return boom
		}
		return nil
	}}
	dir := t.TempDir()
	_, err := runLiveTest(t, context.Background(), dir, Config{Objects: testObjects(), Decoders: 2, Concurrency: 4}, dec, newConvertroStub(t, nil), &memDeadLetters{})
	if !errors.Is(err, boom) {
		t.Fatalf("Run error = %v, want the decode error", err)
	}
	if m := readManifest(t, dir, Shard{0, 1}); m.Status != StatusFailed {
		t.Errorf("manifest status %s, want failed", m.Status)
	}
}

func dryRun(t *testing.T, objs []Object, decoders int, dec Decoder) []byte {
	t.Helper()
	var out bytes.Buffer
	rep, err := Run(context.Background(), Config{Job: testJob, Objects: objs, Decoders: decoders},
		Deps{Decoder: dec, NewTransform: newTestTransform("http://convertro.test"), DryRun: &out, DryRunLine: writers.AppendDryRunLine})
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	want := expect(objs)
	// Nothing was sent: the requests are what it would send.
	if rep.Status != StatusDryRun || !rep.DryRun || rep.Counts.RowsRead != want.rows || rep.WouldSend == nil ||
		rep.WouldSend.Requests != int64(len(want.requests)) || rep.WouldSend.Rows != want.rows-want.skipped ||
		rep.Counts.RequestsSent != 0 || rep.Counts.RequestsAcked != 0 || rep.Counts.RowsDelivered != 0 ||
		!maps.Equal(rep.Counts.RowsSkipped, want.reasons) {
		t.Errorf("dry-run report %+v", rep)
	}
	if err := rep.Check(); err != nil {
		t.Error(err)
	}
	return out.Bytes()
}

func TestDryRunDeterministic(t *testing.T) {
	objs := testObjects()
	want := expect(objs)
	// The first unit finishes last: it waits until three later units have
	// been decoded, so the writer must hold their output back.
	slowFirst := func() *memDecoder {
		var later sync.WaitGroup
		later.Add(3)
		return &memDecoder{batch: 6, before: func(ctx context.Context, obj Object, rg int) error {
			if obj.Key == "a.parquet" && rg == 0 {
				later.Wait()
			} else if obj.Key == "a.parquet" {
				defer later.Done()
			}
			return nil
		}}
	}
	one := dryRun(t, objs, 1, &memDecoder{batch: 6})
	four := dryRun(t, objs, 4, slowFirst())
	if !bytes.Equal(one, four) {
		t.Fatalf("dry-run output differs between 1 and 4 decoders")
	}
	if again := dryRun(t, objs, 4, slowFirst()); !bytes.Equal(four, again) {
		t.Fatalf("dry-run output differs between two runs")
	}
	// Each line is {"method":"GET","url":...}, in plan order, the same
	// requests a live run sends.
	var got []string
	sc := bufio.NewScanner(bytes.NewReader(one))
	for sc.Scan() {
		var line struct{ Method, URL string }
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil || line.Method != "GET" {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		got = append(got, strings.TrimPrefix(line.URL, "http://convertro.test"))
	}
	if !slices.Equal(got, want.requests) {
		t.Errorf("dry run wrote %d requests, want the %d of the plan in order", len(got), len(want.requests))
	}
	stub := newConvertroStub(t, nil)
	if _, err := runLiveTest(t, context.Background(), t.TempDir(), Config{Objects: objs, Decoders: 4, Concurrency: 8}, &memDecoder{batch: 6}, stub, &memDeadLetters{}); !errors.Is(err, ErrIncomplete) {
		t.Fatal(err)
	}
	live := stub.received()
	slices.Sort(live)
	sorted := slices.Sorted(slices.Values(got))
	if !slices.Equal(live, sorted) {
		t.Errorf("live run sent %d requests, dry run wrote %d; the sets differ", len(live), len(sorted))
	}
}

// blockingSender holds every request until release is closed; a fake,
// because the point is a Convertro that never answers.
type blockingSender struct {
	release chan struct{}
	sent    atomic.Int64
}

func (b *blockingSender) Send(ctx context.Context, _ string) Outcome {
	select {
	case <-b.release:
		b.sent.Add(1)
		return Outcome{Status: 200, Attempts: 1}
	case <-ctx.Done():
		return Outcome{Err: ctx.Err()}
	}
}

// openShard opens the state at dir and the checkpoint of shard 0/1 there.
func openShard(tb testing.TB, dir string) (*objstore.Store, *Checkpoint, *Manifest) {
	tb.Helper()
	st, err := OpenState(context.Background(), dir)
	if err != nil {
		tb.Fatal(err)
	}
	cp, prev, err := OpenCheckpoint(context.Background(), st, Shard{0, 1}, NewLease(), nil, 0)
	if err != nil {
		tb.Fatal(err)
	}
	return st, cp, prev
}

// oneRequestPerRow is a Transform that sends one request for every row.
func oneRequestPerRow() Transform {
	return func(m *segment.Message, emit func([]byte)) string {
		emit(append([]byte("http://x/?eid="), m.MessageID...))
		return ""
	}
}

func TestBackpressure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// One object, 5000 rows, every row one request.
		objs := []Object{{URI: "mem://big", Key: "big", RowGroups: []int64{1000, 1000, 1000, 1000, 1000}}}
		const (
			decoders, concurrency, window, batch = 2, 3, 24, 4
		)
		dec := &memDecoder{batch: batch}
		st, cp, prev := openShard(t, t.TempDir())
		send := &blockingSender{release: make(chan struct{})}
		var rep *Report
		var runErr error
		finished := make(chan struct{})
		go func() {
			defer close(finished)
			rep, runErr = Run(context.Background(), Config{Job: testJob, Objects: objs, Decoders: decoders, Concurrency: concurrency, Window: window},
				Deps{Decoder: dec, NewTransform: oneRequestPerRow, Sender: send, DeadLetters: &memDeadLetters{}, Checkpoint: cp, Previous: prev, State: st})
		}()
		// Wait until every goroutine is blocked: Convertro holds the
		// requests, so decoding must have stopped at the window.
		synctest.Wait()
		// Rows taken: at most the window's worth of requests, plus the
		// rest of one batch per decoder that waits for permits.
		if got, bound := dec.rows.Load(), int64(window+decoders*batch); got > bound {
			t.Errorf("with Convertro stalled the decoders produced %d rows, more than the bound %d", got, bound)
		}
		close(send.release)
		<-finished
		if runErr != nil || rep.Counts.RowsRead != 5000 || send.sent.Load() != 5000 {
			t.Fatalf("after release: %v, %d rows, %d sent", runErr, rep.Counts.RowsRead, send.sent.Load())
		}
	})
}

// stallingStore is the real local state whose writes hang after the first
// `after` until stall is closed: a state bucket that stopped answering.
type stallingStore struct {
	StateStore
	after  int64
	writes atomic.Int64
	stall  chan struct{}
}

func (s *stallingStore) Write(ctx context.Context, name string, data []byte, pre objstore.Precondition) (string, error) {
	if s.writes.Add(1) > s.after {
		select {
		case <-s.stall:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	return s.StateStore.Write(ctx, name, data, pre)
}

func TestWindowBoundsUncommittedRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		objs := []Object{{URI: "mem://big", Key: "big", RowGroups: []int64{3000, 2000}}}
		const (
			decoders, concurrency, window, batch = 2, 4, 40, 5
		)
		dec := &memDecoder{batch: batch}
		local, err := OpenState(context.Background(), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		st := &stallingStore{StateStore: local, after: 1, stall: make(chan struct{})} // Begin's write passes
		cp, prev, err := OpenCheckpoint(context.Background(), st, Shard{0, 1}, NewLease(), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		send := &blockingSender{release: make(chan struct{})}
		close(send.release) // Convertro answers at once
		var rep *Report
		var runErr error
		finished := make(chan struct{})
		go func() {
			defer close(finished)
			rep, runErr = Run(context.Background(), Config{Job: testJob, Objects: objs, Decoders: decoders, Concurrency: concurrency, Window: window},
				Deps{Decoder: dec, NewTransform: oneRequestPerRow, Sender: send, DeadLetters: &memDeadLetters{}, Checkpoint: cp, Previous: prev, State: st})
		}()
		synctest.Wait()
		// No commit gets through, so no permit comes back: the senders stop
		// at the window, and the decoders just past it.
		if got := send.sent.Load(); got > window {
			t.Errorf("%d requests sent with nothing committed, more than the window %d", got, window)
		}
		if got, bound := dec.rows.Load(), int64(window+decoders*batch); got > bound {
			t.Errorf("decoders produced %d rows with nothing committed, more than %d", got, bound)
		}
		close(st.stall)
		<-finished
		if runErr != nil || rep.Counts.RowsRead != 5000 || send.sent.Load() != 5000 {
			t.Fatalf("after the state came back: %v, %d rows, %d sent", runErr, rep.Counts.RowsRead, send.sent.Load())
		}
	})
}

func TestLeaseRenewedWhileNothingCompletes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		objs := []Object{{URI: "mem://o", Key: "o", RowGroups: []int64{100}}}
		st, cp, prev := openShard(t, t.TempDir())
		send := &blockingSender{release: make(chan struct{})} // Convertro hangs
		ctx, cancel := context.WithCancel(context.Background())
		finished := make(chan error)
		go func() {
			_, err := Run(ctx, Config{Job: testJob, Objects: objs, Decoders: 1, Concurrency: 2},
				Deps{Decoder: &memDecoder{batch: 10}, NewTransform: newTestTransform("http://x"), Sender: send,
					DeadLetters: &memDeadLetters{}, Checkpoint: cp, Previous: prev, State: st})
			finished <- err
		}()
		time.Sleep(3 * DefaultLeaseTTL) // no row completes meanwhile
		synctest.Wait()
		m, err := ReadManifest(context.Background(), st, Shard{0, 1})
		if err != nil {
			t.Fatal(err)
		}
		if m.Counts.RowsRead != 0 || !m.Lease.Expires.After(time.Now()) {
			t.Errorf("after %v without progress: %d rows done, lease expires %v (now %v)",
				3*DefaultLeaseTTL, m.Counts.RowsRead, m.Lease.Expires, time.Now())
		}
		cancel()
		if err := <-finished; !errors.Is(err, ErrStopped) {
			t.Errorf("Run = %v, want ErrStopped", err)
		}
	})
}

// instantSender acknowledges at once: the benchmark measures the stages,
// not HTTP.
type instantSender struct{}

func (instantSender) Send(context.Context, string) Outcome { return Outcome{Status: 200, Attempts: 1} }

func benchObjects() []Object {
	return []Object{{URI: "mem://bench", Key: "bench", RowGroups: []int64{25000, 25000, 25000, 25000}}}
}

func BenchmarkRunLive(b *testing.B) {
	objs := benchObjects()
	rows := PlanRows(BuildPlan(objs))
	for b.Loop() {
		st, cp, prev := openShard(b, b.TempDir())
		rep, err := Run(context.Background(), Config{Job: testJob, Objects: objs},
			Deps{Decoder: &memDecoder{batch: 1024}, NewTransform: newTestTransform("http://x"), Sender: instantSender{},
				DeadLetters: &memDeadLetters{}, Checkpoint: cp, Previous: prev, State: st})
		if err != nil || rep.Counts.RowsRead != rows {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

func BenchmarkRunDry(b *testing.B) {
	objs := benchObjects()
	rows := PlanRows(BuildPlan(objs))
	for b.Loop() {
		_, err := Run(context.Background(), Config{Job: testJob, Objects: objs},
			Deps{Decoder: &memDecoder{batch: 1024}, NewTransform: newTestTransform("http://x"), DryRun: io.Discard, DryRunLine: writers.AppendDryRunLine})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// TestShardLayoutFenced: a state whose job runs in two shards refuses a run
// in three, before and after the job finished, and so does a state written
// before the layout was recorded (judged by its manifests' names).
func TestShardLayoutFenced(t *testing.T) {
	stub := newConvertroStub(t, func(*http.Request, int) int { return http.StatusOK })
	dir := t.TempDir()
	for i := range 2 {
		cfg := Config{Objects: testObjects(), Decoders: 1, Concurrency: 2, Shard: Shard{i, 2}}
		if _, err := runLiveTest(t, context.Background(), dir, cfg, &memDecoder{batch: 4}, stub, &memDeadLetters{}); err != nil && !errors.Is(err, ErrIncomplete) {
			t.Fatalf("shard %d/2: %v", i, err)
		}
	}
	st, err := OpenState(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []Shard{{0, 3}, {2, 3}, {0, 1}} {
		_, _, err := OpenCheckpoint(context.Background(), st, s, NewLease(), nil, 0)
		if !errors.Is(err, ErrShardLayout) || !strings.Contains(err.Error(), "--shard i/2") {
			t.Errorf("shard %s on a 2-shard state: %v, want ErrShardLayout saying how", s, err)
		}
	}
	if err := st.Delete(context.Background(), LayoutName); err != nil {
		t.Fatal(err)
	}
	if _, _, err := OpenCheckpoint(context.Background(), st, Shard{1, 3}, NewLease(), nil, 0); !errors.Is(err, ErrShardLayout) {
		t.Errorf("shard 1/3 on a state with 2-shard manifests and no layout: %v, want ErrShardLayout", err)
	}
	if _, _, err := OpenCheckpoint(context.Background(), st, Shard{1, 2}, NewLease(), nil, 0); err != nil {
		t.Errorf("shard 1/2: %v", err)
	}
}

// TestLedgerGoneAndPruned: an unfinished object that disappears from the
// listing is set aside as gone (the run ends incomplete and names it); the
// next run, whose listing no longer holds it nor a finished object, prunes
// both from the ledger and keeps their rows in Pruned, so the counts still
// reconcile.
func TestLedgerGoneAndPruned(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	stub := newConvertroStub(t, func(_ *http.Request, n int) int {
		if n == 5 {
			cancel()
		}
		return http.StatusOK
	})
	dir := t.TempDir()
	cfg := Config{Objects: testObjects(), Decoders: 1, Concurrency: 2}
	if _, err := runLiveTest(t, ctx, dir, cfg, &memDecoder{batch: 4}, stub, &memDeadLetters{}); !errors.Is(err, ErrStopped) {
		t.Fatalf("first run: %v", err)
	}
	// c.parquet, last in plan order, is unfinished; it leaves the source.
	gone := cfg
	gone.Objects = testObjects()[:3]
	rep, err := runLiveTest(t, context.Background(), dir, gone, &memDecoder{batch: 4}, stub, &memDeadLetters{})
	if !errors.Is(err, ErrIncomplete) {
		t.Fatalf("run without c.parquet: %v, want ErrIncomplete", err)
	}
	named := false
	for _, s := range rep.SkippedObjects {
		named = named || (s.URI == "mem://c.parquet" && s.Reason == SkipGone)
	}
	if !named || rep.Check() != nil {
		t.Fatalf("c.parquet not set aside as gone: %+v (%v)", rep.SkippedObjects, rep.Check())
	}
	// The next run lists b.parquet and a new d.parquet: a.parquet
	// (finished), bad.parquet and c.parquet leave the ledger. (A run with
	// nothing new writes nothing: the pruning waits for the next commit.)
	later := cfg
	later.Objects = append(testObjects()[1:2], Object{URI: "mem://d.parquet", Key: "d.parquet", Size: 7, Version: "9", RowGroups: []int64{6}})
	rep, err = runLiveTest(t, context.Background(), dir, later, &memDecoder{batch: 4}, stub, &memDeadLetters{})
	if err != nil {
		t.Fatalf("run over b.parquet only: %v", err)
	}
	m := readManifest(t, dir, Shard{0, 1})
	if len(m.Objects) != 2 || m.Objects[0].URI != "mem://b.parquet" || m.Objects[1].URI != "mem://d.parquet" || m.Pruned.Objects != 3 || m.Pruned.Rows == 0 {
		t.Errorf("ledger after pruning: %d objects (%+v), pruned %+v", len(m.Objects), m.Objects, m.Pruned)
	}
	if err := rep.Check(); err != nil {
		t.Error(err)
	}
}
