package simulator

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// StatusDrop, returned by Options.Script, drops the connection without an answer.
const StatusDrop = -1

// Options configures a Simulator. The zero value accepts every valid request,
// for any client name and site id, and never misbehaves.
type Options struct {
	// ClientName and SiteID, when set, must match the path segments of every
	// request; "" accepts any.
	ClientName, SiteID string

	// Seed makes the fault shares below reproducible (see the package doc).
	Seed int64
	// Fail500 and Fail429 are the shares (0–1) of attempts answered 500 and 429.
	Fail500, Fail429 float64
	// RetryAfter goes with every 429 (fault or scripted), in whole seconds
	// rounded up; 0 sends no Retry-After header.
	RetryAfter time.Duration
	// RetryAfterDate sends Retry-After as an HTTP date (Now()+RetryAfter)
	// instead of seconds.
	RetryAfterDate bool
	// Slow is the share of attempts answered normally but only after SlowDelay.
	Slow      float64
	SlowDelay time.Duration
	// Drop is the share of attempts whose connection is closed without an answer.
	Drop float64
	// Delay is added to every answer to an API path (a far-away Convertro).
	Delay time.Duration

	// MaxRPS is a hard ceiling on requests per second (0 = none), with a
	// burst of one second's worth; requests above it are answered 429 with
	// Retry-After: 1 and do not count as attempts.
	MaxRPS float64

	// RejectSIDs are device ids answered with a permanent 400.
	RejectSIDs []string

	// Record receives one JSON line per accepted request:
	// {"path":"/api/hit/c/s/","query":{"sid":"…",…},"raw":"sid=…&typ=…"}.
	// Writes are buffered;
	// call Flush or Close.
	Record io.Writer

	// Script, when set, is consulted for every attempt before the random
	// faults, with the request's identity (path?raw-query) and its attempt
	// number (1 the first time that identity arrives). It returns 0 to let
	// the request go on, StatusDrop to drop the connection, or an HTTP status
	// to answer with at once (a 429 carries Retry-After as configured).
	Script func(identity string, attempt int) int

	// Now is the clock of the MaxRPS ceiling and of HTTP-date Retry-After
	// values; nil means time.Now.
	Now func() time.Time
}

// Stats are the simulator's counters, also served as JSON at GET /_stats.
type Stats struct {
	// Requests counts every request to a path other than /_stats.
	Requests int64 `json:"requests"`
	// Accepted requests were answered 200 and recorded.
	Accepted int64 `json:"accepted"`
	// Rejected requests were answered 400 or 405; Reasons counts them by reason.
	Rejected int64            `json:"rejected"`
	Reasons  map[string]int64 `json:"reasons"`
	// Duplicates counts accepted requests whose key was accepted before
	// (see the package doc for the keys).
	Duplicates int64 `json:"duplicates"`
	// ByKind counts accepted requests by kind: "user", "hit", "install".
	ByKind map[string]int64 `json:"by_kind"`
	Faults Faults           `json:"faults"`
}

// Faults counts the misbehaviour the simulator produced, by kind.
type Faults struct {
	Status500 int64 `json:"status_500"`
	Status429 int64 `json:"status_429"`
	Slow      int64 `json:"slow"`
	Drop      int64 `json:"drop"`
	// Ceiling counts 429s for exceeding MaxRPS.
	Ceiling int64 `json:"ceiling"`
	// Scripted counts answers and drops decided by Options.Script.
	Scripted int64 `json:"scripted"`
}

// Reasons for rejection, the keys of Stats.Reasons; the answer's body starts
// with one of them and may add details.
const (
	ReasonMethod      = "method not allowed"
	ReasonUnknownPath = "unknown path"
	ReasonClientName  = "wrong client name"
	ReasonSiteID      = "wrong site id"
	ReasonQuery       = "malformed query"
	ReasonSID         = "missing sid"
	ReasonTyp         = "missing typ"
	ReasonVal         = "val not a number"
	ReasonTS          = "ts not an integer"
	ReasonEID         = "missing eid"
	ReasonID          = "missing id"
	ReasonRejectedSID = "rejected sid"
	// ReasonScripted counts 400s and 405s returned by Options.Script.
	ReasonScripted = "scripted"
)

