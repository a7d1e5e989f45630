package convertro

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/convertro/simulator"
)

// waits records the waits a Client asks for, without waiting.
type waits struct {
	mu sync.Mutex
	d  []time.Duration
}

func (w *waits) sleep(ctx context.Context, d time.Duration) error {
	w.mu.Lock()
	w.d = append(w.d, d)
	w.mu.Unlock()
	return ctx.Err()
}

func (w *waits) list() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Duration(nil), w.d...)
}

// clientTestServer serves a simulator over HTTP/1 and counts the connections
// it accepts.
type clientTestServer struct {
	*httptest.Server
	sim   *simulator.Simulator
	conns atomic.Int64
	ua    atomic.Value // last User-Agent
}

func newClientTestServer(t *testing.T, o simulator.Options) *clientTestServer {
	t.Helper()
	s := &clientTestServer{sim: simulator.New(o)}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.ua.Store(r.UserAgent())
		s.sim.ServeHTTP(w, r)
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

const clientTestQuery = "?sid=d1&typ=sale&val=49.99&eid=o1&ts=1700000000"

func (s *clientTestServer) hitURL(query string) string {
	return s.URL + "/api/hit/acme/42/" + query
}

func TestClientDelivers(t *testing.T) {
	srv := newClientTestServer(t, simulator.Options{ClientName: "acme", SiteID: "42"})
	var w waits
	c := NewClient(ClientOptions{UserAgent: "convertro-etl/1.2.3", Sleep: w.sleep})
	res, err := c.Get(t.Context(), srv.hitURL(clientTestQuery))
	if err != nil {
		t.Fatal(err)
	}
	if res != (Result{Status: 200, Attempts: 1}) {
		t.Errorf("Result = %+v, want 200 after 1 attempt", res)
	}
	if ua := srv.ua.Load(); ua != "convertro-etl/1.2.3" {
		t.Errorf("User-Agent = %q", ua)
	}
	if st := srv.sim.Stats(); st.Accepted != 1 {
		t.Errorf("simulator accepted %d, want 1", st.Accepted)
	}
	if len(w.list()) != 0 {
		t.Errorf("waited %v without a failure", w.list())
	}
}

func TestClient500500200(t *testing.T) {
	srv := newClientTestServer(t, simulator.Options{Script: func(_ string, attempt int) int {
		if attempt <= 2 {
			return http.StatusInternalServerError
		}
		return 0
	}})
	var w waits
	c := NewClient(ClientOptions{Sleep: w.sleep, BaseBackoff: time.Second, MaxBackoff: time.Minute})
	res, err := c.Get(t.Context(), srv.hitURL(clientTestQuery))
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != 200 || res.Attempts != 3 || res.MaybeDuplicated {
		t.Errorf("Result = %+v, want 200 after 3 attempts, not maybe duplicated", res)
	}
	st := srv.sim.Stats()
	if st.Requests != 3 || st.Accepted != 1 || st.Faults.Scripted != 2 {
		t.Errorf("simulator: %d requests, %d accepted, %d scripted; want 3, 1, 2", st.Requests, st.Accepted, st.Faults.Scripted)
	}
	if cs := c.Stats(); cs != (ClientStats{Attempts: 3, Retries: 2}) {
		t.Errorf("client stats %+v", cs)
	}
	// Full jitter under a doubling ceiling: [0, 1s) then [0, 2s).
	got := w.list()
	if len(got) > 2 || (len(got) > 0 && got[0] >= time.Second) || (len(got) > 1 && got[1] >= 2*time.Second) {
		t.Errorf("backoff waits %v, want at most [<1s <2s]", got)
	}
}

func TestClientHonoursRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name string
		o    simulator.Options
		want time.Duration
	}{
		{"seconds", simulator.Options{RetryAfter: 2 * time.Second}, 2 * time.Second},
		{"http date", simulator.Options{RetryAfter: 3 * time.Second, RetryAfterDate: true, Now: func() time.Time { return now }}, 3 * time.Second},
		{"beyond MaxBackoff", simulator.Options{RetryAfter: 90 * time.Second}, 90 * time.Second},
		{"capped", simulator.Options{RetryAfter: time.Hour}, MaxRetryAfter},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.Script = func(_ string, attempt int) int {
				if attempt == 1 {
					return http.StatusTooManyRequests
				}
				return 0
			}
			srv := newClientTestServer(t, tt.o)
			var got []time.Duration
			var seenAtWait int64
			c := NewClient(ClientOptions{MaxBackoff: 30 * time.Second, Sleep: func(ctx context.Context, d time.Duration) error {
				got = append(got, d)
				seenAtWait = srv.sim.Stats().Requests
				return nil
			}})
			c.now = func() time.Time { return now }
			res, err := c.Get(t.Context(), srv.hitURL(clientTestQuery))
			if err != nil {
				t.Fatal(err)
			}
			if res.Attempts != 2 {
				t.Errorf("attempts %d, want 2", res.Attempts)
			}
			if len(got) != 1 || got[0] != tt.want {
				t.Errorf("waits %v, want [%v]", got, tt.want)
			}
			if seenAtWait != 1 {
				t.Errorf("server had seen %d requests when the client waited, want 1", seenAtWait)
			}
		})
	}
}

