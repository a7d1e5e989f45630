package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/convertro-etl/convertro-etl/convertro"
	"github.com/convertro-etl/convertro-etl/objstore"
	"github.com/convertro-etl/convertro-etl/pipeline"
	"github.com/convertro-etl/convertro-etl/writers"
)

// ReplayReport is what Replay did, one entry per shard that had dead letters.
type ReplayReport struct {
	Shards []*ShardReplay `json:"shards"`
}

// Remaining is the number of dead letters left in place across the shards.
func (r *ReplayReport) Remaining() int {
	n := 0
	for _, s := range r.Shards {
		n += s.StillDead + s.Unsent
	}
	return n
}

// ShardReplay is one shard's replay, stored in the state as
// replay-<i>-of-<n>-<time>.json. Committed is false until the manifest
// records the replay: a report left with false (a kill in between) lists
// requests that were sent but not recorded, which the next replay sends again.
type ShardReplay struct {
	Name      string         `json:"-"`
	Job       pipeline.JobID `json:"job"`
	Shard     string         `json:"shard"`
	Started   time.Time      `json:"started"`
	Finished  time.Time      `json:"finished"`
	Committed bool           `json:"committed"`
	BaseURL   string         `json:"base_url"`
	// FromFiles are the dead-letter parts the replay read (the manifest's
	// list before); RemainingFiles replaces them in the manifest.
	FromFiles      []string `json:"from_files"`
	RemainingFiles []string `json:"remaining_files,omitempty"`
	// DeadLetters = Delivered + StillDead + Unsent.
	DeadLetters   int   `json:"dead_letters"`
	Delivered     int   `json:"delivered"`
	StillDead     int   `json:"still_dead"`
	Unsent        int   `json:"unsent"` // not sent: the replay stopped first
	RowsDelivered int64 `json:"rows_delivered"`
	// Requests are the requests Convertro now accepted, as sent.
	Requests []ReplayedRequest `json:"requests"`
	// Counts are the manifest's counts after the replay.
	Counts pipeline.Counts `json:"counts"`
	Error  string          `json:"error,omitempty"`
}

// ReplayedRequest is one dead letter that a replay delivered.
type ReplayedRequest struct {
	MessageID string `json:"message_id"`
	Object    string `json:"object"`
	RowGroup  int32  `json:"row_group"`
	Row       int64  `json:"row"`
	URL       string `json:"url"`
	Status    int    `json:"status"`
	Attempts  int    `json:"attempts"`
}

// Replay sends the dead letters recorded in the state location o.State again,
// re-aimed (convertro.Wire.Retarget) at o's endpoint, domain, client name and
// site id, with the client options of a run. In each shard's manifest the
// requests Convertro now accepts move from dead-lettered to acked (rows whose
// dead letters are all gone, to delivered), and the dead letters left take
// the place of the old parts. o.Shard, when set, limits the replay to that
// shard. An audience sync's dead letters are not replayed: its next sync
// sends them again.
//
// Each shard runs on the pipeline's engine (pipeline.Replay): its lease is
// taken as a run takes it, so a replay never runs beside a run or another
// replay (ErrLeaseHeld), and renewed while the requests are sent by the
// run's senders; the pipeline moves the counts and checks them. Here the
// parts are read, and the letters left and the report written. The
// manifest is written once per
// shard, after the requests were sent: a kill before that write records
// nothing, and the next replay sends the same requests again (Convertro keeps
// one per event id); a kill after it leaves only unlisted files behind.
//
// The error is nil when no dead letter remains, wraps pipeline.ErrIncomplete
// when some do, and is any other failure (Convertro unreachable, state) after
// recording what was delivered before it.
func Replay(ctx context.Context, o Options, env Env) (*ReplayReport, error) {
	env = env.withDefaults()
	o = o.withDefaults()
	if o.DryRun {
		return nil, fmt.Errorf("%w: replay sends requests: --dry-run does not apply", ErrConfig)
	}
	var only *pipeline.Shard
	if o.Shard != "" {
		s, err := pipeline.ParseShard(o.Shard)
		if err != nil {
			return nil, fmt.Errorf("%w: --shard: %w", ErrConfig, err)
		}
		only = &s
	}
	s := convertro.Settings{
		Account: o.Account, ClientName: o.ClientName, SiteID: o.SiteID, Domain: o.Domain,
		HybridAttributionModel: o.Hybrid, Endpoint: o.Endpoint,
	}
	if err := s.Validate(true); err != nil {
		return nil, err
	}
	st, err := pipeline.OpenState(ctx, o.State)
	if err != nil {
		return nil, err
	}
	ms, err := pipeline.ListManifests(ctx, st)
	if err != nil {
		return nil, err
	}
	r := &replayer{
		o: o, env: env, st: st, wire: convertro.NewWire(s),
		client: convertro.NewClient(convertro.ClientOptions{
			Concurrency: o.Concurrency,
			Timeout:     o.Timeout,
			MaxAttempts: o.MaxAttempts,
			Rate:        o.Rate,
			Adaptive:    !o.FixedRate,
			DownAfter:   o.DownAfter,
			UserAgent:   "convertro-etl/" + env.Version,
		}),
	}
	orphans, err := orphanParts(ctx, st, ms)
	if err != nil {
		return nil, err
	}
	rep := &ReplayReport{}
	for _, m := range ms {
		switch {
		case only != nil && m.Shard != *only:
			continue
		case kindNamed(m.Job.Kind) != nil && kindNamed(m.Job.Kind).NoReplay != "":
			if len(m.DeadLetterFiles) > 0 {
				env.Log.Info(kindNamed(m.Job.Kind).NoReplay, "shard", m.Shard.String())
			}
			continue
		case len(m.DeadLetterFiles) == 0 && len(orphans[m.Shard]) == 0:
			continue
		}
		sr, err := r.shard(ctx, m.Shard)
		if sr != nil {
			rep.Shards = append(rep.Shards, sr)
			sr.summary(env)
		}
		if err != nil {
			return rep, err
		}
	}
	if n := rep.Remaining(); n > 0 {
		return rep, fmt.Errorf("replay %s: %d dead letters remain: %w", o.State, n, pipeline.ErrIncomplete)
	}
	return rep, nil
}