// Simulator is a Convertro stand-in: an http.Handler that validates requests
// as the wire design page describes, records the accepted ones and
// misbehaves on request.
type Simulator struct {
	o      Options
	now    func() time.Time
	reject map[string]bool

	mu       sync.Mutex
	ceiling  *rate.Limiter // nil without MaxRPS
	attempts map[uint64]int
	seen     map[uint64]struct{}
	hashSeed maphash.Seed
	stats    Stats

	recMu  sync.Mutex
	rec    *bufio.Writer // nil without Record or after Close
	recEnc *json.Encoder
	recErr error
}

// New returns a Simulator configured by o.
func New(o Options) *Simulator {
	s := &Simulator{
		o:        o,
		now:      o.Now,
		reject:   make(map[string]bool, len(o.RejectSIDs)),
		attempts: make(map[uint64]int),
		seen:     make(map[uint64]struct{}),
		hashSeed: maphash.MakeSeed(),
		stats:    Stats{Reasons: map[string]int64{}, ByKind: map[string]int64{}},
	}
	if s.now == nil {
		s.now = time.Now
	}
	for _, sid := range o.RejectSIDs {
		s.reject[sid] = true
	}
	if o.MaxRPS > 0 {
		s.ceiling = rate.NewLimiter(rate.Limit(o.MaxRPS), max(1, int(math.Ceil(o.MaxRPS))))
	}
	if o.Record != nil {
		s.rec = bufio.NewWriterSize(o.Record, 64<<10)
		s.recEnc = json.NewEncoder(s.rec)
		s.recEnc.SetEscapeHTML(false)
	}
	return s
}

// Stats returns a copy of the counters.
func (s *Simulator) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Reasons = make(map[string]int64, len(s.stats.Reasons))
	for k, v := range s.stats.Reasons {
		st.Reasons[k] = v
	}
	st.ByKind = make(map[string]int64, len(s.stats.ByKind))
	for k, v := range s.stats.ByKind {
		st.ByKind[k] = v
	}
	return st
}

// Flush writes buffered record lines to Options.Record.
func (s *Simulator) Flush() error {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	return s.flushLocked()
}

func (s *Simulator) flushLocked() error {
	if s.rec != nil && s.recErr == nil {
		if err := s.rec.Flush(); err != nil {
			s.recErr = fmt.Errorf("flush record: %w", err)
		}
	}
	return s.recErr
}

// Close flushes the record and stops recording: requests are still answered,
// but no longer written, so the caller may close Options.Record afterwards.
// It does not close Options.Record.
func (s *Simulator) Close() error {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	err := s.flushLocked()
	s.rec, s.recEnc = nil, nil
	return err
}