func TestClientPermanent400(t *testing.T) {
	srv := newClientTestServer(t, simulator.Options{})
	var w waits
	c := NewClient(ClientOptions{Sleep: w.sleep})
	u := srv.hitURL("?typ=sale&val=1&eid=o1&ts=1") // no sid
	res, err := c.Get(t.Context(), u)
	if !errors.Is(err, ErrPermanent) || errors.Is(err, ErrGaveUp) {
		t.Fatalf("err = %v, want ErrPermanent only", err)
	}
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 400 || !strings.HasPrefix(string(se.Body), simulator.ReasonSID) || se.Attempts != 1 {
		t.Fatalf("StatusError = %+v", se)
	}
	if want := "GET " + srv.URL + "/api/hit/acme/42/?…: 400 Bad Request: missing sid"; err.Error() != want {
		t.Errorf("message %q\nwant    %q", err, want)
	}
	if res.Attempts != 1 || srv.sim.Stats().Requests != 1 || len(w.list()) != 0 {
		t.Errorf("attempts %d, server saw %d, waits %v: want 1, 1, none", res.Attempts, srv.sim.Stats().Requests, w.list())
	}
}

func TestClientErrorBodyCappedAt1KiB(t *testing.T) {
	long := strings.Repeat("x", 100<<10) // past the drain limit too
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, long, http.StatusNotFound)
	}))
	defer srv.Close()
	_, err := NewClient(ClientOptions{}).Get(t.Context(), srv.URL)
	var se *StatusError
	if !errors.As(err, &se) || len(se.Body) != 1024 || !errors.Is(err, ErrPermanent) {
		t.Fatalf("err = %.80v, body %d bytes; want a permanent 404 with 1 KiB", err, len(se.Body))
	}
}

func TestClientGivesUp(t *testing.T) {
	srv := newClientTestServer(t, simulator.Options{Fail500: 1})
	var w waits
	c := NewClient(ClientOptions{MaxAttempts: 4, Sleep: w.sleep})
	res, err := c.Get(t.Context(), srv.hitURL(clientTestQuery))
	if !errors.Is(err, ErrGaveUp) || errors.Is(err, ErrPermanent) {
		t.Fatalf("err = %v, want ErrGaveUp and not ErrPermanent", err)
	}
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 500 || se.Attempts != 4 {
		t.Errorf("last failure %+v, want a 500 on attempt 4", se)
	}
	if !strings.Contains(err.Error(), "gave up after 4 attempts: 500 Internal Server Error") {
		t.Errorf("message %q", err)
	}
	if res.Attempts != 4 || srv.sim.Stats().Requests != 4 {
		t.Errorf("attempts %d, server saw %d; want 4", res.Attempts, srv.sim.Stats().Requests)
	}
}

