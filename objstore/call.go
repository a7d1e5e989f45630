package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"time"

	gax "github.com/googleapis/gax-go/v2"
)

const (
	// CallTimeout bounds one metadata call, one listing page or one small
	// object read or write, the client's retries included: an unreachable
	// server is reported after this long at most, not after minutes.
	CallTimeout = 30 * time.Second
	// RetryFor is how long the client retries the transient errors of one
	// call (refused connections, 429, 5xx) before it returns the last one.
	// It is shorter than CallTimeout so that the error returned is the
	// server's or the network's, not a bare deadline.
	RetryFor = 20 * time.Second
	// StallTimeout ends a listing or a read stream that has made no progress
	// for this long; a long listing or a large read that keeps moving is not
	// cut.
	StallTimeout = 30 * time.Second
	// WriteRetryFor is the retry budget of a write whose context has no
	// deadline: a state write blocks a run for this long at most.
	WriteRetryFor = 30 * time.Second
)

// backoff is the pause between two attempts: from 250 ms doubling to 5 s.
var backoff = gax.Backoff{Initial: 250 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2}

// ErrStalled is the cause of a context that a Watchdog ended.
var ErrStalled = errors.New("no progress")

// errNoAnswer is the cause of a context that WithTimeout ended.
var errNoAnswer = errors.New("no answer")

// WithTimeout is context.WithTimeout whose cause, when the time is up, says
// that the server did not answer within d (and is context.DeadlineExceeded).
func WithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, d, fmt.Errorf("%w within %s (%w)", errNoAnswer, d, context.DeadlineExceeded))
}

// UnreachableError is a call that failed because a server it needed could
// not be reached, or did not answer in time. It names the server and what to
// check.
type UnreachableError struct {
	// Server says which server: "GCS emulator (STORAGE_EMULATOR_HOST)",
	// "S3 endpoint (AWS_ENDPOINT_URL_S3)", "credentials token server".
	Server string
	// Endpoint is the server's scheme and host, e.g. http://127.0.0.1:4443.
	Endpoint string
	// Fix is what the operator can do about it.
	Fix string
	// Err is the error of the call.
	Err error

	cause error // the innermost network error, for the message
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("%s %s cannot be reached: %v; %s", e.Server, e.Endpoint, e.cause, e.Fix)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// innermostURLError finds the last *url.Error of err's chain: a failed token
// fetch comes back as the storage request's *url.Error wrapping the token
// request's.
func innermostURLError(err error) *url.Error {
	var last *url.Error
	for {
		var ue *url.Error
		if !errors.As(err, &ue) {
			return last
		}
		last, err = ue, ue.Err
	}
}

// unreachable reports whether err, the error of one HTTP exchange, says the
// server could not be reached or did not answer.
func unreachable(err error) bool {
	var oe *net.OpError
	var de *net.DNSError
	var ne net.Error
	switch {
	case errors.As(err, &oe), errors.As(err, &de):
		return true
	case errors.As(err, &ne) && ne.Timeout():
		return true
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return true // the caller's deadline or a Watchdog ended a call with no answer
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
		return true
	}
	return false
}

func currentValue(name string) string {
	if v := os.Getenv(name); v != "" {
		return fmt.Sprintf(" (now %q)", v)
	}
	return " (not set)"
}

// transientError marks an error that a backend knows may pass if the call
// is made again (408, 429, 5xx answers).
type transientError struct{ err error }

func (e transientError) Error() string { return e.err.Error() }
func (e transientError) Unwrap() error { return e.err }

// Transient marks err, a backend's answer, as worth another attempt.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return transientError{err}
}

// transient reports whether a failed call may succeed if made again: an
// answer its backend marked Transient, a refused or reset connection, a
// connection cut in the middle of an answer, and a timeout of the call (not
// of its caller).
func transient(err error) bool {
	var te transientError
	var oe *net.OpError
	var ne net.Error
	switch {
	case errors.As(err, &te):
		return true
	case errors.Is(err, ErrPrecondition), errors.Is(err, ErrNotFound):
		return false
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EPIPE):
		return true
	case errors.As(err, &oe):
		return true
	case errors.As(err, &ne) && ne.Timeout():
		return true
	case errors.Is(err, context.DeadlineExceeded):
		return true // the attempt's own deadline; retry checks the caller's
	}
	return false
}

