package jobs

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/convertro-etl/convertro-etl/convertro"
	"github.com/convertro-etl/convertro-etl/convertro/simulator"
)

// TestSecretsAreNotPrinted: a password in the endpoint is refused without
// being shown, and a Pushgateway URL's password and token never reach the
// log, the summary or the error, even when the push fails and the
// Pushgateway client quotes the URL it was given.
func TestSecretsAreNotPrinted(t *testing.T) {
	ctx := context.Background()
	src := hugeValueExport(t, t.TempDir(), 5, 0, 0)

	t.Run("endpoint", func(t *testing.T) {
		o := testOptions(src, filepath.Join(t.TempDir(), "state"), "http://user:s3cret@127.0.0.1:1")
		var out bytes.Buffer
		_, err := Run(ctx, o, badEnv(&out))
		if !errors.Is(err, convertro.ErrInvalidSettings) || !strings.Contains(err.Error(), "endpoint") {
			t.Fatalf("err = %v, want an endpoint setting error", err)
		}
		if strings.Contains(err.Error()+out.String(), "s3cret") {
			t.Errorf("the password is printed:\n%v\n%s", err, out.String())
		}
	})

	t.Run("metrics push", func(t *testing.T) {
		gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "no", http.StatusInternalServerError)
		}))
		defer gw.Close()
		rec := newRecorder(t, simulator.Options{ClientName: "acme", SiteID: "12"})
		o := testOptions(src, filepath.Join(t.TempDir(), "state"), rec.srv.URL)
		o.MetricsPush = strings.Replace(gw.URL, "http://", "http://pusher:s3cret@", 1) + "/?token=t0ken"
		var out bytes.Buffer
		if _, err := Run(ctx, o, badEnv(&out)); err != nil {
			t.Fatalf("run: %v\n%s", err, out.String())
		}
		if !strings.Contains(out.String(), "metrics push failed") || !strings.Contains(out.String(), "500") {
			t.Fatalf("no failed push logged:\n%s", out.String())
		}
		if strings.Contains(out.String(), "s3cret") || strings.Contains(out.String(), "t0ken") {
			t.Errorf("a secret is logged:\n%s", out.String())
		}
	})
}

func TestScrubURL(t *testing.T) {
	raw := "http://pusher:s3cret@gw:9091/?token=t0ken"
	text := `push metrics to http://pusher:s3cret@gw:9091/?token=t0ken: unexpected status code 500 while pushing to http://pusher:s3cret@gw:9091/?token=t0ken/metrics/job/x`
	got := scrubURL(text, raw)
	if strings.Contains(got, "s3cret") || strings.Contains(got, "t0ken") || !strings.Contains(got, "@gw:9091") {
		t.Errorf("scrubURL = %q", got)
	}
}