func TestClientCancelDuringBackoff(t *testing.T) {
	srv := newClientTestServer(t, simulator.Options{Fail429: 1, RetryAfter: time.Hour})
	ctx, cancel := context.WithCancel(t.Context())
	sleeping := make(chan struct{})
	c := NewClient(ClientOptions{Sleep: func(ctx context.Context, d time.Duration) error {
		close(sleeping)
		return sleepCtx(ctx, d) // the real, ctx-aware wait (5 minutes here)
	}})
	go func() {
		<-sleeping
		cancel()
	}()
	res, err := c.Get(ctx, srv.hitURL(clientTestQuery))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if errors.Is(err, ErrGaveUp) || errors.Is(err, ErrPermanent) {
		t.Errorf("err = %v is also a failure kind", err)
	}
	if res.Attempts != 1 {
		t.Errorf("attempts %d, want 1", res.Attempts)
	}
}

func TestClientRateLimitBeforeEveryAttempt(t *testing.T) {
	srv := newClientTestServer(t, simulator.Options{Script: func(_ string, attempt int) int {
		if attempt <= 2 {
			return http.StatusServiceUnavailable
		}
		return 0
	}})
	var w waits
	// One request per 1000 s, burst 1: the first attempt takes the burst;
	// the next two must each reserve a later turn. Backoff is nanoseconds.
	c := NewClient(ClientOptions{Rate: 0.001, Burst: 1, BaseBackoff: time.Nanosecond, MaxBackoff: time.Nanosecond, Sleep: w.sleep})
	if _, err := c.Get(t.Context(), srv.hitURL(clientTestQuery)); err != nil {
		t.Fatal(err)
	}
	var turns []time.Duration
	for _, d := range w.list() {
		if d >= time.Second {
			turns = append(turns, d)
		}
	}
	if len(turns) != 2 || turns[0] <= 990*time.Second || turns[0] > 1000*time.Second ||
		turns[1] <= 1990*time.Second || turns[1] > 2000*time.Second {
		t.Errorf("rate waits %v, want about [1000s 2000s]", turns)
	}
	if tok := c.lim.Tokens(); tok > -1.9 {
		t.Errorf("limiter holds %.3f tokens after 3 attempts, want about -2", tok)
	}

	// Lifted: no more waits.
	c.SetRate(0)
	before := len(w.list())
	if _, err := c.Get(t.Context(), srv.hitURL("?sid=d2&typ=t&val=1&eid=o2&ts=1")); err != nil {
		t.Fatal(err)
	}
	if got := w.list()[before:]; len(got) != 0 {
		t.Errorf("waits %v after SetRate(0)", got)
	}
}

func TestClientRetriesConnectionErrors(t *testing.T) {
	srv := newClientTestServer(t, simulator.Options{Script: func(_ string, attempt int) int {
		if attempt == 1 {
			return simulator.StatusDrop
		}
		return 0
	}})
	var w waits
	res, err := NewClient(ClientOptions{Sleep: w.sleep}).Get(t.Context(), srv.hitURL(clientTestQuery))
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 2 || !res.MaybeDuplicated {
		t.Errorf("Result = %+v, want 2 attempts, maybe duplicated", res)
	}

	// Nothing listens: refused, retried, never sent.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	res, err = NewClient(ClientOptions{MaxAttempts: 3, Sleep: w.sleep}).Get(t.Context(), "http://"+addr+"/api/hit/a/b/")
	if !errors.Is(err, ErrGaveUp) {
		t.Fatalf("err = %v, want ErrGaveUp", err)
	}
	if oe, ok := errors.AsType[*net.OpError](err); !ok || oe.Op != "dial" {
		t.Errorf("err = %v, want the dial error wrapped", err)
	}
	if res.Attempts != 3 || res.MaybeDuplicated {
		t.Errorf("Result = %+v, want 3 attempts, not maybe duplicated", res)
	}
}

func TestClientAttemptTimeout(t *testing.T) {
	sim := simulator.New(simulator.Options{})
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			<-r.Context().Done() // never answers the first attempt
			return
		}
		sim.ServeHTTP(w, r)
	}))
	defer srv.Close()
	var w waits
	c := NewClient(ClientOptions{Timeout: 50 * time.Millisecond, Sleep: w.sleep})
	res, err := c.Get(t.Context(), srv.URL+"/api/hit/a/b/"+clientTestQuery)
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 2 || !res.MaybeDuplicated {
		t.Errorf("Result = %+v, want 2 attempts, maybe duplicated", res)
	}
}

