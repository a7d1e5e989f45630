package simulator

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// get sends one GET and returns the status and body; a dropped connection is
// status -1 with the transport error.
func get(t *testing.T, c *http.Client, u string) (int, string, error) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		return StatusDrop, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body of %s: %v", u, err)
	}
	return resp.StatusCode, string(b), nil
}

func TestValidation(t *testing.T) {
	sim := New(Options{ClientName: "acme", SiteID: "42", RejectSIDs: []string{"banned"}})
	srv := httptest.NewServer(sim)
	defer srv.Close()

	const hit = "/api/hit/acme/42/"
	tests := []struct {
		name       string
		path       string
		wantStatus int
		wantReason string
	}{
		{"valid hit", hit + "?sid=d1&typ=sale&val=49.99&eid=o1&ts=1700000000", 200, ""},
		{"valid hit with context", hit + "?sid=d1&typ=sale&val=-5&eid=o2&ts=1700000000&cua=Mozilla%2F5.0&cip=10.0.0.1", 200, ""},
		{"valid user", "/api/user/acme/42/?sid=d1&id=u1&ts=1700000000", 200, ""},
		{"valid user with trait", "/api/user/acme/42/?sid=d1&id=u1&ts=1700000000&big_spenders=true", 200, ""},
		{"valid install", "/api/install/acme/42/?sid=d1&eid=m1&ts=1700000000", 200, ""},
		{"no sid", hit + "?typ=sale&val=1&eid=o1&ts=1", 400, ReasonSID},
		{"empty sid", hit + "?sid=&typ=sale&val=1&eid=o1&ts=1", 400, ReasonSID},
		{"no sid on user", "/api/user/acme/42/?id=u1&ts=1", 400, ReasonSID},
		{"empty typ on hit", hit + "?sid=d1&typ=&val=1&eid=o1&ts=1", 400, ReasonTyp},
		{"no typ on hit", hit + "?sid=d1&val=1&eid=o1&ts=1", 400, ReasonTyp},
		{"val not a number", hit + "?sid=d1&typ=sale&val=%2449.99&eid=o1&ts=1", 400, ReasonVal},
		{"val NaN", hit + "?sid=d1&typ=sale&val=NaN&eid=o1&ts=1", 400, ReasonVal},
		{"val missing on hit", hit + "?sid=d1&typ=sale&eid=o1&ts=1", 400, ReasonVal},
		{"ts not an integer", hit + "?sid=d1&typ=sale&val=1&eid=o1&ts=1700000000.5", 400, ReasonTS},
		{"ts text", "/api/user/acme/42/?sid=d1&id=u1&ts=2024-01-01T00:00:00Z", 400, ReasonTS},
		{"ts missing", "/api/install/acme/42/?sid=d1&eid=m1", 400, ReasonTS},
		{"eid missing on hit", hit + "?sid=d1&typ=sale&val=1&ts=1", 400, ReasonEID},
		{"eid missing on install", "/api/install/acme/42/?sid=d1&ts=1", 400, ReasonEID},
		{"id missing on user", "/api/user/acme/42/?sid=d1&ts=1", 400, ReasonID},
		{"unknown kind", "/api/page/acme/42/?sid=d1&ts=1", 400, ReasonUnknownPath},
		{"no trailing slash", "/api/hit/acme/42?sid=d1&typ=sale&val=1&eid=o1&ts=1", 400, ReasonUnknownPath},
		{"too deep", "/api/hit/acme/42/x/?sid=d1&typ=sale&val=1&eid=o1&ts=1", 400, ReasonUnknownPath},
		{"root", "/", 400, ReasonUnknownPath},
		{"wrong client name", "/api/hit/other/42/?sid=d1&typ=sale&val=1&eid=o1&ts=1", 400, ReasonClientName},
		{"wrong site id", "/api/hit/acme/43/?sid=d1&typ=sale&val=1&eid=o1&ts=1", 400, ReasonSiteID},
		{"bad escape", hit + "?sid=d1&typ=sale%zz&val=1&eid=o1&ts=1", 400, ReasonQuery},
		{"rejected sid", hit + "?sid=banned&typ=sale&val=1&eid=o1&ts=1", 400, ReasonRejectedSID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body, err := get(t, srv.Client(), srv.URL+tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantStatus {
				t.Fatalf("status = %d (%q), want %d", code, body, tt.wantStatus)
			}
			if tt.wantReason != "" && !strings.HasPrefix(body, tt.wantReason) {
				t.Errorf("body = %q, want it to start with %q", body, tt.wantReason)
			}
		})
	}
	st := sim.Stats()
	if st.Accepted != 5 || st.Rejected != int64(len(tests)-5) {
		t.Errorf("accepted %d, rejected %d; want 5, %d", st.Accepted, st.Rejected, len(tests)-5)
	}
	if st.Reasons[ReasonUnknownPath] != 4 || st.Reasons[ReasonVal] != 3 {
		t.Errorf("reasons = %v", st.Reasons)
	}

	resp, err := srv.Client().Post(srv.URL+hit+"?sid=d1&typ=sale&val=1&eid=o1&ts=1", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: status %d, want 405", resp.StatusCode)
	}
}

