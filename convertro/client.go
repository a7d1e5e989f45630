package convertro

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Client defaults, used where ClientOptions leaves a field zero.
const (
	DefaultConcurrency = 16
	DefaultTimeout     = 10 * time.Second
	DefaultBaseBackoff = 100 * time.Millisecond
	DefaultMaxBackoff  = 30 * time.Second
	DefaultUserAgent   = "convertro-etl/dev"

	// MaxRetryAfter caps a server's Retry-After. It is honoured beyond
	// MaxBackoff (the server knows its own load better than our schedule),
	// but a misconfigured server must not park a sender for hours.
	MaxRetryAfter = 5 * time.Minute
)

const (
	errorBodyLimit   = 1 << 10  // kept in StatusError.Body
	errorBodyMessage = 200      // of it, quoted in StatusError.Error
	drainLimit       = 64 << 10 // read past this and the connection is not worth keeping
)

// Error kinds returned by Client.Get, tested with errors.Is.
var (
	// ErrPermanent: Convertro refused the request (a 4xx other than 408 and
	// 429) and sending it again cannot help. The error is a *StatusError.
	ErrPermanent = errors.New("permanent failure")
	// ErrGaveUp: every attempt met a transient failure, for MaxAttempts or
	// for DownAfter while other requests went through. The error also wraps
	// the last one (a *StatusError or a transport error).
	ErrGaveUp = errors.New("gave up")
	// ErrUnauthorized: Convertro answered 401 or 403. The credentials or the
	// account (client name, site id, the endpoint's credentials) are wrong or
	// were revoked: no request can succeed, so it is neither retried nor a
	// refusal of the row. The error is also a *StatusError.
	ErrUnauthorized = errors.New("Convertro refused the credentials")
)

// StatusError is a non-2xx answer.
type StatusError struct {
	Code int
	// Body is the start of the answer's body, at most 1 KiB; nil for a
	// redirect, whose body only repeats Location (and the request's query).
	Body []byte
	// Location is where a redirect (3xx) pointed, resolved against the
	// request and without userinfo, query or fragment: redirects are never
	// followed, so this is only said.
	Location string
	// Attempts made for the request, this one included.
	Attempts int
	// RetryAfter is the server's Retry-After, capped at MaxRetryAfter; 0 when absent.
	RetryAfter time.Duration
}

// Error is the status, then where a redirect pointed or the body's first
// 200 bytes.
func (e *StatusError) Error() string {
	s := strconv.Itoa(e.Code)
	if t := http.StatusText(e.Code); t != "" {
		s += " " + t
	}
	if e.Code >= 300 && e.Code < 400 {
		loc := e.Location
		if loc == "" {
			loc = "nowhere (no Location)"
		}
		return s + ": a redirect to " + loc + ", not followed"
	}
	if b := bytes.TrimSpace(e.Body); len(b) > 0 {
		if len(b) > errorBodyMessage {
			b = append(b[:errorBodyMessage:errorBodyMessage], "…"...)
		}
		s += ": " + string(b)
	}
	return s
}

// Temporary reports whether the same request may succeed later: 408, 429 and 5xx.
func (e *StatusError) Temporary() bool {
	return e.Code == http.StatusRequestTimeout || e.Code == http.StatusTooManyRequests || e.Code >= 500
}

// unauthorized reports a 401 or 403.
func (e *StatusError) unauthorized() bool {
	return e.Code == http.StatusUnauthorized || e.Code == http.StatusForbidden
}

// Is makes errors.Is(err, ErrUnauthorized) true for 401 and 403, and
// errors.Is(err, ErrPermanent) for the other answers that are not Temporary.
func (e *StatusError) Is(target error) bool {
	switch target {
	case ErrUnauthorized:
		return e.unauthorized()
	case ErrPermanent:
		return !e.Temporary() && !e.unauthorized()
	}
	return false
}

