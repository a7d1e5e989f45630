package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"

	"github.com/convertro-etl/convertro-etl/convertro"
	"github.com/convertro-etl/convertro-etl/pipeline"
)

// Metrics are pushed to a Prometheus Pushgateway, the convention for batch
// jobs, while the run goes (every Env.MetricsInterval, when a commit has
// changed the figures) and once more at its end. Each push replaces one
// group, keyed by job="convertro-etl", the job's fingerprint and the shard:
// two jobs, or two shards of one job, never overwrite each other's figures.
const (
	metricsJob             = "convertro-etl"
	defaultMetricsInterval = 15 * time.Second
	metricsPushTimeout     = 10 * time.Second
)

// metricsPusher pushes a run's report to a Pushgateway. update takes the
// report after each commit (from the pipeline's checkpointer: it only
// stores it); a goroutine of its own pushes the latest one every interval,
// so a slow gateway never slows the run.
type metricsPusher struct {
	pusher func() *push.Pusher // a fresh pusher per push: it holds the gatherer
	raw    string              // the URL as given: its secrets are scrubbed from errors
	shown  string              // the URL with its userinfo and query values masked, for logs
	log    *slog.Logger
	every  time.Duration

	mu     sync.Mutex
	latest *pipeline.Report // not pushed yet; nil when there is nothing new

	quit, done chan struct{}
}

// newMetricsPusher checks the Pushgateway URL raw and prepares the grouping
// of job and shard. The URL's userinfo becomes basic auth, so that it never
// appears in the request line, in the client's errors or in logs.
func newMetricsPusher(raw string, job pipeline.JobID, shard pipeline.Shard, every time.Duration, log *slog.Logger) (*metricsPusher, error) {
	u, err := parseMetricsURL(raw)
	if err != nil {
		return nil, err
	}
	user := u.User
	u.User = nil
	base := u.String()
	fp := job.Fingerprint
	if len(fp) > 16 {
		fp = fp[:16]
	}
	if fp == "" {
		fp = "none"
	}
	if every <= 0 {
		every = defaultMetricsInterval
	}
	p := &metricsPusher{raw: raw, shown: convertro.RedactURL(raw), log: log, every: every}
	p.pusher = func() *push.Pusher {
		ps := push.New(base, metricsJob).
			Grouping("fingerprint", fp).
			Grouping("shard", fmt.Sprintf("%d-of-%d", shard.Index, shard.Count))
		if user != nil {
			pass, _ := user.Password()
			ps = ps.BasicAuth(user.Username(), pass)
		}
		return ps
	}
	return p, nil
}

// parseMetricsURL checks that raw can be a Pushgateway's URL.
func parseMetricsURL(raw string) (*url.URL, error) {
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw // as the push client does
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("%w: --metrics-push %s: want http(s)://host:port of a Pushgateway", ErrConfig, convertro.RedactURL(raw))
	}
	return u, nil
}

// update keeps r to push at the next tick; it never blocks on the network.
func (p *metricsPusher) update(r *pipeline.Report) {
	p.mu.Lock()
	p.latest = r
	p.mu.Unlock()
}

// start pushes the latest report every interval until finish.
func (p *metricsPusher) start(ctx context.Context) {
	p.quit, p.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(p.done)
		t := time.NewTicker(p.every)
		defer t.Stop()
		for {
			select {
			case <-p.quit:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				p.mu.Lock()
				r := p.latest
				p.latest = nil
				p.mu.Unlock()
				if r != nil {
					p.push(ctx, r)
				}
			}
		}
	}()
}

// finish stops the periodic pushes and pushes final, the run's report, if
// there is one: after it, no older figure can reach the gateway.
func (p *metricsPusher) finish(ctx context.Context, final *pipeline.Report) {
	if p.quit != nil {
		close(p.quit)
		<-p.done
	}
	if final != nil {
		p.push(context.WithoutCancel(ctx), final)
	}
}

func (p *metricsPusher) push(ctx context.Context, r *pipeline.Report) {
	ctx, cancel := context.WithTimeout(ctx, metricsPushTimeout)
	defer cancel()
	if err := p.pusher().Gatherer(reportMetrics(r)).PushContext(ctx); err != nil {
		// The push client's errors quote the URL it was given, query and all.
		p.log.Warn("metrics push failed", "url", p.shown, "err", scrubURL(err.Error(), p.raw))
	}
}

// reportMetrics holds the report's figures as gauges: the counts are
// cumulative over the job's runs, as the manifest keeps them.
func reportMetrics(r *pipeline.Report) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	gauge := func(name, help string, v float64) {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "convertro_etl", Name: name, Help: help})
		g.Set(v)
		reg.MustRegister(g)
	}
	c := r.Counts
	gauge("rows_read_total", "Rows read and completed (cumulative over the job's runs).", float64(c.RowsRead))
	gauge("rows_delivered_total", "Rows whose requests were all acknowledged.", float64(c.RowsDelivered))
	gauge("rows_dead_lettered_total", "Rows with a dead-lettered request.", float64(c.RowsDeadLettered))
	gauge("requests_sent_total", "Requests sent (acknowledged or dead-lettered).", float64(c.RequestsSent))
	gauge("requests_acked_total", "Requests acknowledged by Convertro.", float64(c.RequestsAcked))
	gauge("requests_dead_lettered_total", "Requests refused permanently.", float64(c.RequestsDeadLettered))
	gauge("requests_retried_total", "Requests that needed more than one attempt.", float64(c.RequestsRetried))
	gauge("possible_duplicates_total", "Retries that Convertro may have received twice.", float64(c.PossibleDuplicates))
	gauge("objects_skipped_total", "Input objects set aside as unreadable.", float64(c.ObjectsSkipped))
	gauge("rows_planned", "Rows in the shard's plan.", float64(r.RowsPlanned))
	gauge("repeat_bound", "Most requests that may have been sent twice.", float64(r.RepeatBound))
	gauge("runs", "Invocations that worked on the job.", float64(r.Runs))
	gauge("run_duration_seconds", "Wall time of the current or last run.", r.WallSeconds)
	gauge("run_running", "1 while a run is going (pushed during the run), else 0.", b2f(r.Status == pipeline.StatusRunning))
	gauge("run_finished", "1 if the last run finished the job, else 0.", b2f(r.Status == pipeline.StatusFinished))
	if r.Status == pipeline.StatusFinished {
		gauge("last_success_timestamp_seconds", "When the job last finished.", float64(r.Finished.Unix()))
	}
	skipped := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "convertro_etl", Name: "rows_skipped_total",
		Help: "Rows skipped, by reason."}, []string{"reason"})
	for reason, n := range c.RowsSkipped {
		skipped.WithLabelValues(reason).Set(float64(n))
	}
	reg.MustRegister(skipped)
	dead := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "convertro_etl", Name: "dead_letters",
		Help: "Dead-lettered requests by kind of refusal (a bounded set)."}, []string{"class"})
	for class, g := range c.DeadLetterGroups {
		dead.WithLabelValues(class).Set(float64(g.Count))
	}
	reg.MustRegister(dead)
	return reg
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
