package jobs

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/convertro-etl/convertro-etl/pipeline"
)

// TestProgressView: off a terminal, a log line every ten seconds and none
// at the end (the summary follows); on one, a line redrawn in place, ended
// by the final one.
func TestProgressView(t *testing.T) {
	p := pipeline.Progress{Done: 500, Total: 1000, Rows: 300, Requests: 450, Elapsed: 10 * time.Second}
	var logs, line bytes.Buffer
	env := Env{Stderr: &line, Log: slog.New(slog.NewTextHandler(&logs, nil))}

	every, show := progressView(env, false)
	show(p)
	final := p
	final.Final = true
	show(final)
	if out := logs.String(); every != 10*time.Second || strings.Count(out, "progress") != 1 ||
		!strings.Contains(out, "rows=500") || !strings.Contains(out, "total=1000") || !strings.Contains(out, "percent=50.0") ||
		!strings.Contains(out, "requests_per_second=45") || !strings.Contains(out, "eta=17s") {
		t.Errorf("every %v, log lines %q", every, out)
	}
	if line.Len() != 0 {
		t.Errorf("off a terminal, the line %q was drawn", line.String())
	}

	every, show = progressView(env, true)
	show(p)
	show(final)
	want := "\r\x1b[Krows 500/1000 (50.0%)  45 req/s  ETA 17s"
	if got := line.String(); every != 250*time.Millisecond || got != want+want+"\n" {
		t.Errorf("every %v, terminal line %q, want %q twice and a newline", every, got, want)
	}
}
