package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/convertro-etl/convertro-etl/objstore"
	"github.com/convertro-etl/convertro-etl/pipeline"
)

// PrintPlan writes to env.Stdout what a run of o would read: every object
// with its row groups and rows, what was skipped and why, and how the units
// fall into shards. It reads footers only, and needs no Convertro settings.
func PrintPlan(ctx context.Context, o Options, env Env) error {
	env = env.withDefaults()
	if k := kindNamed(o.withDefaults().Kind); k != nil && k.NoPlan != "" {
		return fmt.Errorf("%w: %s", ErrConfig, k.NoPlan)
	}
	p, err := prepare(ctx, o, env, false, false)
	if err != nil {
		return err
	}
	defer p.close()
	w := tabwriter.NewWriter(env.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintf(w, "job\t%s\n", p.job.Description)
	fmt.Fprintf(w, "fingerprint\t%s\n\n", p.job.Fingerprint)
	fmt.Fprintln(w, "OBJECT\tTYPE\tBYTES\tROW GROUPS\tROWS")
	var bytes, rows int64
	var groups int
	objs := p.in.all()
	for oi, obj := range objs {
		if obj.Skipped != "" {
			continue
		}
		// Row groups the time filter prunes are not read: not counted here.
		var n int64
		g := 0
		for i, r := range obj.RowGroups {
			if obj.Filter == nil || !slices.Contains(obj.Filter.Pruned, i) {
				n += r
				g++
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\n", obj.URI, p.in.refs[oi].typ, obj.Size, g, n)
		bytes += obj.Size
		rows += n
		groups += g
	}
	fmt.Fprintf(w, "total\t\t%d\t%d\t%d\n", bytes, groups, rows)
	w.Flush()
	if len(p.in.covered) > 0 {
		names := slices.Sorted(maps.Keys(p.in.covered))
		fmt.Fprintf(env.Stdout, "\nrows of `tracks` for events with a table of their own are skipped as %s: %s\n",
			SkipInEventTable, strings.Join(names, ", "))
	}
	if len(p.in.bad) > 0 {
		fmt.Fprintln(env.Stdout, "\nbad files set aside (--on-bad-file skip):")
		for _, b := range p.in.bad {
			fmt.Fprintf(env.Stdout, "  %s: %s\n", b.URI, b.Reason)
		}
	}
	if len(p.in.skipped) > 0 {
		fmt.Fprintln(env.Stdout, "\nnot data, skipped:")
		for _, s := range p.in.skipped {
			fmt.Fprintf(env.Stdout, "  %s (%s)\n", s.URI, s.Reason)
		}
	}
	printWebRows(env.Stdout, p.in.web, p.o.AnonymousIDAsDeviceID)
	if p.in.outOfRange > 0 || p.in.undated > 0 {
		fmt.Fprintf(env.Stdout, "\ndate range: %d objects outside it left out; %d objects without a day partition kept\n", p.in.outOfRange, p.in.undated)
	}
	printTimeFilters(env.Stdout, objs)
	units := pipeline.BuildPlan(objs)
	mine := pipeline.ShardUnits(units, objs, p.shard)
	fmt.Fprintf(env.Stdout, "\nshard %s: %d of %d units, %d of %d rows\n",
		p.shard, len(mine), len(units), pipeline.PlanRows(mine), pipeline.PlanRows(units))
	if k := kindNamed(p.o.Kind); k.PrintPlan != nil {
		k.PrintPlan(ctx, env.Stdout, p, mine)
	}
	return nil
}

// stateManifests opens the state location and reads every shard's
// manifest in it, for the commands that only look (what names the command
// in the error when there is none).
func stateManifests(ctx context.Context, what, state string) (pipeline.StateStore, []*pipeline.Manifest, error) {
	st, err := pipeline.OpenState(ctx, state)
	if err != nil {
		return nil, nil, err
	}
	ms, err := pipeline.ListManifests(ctx, st)
	if err == nil && len(ms) == 0 {
		err = fmt.Errorf("%s %s: no manifest: %w", what, state, objstore.ErrNotFound)
	}
	if err != nil {
		return nil, nil, err
	}
	return st, ms, nil
}

// Shard statuses that Status shows besides the manifests' own
// (pipeline.StatusFinished, StatusRunning, StatusStopped, StatusFailed).
const (
	// StatusStoppedUncleanly is a manifest that says "running" while no
	// live process holds its lease: the run died (killed, or its machine
	// lost) and the same command resumes it.
	StatusStoppedUncleanly = "stopped_uncleanly"
	// StatusNotStarted is a shard of the job with no manifest of it yet: no
	// run of that index has begun (or its manifest holds another job, or an
	// earlier run of this one over another range: ShardStatus.Holds).
	StatusNotStarted = "not_started"
)

// shardStatusOrder is the order status names the shards' statuses in:
// from done to not begun.
var shardStatusOrder = []string{pipeline.StatusFinished, pipeline.StatusRunning, pipeline.StatusStopped,
	StatusStoppedUncleanly, pipeline.StatusFailed, StatusNotStarted}

// A job's status across its shards (JobStatus.Status).
const (
	JobFinished   = "finished"   // every shard finished
	JobFailed     = "failed"     // not every shard finished, and one's last run failed
	JobUnfinished = "unfinished" // shards running, stopped or not started; none failed
)

var (
	// ErrNotDone: Status with Done found shards of the job running, stopped
	// or not started, and none failed. The command exits 4: look again later.
	ErrNotDone = errors.New("the job is not finished")
	// ErrShardFailed: Status with Done found a shard whose last run failed.
	// Running that shard again resumes it; the engine may still be retrying
	// it. The command exits 5.
	ErrShardFailed = errors.New("a shard of the job failed")
)

// StatusOptions says what Status prints and whether it judges the job.
type StatusOptions struct {
	State string
	// JSON prints the JobStatus as JSON instead of a table.
	JSON bool
	// Report prints the merged report of the shards (JobReport) as JSON
	// instead of the status.
	Report bool
	// Done makes Status return an error unless every shard is finished:
	// ErrShardFailed, ErrNotDone, or pipeline.ErrIncomplete when all are
	// finished but rows of this cycle were dead-lettered or objects set
	// aside. It prints what it was asked to all the same.
	Done bool
}

// JobStatus is one view of a job across its shards: every shard of the
// count the state records, with or without a manifest, and their totals.
type JobStatus struct {
	State string `json:"state"`
	// Job is the job of the manifest written last: the run in progress, or
	// the last one. Only the manifests of this job count in the totals.
	Job        pipeline.JobID `json:"job"`
	ShardCount int            `json:"shard_count"`
	Status     string         `json:"status"` // JobFinished, JobFailed or JobUnfinished
	// Complete: finished, with no row of this cycle dead-lettered and no
	// object set aside (what run's exit 0 means, for the whole job).
	Complete bool          `json:"complete"`
	Shards   []ShardStatus `json:"shards"`
	Totals   Totals        `json:"totals"`
	// Other lists manifests of another shard count: a state written before
	// the count was recorded, holding shards of an earlier split. They
	// count nowhere.
	Other []ShardStatus `json:"other_manifests,omitempty"`

	ms []*pipeline.Manifest // the job's, by shard index (nil: not started)
}

// ShardStatus is one shard of a job as its manifest records it.
type ShardStatus struct {
	Shard  string `json:"shard"` // i/n
	Index  int    `json:"index"`
	Status string `json:"status"`
	// ManifestStatus is the status the manifest holds: "running" for a run
	// that died shows as StatusStoppedUncleanly.
	ManifestStatus string          `json:"manifest_status,omitempty"`
	RowsDone       int64           `json:"rows_done"`
	RowsTotal      int64           `json:"rows_total"`
	Counts         pipeline.Counts `json:"counts"`
	Runs           int             `json:"runs"`
	Lease          pipeline.Lease  `json:"lease,omitzero"`
	LeaseLive      bool            `json:"lease_live"`
	Updated        time.Time       `json:"updated,omitzero"`
	ETA            *ETA            `json:"eta,omitempty"` // unfinished shards
	// OrphanedParts are dead-letter parts of the shard that its manifest
	// does not list (see ListDeadLetters).
	OrphanedParts []string `json:"orphaned_dead_letter_parts,omitempty"`
	// Holds is the job of a manifest that is not this job's (another job,
	// or an earlier run of it over another range), with that manifest's
	// status: the shard has not started the job shown.
	Holds       *pipeline.JobID `json:"holds,omitempty"`
	HoldsStatus string          `json:"holds_status,omitempty"`
}

// Totals add up the shards of the job that have a manifest.
type Totals struct {
	ShardsByStatus map[string]int `json:"shards_by_status"`
	RowsDone       int64          `json:"rows_done"`
	// RowsTotal is the rows of the shards that planned; shards not started
	// have planned nothing yet. RowsTotalEstimate then extrapolates it to
	// every shard (units hash evenly over the shards).
	RowsTotal         int64   `json:"rows_total"`
	RowsTotalEstimate int64   `json:"rows_total_estimate,omitempty"`
	Percent           float64 `json:"percent"`
	// Counts are the shards' counts summed (every run of each).
	Counts pipeline.Counts `json:"counts"`
	ETA    *JobETA         `json:"eta,omitempty"` // unfinished jobs
}

// JobETA is the time left of a job whose shards run side by side, as an
// Indexed Job or a Cloud Run Job with parallelism = shards runs them.
type JobETA struct {
	// RowsLeft includes the estimated rows of shards not started.
	RowsLeft int64 `json:"rows_left"`
	// RowsPerSecond is the shards' rates added up: the job's throughput
	// while they all run.
	RowsPerSecond float64 `json:"rows_per_second,omitempty"`
	// Seconds is the longest of the shards' times left at their own rates:
	// the job ends with its slowest shard. It is 0 (unknown) while an
	// unfinished shard has no rate yet: NoRate lists them.
	Seconds float64  `json:"seconds,omitempty"`
	NoRate  []string `json:"shards_without_rate,omitempty"`
	// DaysAtCap is the most days of its daily cap any shard needs.
	DaysAtCap int64 `json:"days_at_cap,omitempty"`
}

// ReadJobStatus reads every manifest in the state location and puts them
// together as one job: the shards 0..n-1 of the count recorded in the
// state (pipeline.ReadLayout; for an older state, the manifests' count). A
// state with neither layout nor manifest is objstore.ErrNotFound.
func ReadJobStatus(ctx context.Context, state string, now time.Time) (*JobStatus, error) {
	st, err := pipeline.OpenState(ctx, state)
	if err != nil {
		return nil, err
	}
	ms, err := pipeline.ListManifests(ctx, st)
	if err != nil {
		return nil, err
	}
	count, err := pipeline.ReadLayout(ctx, st)
	switch {
	case errors.Is(err, objstore.ErrNotFound) && len(ms) == 0:
		return nil, fmt.Errorf("status %s: no manifest: %w", state, objstore.ErrNotFound)
	case errors.Is(err, objstore.ErrNotFound):
		// Written before the count was recorded: the manifests' count,
		// that of the one written last if they disagree.
		count = newest(ms).Shard.Count
	case err != nil:
		return nil, err
	}
	orphans, err := orphanParts(ctx, st, ms)
	if err != nil {
		return nil, err
	}
	js := &JobStatus{State: state, ShardCount: count, ms: make([]*pipeline.Manifest, count)}
	var ofCount []*pipeline.Manifest
	for _, m := range ms {
		if m.Shard.Count == count {
			ofCount = append(ofCount, m)
		} else {
			js.Other = append(js.Other, shardStatus(m, now, orphans))
		}
	}
	if ref := newest(ofCount); ref != nil {
		js.Job = ref.Job
	}
	held := map[int]*pipeline.Manifest{}
	for _, m := range ofCount {
		if sameJob(m.Job, js.Job) {
			js.ms[m.Shard.Index] = m
		} else {
			held[m.Shard.Index] = m
		}
	}
	for i, m := range js.ms {
		if m != nil {
			js.Shards = append(js.Shards, shardStatus(m, now, orphans))
			continue
		}
		s := ShardStatus{Shard: pipeline.Shard{Index: i, Count: count}.String(), Index: i, Status: StatusNotStarted}
		if h := held[i]; h != nil {
			s.Holds, s.HoldsStatus, s.Updated = &h.Job, h.Status, h.Updated
		}
		js.Shards = append(js.Shards, s)
	}
	js.total()
	return js, nil
}

// newest is the manifest written last (nil for none).
func newest(ms []*pipeline.Manifest) *pipeline.Manifest {
	var n *pipeline.Manifest
	for _, m := range ms {
		if n == nil || m.Updated.After(n.Updated) {
			n = m
		}
	}
	return n
}

// sameJob: the same job over the same range with the same settings. The
// description holds the range, so a recurring job's shard still holding
// last night's run is not counted as done tonight.
func sameJob(a, b pipeline.JobID) bool {
	return a.Kind == b.Kind && a.Fingerprint == b.Fingerprint && a.Description == b.Description && maps.Equal(a.Settings, b.Settings)
}

func shardStatus(m *pipeline.Manifest, now time.Time, orphans map[pipeline.Shard][]string) ShardStatus {
	s := ShardStatus{Shard: m.Shard.String(), Index: m.Shard.Index, Status: m.Status, ManifestStatus: m.Status,
		Counts: m.Counts, Runs: m.Runs, Lease: m.Lease, LeaseLive: pipeline.LeaseHeld(m.Lease, now), Updated: m.Updated,
		OrphanedParts: orphans[m.Shard]}
	if m.Status == pipeline.StatusRunning && !s.LeaseLive {
		s.Status = StatusStoppedUncleanly
	}
	s.RowsDone, s.RowsTotal = m.RowsProgress()
	if m.Status != pipeline.StatusFinished {
		e := estimate(m, s.RowsDone, s.RowsTotal, now)
		s.ETA = &e
	}
	return s
}

// total fills the job's status, completeness and totals from its shards.
func (js *JobStatus) total() {
	t := &js.Totals
	t.ShardsByStatus = map[string]int{}
	var planned, incomplete int
	var eta JobETA
	for i, s := range js.Shards {
		t.ShardsByStatus[s.Status]++
		m := js.ms[i]
		if m == nil {
			continue
		}
		planned++
		t.RowsDone += s.RowsDone
		t.RowsTotal += s.RowsTotal
		t.Counts.Add(m.Counts)
		if m.Counts.RowsDeadLettered > m.CycleStart.RowsDeadLettered || len(setAside(m)) > 0 {
			incomplete++
		}
		if e := s.ETA; e != nil {
			eta.RowsLeft += e.RowsLeft
			eta.RowsPerSecond += e.RowsPerSecond
			eta.Seconds = max(eta.Seconds, e.Seconds)
			eta.DaysAtCap = max(eta.DaysAtCap, e.DaysAtCap)
			if e.RowsPerSecond == 0 && e.RowsLeft > 0 {
				eta.NoRate = append(eta.NoRate, s.Shard)
			}
		}
	}
	// Distinct objects: every shard's manifest may list an object set aside.
	t.Counts.ObjectsSkipped = int64(len(js.setAside()))
	total := t.RowsTotal
	if n := len(js.Shards) - planned; n > 0 && planned > 0 {
		t.RowsTotalEstimate = t.RowsTotal * int64(len(js.Shards)) / int64(planned)
		total = t.RowsTotalEstimate
	}
	switch {
	case total > 0:
		t.Percent = 100 * float64(t.RowsDone) / float64(total)
	case planned == len(js.Shards):
		t.Percent = 100
	}
	switch {
	case t.ShardsByStatus[pipeline.StatusFinished] == len(js.Shards):
		js.Status = JobFinished
		js.Complete = incomplete == 0
	case t.ShardsByStatus[pipeline.StatusFailed] > 0:
		js.Status = JobFailed
	default:
		js.Status = JobUnfinished
	}
	if js.Status == JobFinished {
		return
	}
	for _, s := range js.Shards {
		if s.Status == StatusNotStarted {
			eta.NoRate = append(eta.NoRate, s.Shard)
		}
	}
	eta.RowsLeft += total - t.RowsTotal
	if len(eta.NoRate) > 0 {
		eta.Seconds = 0
	}
	t.ETA = &eta
}

// setAside lists the objects set aside as unreadable in the job's
// manifests, each once, by URI.
func (js *JobStatus) setAside() []pipeline.SkippedObject {
	seen := map[string]bool{}
	var out []pipeline.SkippedObject
	for _, m := range js.ms {
		if m == nil {
			continue
		}
		for _, o := range setAside(m) {
			if !seen[o.URI] {
				seen[o.URI] = true
				out = append(out, o)
			}
		}
	}
	return out
}

// setAside lists the objects m marks as set aside as unreadable, the ones
// the pipeline's own verdict counts: while one is, the shard is incomplete.
func setAside(m *pipeline.Manifest) []pipeline.SkippedObject { return m.SetAsideObjects() }

// verdict is what Done returns for the job: nil only when it is finished
// and complete.
func (js *JobStatus) verdict() error {
	var failed, waiting []string
	for _, s := range js.Shards {
		switch s.Status {
		case pipeline.StatusFinished:
		case pipeline.StatusFailed:
			failed = append(failed, s.Shard)
		default:
			waiting = append(waiting, s.Shard+" "+s.Status)
		}
	}
	switch {
	case len(failed) > 0:
		return fmt.Errorf("status %s: shards %s failed (running one again resumes it): %w", js.State, strings.Join(failed, ", "), ErrShardFailed)
	case len(waiting) > 0:
		return fmt.Errorf("status %s: %d of %d shards not finished (%s): %w", js.State, len(waiting), js.ShardCount, strings.Join(waiting, ", "), ErrNotDone)
	case !js.Complete:
		var dead int64
		for _, m := range js.ms {
			if m != nil {
				dead += m.Counts.RowsDeadLettered - m.CycleStart.RowsDeadLettered
			}
		}
		return fmt.Errorf("status %s: every shard finished; %d rows dead-lettered in this cycle, %d objects set aside: %w",
			js.State, dead, len(js.setAside()), pipeline.ErrIncomplete)
	}
	return nil
}

// JobReport is the job's report merged from its shards' manifests: the
// counts summed (they reconcile as a run's do: Report.Check), the rows
// planned and marked done, dead letters, runs and the repeat bound, and
// each shard's own report. Built from manifests, not from the reports
// runs wrote, it is as of the last commit, replays included.
//
// The figures a run's report gives for that run cover all of a shard's
// runs here: rows_this_run and requests_this_run are the shard's totals,
// wall_seconds its runs' active time, the rates their quotient. Merged,
// wall_seconds is the longest shard's and the rates are the shards' summed,
// as the shards run side by side. Started and finished are the first
// manifest's creation and the last commit.
type JobReport struct {
	pipeline.Report
	ShardCount int                `json:"shard_count"`
	NotStarted []string           `json:"shards_not_started,omitempty"`
	Shards     []*pipeline.Report `json:"shards"`
}

// Report merges the shards' reports. Its Status is the job's
// (JobFinished, JobFailed, JobUnfinished) and its Shard "all of n".
func (js *JobStatus) Report() *JobReport {
	r := &JobReport{ShardCount: js.ShardCount}
	m := &r.Report
	m.Job, m.Kind, m.Fingerprint = js.Job.Description, js.Job.Kind, js.Job.Fingerprint
	m.Shard = fmt.Sprintf("all of %d", js.ShardCount)
	m.Status = js.Status
	m.SkippedObjects = js.setAside()
	for i, man := range js.ms {
		if man == nil {
			r.NotStarted = append(r.NotStarted, js.Shards[i].Shard)
			continue
		}
		s := shardReport(man, js.Shards[i].Status)
		r.Shards = append(r.Shards, s)
		m.Counts.Add(s.Counts)
		m.RowsPlanned += s.RowsPlanned
		m.RowsMarked += s.RowsMarked
		m.DeadLetters += s.DeadLetters
		m.DeadLetterFiles = append(m.DeadLetterFiles, s.DeadLetterFiles...)
		m.Runs += s.Runs
		m.Resumes += s.Resumes
		m.Window = max(m.Window, s.Window)
		m.RepeatBound += s.RepeatBound
		m.InFlight += s.InFlight
		if m.Started.IsZero() || s.Started.Before(m.Started) {
			m.Started = s.Started
		}
		if s.Finished.After(m.Finished) {
			m.Finished = s.Finished
		}
		m.WallSeconds = max(m.WallSeconds, s.WallSeconds)
		m.RowsThisRun += s.RowsThisRun
		m.RequestsThisRun += s.RequestsThisRun
		m.RowsPerSecond += s.RowsPerSecond
		m.RequestsPerSecond += s.RequestsPerSecond
	}
	m.Counts.ObjectsSkipped = int64(len(m.SkippedObjects))
	return r
}

// shardReport is a shard's report as its manifest stands.
func shardReport(m *pipeline.Manifest, status string) *pipeline.Report {
	done, total := m.RowsProgress()
	r := &pipeline.Report{
		Job: m.Job.Description, Kind: m.Job.Kind, Fingerprint: m.Job.Fingerprint,
		Shard: m.Shard.String(), Status: status,
		// Pruned rows left the ledger done: they are read and marked.
		RowsPlanned: total + m.Pruned.Rows, RowsMarked: done + m.Pruned.Rows,
		DeadLetters: m.Counts.RequestsDeadLettered, DeadLetterFiles: slices.Clone(m.DeadLetterFiles),
		SkippedObjects: setAside(m),
		Runs:           m.Runs, Resumes: max(m.Runs-1-m.Reopened, 0), Window: m.Window,
		InFlight: m.MaybeRepeated, RepeatBound: m.MaybeRepeated + m.Counts.PossibleDuplicates,
		Started: m.Created.UTC(), Finished: m.Updated.UTC(), WallSeconds: m.ActiveSeconds,
		RowsThisRun: m.Counts.RowsRead, RequestsThisRun: m.Counts.RequestsSent,
	}
	r.Counts.Add(m.Counts)
	if r.WallSeconds > 0 {
		r.RowsPerSecond = float64(r.RowsThisRun) / r.WallSeconds
		r.RequestsPerSecond = float64(r.RequestsThisRun) / r.WallSeconds
	}
	return r
}

// Status writes one view of the job in the state location: every shard
// (finished, running with its lease holder, stopped cleanly or not,
// failed, not started), their summed counts, the job's progress and ETA;
// as a table, as JSON (JobStatus), or the merged report (JobReport). With
// Done it then returns the job's verdict (see StatusOptions.Done). A
// merged report whose counts do not add up is ErrCountsMismatch.
func Status(ctx context.Context, o StatusOptions, env Env) error {
	env = env.withDefaults()
	now := env.Now()
	js, err := ReadJobStatus(ctx, o.State, now)
	if err != nil {
		return err
	}
	switch {
	case o.Report:
		rep := js.Report()
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return fmt.Errorf("encode report: %w", err)
		}
		if _, err := env.Stdout.Write(append(b, '\n')); err != nil {
			return err
		}
		if err := rep.Check(); err != nil {
			return fmt.Errorf("status %s: merged report: %w", o.State, err)
		}
	case o.JSON:
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(js); err != nil {
			return err
		}
	default:
		if err := js.write(env.Stdout, now); err != nil {
			return err
		}
	}
	if o.Done {
		return js.verdict()
	}
	return nil
}

// write is the status for a person: a table of the shards, what to do
// about those that need it, and the job's totals.
func (js *JobStatus) write(out io.Writer, now time.Time) error {
	w := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SHARD\tSTATUS\tROWS DONE\tOF\t%\tDELIVERED\tSKIPPED\tDEAD-LETTERED\tREQUESTS\tRUNS\tLEASE\tUPDATED")
	row := func(s ShardStatus) {
		if s.Status == StatusNotStarted {
			fmt.Fprintf(w, "%s\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\n", s.Shard, s.Status)
			return
		}
		pct := 100.0
		if s.RowsTotal > 0 {
			pct = 100 * float64(s.RowsDone) / float64(s.RowsTotal)
		}
		lease := "free"
		if s.LeaseLive {
			lease = fmt.Sprintf("%s pid %d until %s", s.Lease.Host, s.Lease.PID, s.Lease.Expires.UTC().Format(time.RFC3339))
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%.1f\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", s.Shard, s.Status, s.RowsDone, s.RowsTotal, pct,
			s.Counts.RowsDelivered, skippedRows(s.Counts), s.Counts.RowsDeadLettered, s.Counts.RequestsSent, s.Runs, lease,
			s.Updated.UTC().Format(time.RFC3339))
	}
	for _, s := range js.Shards {
		row(s)
	}
	t := js.Totals
	if len(js.Shards) > 1 {
		of := strconv.FormatInt(t.RowsTotal, 10)
		if t.RowsTotalEstimate > 0 {
			of = fmt.Sprintf("~%d", t.RowsTotalEstimate)
		}
		fmt.Fprintf(w, "all\t%s\t%d\t%s\t%.1f\t%d\t%d\t%d\t%d\t\t\t\n", js.Status, t.RowsDone, of, t.Percent,
			t.Counts.RowsDelivered, skippedRows(t.Counts), t.Counts.RowsDeadLettered, t.Counts.RequestsSent)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	for _, s := range js.Shards {
		switch {
		case s.Status == pipeline.StatusRunning:
			fmt.Fprintf(out, "shard %s: running (lease held by %s pid %d until %s)\n",
				s.Shard, s.Lease.Host, s.Lease.PID, s.Lease.Expires.UTC().Format(time.RFC3339))
		case s.Status == StatusStoppedUncleanly:
			why := "lease expired at " + s.Lease.Expires.UTC().Format(time.RFC3339)
			if s.Lease.Expires.After(now) {
				why = fmt.Sprintf("its process, pid %d on this host, is gone", s.Lease.PID)
			}
			fmt.Fprintf(out, "shard %s: stopped uncleanly (%s): run the same command to resume\n", s.Shard, why)
		case s.Status == pipeline.StatusFailed:
			fmt.Fprintf(out, "shard %s: its last run failed (its log says why): fix the cause and run it again to resume\n", s.Shard)
		case s.Holds != nil:
			fmt.Fprintf(out, "shard %s: not started; its manifest holds %s (%s), not this job\n", s.Shard, s.Holds.Description, s.HoldsStatus)
		}
		if s.ETA != nil {
			fmt.Fprintf(out, "shard %s ETA: %s\n", s.Shard, s.ETA)
		}
		if s.Counts.RequestsDeadLettered > 0 {
			fmt.Fprintf(out, "shard %s dead letters: %d requests, by refusal (convertro-etl deadletters --state … lists them):\n",
				s.Shard, s.Counts.RequestsDeadLettered)
			pipeline.WriteDeadLetterGroups(out, "  ", s.Counts)
		}
		if n := len(s.OrphanedParts); n > 0 {
			fmt.Fprintf(out, "shard %s: %d orphaned dead-letter parts (not in the manifest, left by a killed run: not counted, their rows are sent again by the next run; replay deletes them)\n",
				s.Shard, n)
		}
	}
	for _, s := range js.Other {
		fmt.Fprintf(out, "manifest of shard %s (%s): another split than the job's %d shards, not counted\n",
			s.Shard, s.Status, js.ShardCount)
	}
	if len(js.Shards) > 1 {
		var by []string
		for _, st := range shardStatusOrder {
			if n := t.ShardsByStatus[st]; n > 0 {
				by = append(by, fmt.Sprintf("%d %s", n, st))
			}
		}
		fmt.Fprintf(out, "job: %s, %d shards: %s\n", js.Status, js.ShardCount, strings.Join(by, ", "))
		if t.ETA != nil {
			fmt.Fprintf(out, "job ETA: %s\n", t.ETA)
		}
	}
	if js.Job.Fingerprint == "" {
		_, err := fmt.Fprintf(out, "job: no shard has begun (split into %d shards)\n", js.ShardCount)
		return err
	}
	_, err := fmt.Fprintf(out, "job: %s (%s)\n", js.Job.Description, js.Job.Fingerprint)
	return err
}

// String is the job's ETA for a person, one line.
func (e JobETA) String() string {
	s := fmt.Sprintf("%d rows left", e.RowsLeft)
	switch {
	case e.Seconds > 0:
		s += fmt.Sprintf(", about %s with every shard running (the slowest shard's time; %.0f rows/s together)",
			roundDuration(time.Duration(e.Seconds*float64(time.Second))), e.RowsPerSecond)
	case e.RowsPerSecond > 0:
		s += fmt.Sprintf(", %.0f rows/s together; the time is unknown until shards %s have a rate", e.RowsPerSecond, strings.Join(e.NoRate, ", "))
	default:
		s += ", no rate observed yet"
	}
	if e.DaysAtCap > 0 {
		s += fmt.Sprintf("; %s at the shards' daily cap", plural(e.DaysAtCap, "day"))
	}
	return s
}

func skippedRows(c pipeline.Counts) int64 {
	var n int64
	for _, v := range c.RowsSkipped {
		n += v
	}
	return n
}

// printTimeFilters says how the date range reads the objects without a day
// in their path: the instants their rows are read for, and the row groups
// their statistics leave unread.
func printTimeFilters(w io.Writer, objs []pipeline.Object) {
	var objects, groups, pruned int
	var rows int64
	var read []pipeline.Span
	for _, o := range objs {
		if o.Filter == nil || o.Skipped != "" {
			continue
		}
		objects++
		groups += len(o.RowGroups)
		for _, rg := range o.Filter.Pruned {
			if rg >= 0 && rg < len(o.RowGroups) {
				pruned++
				rows += o.RowGroups[rg]
			}
		}
		read = pipeline.UnionSpans(read, o.Filter.Read)
	}
	if objects == 0 {
		return
	}
	var spans []string
	for _, s := range read {
		from := "the start"
		if !s.From.IsZero() {
			from = s.From.UTC().Format(time.RFC3339)
		}
		spans = append(spans, from+" to "+s.To.UTC().Format(time.RFC3339))
	}
	if len(spans) == 0 {
		spans = []string{"no instant (all read already)"}
	}
	fmt.Fprintf(w, "\ntime range: %d objects without a day in their path: rows read for events from %s (UTC, end excluded), the others skipped as %s\n",
		objects, strings.Join(spans, ", "), SkipOutsideTimeRange)
	fmt.Fprintf(w, "  row groups pruned by their timestamp statistics: %d of %d (%d rows), not read\n", pruned, groups, rows)
}