func TestAnyClientNameAndSiteIDWhenUnset(t *testing.T) {
	srv := httptest.NewServer(New(Options{}))
	defer srv.Close()
	for _, p := range []string{"/api/hit/acme/42/", "/api/hit/other/x-1/"} {
		code, body, err := get(t, srv.Client(), srv.URL+p+"?sid=d&typ=t&val=1&eid=e&ts=1")
		if err != nil || code != 200 {
			t.Errorf("%s: %d %q %v, want 200", p, code, body, err)
		}
	}
}

func TestRecordAndStats(t *testing.T) {
	var rec bytes.Buffer
	sim := New(Options{Record: &rec})
	srv := httptest.NewServer(sim)
	defer srv.Close()

	paths := []string{
		"/api/hit/acme/42/?sid=d%201&typ=sale.repeat&val=49.99&eid=o1&ts=1700000000&cua=a%26b",
		"/api/hit/acme/42/?sid=d%201&typ=sale&val=49.99&eid=o1&ts=1700000000", // hybrid pair: not a duplicate
		"/api/hit/acme/42/?sid=d%201&typ=sale&val=49.99&eid=o1&ts=1700000001", // same (typ, eid): duplicate
		"/api/hit/acme/42/?typ=sale&val=1&eid=o2&ts=1",                        // rejected: not recorded
		"/api/user/acme/42/?sid=d1&id=u1&ts=5",
		"/api/user/acme/42/?sid=d1&id=u1&ts=5&cua=other", // same user fact: duplicate
		"/api/user/acme/42/?sid=d1&id=u1&ts=6",           // new ts: not a duplicate
		"/api/user/acme/42/?sid=d1&id=u1&ts=6&vip=true",  // trait: not a duplicate
		"/api/user/acme/42/?sid=d1&id=u1&ts=6&vip=false", // trait changed: not a duplicate
		"/api/install/acme/42/?sid=d1&eid=m1&ts=7",
		"/api/install/acme/42/?sid=d2&eid=m1&ts=8", // same eid: duplicate
	}
	for _, p := range paths {
		if _, _, err := get(t, srv.Client(), srv.URL+p); err != nil {
			t.Fatal(err)
		}
	}
	if rec.Len() != 0 {
		t.Errorf("record written before Flush: %q", rec.String())
	}
	if err := sim.Close(); err != nil {
		t.Fatal(err)
	}
	// After Close requests are answered but not recorded.
	if code, _, _ := get(t, srv.Client(), srv.URL+paths[0]); code != 200 {
		t.Errorf("after Close: status %d", code)
	}

	var lines []recordLine
	sc := bufio.NewScanner(&rec)
	for sc.Scan() {
		var l recordLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	if len(lines) != 10 {
		t.Fatalf("%d record lines, want 10:\n%s", len(lines), rec.String())
	}
	want0 := recordLine{Path: "/api/hit/acme/42/", Query: map[string]string{
		"sid": "d 1", "typ": "sale.repeat", "val": "49.99", "eid": "o1", "ts": "1700000000", "cua": "a&b"},
		Raw: "sid=d%201&typ=sale.repeat&val=49.99&eid=o1&ts=1700000000&cua=a%26b"}
	if !reflect.DeepEqual(lines[0], want0) {
		t.Errorf("line 0 = %+v, want %+v", lines[0], want0)
	}
	if lines[3].Path != "/api/user/acme/42/" || lines[3].Query["id"] != "u1" {
		t.Errorf("line 3 = %+v, want the first user request", lines[3])
	}

	wantStats := Stats{
		Requests: 12, Accepted: 11, Rejected: 1, Duplicates: 4,
		Reasons: map[string]int64{ReasonSID: 1},
		ByKind:  map[string]int64{"hit": 4, "user": 5, "install": 2},
	}
	if got := sim.Stats(); !reflect.DeepEqual(got, wantStats) {
		t.Errorf("Stats() = %+v\nwant %+v", got, wantStats)
	}
	resp, err := srv.Client().Get(srv.URL + "/_stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var served Stats
	if err := json.NewDecoder(resp.Body).Decode(&served); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(served, wantStats) {
		t.Errorf("GET /_stats = %+v\nwant %+v", served, wantStats)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestRecordErrorIsSticky(t *testing.T) {
	sim := New(Options{Record: failWriter{}})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	get(t, srv.Client(), srv.URL+"/api/install/a/b/?sid=d&eid=e&ts=1")
	if err := sim.Flush(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Flush() = %v, want the write error", err)
	}
	if err := sim.Close(); err == nil {
		t.Error("Close() = nil after a failed write")
	}
}

// outcomes sends every path (workers at once, in the given order) and returns
// the answer each one got: a status, or -1 for a dropped connection.
func outcomes(t *testing.T, o Options, paths []string, workers int) (map[string]int, Stats) {
	t.Helper()
	sim := New(o)
	srv := httptest.NewServer(sim)
	defer srv.Close()
	// No keep-alive: Go's transport replays a GET by itself when a reused
	// connection is dropped, which would add attempts the test did not make.
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	var mu sync.Mutex
	got := make(map[string]int, len(paths))
	work := make(chan string)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for p := range work {
				code, _, _ := get(t, c, srv.URL+p)
				mu.Lock()
				got[p] = code
				mu.Unlock()
			}
		})
	}
	for _, p := range paths {
		work <- p
	}
	close(work)
	wg.Wait()
	return got, sim.Stats()
}

func TestFaultSharesAndReplay(t *testing.T) {
	const n = 2000
	paths := make([]string, n)
	for i := range paths {
		paths[i] = fmt.Sprintf("/api/hit/a/b/?sid=d%d&typ=t&val=1&eid=e%d&ts=1", i, i)
	}
	o := Options{Seed: 7, Fail500: 0.10, Fail429: 0.05, Slow: 0.05, SlowDelay: time.Microsecond, Drop: 0.05, RetryAfter: time.Second}
	first, st := outcomes(t, o, paths, 1)

	count := map[int]int{}
	for _, code := range first {
		count[code]++
	}
	within := func(got int, share float64) bool {
		want := share * n
		return float64(got) > 0.7*want && float64(got) < 1.3*want
	}
	if !within(count[500], o.Fail500) || !within(count[429], o.Fail429) || !within(count[StatusDrop], o.Drop) {
		t.Errorf("answers %v: shares off from 500:%v 429:%v drop:%v", count, o.Fail500, o.Fail429, o.Drop)
	}
	if !within(int(st.Faults.Slow), o.Slow) {
		t.Errorf("slow answers %d, want about %v", st.Faults.Slow, o.Slow*n)
	}
	if int(st.Faults.Status500) != count[500] || int(st.Faults.Drop) != count[StatusDrop] || int(st.Accepted) != count[200] {
		t.Errorf("stats %+v disagree with answers %v", st, count)
	}

	// Same seed, other arrival order and concurrency: same answers.
	reversed := make([]string, n)
	for i, p := range paths {
		reversed[n-1-i] = p
	}
	second, st2 := outcomes(t, o, reversed, 8)
	if !reflect.DeepEqual(first, second) {
		t.Error("same seed, different order: answers differ")
	}
	if st.Faults != st2.Faults {
		t.Errorf("same seed: faults %+v then %+v", st.Faults, st2.Faults)
	}

	o.Seed = 8
	if third, _ := outcomes(t, o, paths, 4); reflect.DeepEqual(first, third) {
		t.Error("another seed gave the same answers")
	}
}

func TestFaultSequencePerRequest(t *testing.T) {
	// One request sent again and again meets a fixed sequence of faults,
	// because the attempt number is part of the draw.
	o := Options{Seed: 3, Fail500: 0.5}
	path := "/api/install/a/b/?sid=d&eid=e&ts=1"
	seq := func() []int {
		srv := httptest.NewServer(New(o))
		defer srv.Close()
		var s []int
		for range 40 {
			code, _, err := get(t, srv.Client(), srv.URL+path)
			if err != nil {
				t.Fatal(err)
			}
			s = append(s, code)
		}
		return s
	}
	a, b := seq(), seq()
	if !reflect.DeepEqual(a, b) {
		t.Errorf("sequences differ:\n%v\n%v", a, b)
	}
	n500 := 0
	for _, c := range a {
		if c == 500 {
			n500++
		}
	}
	if n500 == 0 || n500 == len(a) {
		t.Errorf("sequence %v: want a mix of 500 and 200", a)
	}
}

func TestScript(t *testing.T) {
	script := func(identity string, attempt int) int {
		switch {
		case strings.Contains(identity, "eid=flaky") && attempt <= 2:
			return http.StatusInternalServerError
		case strings.Contains(identity, "eid=gone") && attempt == 1:
			return StatusDrop
		}
		return 0
	}
	sim := New(Options{Script: script})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

	var flaky []int
	for range 3 {
		code, _, _ := get(t, c, srv.URL+"/api/install/a/b/?sid=d&eid=flaky&ts=1")
		flaky = append(flaky, code)
	}
	if want := []int{500, 500, 200}; !reflect.DeepEqual(flaky, want) {
		t.Errorf("flaky: %v, want %v", flaky, want)
	}
	if code, _, err := get(t, c, srv.URL+"/api/install/a/b/?sid=d&eid=gone&ts=1"); err == nil {
		t.Errorf("gone, attempt 1: status %d, want a dropped connection", code)
	}
	if code, _, _ := get(t, c, srv.URL+"/api/install/a/b/?sid=d&eid=gone&ts=1"); code != 200 {
		t.Errorf("gone, attempt 2: status %d, want 200", code)
	}
	if st := sim.Stats(); st.Accepted != 2 || st.Faults.Scripted != 3 {
		t.Errorf("stats %+v: want 2 accepted, 3 scripted", st)
	}
}

func TestRetryAfterForms(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tt := range []struct {
		name string
		o    Options
		want string
	}{
		{"seconds", Options{Fail429: 1, RetryAfter: 2 * time.Second}, "2"},
		{"seconds rounded up", Options{Fail429: 1, RetryAfter: 1500 * time.Millisecond}, "2"},
		{"date", Options{Fail429: 1, RetryAfter: 2 * time.Second, RetryAfterDate: true, Now: func() time.Time { return now }},
			"Fri, 02 Jan 2026 03:04:07 GMT"},
		{"none", Options{Fail429: 1}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(New(tt.o))
			defer srv.Close()
			resp, err := srv.Client().Get(srv.URL + "/api/install/a/b/?sid=d&eid=e&ts=1")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != tt.want {
				t.Errorf("got %d Retry-After %q, want 429 %q", resp.StatusCode, resp.Header.Get("Retry-After"), tt.want)
			}
		})
	}
}

