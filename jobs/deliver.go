package jobs

import (
	"context"
	"errors"
	"fmt"

	"github.com/convertro-etl/convertro-etl/convertro"
	"github.com/convertro-etl/convertro-etl/internal/segment"
	"github.com/convertro-etl/convertro-etl/pipeline"
)

// newTransform returns the per-worker transform: the Convertro mapping and
// wire format over reused buffers, so a row costs no allocation here.
func newTransform(m *convertro.Mapper, w *convertro.Wire) func() pipeline.Transform {
	return func() pipeline.Transform {
		var (
			ds  []convertro.Delivery
			buf []byte
		)
		return func(msg *segment.Message, emit func(url []byte)) string {
			if msg.Excluded != "" {
				return msg.Excluded
			}
			var skip convertro.SkipReason
			ds, skip = m.Map(ds[:0], msg)
			if skip != convertro.SkipNone {
				return skip.String()
			}
			for i := range ds {
				buf = w.AppendURL(buf[:0], &ds[i])
				emit(buf)
			}
			return ""
		}
	}
}

// MaxURLBytes is the longest request URL the job sends; a longer one (a
// 1 MiB user agent makes a URL of up to 3 MiB) is dead-lettered without
// being sent. Servers refuse such URLs anyway, and not always with an
// answer: over HTTP/1.1 Go's server answers 431 past 1 MiB, but over HTTP/2
// Go's client fails the request itself when it exceeds the header list
// size the server advertises, an error it retries until it gives up, which
// would stop the run on every resume. 16 KiB is far above any real row's
// URL and at or below common front-end limits.
const MaxURLBytes = 16 << 10

// errURLTooLong is the dead-letter reason of a URL over MaxURLBytes.
var errURLTooLong = errors.New("request not sent: the URL is longer than the job sends")

// sender adapts the Convertro client to the pipeline: a refusal of the
// request that no retry can fix (convertro.ErrPermanent: a 4xx, or a
// redirect, which is never followed) is permanent, a dead letter, unless a
// streak of them trips the pipeline's misconfiguration guard; anything else
// that fails stops the run, resumably, and the request is sent again on
// resume: Convertro down (ErrDown), credentials refused (ErrUnauthorized,
// 401/403: no row is at fault), retries given up, the run cancelled. The
// errors name the request without its query (see convertro.Client.Get);
// the pipeline adds the object, row group and row.
type sender struct{ c *convertro.Client }

func (s sender) Send(ctx context.Context, url string) pipeline.Outcome {
	if len(url) > MaxURLBytes {
		return pipeline.Outcome{Permanent: true,
			Err: fmt.Errorf("%d bytes, over %d: %w", len(url), MaxURLBytes, errURLTooLong)}
	}
	res, err := s.c.Get(ctx, url)
	out := pipeline.Outcome{Status: res.Status, Attempts: res.Attempts, PossibleDuplicate: res.MaybeDuplicated, Err: err}
	var se *convertro.StatusError
	if errors.As(err, &se) {
		out.Status, out.Body, out.Attempts = se.Code, se.Body, se.Attempts
	}
	out.Permanent = errors.Is(err, convertro.ErrPermanent) // never for ErrUnauthorized
	return out
}

// clientOptions applies the test hook, if any.
func (e Env) clientOptions(o convertro.ClientOptions) convertro.ClientOptions {
	if e.tuneClient != nil {
		e.tuneClient(&o)
	}
	return o
}