func (sr *ShardReplay) summary(env Env) {
	fmt.Fprintf(env.Stderr, "replay shard %s: %d dead letters, %d delivered (%d rows), %d still refused, %d not sent\n",
		sr.Shard, sr.DeadLetters, sr.Delivered, sr.RowsDelivered, sr.StillDead, sr.Unsent)
}

type replayer struct {
	o      Options
	env    Env
	st     pipeline.StateStore
	wire   *convertro.Wire
	client *convertro.Client
}

// shard replays one shard's dead letters on the pipeline (pipeline.Replay:
// the lease, the senders, the count moves and their check); here are the
// parts read, and the letters left and the replay's report written.
func (r *replayer) shard(ctx context.Context, shard pipeline.Shard) (*ShardReplay, error) {
	cp, m, err := pipeline.OpenCheckpoint(ctx, r.st, shard, pipeline.NewLease(), r.env.Now, r.o.LeaseTTL)
	if err != nil {
		return nil, err
	}
	if m == nil {
		return nil, nil // deleted since the listing
	}
	var sr *ShardReplay // set once the letters are read
	cfg := pipeline.Config{Shard: shard, Concurrency: r.o.Concurrency, LeaseTTL: r.o.LeaseTTL}
	res, err := pipeline.Replay(ctx, cfg, pipeline.ReplayDeps{
		Sender: sender{r.client}, Checkpoint: cp, Previous: m, Retarget: r.wire.Retarget,
		Letters: func(ctx context.Context, m *pipeline.Manifest) ([]pipeline.DeadLetter, error) {
			// Under the lease, a part the manifest does not list can never
			// be listed by anyone: it is an orphan, and goes.
			cleanOrphans(ctx, r.st, m, r.env)
			if len(m.DeadLetterFiles) == 0 {
				return nil, nil // orphaned parts only
			}
			started := r.env.Now().UTC()
			letters, err := r.read(ctx, m.DeadLetterFiles)
			if err == nil {
				sr = &ShardReplay{Job: m.Job, Shard: shard.String(), Started: started, BaseURL: r.wire.BaseURL(),
					FromFiles: slices.Clone(m.DeadLetterFiles)}
			}
			return letters, err
		},
		Record: func(ctx context.Context, res *pipeline.ReplayResult) ([]string, error) {
			return r.record(ctx, shard, sr, res)
		},
		Recorded: func(ctx context.Context, _ *pipeline.ReplayResult) { r.recorded(ctx, sr) },
		Logger:   r.env.Log, Now: r.env.Now,
	})
	if sr == nil {
		return nil, err
	}
	sr.take(res)
	if sr.Finished.IsZero() {
		sr.Finished = r.env.Now().UTC()
	}
	return sr, err
}