func TestMaxRPSCeiling(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	sim := New(Options{MaxRPS: 5, Now: clock})
	srv := httptest.NewServer(sim)
	defer srv.Close()

	send := func() (int, string) {
		resp, err := srv.Client().Get(srv.URL + "/api/install/a/b/?sid=d&eid=e&ts=1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	for i := range 5 {
		if code, _ := send(); code != 200 {
			t.Fatalf("request %d within the ceiling: %d", i+1, code)
		}
	}
	if code, ra := send(); code != 429 || ra != "1" {
		t.Fatalf("request 6 in the same second: %d Retry-After %q, want 429 \"1\"", code, ra)
	}
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	for i := range 5 {
		if code, _ := send(); code != 200 {
			t.Fatalf("request %d of the next second: %d", i+1, code)
		}
	}
	if code, _ := send(); code != 429 {
		t.Fatalf("request 6 of the next second: %d, want 429", code)
	}
	if st := sim.Stats(); st.Faults.Ceiling != 2 || st.Accepted != 10 || st.Requests != 12 {
		t.Errorf("stats %+v", st)
	}
}

func TestServeStopsOnContext(t *testing.T) {
	var rec bytes.Buffer
	sim := New(Options{Record: &rec, Slow: 1, SlowDelay: time.Hour})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- sim.Serve(ctx, ln) }()

	// A slow answer in flight when the server stops is answered 503, not 200.
	answered := make(chan int, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/api/install/a/b/?sid=d&eid=e&ts=1")
		if err != nil {
			answered <- -1
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	for sim.Stats().Faults.Slow == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after cancel = %v, want nil", err)
	}
	if code := <-answered; code != http.StatusServiceUnavailable {
		t.Errorf("in-flight slow request: %d, want 503", code)
	}
	if st := sim.Stats(); st.Accepted != 0 {
		t.Errorf("accepted %d, want 0", st.Accepted)
	}
}

func TestListenAndServe(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := New(Options{}).ListenAndServe(ctx, "127.0.0.1:0"); err != nil {
		t.Errorf("ListenAndServe on a done context = %v, want nil", err)
	}
	if err := New(Options{}).ListenAndServe(t.Context(), "127.0.0.1:notaport"); err == nil || !strings.Contains(err.Error(), "notaport") {
		t.Errorf("ListenAndServe on a bad address = %v, want an error naming it", err)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestServeFlushesRecordWhileRunning(t *testing.T) {
	var rec lockedBuffer
	sim := New(Options{Record: &rec})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- sim.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	resp, err := http.Get("http://" + ln.Addr().String() + "/api/install/a/b/?sid=d&eid=e&ts=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// No Flush or Close: the line must show up by itself while serving.
	for deadline := time.Now().Add(10 * time.Second); rec.String() == ""; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("record still empty 10s after an accepted request")
		}
	}
	if got, want := rec.String(), `{"path":"/api/install/a/b/","query":{"eid":"e","sid":"d","ts":"1"},"raw":"sid=d&eid=e&ts=1"}`+"\n"; got != want {
		t.Errorf("record %q, want %q", got, want)
	}
}