// ListenAndServe serves the simulator on addr until ctx ends, then shuts the
// server down and flushes the record. It returns nil after a shutdown caused
// by ctx.
func (s *Simulator) ListenAndServe(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("simulator listen %s: %w", addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve is ListenAndServe on a listener the caller opened (for example on
// port 0, to print the address). It closes ln.
func (s *Simulator) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		// Requests inherit ctx, so slow answers and delays end at shutdown.
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	// Someone may read the record while the simulator runs (a manual
	// `simulate` session), so it reaches the file at least every second.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var err error
	for done := false; !done; {
		select {
		case <-tick.C:
			_ = s.Flush() // a failure is sticky: returned below
		case err = <-errc:
			done = true
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			err = srv.Shutdown(sctx)
			cancel()
			if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
				err = serr
			}
			done = true
		}
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	if err != nil {
		err = fmt.Errorf("simulator serve %s: %w", ln.Addr(), err)
	}
	return errors.Join(err, s.Flush())
}

// ServeHTTP answers one request; see the package doc for the order of checks.
func (s *Simulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/_stats" && r.Method == http.MethodGet {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.Stats())
		return
	}
	s.mu.Lock()
	s.stats.Requests++
	if s.ceiling != nil && !s.ceiling.AllowN(s.now(), 1) {
		s.stats.Faults.Ceiling++
		s.mu.Unlock()
		if !s.wait(w, r, s.o.Delay) {
			return
		}
		w.Header().Set("Retry-After", "1")
		http.Error(w, "too many requests: above the simulator's ceiling", http.StatusTooManyRequests)
		return
	}
	identity := r.URL.Path + "?" + r.URL.RawQuery
	id := s.hash(identity)
	s.attempts[id]++
	attempt := s.attempts[id]
	s.mu.Unlock()

	if !s.wait(w, r, s.o.Delay) {
		return
	}
	if s.o.Script != nil {
		if code := s.o.Script(identity, attempt); code != 0 {
			s.count(func(st *Stats) { st.Faults.Scripted++ })
			if code == StatusDrop {
				drop(w)
				return
			}
			if code == http.StatusBadRequest || code == http.StatusMethodNotAllowed {
				s.count(func(st *Stats) { st.Rejected++; st.Reasons[ReasonScripted]++ })
			}
			s.fail(w, code)
			return
		}
	}
	switch u := s.draw(identity, attempt); {
	case u < s.o.Drop:
		s.count(func(st *Stats) { st.Faults.Drop++ })
		drop(w)
		return
	case u < s.o.Drop+s.o.Fail500:
		s.count(func(st *Stats) { st.Faults.Status500++ })
		s.fail(w, http.StatusInternalServerError)
		return
	case u < s.o.Drop+s.o.Fail500+s.o.Fail429:
		s.count(func(st *Stats) { st.Faults.Status429++ })
		s.fail(w, http.StatusTooManyRequests)
		return
	case u < s.o.Drop+s.o.Fail500+s.o.Fail429+s.o.Slow:
		s.count(func(st *Stats) { st.Faults.Slow++ })
		if !s.wait(w, r, s.o.SlowDelay) {
			return
		}
	}

	kind, q, code, reason, detail := s.validate(r)
	if reason != "" {
		s.count(func(st *Stats) { st.Rejected++; st.Reasons[reason]++ })
		msg := reason
		if detail != "" {
			msg += ": " + detail
		}
		http.Error(w, msg, code)
		return
	}
	dup := s.accept(kind, q)
	s.count(func(st *Stats) {
		st.Accepted++
		st.ByKind[kind]++
		if dup {
			st.Duplicates++
		}
	})
	s.record(r.URL.Path, r.URL.RawQuery, q)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok\n")
}

// validate checks a request against the wire design page. It returns the
// request kind and its query (first value of each parameter), or a status, a
// reason (one of the Reason constants) and details.
func (s *Simulator) validate(r *http.Request) (kind string, q map[string]string, code int, reason, detail string) {
	bad := func(reason, detail string) (string, map[string]string, int, string, string) {
		return "", nil, http.StatusBadRequest, reason, detail
	}
	if r.Method != http.MethodGet {
		return "", nil, http.StatusMethodNotAllowed, ReasonMethod, r.Method
	}
	// /api/{kind}/{clientName}/{siteId}/
	parts := strings.Split(r.URL.Path, "/")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "api" || parts[5] != "" || parts[3] == "" || parts[4] == "" {
		return bad(ReasonUnknownPath, r.URL.Path)
	}
	kind = parts[2]
	if kind != "user" && kind != "hit" && kind != "install" {
		return bad(ReasonUnknownPath, r.URL.Path)
	}
	if s.o.ClientName != "" && parts[3] != s.o.ClientName {
		return bad(ReasonClientName, strconv.Quote(parts[3]))
	}
	if s.o.SiteID != "" && parts[4] != s.o.SiteID {
		return bad(ReasonSiteID, strconv.Quote(parts[4]))
	}
	values, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return bad(ReasonQuery, err.Error())
	}
	q = make(map[string]string, len(values))
	for k, v := range values {
		q[k] = v[0]
	}
	if q["sid"] == "" {
		return bad(ReasonSID, "")
	}
	switch kind {
	case "hit":
		if q["typ"] == "" {
			return bad(ReasonTyp, "")
		}
		if _, ok := values["val"]; !ok {
			return bad(ReasonVal, "missing")
		}
		if q["eid"] == "" {
			return bad(ReasonEID, "")
		}
	case "install":
		if q["eid"] == "" {
			return bad(ReasonEID, "")
		}
	case "user":
		if q["id"] == "" {
			return bad(ReasonID, "")
		}
	}
	if v, ok := values["val"]; ok {
		if f, err := strconv.ParseFloat(v[0], 64); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return bad(ReasonVal, strconv.Quote(v[0]))
		}
	}
	if v, ok := values["ts"]; !ok {
		return bad(ReasonTS, "missing")
	} else if _, err := strconv.ParseInt(v[0], 10, 64); err != nil {
		return bad(ReasonTS, strconv.Quote(v[0]))
	}
	if s.reject[q["sid"]] {
		return bad(ReasonRejectedSID, strconv.Quote(q["sid"]))
	}
	return kind, q, 0, "", ""
}

