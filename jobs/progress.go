package jobs

import (
	"fmt"
	"io"
	"time"

	"golang.org/x/term"

	"github.com/convertro-etl/convertro-etl/pipeline"
)

// showProgress makes cfg's run show its progress on env.Stderr: on a
// terminal one line redrawn in place four times a second, otherwise a log
// line every ten seconds (the pipeline only counts and ticks).
func (env Env) showProgress(cfg *pipeline.Config, deps *pipeline.Deps) {
	tty := false
	if f, ok := env.Stderr.(interface{ Fd() uintptr }); ok && term.IsTerminal(int(f.Fd())) {
		tty = true
	}
	cfg.ProgressInterval, deps.OnProgress = progressView(env, tty)
}

// progressView is how a run's progress is shown, on a terminal or not.
func progressView(env Env, tty bool) (time.Duration, func(pipeline.Progress)) {
	if !tty {
		return 10 * time.Second, func(p pipeline.Progress) {
			if p.Final {
				return // the summary follows
			}
			env.Log.Info("progress", "rows", p.Done, "total", p.Total, "percent", fmt.Sprintf("%.1f", p.Percent()),
				"requests_per_second", fmt.Sprintf("%.0f", p.RequestsPerSecond()), "eta", etaString(p.ETA()))
		}
	}
	return 250 * time.Millisecond, func(p pipeline.Progress) { drawProgress(env.Stderr, p) }
}

// drawProgress redraws the one progress line in place (\r and erase to the
// end of the line), and ends it after the final one.
func drawProgress(w io.Writer, p pipeline.Progress) {
	end := ""
	if p.Final {
		end = "\n"
	}
	fmt.Fprintf(w, "\r\x1b[Krows %d/%d (%.1f%%)  %.0f req/s  ETA %s%s",
		p.Done, p.Total, p.Percent(), p.RequestsPerSecond(), etaString(p.ETA()), end)
}

func etaString(d time.Duration) string {
	if d < 0 {
		return "?"
	}
	return d.String()
}