// statusTransient reports whether an HTTP status is worth another attempt.
func statusTransient(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}

// retry calls attempt until it succeeds, returns an error that is not
// transient, or the budget ends: ctx's deadline, or WriteRetryFor when ctx
// has none. Each attempt gets its own deadline of at most perAttempt.
// retried tells an attempt that an earlier one failed in a way that leaves
// its outcome unknown (a conditional write may have landed although its
// answer was lost). The error returned is the last attempt's.
func retry(ctx context.Context, perAttempt time.Duration, attempt func(ctx context.Context, retried bool) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, WriteRetryFor)
		defer cancel()
	}
	bo := backoff
	retried := false
	for {
		actx, cancel := WithTimeout(ctx, perAttempt)
		err := attempt(actx, retried)
		cancel()
		if err == nil || !transient(err) || ctx.Err() != nil {
			return err
		}
		retried = true
		if serr := gax.Sleep(ctx, bo.Pause()); serr != nil {
			return err
		}
	}
}

// explainUnreachable returns err as an *UnreachableError when it was caused
// by a server that could not be reached (a refused or failed connection, a
// name that does not resolve, no answer before the deadline of ctx or of
// the call), and err unchanged otherwise. describe names the server the
// failed URL belongs to and what fixes it; each backend knows its own.
func explainUnreachable(ctx context.Context, err error, describe func(u *url.URL) (server, fix string)) error {
	if err == nil {
		return nil
	}
	var ue *UnreachableError
	if errors.As(err, &ue) {
		return err // explained already
	}
	failed := innermostURLError(err)
	if failed == nil || !unreachable(failed.Err) {
		return err
	}
	cause := failed.Err
	if errors.Is(cause, context.Canceled) || errors.Is(cause, context.DeadlineExceeded) {
		c := context.Cause(ctx)
		switch {
		case errors.Is(c, ErrStalled) || errors.Is(c, errNoAnswer):
			cause = c
		case errors.Is(cause, context.Canceled):
			return err // the caller gave up (a signal): nothing to explain
		default:
			cause = errors.New("no answer before the deadline")
		}
	}
	u, perr := url.Parse(failed.URL)
	if perr != nil {
		return err
	}
	e := &UnreachableError{Endpoint: u.Scheme + "://" + u.Host, Err: err, cause: cause}
	e.Server, e.Fix = describe(u)
	return e
}

// probe connects to endpoint (a URL or host:port), so that a dead emulator
// or endpoint is reported when the client is made instead of after the
// first call's retries.
func probe(ctx context.Context, endpoint, server, fix string) error {
	scheme, host := "http", endpoint
	if u, err := url.Parse(endpoint); err == nil && u.Scheme != "" && u.Host != "" {
		scheme, host = u.Scheme, u.Host
	}
	addr := host
	if _, _, err := net.SplitHostPort(host); err != nil {
		port := "80"
		if scheme == "https" {
			port = "443"
		}
		addr = net.JoinHostPort(host, port)
	}
	conn, err := (&net.Dialer{Timeout: probeTimeout}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return &UnreachableError{Server: server, Endpoint: scheme + "://" + host, Fix: fix, Err: err, cause: err}
	}
	return conn.Close()
}

// probeTimeout bounds the connection a probe opens.
const probeTimeout = 5 * time.Second

// Watchdog returns a context that ends, with cause ErrStalled, when touch
// has not been called for d: a listing or a read stream calls touch at every
// step, so only a call that stopped moving is cut. stop releases the timer;
// call it when done with the context.
func Watchdog(ctx context.Context, d time.Duration) (wctx context.Context, touch func(), stop func()) {
	wctx, cancel := context.WithCancelCause(ctx)
	stalled := fmt.Errorf("%w for %s", ErrStalled, d)
	t := time.AfterFunc(d, func() { cancel(stalled) })
	return wctx, func() { t.Reset(d) }, func() { t.Stop(); cancel(context.Canceled) }
}

// TouchReader calls touch after every read that returned bytes.
type TouchReader struct {
	R     io.Reader
	Touch func()
}

func (r TouchReader) Read(p []byte) (int, error) {
	n, err := r.R.Read(p)
	if n > 0 {
		r.Touch()
	}
	return n, err
}