func TestClientDoesNotRetrySettingErrors(t *testing.T) {
	for _, u := range []string{"http://[::1", "ftp://example.com/x", "/api/hit/a/b/"} {
		var w waits
		res, err := NewClient(ClientOptions{Sleep: w.sleep}).Get(t.Context(), u)
		if err == nil || errors.Is(err, ErrGaveUp) || errors.Is(err, ErrPermanent) || res.Attempts != 1 {
			t.Errorf("%s: %+v, %v; want one attempt and a plain error", u, res, err)
			continue
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "GET ") {
			t.Errorf("message %q: want the operation", msg)
		}
	}
}

func TestClientReusesConnections(t *testing.T) {
	// Each round, 4 senders have a request in flight at once (the handler
	// holds every answer until the 4th arrives); answers alternate 200 and
	// 404, both with bodies past the 1 KiB kept for errors, which the client
	// must drain for the connection to go back to the pool.
	const senders, rounds = 4, 10
	body := strings.Repeat("x", 8<<10)
	var (
		mu      sync.Mutex
		gate    = make(chan struct{})
		arrived int
		conns   atomic.Int64
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		g := gate
		if arrived++; arrived == senders {
			arrived, gate = 0, make(chan struct{})
			close(g)
		}
		mu.Unlock()
		<-g
		if r.URL.Query().Get("fail") != "" {
			w.WriteHeader(http.StatusNotFound)
		}
		_, _ = w.Write([]byte(body))
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	c := NewClient(ClientOptions{Concurrency: senders})
	for round := range rounds {
		var wg sync.WaitGroup
		for i := range senders {
			wg.Go(func() {
				u := srv.URL + "/"
				if (round+i)%2 == 1 {
					u += "?fail=1"
				}
				_, err := c.Get(t.Context(), u)
				if err != nil && !errors.Is(err, ErrPermanent) {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	// A connection goes back to the pool just after its caller sees the end
	// of the body, so a sender of the next round may now and then dial a
	// fresh one; a pool that loses connections dials about 2 per round.
	if n := conns.Load(); n > senders+2 {
		t.Errorf("%d connections for %d senders over %d rounds, want about %d", n, senders, rounds, senders)
	}
	if cs := c.Stats(); cs.Attempts != senders*rounds || cs.Retries != 0 {
		t.Errorf("client stats %+v", cs)
	}
}

func TestClientHTTP2OverTLS(t *testing.T) {
	sim := simulator.New(simulator.Options{Script: func(identity string, attempt int) int {
		if strings.Contains(identity, "eid=dropped") && attempt == 1 {
			return simulator.StatusDrop // over HTTP/2: the stream is reset
		}
		return 0
	}})
	var protos sync.Map // ProtoMajor -> count
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, _ := protos.LoadOrStore(r.ProtoMajor, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
		sim.ServeHTTP(w, r)
	}))
	srv.EnableHTTP2 = true
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	defer srv.Close()

	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	c := NewClient(ClientOptions{Concurrency: 8, TLSConfig: &tls.Config{RootCAs: roots}})
	if _, err := c.Get(t.Context(), srv.URL+"/api/hit/a/b/"+clientTestQuery); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			if _, err := c.Get(t.Context(), srv.URL+fmt.Sprintf("/api/install/a/b/?sid=d&eid=%d&ts=1", i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	n2 := int64(0)
	if v, ok := protos.Load(2); ok {
		n2 = v.(*atomic.Int64).Load()
	}
	if n2 != 33 {
		t.Errorf("%d of 33 requests over HTTP/2", n2)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1 carrying every request", n)
	}

	res, err := c.Get(t.Context(), srv.URL+"/api/install/a/b/?sid=d&eid=dropped&ts=1")
	if err != nil || res.Attempts != 2 || !res.MaybeDuplicated {
		t.Errorf("reset stream: %+v, %v; want delivered on attempt 2, maybe duplicated", res, err)
	}

	// Without the test certificate: not retried, not a row failure.
	res, err = NewClient(ClientOptions{}).Get(t.Context(), srv.URL+"/api/hit/a/b/"+clientTestQuery)
	if err == nil || errors.Is(err, ErrGaveUp) || errors.Is(err, ErrPermanent) || res.Attempts != 1 {
		t.Errorf("untrusted server: %+v, %v; want one attempt and a plain error", res, err)
	}
}

func TestBackoffFullJitter(t *testing.T) {
	c := NewClient(ClientOptions{BaseBackoff: 100 * time.Millisecond, MaxBackoff: 30 * time.Second})
	for n := 1; n <= 100; n++ {
		ceiling := 30 * time.Second
		if n <= 9 {
			ceiling = min(ceiling, 100*time.Millisecond<<(n-1))
		}
		var top time.Duration
		for range 200 {
			d := c.backoff(n)
			if d < 0 || d >= ceiling {
				t.Fatalf("backoff(%d) = %v, want in [0, %v)", n, d, ceiling)
			}
			top = max(top, d)
		}
		if top < ceiling/2 { // 200 draws all in the lower half: 2^-200
			t.Fatalf("backoff(%d): largest of 200 draws %v, ceiling %v: not spread", n, top, ceiling)
		}
	}
}

func TestRetryAfterParsing(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	c := NewClient(ClientOptions{})
	c.now = func() time.Time { return now }
	for _, tt := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"2", 2 * time.Second}, {" 7 ", 7 * time.Second}, {"0", 0}, {"-3", 0}, {"soon", 0}, {"1.5", 0},
		{"100000", MaxRetryAfter}, {"99999999999999999999", 0},
		{now.Add(3 * time.Second).Format(http.TimeFormat), 3 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{now.Add(24 * time.Hour).Format(http.TimeFormat), MaxRetryAfter},
		{now.Add(4 * time.Second).Format(time.RFC850), 4 * time.Second},
	} {
		if got := c.retryAfter(tt.in); got != tt.want {
			t.Errorf("retryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func BenchmarkClientGet(b *testing.B) {
	srv := httptest.NewServer(simulator.New(simulator.Options{}))
	defer srv.Close()
	c := NewClient(ClientOptions{Concurrency: 8})
	var n atomic.Int64
	b.SetParallelism(2) // 2×GOMAXPROCS senders
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			u := fmt.Sprintf("%s/api/install/a/b/?sid=d&eid=%d&ts=1", srv.URL, n.Add(1))
			if _, err := c.Get(context.Background(), u); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// outageClock is a fake clock for many senders at once: a sleep returns at
// once, having moved the clock to its end unless another sleeper moved it
// further, so that parallel waits overlap as they would in real time.
type outageClock struct {
	fakeClock
	mu       sync.Mutex
	longest  time.Duration
	sleeping atomic.Int64 // sleeps so far
}

func newOutageClock() *outageClock {
	return &outageClock{fakeClock: *newFakeClock()}
}

func (c *outageClock) sleep(ctx context.Context, d time.Duration) error {
	c.sleeping.Add(1)
	c.mu.Lock()
	c.longest = max(c.longest, d)
	if wake := c.now().Add(d); wake.After(c.now()) {
		c.set(wake)
	}
	c.mu.Unlock()
	return ctx.Err()
}

func began(o *simulator.Outage) time.Time {
	t, _ := o.Began()
	return t
}

// TestClientRidesOutOutages: outages shorter than DownAfter, in the middle
// of a stream of requests, cost about their length: no request fails, none
// is lost, no wait exceeds MaxBackoff, and (one sender, so the fake clock
// is exact) the first request after the outage goes at most MaxBackoff
// after its end. The default MaxAttempts sets no count.
func TestClientRidesOutOutages(t *testing.T) {
	for _, length := range []time.Duration{15 * time.Second, 2 * time.Minute} {
		for _, senders := range []int{1, 8} {
			t.Run(fmt.Sprintf("%v/%d senders", length, senders), func(t *testing.T) {
				clock := newOutageClock()
				out := &simulator.Outage{Now: clock.now, After: 100, Length: length}
				srv := newClientTestServer(t, simulator.Options{Script: out.Script})
				c := NewClient(ClientOptions{Now: clock.now, Sleep: clock.sleep})
				const requests = 300
				next := make(chan int)
				errs := make(chan error, requests)
				var wg sync.WaitGroup
				for range senders {
					wg.Go(func() {
						for i := range next {
							_, err := c.Get(t.Context(), srv.hitURL(fmt.Sprintf("?sid=d&typ=t&val=1&eid=o%d&ts=1", i)))
							errs <- err
						}
					})
				}
				for i := range requests {
					next <- i
				}
				close(next)
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Fatalf("a request failed across a %v outage: %v", length, err)
					}
				}
				st := srv.sim.Stats()
				if st.Accepted != requests || st.Duplicates != 0 {
					t.Errorf("simulator accepted %d (%d duplicates), want %d once each", st.Accepted, st.Duplicates, requests)
				}
				if st.Faults.Scripted < 2 || clock.sleeping.Load() == 0 {
					t.Fatalf("%d failures and %d waits: the outage did not happen", st.Faults.Scripted, clock.sleeping.Load())
				}
				if clock.longest > DefaultMaxBackoff {
					t.Errorf("a wait of %v, over MaxBackoff %v", clock.longest, DefaultMaxBackoff)
				}
				// With several senders the fake clock jumps to the end of
				// the longest sleep at once, so another sender's wait may
				// start later on it than it would in real time.
				if late := clock.now().Sub(began(out).Add(length)); senders == 1 && late > DefaultMaxBackoff {
					t.Errorf("the sender came back %v after the outage ended, want at most %v", late, DefaultMaxBackoff)
				}
			})
		}
	}
}

// TestClientDownSince: an outage longer than DownAfter stops every sender
// with ErrDown, and the message says since when Convertro has been down.
func TestClientDownSince(t *testing.T) {
	clock := newOutageClock()
	out := &simulator.Outage{Now: clock.now, After: 20, Length: time.Hour}
	srv := newClientTestServer(t, simulator.Options{Script: out.Script})
	c := NewClient(ClientOptions{Now: clock.now, Sleep: clock.sleep})
	var down error
	for i := range 100 {
		_, err := c.Get(t.Context(), srv.hitURL(fmt.Sprintf("?sid=d&typ=t&val=1&eid=o%d&ts=1", i)))
		if err != nil {
			down = err
			break
		}
	}
	if !errors.Is(down, ErrDown) || errors.Is(down, ErrGaveUp) {
		t.Fatalf("err = %v, want ErrDown", down)
	}
	if d := clock.now().Sub(began(out)); d < DefaultDownAfter || d > DefaultDownAfter+DefaultMaxBackoff {
		t.Errorf("down declared %v into the outage, want %v (plus at most one wait)", d, DefaultDownAfter)
	}
	want := "Convertro down since " + began(out).Format(time.RFC3339) + ": every request has failed for 5m0s"
	if msg := down.Error(); !strings.Contains(msg, want) || strings.Contains(msg, "sid=") {
		t.Errorf("message %q\nwant it to contain %q and no query", msg, want)
	}
}

// TestClientGivesUpOnOneRequest: a request that fails for DownAfter while
// the others go through gives up (the run stops on it) instead of retrying
// for ever; Convertro is not down.
func TestClientGivesUpOnOneRequest(t *testing.T) {
	srv := newClientTestServer(t, simulator.Options{Script: func(identity string, _ int) int {
		if strings.Contains(identity, "eid=poison") {
			return http.StatusInternalServerError
		}
		return 0
	}})
	clock := newFakeClock()
	var c *Client
	others := 0
	c = NewClient(ClientOptions{Now: clock.now, DownAfter: time.Minute, Sleep: func(ctx context.Context, d time.Duration) error {
		clock.advance(d)
		others++
		_, err := c.Get(ctx, srv.hitURL(fmt.Sprintf("?sid=d&typ=t&val=1&eid=ok%d&ts=1", others)))
		return err
	}})
	res, err := c.Get(t.Context(), srv.hitURL("?sid=d&typ=t&val=1&eid=poison&ts=1"))
	if !errors.Is(err, ErrGaveUp) || errors.Is(err, ErrDown) {
		t.Fatalf("err = %v, want ErrGaveUp, not ErrDown", err)
	}
	if !strings.Contains(err.Error(), "while other requests went through: 500 Internal Server Error") {
		t.Errorf("message %q", err)
	}
	if res.Attempts < 3 || others != res.Attempts-1 {
		t.Errorf("%d attempts, %d other requests in between", res.Attempts, others)
	}
}

// TestClientUnauthorized: 401 and 403 are not retried and not refusals of
// the row: ErrUnauthorized, with the status, the body's first 200 bytes and
// what to check.
func TestClientUnauthorized(t *testing.T) {
	for _, code := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			body := "token revoked for client acme " + strings.Repeat("x", 500)
			var n atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n.Add(1)
				http.Error(w, body, code)
			}))
			defer srv.Close()
			var w waits
			res, err := NewClient(ClientOptions{Sleep: w.sleep}).Get(t.Context(), srv.URL+"/api/hit/acme/42/"+clientTestQuery)
			if !errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrPermanent) || errors.Is(err, ErrGaveUp) {
				t.Fatalf("err = %v, want ErrUnauthorized only", err)
			}
			var se *StatusError
			if !errors.As(err, &se) || se.Code != code || !strings.HasPrefix(string(se.Body), body) {
				t.Errorf("StatusError %+v, want %d with the whole body", se, code)
			}
			msg := err.Error()
			for _, want := range []string{strconv.Itoa(code) + " " + http.StatusText(code), "token revoked for client acme", "check the client name, the site id and the endpoint's credentials"} {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q lacks %q", msg, want)
				}
			}
			if strings.Count(msg, "x") > 210 || strings.Contains(msg, "sid=") {
				t.Errorf("message %q: want at most 200 bytes of body and no query", msg)
			}
			if res.Attempts != 1 || n.Load() != 1 || len(w.list()) != 0 {
				t.Errorf("%d attempts, %d requests, waits %v: want one, no retry", res.Attempts, n.Load(), w.list())
			}
		})
	}
}

