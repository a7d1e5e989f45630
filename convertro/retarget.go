package convertro

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrNotRequestURL: a URL given to Retarget is not a Convertro request URL
// (an absolute URL whose path ends in /api/{user|hit|install}/{clientName}/{siteId}/).
var ErrNotRequestURL = errors.New("not a Convertro request URL")

// Retarget re-aims a stored request URL (a dead letter's) at w's settings:
// the kind (taken from the path) and the query are kept byte for byte, the
// scheme, host, any endpoint path, client name and site id become w's. So a
// request refused because of a wrong setting can be sent again once the
// operator fixed it, and a request that was right is sent exactly as before.
// A URL that is not a request URL is an error wrapping ErrNotRequestURL.
//
// A URL holding a byte that AppendURL never writes (a space, a control or a
// non-ASCII byte) is refused too: that is how a dead letter's URL that was
// cut (a request over MaxURLBytes, never sent) reads, and sending its start
// as if it were the request would deliver values cut short.
func (w *Wire) Retarget(rawURL string) (string, error) {
	for i := 0; i < len(rawURL); i++ {
		if c := rawURL[i]; c <= ' ' || c >= 0x7f {
			return "", fmt.Errorf("retarget %.200q: %w: byte %d is %q, which no request URL holds (a URL cut because it was too long to send?)",
				rawURL, ErrNotRequestURL, i, c)
		}
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("retarget %q: %w: %w", rawURL, ErrNotRequestURL, err)
	}
	if u.Scheme == "" || u.Host == "" || u.RawQuery == "" {
		return "", fmt.Errorf("retarget %q: %w: want an absolute URL with a query", rawURL, ErrNotRequestURL)
	}
	// Read the path from its end: the base (an endpoint override may have a
	// path of its own) and an escaped client name may both hold "api".
	path, ok := strings.CutSuffix(u.EscapedPath(), "/")
	segs := strings.Split(path, "/")
	if !ok || len(segs) < 5 || "/"+segs[len(segs)-4]+"/" != apiPrefix {
		return "", fmt.Errorf("retarget %q: %w: the path is not %s{kind}/{clientName}/{siteId}/", rawURL, ErrNotRequestURL, apiPrefix)
	}
	kind := -1
	for k, p := range [len(kindNames)]string{KindUser: pathUser, KindHit: pathHit, KindInstall: pathInstall} {
		if segs[len(segs)-3] == p {
			kind = k
		}
	}
	if kind < 0 {
		return "", fmt.Errorf("retarget %q: %w: unknown request kind %q", rawURL, ErrNotRequestURL, segs[len(segs)-3])
	}
	return w.prefix[kind] + u.RawQuery, nil
}
