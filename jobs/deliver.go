package jobs

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

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
			var skip convertro.SkipReason
			ds, skip = m.Map(ds[:0], msg)
			if skip != convertro.SkipNone {
				return skip.String()
			}
			for i := range ds {
				// Cut past the limit: a huge value is never escaped whole
				// (the pipeline dead-letters such a URL unsent).
				buf = w.AppendURLCut(buf[:0], &ds[i], convertro.MaxURLBytes+1)
				emit(buf)
			}
			return ""
		}
	}
}

// MaxURLBytes is the longest request URL the job sends (the pipeline
// dead-letters a longer one unsent; see convertro.MaxURLBytes for why).
const MaxURLBytes = convertro.MaxURLBytes

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
	if len(url) > MaxURLBytes { // a replayed letter retargeted to a longer base URL
		return pipeline.Outcome{Permanent: true,
			Err: fmt.Errorf("%d bytes, over %d: %w", len(url), MaxURLBytes, pipeline.ErrURLTooLong)}
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

// scrubURL returns text (an error message) with the secrets of rawURL taken
// out: its userinfo and its query, wherever the text quotes them, as they
// were typed or as url.URL writes them back. Errors of other packages quote
// the URL they were given (the Pushgateway client does, credentials and all).
func scrubURL(text, rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return strings.ReplaceAll(text, rawURL, convertro.RedactURL(rawURL))
	}
	var secrets []string
	if u.User != nil {
		secrets = append(secrets, u.User.String())
		if _, rest, ok := strings.Cut(rawURL, "://"); ok {
			if at := strings.LastIndexByte(rest, '@'); at > 0 {
				secrets = append(secrets, rest[:at])
			}
		}
	}
	if u.RawQuery != "" {
		secrets = append(secrets, u.RawQuery)
	}
	for _, s := range secrets {
		if s != "" {
			text = strings.ReplaceAll(text, s, "xxxxx")
		}
	}
	return text
}

// clientOptions applies the test hook, if any.
func (e Env) clientOptions(o convertro.ClientOptions) convertro.ClientOptions {
	if e.tuneClient != nil {
		e.tuneClient(&o)
	}
	return o
}