// TestClientDoesNotFollowRedirects: a 302 to another origin is not
// followed: that origin receives nothing; the failure is permanent and
// names where it pointed, without userinfo or query.
func TestClientDoesNotFollowRedirects(t *testing.T) {
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
	}))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		to := strings.Replace(other.URL, "http://", "http://mallory:s3cret@", 1) + r.URL.RequestURI()
		http.Redirect(w, r, to, http.StatusFound)
	}))
	defer srv.Close()
	var w waits
	res, err := NewClient(ClientOptions{Sleep: w.sleep}).Get(t.Context(), srv.URL+"/api/hit/acme/42/"+clientTestQuery)
	if !errors.Is(err, ErrPermanent) || errors.Is(err, ErrUnauthorized) {
		t.Fatalf("err = %v, want ErrPermanent", err)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("the redirect's target received %d requests", n)
	}
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusFound || se.Location != other.URL+"/api/hit/acme/42/?…" || se.Body != nil {
		t.Errorf("StatusError %+v, want a 302 to %s/api/hit/acme/42/?… and no body", se, other.URL)
	}
	msg := err.Error()
	if !strings.Contains(msg, "302 Found: a redirect to "+other.URL+"/api/hit/acme/42/?…, not followed") ||
		strings.Contains(msg, "s3cret") || strings.Contains(msg, "mallory") || strings.Contains(msg, "sid=") {
		t.Errorf("message %q", msg)
	}
	if res.Attempts != 1 || len(w.list()) != 0 {
		t.Errorf("%d attempts, waits %v: want one, no retry", res.Attempts, w.list())
	}
}