// ClientOptions configures a Client; zero fields take the Default values.
type ClientOptions struct {
	// Concurrency is how many requests callers run at once; it sizes the
	// connection pool so that every sender keeps its connection alive.
	Concurrency int
	// Timeout bounds one attempt: connecting, sending, and reading the answer.
	Timeout time.Duration
	// MaxAttempts bounds the attempts of one request; 0 (the default) is no
	// count: a request is retried until it goes through, until Convertro is
	// down (DownAfter), or until it alone has failed for DownAfter while
	// other requests went through (ErrGaveUp). With a negative DownAfter and
	// no MaxAttempts a request is retried for as long as ctx lasts.
	MaxAttempts int
	// BaseBackoff and MaxBackoff shape the wait before retry n (n ≥ 1): a
	// uniform random duration in [0, min(MaxBackoff, BaseBackoff·2^(n-1))).
	BaseBackoff, MaxBackoff time.Duration
	// Rate is the requests per second shared by all callers of the Client, for
	// every attempt (retries included); 0 is unlimited. Burst is how many may
	// go at once after a pause (default 1).
	Rate  float64
	Burst int
	// UserAgent is sent with every request: "convertro-etl/<version>".
	UserAgent string
	// Transport replaces the pooled transport (the TLSConfig and Concurrency
	// options then do not apply).
	Transport http.RoundTripper
	// TLSConfig is used by the pooled transport, for example to trust a test
	// server's certificate.
	TLSConfig *tls.Config
	// Sleep waits d unless ctx ends first, and then returns ctx's error. It
	// is used for backoff and rate-limit waits; tests record waits through it.
	// The Client ends ctx when Convertro is declared down (see DownAfter).
	Sleep func(ctx context.Context, d time.Duration) error
	// Now is the clock of the adaptive throttle, of DownAfter and of
	// HTTP-date Retry-After values; nil is time.Now.
	Now func() time.Time

	// Adaptive lowers the rate limit when Convertro answers 429 to more than
	// 5% of the requests of a short window (by 30%, at most once a window),
	// and raises it again after every window without a 429, up to Rate: by
	// 5%, and by 1% once past the rate Convertro accepted when it last
	// pushed back (at least 1 request/s). With Rate 0 the limit starts off,
	// begins from 70% of the accepted rate, and is lifted again once it is
	// half as high again as that rate. Retry-After is honoured as well. The
	// zero value leaves the rate alone, as Rate says.
	//
	// Every 429 counts as a sign of load: a Convertro that answers 429 to a
	// share of requests whatever the rate drives the limit down to 1
	// request/s (or Rate, if lower).
	Adaptive bool
	// DownAfter is how long Convertro may fail every request (408, 429, 5xx,
	// timeouts, connection errors; any 2xx or other 4xx shows it up) before
	// the Client stops: from then on every Get, including those waiting to
	// retry, returns ErrDown. Zero is DefaultDownAfter; negative never stops.
	DownAfter time.Duration
}

// Result is a delivered request.
type Result struct {
	// Status is the 2xx code of the answer.
	Status int
	// Attempts made, the successful one included.
	Attempts int
	// MaybeDuplicated is set when an earlier attempt failed after the request
	// may have reached Convertro (a timeout or a connection lost after
	// sending), so Convertro may have received it twice.
	MaybeDuplicated bool
}

// ClientStats are the Client's counters since it was made.
type ClientStats struct {
	// Attempts counts requests sent (each retry is one more).
	Attempts int64
	// Retries counts attempts that followed a failed one.
	Retries int64
}

// Client sends Convertro requests: GETs with retries, backoff and a shared
// rate limit. It is safe for concurrent use.
type Client struct {
	hc          *http.Client
	lim         *rate.Limiter
	timeout     time.Duration
	maxAttempts int           // 0: no count
	giveUpAfter time.Duration // a request failing this long gives up; < 0 never
	base, max   time.Duration
	userAgent   string
	sleep       func(context.Context, time.Duration) error // nil: a timer, which also wakes when down
	now         func() time.Time
	thr         *throttle // nil unless Adaptive
	health      *health

	attempts, retries atomic.Int64
}