// read reads and merges the dead-letter parts names.
func (r *replayer) read(ctx context.Context, names []string) ([]pipeline.DeadLetter, error) {
	var parts [][]writers.DeadLetter
	for _, name := range names {
		data, _, err := r.st.Read(ctx, name)
		if err != nil {
			return nil, err
		}
		dls, err := writers.DecodeDeadLetters(r.st.URI(name), data)
		if err != nil {
			return nil, err
		}
		parts = append(parts, dls)
	}
	merged := writers.MergeDeadLetters(parts...)
	letters := make([]pipeline.DeadLetter, len(merged))
	for i, d := range merged {
		letters[i] = loadedDeadLetter(d)
	}
	return letters, nil
}

// take copies what the replay did into the report.
func (sr *ShardReplay) take(res *pipeline.ReplayResult) {
	if res == nil {
		return
	}
	sr.DeadLetters, sr.Delivered, sr.StillDead, sr.Unsent = res.Letters, len(res.Delivered), res.StillDead, res.Unsent
	sr.RowsDelivered = res.RowsDelivered
	sr.Requests = sr.Requests[:0]
	for _, d := range res.Delivered {
		sr.Requests = append(sr.Requests, ReplayedRequest{
			MessageID: d.Letter.MessageID, Object: d.Letter.Object, RowGroup: int32(d.Letter.RowGroup), Row: d.Letter.Row,
			URL: d.URL, Status: d.Status, Attempts: d.Attempts,
		})
	}
}

// record writes the letters left as one new part, then the report (not
// committed yet), and names the part for the manifest. The manifest is
// written after it: a kill at any point leaves the manifest the record,
// and a report that says whether the manifest took it.
func (r *replayer) record(ctx context.Context, shard pipeline.Shard, sr *ShardReplay, res *pipeline.ReplayResult) ([]string, error) {
	sr.take(res)
	sr.Counts = res.Counts
	if res.Err != nil {
		sr.Error = res.Err.Error()
	}
	stamp := r.env.Now().UTC().Format("20060102T150405.000000000Z")
	if len(res.Remaining) > 0 {
		remaining := make([]writers.DeadLetter, len(res.Remaining))
		for i, d := range res.Remaining {
			remaining[i] = storedDeadLetter(d)
		}
		name, err := r.writeNew(ctx, func(seq int) string {
			return fmt.Sprintf("%s%s-replay-%05d.parquet", deadLetterDir(shard), stamp, seq)
		}, func() ([]byte, error) { return writers.DeadLetterFile(remaining) })
		if err != nil {
			return nil, err
		}
		sr.RemainingFiles = []string{name}
	}
	sr.Finished = r.env.Now().UTC()
	// Without its report the replay is not recorded at all: the next
	// replay sends these requests again.
	name, err := r.writeNew(ctx, func(seq int) string {
		return fmt.Sprintf("replay-%d-of-%d-%s-%02d.json", shard.Index, shard.Count, stamp, seq)
	}, func() ([]byte, error) { return json.MarshalIndent(sr, "", "  ") })
	if err != nil {
		return nil, err
	}
	sr.Name = name
	return sr.RemainingFiles, nil
}

// recorded marks the report committed, the manifest holding the replay, and
// deletes the old parts: their delivered letters are in the report, the
// others in the new part.
func (r *replayer) recorded(ctx context.Context, sr *ShardReplay) {
	sr.Committed = true
	data, err := json.MarshalIndent(sr, "", "  ")
	if err == nil {
		_, err = r.st.Write(ctx, sr.Name, data, objstore.Overwrite)
	}
	if err != nil {
		r.env.Log.Warn("replay report not marked committed; the manifest has the replay", "uri", r.st.URI(sr.Name), "err", err)
	}
	for _, name := range sr.FromFiles {
		if err := r.st.Delete(ctx, name); err != nil && !errors.Is(err, objstore.ErrNotFound) {
			r.env.Log.Warn("old dead-letter part not deleted (no longer listed in the manifest)", "uri", r.st.URI(name), "err", err)
		}
	}
}

// writeNew writes a new state object named by name(seq), trying the next seq
// while the name is taken.
func (r *replayer) writeNew(ctx context.Context, name func(seq int) string, data func() ([]byte, error)) (string, error) {
	b, err := data()
	if err != nil {
		return "", fmt.Errorf("encode %s: %w", r.st.URI(name(1)), err)
	}
	for seq := 1; ; seq++ {
		n := name(seq)
		_, err := r.st.Write(ctx, n, b, objstore.IfAbsent)
		if errors.Is(err, objstore.ErrPrecondition) && seq < 100 {
			continue
		}
		return n, err
	}
}