// TestClientErrorsNameNoQuery: whatever the failure, the error names the
// request without its query (a person's device id, user id, user agent and
// IP) and without userinfo.
func TestClientErrorsNameNoQuery(t *testing.T) {
	const query = "?sid=device-123&id=user-456&cua=Mozilla&cip=203.0.113.9&typ=sale&val=1&eid=o1&ts=1"
	srv := newClientTestServer(t, simulator.Options{Script: func(identity string, _ int) int {
		switch {
		case strings.HasPrefix(identity, "/api/hit/bad/"):
			return http.StatusBadRequest
		case strings.HasPrefix(identity, "/api/hit/busy/"):
			return http.StatusServiceUnavailable
		case strings.HasPrefix(identity, "/api/hit/drop/"):
			return simulator.StatusDrop
		}
		return 0
	}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var w waits
	c := NewClient(ClientOptions{MaxAttempts: 2, Sleep: w.sleep})
	base := strings.Replace(srv.URL, "http://", "http://user:pw@", 1)
	for _, tc := range []struct {
		name string
		ctx  context.Context
		url  string
	}{
		{"400", t.Context(), base + "/api/hit/bad/1/"},
		{"503", t.Context(), base + "/api/hit/busy/1/"},
		{"dropped", t.Context(), base + "/api/hit/drop/1/"},
		{"refused", t.Context(), closed + "/api/hit/a/1/"},
		{"cancelled", ctx, base + "/api/hit/a/1/"},
		{"malformed", t.Context(), "http://[::1/api/hit/a/1/"},
	} {
		_, err := c.Get(tc.ctx, tc.url+query)
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		msg := err.Error()
		for _, secret := range []string{"device-123", "user-456", "Mozilla", "203.0.113.9", "sid=", "pw@"} {
			if strings.Contains(msg, secret) {
				t.Errorf("%s: message %q holds %q", tc.name, msg, secret)
			}
		}
		if !strings.HasPrefix(msg, "GET ") {
			t.Errorf("%s: message %q does not name the operation", tc.name, msg)
		}
	}
}

// TestClientDownWhenTheLastAnswerCameAfterItsFirstFailure: a request fails
// once, an answer to a request sent before the outage then comes back, and
// from there every attempt fails. Convertro's failing streak starts a wait
// later than the request's, so the request has failed for DownAfter first;
// it must not give up alone (no answer came in its last waits) but stop
// with ErrDown when the streak reaches DownAfter. The late answer takes
// 10 s and no wait lasts a second, so some attempt falls between the
// request's minute and the streak's.
func TestClientDownWhenTheLastAnswerCameAfterItsFirstFailure(t *testing.T) {
	srv := newClientTestServer(t, simulator.Options{Script: func(identity string, _ int) int {
		if strings.Contains(identity, "eid=late") {
			return 0
		}
		return http.StatusServiceUnavailable
	}})
	clock := newFakeClock()
	var (
		c      *Client
		waited int
		streak time.Time // the failure after the late answer
	)
	c = NewClient(ClientOptions{Now: clock.now, DownAfter: time.Minute, MaxBackoff: time.Second, Sleep: func(ctx context.Context, d time.Duration) error {
		waited++
		if waited == 1 {
			clock.advance(10 * time.Second)
			if _, err := c.Get(ctx, srv.hitURL("?sid=d&typ=t&val=1&eid=late&ts=1")); err != nil {
				return err
			}
		}
		clock.advance(d)
		if waited == 1 {
			streak = clock.now()
		}
		return ctx.Err()
	}})
	_, err := c.Get(t.Context(), srv.hitURL("?sid=d&typ=t&val=1&eid=o1&ts=1"))
	if !errors.Is(err, ErrDown) || errors.Is(err, ErrGaveUp) {
		t.Fatalf("err = %v, want ErrDown, not ErrGaveUp", err)
	}
	if d := clock.now().Sub(streak); d < time.Minute {
		t.Errorf("down declared %v into the streak, want at least %v", d, time.Minute)
	}
	if want := "Convertro down since " + streak.Format(time.RFC3339); !strings.Contains(err.Error(), want) {
		t.Errorf("message %q, want it to contain %q", err, want)
	}
}