// NewClient returns a Client with o's settings.
func NewClient(o ClientOptions) *Client {
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.BaseBackoff <= 0 {
		o.BaseBackoff = DefaultBaseBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.Burst <= 0 {
		o.Burst = 1
	}
	if o.UserAgent == "" {
		o.UserAgent = DefaultUserAgent
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.DownAfter == 0 {
		o.DownAfter = DefaultDownAfter
	}
	rt := o.Transport
	if rt == nil {
		rt = newPooledTransport(o.Concurrency, o.TLSConfig)
	}
	c := &Client{
		// A redirect is never followed: Convertro's API does not redirect,
		// and following one would send every row (and a Referer with its
		// URL) to wherever it points. It comes back as a *StatusError.
		hc: &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
		// Burst must be at least 1 even while unlimited, so that SetRate can
		// later switch to a finite rate.
		lim:         rate.NewLimiter(rpsLimit(o.Rate), o.Burst),
		timeout:     o.Timeout,
		maxAttempts: max(0, o.MaxAttempts),
		giveUpAfter: o.DownAfter,
		base:        o.BaseBackoff,
		max:         o.MaxBackoff,
		userAgent:   o.UserAgent,
		sleep:       o.Sleep,
		now:         o.Now,
		health:      newHealth(o.DownAfter),
	}
	if o.Adaptive {
		c.thr = newThrottle(o.Rate, o.Now, func(rps float64) { c.lim.SetLimit(rpsLimit(rps)) })
	}
	return c
}

// newPooledTransport is one keep-alive pool for the whole run. Go keeps only 2 idle
// connections per host by default: with more senders, every request past the
// second would open (and TLS-handshake) a new connection.
func newPooledTransport(concurrency int, tlsConfig *tls.Config) *http.Transport {
	if tlsConfig != nil {
		tlsConfig = tlsConfig.Clone()
	}
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSClientConfig: tlsConfig,
		// A custom Transport speaks HTTP/2 only when asked; over HTTP/2 one
		// connection carries all senders' requests at once.
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          concurrency,
		MaxIdleConnsPerHost:   concurrency,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

func rpsLimit(rps float64) rate.Limit {
	if rps <= 0 {
		return rate.Inf
	}
	return rate.Limit(rps)
}

// SetRate changes the shared requests-per-second limit (0 = unlimited) for
// the attempts that start from now on; callers already waiting keep their turn.
// An Adaptive Client takes rps as its new ceiling and starts from it.
func (c *Client) SetRate(rps float64) {
	if c.thr != nil {
		c.thr.setCeiling(rps)
		return
	}
	c.lim.SetLimit(rpsLimit(rps))
}

// Rate returns the current limit in requests per second; 0 is unlimited.
func (c *Client) Rate() float64 {
	if l := c.lim.Limit(); l != rate.Inf {
		return float64(l)
	}
	return 0
}

// RateHistory returns the latest changes of the limit made by the adaptive
// throttle and SetRate, oldest first: at most 600, one per change. It is nil
// for a Client that is not Adaptive.
func (c *Client) RateHistory() []RatePoint {
	if c.thr == nil {
		return nil
	}
	return c.thr.history()
}

// Stats returns the Client's counters.
func (c *Client) Stats() ClientStats {
	return ClientStats{Attempts: c.attempts.Load(), Retries: c.retries.Load()}
}

// Get sends a GET to rawURL until it is answered 2xx, a failure that no
// retry can fix occurs, Convertro is down or ctx ends. Before every attempt
// it waits for the rate limit. Transient failures (408, 429, 5xx, timeouts,
// connection errors) are retried after a backoff with full jitter (at most
// MaxBackoff), or after the server's Retry-After when it sends one.
//
// Errors name the operation and the request without its query, which holds
// a person's device id, user id, user agent and IP ("GET
// https://host/api/hit/c/s/: 400 Bad Request: …"), and are of one kind:
// ErrPermanent (a *StatusError: a 4xx other than 401, 403, 408 and 429, or a
// redirect, which is never followed), ErrUnauthorized (a 401 or 403, a
// *StatusError too: stop, do not dead-letter), ErrGaveUp (wrapping the last
// failure: MaxAttempts spent, or this request failed for DownAfter while
// others went through), ErrDown (Convertro failed every request for
// DownAfter: returned by every Get from then on, at once, without sending),
// ctx's error, or any other error for a request that cannot be sent at all
// (a malformed URL, an untrusted certificate): a setting to fix, not a row
// to retry. Result.Attempts is set whatever the outcome.
func (c *Client) Get(ctx context.Context, rawURL string) (Result, error) {
	var (
		res       Result
		failingAt time.Time // this request's first transient failure
		failedAt  time.Time // its latest transient failure before this attempt's
	)
	for {
		if err := ctx.Err(); err != nil {
			return res, getError(rawURL, err)
		}
		if err := c.health.downErr(); err != nil {
			return res, getError(rawURL, err)
		}
		if err := c.waitTurn(ctx); err != nil {
			return res, getError(rawURL, err)
		}
		res.Attempts++
		c.attempts.Add(1)
		if res.Attempts > 1 {
			c.retries.Add(1)
		}
		code, err := c.once(ctx, rawURL)
		if err == nil {
			c.observe(outcomeOK)
			c.health.up()
			res.Status = code
			return res, nil
		}
		if ctx.Err() != nil {
			// The caller gave up: that says nothing about Convertro.
			return res, getError(rawURL, ctx.Err())
		}
		var se *StatusError
		isStatus := errors.As(err, &se)
		if isStatus {
			se.Attempts = res.Attempts
		}
		if !retryableErr(err) {
			if isStatus { // an answer, so Convertro is up
				c.observe(outcomeOther)
				c.health.up()
				if se.unauthorized() {
					return res, fmt.Errorf("%w: %w (check the client name, the site id and the endpoint's credentials)",
						getError(rawURL, ErrUnauthorized), err)
				}
			}
			return res, getError(rawURL, err)
		}
		if isStatus && se.Code == http.StatusTooManyRequests {
			c.observe(outcome429)
		} else {
			c.observe(outcomeOther)
		}
		now := c.now()
		if c.health.failed(now, err) {
			return res, getError(rawURL, c.health.downErr())
		}
		prevFail := failedAt
		failedAt = now
		if failingAt.IsZero() {
			failingAt = now
		}
		if !isStatus && maybeSent(err) {
			res.MaybeDuplicated = true
		}
		if c.maxAttempts > 0 && res.Attempts >= c.maxAttempts {
			return res, getError(rawURL, fmt.Errorf("%w after %d attempts: %w", ErrGaveUp, res.Attempts, err))
		}
		// Convertro answers others, but never this request: it gives up
		// alone only if an answer came since its previous failure (in its
		// last wait, or beside this attempt). An answer to a
		// request sent before an outage can arrive after this request's
		// first failure, and so start Convertro's failing streak later than
		// this request's; without the check, this request would give up
		// first, and an outage end the run as one bad row.
		if d := now.Sub(failingAt); c.giveUpAfter > 0 && d >= c.giveUpAfter && c.health.answeredSince(prevFail) {
			return res, getError(rawURL, fmt.Errorf("%w after %d attempts over %v while other requests went through: %w",
				ErrGaveUp, res.Attempts, d.Round(time.Second), err))
		}
		wait := c.backoff(res.Attempts)
		if isStatus && se.RetryAfter > 0 {
			wait = se.RetryAfter
		}
		if wait > 0 {
			if err := c.pause(ctx, wait); err != nil {
				return res, getError(rawURL, err)
			}
		}
	}
}

// getError names the request in err without its query string, which holds
// personal data, nor any userinfo: "GET https://host/api/hit/c/s/: err".
func getError(rawURL string, err error) error {
	return fmt.Errorf("GET %s: %w", redactURL(rawURL), err)
}

// redactURL is rawURL without userinfo, query and fragment, or a
// placeholder when it does not parse (its text may be anything).
func redactURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(a malformed URL)"
	}
	return redacted(u)
}

func redacted(u *url.URL) string {
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath, Opaque: u.Opaque}
	s := r.String()
	if u.RawQuery != "" || u.ForceQuery {
		s += "?…"
	}
	return s
}