// userKeyParams are the parameters that do not make a user request a
// different fact: the context of the call, not what it says.
var userKeyParams = map[string]bool{"cua": true, "cip": true}

// accept notes the request's duplicate key and reports whether it was seen
// before. Hits and installs are keyed by (kind, typ, eid), Convertro's event
// id; user requests have no event id, so they are keyed by every parameter
// but cua and cip (sid, id, ts and any trait).
func (s *Simulator) accept(kind string, q map[string]string) bool {
	var h maphash.Hash
	h.SetSeed(s.hashSeed)
	field := func(v string) { h.WriteString(v); h.WriteByte(0) }
	field(kind)
	if kind == "user" {
		keys := make([]string, 0, len(q))
		for k := range q {
			if !userKeyParams[k] {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			field(k)
			field(q[k])
		}
	} else {
		field(q["typ"])
		field(q["eid"])
	}
	key := h.Sum64()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[key]; ok {
		return true
	}
	s.seen[key] = struct{}{}
	return false
}

type recordLine struct {
	Path  string            `json:"path"`
	Query map[string]string `json:"query"`
	// Raw is the query as it came, parameter order and escaping included:
	// the exact wire, which the decoded Query cannot show.
	Raw string `json:"raw"`
}

func (s *Simulator) record(path, raw string, q map[string]string) {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	if s.recEnc == nil || s.recErr != nil {
		return
	}
	if err := s.recEnc.Encode(recordLine{path, q, raw}); err != nil {
		s.recErr = fmt.Errorf("write record: %w", err)
	}
}

// fail answers with code; a 429 carries Retry-After as configured.
func (s *Simulator) fail(w http.ResponseWriter, code int) {
	if code == http.StatusTooManyRequests && s.o.RetryAfter > 0 {
		if s.o.RetryAfterDate {
			w.Header().Set("Retry-After", s.now().Add(s.o.RetryAfter).UTC().Format(http.TimeFormat))
		} else {
			secs := int64((s.o.RetryAfter + time.Second - 1) / time.Second)
			w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		}
	}
	text := http.StatusText(code)
	if text == "" {
		text = "status " + strconv.Itoa(code)
	}
	http.Error(w, "simulated "+strings.ToLower(text), code)
}

// drop closes the connection without an answer. HTTP/2 cannot hand its
// connection over, so there the stream is reset instead.
func drop(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // the server resets the stream and logs nothing
	}
	_ = conn.Close()
}

// wait sleeps d unless the request ends first (client gone or server
// shutting down); then it answers 503, so that a request interrupted by a
// shutdown is retried rather than taken for delivered, and reports false.
func (s *Simulator) wait(w http.ResponseWriter, r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		http.Error(w, "simulator shutting down", http.StatusServiceUnavailable)
		return false
	}
}

func (s *Simulator) count(f func(*Stats)) {
	s.mu.Lock()
	f(&s.stats)
	s.mu.Unlock()
}

// hash keys the per-identity attempt counter. It need not be stable across
// runs: only draw must be.
func (s *Simulator) hash(identity string) uint64 {
	return maphash.String(s.hashSeed, identity)
}

// draw returns a number in [0, 1) that depends only on the seed, the request
// identity and the attempt number, so a request meets the same faults in
// every run whatever the arrival order.
func (s *Simulator) draw(identity string, attempt int) float64 {
	// FNV-1a over (seed, attempt, identity), then a SplitMix64 finaliser to
	// spread FNV's weak low bits.
	var buf [16]byte
	binary.LittleEndian.PutUint64(buf[:8], uint64(s.o.Seed))
	binary.LittleEndian.PutUint64(buf[8:], uint64(attempt))
	h := uint64(14695981039346656037)
	for _, b := range buf {
		h = (h ^ uint64(b)) * 1099511628211
	}
	for i := 0; i < len(identity); i++ {
		h = (h ^ uint64(identity[i])) * 1099511628211
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return float64(h>>11) / (1 << 53)
}
