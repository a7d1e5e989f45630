// Package gcscall bounds the calls the program makes to Google Cloud
// Storage: the client's own retries stop after a while, every call has a
// deadline or a stall timeout, writes that meet a transient error are
// retried, and an error caused by a server that cannot be reached names that
// server and what fixes it. The readers (sources) and the pipeline (state)
// both use it, so a dead emulator or token server is reported the same way
// wherever it is met first.
//
// # Errors
//
// *UnreachableError: a server a call needed (the storage endpoint, the
// emulator named by STORAGE_EMULATOR_HOST, the credentials' token server)
// could not be reached or did not answer in time. ErrStalled is the cause of
// a context a Watchdog ended.
//
// # Concurrency
//
// Everything here is safe for concurrent use; a Watchdog's touch may be
// called from any goroutine.
package gcscall

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"cloud.google.com/go/auth"
	"cloud.google.com/go/storage"
	gax "github.com/googleapis/gax-go/v2"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
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

// NewClient creates a GCS client whose own retries are bounded (RetryFor,
// with backoff) and that reads through the JSON API, which the emulators
// behind STORAGE_EMULATOR_HOST serve as well. Credentials come from the
// environment (Application Default Credentials) unless opts say otherwise.
func NewClient(ctx context.Context, opts ...option.ClientOption) (*storage.Client, error) {
	c, err := storage.NewClient(ctx, append([]option.ClientOption{storage.WithJSONReads()}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("create GCS client: %w", Explain(ctx, err))
	}
	c.SetRetry(storage.WithBackoff(backoff), storage.WithMaxRetryDuration(RetryFor))
	if err := probeEmulator(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("create GCS client: %w", err)
	}
	return c, nil
}

// probeTimeout bounds the connection NewClient opens to the emulator.
const probeTimeout = 5 * time.Second

// probeEmulator connects to the emulator STORAGE_EMULATOR_HOST names, if
// any: a dead one is reported at once, instead of after the first call's
// retries.
func probeEmulator(ctx context.Context) error {
	emulator := os.Getenv("STORAGE_EMULATOR_HOST")
	if emulator == "" {
		return nil
	}
	scheme, host := "http", hostOf(emulator)
	if u, err := url.Parse(emulator); err == nil && u.Scheme != "" && u.Host != "" {
		scheme = u.Scheme
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
		return &UnreachableError{
			Server: "GCS emulator (STORAGE_EMULATOR_HOST)", Endpoint: scheme + "://" + host,
			Fix: emulatorFix(), Err: err, cause: err,
		}
	}
	return conn.Close()
}

func emulatorFix() string {
	return "start the emulator, or correct STORAGE_EMULATOR_HOST" + currentValue("STORAGE_EMULATOR_HOST") +
		" (unset it to use Google Cloud Storage)"
}

// UnreachableError is a call that failed because a server it needed could
// not be reached, or did not answer in time. It names the server and what to
// check.
type UnreachableError struct {
	// Server says which server: "GCS emulator (STORAGE_EMULATOR_HOST)",
	// "GCS endpoint", "credentials token server".
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

// Explain returns err as an *UnreachableError when it was caused by a server
// that could not be reached (a refused or failed connection, a name that
// does not resolve, no answer before the deadline of ctx or of the call), and
// err unchanged otherwise. A token server that answered with a refusal is
// not unreachable; Explain adds what to run to renew the credentials.
func Explain(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var ue *UnreachableError
	if errors.As(err, &ue) {
		return err // explained already
	}
	var ae *auth.Error
	if errors.As(err, &ae) {
		return fmt.Errorf("%w; check GOOGLE_APPLICATION_CREDENTIALS%s or run `gcloud auth application-default login`",
			err, currentValue("GOOGLE_APPLICATION_CREDENTIALS"))
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
	emulator := os.Getenv("STORAGE_EMULATOR_HOST")
	switch {
	case emulator != "" && u.Host == hostOf(emulator):
		e.Server = "GCS emulator (STORAGE_EMULATOR_HOST)"
		e.Fix = emulatorFix()
	case storagePath(u.Path):
		e.Server = "GCS endpoint"
		e.Fix = "check the network path to it (proxy, firewall, DNS); STORAGE_EMULATOR_HOST, when set, replaces it"
	default:
		e.Server = "credentials token server"
		e.Fix = "check GOOGLE_APPLICATION_CREDENTIALS" + currentValue("GOOGLE_APPLICATION_CREDENTIALS") +
			" and its token_uri, or run `gcloud auth application-default login`"
	}
	return e
}

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

// storagePath reports whether p is a path of the GCS JSON or XML API.
func storagePath(p string) bool {
	for _, prefix := range []string{"/storage/v1/", "/upload/storage/v1/", "/download/storage/v1/", "/b/"} {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

func hostOf(emulator string) string {
	if u, err := url.Parse(emulator); err == nil && u.Host != "" {
		return u.Host
	}
	return emulator
}

func currentValue(name string) string {
	if v := os.Getenv(name); v != "" {
		return fmt.Sprintf(" (now %q)", v)
	}
	return " (not set)"
}

// Transient reports whether a failed call may succeed if made again: 408,
// 429 and 5xx answers, refused or reset connections, a connection cut in
// the middle of an answer, and a timeout of the call (not of its caller).
func Transient(err error) bool {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code == http.StatusRequestTimeout || ge.Code == http.StatusTooManyRequests || ge.Code >= 500
	}
	var oe *net.OpError
	var ne net.Error
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EPIPE):
		return true
	case errors.As(err, &oe):
		return true
	case errors.As(err, &ne) && ne.Timeout():
		return true
	case errors.Is(err, context.DeadlineExceeded):
		return true // the attempt's own deadline; Retry checks the caller's
	}
	return false
}

// Retry calls attempt until it succeeds, returns an error that is not
// Transient, or the budget ends: ctx's deadline, or WriteRetryFor when ctx
// has none. Each attempt gets its own deadline of at most perAttempt.
// unknown is told, before each attempt after the first, that an earlier one
// failed in a way that leaves its outcome unknown (a conditional write may
// have landed although its answer was lost). The error returned is the last
// attempt's.
func Retry(ctx context.Context, perAttempt time.Duration, attempt func(ctx context.Context, retried bool) error) error {
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
		if err == nil || !Transient(err) || ctx.Err() != nil {
			return err
		}
		retried = true
		if serr := gax.Sleep(ctx, bo.Pause()); serr != nil {
			return err
		}
	}
}

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