func (c *Client) observe(o outcome) {
	if c.thr != nil {
		c.thr.observe(o)
	}
}

// pause waits d, unless ctx ends (its error) or Convertro is declared down
// (the down error) first.
func (c *Client) pause(ctx context.Context, d time.Duration) error {
	down := c.health.ctx
	if c.sleep == nil {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-down.Done():
			return c.health.downErr()
		}
	}
	// An injected Sleep knows only its ctx: give it one that also ends when
	// Convertro is declared down.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(down, cancel)()
	err := c.sleep(sctx, d)
	if ctx.Err() == nil {
		if derr := c.health.downErr(); derr != nil {
			return derr
		}
	}
	return err
}

// waitTurn takes a token from the shared limiter, waiting through c.pause so
// that the wait ends with ctx or when Convertro is down, and tests can see it.
func (c *Client) waitTurn(ctx context.Context) error {
	r := c.lim.Reserve()
	if !r.OK() {
		return fmt.Errorf("rate limiter refused a request (burst %d)", c.lim.Burst())
	}
	if d := r.Delay(); d > 0 {
		if err := c.pause(ctx, d); err != nil {
			r.Cancel() // give the turn back to the other senders
			return err
		}
	}
	return nil
}

// once makes one attempt. It returns the 2xx code, a *StatusError, or the
// transport error without net/http's *url.Error wrapper, which quotes the
// whole URL (Get names the request without its query).
func (c *Client) once(ctx context.Context, rawURL string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err // it quotes the URL; Get names the request
		}
		return 0, &badRequestError{err}
	}
	if (req.URL.Scheme != "http" && req.URL.Scheme != "https") || req.URL.Host == "" {
		return 0, &badRequestError{errors.New("not an http(s) URL with a host")}
	}
	req.Header.Set("User-Agent", c.userAgent)
	resp, err := c.hc.Do(req)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		// The status is the answer; the body is read only so that the
		// connection goes back to the pool.
		_, _ = io.CopyN(io.Discard, resp.Body, drainLimit)
		return resp.StatusCode, nil
	}
	se := &StatusError{Code: resp.StatusCode, RetryAfter: c.retryAfter(resp.Header.Get("Retry-After"))}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		// Said, not followed (see CheckRedirect). The body is left out: it
		// repeats the target, often with the request's query; and without
		// it every redirect of a run reads the same, which the run's
		// misconfiguration guard needs to stop on.
		if loc, err := resp.Location(); err == nil {
			se.Location = redacted(loc)
		} else if errors.Is(err, http.ErrNoLocation) {
			se.Location = ""
		} else {
			se.Location = "(a malformed Location)"
		}
		_, _ = io.CopyN(io.Discard, resp.Body, drainLimit)
		return 0, se
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyLimit))
	se.Body = body
	_, _ = io.CopyN(io.Discard, resp.Body, drainLimit-errorBodyLimit)
	return 0, se
}

