package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
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
	if o.withDefaults().Kind == "audience" {
		return fmt.Errorf("%w: plan lists the row groups of a backfill; for an audience job use run --dry-run --out FILE, which diffs and sends nothing", ErrConfig)
	}
	p, err := prepare(ctx, o, env, false)
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
	for _, obj := range p.in.objects {
		if obj.Skipped != "" {
			continue
		}
		var n int64
		for _, r := range obj.RowGroups {
			n += r
		}
		r := p.in.refs[obj.URI]
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\n", obj.URI, r.typ, obj.Size, len(obj.RowGroups), n)
		bytes += obj.Size
		rows += n
		groups += len(obj.RowGroups)
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
	var web webRows
	for _, obj := range p.in.objects {
		r := p.in.refs[obj.URI]
		if obj.Skipped != "" || r == nil {
			continue
		}
		w := r.web
		if r.obj.Partition.Table == "tracks" && len(p.in.covered) > 0 {
			w.lo = 0 // some of its rows are skipped as in_event_table first
		}
		web.add(w)
	}
	printWebRows(env.Stdout, web, p.o.AnonymousIDAsDeviceID)
	if p.in.outOfRange > 0 || p.in.undated > 0 {
		fmt.Fprintf(env.Stdout, "\ndate range: %d objects outside it left out; %d objects without a day partition kept\n", p.in.outOfRange, p.in.undated)
	}
	units := pipeline.BuildPlan(p.in.objects)
	mine := pipeline.ShardUnits(units, p.in.objects, p.shard)
	fmt.Fprintf(env.Stdout, "\nshard %s: %d of %d units, %d of %d rows\n",
		p.shard, len(mine), len(units), pipeline.PlanRows(mine), pipeline.PlanRows(units))
	if p.o.Kind == "migration" {
		printMigrationPlan(ctx, env.Stdout, p, mine)
	}
	return nil
}

// StatusStoppedUncleanly is what Status shows for a manifest that says
// "running" while no live process holds its lease: the run died (killed,
// or its machine lost) and the same command resumes it.
const StatusStoppedUncleanly = "stopped_uncleanly"

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

// Status writes the progress and counts of every shard's manifest in the
// state location: a table, or the manifests' summaries as JSON.
func Status(ctx context.Context, state string, asJSON bool, env Env) error {
	env = env.withDefaults()
	st, ms, err := stateManifests(ctx, "status", state)
	if err != nil {
		return err
	}
	orphans, err := orphanParts(ctx, st, ms)
	if err != nil {
		return err
	}
	now := env.Now()
	type shardStatus struct {
		Job    pipeline.JobID `json:"job"`
		Shard  string         `json:"shard"`
		Status string         `json:"status"`
		// ManifestStatus is the status the manifest holds: "running" for
		// a run that died is shown as StatusStoppedUncleanly.
		ManifestStatus string          `json:"manifest_status"`
		RowsDone       int64           `json:"rows_done"`
		RowsTotal      int64           `json:"rows_total"`
		Counts         pipeline.Counts `json:"counts"`
		Runs           int             `json:"runs"`
		Lease          pipeline.Lease  `json:"lease"`
		LeaseLive      bool            `json:"lease_live"`
		Updated        time.Time       `json:"updated"`
		ETA            *ETA            `json:"eta,omitempty"` // unfinished shards
		// OrphanedParts are dead-letter parts of the shard that its
		// manifest does not list (see ListDeadLetters).
		OrphanedParts []string `json:"orphaned_dead_letter_parts,omitempty"`
	}
	var out []shardStatus
	for _, m := range ms {
		s := shardStatus{Job: m.Job, Shard: m.Shard.String(), Status: m.Status, ManifestStatus: m.Status, Counts: m.Counts, Runs: m.Runs,
			Lease: m.Lease, LeaseLive: pipeline.LeaseHeld(m.Lease, now), Updated: m.Updated, OrphanedParts: orphans[m.Shard]}
		if m.Status == pipeline.StatusRunning && !s.LeaseLive {
			s.Status = StatusStoppedUncleanly
		}
		s.RowsDone, s.RowsTotal = m.RowsProgress()
		if m.Status != pipeline.StatusFinished {
			e := estimate(m, s.RowsDone, s.RowsTotal, now)
			s.ETA = &e
		}
		out = append(out, s)
	}
	if asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	w := tabwriter.NewWriter(env.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SHARD\tSTATUS\tROWS DONE\tOF\t%\tDELIVERED\tSKIPPED\tDEAD-LETTERED\tREQUESTS\tRUNS\tLEASE\tUPDATED")
	for _, s := range out {
		var skipped int64
		for _, n := range s.Counts.RowsSkipped {
			skipped += n
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
			s.Counts.RowsDelivered, skipped, s.Counts.RowsDeadLettered, s.Counts.RequestsSent, s.Runs, lease,
			s.Updated.UTC().Format(time.RFC3339))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	for _, s := range out {
		switch {
		case s.ManifestStatus == pipeline.StatusRunning && s.LeaseLive:
			fmt.Fprintf(env.Stdout, "shard %s: running (lease held by %s pid %d until %s)\n",
				s.Shard, s.Lease.Host, s.Lease.PID, s.Lease.Expires.UTC().Format(time.RFC3339))
		case s.Status == StatusStoppedUncleanly:
			why := "lease expired at " + s.Lease.Expires.UTC().Format(time.RFC3339)
			if s.Lease.Expires.After(now) {
				why = fmt.Sprintf("its process, pid %d on this host, is gone", s.Lease.PID)
			}
			fmt.Fprintf(env.Stdout, "shard %s: stopped uncleanly (%s): run the same command to resume\n", s.Shard, why)
		}
		if s.ETA != nil {
			fmt.Fprintf(env.Stdout, "shard %s ETA: %s\n", s.Shard, s.ETA)
		}
		if s.Counts.RequestsDeadLettered > 0 {
			fmt.Fprintf(env.Stdout, "shard %s dead letters: %d requests, by refusal (convertro-etl deadletters --state … lists them):\n",
				s.Shard, s.Counts.RequestsDeadLettered)
			pipeline.WriteDeadLetterGroups(env.Stdout, "  ", s.Counts)
		}
		if n := len(s.OrphanedParts); n > 0 {
			fmt.Fprintf(env.Stdout, "shard %s: %d orphaned dead-letter parts (not in the manifest, left by a killed run: not counted, their rows are sent again by the next run; replay deletes them)\n",
				s.Shard, n)
		}
	}
	fmt.Fprintf(env.Stdout, "job: %s (%s)\n", ms[0].Job.Description, ms[0].Job.Fingerprint)
	return nil
}