// badRequestError is a request that could not be built: not worth retrying.
type badRequestError struct{ err error }

func (e *badRequestError) Error() string { return e.err.Error() }
func (e *badRequestError) Unwrap() error { return e.err }

// retryableErr decides a retry from the error's kind. Context errors are not
// retried (an attempt's own timeout has already been told apart by Get,
// which checks the caller's ctx first). Transport errors are: every request
// is an idempotent GET. Certificate and malformed-request errors are not,
// since every attempt would fail the same way.
func retryableErr(err error) bool {
	if se, ok := errors.AsType[*StatusError](err); ok {
		return se.Temporary()
	}
	if _, ok := errors.AsType[*badRequestError](err); ok {
		return false
	}
	if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		return false
	}
	if _, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		return false
	}
	if _, ok := errors.AsType[x509.HostnameError](err); ok {
		return false
	}
	if _, ok := errors.AsType[x509.CertificateInvalidError](err); ok {
		return false
	}
	// An attempt that hit its own Timeout reports DeadlineExceeded; the
	// caller's ctx is still alive here, so it is a timeout to retry.
	return true
}

// maybeSent reports whether a failed attempt may still have reached the
// server: anything but a failure to connect.
func maybeSent(err error) bool {
	if oe, ok := errors.AsType[*net.OpError](err); ok && oe.Op == "dial" {
		return false
	}
	return true
}

// backoff is the wait before retry n (n ≥ 1): full jitter over an
// exponentially growing ceiling, so that senders that failed together do not
// come back together.
func (c *Client) backoff(n int) time.Duration {
	ceiling := c.max
	if shift := n - 1; shift < 62 && c.base <= c.max>>shift {
		ceiling = c.base << shift
	}
	if ceiling <= 0 {
		return 0
	}
	return rand.N(ceiling)
}

// retryAfter parses a Retry-After value, seconds or an HTTP date, capped at
// MaxRetryAfter; 0 when absent, malformed or in the past.
func (c *Client) retryAfter(v string) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(c.now())
	}
	return max(0, min(d, MaxRetryAfter))
}

// sleepCtx is what ClientOptions.Sleep does when nil (pause then also
// wakes when Convertro is declared down); tests wrap it.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
